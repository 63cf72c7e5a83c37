"""Every date and time the four APIs accept lies in 1900-01-01 .. 2199-12-31 (instants: on those
days in UTC), issue 14. The four real services, on the real PostgreSQL and Redis, with a small
branch in them:

* the calls that answered 500 (or were accepted and then broke a consumer) answer 422 naming
  the field: `enrolled_on` 0001-01-01, `expected_graduation` 9999-12-31, `starts_at`
  9999-12-31T23:30Z, `as_of=9999-12-31`, `known_at=0001-01-01T00:00:00Z`, `through`
  9999-12-31;
* a walk of every endpoint of every service's own OpenAPI document: each date and date-time
  query parameter and body field, at the calendar's extremes (year 1, year 9999, an offset
  that cannot be shifted to UTC) and just outside the range, gets 422 naming it; at the
  range's own edges nothing answers 500.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
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

pytestmark = pytest.mark.timeout(600)

OUTSIDE = {
    "date": ["0001-01-01", "9999-12-31", "1899-12-31", "2200-01-01"],
    "date-time": [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:30:00Z",
        "9999-12-31T23:59:59.999999-05:00",  # after year 9999 in UTC
        "1899-12-31T23:59:59Z",
        "2200-01-01T00:00:00Z",
        "2199-12-31T23:30:00-01:00",
    ],
}
EDGES = {
    "date": ["1900-01-01", "2199-12-31"],
    "date-time": ["1900-01-01T00:00:00Z", "2199-12-31T23:59:59Z", "2199-12-31T23:59:59+14:00"],
}
SAMPLES = {"year": "2010", "member_id": "m1", "recipient_id": "m1", "group_id": "nde-b1-g1"}
PUBLIC = {"/health", "/ready", "/metrics"}


@pytest.fixture
async def campus(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[dict[str, Api]]:
    async with services(
        [ROSTER, ACTIVITIES, SCORING, NOTIFY], database_url, stream_prefix, REDIS_URL
    ) as apis:
        roster = RosterClient(apis["roster"])
        await roster.organisation()
        await roster.enrol("m1")
        await roster.enrol("m2", standing="probationary")
        await wait_for_members(apis["activities"], "m1", "m2")
        yield apis


def admin(api: Api, key: str = "dates-1") -> dict[str, str]:
    return {**api.auth("university_admin", subject="org-office"), "Idempotency-Key": key}


def field_errors(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {e["field"]: e["reason"] for e in response.json()["errors"]}


def member(**fields: str) -> dict[str, Any]:
    return {
        "member_id": "m9",
        "branch_id": "nde-b1",
        "student_number": "2010999901",
        "name": "党员九",
        "group_id": "nde-b1-g1",
        "standing": "full",
        "joined_on": "2009-06-01",
        "enrolled_on": "2010-05-04",
        "expected_graduation": "2012-07-01",
        **fields,
    }


def meeting(starts_at: str) -> dict[str, Any]:
    return {
        "activity_id": "a-far",
        "kind": "all_member_meeting",
        "title": "全体党员大会",
        "branch_id": "nde-b1",
        "starts_at": starts_at,
        "place": "学院301",
    }


async def test_the_calls_that_answered_500_answer_422_naming_the_field(
    campus: dict[str, Api],
) -> None:
    roster, activities, scoring = campus["roster"], campus["activities"], campus["scoring"]
    for field, value in (("enrolled_on", "0001-01-01"), ("expected_graduation", "9999-12-31")):
        refused = await roster.client.post(
            "/v1/members", json=member(**{field: value}), headers=admin(roster, field)
        )
        assert (
            "must be a date from 1900-01-01 to 2199-12-31" in field_errors(refused)[f"body.{field}"]
        )
    refused = await activities.client.post(
        "/v1/activities", json=meeting("9999-12-31T23:30:00Z"), headers=admin(activities)
    )
    assert "must be an instant from 1900-01-01T00:00:00Z" in field_errors(refused)["body.starts_at"]
    refused = await activities.client.post(
        "/v1/branches/nde-b1/report-obligations",
        json={"through": "9999-12-31"},
        headers=admin(activities, "through"),
    )
    assert "body.through" in field_errors(refused)
    for api, path in (
        (roster, "/v1/members/m1"),
        (roster, "/v1/archives"),
        (scoring, "/v1/members/m1/score"),
        (scoring, "/v1/branches/nde-b1/periods/2010"),
    ):
        answer = await api.client.get(path, params={"as_of": "9999-12-31"}, headers=admin(api))
        assert "query.as_of" in field_errors(answer), path
    for api, path in (
        (scoring, "/v1/members/m1/score"),
        (scoring, "/v1/regulations"),
        (roster, "/v1/audit/events"),
    ):
        answer = await api.client.get(
            path, params={"known_at": "0001-01-01T00:00:00Z"}, headers=admin(api)
        )
        assert "query.known_at" in field_errors(answer), path
    # Nothing was recorded of any of it.
    assert not [e for e in await roster.context.store.read_all() if e.stream_id == "member-m9"]


async def test_the_edges_of_the_range_are_accepted_and_break_nothing_downstream(
    campus: dict[str, Api],
) -> None:
    roster, activities, notify = campus["roster"], campus["activities"], campus["notify"]
    enrolled = await roster.client.post(
        "/v1/members",
        json=member(
            enrolled_on="1900-01-01", joined_on="1900-01-01", expected_graduation="2199-12-31"
        ),
        headers=admin(roster, "edges"),
    )
    assert enrolled.status_code == 201, enrolled.text
    scheduled = await activities.client.post(
        "/v1/activities", json=meeting("2199-12-31T23:59:59+14:00"), headers=admin(activities)
    )
    assert scheduled.status_code < 500, scheduled.text
    planned = await activities.client.post(
        "/v1/branches/nde-b1/report-obligations",
        json={"through": "2199-12-31"},
        headers=admin(activities, "through"),
    )
    # Inside the range, and still not a plan anybody means: refused by a rule, not a crash.
    assert planned.status_code == 422, planned.text
    assert planned.json()["rule"] == "through_too_far"
    # Notify takes the graduation of 2199 in its stride.
    head, _ = await roster.context.store.head()

    async def applied() -> bool:
        context = notify.context
        cursor = await context.pool.fetchval(
            f"SELECT position FROM \"{context.schema}\".producer_cursors WHERE source = 'roster'"
        )
        return bool(cursor and cursor >= head)

    from tests.support.waiting import wait_until

    await wait_until(applied, within=60, what="notify to apply the roster's log")
    deadlines = await notify.client.get(
        "/v1/members/m9/deadlines", params={"status": "all"}, headers=admin(notify)
    )
    assert deadlines.status_code == 200, deadlines.text
    due = {d["deadline_id"]: d["due_at"] for d in deadlines.json()}
    assert due["graduation-m9"].startswith("2199-12-31")
    failed = await notify.client.get("/v1/audit/failed-events", headers=admin(notify))
    assert failed.json()["events"] == []


# -- the walk ------------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _dated(
    document: dict[str, Any], schema: dict[str, Any], path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(where in the body, format) of every date and date-time, `0` for an array's item."""
    schema = _resolve(document, schema)
    if schema.get("format") in ("date", "date-time"):
        yield path, schema["format"]
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, ()):
            yield from _dated(document, option, path)
    for name, sub in schema.get("properties", {}).items():
        if len(path) < 6:
            yield from _dated(document, sub, (*path, name))
    if isinstance(schema.get("items"), dict) and len(path) < 6:
        yield from _dated(document, schema["items"], (*path, 0))


