"""Business time is a fact of the world (DESIGN §11): every event carries when it happened —
the meeting, the submission, the review, the signature, the decision, the day money was spent
— however late it is entered. Here a branch's whole year 2010–2011 is entered today, through
the four services' HTTP APIs; then every event of every log is checked against the business
time written down by hand below, and scoring and notify are checked to place what they
consume at that time (a report submitted in April 2011 counts in the first half of 2011, its
deadline is met when it was handed in).

Only what is about now takes the clock: reminders (sent, skipped, failed) and the default of a
command that leaves its time out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as redis

from services.activities.service import DEFINITION as ACTIVITIES
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from services.scenario.load import CONSUMES
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services

BEIJING = ZoneInfo("Asia/Shanghai")

pytestmark = pytest.mark.timeout(300)


def local(text: str) -> datetime:
    """A Beijing wall-clock time or date ("2010-06-10 19:00", "2010-05-04") as an instant."""
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), BEIJING)
    return datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def end_of(day: str) -> datetime:
    return local(day) + timedelta(days=1) - timedelta(microseconds=1)


class Campus:
    def __init__(self, apis: dict[str, Api]) -> None:
        self.apis = apis
        self.roster = RosterClient(apis["roster"])
        any_api = apis["roster"]
        self.admin = any_api.auth("university_admin", subject="org-office")
        self.auditor = any_api.auth("auditor")
        self.secretary = any_api.auth(
            "branch_secretary", branches=["nde-b1"], member_id="m1", subject="m1"
        )
        self.deputy = any_api.auth(
            "committee_member", branches=["nde-b1"], member_id="m2", subject="m2"
        )

    async def post(
        self,
        service: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        response = await self.apis[service].client.post(
            path, json=body or {}, headers=headers or self.admin, params=params
        )
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()  # type: ignore[no-any-return]

    async def get(self, service: str, path: str, **params: Any) -> Any:
        response = await self.apis[service].client.get(path, params=params, headers=self.admin)
        assert response.status_code == 200, f"{path}: {response.text}"
        return response.json()

    async def log(self, service: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self.get(service, "/v1/audit/events", after=after, limit=1000)
            events += page["events"]
            if page["next_after"] is None:
                return events
            after = page["next_after"]

    async def settle(self, within: float = 90.0) -> None:
        """Until every service has applied what its producers recorded, twice in a row (what
        one applies, it may publish for another)."""
        deadline = time.monotonic() + within
        steady = 0
        while steady < 2:
            behind = {}
            for service, producers in CONSUMES.items():
                api = self.apis[service]
                applied = int(
                    await api.context.pool.fetchval(
                        f'SELECT count(*) FROM "{api.context.schema}".inbox'
                    )
                )
                if service == "roster":
                    recorded = len(
                        await self.apis["scoring"].context.store.read_all(
                            types=["assessment.closed"]
                        )
                    )
                else:
                    recorded = 0
                    for producer in producers:
                        head, _ = await self.apis[producer].context.store.head()
                        recorded += head
                behind[service] = recorded - applied
            steady = steady + 1 if all(n <= 0 for n in behind.values()) else 0
            if time.monotonic() > deadline:
                raise AssertionError(f"not settled: still to apply {behind}")
            await asyncio.sleep(0.3)


@pytest.fixture
async def campus(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[Campus]:
    async with services(
        [ROSTER, ACTIVITIES, SCORING, NOTIFY], database_url, stream_prefix, REDIS_URL
    ) as apis:
        yield Campus(apis)


#: Alternative regulation of another branch (its business time is its decision to adopt it).
ALT = {
    "id": "b2-trial",
    "version": 1,
    "title": "第二支部试行细则",
    "effective_from": "2010-05-01",
    "periods": [{"id": "2010", "starts_on": "2010-05-01", "ends_on": "2010-12-31"}],
    "base": "60",
    "floor": "0",
    "ceiling": "100",
    "rules": [
        {
            "id": "present",
            "title": "出席",
            "on": "attendance.recorded",
            "when": {"status": "present"},
            "points": "1",
        }
    ],
    "grades": [{"grade": "qualified", "min": "60"}, {"grade": "unqualified"}],
}


async def enter_the_year_late(c: Campus) -> dict[str, str]:
    """A branch's year, entered today. Returns ids the checks need."""
    r = c.roster
    await r.post(
        "/v1/units",
        {
            "unit_id": "nde",
            "kind": "school",
            "name": "国防教育学院",
            "established_on": "2010-04-01",
        },
    )
    for unit, kind, parent in (
        ("nde-b1", "branch", "nde"),
        ("nde-b2", "branch", "nde"),
        ("nde-b1-g1", "group", "nde-b1"),
        ("nde-b1-g2", "group", "nde-b1"),
    ):
        await r.post(
            "/v1/units",
            {
                "unit_id": unit,
                "kind": kind,
                "name": f"{unit} 单位",
                "parent_id": parent,
                "branch_kind": "student" if kind == "branch" else None,
                "established_on": "2010-04-01",
            },
        )
    for member in ("m1", "m2", "m3", "m4"):
        await r.enrol(member, enrolled_on="2010-05-04")
    await r.enrol("p1", standing="probationary", probation_started_on="2010-04-20")
    await r.enrol("p2", standing="probationary", probation_started_on="2010-04-20")
    # The committee is elected at the general meeting of 5 May: four full members entitled and
    # present (4 > 4 × 4/5), three candidates for two seats, m1 and m2 with more than 4/2 votes.
    await r.post(
        "/v1/branches/nde-b1/elections",
        {
            "election_id": "el-2010",
            "held_on": "2010-05-05",
            "seats": 2,
            "candidates": ["m1", "m2", "m3"],
            "present": ["m1", "m2", "m3", "m4"],
            "ballots_cast": 4,
            "tally": {"m1": 4, "m2": 3, "m3": 1},
            "secretary_id": "m1",
        },
    )
    await r.post(
        "/v1/guides",
        {
            "guide_id": "guide-1",
            "name": "王连长",
            "kind": "army_officer",
            "organisation": "某部三连",
            "registered_on": "2010-05-15",
        },
    )
    await r.post(
        "/v1/guides/guide-1/appointments",
        {
            "appointment_id": "ap-1",
            "branch_id": "nde-b1",
            "member_ids": ["m3"],
            "term_starts_on": "2010-06-01",
            "term_ends_on": "2011-05-31",
        },
    )
    await r.post(
        "/v1/guides/guide-1/appointments/ap-1/end", {"ended_on": "2011-01-10", "reason": "调防"}
    )
    await r.post("/v1/members/m3/moves", {"group_id": "nde-b1-g2", "effective_on": "2010-09-01"})
    await r.post(
        "/v1/members/m4/categories",
        {"dimension": "cadre", "value": "cadre", "reason": "任班长", "effective_on": "2010-09-10"},
    )
    await r.post(
        "/v1/members/m1/responsibility-space", {"dormitory": "8-312", "effective_on": "2010-05-06"}
    )
    await r.post(
        "/v1/members/m1/agreements",
        {"agreement_id": "ag-m1-2009", "academic_year": "2009-2010", "signed_on": "2010-05-10"},
    )
    await r.post(
        "/v1/members/m1/plaques",
        {
            "plaque_id": "pl-m1",
            "kind": "bed",
            "dormitory": "8-312",
            "bed": "1",
            "issued_on": "2010-05-12",
        },
    )
    await r.post(
        "/v1/members/m1/plaques/pl-m1/withdrawal",
        {"withdrawn_on": "2010-11-15", "reason": "宿舍卫生检查不合格"},
    )
    await r.post(
        "/v1/members/m4/discipline",
        {"measure": "warning", "decided_on": "2010-11-20", "reason": "违反宿舍纪律"},
    )
    await r.post(
        "/v1/branches/nde-b1/pairings",
        {"pairing_id": "pair-1", "mentor_id": "m1", "mentee_id": "m3", "formed_on": "2010-05-20"},
    )
    await r.post(
        "/v1/branches/nde-b1/pairings/pair-1/end", {"ended_on": "2010-10-25", "reason": "中期考核"}
    )
    await r.post(
        "/v1/groups/nde-b1-g1/links",
        {
            "link_id": "ln-1",
            "target_kind": "company",
            "target": "一连",
            "established_on": "2010-05-21",
        },
    )

    # Activities: the meeting's time is the time of its events, whenever they are entered.
    a = "activities"
    meeting = {
        "kind": "all_member_meeting",
        "title": "全体党员大会",
        "branch_id": "nde-b1",
        "place": "301",
    }
    await c.post(
        a,
        "/v1/activities",
        {**meeting, "activity_id": "a1", "starts_at": "2010-06-10T19:00:00+08:00"},
    )
    await c.post(
        a,
        "/v1/activities",
        {**meeting, "activity_id": "a2", "starts_at": "2010-07-01T19:00:00+08:00"},
    )
    await c.post(
        a,
        "/v1/activities",
        {**meeting, "activity_id": "a3", "starts_at": "2010-08-01T19:00:00+08:00"},
    )
    await c.post(a, "/v1/activities/a2/reschedule", {"starts_at": "2010-07-02T19:30:00+08:00"})
    await c.post(
        a,
        "/v1/activities/a3/cancel",
        {"reason": "暑假", "cancelled_at": "2010-07-20T10:00:00+08:00"},
    )
    await c.post(
        a,
        "/v1/activities/a1/attendance",
        {
            "lines": [
                {"member_id": "m1", "status": "present"},
                {"member_id": "m2", "status": "absent"},
                {"member_id": "m3", "status": "present"},
                {"member_id": "m4", "status": "present"},
                {"member_id": "p1", "status": "present"},
                {"member_id": "p2", "status": "present"},
            ]
        },
    )
    await c.post(
        a,
        "/v1/activities/a1/attendance/corrections",
        {"member_id": "m2", "status": "excused", "excuse": "病假", "reason": "补交请假条"},
    )
    await c.post(
        a, "/v1/branches/nde-b1/report-cadence", {"every_weeks": 4, "starts_on": "2010-05-10"}
    )
    await c.post(a, "/v1/branches/nde-b1/report-obligations", {"through": "2011-06-30"})
    await c.post(
        a,
        "/v1/reports/thought-p1-2011-Q1/submission",
        {"submitted_at": "2011-04-10T20:00:00+08:00"},
    )
    await c.post(
        a,
        "/v1/reports/thought-p1-2011-Q1/review",
        {"grade": "excellent", "reviewed_at": "2011-04-15T09:00:00+08:00"},
    )
    await c.post(
        a,
        "/v1/branches/nde-b1/budgets/2010",
        {"lines": [{"line": "outings", "amount_fen": 70000}], "planned_on": "2010-05-08"},
    )
    await c.post(
        a,
        "/v1/branches/nde-b1/budgets/2010/expenses",
        {
            "expense_id": "ex-1",
            "line": "outings",
            "amount_fen": 35000,
            "spent_on": "2010-07-01",
            "description": "参观黑铁山",
        },
    )
    # The conversion and the extension are the branch meeting's decisions, in April 2011; the
    # conversion takes effect at the end of probation and withdraws later thought reports.
    await r.post(
        "/v1/members/p1/conversion",
        {
            "decided_on": "2011-04-22",
            # four full members entitled, all present; 3 yes > 4/2
            "vote": {"present": ["m1", "m2", "m3", "m4"], "yes": 3, "no": 1, "abstain": 0},
        },
    )
    await r.post(
        "/v1/members/p2/probation-extension",
        {"months": 6, "reason": "继续考察", "decided_on": "2011-04-25"},
    )
    await r.post(
        "/v1/members/m4/transfer-out",
        {"destination": "某部队", "transferred_on": "2011-06-20", "reason": "graduation"},
    )

    # Scoring: a dated adjustment under four eyes, another branch adopting its own regulation,
    # a close at the year's end and a reopening in January.
    s = "scoring"
    await c.settle()
    await c.post(s, "/v1/regulations", ALT, published_on="2010-04-25")
    await c.post(
        s,
        "/v1/units/nde-b2/regulation",
        {"regulation_id": "b2-trial", "effective_from": "2010-05-01", "decided_on": "2010-04-30"},
    )
    await c.post(
        s,
        "/v1/branches/nde-b1/adjustments",
        {
            "adjustment_id": "adj-1",
            "member_id": "m3",
            "points": "2",
            "reason": "抗洪表彰",
            "effective_on": "2010-10-15",
        },
        c.secretary,
    )
    await c.post(s, "/v1/branches/nde-b1/adjustments/adj-1/approval", {}, c.deputy)
    await c.settle()
    await c.post(s, "/v1/branches/nde-b1/periods/2010/close", {"closed_on": "2010-12-31"})
    await c.post(
        s,
        "/v1/branches/nde-b1/periods/2010/reopen",
        {"reason": "补录", "reopened_on": "2011-01-05"},
    )
    await c.settle()
    return {}


