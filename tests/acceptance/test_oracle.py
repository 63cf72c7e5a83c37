"""An oracle that is not our code: a school that is not the plan's, its own two regulations,
and every expected number worked out by hand in this file, with the arithmetic readable.

The School of History (历史学院) follows its own regulation 《历史学院学生党员量化考核办法》
(`hist-2012`) from 1 September 2012; its second branch overrides it with a simpler one of its
own (`hist-h2`). The autumn term 2012 is entered through the HTTP APIs of the roster, the
activities and the scoring services — today, years after it happened.

Regulation hist-2012 v1 (precision: one decimal; base 80, floor 0, ceiling 100):

    rule          on                          when                          points      cap
    meeting       attendance.recorded         all-member meeting, present   +2          6
    lecture       attendance.recorded         Party lecture, present        +1.5        —
    volunteer     attendance.recorded         volunteer service             hours × 0.5 5
    absent        attendance.recorded         absent                        −3          9
    late          attendance.recorded         late or left early (meeting)  −1          —
    report-on-time report.submitted           on time                       +2          —
    report-late   report.submitted            late                          −1          —
    report-excellent report.reviewed          graded excellent              +1          —
    mentor        pairing.formed (mentor_id)                                +3          —
    plaque        plaque.withdrawn                                          −4          —
    veto          member.disciplined          serious warning or worse      total = floor
    grades: excellent ≥ 90 (at most 1/3 of the graded), qualified ≥ 80, basic ≥ 60, unqualified

The term of branch hist-b1 (a … f full members, g probationary since 1 June 2012):

    meetings M1 12 Sep, M2 26 Sep, M3 10 Oct, M4 24 Oct, M5 5 Dec; lecture L1 7 Nov;
    volunteer service V1 17 Nov (6 h), V2 15 Dec (6 h)

         M1  M2          M3  M4  M5       L1      V1  V2  other
    a    P   P           P   P   P        P       P   P   mentors f (+3)
    b    P   A→excused   P   P   excused  P       P   —
    c    P   P           P   P   late     P*      P   —   +1 adjustment dated 20 Nov
    d    P   A           A   P   P        —       —   —   −2 adjustment dated 10 Dec
    e    P   P           P   A   —        P       —   —   plaque withdrawn 25 Nov
    f    P   —           —   —   —        —       —   —   serious warning 1 Nov (veto)
    g    P   —           —   —   —        —       —   —   thought report Q3 on time, graded
                                                           excellent; Q4 handed in 3 Jan, late
    (* entered late: after the moment `known_at` looks from)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as redis

from services.activities.service import DEFINITION as ACTIVITIES
from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

PERIOD = "2012-autumn"

HIST_2012: dict[str, Any] = {
    "id": "hist-2012",
    "version": 1,
    "title": {
        "zh": "历史学院学生党员量化考核办法",
        "en": "School of History: quantified assessment",
    },
    "effective_from": "2012-09-01",
    "periods": [
        {"id": PERIOD, "starts_on": "2012-09-01", "ends_on": "2013-01-31"},
        {"id": "2013-spring", "starts_on": "2013-02-01", "ends_on": "2013-07-31"},
    ],
    "base": "80",
    "floor": "0",
    "ceiling": "100",
    "precision": 1,
    "rules": [
        {
            "id": "meeting",
            "title": "出席全体党员大会",
            "on": "attendance.recorded",
            "when": {"activity_kind": "all_member_meeting", "status": "present"},
            "points": "2",
            "cap": "6",
        },
        {
            "id": "lecture",
            "title": "听党课",
            "on": "attendance.recorded",
            "when": {"activity_kind": "party_lecture", "status": "present"},
            "points": "1.5",
        },
        {
            "id": "volunteer",
            "title": "志愿服务（每小时0.5分）",
            "on": "attendance.recorded",
            "when": {"activity_kind": "volunteer_service"},
            "points_per": {"field": "volunteer_hours", "factor": "0.5"},
            "cap": "5",
        },
        {
            "id": "absent",
            "title": "无故缺席",
            "on": "attendance.recorded",
            "when": {"status": "absent"},
            "points": "-3",
            "cap": "9",
        },
        {
            "id": "late",
            "title": "迟到早退",
            "on": "attendance.recorded",
            "when": {"status": ["late", "left_early"], "activity_kind": "all_member_meeting"},
            "points": "-1",
        },
        {
            "id": "report-on-time",
            "title": "按时汇报",
            "on": "report.submitted",
            "when": {"on_time": True},
            "points": "2",
        },
        {
            "id": "report-late",
            "title": "汇报逾期",
            "on": "report.submitted",
            "when": {"on_time": False},
            "points": "-1",
        },
        {
            "id": "report-excellent",
            "title": "汇报优秀",
            "on": "report.reviewed",
            "when": {"grade": "excellent"},
            "points": "1",
        },
        {
            "id": "mentor",
            "title": "结对帮扶",
            "on": "pairing.formed",
            "member": "mentor_id",
            "points": "3",
        },
        {"id": "plaque", "title": "挂牌被撤", "on": "plaque.withdrawn", "points": "-4"},
    ],
    "vetoes": [
        {
            "id": "discipline",
            "title": "严重警告以上处分",
            "on": "member.disciplined",
            "when": {"measure": ["serious_warning", "probation_within_party", "expulsion"]},
        }
    ],
    "grades": [
        {"grade": "excellent", "min": "90", "max_share": "1/3"},
        {"grade": "qualified", "min": "80"},
        {"grade": "basic", "min": "60"},
        {"grade": "unqualified"},
    ],
    "classification": {"excellent": "excellent", "basic": "lagging", "unqualified": "lagging"},
}

#: The revision considered in January: absence costs 5 (cap 10), "qualified" needs 85. It takes
#: effect in the spring, so it changes nothing live; the what-if runs the autumn under it.
HIST_2012_V2: dict[str, Any] = {
    **HIST_2012,
    "version": 2,
    "effective_from": "2013-02-01",
    "rules": [
        {**rule, "points": "-5", "cap": "10"} if rule["id"] == "absent" else rule
        for rule in HIST_2012["rules"]
    ],
    "grades": [
        {"grade": "excellent", "min": "90", "max_share": "1/3"},
        {"grade": "qualified", "min": "85"},
        {"grade": "basic", "min": "60"},
        {"grade": "unqualified"},
    ],
}

#: The second branch's own: base 60, +5 for every meeting attended, −5 for an absence.
HIST_H2: dict[str, Any] = {
    "id": "hist-h2",
    "version": 1,
    "title": "历史学院第二党支部考核细则",
    "effective_from": "2012-09-01",
    "periods": [{"id": PERIOD, "starts_on": "2012-09-01", "ends_on": "2013-01-31"}],
    "base": "60",
    "floor": "0",
    "ceiling": "100",
    "precision": 1,
    "rules": [
        {
            "id": "present",
            "title": "出席",
            "on": "attendance.recorded",
            "when": {"status": "present"},
            "points": "5",
        },
        {
            "id": "absent",
            "title": "缺席",
            "on": "attendance.recorded",
            "when": {"status": "absent"},
            "points": "-5",
        },
    ],
    "grades": [
        {"grade": "excellent", "min": "85", "max_share": "1/2"},
        {"grade": "qualified", "min": "60"},
        {"grade": "unqualified"},
    ],
    "classification": {"excellent": "excellent", "unqualified": "lagging"},
}

# -- the hand-computed results -----------------------------------------------------------------
#
# Branch hist-b1 under hist-2012 v1 (base 80):
#
#   member  meeting raw→cap  lecture  volunteer raw→cap  absent  late  reports  other   adj   total
#   a       5×2=10 → 6       +1.5     (6+6)×0.5=6 → 5    0       0     0        +3      0     95.5
#   b       3×2=6  → 6       +1.5     6×0.5=3            0 (M2 excused after correction)   90.5
#   c       4×2=8  → 6       +1.5     6×0.5=3            0       −1    0        0       +1    90.5
#   d       3×2=6  → 6       0        0                  2×−3=−6 0     0        0       −2    78.0
#   e       3×2=6  → 6       +1.5     0                  −3      0     0        −4      0     80.5
#   f       1×2=2            0        0                  0       0     0        veto    0      0.0
#   g       1×2=2            0        0                  0       0     +2−1+1   0       0     84.0
#
#   a = 80 + 6 + 1.5 + 5 + 3            = 95.5
#   b = 80 + 6 + 1.5 + 3                = 90.5
#   c = 80 + 6 + 1.5 + 3 − 1 + 1        = 90.5
#   d = 80 + 6 − 6 − 2                  = 78.0
#   e = 80 + 6 + 1.5 − 3 − 4            = 80.5
#   f = vetoed by the serious warning   =  0.0 (the floor)
#   g = 80 + 2 + 2 − 1 + 1              = 84.0 (probationary: ranked, not graded)
#
# Ranks (equal totals share a rank): a 1, b 2, c 2, g 4, e 5, d 6, f 7.
# Grades: six graded members, so at most floor(6 × 1/3) = 2 excellent. a (95.5): 1 member at
# ≥ 95.5, 1 ≤ 2 → excellent. b and c (90.5): 3 members at ≥ 90.5, 3 > 2 → neither may be, both
# fall to qualified (≥ 80). e 80.5 qualified; d 78.0 basic (lagging); f 0.0 unqualified (lagging).
B1_TABLE = [  # member, total, rank, grade, classification
    ("a", "95.5", 1, "excellent", "excellent"),
    ("b", "90.5", 2, "qualified", "neither"),
    ("c", "90.5", 2, "qualified", "neither"),
    ("g", "84.0", 4, None, "neither"),
    ("e", "80.5", 5, "qualified", "neither"),
    ("d", "78.0", 6, "basic", "lagging"),
    ("f", "0.0", 7, "unqualified", "lagging"),
]

# Branch hist-b2 under its own hist-h2 (base 60): meetings N1…N5.
#   x: 5 × +5 = 25            → 85.0   1 at ≥ 85, floor(3 × 1/2) = 1 → excellent
#   y: 4 × +5 − 5 = 15        → 75.0   qualified
#   z: 5 × −5 = −25           → 35.0   unqualified (lagging)
B2_TABLE = [
    ("x", "85.0", 1, "excellent", "excellent"),
    ("y", "75.0", 2, "qualified", "neither"),
    ("z", "35.0", 3, "unqualified", "lagging"),
]

# What-if: the autumn under hist-2012 v2 (absence −5, qualified ≥ 85):
#   d: 80 + 6 − 2×5 − 2 = 74.0 (was 78.0: −4.0), basic → basic
#   e: 80 + 6 + 1.5 − 5 − 4 = 78.5 (was 80.5: −2.0), qualified → basic (needs 85 now)
#   b, c: 90.5 stay qualified (≥ 85); a 95.5 excellent; f vetoed; g 84.0 ungraded
WHAT_IF = {  # member: (old total, new total, delta, old grade, new grade)
    "a": ("95.5", "95.5", "0.0", "excellent", "excellent"),
    "b": ("90.5", "90.5", "0.0", "qualified", "qualified"),
    "c": ("90.5", "90.5", "0.0", "qualified", "qualified"),
    "d": ("78.0", "74.0", "-4.0", "basic", "basic"),
    "e": ("80.5", "78.5", "-2.0", "qualified", "basic"),
    "f": ("0.0", "0.0", "0.0", "unqualified", "unqualified"),
    "g": ("84.0", "84.0", "0.0", None, None),
}


class School:
    def __init__(self, apis: dict[str, Api]) -> None:
        self.apis = apis
        self.roster = RosterClient(apis["roster"])
        api = apis["roster"]
        self.admin = api.auth("university_admin", subject="org-office")
        self.school_admin = api.auth("school_admin", schools=["hist"], subject="hist-office")
        self.auditor = api.auth("auditor")
        self.secretary = api.auth(
            "branch_secretary", branches=["hist-b1"], member_id="a", subject="a"
        )
        self.deputy = api.auth("committee_member", branches=["hist-b1"], member_id="b", subject="b")
        self.before_late_entry: datetime | None = None

    async def post(
        self, service: str, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self.apis[service].client.post(
            path, json=body, headers=headers or self.admin
        )
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()  # type: ignore[no-any-return]

    async def get(self, service: str, path: str, **params: Any) -> Any:
        response = await self.apis[service].client.get(path, params=params, headers=self.auditor)
        assert response.status_code == 200, f"{path}: {response.text}"
        return response.json()

    async def applied_by_scoring(self) -> None:
        """Until scoring has applied everything the roster and activities recorded."""
        scoring = self.apis["scoring"].context

        async def caught_up() -> bool:
            heads = 0
            for name in ("roster", "activities"):
                heads += (await self.apis[name].context.store.head())[0]
            applied = await scoring.pool.fetchval(f'SELECT count(*) FROM "{scoring.schema}".inbox')
            return int(applied) >= heads

        await wait_until(caught_up, within=60, what="scoring to apply the term")

    async def meeting(
        self, activity_id: str, branch: str, kind: str, starts_at: str, **fields: Any
    ) -> None:
        await self.post(
            "activities",
            "/v1/activities",
            {
                "activity_id": activity_id,
                "kind": kind,
                "title": activity_id,
                "branch_id": branch,
                "starts_at": starts_at,
                "place": "历史学院 201",
                **fields,
            },
        )

    async def sheet(self, activity_id: str, lines: dict[str, str]) -> None:
        await self.post(
            "activities",
            f"/v1/activities/{activity_id}/attendance",
            {
                "lines": [
                    {"member_id": m, "status": s, **({"excuse": "请假"} if s == "excused" else {})}
                    for m, s in lines.items()
                ]
            },
        )


@pytest.fixture
async def school(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[School]:
    async with services(
        [ROSTER, ACTIVITIES, SCORING], database_url, stream_prefix, REDIS_URL
    ) as apis:
        made = School(apis)
        await enter_the_term(made)
        yield made


async def enter_the_term(s: School) -> None:
    r = s.roster
    await r.post(
        "/v1/units",
        {"unit_id": "hist", "kind": "school", "name": "历史学院", "established_on": "2012-08-01"},
    )
    for branch in ("hist-b1", "hist-b2"):
        await r.post(
            "/v1/units",
            {
                "unit_id": branch,
                "kind": "branch",
                "name": f"{branch} 学生党支部",
                "parent_id": "hist",
                "branch_kind": "student",
                "established_on": "2012-08-01",
            },
        )
        await r.post(
            "/v1/units",
            {
                "unit_id": f"{branch}-g1",
                "kind": "group",
                "name": "第一党小组",
                "parent_id": branch,
                "established_on": "2012-08-01",
            },
        )
    for n, member in enumerate("abcdef"):
        await r.enrol(
            member,
            "hist-b1",
            number=f"2012100{n}",
            enrolled_on="2012-09-01",
            expected_graduation="2015-07-01",
        )
    await r.enrol(
        "g",
        "hist-b1",
        standing="probationary",
        number="20121010",
        probation_started_on="2012-06-01",
        enrolled_on="2012-09-01",
        expected_graduation="2015-07-01",
    )
    for n, member in enumerate("xyz"):
        await r.enrol(
            member,
            "hist-b2",
            number=f"2012200{n}",
            enrolled_on="2012-09-01",
            expected_graduation="2015-07-01",
        )
    await r.post(
        "/v1/branches/hist-b1/committee",
        {
            "secretary_id": "a",
            "member_ids": ["a", "b"],
            "term_starts_on": "2012-09-05",
            "term_ends_on": "2015-09-04",
            "elected_on": "2012-09-05",
        },
    )
    await r.post(
        "/v1/branches/hist-b1/pairings",
        {"pairing_id": "pair-af", "mentor_id": "a", "mentee_id": "f", "formed_on": "2012-09-20"},
    )
    await r.post(
        "/v1/members/e/plaques",
        {"plaque_id": "pl-e", "kind": "dormitory", "dormitory": "5-201", "issued_on": "2012-09-10"},
    )
    await r.post(
        "/v1/members/e/plaques/pl-e/withdrawal",
        {"withdrawn_on": "2012-11-25", "reason": "宿舍检查不合格"},
    )
    await r.post(
        "/v1/members/f/discipline",
        {"measure": "serious_warning", "decided_on": "2012-11-01", "reason": "考试作弊"},
    )

    # The school writes its own regulation and adopts it; the second branch overrides it.
    await s.post("scoring", "/v1/regulations?published_on=2012-08-25", HIST_2012, s.school_admin)
    await s.post("scoring", "/v1/regulations?published_on=2012-08-28", HIST_H2, s.school_admin)
    await s.post(
        "scoring",
        "/v1/units/hist/regulation",
        {"regulation_id": "hist-2012", "effective_from": "2012-09-01", "decided_on": "2012-08-30"},
        s.school_admin,
    )
    await s.post(
        "scoring",
        "/v1/units/hist-b2/regulation",
        {"regulation_id": "hist-h2", "effective_from": "2012-09-01", "decided_on": "2012-08-30"},
        s.school_admin,
    )

    meeting = "all_member_meeting"
    for activity_id, day in (
        ("M1", "09-12"),
        ("M2", "09-26"),
        ("M3", "10-10"),
        ("M4", "10-24"),
        ("M5", "12-05"),
    ):
        await s.meeting(activity_id, "hist-b1", meeting, f"2012-{day}T19:00:00+08:00")
    await s.meeting("L1", "hist-b1", "party_lecture", "2012-11-07T14:00:00+08:00")
    await s.meeting(
        "V1", "hist-b1", "volunteer_service", "2012-11-17T08:00:00+08:00", volunteer_hours="6"
    )
    await s.meeting(
        "V2", "hist-b1", "volunteer_service", "2012-12-15T08:00:00+08:00", volunteer_hours="6"
    )
    await s.sheet("M1", dict.fromkeys("abcdefg", "present"))
    await s.sheet(
        "M2", {"a": "present", "b": "absent", "c": "present", "d": "absent", "e": "present"}
    )
    await s.sheet(
        "M3", {"a": "present", "b": "present", "c": "present", "d": "absent", "e": "present"}
    )
    await s.sheet(
        "M4", {"a": "present", "b": "present", "c": "present", "d": "present", "e": "absent"}
    )
    await s.sheet("M5", {"a": "present", "b": "excused", "c": "late", "d": "present"})
    await s.sheet("L1", {"a": "present", "b": "present", "e": "present"})
    await s.sheet("V1", {"a": "present", "b": "present", "c": "present"})
    await s.sheet("V2", {"a": "present"})
    # b's absence at M2 was excused after all: the correction keeps the original.
    await s.post(
        "activities",
        "/v1/activities/M2/attendance/corrections",
        {"member_id": "b", "status": "excused", "excuse": "病假", "reason": "补交请假条"},
    )
    # g's thought reports (probation began 1 June: the quarters end 30 Sep and 31 Dec).
    await s.post("activities", "/v1/branches/hist-b1/report-obligations", {"through": "2012-12-31"})
    await s.post(
        "activities",
        "/v1/reports/thought-g-2012-Q3/submission",
        {"submitted_at": "2012-09-28T21:00:00+08:00"},
    )
    await s.post(
        "activities",
        "/v1/reports/thought-g-2012-Q3/review",
        {"grade": "excellent", "reviewed_at": "2012-10-08T10:00:00+08:00"},
    )
    await s.post(
        "activities",
        "/v1/reports/thought-g-2012-Q4/submission",
        {"submitted_at": "2013-01-03T09:00:00+08:00"},
    )

    for n, (activity_id, day) in enumerate(
        (("N1", "09-13"), ("N2", "09-27"), ("N3", "10-11"), ("N4", "10-25"), ("N5", "11-08"))
    ):
        await s.meeting(activity_id, "hist-b2", meeting, f"2012-{day}T19:00:00+08:00")
        await s.sheet(
            activity_id, {"x": "present", "y": "absent" if n == 2 else "present", "z": "absent"}
        )

    # Dated adjustments, four eyes: a asks, b approves.
    for adjustment_id, member, points, day in (
        ("adj-c", "c", "1", "2012-11-20"),
        ("adj-d", "d", "-2", "2012-12-10"),
    ):
        await s.post(
            "scoring",
            "/v1/branches/hist-b1/adjustments",
            {
                "adjustment_id": adjustment_id,
                "member_id": member,
                "points": points,
                "reason": "支部委员会决定",
                "effective_on": day,
            },
            s.secretary,
        )
        await s.post(
            "scoring", f"/v1/branches/hist-b1/adjustments/{adjustment_id}/approval", {}, s.deputy
        )

    # c's attendance at the lecture is entered late: what was known before it, known_at shows.
    await s.applied_by_scoring()
    await asyncio.sleep(0.01)
    s.before_late_entry = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await s.post(
        "activities",
        "/v1/activities/L1/attendance",
        {"lines": [{"member_id": "c", "status": "present"}]},
    )
    await s.post("scoring", "/v1/regulations?published_on=2013-01-20", HIST_2012_V2, s.school_admin)
    await s.applied_by_scoring()


def table_of(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (m["member_id"], m["total"], m["rank"], m["grade"], m["classification"])
        for m in body["members"]
    ]


async def test_branch_one_under_its_school_regulation(school: School) -> None:
    body = await school.get("scoring", f"/v1/branches/hist-b1/periods/{PERIOD}")
    assert (body["regulation_id"], body["regulation_version"], body["regulation_source"]) == (
        "hist-2012",
        1,
        "school",
    )
    assert table_of(body) == B1_TABLE


async def test_branch_two_under_its_own_regulation(school: School) -> None:
    body = await school.get("scoring", f"/v1/branches/hist-b2/periods/{PERIOD}")
    assert (body["regulation_id"], body["regulation_source"]) == ("hist-h2", "own")
    assert table_of(body) == B2_TABLE


async def test_the_school_summary_shows_each_branch_under_its_own_regulation(
    school: School,
) -> None:
    rows = await school.get("scoring", f"/v1/schools/hist/periods/{PERIOD}")
    by_branch = {row["branch_id"]: row for row in rows}
    b1, b2 = by_branch["hist-b1"], by_branch["hist-b2"]
    # hist-b1: (95.5 + 90.5 + 90.5 + 84 + 80.5 + 78 + 0) / 7 = 519 / 7 = 74.14… → 74.1
    assert (b1["regulation_id"], b1["average"], b1["highest"], b1["lowest"]) == (
        "hist-2012",
        "74.1",
        "95.5",
        "0.0",
    )
    assert b1["grades"] == {
        "excellent": 1,
        "qualified": 3,
        "basic": 1,
        "unqualified": 1,
        "ungraded": 1,
    }
    # hist-b2: (85 + 75 + 35) / 3 = 65.0
    assert (b2["regulation_id"], b2["average"], b2["highest"], b2["lowest"]) == (
        "hist-h2",
        "65.0",
        "85.0",
        "35.0",
    )


async def test_the_ledger_explains_every_point_and_ends_at_the_total(school: School) -> None:
    [a] = await school.get("scoring", "/v1/members/a/score", period_id=PERIOD)
    # meeting: 2, 2, 2, then capped (0, 0); lecture 1.5; volunteer 3 then 2 of 3 (cap 5);
    # mentor 3. In business-time order: M1 12 Sep, mentor 20 Sep, M2, M3, M4, L1, V1, M5, V2.
    assert [(e["rule_id"], e["points"], e["counted"]) for e in a["ledger"]] == [
        ("meeting", "2.0", "2.0"),
        ("mentor", "3.0", "3.0"),
        ("meeting", "2.0", "2.0"),
        ("meeting", "2.0", "2.0"),
        ("meeting", "2.0", "0.0"),
        ("lecture", "1.5", "1.5"),
        ("volunteer", "3.0", "3.0"),
        ("meeting", "2.0", "0.0"),
        ("volunteer", "3.0", "2.0"),
    ]
    assert [e["running_total"] for e in a["ledger"]][-1] == a["total"] == "95.5"
    assert a["by_rule"]["meeting"] == {"raw": "10.0", "counted": "6.0"}
    assert a["by_rule"]["volunteer"] == {"raw": "6.0", "counted": "5.0"}

    [d] = await school.get("scoring", "/v1/members/d/score", period_id=PERIOD)
    # 80 +2 (M1) −3 (M2) −3 (M3) +2 (M4) +2 (M5) −2 (adjustment, 10 Dec) = 78
    assert [(e["kind"], e["rule_id"], e["running_total"]) for e in d["ledger"]] == [
        ("rule", "meeting", "82.0"),
        ("rule", "absent", "79.0"),
        ("rule", "absent", "76.0"),
        ("rule", "meeting", "78.0"),
        ("rule", "meeting", "80.0"),
        ("adjustment", "adjustment", "78.0"),
    ]
    [adjustment] = [e for e in d["ledger"] if e["kind"] == "adjustment"]
    assert (adjustment["requested_by"], adjustment["approved_by"]) == ("a", "b")

    [f] = await school.get("scoring", "/v1/members/f/score", period_id=PERIOD)
    # 80 + 2 = 82, then the veto sets the floor: a last line of −82.0 says so.
    assert [(e["kind"], e["points"], e["running_total"]) for e in f["ledger"]] == [
        ("rule", "2.0", "82.0"),
        ("veto", "-82.0", "0.0"),
    ]


async def test_the_corrected_absence_counts_no_more(school: School) -> None:
    [b] = await school.get("scoring", "/v1/members/b/score", period_id=PERIOD)
    assert "absent" not in b["by_rule"]
    assert b["total"] == "90.5"


async def test_as_of_mid_period_and_dated_adjustments(school: School) -> None:
    async def c_total(**params: Any) -> str:
        [period] = await school.get("scoring", "/v1/members/c/score", period_id=PERIOD, **params)
        return str(period["total"])

    # By 15 October: M1, M2, M3 → 80 + 6 = 86.0
    assert await c_total(as_of="2012-10-15") == "86.0"
    # By 19 November: + L1 1.5 + V1 3 = 90.5; the +1 dated 20 November is not there yet
    assert await c_total(as_of="2012-11-19") == "90.5"
    assert await c_total(as_of="2012-11-20") == "91.5"
    # M5 (late, −1) on 5 December: 90.5 at the end
    assert await c_total(as_of="2012-12-31") == "90.5"


async def test_a_late_entry_read_with_known_at_before_and_after(school: School) -> None:
    assert school.before_late_entry is not None
    before = school.before_late_entry.isoformat()

    async def c_total(**params: Any) -> str:
        [period] = await school.get("scoring", "/v1/members/c/score", period_id=PERIOD, **params)
        return str(period["total"])

    # What the screen showed before the lecture was entered for c: 90.5 − 1.5 = 89.0
    assert await c_total(known_at=before) == "89.0"
    assert await c_total() == "90.5"
    # Before the late entry b was alone at 90.5 and c at 89.0, so the tie did not exist yet:
    #   graded totals then: a 95.5, b 90.5, c 89.0, e 80.5, d 78.0, f 0.0
    #   b: members at ≥ 90.5 = 2 (a, b), 2 ≤ floor(6 × 1/3) = 2 → excellent
    then = table_of(
        await school.get("scoring", f"/v1/branches/hist-b1/periods/{PERIOD}", known_at=before)
    )
    assert then[:3] == [
        ("a", "95.5", 1, "excellent", "excellent"),
        ("b", "90.5", 2, "excellent", "excellent"),
        ("c", "89.0", 3, "qualified", "neither"),
    ]


async def test_what_if_the_autumn_ran_under_the_revision(school: School) -> None:
    body = await school.post(
        "scoring",
        "/v1/what-if",
        {
            "period_id": PERIOD,
            "branch_id": "hist-b1",
            "regulation_id": "hist-2012",
            "regulation_version": 2,
        },
        school.auditor,
    )
    got = {
        m["member_id"]: (m["old_total"], m["new_total"], m["delta"], m["old_grade"], m["new_grade"])
        for m in body["members"]
    }
    assert got == WHAT_IF
    assert body["grades_changed"] == 1  # e: qualified → basic
    # And nothing changed live: the revision takes effect only in the spring.
    live = await school.get("scoring", f"/v1/branches/hist-b1/periods/{PERIOD}")
    assert table_of(live) == B1_TABLE
