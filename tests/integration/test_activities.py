"""The activities service with the roster beside it: members come over the real `member`
stream. Every refusal with its message; the cadence generator; attendance sheets all or
nothing; thought reports that stop at conversion; the budget; the published schemas."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import jsonschema
import pytest
import redis.asyncio as redis

from contracts import CATALOGUE
from contracts.generate import SCHEMA_DIR, event_schema_name
from services.activities.service import DEFINITION as ACTIVITIES
from services.roster.service import DEFINITION as ROSTER
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services, wait_for_members
from tests.support.waiting import wait_until


class Stack:
    def __init__(self, roster: Api, activities: Api) -> None:
        self.roster = RosterClient(roster)
        self.api = activities
        self.admin = activities.auth("university_admin", subject="org-office")
        self.secretary = activities.auth("branch_secretary", branches=["nde-b1"], subject="sec-b1")

    async def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self.api.client.post(path, json=body, headers=headers or self.secretary)
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()  # type: ignore[no-any-return]

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.api.client.get(path, params=params, headers=self.secretary)
        assert response.status_code == 200, response.text
        return response.json()

    async def refused(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        before = await self.api.event_count()
        response = await self.api.client.post(path, json=body, headers=self.secretary)
        assert response.status_code == 409, (path, response.text)
        assert await self.api.event_count() == before, "a refused command appended events"
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def stack(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[Stack]:
    async with services([ROSTER, ACTIVITIES], database_url, stream_prefix, REDIS_URL) as apis:
        stack = Stack(apis["roster"], apis["activities"])
        await stack.roster.organisation()
        yield stack


async def enrol(stack: Stack, count: int, branch: str = "nde-b1", **fields: Any) -> list[str]:
    ids = []
    for n in range(count):
        member_id = f"{branch}-m{n:02d}"
        group = f"{branch}-g1" if n % 2 == 0 or branch == "nde-b2" else f"{branch}-g2"
        number = f"{2 if branch == 'nde-b2' else 1}{n:07d}"
        ids.append(
            await stack.roster.enrol(member_id, branch, number=number, group_id=group, **fields)
        )
    await wait_for_members(stack.api, *ids)
    return ids


def meeting(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "activity_id": name,
        "kind": "all_member_meeting",
        "title": "全体党员大会",
        "branch_id": "nde-b1",
        "starts_at": "2010-05-12T19:00:00+08:00",
        "ends_at": "2010-05-12T20:30:00+08:00",
        "place": "国防教育学院 301",
        **fields,
    }


SCHEDULE_REFUSALS = [
    ({"kind": "group_meeting"}, "group_required", "a group meeting names its Party group"),
    (
        {"kind": "group_meeting", "group_id": "nde-b2-g1"},
        "group_not_in_branch",
        "Party group nde-b2-g1 is not a group of branch nde-b1",
    ),
    (
        {"kind": "party_lecture", "attendees": {"scope": "group", "group_id": "nde-b2-g1"}},
        "attendees_group_not_in_branch",
        "Party group nde-b2-g1 is not a group of branch nde-b1",
    ),
    ({"kind": "exchange"}, "partner_required", "an exchange names the partner branch"),
    ({"kind": "visit"}, "base_required", "a visit names the base visited"),
    ({"kind": "volunteer_service"}, "hours_required", "volunteer service states the hours"),
    (
        {"ends_at": "2010-05-12T18:00:00+08:00"},
        "ends_before_start",
        "ends_at must be after starts_at",
    ),
    (
        {"attendees": {"scope": "members", "member_ids": ["nde-b2-m00"]}},
        "attendee_not_in_branch",
        "member nde-b2-m00 is not a member of branch nde-b1",
    ),
    ({"activity_id": "act-held"}, "activity_exists", "activity act-held is already scheduled"),
]


async def test_scheduling_refusals(stack: Stack) -> None:
    await enrol(stack, 2)
    await enrol(stack, 1, "nde-b2")
    await stack.post("/v1/activities", meeting("act-held"))
    for fields, rule, message in SCHEDULE_REFUSALS:
        problem = await stack.refused("/v1/activities", meeting("act-new", **fields))
        assert problem["rule"] == rule, problem
        assert message in problem["detail"], problem
    # a lecture of no group for one of the branch's own groups is fine
    await stack.post(
        "/v1/activities",
        meeting(
            "act-g1-lecture",
            kind="party_lecture",
            attendees={"scope": "group", "group_id": "nde-b1-g1"},
        ),
    )


async def test_attendance_refusals_and_corrections(stack: Stack) -> None:
    members = await enrol(stack, 4)
    await enrol(stack, 1, "nde-b2")
    await stack.post("/v1/activities", meeting("act-g", kind="group_meeting", group_id="nde-b1-g1"))
    future = (date.today() + timedelta(days=30)).isoformat()
    await stack.post(
        "/v1/activities",
        meeting(
            "act-future", starts_at=f"{future}T19:00:00+08:00", ends_at=f"{future}T20:00:00+08:00"
        ),
    )
    await stack.post("/v1/activities", meeting("act-off"))
    await stack.post("/v1/activities/act-off/cancel", {"reason": "暴雨"})

    def sheet(*lines: tuple[str, str]) -> dict[str, Any]:
        return {
            "lines": [
                {"member_id": m, "status": s, **({"excuse": "病假"} if s == "excused" else {})}
                for m, s in lines
            ]
        }

    cases = [
        (
            "act-off",
            sheet((members[0], "present")),
            "activity_cancelled",
            "activity act-off was cancelled",
        ),
        (
            "act-future",
            sheet((members[0], "present")),
            "activity_in_future",
            "attendance is taken once it has begun",
        ),
        (
            "act-g",
            sheet((members[0], "present"), ("nde-b2-m00", "present")),
            "member_not_in_branch",
            "member nde-b2-m00 is not a member of branch nde-b1",
        ),
        (
            "act-g",
            sheet((members[0], "present"), (members[1], "present")),  # m01 is in g2
            "member_not_required",
            f"member {members[1]} was not required at this activity",
        ),
        (
            "act-g",
            sheet((members[0], "present"), (members[0], "late")),
            "member_twice",
            f"member {members[0]} is on the sheet twice",
        ),
        (
            "act-g",
            {"lines": [{"member_id": members[0], "status": "absent", "excuse": "x"}]},
            "excuse_rule",
            "an excused absence gives its reason, and only it",
        ),
    ]
    for activity_id, body, rule, message in cases:
        problem = await stack.refused(f"/v1/activities/{activity_id}/attendance", body)
        assert (problem["rule"], message in problem["detail"]) == (rule, True), problem
    assert (
        await stack.refused(
            "/v1/activities/act-g/attendance",
            sheet((members[0], "present"), ("nde-b2-m00", "present")),
        )
    )["errors"] == [
        {
            "field": "lines[1].member_id",
            "reason": "member nde-b2-m00 is not a member of branch nde-b1 on "
            "the day of the activity",
        }
    ]

    await stack.post(
        "/v1/activities/act-g/attendance", sheet((members[0], "absent"), (members[2], "excused"))
    )
    problem = await stack.refused("/v1/activities/act-g/attendance", sheet((members[0], "present")))
    assert problem["rule"] == "attendance_already_recorded"
    problem = await stack.refused(
        "/v1/activities/act-g/attendance/corrections",
        {"member_id": members[0], "status": "absent", "reason": "x"},
    )
    assert problem["rule"] == "correction_changes_nothing"
    problem = await stack.refused(
        "/v1/activities/act-g/attendance/corrections",
        {"member_id": members[3], "status": "late", "reason": "x"},
    )
    assert problem["rule"] == "nothing_to_correct"

    committee = stack.api.auth("committee_member", branches=["nde-b1"], subject="wei")
    response = await stack.api.client.post(
        "/v1/activities/act-g/attendance/corrections",
        headers=committee,
        json={"member_id": members[0], "status": "late", "reason": "迟到十分钟，误记为缺席"},
    )
    assert response.status_code == 200, response.text
    recorded = await stack.get("/v1/activities/act-g/attendance")
    assert recorded["current"][members[0]]["status"] == "late"
    original, fix = [h for h in recorded["history"] if h["member_id"] == members[0]]
    assert (original["status"], original["kind"], original["actor_id"]) == (
        "absent",
        "recorded",
        "sec-b1",
    )
    assert (fix["status"], fix["kind"], fix["actor_id"], fix["reason"]) == (
        "late",
        "corrected",
        "wei",
        "迟到十分钟，误记为缺席",
    )


async def test_a_sheet_of_forty_with_one_bad_line_appends_nothing(stack: Stack) -> None:
    members = await enrol(stack, 40)
    await stack.post("/v1/activities", meeting("act-40"))
    lines = [{"member_id": m, "status": "present"} for m in members]
    lines[17] = {"member_id": "nobody", "status": "present"}
    problem = await stack.refused("/v1/activities/act-40/attendance", {"lines": lines})
    assert problem["errors"] == [
        {
            "field": "lines[17].member_id",
            "reason": "member nobody is not a member of branch nde-b1 on the day of the activity",
        }
    ]
    lines[17] = {"member_id": members[17], "status": "late"}
    await stack.post("/v1/activities/act-40/attendance", {"lines": lines})
    recorded = await stack.get("/v1/activities/act-40/attendance")
    assert len(recorded["current"]) == 40
    assert recorded["current"][members[17]]["status"] == "late"


async def test_the_semester_cadence_over_twenty_weeks_with_two_holidays(stack: Stack) -> None:
    await enrol(stack, 1)  # the directory knows the branch and its two groups
    plan = {
        "semester_id": "2010-autumn",
        "starts_on": "2010-09-06",
        "weeks": 20,
        "weekday": 3,
        "at": "19:00:00",
        "place": "学院会议室",
        "holidays": ["2010-09-29", "2010-10-06", "2010-12-01"],
    }  # Wednesdays of w4, w5, w13
    planned = await stack.post("/v1/branches/nde-b1/semesters", plan)
    activities = await stack.get("/v1/branches/nde-b1/activities")
    all_member = [a for a in activities if a["kind"] == "all_member_meeting"]
    groups = [a for a in activities if a["kind"] == "group_meeting"]
    assert len(all_member) == 10 - 2  # odd weeks, less weeks 5 and 13
    assert len(groups) == (10 - 1) * 2  # even weeks for both groups, less week 4
    assert {date.fromisoformat(a["starts_at"][:10]).isoweekday() for a in activities} == {3}
    assert all(a["starts_at"].endswith("T11:00:00Z") for a in activities)  # 19:00 in Shanghai
    assert planned["skipped_holidays"] == ["2010-09-29", "2010-10-06", "2010-12-01"]
    weeks = sorted({int(a["activity_id"].split("-w")[1][:2]) for a in all_member})
    assert weeks == [1, 3, 7, 9, 11, 15, 17, 19]
    assert {a["group_id"] for a in groups} == {"nde-b1-g1", "nde-b1-g2"}
    before = await stack.api.event_count()
    again = await stack.post("/v1/branches/nde-b1/semesters", plan)
    assert again["scheduled"] == []
    assert len(again["already_planned"]) == len(activities)
    assert await stack.api.event_count() == before


async def test_thought_reports_stop_when_the_conversion_arrives(stack: Stack) -> None:
    await stack.roster.enrol(
        "p-1",
        "nde-b1",
        standing="probationary",
        number="77770001",
        probation_started_on="2010-04-20",
    )
    await stack.roster.enrol("f-1", "nde-b1", number="77770002")
    await wait_for_members(stack.api, "p-1", "f-1")
    planned = await stack.post("/v1/branches/nde-b1/report-obligations", {"through": "2010-12-31"})
    assert planned["planned"] == [
        "thought-p-1-2010-Q2",
        "thought-p-1-2010-Q3",
        "thought-p-1-2010-Q4",
    ]
    due = await stack.get("/v1/members/p-1/obligations")
    assert [o["due_on"] for o in due] == ["2010-06-30", "2010-09-30", "2010-12-31"]
    await stack.post(
        "/v1/reports/thought-p-1-2010-Q2/submission", {"submitted_at": "2010-07-02T10:00:00+08:00"}
    )
    await stack.post("/v1/reports/thought-p-1-2010-Q2/review", {"grade": "good"})
    await stack.post("/v1/reports/thought-p-1-2010-Q2/review", {"grade": "excellent"})
    [reviewed] = [
        o
        for o in await stack.get("/v1/members/p-1/obligations", status="all")
        if o["obligation_id"] == "thought-p-1-2010-Q2"
    ]
    assert (reviewed["on_time"], reviewed["days_late"], reviewed["grade"], reviewed["reviews"]) == (
        False,
        2,
        "excellent",
        2,
    )

    # The probation is extended to 2011-10-20, and the member converted then: thought reports
    # run through the extension and stop with the conversion.
    await stack.roster.post(
        "/v1/members/p-1/probation-extension",
        {"months": 6, "reason": "继续考察", "decided_on": "2011-04-21"},
    )
    await stack.roster.post("/v1/members/p-1/conversion", {"decided_on": "2011-10-21"})
    await wait_until(lambda: _converted(stack), what="the conversion in the directory")
    pending = await stack.get("/v1/members/p-1/obligations")
    assert [o["obligation_id"] for o in pending] == ["thought-p-1-2010-Q3", "thought-p-1-2010-Q4"]
    planned = await stack.post("/v1/branches/nde-b1/report-obligations", {"through": "2012-06-30"})
    assert planned["planned"] == [
        f"thought-p-1-{q}" for q in ("2011-Q1", "2011-Q2", "2011-Q3")
    ]  # probation ended 2011-10-20: no 2011-Q4 onwards


async def _converted(stack: Stack) -> bool:
    member = await stack.api.context.directory.member("p-1")
    return member is not None and member.converted_on is not None


async def test_conversion_withdraws_the_thought_reports_not_yet_due(stack: Stack) -> None:
    await stack.roster.enrol(
        "p-2",
        "nde-b1",
        standing="probationary",
        number="77780001",
        probation_started_on="2010-01-10",
        enrolled_on="2010-01-15",
    )
    await wait_for_members(stack.api, "p-2")
    await stack.post("/v1/branches/nde-b1/report-obligations", {"through": "2011-03-31"})
    ids = [o["obligation_id"] for o in await stack.get("/v1/members/p-2/obligations")]
    assert ids == [
        f"thought-p-2-{q}" for q in ("2010-Q1", "2010-Q2", "2010-Q3", "2010-Q4", "2011-Q1")
    ]
    await stack.roster.post("/v1/members/p-2/conversion", {"decided_on": "2011-01-12"})

    async def only_earlier_remain() -> bool:
        pending = [o["obligation_id"] for o in await stack.get("/v1/members/p-2/obligations")]
        return pending == [f"thought-p-2-{q}" for q in ("2010-Q1", "2010-Q2", "2010-Q3", "2010-Q4")]

    await wait_until(only_earlier_remain, what="the 2011-Q1 obligation to be withdrawn")
    problem = await stack.refused("/v1/reports/thought-p-2-2011-Q1/submission", {})
    assert problem["rule"] == "obligation_withdrawn"
    again = await stack.post("/v1/branches/nde-b1/report-obligations", {"through": "2011-12-31"})
    assert again["planned"] == []


async def test_a_conversion_on_the_quarters_last_day_withdraws_that_quarters_report(
    stack: Stack,
) -> None:
    # probation from 31 December 2009 ends on 31 December 2010, the last day of 2010-Q4: the
    # member is full that day and owes no 2010-Q4 report, which the planner would not plan
    await stack.roster.enrol(
        "p-3",
        "nde-b1",
        standing="probationary",
        number="77790001",
        probation_started_on="2009-12-31",
        enrolled_on="2010-01-15",
    )
    await wait_for_members(stack.api, "p-3")
    await stack.post("/v1/branches/nde-b1/report-obligations", {"through": "2010-12-31"})
    ids = [o["obligation_id"] for o in await stack.get("/v1/members/p-3/obligations")]
    assert ids == [f"thought-p-3-2010-Q{q}" for q in (1, 2, 3, 4)]
    await stack.roster.post("/v1/members/p-3/conversion", {"decided_on": "2011-01-05"})

    async def due_that_day_withdrawn() -> bool:
        pending = [o["obligation_id"] for o in await stack.get("/v1/members/p-3/obligations")]
        return pending == [f"thought-p-3-2010-Q{q}" for q in (1, 2, 3)]

    await wait_until(due_that_day_withdrawn, what="the 2010-Q4 obligation to be withdrawn")
    again = await stack.post("/v1/branches/nde-b1/report-obligations", {"through": "2011-12-31"})
    assert again["planned"] == []


async def test_report_refusals_and_situation_reports(stack: Stack) -> None:
    await enrol(stack, 1)
    member = "nde-b1-m00"
    await stack.roster.post(
        f"/v1/members/{member}/responsibility-space",
        {"dormitory": "8-312", "company": "一连", "effective_on": "2010-05-04"},
    )

    async def has_space() -> bool:
        record = await stack.api.context.directory.member(member)
        return record is not None and record.space is not None

    await wait_until(has_space, what="the responsibility space")
    await stack.post(
        "/v1/branches/nde-b1/report-cadence", {"every_weeks": 2, "starts_on": "2010-05-17"}
    )
    planned = await stack.post("/v1/branches/nde-b1/report-obligations", {"through": "2010-06-30"})
    assert planned["planned"] == [
        f"situation-{member}-2010-{d}" for d in ("05-17", "05-31", "06-14", "06-28")
    ]
    first = planned["planned"][0]
    problem = await stack.refused(f"/v1/reports/{first}/review", {"grade": "good"})
    assert problem["rule"] == "report_not_submitted"
    own = stack.api.auth("member", member_id=member, subject=member)
    response = await stack.api.client.post(
        f"/v1/reports/{first}/submission",
        headers=own,
        json={"submitted_at": "2010-05-16T21:00:00+08:00"},
    )
    assert response.status_code == 200
    problem = await stack.refused(f"/v1/reports/{first}/submission", {})
    assert problem["rule"] == "report_submitted"
    someone_else = stack.api.auth("member", member_id="other", subject="other")
    response = await stack.api.client.post(
        f"/v1/reports/{planned['planned'][1]}/submission", headers=someone_else, json={}
    )
    assert response.status_code == 403
    pending = await stack.api.client.get(f"/v1/members/{member}/obligations", headers=own)
    assert [o["obligation_id"] for o in pending.json()] == planned["planned"][1:]


async def test_the_budget_refuses_an_overspend(stack: Stack) -> None:
    await enrol(stack, 1)
    await stack.post(
        "/v1/activities",
        meeting(
            "act-visit",
            kind="visit",
            base="黑铁山抗日武装起义纪念馆",
            planned_cost_fen=70000,
            budget_line="outings",
            title="七一参观",
        ),
    )
    path = "/v1/branches/nde-b1/budgets/2010"
    problem = await stack.refused(
        f"{path}/expenses",
        {
            "expense_id": "e-0",
            "line": "outings",
            "amount_fen": 100,
            "spent_on": "2010-07-01",
            "description": "x",
        },
    )
    assert problem["rule"] == "no_budget"
    await stack.post(
        path,
        {
            "lines": [
                {"line": "outings", "amount_fen": 140000},
                {"line": "plaques", "amount_fen": 40000},
                {"line": "stationery", "amount_fen": 20000},
            ]
        },
    )
    await stack.post(
        f"{path}/expenses",
        {
            "expense_id": "e-1",
            "line": "outings",
            "amount_fen": 68000,
            "activity_id": "act-visit",
            "spent_on": "2010-07-01",
            "description": "租车 (bus hire)",
        },
    )
    refusals = [
        (
            {"expense_id": "e-2", "line": "outings", "amount_fen": 80000},
            "line_overspent",
            "line outings has 720.00 CNY left; 800.00 CNY would overspend it",
        ),
        (
            {
                "expense_id": "e-2",
                "line": "outings",
                "amount_fen": 80000,
                "override": {"approver_id": "sec-b1", "reason": "x"},
            },
            "override_by_recorder",
            "approved by someone other than who records it",
        ),
        (
            {"expense_id": "e-2", "line": "travel", "amount_fen": 100},
            "line_unknown",
            "has no line 'travel'; its lines are outings, plaques, stationery",
        ),
        (
            {"expense_id": "e-1", "line": "plaques", "amount_fen": 100},
            "expense_exists",
            "expense e-1 is recorded already",
        ),
        (
            {"expense_id": "e-2", "line": "plaques", "amount_fen": 100, "spent_on": "2011-01-02"},
            "expense_year",
            "an expense of 2011 does not belong to the budget of 2010",
        ),
    ]
    for fields, rule, message in refusals:
        body = {"spent_on": "2010-08-01", "description": "x", **fields}
        problem = await stack.refused(f"{path}/expenses", body)
        assert (problem["rule"], message in problem["detail"]) == (rule, True), problem
    await stack.post(
        f"{path}/expenses",
        {
            "expense_id": "e-2",
            "line": "outings",
            "amount_fen": 80000,
            "spent_on": "2010-08-01",
            "description": "八一慰问",
            "override": {"approver_id": "dean", "reason": "院党委批准"},
        },
    )
    problem = await stack.refused(path, {"lines": [{"line": "outings", "amount_fen": 100000}]})
    assert problem["rule"] == "line_below_spent"
    statement = await stack.get(path)
    assert statement["planned_fen"] == 200000
    assert statement["spent_fen"] == 148000
    outings = next(line for line in statement["lines"] if line["line"] == "outings")
    assert outings == {
        "line": "outings",
        "planned_fen": 140000,
        "spent_fen": 148000,
        "remaining_fen": -8000,
    }
    assert [e["approver_id"] for e in statement["expenses"]] == [None, "dean"]


async def test_published_events_validate_against_the_committed_schemas(
    stack: Stack, redis_client: redis.Redis, stream_prefix: str
) -> None:
    members = await enrol(stack, 2)
    await stack.post(
        "/v1/activities",
        meeting("act-1", kind="volunteer_service", volunteer_hours="2.5", title="志愿服务"),
    )
    await stack.post(
        "/v1/activities/act-1/attendance",
        {
            "lines": [
                {"member_id": members[0], "status": "present"},
                {"member_id": members[1], "status": "absent"},
            ]
        },
    )
    await stack.post(
        "/v1/branches/nde-b1/report-cadence", {"every_weeks": 4, "starts_on": "2010-06-01"}
    )
    await stack.post(
        "/v1/branches/nde-b1/budgets/2010", {"lines": [{"line": "outings", "amount_fen": 140000}]}
    )
    total = await stack.api.event_count()

    async def all_published() -> bool:
        lengths = [
            await redis_client.xlen(f"{stream_prefix}:{f}")
            for f in ("activity", "attendance", "report")
        ]
        return sum(lengths) == total

    await wait_until(all_published, what="the activities relay")
    seen = []
    for family in ("activity", "attendance", "report"):
        for _, fields in await redis_client.xrange(f"{stream_prefix}:{family}"):
            envelope = json.loads(fields[b"envelope"])
            spec = CATALOGUE.spec(envelope["type"])
            assert spec.family == family
            schema = json.loads((SCHEMA_DIR / event_schema_name(spec)).read_text())
            jsonschema.validate(envelope, schema, cls=jsonschema.Draft202012Validator)
            seen.append(envelope)
    present = next(
        e for e in seen if e["type"] == "attendance.recorded" and e["data"]["status"] == "present"
    )
    assert present["data"]["volunteer_hours"] == "2.5"
    assert present["data"]["activity_kind"] == "volunteer_service"
    assert present["data"]["activity_date"] == "2010-05-12"
    absent = next(
        e for e in seen if e["type"] == "attendance.recorded" and e["data"]["status"] == "absent"
    )
    assert absent["data"]["volunteer_hours"] is None