#: (service, event type, the fields that pick one event, its business time) — by hand.
EXPECTED: list[tuple[str, str, dict[str, Any], datetime]] = [
    ("roster", "org.unit_registered", {"unit_id": "nde"}, local("2010-04-01")),
    ("roster", "member.enrolled", {"member_id": "m1"}, local("2010-05-04")),
    ("roster", "branch.election_held", {"election_id": "el-2010"}, local("2010-05-05")),
    ("roster", "branch.committee_elected", {"branch_id": "nde-b1"}, local("2010-05-05")),
    ("roster", "guide.registered", {"guide_id": "guide-1"}, local("2010-05-15")),
    ("roster", "guide.appointed", {"appointment_id": "ap-1"}, local("2010-06-01")),
    ("roster", "guide.appointment_ended", {"appointment_id": "ap-1"}, local("2011-01-10")),
    ("roster", "member.moved", {"member_id": "m3"}, local("2010-09-01")),
    (
        "roster",
        "member.category_changed",
        {"member_id": "m4", "dimension": "cadre"},
        local("2010-09-10"),
    ),
    ("roster", "responsibility.space_assigned", {"member_id": "m1"}, local("2010-05-06")),
    ("roster", "responsibility.agreement_signed", {"member_id": "m1"}, local("2010-05-10")),
    ("roster", "plaque.issued", {"plaque_id": "pl-m1"}, local("2010-05-12")),
    ("roster", "plaque.withdrawn", {"plaque_id": "pl-m1"}, local("2010-11-15")),
    ("roster", "member.disciplined", {"member_id": "m4"}, local("2010-11-20")),
    ("roster", "pairing.formed", {"pairing_id": "pair-1"}, local("2010-05-20")),
    ("roster", "pairing.ended", {"pairing_id": "pair-1"}, local("2010-10-25")),
    ("roster", "group.link_established", {"link_id": "ln-1"}, local("2010-05-21")),
    # decided by the branch meeting on 22 April; it took effect at the end of probation
    ("roster", "member.converted", {"member_id": "p1"}, local("2011-04-22")),
    ("roster", "member.probation_extended", {"member_id": "p2"}, local("2011-04-25")),
    ("roster", "member.transferred_out", {"member_id": "m4"}, local("2011-06-20")),
    ("activities", "activity.scheduled", {"activity_id": "a1"}, local("2010-06-10 19:00")),
    ("activities", "activity.rescheduled", {"activity_id": "a2"}, local("2010-07-02 19:30")),
    ("activities", "activity.cancelled", {"activity_id": "a3"}, local("2010-07-20 10:00")),
    (
        "activities",
        "attendance.recorded",
        {"activity_id": "a1", "member_id": "m2"},
        local("2010-06-10 19:00"),
    ),
    (
        "activities",
        "attendance.corrected",
        {"activity_id": "a1", "member_id": "m2"},
        local("2010-06-10 19:00"),
    ),
    ("activities", "report.cadence_set", {"branch_id": "nde-b1"}, local("2010-05-10")),
    ("activities", "report.required", {"obligation_id": "thought-p1-2011-Q1"}, local("2011-03-31")),
    (
        "activities",
        "report.submitted",
        {"obligation_id": "thought-p1-2011-Q1"},
        local("2011-04-10 20:00"),
    ),
    (
        "activities",
        "report.reviewed",
        {"obligation_id": "thought-p1-2011-Q1"},
        local("2011-04-15 09:00"),
    ),
    # p1's probation ended on 20 April 2011: the thought report of 2011-Q2 lapsed that day
    (
        "activities",
        "report.withdrawn",
        {"obligation_id": "thought-p1-2011-Q2"},
        local("2011-04-20"),
    ),
    ("activities", "budget.planned", {"branch_id": "nde-b1"}, local("2010-05-08")),
    ("activities", "expense.recorded", {"expense_id": "ex-1"}, local("2010-07-01")),
    ("scoring", "regulation.published", {"regulation_id": "b2-trial"}, local("2010-04-25")),
    ("scoring", "regulation.adopted", {"unit_id": "nde-b2"}, local("2010-04-30")),
    ("scoring", "score.adjustment_requested", {"adjustment_id": "adj-1"}, local("2010-10-15")),
    ("scoring", "score.adjusted", {"adjustment_id": "adj-1"}, local("2010-10-15")),
    ("scoring", "assessment.closed", {"branch_id": "nde-b1"}, end_of("2010-12-31")),
    ("scoring", "assessment.reopened", {"branch_id": "nde-b1"}, local("2011-01-05")),
    # a ledger line happens when its cause did: m1 attended on 10 June
    (
        "scoring",
        "score.awarded",
        {"member_id": "m1", "cause_type": "attendance.recorded"},
        local("2010-06-10 19:00"),
    ),
    (
        "scoring",
        "score.deducted",
        {"member_id": "m1", "rule_id": "plaque-withdrawn"},
        local("2010-11-15"),
    ),
    # notify: a deadline is set when its cause happened and met when it was met
    (
        "notify",
        "deadline.scheduled",
        {"deadline_id": "report-thought-p1-2011-Q1"},
        local("2011-03-31"),
    ),
    (
        "notify",
        "deadline.met",
        {"deadline_id": "report-thought-p1-2011-Q1"},
        local("2011-04-10 20:00"),
    ),
    (
        "notify",
        "deadline.withdrawn",
        {"deadline_id": "report-thought-p1-2011-Q2"},
        local("2011-04-20"),
    ),
]

