"""Role and scope, endpoint by endpoint (issue 14, "Scopes").

A token of the right role is not enough: it must also cover what the call touches — a branch, a
school, a member — whether the call names it in the path, in the body, or through an object it
looks up (an activity, a report obligation, a deadline, an adjustment, a guide's appointment).
Two schools with a branch each are entered through the four services' APIs; then every
endpoint of the four OpenAPI documents is called by each of the people below: those who may
get through (2xx, or 409 when the service refuses the command by its own rules), every one else
gets 403 and changes nothing. An endpoint that is not in the table fails the walk.

The people, each with the scope their token names:

==========  =======================================================
uni         university admin
auditor     auditor (reads everything, changes nothing)
admin_a     school admin of school sa
admin_b     school admin of school sb
sec_a       secretary of branch sa-b1 (member a-sec)
com_a       committee member of branch sa-b1 (member a-com)
sec_b       secretary of branch sb-b1 (member b-sec)
com_b       committee member of branch sb-b1 (member b-com)
mem_a       member a-mem of branch sa-b1
mem_a2      member a-mem2 of branch sa-b1 (another member, same branch)
mem_b       member b-mem of branch sb-b1
campus      a campus system (streams only)
==========  =======================================================

What the table calls touches branch sa-b1 of school sa unless it says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from runtime.http import create_app
from services.activities.service import DEFINITION as ACTIVITIES
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from services.scenario.load import CONSUMES
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services

pytestmark = pytest.mark.timeout(300)

OPENAPI_DIR = Path(__file__).resolve().parents[2] / "contracts" / "openapi"
DEFINITIONS = {d.name: d for d in (ROSTER, ACTIVITIES, SCORING, NOTIFY)}

PEOPLE: tuple[str, ...] = (
    "uni",
    "auditor",
    "admin_a",
    "admin_b",
    "sec_a",
    "com_a",
    "sec_b",
    "com_b",
    "mem_a",
    "mem_a2",
    "mem_b",
    "campus",
)

#: Who reads branch sa-b1, and who changes it.
READ_A = ("uni", "auditor", "admin_a", "sec_a", "com_a")
WRITE_A = ("uni", "admin_a", "sec_a", "com_a")
#: Member a-mem's own record: the branch's readers and a-mem.
OWN_A = (*READ_A, "mem_a")
SCHOOL_A = ("uni", "auditor", "admin_a")
UNIVERSITY = ("uni", "auditor")
#: Every person with a token the API answers (not campus systems).
ANY_PERSON = tuple(p for p in PEOPLE if p != "campus")
EVERYONE = (*PEOPLE, "anonymous")

#: Answers of a call that got past the role and scope checks: done, or refused by the
#: service's own rules (a second person repeating a command, a member not on the committee).
THROUGH = {200, 201, 202, 409}


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    path: str  # as the OpenAPI document names it
    body: Any = None
    may: tuple[str, ...] = ()
    at: Mapping[str, str] = field(default_factory=dict)  # path parameters besides IDS
    query: Mapping[str, Any] = field(default_factory=dict)
    public: bool = False  # answered without a token (operations)

    @property
    def may_not(self) -> tuple[str, ...]:
        return tuple(p for p in PEOPLE if p not in self.may)

    @property
    def url(self) -> str:
        return self.path.format(**{**IDS, **self.at})

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.url}"


#: The path parameters every call uses unless it says otherwise.
IDS = {
    "branch_id": "sa-b1",
    "school_id": "sa",
    "unit_id": "sa-b1",
    "group_id": "sa-b1-g1",
    "member_id": "a-mem",
    "activity_id": "act-a",
    "guide_id": "guide-a",
    "period_id": "2010",
    "year": "2010",
    "deadline_id": "graduation-a-mem",
    "recipient_id": "a-mem",
}


def audit_calls(service: str) -> list[Call]:
    """What every service answers: operations for anyone, its record for the university's
    admin and auditors only."""
    public = [
        Call(service, "GET", path, may=PEOPLE, public=True)
        for path in ("/health", "/ready", "/metrics")
    ]
    record = [
        Call(service, "GET", "/v1/audit/verify", may=UNIVERSITY),
        Call(service, "POST", "/v1/audit/verify/checkpoints", {"checkpoints": []}, UNIVERSITY),
        Call(service, "GET", "/v1/audit/checkpoint", may=UNIVERSITY),
        Call(
            service,
            "GET",
            "/v1/audit/proof/inclusion",
            may=UNIVERSITY,
            query={"position": 1, "tree_size": 2},
        ),
        Call(
            service,
            "GET",
            "/v1/audit/proof/consistency",
            may=UNIVERSITY,
            query={"first": 1, "second": 2},
        ),
        Call(service, "GET", "/v1/audit/witnessed", may=UNIVERSITY),
        Call(service, "GET", "/v1/audit/events", may=UNIVERSITY, query={"limit": 5}),
        Call(service, "GET", "/v1/audit/progress", may=UNIVERSITY),
        Call(service, "GET", "/v1/audit/failed-events", may=UNIVERSITY),
        Call(service, "GET", "/v1/audit/dead-letters", may=UNIVERSITY),
    ]
    return public + record


OWN_REGULATION = {
    "id": "sa-own",
    "version": 1,
    "title": "学院试行细则",
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

R, A, S, N = "roster", "activities", "scoring", "notify"

TABLE: list[Call] = [
    *(call for service in (R, A, S, N) for call in audit_calls(service)),
    # -- roster: organisation ---------------------------------------------------------------
    Call(
        R,
        "POST",
        "/v1/units",
        {"unit_id": "sc", "kind": "school", "name": "新学院", "established_on": "2010-04-01"},
        ("uni",),
    ),
    Call(
        R,
        "POST",
        "/v1/units",
        {
            "unit_id": "sa-b2",
            "kind": "branch",
            "name": "第二党支部",
            "parent_id": "sa",
            "branch_kind": "student",
            "established_on": "2010-04-01",
        },
        ("uni", "admin_a"),
    ),
    Call(
        R,
        "POST",
        "/v1/units",
        {
            "unit_id": "sa-b1-g3",
            "kind": "group",
            "name": "第三党小组",
            "parent_id": "sa-b1",
            "established_on": "2010-04-01",
        },
        WRITE_A,
    ),
    Call(R, "GET", "/v1/units", may=ANY_PERSON),
    Call(R, "GET", "/v1/units/{unit_id}", may=ANY_PERSON),
    Call(
        R,
        "POST",
        "/v1/branches/{branch_id}/committee",
        {
            "secretary_id": "a-sec",
            "member_ids": ["a-sec", "a-com"],
            "term_starts_on": "2010-05-05",
            "term_ends_on": "2012-05-04",
            "elected_on": "2010-05-05",
        },
        WRITE_A,
    ),
    Call(R, "GET", "/v1/branches/{branch_id}/committee", may=READ_A),
    Call(
        R,
        "POST",
        "/v1/branches/{branch_id}/elections",
        {
            "election_id": "el-a",
            "held_on": "2010-05-05",
            "seats": 2,
            "candidates": ["a-sec", "a-com", "a-mem2"],
            "present": ["a-sec", "a-com", "a-mem2", "a-leaver"],
            "ballots_cast": 4,
            "tally": {"a-sec": 4, "a-com": 3, "a-mem2": 1},
            "secretary_id": "a-sec",
        },
        WRITE_A,
    ),
    Call(R, "GET", "/v1/branches/{branch_id}/elections", may=READ_A),
    Call(
        R,
        "POST",
        "/v1/groups/{group_id}/links",
        {
            "link_id": "ln-a",
            "target_kind": "company",
            "target": "一连",
            "established_on": "2010-05-21",
        },
        WRITE_A,
    ),
    Call(R, "GET", "/v1/groups/{group_id}/links", may=READ_A),
    # -- roster: members (the member's branch, looked up from the member) --------------------
    Call(
        R,
        "POST",
        "/v1/members",
        {
            "member_id": "a-new",
            "branch_id": "sa-b1",
            "student_number": "20109901",
            "name": "新党员",
            "group_id": "sa-b1-g1",
            "standing": "full",
            "joined_on": "2009-06-01",
            "expected_graduation": "2012-07-01",
            "enrolled_on": "2010-05-04",
        },
        WRITE_A,
    ),
    Call(R, "GET", "/v1/branches/{branch_id}/members", may=READ_A),
    Call(R, "GET", "/v1/members/{member_id}", may=OWN_A),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/moves",
        {"dormitory": "9-101", "effective_on": "2010-09-01"},
        WRITE_A,
        {"member_id": "a-mem2"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/transfer-out",
        {"destination": "某部队", "transferred_on": "2011-06-20", "reason": "graduation"},
        WRITE_A,
        {"member_id": "a-leaver"},
    ),
    # erasing a member who left is the university's or their school's decision, not a branch's
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/erasure",
        {"erased_on": "2024-01-02", "reason": "保存期限届满"},
        ("uni", "admin_a"),
        {"member_id": "a-leaver"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/categories",
        {"dimension": "cadre", "value": "cadre", "reason": "任班长", "effective_on": "2010-09-10"},
        WRITE_A,
        {"member_id": "a-mem2"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/conversion",
        {"decided_on": "2011-04-22"},
        WRITE_A,
        {"member_id": "a-p1"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/probation-extension",
        {"months": 6, "reason": "继续考察", "decided_on": "2011-04-25"},
        WRITE_A,
        {"member_id": "a-p2"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/responsibility-space",
        {"dormitory": "8-312", "effective_on": "2010-05-06"},
        WRITE_A,
        {"member_id": "a-mem2"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/agreements",
        {"agreement_id": "ag-a", "academic_year": "2009-2010", "signed_on": "2010-05-10"},
        WRITE_A,
        {"member_id": "a-mem2"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/plaques",
        {
            "plaque_id": "pl-a2",
            "kind": "dormitory",
            "dormitory": "8-312",
            "issued_on": "2010-05-12",
        },
        WRITE_A,
        {"member_id": "a-mem2"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/discipline",
        {"measure": "warning", "decided_on": "2010-11-20", "reason": "违反宿舍纪律"},
        WRITE_A,
        {"member_id": "a-mem2"},
    ),
    Call(
        R,
        "POST",
        "/v1/members/{member_id}/plaques/{plaque_id}/withdrawal",
        {"withdrawn_on": "2010-11-15", "reason": "宿舍卫生检查不合格"},
        WRITE_A,
        {"member_id": "a-mem2", "plaque_id": "pl-a"},
    ),
    # -- roster: guides (the university's; each appointment is a branch's) --------------------
    Call(
        R,
        "POST",
        "/v1/guides",
        {
            "guide_id": "guide-x",
            "name": "李老师",
            "kind": "faculty",
            "organisation": "某学院",
            "registered_on": "2010-05-15",
        },
        ("uni", "admin_a", "admin_b", "sec_a", "sec_b"),
    ),
    Call(
        R,
        "POST",
        "/v1/guides/{guide_id}/erasure",
        {"erased_on": "2024-01-02", "reason": "保存期限届满"},
        ("uni",),
        {"guide_id": "guide-x"},
    ),
    # Readers of guides; each sees the appointments of their own scope (test below).
    Call(
        R,
        "GET",
        "/v1/guides/{guide_id}",
        may=("uni", "auditor", "admin_a", "admin_b", "sec_a", "com_a", "sec_b", "com_b"),
    ),
    Call(
        R,
        "POST",
        "/v1/guides/{guide_id}/appointments",
        {
            "appointment_id": "ap-a2",
            "branch_id": "sa-b1",
            "member_ids": ["a-mem"],
            "term_starts_on": "2010-06-01",
            "term_ends_on": "2011-05-31",
        },
        WRITE_A,
    ),
    Call(
        R,
        "POST",
        "/v1/guides/{guide_id}/appointments/{appointment_id}/end",
        {"ended_on": "2011-01-10", "reason": "调防"},
        WRITE_A,
        {"appointment_id": "ap-a"},
    ),
    Call(R, "GET", "/v1/branches/{branch_id}/guides", may=READ_A),
    # -- roster: archives, responsibility, care -----------------------------------------------
    Call(R, "GET", "/v1/archives", may=READ_A, query={"unit_id": "sa-b1"}),
    Call(R, "GET", "/v1/archives", may=SCHOOL_A, query={"unit_id": "sa"}),
    Call(R, "GET", "/v1/archives", may=SCHOOL_A, query={"unit_id": "sa", "format": "csv"}),
    Call(R, "GET", "/v1/archives", may=UNIVERSITY),
    Call(R, "GET", "/v1/branches/{branch_id}/without-agreement", may=READ_A),
    Call(
        R,
        "POST",
        "/v1/branches/{branch_id}/pairings",
        {
            "pairing_id": "pair-a2",
            "mentor_id": "a-com",
            "mentee_id": "a-mem2",
            "formed_on": "2010-05-20",
        },
        WRITE_A,
    ),
    Call(R, "GET", "/v1/branches/{branch_id}/pairings", may=READ_A),
    Call(
        R,
        "POST",
        "/v1/branches/{branch_id}/pairings/{pairing_id}/end",
        {"ended_on": "2010-10-25", "reason": "中期考核"},
        WRITE_A,
        {"pairing_id": "pair-a"},
    ),
    Call(R, "GET", "/v1/branches/{branch_id}/pairing-suggestions", may=READ_A),
    # -- activities (the branch in the body, or the activity's or the obligation's) ----------
    Call(
        A,
        "POST",
        "/v1/activities",
        {
            "activity_id": "act-new",
            "kind": "all_member_meeting",
            "title": "支部大会",
            "branch_id": "sa-b1",
            "place": "301",
            "starts_at": "2010-09-10T19:00:00+08:00",
        },
        WRITE_A,
    ),
    Call(
        A,
        "POST",
        "/v1/activities/{activity_id}/reschedule",
        {"starts_at": "2010-07-02T19:30:00+08:00"},
        WRITE_A,
        {"activity_id": "act-move"},
    ),
    Call(
        A,
        "POST",
        "/v1/activities/{activity_id}/cancel",
        {"reason": "暑假", "cancelled_at": "2010-07-20T10:00:00+08:00"},
        WRITE_A,
        {"activity_id": "act-cancel"},
    ),
    Call(
        A,
        "POST",
        "/v1/branches/{branch_id}/semesters",
        {
            "semester_id": "2010-autumn",
            "starts_on": "2010-09-06",
            "weeks": 2,
            "weekday": 3,
            "at": "19:00:00",
            "place": "301",
        },
        WRITE_A,
    ),
    Call(A, "GET", "/v1/activities/{activity_id}", may=READ_A),
    Call(A, "GET", "/v1/branches/{branch_id}/activities", may=READ_A),
    Call(
        A,
        "POST",
        "/v1/activities/{activity_id}/attendance",
        {"lines": [{"member_id": "a-mem", "status": "present"}]},
        WRITE_A,
        {"activity_id": "act-a2"},
    ),
    Call(A, "GET", "/v1/activities/{activity_id}/attendance", may=READ_A),
    Call(
        A,
        "POST",
        "/v1/activities/{activity_id}/attendance/corrections",
        {"member_id": "a-mem", "status": "excused", "excuse": "病假", "reason": "补交请假条"},
        WRITE_A,
    ),
    Call(
        A,
        "POST",
        "/v1/branches/{branch_id}/report-cadence",
        {"every_weeks": 4, "starts_on": "2010-05-10"},
        WRITE_A,
    ),
    Call(
        A,
        "POST",
        "/v1/branches/{branch_id}/report-obligations",
        {"through": "2010-12-31"},
        WRITE_A,
    ),
    # a-mem's own report: a-mem, or the branch for them
    Call(
        A,
        "POST",
        "/v1/reports/{obligation_id}/submission",
        {"submitted_at": "2010-06-28T20:00:00+08:00"},
        (*WRITE_A, "mem_a"),
        {"obligation_id": "thought-a-mem-2010-Q2"},
    ),
    Call(
        A,
        "POST",
        "/v1/reports/{obligation_id}/review",
        {"grade": "excellent", "reviewed_at": "2010-10-05T09:00:00+08:00"},
        WRITE_A,
        {"obligation_id": "thought-a-mem-2010-Q3"},
    ),
    Call(A, "GET", "/v1/members/{member_id}/obligations", may=OWN_A),
    Call(A, "GET", "/v1/branches/{branch_id}/obligations", may=READ_A),
    Call(
        A,
        "POST",
        "/v1/branches/{branch_id}/budgets/{year}",
        {"lines": [{"line": "outings", "amount_fen": 50000}], "planned_on": "2011-01-08"},
        WRITE_A,
        {"year": "2011"},
    ),
    Call(A, "GET", "/v1/branches/{branch_id}/budgets/{year}", may=READ_A),
    Call(
        A,
        "POST",
        "/v1/branches/{branch_id}/budgets/{year}/expenses",
        {
            "expense_id": "ex-a",
            "line": "outings",
            "amount_fen": 1000,
            "spent_on": "2010-07-01",
            "description": "参观",
        },
        WRITE_A,
    ),
    # -- scoring ----------------------------------------------------------------------------
    # a regulation of one's own (a school admin's is their school's: test_regulations_per_school)
    Call(
        S,
        "POST",
        "/v1/regulations",
        OWN_REGULATION,
        ("uni", "admin_a", "admin_b"),
        query={"published_on": "2010-04-25"},
    ),
    Call(S, "GET", "/v1/regulations", may=ANY_PERSON),
    Call(
        S,
        "POST",
        "/v1/units/{unit_id}/regulation",
        {"regulation_id": "nde-2010", "effective_from": "2010-05-01", "decided_on": "2010-04-30"},
        ("uni", "admin_a"),
    ),
    Call(
        S,
        "POST",
        "/v1/units/{unit_id}/regulation",
        {"regulation_id": "nde-2010", "effective_from": "2010-05-01", "decided_on": "2010-04-30"},
        ("uni", "admin_a"),
        {"unit_id": "sa"},
    ),
    Call(S, "GET", "/v1/units/{unit_id}/regulation", may=ANY_PERSON),
    Call(S, "GET", "/v1/members/{member_id}/score", may=OWN_A),
    Call(S, "GET", "/v1/branches/{branch_id}/periods/{period_id}", may=READ_A),
    Call(S, "GET", "/v1/schools/{school_id}/periods/{period_id}", may=SCHOOL_A),
    Call(S, "GET", "/v1/periods/{period_id}/summary", may=UNIVERSITY),
    Call(
        S,
        "POST",
        "/v1/branches/{branch_id}/adjustments",
        {
            "adjustment_id": "adj-a2",
            "member_id": "a-mem2",
            "points": "1",
            "reason": "表彰",
            "effective_on": "2010-10-16",
        },
        WRITE_A,
    ),
    # the committee member approves what the secretary asked for (the others: 409)
    Call(
        S,
        "POST",
        "/v1/branches/{branch_id}/adjustments/{adjustment_id}/approval",
        None,
        WRITE_A,
        {"adjustment_id": "adj-a"},
    ),
    Call(
        S,
        "POST",
        "/v1/branches/{branch_id}/periods/{period_id}/close",
        {"closed_on": "2010-12-31"},
        WRITE_A,
    ),
    Call(
        S,
        "POST",
        "/v1/branches/{branch_id}/periods/{period_id}/reopen",
        {"reason": "补录", "reopened_on": "2011-01-05"},
        WRITE_A,
    ),
    Call(
        S,
        "POST",
        "/v1/what-if",
        {"period_id": "2010", "branch_id": "sa-b1", "regulation_version": 1},
        READ_A,
    ),
    Call(
        S,
        "POST",
        "/v1/what-if",
        {"period_id": "2010", "school_id": "sa", "regulation_version": 1},
        SCHOOL_A,
    ),
    Call(S, "POST", "/v1/what-if", {"period_id": "2010", "regulation_version": 1}, UNIVERSITY),
    Call(S, "POST", "/v1/replay", None, UNIVERSITY),
    # -- notify -----------------------------------------------------------------------------
    Call(N, "GET", "/v1/members/{member_id}/deadlines", may=OWN_A),
    Call(N, "GET", "/v1/branches/{branch_id}/deadlines", may=READ_A),
    Call(N, "GET", "/v1/schools/{school_id}/deadlines", may=SCHOOL_A),
    Call(N, "GET", "/v1/deadlines/{deadline_id}", may=OWN_A),
    Call(
        N,
        "GET",
        "/v1/deadlines/{deadline_id}",
        may=READ_A,
        at={"deadline_id": "year_end_assessment-sa-b1-2010"},
    ),
    Call(N, "GET", "/v1/dead-letters", may=UNIVERSITY),
    Call(N, "GET", "/v1/dead-letters", may=READ_A, query={"branch_id": "sa-b1"}),
    Call(N, "GET", "/v1/branches/{branch_id}/calendar.ics", may=READ_A),
    # a member's preferences: the member, their branch's committee, their school's admin, the
    # university's; a school office's: its school's admin and the university's
    Call(
        N,
        "PUT",
        "/v1/recipients/{recipient_id}",
        {"channels": ["email"], "email": "a-mem@example.edu"},
        (*WRITE_A, "mem_a"),
    ),
    Call(
        N,
        "PUT",
        "/v1/recipients/{recipient_id}",
        {"channels": ["email"], "email": "office@sa.example.edu"},
        ("uni", "admin_a"),
        {"recipient_id": "office-sa"},
    ),
]


# -- the world ------------------------------------------------------------------------------


class World:
    def __init__(self, apis: dict[str, Api]) -> None:
        self.apis = apis
        self.roster = RosterClient(apis["roster"])
        auth = apis["roster"].auth
        self.tokens: dict[str, dict[str, str]] = {
            "uni": auth("university_admin", subject="uni-office"),
            "auditor": auth("auditor", subject="auditor-1"),
            "admin_a": auth("school_admin", schools=["sa"], subject="admin-sa"),
            "admin_b": auth("school_admin", schools=["sb"], subject="admin-sb"),
            "sec_a": auth(
                "branch_secretary", branches=["sa-b1"], member_id="a-sec", subject="a-sec"
            ),
            "com_a": auth(
                "committee_member", branches=["sa-b1"], member_id="a-com", subject="a-com"
            ),
            "sec_b": auth(
                "branch_secretary", branches=["sb-b1"], member_id="b-sec", subject="b-sec"
            ),
            "com_b": auth(
                "committee_member", branches=["sb-b1"], member_id="b-com", subject="b-com"
            ),
            "mem_a": auth("member", member_id="a-mem", subject="a-mem"),
            "mem_a2": auth("member", member_id="a-mem2", subject="a-mem2"),
            "mem_b": auth("member", member_id="b-mem", subject="b-mem"),
            "campus": auth("campus_system", subject="campus-gateway"),
            "anonymous": {},
        }

    async def call(self, call: Call, who: str) -> tuple[int, str]:
        response = await self.apis[call.service].client.request(
            call.method,
            call.url,
            params=dict(call.query),
            json=call.body,
            headers=self.tokens[who],
        )
        return response.status_code, response.text

    async def post(self, service: str, path: str, body: dict[str, Any], who: str = "uni") -> Any:
        response = await self.apis[service].client.post(path, json=body, headers=self.tokens[who])
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()

    async def settle(self, within: float = 90.0) -> None:
        """Until every service has applied what its producers recorded, twice in a row."""
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


async def enter(w: World) -> None:
    """Two schools with a branch each, their members, and one of each thing the table touches,
    entered by the university's admin (the adjustment by the secretary who asks for it)."""
    r = w.roster
    for school in ("sa", "sb"):
        await r.post(
            "/v1/units",
            {
                "unit_id": school,
                "kind": "school",
                "name": f"{school} 学院",
                "established_on": "2010-04-01",
            },
        )
    for unit, kind, parent in (
        ("sa-b1", "branch", "sa"),
        ("sb-b1", "branch", "sb"),
        ("sa-b1-g1", "group", "sa-b1"),
        ("sa-b1-g2", "group", "sa-b1"),
        ("sb-b1-g1", "group", "sb-b1"),
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
    for member in ("a-sec", "a-com", "a-mem2", "a-leaver"):
        await r.enrol(member, "sa-b1")
    for member in ("a-mem", "a-p1", "a-p2"):
        await r.enrol(member, "sa-b1", standing="probationary")
    for member in ("b-sec", "b-com", "b-mem"):
        await r.enrol(member, "sb-b1")
    for branch, secretary, deputy in (("sa-b1", "a-sec", "a-com"), ("sb-b1", "b-sec", "b-com")):
        await r.post(
            f"/v1/branches/{branch}/committee",
            {
                "secretary_id": secretary,
                "member_ids": [secretary, deputy],
                "term_starts_on": "2010-05-05",
                "term_ends_on": "2012-05-04",
                "elected_on": "2010-05-05",
            },
        )
    await r.post(
        "/v1/members/a-mem2/plaques",
        {
            "plaque_id": "pl-a",
            "kind": "bed",
            "dormitory": "8-312",
            "bed": "1",
            "issued_on": "2010-05-12",
        },
    )
    await r.post(
        "/v1/guides",
        {
            "guide_id": "guide-a",
            "name": "王连长",
            "kind": "army_officer",
            "organisation": "某部三连",
            "registered_on": "2010-05-15",
        },
    )
    for appointment, branch, member in (("ap-a", "sa-b1", "a-mem2"), ("ap-b", "sb-b1", "b-mem")):
        await r.post(
            "/v1/guides/guide-a/appointments",
            {
                "appointment_id": appointment,
                "branch_id": branch,
                "member_ids": [member],
                "term_starts_on": "2010-06-01",
                "term_ends_on": "2011-05-31",
            },
        )
    await r.post(
        "/v1/branches/sa-b1/pairings",
        {
            "pairing_id": "pair-a",
            "mentor_id": "a-sec",
            "mentee_id": "a-mem",
            "formed_on": "2010-05-20",
        },
    )
    await w.settle()

    meeting = {
        "kind": "all_member_meeting",
        "title": "全体党员大会",
        "branch_id": "sa-b1",
        "place": "301",
    }
    for activity, starts in (
        ("act-a", "2010-06-10T19:00:00+08:00"),
        ("act-a2", "2010-06-24T19:00:00+08:00"),
        ("act-move", "2010-07-01T19:00:00+08:00"),
        ("act-cancel", "2010-08-01T19:00:00+08:00"),
    ):
        await w.post(
            "activities",
            "/v1/activities",
            {**meeting, "activity_id": activity, "starts_at": starts},
        )
    await w.post(
        "activities",
        "/v1/activities/act-a/attendance",
        {
            "lines": [
                {"member_id": "a-mem", "status": "absent"},
                {"member_id": "a-sec", "status": "present"},
            ]
        },
    )
    await w.post("activities", "/v1/branches/sa-b1/report-obligations", {"through": "2010-12-31"})
    await w.post(
        "activities",
        "/v1/reports/thought-a-mem-2010-Q3/submission",
        {"submitted_at": "2010-09-28T20:00:00+08:00"},
        "mem_a",
    )
    await w.post(
        "activities",
        "/v1/branches/sa-b1/budgets/2010",
        {"lines": [{"line": "outings", "amount_fen": 70000}], "planned_on": "2010-05-08"},
    )
    await w.settle()
    await w.post(
        "scoring",
        "/v1/branches/sa-b1/adjustments",
        {
            "adjustment_id": "adj-a",
            "member_id": "a-mem2",
            "points": "2",
            "reason": "抗洪表彰",
            "effective_on": "2010-10-15",
        },
        "sec_a",
    )
    await w.settle()


@pytest.fixture
async def world(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[World]:
    async with services(
        [ROSTER, ACTIVITIES, SCORING, NOTIFY], database_url, stream_prefix, REDIS_URL
    ) as apis:
        w = World(apis)
        await enter(w)
        yield w


# -- the walk -------------------------------------------------------------------------------


def _endpoints(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}


def test_the_table_names_every_endpoint_of_the_four_services() -> None:
    """An endpoint added to a service (or to its committed OpenAPI document) without a line in
    the table fails here: say who may call it."""
    in_table = {(c.service, c.method, c.path) for c in TABLE}
    missing, gone = [], []
    for name, definition in DEFINITIONS.items():
        live = _endpoints(create_app(definition, configure_logs=False).openapi())
        committed = _endpoints(json.loads((OPENAPI_DIR / f"{name}.json").read_text("utf-8")))
        missing += [
            f"{name} {m} {p}" for m, p in sorted(live | committed) if (name, m, p) not in in_table
        ]
        gone += [
            f"{name} {m} {p}" for s, m, p in sorted(in_table) if s == name and (m, p) not in live
        ]
    assert not missing, "endpoints without a line in TABLE:\n" + "\n".join(missing)
    assert not gone, "lines in TABLE for endpoints the services no longer have:\n" + "\n".join(gone)
    for call in TABLE:
        assert set(call.may) <= set(PEOPLE), call


async def test_every_endpoint_answers_the_right_scope_and_refuses_the_wrong_one(
    world: World,
) -> None:
    wrong: list[str] = []
    for call in TABLE:
        # Those who may not go first: they must change nothing the others then do.
        for who in call.may_not:
            status, text = await world.call(call, who)
            if status != 403:
                wrong.append(f"{call} as {who}: {status}, not 403 ({text[:200]})")
        status, text = await world.call(call, "anonymous")
        if status != (200 if call.public else 401):
            wrong.append(f"{call} without a token: {status} ({text[:200]})")
        for who in call.may:
            status, text = await world.call(call, who)
            if status not in THROUGH:
                wrong.append(f"{call} as {who}: {status} ({text[:200]})")
    assert not wrong, "\n".join(wrong)


async def test_a_guide_shows_each_reader_the_appointments_of_their_scope(world: World) -> None:
    async def appointments(who: str) -> list[str]:
        response = await world.apis["roster"].client.get(
            "/v1/guides/guide-a", headers=world.tokens[who]
        )
        assert response.status_code == 200, response.text
        return sorted(a["appointment_id"] for a in response.json()["appointments"])

    assert await appointments("uni") == ["ap-a", "ap-b"]
    assert await appointments("auditor") == ["ap-a", "ap-b"]
    for who in ("admin_a", "sec_a", "com_a"):
        assert await appointments(who) == ["ap-a"], who
    for who in ("admin_b", "sec_b", "com_b"):
        assert await appointments(who) == ["ap-b"], who


async def test_a_branch_is_registered_by_its_school_not_by_a_secretary(world: World) -> None:
    """A secretary's token names their branch; that does not let them put a branch of that id
    into a school of their choosing."""
    roster = world.apis["roster"]
    body = {
        "unit_id": "sb-b9",
        "kind": "branch",
        "name": "第九党支部",
        "parent_id": "sa",
        "branch_kind": "student",
        "established_on": "2010-04-01",
    }
    for role in ("branch_secretary", "committee_member"):
        token = roster.auth(role, branches=["sb-b9"], subject="sec-b9")
        response = await roster.client.post("/v1/units", json=body, headers=token)
        assert response.status_code == 403, response.text
        assert "branch" in response.json()["detail"]
    assert (
        await roster.client.get("/v1/units/sb-b9", headers=world.tokens["uni"])
    ).status_code == 404
    response = await roster.client.post("/v1/units", json=body, headers=world.tokens["admin_b"])
    assert response.status_code == 403, response.text
    response = await roster.client.post("/v1/units", json=body, headers=world.tokens["admin_a"])
    assert response.status_code == 201, response.text


async def test_only_the_members_own_people_point_their_reminders_elsewhere(world: World) -> None:
    """Issue 14: a school admin of another school, or the secretary of another branch, could
    point any member's reminders at their own address."""
    notify = world.apis["notify"]
    queries = notify.context.extras["notify_queries"]

    async def put(headers: dict[str, str], email: str, recipient: str = "a-mem") -> int:
        response = await notify.client.put(
            f"/v1/recipients/{recipient}",
            json={"channels": ["email"], "email": email},
            headers=headers,
        )
        if response.status_code == 403:  # a sentence naming who may not do what
            detail = response.json()["detail"]
            assert "reminded" in detail or "preferences" in detail, detail
        return response.status_code

    assert await put(world.tokens["mem_a"], "a-mem@example.edu") == 200
    # Another school's admin, another branch's secretary or committee member — also one whose
    # token's subject happens to be the member's id — another member, an auditor: 403.
    intruders = {
        "admin_b": world.tokens["admin_b"],
        "sec_b": world.tokens["sec_b"],
        "com_b": world.tokens["com_b"],
        "sec_b named a-mem": notify.auth("branch_secretary", branches=["sb-b1"], subject="a-mem"),
        "admin_b named a-mem": notify.auth("school_admin", schools=["sb"], subject="a-mem"),
        "mem_a2": world.tokens["mem_a2"],
        "auditor": world.tokens["auditor"],
        "auditor as a-mem": notify.auth("auditor", member_id="a-mem", subject="a-mem"),
    }
    for who, headers in intruders.items():
        assert await put(headers, "intruder@example.com") == 403, who
    stored = await queries.recipient("a-mem")
    assert stored["email"] == "a-mem@example.edu"
    assert stored["updated_by"] == "a-mem"
    # The member's own people: their branch's committee, their school's admin, the university.
    for who in ("sec_a", "com_a", "admin_a", "uni"):
        assert await put(world.tokens[who], f"{who}@example.edu") == 200, who
    assert (await queries.recipient("a-mem"))["email"] == "uni@example.edu"
    # A school office: its school's admin and the university's only.
    for who in ("admin_b", "sec_a", "mem_a"):
        assert await put(world.tokens[who], "x@example.com", "office-sa") == 403, who
    assert await put(world.tokens["admin_a"], "office@sa.example.edu", "office-sa") == 200


async def test_a_member_reads_their_own_deadline_but_not_the_others_deliveries(
    world: World,
) -> None:
    """A member's own deadline is theirs to read; who else is reminded of it, and how their
    deliveries went (an error may carry an address), is for the branch and the admins."""
    notify = world.apis["notify"]

    async def recipients(who: str) -> set[str]:
        response = await notify.client.get(
            "/v1/deadlines/graduation-a-mem", headers=world.tokens[who]
        )
        assert response.status_code == 200, response.text
        return {d["recipient_id"] for d in response.json()["deliveries"]}

    # the member, their branch's secretary, and their school's office on escalation
    everyone = await recipients("uni")
    assert {"a-mem", "a-sec", "office-sa"} <= everyone
    for who in ("auditor", "admin_a", "sec_a", "com_a"):
        assert await recipients(who) == everyone, who
    assert await recipients("mem_a") == {"a-mem"}
    for who in ("mem_a2", "mem_b", "sec_b", "admin_b"):
        response = await notify.client.get(
            "/v1/deadlines/graduation-a-mem", headers=world.tokens[who]
        )
        assert response.status_code == 403, (who, response.text)
