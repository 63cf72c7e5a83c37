"""Extreme dates through the HTTP APIs of the four services (issue 14, "Inputs that must not
be accepted, or must not hurt"): every date and time a command body or a query parameter takes
is sent as 0001-01-01, 9999-12-31, 9999-12-31T23:59:59Z and 0001-01-01T00:00:00+14:00 (the
first and last of Python's calendar, where `timedelta` and `astimezone` overflow). None may
answer 500; each answers 422 naming the field, and nothing is recorded.

Before the bounds, 38 distinct (endpoint, field, value) calls answered 500 here, the eight of
the issue among them (OverflowError from `start_of`/`astimezone`/`timedelta` arithmetic on the
given day); and some extreme values were *accepted* (`expected_graduation` 9999-12-31,
`starts_at` 0001-01-01T00:00:00Z), which is how one event came to stop notify.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as redis

from services.activities.service import DEFINITION as ACTIVITIES
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services, wait_for_members

pytestmark = pytest.mark.timeout(300)

DAYS = ("0001-01-01", "9999-12-31")
INSTANTS = ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z")
#: A parameter that takes a day or an instant (scoring's `as_of`).
MOMENTS = DAYS + INSTANTS


class Campus:
    def __init__(self, apis: dict[str, Api]) -> None:
        self.apis = apis
        self.roster = RosterClient(apis["roster"])
        self.admin = apis["roster"].auth("university_admin", subject="org-office")
        self._n = 0

    def fresh(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    async def post(self, service: str, path: str, body: Any, **params: Any) -> Any:
        return await self.apis[service].client.post(
            path, json=body, headers=self.admin, params=params
        )

    async def get(self, service: str, path: str, **params: Any) -> Any:
        return await self.apis[service].client.get(path, headers=self.admin, params=params)

    async def ok(self, service: str, path: str, body: Any) -> Any:
        response = await self.post(service, path, body)
        assert response.status_code < 300, f"{path}: {response.status_code} {response.text}"
        return response.json()

    async def heads(self) -> dict[str, int]:
        """The logs of the services that take commands (notify records reminders on its own
        while the setup's events reach it)."""
        return {
            name: await api.event_count() for name, api in self.apis.items() if name != "notify"
        }


@pytest.fixture
async def campus(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[Campus]:
    async with services(
        [ROSTER, ACTIVITIES, SCORING, NOTIFY], database_url, stream_prefix, REDIS_URL
    ) as apis:
        c = Campus(apis)
        await c.roster.organisation()
        for member in ("m1", "m2", "m3", "m4"):
            await c.roster.enrol(member)
        await c.roster.enrol("p1", standing="probationary", probation_started_on="2010-04-20")
        await wait_for_members(apis["activities"], "m1", "m2", "m3", "m4", "p1")
        await c.ok(
            "roster",
            "/v1/guides",
            {
                "guide_id": "g1",
                "name": "李老师",
                "kind": "faculty",
                "organisation": "学院",
                "registered_on": "2010-05-01",
            },
        )
        await c.ok(
            "roster",
            "/v1/guides/g1/appointments",
            {
                "appointment_id": "ap1",
                "branch_id": "nde-b1",
                "member_ids": ["m1"],
                "term_starts_on": "2010-06-01",
                "term_ends_on": "2011-04-30",
            },
        )
        await c.ok(
            "roster",
            "/v1/branches/nde-b1/pairings",
            {"pairing_id": "pr1", "mentor_id": "m1", "mentee_id": "m2", "formed_on": "2010-05-10"},
        )
        await c.ok(
            "roster",
            "/v1/members/m1/plaques",
            {
                "plaque_id": "pl1",
                "kind": "dormitory",
                "dormitory": "8-312",
                "issued_on": "2010-05-10",
            },
        )
        await c.ok(
            "activities",
            "/v1/activities",
            {
                "activity_id": "act-1",
                "kind": "all_member_meeting",
                "title": "全体党员大会",
                "branch_id": "nde-b1",
                "starts_at": "2010-06-10T11:00:00Z",
                "place": "礼堂",
            },
        )
        await c.ok(
            "activities",
            "/v1/branches/nde-b1/budgets/2010",
            {"lines": [{"line": "outings", "amount_fen": 100000}], "planned_on": "2010-05-01"},
        )
        yield c


@dataclass(frozen=True)
class Body:
    """A command whose `field` takes the extreme value; `make` builds a body that is valid
    apart from it (fresh ids, so that nothing else refuses it first)."""

    service: str
    path: str
    field: str
    make: Callable[[Campus, str], dict[str, Any]]
    values: tuple[str, ...] = DAYS
    #: where the error is named (`body.{field}` unless the value sits deeper)
    where: str | None = None


def enrol(c: Campus, **fields: Any) -> dict[str, Any]:
    member = c.fresh("e")
    body: dict[str, Any] = {
        "member_id": member,
        "branch_id": "nde-b1",
        "student_number": f"9{c._n:07d}",
        "name": "张三",
        "group_id": "nde-b1-g1",
        "standing": "full",
        "joined_on": "2009-06-01",
        "expected_graduation": "2012-07-01",
        "enrolled_on": "2010-05-04",
    }
    body.update(fields)
    return body


def schedule(c: Campus, **fields: Any) -> dict[str, Any]:
    return {
        "activity_id": c.fresh("a"),
        "kind": "all_member_meeting",
        "title": "会",
        "branch_id": "nde-b1",
        "starts_at": "2010-06-10T11:00:00Z",
        "place": "礼堂",
        **fields,
    }


COMMITTEE = {
    "term_starts_on": "2010-05-05",
    "term_ends_on": "2011-05-04",
    "elected_on": "2010-05-05",
}
TERM = {"term_starts_on": "2010-06-01", "term_ends_on": "2011-04-30"}

BODIES: list[Body] = [
    # roster
    *(
        Body("roster", "/v1/members", f, lambda c, v, f=f: enrol(c, **{f: v}))
        for f in ("joined_on", "expected_graduation", "enrolled_on")
    ),
    Body(
        "roster",
        "/v1/members",
        "probation_started_on",
        lambda c, v: enrol(c, standing="probationary", joined_on=None, probation_started_on=v),
    ),
    Body(
        "roster",
        "/v1/units",
        "established_on",
        lambda c, v: {
            "unit_id": c.fresh("u"),
            "kind": "group",
            "name": "党小组",
            "parent_id": "nde-b1",
            "established_on": v,
        },
    ),
    *(
        Body(
            "roster",
            "/v1/branches/nde-b1/committee",
            f,
            lambda c, v, f=f: {
                "secretary_id": "m1",
                "member_ids": ["m1", "m2"],
                **{**COMMITTEE, f: v},
            },
        )
        for f in COMMITTEE
    ),
    *(
        Body(
            "roster",
            "/v1/branches/nde-b1/elections",
            f,
            lambda c, v, f=f: {
                "election_id": c.fresh("el"),
                "seats": 1,
                "candidates": ["m1", "m2"],
                "present": ["m1", "m2", "m3", "m4"],
                "tally": {"m1": 4, "m2": 0},
                "ballots_cast": 4,
                "secretary_id": "m1",
                **{"held_on": "2010-05-05", f: v},
            },
        )
        for f in ("held_on", "term_ends_on")
    ),
    Body(
        "roster",
        "/v1/groups/nde-b1-g1/links",
        "established_on",
        lambda c, v: {
            "link_id": c.fresh("l"),
            "target_kind": "class",
            "target": "国防0801",
            "established_on": v,
        },
    ),
    Body(
        "roster",
        "/v1/members/m3/moves",
        "effective_on",
        lambda c, v: {"dormitory": "9-101", "effective_on": v},
    ),
    Body(
        "roster",
        "/v1/members/m4/transfer-out",
        "transferred_on",
        lambda c, v: {"destination": "某地", "transferred_on": v},
    ),
    Body(
        "roster",
        "/v1/members/m4/transfer-out",
        "letter_valid_until",
        lambda c, v: {
            "destination": "某地",
            "transferred_on": "2010-06-01",
            "letter_valid_until": v,
        },
    ),
    Body(
        "roster",
        "/v1/members/m3/categories",
        "effective_on",
        lambda c, v: {"dimension": "cadre", "value": "cadre", "reason": "任命", "effective_on": v},
    ),
    Body("roster", "/v1/members/p1/conversion", "decided_on", lambda c, v: {"decided_on": v}),
    Body(
        "roster",
        "/v1/members/p1/probation-extension",
        "decided_on",
        lambda c, v: {"months": 6, "reason": "延长", "decided_on": v},
    ),
    Body(
        "roster",
        "/v1/members/m3/responsibility-space",
        "effective_on",
        lambda c, v: {"dormitory": "8-312", "effective_on": v},
    ),
    Body(
        "roster",
        "/v1/members/m3/agreements",
        "signed_on",
        lambda c, v: {"agreement_id": c.fresh("ag"), "academic_year": "2010-2011", "signed_on": v},
    ),
    Body(
        "roster",
        "/v1/members/m3/agreements",
        "expires_on",
        lambda c, v: {
            "agreement_id": c.fresh("ag"),
            "academic_year": "2010-2011",
            "signed_on": "2010-09-10",
            "expires_on": v,
        },
    ),
    Body(
        "roster",
        "/v1/members/m3/plaques",
        "issued_on",
        lambda c, v: {
            "plaque_id": c.fresh("pl"),
            "kind": "bed",
            "dormitory": "8-312",
            "bed": "3",
            "issued_on": v,
        },
    ),
    Body(
        "roster",
        "/v1/members/m3/discipline",
        "decided_on",
        lambda c, v: {"measure": "warning", "decided_on": v, "reason": "违纪"},
    ),
    Body(
        "roster",
        "/v1/members/m3/discipline",
        "lasts_until",
        lambda c, v: {
            "measure": "probation_within_party",
            "decided_on": "2010-06-01",
            "reason": "违纪",
            "lasts_until": v,
        },
    ),
    Body(
        "roster",
        "/v1/members/m1/plaques/pl1/withdrawal",
        "withdrawn_on",
        lambda c, v: {"withdrawn_on": v, "reason": "撤销"},
    ),
    Body(
        "roster",
        "/v1/guides",
        "registered_on",
        lambda c, v: {
            "guide_id": c.fresh("g"),
            "name": "王老师",
            "kind": "faculty",
            "organisation": "学院",
            "registered_on": v,
        },
    ),
    *(
        Body(
            "roster",
            "/v1/guides/g1/appointments",
            f,
            lambda c, v, f=f: {
                "appointment_id": c.fresh("ap"),
                "branch_id": "nde-b1",
                "member_ids": ["m2"],
                **{**TERM, f: v},
            },
        )
        for f in TERM
    ),
    Body(
        "roster",
        "/v1/guides/g1/appointments/ap1/end",
        "ended_on",
        lambda c, v: {"ended_on": v, "reason": "结束"},
    ),
    Body(
        "roster",
        "/v1/branches/nde-b1/pairings",
        "formed_on",
        lambda c, v: {
            "pairing_id": c.fresh("pr"),
            "mentor_id": "m3",
            "mentee_id": "m4",
            "formed_on": v,
        },
    ),
    Body(
        "roster",
        "/v1/branches/nde-b1/pairings/pr1/end",
        "ended_on",
        lambda c, v: {"ended_on": v, "reason": "结束"},
    ),
    # activities
    Body(
        "activities",
        "/v1/activities",
        "starts_at",
        lambda c, v: schedule(c, starts_at=v),
        INSTANTS,
    ),
    Body("activities", "/v1/activities", "ends_at", lambda c, v: schedule(c, ends_at=v), INSTANTS),
    Body(
        "activities",
        "/v1/activities/act-1/reschedule",
        "starts_at",
        lambda c, v: {"starts_at": v},
        INSTANTS,
    ),
    Body(
        "activities",
        "/v1/activities/act-1/reschedule",
        "ends_at",
        lambda c, v: {"starts_at": "2010-06-10T11:00:00Z", "ends_at": v},
        INSTANTS,
    ),
    Body(
        "activities",
        "/v1/activities/act-1/cancel",
        "cancelled_at",
        lambda c, v: {"reason": "下雨", "cancelled_at": v},
        INSTANTS,
    ),
    Body(
        "activities",
        "/v1/branches/nde-b1/semesters",
        "starts_on",
        lambda c, v: {
            "semester_id": c.fresh("s"),
            "starts_on": v,
            "weeks": 2,
            "weekday": 3,
            "at": "19:00",
            "place": "礼堂",
        },
    ),
    Body(
        "activities",
        "/v1/branches/nde-b1/semesters",
        "holidays",
        lambda c, v: {
            "semester_id": c.fresh("s"),
            "starts_on": "2010-09-01",
            "weeks": 2,
            "weekday": 3,
            "at": "19:00",
            "place": "礼堂",
            "holidays": [v],
        },
        where="body.holidays.0",
    ),
    Body(
        "activities",
        "/v1/branches/nde-b1/report-cadence",
        "starts_on",
        lambda c, v: {"every_weeks": 4, "starts_on": v},
    ),
    Body(
        "activities",
        "/v1/branches/nde-b1/report-obligations",
        "through",
        lambda c, v: {"through": v},
    ),
    Body(
        "activities",
        "/v1/reports/situation-m1-2010-05-29/submission",
        "submitted_at",
        lambda c, v: {"submitted_at": v},
        INSTANTS,
    ),
    Body(
        "activities",
        "/v1/reports/situation-m1-2010-05-29/review",
        "reviewed_at",
        lambda c, v: {"grade": "good", "reviewed_at": v},
        INSTANTS,
    ),
    Body(
        "activities",
        "/v1/branches/nde-b1/budgets/2010",
        "planned_on",
        lambda c, v: {"lines": [{"line": "outings", "amount_fen": 100000}], "planned_on": v},
    ),
    Body(
        "activities",
        "/v1/branches/nde-b1/budgets/2010/expenses",
        "spent_on",
        lambda c, v: {
            "expense_id": c.fresh("x"),
            "line": "outings",
            "amount_fen": 100,
            "spent_on": v,
            "description": "车费",
        },
    ),
    # scoring
    Body(
        "scoring",
        "/v1/units/nde/regulation",
        "effective_from",
        lambda c, v: {"regulation_id": "nde-2010", "effective_from": v},
    ),
    Body(
        "scoring",
        "/v1/units/nde/regulation",
        "decided_on",
        lambda c, v: {"regulation_id": "nde-2010", "effective_from": "2010-05-01", "decided_on": v},
    ),
    Body(
        "scoring",
        "/v1/branches/nde-b1/adjustments",
        "effective_on",
        lambda c, v: {"member_id": "m1", "points": "1", "reason": "表扬", "effective_on": v},
    ),
    Body(
        "scoring",
        "/v1/branches/nde-b1/periods/2010/close",
        "closed_on",
        lambda c, v: {"closed_on": v},
    ),
    Body(
        "scoring",
        "/v1/branches/nde-b1/periods/2010/reopen",
        "reopened_on",
        lambda c, v: {"reason": "更正", "reopened_on": v},
    ),
]

#: (service, path, parameter, values)
QUERIES: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("roster", "/v1/members/m1", "as_of", DAYS),
    ("roster", "/v1/branches/nde-b1/guides", "as_of", DAYS),
    ("roster", "/v1/archives", "as_of", DAYS),
    ("roster", "/v1/branches/nde-b1/without-agreement", "as_of", DAYS),
    ("roster", "/v1/branches/nde-b1/pairing-suggestions", "as_of", DAYS),
    ("activities", "/v1/branches/nde-b1/activities", "start", INSTANTS),
    ("activities", "/v1/branches/nde-b1/activities", "end", INSTANTS),
    ("notify", "/v1/members/m1/deadlines", "as_of", INSTANTS),
    ("notify", "/v1/branches/nde-b1/deadlines", "as_of", INSTANTS),
    ("notify", "/v1/schools/nde/deadlines", "as_of", INSTANTS),
    ("scoring", "/v1/regulations", "known_at", INSTANTS),
    *(
        (service_path[0], service_path[1], name, values)
        for service_path in (
            ("scoring", "/v1/units/nde-b1/regulation"),
            ("scoring", "/v1/members/m1/score"),
            ("scoring", "/v1/branches/nde-b1/periods/2010"),
            ("scoring", "/v1/schools/nde/periods/2010"),
            ("scoring", "/v1/periods/2010/summary"),
        )
        for name, values in (("as_of", MOMENTS), ("known_at", INSTANTS))
    ),
    *(
        (service, "/v1/audit/events", "known_at", INSTANTS)
        for service in ("roster", "activities", "scoring", "notify")
    ),
]


def named(response: Any, where: str) -> bool:
    return any(e["field"] == where for e in response.json().get("errors") or [])


async def test_the_calls_that_answered_500_answer_422_naming_the_field(campus: Campus) -> None:
    """The eight of the issue: five it names, three more found by this walk."""
    c = campus
    before = await c.heads()
    calls = [
        (
            await c.post("roster", "/v1/members", enrol(c, enrolled_on="0001-01-01")),
            "body.enrolled_on",
        ),
        (
            await c.post(
                "activities", "/v1/activities", schedule(c, starts_at="9999-12-31T23:30:00Z")
            ),
            "body.starts_at",
        ),
        (
            await c.get("scoring", "/v1/branches/nde-b1/periods/2010", as_of="9999-12-31"),
            "query.as_of",
        ),
        (
            await c.get("scoring", "/v1/members/m1/score", known_at="0001-01-01T00:00:00Z"),
            "query.known_at",
        ),
        (
            await c.post(
                "activities", "/v1/branches/nde-b1/report-obligations", {"through": "9999-12-31"}
            ),
            "body.through",
        ),
        # found by sending extreme dates everywhere:
        (
            await c.post(
                "activities",
                "/v1/branches/nde-b1/report-cadence",
                {"every_weeks": 4, "starts_on": "0001-01-01"},
            ),
            "body.starts_on",
        ),
        (
            await c.post(
                "roster",
                "/v1/branches/nde-b1/committee",
                {
                    "secretary_id": "m1",
                    "member_ids": ["m1"],
                    **COMMITTEE,
                    "term_starts_on": "9999-12-31",
                },
            ),
            "body.term_starts_on",
        ),
        (
            await c.get(
                "notify", "/v1/branches/nde-b1/deadlines", as_of="0001-01-01T00:00:00+14:00"
            ),
            "query.as_of",
        ),
    ]
    for response, where in calls:
        assert response.status_code == 422, (where, response.status_code, response.text)
        assert named(response, where), (where, response.text)
    assert await c.heads() == before


async def test_no_date_field_or_parameter_answers_500_or_accepts_an_extreme_date(
    campus: Campus,
) -> None:
    c = campus
    before = await c.heads()
    wrong: list[tuple[str, str, str, str, int, str]] = []
    tried = 0
    for body in BODIES:
        for value in body.values:
            response = await c.post(body.service, body.path, body.make(c, value))
            tried += 1
            where = body.where or f"body.{body.field}"
            if response.status_code != 422 or not named(response, where):
                wrong.append(
                    (
                        body.service,
                        body.path,
                        body.field,
                        value,
                        response.status_code,
                        response.text[:200],
                    )
                )
    for service, path, name, values in QUERIES:
        for value in values:
            response = await c.get(service, path, **{name: value})
            tried += 1
            if response.status_code != 422 or not named(response, f"query.{name}"):
                wrong.append(
                    (service, path, name, value, response.status_code, response.text[:200])
                )
    for value in DAYS:
        response = await c.apis["scoring"].client.post(
            "/v1/regulations",
            content=b"{}",
            headers={**c.admin, "Content-Type": "application/json"},
            params={"published_on": value},
        )
        tried += 1
        if response.status_code != 422 or not named(response, "query.published_on"):
            wrong.append(
                (
                    "scoring",
                    "/v1/regulations",
                    "published_on",
                    value,
                    response.status_code,
                    response.text[:200],
                )
            )
    assert tried > 150
    assert not wrong, "\n".join(map(str, wrong))
    assert await c.heads() == before, "an extreme date was recorded"


def _regulation(**changes: Any) -> dict[str, Any]:
    """The default regulation as JSON, with another id and some of its days changed."""
    from services.scoring.regulation_file import DEFAULT_REGULATION, load_regulation

    raw = load_regulation(DEFAULT_REGULATION.read_text(encoding="utf-8"))
    document: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    document["id"] = "extreme"
    period = changes.pop("period", None)
    if period is not None:
        document["periods"][0].update(period)
    document.update(changes)
    return document


async def test_a_regulation_with_an_extreme_day_is_refused_when_published_or_tried(
    campus: Campus,
) -> None:
    """Regulation documents are `type: object` in the OpenAPI document; their days are checked
    by the regulation's validation (422 naming where), not by the model that also reads the
    `regulation.published` events already recorded."""
    c = campus
    before = await c.heads()
    for value in DAYS:
        for changes, where in (
            ({"effective_from": value}, "effective_from"),
            ({"period": {"starts_on": value}}, "starts_on"),
            ({"period": {"ends_on": value}}, "ends_on"),
        ):
            document = _regulation(**changes)
            published = await c.post("scoring", "/v1/regulations", document)
            assert published.status_code == 422, (where, value, published.text)
            assert any(where in e["field"] for e in published.json()["errors"]), published.text
            tried = await c.post(
                "scoring",
                "/v1/what-if",
                {
                    "period_id": document["periods"][0]["id"],
                    "branch_id": "nde-b1",
                    "draft": document,
                },
            )
            assert tried.status_code == 422, (where, value, tried.text)
    assert await c.heads() == before