#: Event types about now: their time is the clock's.
ABOUT_NOW = {"reminder.sent", "reminder.skipped", "reminder.failed"}

#: Event types whose business time is a field of their own (checked for every event).
OWN_FIELD = {"deadline.missed": "due_at", "deadline.met": "met_at"}


async def test_every_event_carries_its_business_time_however_late_it_is_entered(
    campus: Campus,
) -> None:
    started = datetime.now(UTC)
    await enter_the_year_late(campus)
    logs = {service: await campus.log(service) for service in campus.apis}

    for service, event_type, fields, expected in EXPECTED:
        matching = [
            e
            for e in logs[service]
            if e["type"] == event_type and all(e["data"].get(k) == v for k, v in fields.items())
        ]
        assert matching, f"no {event_type} with {fields} in {service}'s log"
        times = {datetime.fromisoformat(e["occurred_at"]) for e in matching}
        assert times == {expected}, (event_type, fields, times)

    seen_types = {e["type"] for events in logs.values() for e in events}
    checked = {event_type for _, event_type, _, _ in EXPECTED} | ABOUT_NOW | set(OWN_FIELD)
    assert seen_types <= checked, f"types without a stated business time: {seen_types - checked}"
    # The university's default regulation is published into this deployment as it starts:
    # that is today's act.
    [default] = [
        e
        for e in logs["scoring"]
        if e["type"] == "regulation.published" and e["data"]["regulation_id"] == "nde-2010"
    ]
    today = started.astimezone(BEIJING).date().isoformat()
    assert datetime.fromisoformat(default["occurred_at"]) == local(today)
    for events in logs.values():
        for event in events:
            occurred = datetime.fromisoformat(event["occurred_at"])
            if event is default:
                continue
            if event["type"] in ABOUT_NOW:
                assert occurred >= started, event
            elif event["type"] in OWN_FIELD:
                own = datetime.fromisoformat(event["data"][OWN_FIELD[event["type"]]])
                assert occurred == own, event
            else:
                # Nothing of that year is dated by the day it was typed in.
                assert occurred < datetime(2012, 1, 1, tzinfo=BEIJING), event