def _formats(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    return {fmt for _, fmt in _dated(document, schema)}


def _body(path: tuple[str | int, ...], value: str) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    return [_body(rest, value)] if isinstance(head, int) else {head: _body(rest, value)}


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m.group(1), "nde-b1"), path)


async def test_every_date_and_time_of_every_endpoint_is_bounded_and_never_a_500(
    campus: dict[str, Api],
) -> None:
    tried = refused = 0
    for service, api in campus.items():
        document = (await api.client.get("/openapi.json")).json()
        for path, methods in document["paths"].items():
            if path in PUBLIC:
                continue
            url = _concrete(path)
            for method, operation in methods.items():
                headers = admin(api, f"walk-{tried}")
                cases: list[tuple[dict[str, Any], Any, str, str]] = []  # params, body, field, fmt
                for parameter in operation.get("parameters", []):
                    if parameter["in"] != "query":
                        continue
                    for fmt in _formats(document, parameter["schema"]):
                        cases.append(
                            ({parameter["name"]: fmt}, None, f"query.{parameter['name']}", fmt)
                        )
                body = operation.get("requestBody", {}).get("content", {}).get("application/json")
                for where, fmt in _dated(document, body["schema"]) if body else ():
                    field = ".".join(["body", *map(str, where)])
                    cases.append(({}, where, field, fmt))
                for params, where, field, fmt in cases:
                    for value in [*OUTSIDE[fmt], *EDGES[fmt]]:
                        query = dict.fromkeys(params, value)
                        json = _body(where, value) if where is not None else None
                        response = await api.client.request(
                            method.upper(), url, params=query, json=json, headers=headers
                        )
                        tried += 1
                        what = (service, method, path, field, value, response.text[:500])
                        assert response.status_code < 500, what
                        if value in OUTSIDE[fmt]:
                            assert response.status_code == 422, what
                            errors = {e["field"]: e["reason"] for e in response.json()["errors"]}
                            assert field in errors, what
                            assert errors[field].startswith("must be"), what
                            refused += 1
    assert refused > 400, refused
    assert tried > refused