async def test_scoring_and_notify_place_what_they_consume_at_its_business_time(
    campus: Campus,
) -> None:
    await enter_the_year_late(campus)
    c = campus

    # The thought report handed in late on 10 April 2011 and reviewed excellent on 15 April:
    # both count in the first half of 2011 (nde-2010: report-late −1, excellent +1).
    p1 = await c.get("scoring", "/v1/members/p1/score", period_id="2011-h1")
    [h1] = p1
    lines = {
        (e["rule_id"], e["points"], datetime.fromisoformat(e["cause_occurred_at"]))
        for e in h1["ledger"]
    }
    assert ("report-late", "-1.0", local("2011-04-10 20:00")) in lines
    assert ("report-graded-excellent", "1.0", local("2011-04-15 09:00")) in lines
    # 60 − 1 + 1 = 60
    assert h1["total"] == "60.0"

    # m3: present on 10 June 2010 (+1), mentored nobody, a manual +2 dated 15 October.
    # Before 15 October the adjustment is not there; on it, it is: 60 + 1 = 61 → 63.
    async def m3_total(**params: Any) -> str:
        [period] = await c.get("scoring", "/v1/members/m3/score", period_id="2010", **params)
        return str(period["total"])

    assert await m3_total(as_of="2010-10-14") == "61.0"
    assert await m3_total(as_of="2010-10-15") == "63.0"
    assert await m3_total(as_of="2010-10-15T00:00:00+08:00") == "63.0"  # an instant will do
    assert await m3_total(as_of="2010-10-14T15:59:59Z") == "61.0"  # a second before, in UTC

    # Notify: the report's deadline was met when the report was handed in, not today.
    deadline = await c.get("notify", "/v1/deadlines/report-thought-p1-2011-Q1")
    assert deadline["status"] == "met"
    assert datetime.fromisoformat(deadline["met_at"]) == local("2011-04-10 20:00")
