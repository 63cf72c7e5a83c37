"""Scoring against the real PostgreSQL and Redis, fed over the real streams by stand-in
producers: hand-computed totals, ranks and grades; time travel; what-if; revisions; four eyes;
closing periods; the published ledger and its schemas."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import jsonschema
import pytest
import redis.asyncio as redis
import yaml

from contracts import CATALOGUE
from contracts.events import (
    AttendanceCorrected,
    AttendanceRecorded,
    CommitteeElected,
    MemberDisciplined,
    MemberEnrolled,
    UnitRegistered,
)
from contracts.generate import SCHEMA_DIR, event_schema_name
from services.scoring.ledger import StoredLine, changes, publish
from services.scoring.live import LINE_COLUMNS
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api, SettableClock, running, service_settings
from tests.support.producer import Producer, at, producer
from tests.support.waiting import wait_until

REGULATION = {
    "id": "test-reg",
    "version": 1,
    "title": {"zh": "测试规定", "en": "Test regulation"},
    "effective_from": "2010-05-01",
    "periods": [{"id": "P1", "starts_on": "2010-05-01", "ends_on": "2010-12-31"}],
    "base": "60",
    "floor": "0",
    "ceiling": "100",
    "rules": [
        {
            "id": "present",
            "title": "present",
            "on": "attendance.recorded",
            "when": {"status": "present", "activity_kind": "all_member_meeting"},
            "points": "10",
            "cap": "30",
        },
        {
            "id": "absent",
            "title": "absent",
            "on": "attendance.recorded",
            "when": {"status": "absent"},
            "points": "-5",
        },
        {
            "id": "volunteer",
            "title": "volunteer hours",
            "on": "attendance.recorded",
            "when": {"activity_kind": "volunteer_service", "status": "present"},
            "points_per": {"field": "volunteer_hours", "factor": "2"},
            "cap": "20",
        },
    ],
    "vetoes": [{"id": "discipline", "title": "discipline", "on": "member.disciplined"}],
    "grades": [
        {"grade": "excellent", "min": "90", "max_share": "1/3"},
        {"grade": "qualified", "min": "80"},
        {"grade": "basic", "min": "60"},
        {"grade": "unqualified"},
    ],
    "classification": {"excellent": "excellent", "unqualified": "lagging"},
}


class World:
    def __init__(self, api: Api, roster: Producer, activities: Producer) -> None:
        self.api = api
        self.roster = roster
        self.activities = activities
        self.admin = api.auth("university_admin", subject="org-office")
        self.auditor = api.auth("auditor")
        self.expected_inputs = 0

    async def post(
        self, path: str, body: Any, headers: dict[str, str] | None = None, status: int = 200
    ) -> dict[str, Any]:
        response = await self.api.client.post(path, json=body, headers=headers or self.admin)
        assert response.status_code == status, response.text
        return response.json()  # type: ignore[no-any-return]

    async def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        response = await self.api.client.get(path, params=params, headers=headers or self.admin)
        assert response.status_code == 200, response.text
        return response.json()

    async def emit(
        self, source: Producer, payload: Any, occurred: Any, branch: str | None = "nde-b1"
    ) -> UUID:
        self.expected_inputs += 1
        return await source.emit(payload, occurred, branch)

    async def settle(self) -> None:
        """Publish what the producers hold and wait until scoring applied all of it."""
        await self.roster.publish()
        await self.activities.publish()
        pool = self.api.context.pool
        schema = self.api.context.schema

        async def applied() -> bool:
            count = await pool.fetchval(f'SELECT count(*) FROM "{schema}".inbox')
            return bool(count >= self.expected_inputs)

        await wait_until(applied, within=30, what="scoring to apply every input")


@pytest.fixture
async def world(
    database_url: str,
    stream_prefix: str,
    redis_client: redis.Redis,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[World]:
    monkeypatch.setenv("PARTY_SCORING_REGULATION_ID", "test-reg")
    monkeypatch.setenv("PARTY_SCORING_DEFAULT_REGULATION", "")
    settings = service_settings(
        database_url, f"t_scoring_{id(pool) % 10**8}", stream_prefix, REDIS_URL
    )
    clock = SettableClock()
    clock.now = at("2010-04-30", 9)  # the regulation was published before the trial began
    async with (
        running(SCORING, settings, clock) as api,
        producer(pool, redis_client, stream_prefix, "roster") as roster,
        producer(pool, redis_client, stream_prefix, "activities") as activities,
    ):
        made = World(api, roster, activities)
        await made.post("/v1/regulations", REGULATION, status=201)
        clock.now = None
        yield made


async def organise(world: World, members: int = 12) -> list[str]:
    r = world.roster
    await world.emit(
        r,
        UnitRegistered(unit_id="nde", kind="school", name="国防教育学院", parent_id=None),
        at("2010-05-01", 8),
        None,
    )
    await world.emit(
        r,
        UnitRegistered(
            unit_id="nde-b1",
            kind="branch",
            name="学生第一党支部",
            parent_id="nde",
            branch_kind="student",
        ),
        at("2010-05-01", 8),
    )
    ids = [f"m{n:02d}" for n in range(1, members + 1)]
    for n, member_id in enumerate(ids):
        await world.emit(
            r,
            MemberEnrolled(
                member_id=member_id,
                student_number=f"2008{n:04d}",
                name=f"党员{n}",
                branch_id="nde-b1",
                group_id=None,
                class_name=None,
                company=None,
                dormitory=None,
                bed=None,
                standing="full",
                joined_on=date(2009, 6, 1),
                probation_started_on=None,
                probation_ends_on=None,
                cadre_post=None,
                expected_graduation=date(2012, 7, 1),
                enrolled_on=date(2010, 5, 4),
            ),
            at("2010-05-04", 9),
        )
    await world.emit(
        r,
        CommitteeElected(
            branch_id="nde-b1",
            secretary_id="m01",
            member_ids=["m01", "m02"],
            term_starts_on=date(2010, 5, 5),
            term_ends_on=date(2013, 5, 4),
            elected_on=date(2010, 5, 5),
        ),
        at("2010-05-05", 9),
    )
    return ids


def attendance(
    activity: str,
    member: str,
    status: str,
    day: str,
    *,
    kind: str = "all_member_meeting",
    hours: str | None = None,
) -> AttendanceRecorded:
    return AttendanceRecorded(
        activity_id=activity,
        member_id=member,
        status=status,
        excuse="病假" if status == "excused" else None,
        activity_kind=kind,
        branch_id="nde-b1",
        group_id=None,
        activity_date=date.fromisoformat(day),
        volunteer_hours=Decimal(hours) if hours else None,
    )


MEETINGS = {"a1": "2010-05-12", "a2": "2010-05-26", "a3": "2010-06-09", "a4": "2010-06-23"}


async def hand_computed_branch(world: World) -> None:
    """The branch of twelve worked out by hand in the test below."""
    await organise(world)
    a = world.activities
    present = {
        "m01": "a1 a2 a3 a4",
        "m02": "a1 a2 a3",
        "m03": "a1 a2 a3",
        "m04": "a1 a2",
        "m05": "a1 a2",
        "m06": "a1 a2 a3",
        "m07": "a1",
        "m08": "a1 a2 a3 a4",
        "m09": "a3",
        "m12": "a1",
    }
    absent = {"m09": "a1 a2", "m10": "a1 a2 a3 a4", "m12": "a2"}
    for member, meetings in present.items():
        for meeting in meetings.split():
            await world.emit(
                a, attendance(meeting, member, "present", MEETINGS[meeting]), at(MEETINGS[meeting])
            )
    for member, meetings in absent.items():
        for meeting in meetings.split():
            await world.emit(
                a, attendance(meeting, member, "absent", MEETINGS[meeting]), at(MEETINGS[meeting])
            )
    for member, volunteer in (
        ("m01", "v1"),
        ("m01", "v2"),
        ("m02", "v1"),
        ("m03", "v2"),
        ("m04", "v1"),
        ("m05", "v1"),
    ):
        hours = "6" if volunteer == "v1" else "3"
        await world.emit(
            a,
            attendance(
                volunteer, member, "present", "2010-07-01", kind="volunteer_service", hours=hours
            ),
            at("2010-07-01", 9),
        )
    # m05 was first recorded absent at a3, then the record was corrected to excused.
    wrong = await world.emit(
        a, attendance("a3", "m05", "absent", MEETINGS["a3"]), at(MEETINGS["a3"])
    )
    await world.emit(
        a,
        AttendanceCorrected(
            **{
                **attendance("a3", "m05", "excused", MEETINGS["a3"]).model_dump(),
                "corrects_event_id": wrong,
                "previous_status": "absent",
                "reason": "已请假，误记",
            }
        ),
        at(MEETINGS["a3"]),
    )
    # m08 received a discipline measure: the period is vetoed.
    await world.emit(
        world.roster,
        MemberDisciplined(
            member_id="m08", measure="warning", decided_on=date(2010, 11, 20), reason="违纪"
        ),
        at("2010-11-20", 10),
    )
    await world.settle()


EXPECTED = [  # member, total, rank, grade, classification
    ("m01", "100.0", 1, "excellent", "excellent"),  # 60+30(cap)+18 = 108 → ceiling 100
    ("m02", "100.0", 1, "excellent", "excellent"),  # 60+30+12 = 102 → 100
    ("m03", "96.0", 3, "excellent", "excellent"),  # 60+30+6
    ("m04", "92.0", 4, "qualified", "neither"),  # 60+20+12; five at ≥92 > 12/3: left out
    ("m05", "92.0", 4, "qualified", "neither"),  # the corrected absence no longer counts
    ("m06", "90.0", 6, "qualified", "neither"),
    ("m07", "75.0", 7, "basic", "neither"),  # 60+10 and a manual +5
    ("m12", "65.0", 8, "basic", "neither"),  # 60+10−5
    ("m09", "60.0", 9, "basic", "neither"),  # 60−10+10
    ("m11", "60.0", 9, "basic", "neither"),  # nothing: the base
    ("m10", "40.0", 11, "unqualified", "lagging"),  # 60−20
    ("m08", "0.0", 12, "unqualified", "lagging"),  # vetoed: the floor
]


async def test_hand_computed_totals_ranks_and_grades(world: World) -> None:
    await hand_computed_branch(world)
    secretary = world.api.auth(
        "branch_secretary", branches=["nde-b1"], member_id="m01", subject="m01"
    )
    deputy = world.api.auth("committee_member", branches=["nde-b1"], member_id="m02", subject="m02")
    adjustment = await world.post(
        "/v1/branches/nde-b1/adjustments",
        {
            "adjustment_id": "adj-1",
            "member_id": "m07",
            "period_id": "P1",
            "effective_on": "2010-10-15",
            "points": "5",
            "reason": "抗洪志愿服务表彰",
        },
        secretary,
        status=201,
    )
    # Four eyes: the one who asked cannot approve.
    refused = await world.api.client.post(
        "/v1/branches/nde-b1/adjustments/adj-1/approval", headers=secretary
    )
    assert refused.status_code == 409
    assert refused.json()["rule"] == "four_eyes"
    await world.post("/v1/branches/nde-b1/adjustments/adj-1/approval", {}, deputy)
    assert adjustment["id"] == "adj-1"

    table = await world.get("/v1/branches/nde-b1/periods/P1", secretary)
    got = [
        (m["member_id"], m["total"], m["rank"], m["grade"], m["classification"])
        for m in table["members"]
    ]
    assert got == [(m, str(Decimal(t)), r, g, c) for m, t, r, g, c in EXPECTED]

    m01 = (await world.get("/v1/members/m01/score", secretary, period_id="P1"))[0]
    assert m01["by_rule"]["present"] == {"raw": "40.0", "counted": "30.0"}
    capped = [e for e in m01["ledger"] if e["rule_id"] == "present" and e["capped"]]
    assert [(e["points"], e["counted"]) for e in capped] == [("10.0", "0.0")]  # the fourth meeting
    m05 = (await world.get("/v1/members/m05/score", secretary, period_id="P1"))[0]
    assert [e["rule_id"] for e in m05["ledger"]] == ["present", "present", "volunteer"]
    m07 = (await world.get("/v1/members/m07/score", secretary, period_id="P1"))[0]
    assert m07["adjustments"][0]["approved_by"] == "m02"
    # The adjustment is a ledger line of its own, so the running total ends at the total.
    [manual] = [e for e in m07["ledger"] if e["kind"] == "adjustment"]
    assert (manual["points"], manual["requested_by"], manual["approved_by"]) == (
        "5.0",
        "m01",
        "m02",
    )
    assert m07["ledger"][-1]["running_total"] == m07["total"] == "75.0"
    # A total the ceiling cut says so in a last line: 108 → 100.
    assert (m01["ledger"][-1]["kind"], m01["ledger"][-1]["points"]) == ("ceiling", "-8.0")
    assert m01["ledger"][-1]["running_total"] == m01["total"] == "100.0"
    m08 = (await world.get("/v1/members/m08/score", secretary, period_id="P1"))[0]
    assert (m08["vetoed_by"], m08["total"]) == (["discipline"], "0.0")

    report = await world.post("/v1/replay", {}, world.auditor)
    assert report["equal"] is True, report
    assert report["inputs"] == world.expected_inputs


async def score_stream(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"envelope"]) for _, fields in await client.xrange(f"{prefix}:score")]


async def test_the_published_ledger_names_causes_and_reverses_corrections(
    world: World, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await hand_computed_branch(world)

    async def ledger_published() -> bool:
        events = await score_stream(redis_client, stream_prefix)
        return any(e["data"]["member_id"] == "m10" for e in events if e["type"] == "score.deducted")

    await wait_until(ledger_published, what="the ledger on the score stream")
    events = await score_stream(redis_client, stream_prefix)
    for envelope in events:
        spec = CATALOGUE.spec(envelope["type"])
        schema = json.loads((SCHEMA_DIR / event_schema_name(spec)).read_text())
        jsonschema.validate(envelope, schema, cls=jsonschema.Draft202012Validator)
    m05 = [
        e
        for e in events
        if e["type"].startswith("score.")
        and e["data"].get("member_id") == "m05"
        and e["data"]["rule_id"] == "absent"
    ]
    original = next(e for e in m05 if e["data"]["reverses_event_id"] is None)
    reversal = next(e for e in m05 if e["data"]["reverses_event_id"] is not None)
    assert (original["type"], original["data"]["points"]) == ("score.deducted", "-5.0")
    assert (reversal["type"], reversal["data"]["points"]) == ("score.awarded", "5.0")
    assert reversal["data"]["reverses_event_id"] == original["event_id"]
    assert original["data"]["regulation_id"] == "test-reg"
    assert original["data"]["cause_type"] == "attendance.recorded"
    # Writing the same lines again (a redelivery after a crash) appends nothing.
    context = world.api.context
    rows = await context.pool.fetch(
        f'SELECT {", ".join(LINE_COLUMNS)} FROM "{context.schema}".lines WHERE member_id = ANY($1)',
        ["m01", "m05"],
    )
    lines = [StoredLine(**dict(r)) for r in rows]
    assert len(lines) > 5
    before = await world.api.event_count()
    assert await publish(context.store, changes(lines, [], {}), None) == 0
    assert await world.api.event_count() == before


async def test_as_of_and_known_at_for_an_event_recorded_late(world: World) -> None:
    await organise(world, 2)
    await world.settle()
    world.activities.now = at("2010-12-05", 10)  # entered in December …
    await world.emit(
        world.activities, attendance("a1", "m01", "present", "2010-06-10"), at("2010-06-10")
    )  # … for a meeting in June
    await world.settle()

    async def total(**params: Any) -> str:
        periods = await world.get("/v1/members/m01/score", period_id="P1", **params)
        return str(periods[0]["total"]) if periods else "60.0"

    assert await total() == "70.0"
    assert await total(as_of="2010-06-30") == "70.0"  # it occurred in June
    assert await total(as_of="2010-06-09") == "60.0"  # not yet on 9 June
    # What the screen showed on 1 December: the late entry was not there yet.
    assert await total(known_at="2010-12-01T00:00:00+08:00") == "60.0"
    assert await total(as_of="2010-06-30", known_at="2010-12-01T00:00:00+08:00") == "60.0"
    assert await total(known_at="2010-12-06T00:00:00+08:00") == "70.0"


async def test_what_if_changes_nothing_and_gives_the_deltas(
    world: World, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await hand_computed_branch(world)
    draft = {
        **REGULATION,
        "version": 2,
        "rules": [
            {**REGULATION["rules"][0], "points": "5"},  # meetings worth half
            {**REGULATION["rules"][1], "points": "-10"},  # absence twice as bad
            REGULATION["rules"][2],
        ],
    }
    live_before = await world.get("/v1/branches/nde-b1/periods/P1")
    events_before = await world.api.event_count()
    stream_before = await redis_client.xlen(f"{stream_prefix}:score")
    diff = await world.post(
        "/v1/what-if", {"period_id": "P1", "branch_id": "nde-b1", "draft": draft}, world.auditor
    )
    by_member = {m["member_id"]: m for m in diff["members"]}
    assert (by_member["m01"]["old_total"], by_member["m01"]["new_total"]) == ("100.0", "98.0")
    assert by_member["m10"]["delta"] == "-20.0"  # 60−40 = 20 against 40
    assert by_member["m10"]["rules"] == {"absent": {"old": "-20.0", "new": "-40.0"}}
    assert (by_member["m04"]["new_total"], by_member["m04"]["new_grade"]) == ("82.0", "qualified")
    assert by_member["m08"]["new_total"] == "0.0"  # still vetoed
    assert diff["grades_changed"] == sum(m["old_grade"] != m["new_grade"] for m in diff["members"])
    assert await world.api.event_count() == events_before
    assert await redis_client.xlen(f"{stream_prefix}:score") == stream_before
    assert await world.get("/v1/branches/nde-b1/periods/P1") == live_before


async def test_a_retroactive_revision_rescores_with_reversals_citing_it(world: World) -> None:
    await organise(world, 2)
    await world.emit(
        world.activities, attendance("a9", "m02", "absent", "2010-06-01"), at("2010-06-01")
    )
    await world.settle()
    assert (await world.get("/v1/members/m02/score"))[0]["total"] == "55.0"
    revised = {
        **REGULATION,
        "version": 2,
        "effective_from": "2010-05-01",
        "rules": [
            REGULATION["rules"][0],
            {**REGULATION["rules"][1], "points": "-3"},
            REGULATION["rules"][2],
        ],
    }
    published = await world.post("/v1/regulations", revised, status=201)
    assert (await world.get("/v1/members/m02/score"))[0]["total"] == "57.0"
    ledger = await world.api.context.store.read_stream("ledger-m02")
    kinds = [
        (
            e.data["regulation_version"],
            e.data["points"],
            e.data["reverses_event_id"] is not None,
            e.causation_id,
        )
        for e in ledger
    ]
    regulation_event = UUID(published["event_ids"][0])
    assert kinds == [
        (1, "-5.0", False, None),
        (1, "5.0", True, regulation_event),
        (2, "-3.0", False, regulation_event),
    ]


async def test_regulation_validation_names_the_rule_and_the_field(world: World) -> None:
    bad = {
        **REGULATION,
        "version": 2,
        "periods": [
            {"id": "P1", "starts_on": "2010-05-01", "ends_on": "2010-12-31"},
            {"id": "P2", "starts_on": "2010-12-01", "ends_on": "2011-06-30"},
        ],
        "rules": [
            {"id": "r1", "title": "x", "on": "attendance.teleported", "points": "1"},
            {
                "id": "r2",
                "title": "x",
                "on": "attendance.recorded",
                "when": {"mood": "happy"},
                "points": "1",
            },
            {
                "id": "r3",
                "title": "x",
                "on": "attendance.recorded",
                "when": {"status": "asleep"},
                "points": "1",
            },
            {"id": "r4", "title": "x", "on": "attendance.recorded", "points": "-1", "cap": "-5"},
        ],
    }
    before = await world.api.event_count()
    response = await world.api.client.post("/v1/regulations", json=bad, headers=world.admin)
    assert response.status_code == 422
    errors = {(e["field"], e["reason"]) for e in response.json()["errors"]}
    assert ("rules[r1].on", "unknown event type 'attendance.teleported'") in errors
    assert any(f == "rules[r2].when.mood" and "has no field 'mood'" in r for f, r in errors)
    assert any(f == "rules[r3].when.status" and "'asleep' can never hold" in r for f, r in errors)
    assert any(f == "rules[r4].cap" and "not positive" in r for f, r in errors)
    assert ("periods[P2].starts_on", "overlaps period P1 (until 2010-12-31)") in errors
    assert await world.api.event_count() == before
    # YAML is accepted as written by a Party office, `on:` keys included.
    yaml_text = yaml.safe_dump({**REGULATION, "version": 2}, allow_unicode=True)
    response = await world.api.client.post(
        "/v1/regulations",
        content=yaml_text.encode(),
        headers={**world.admin, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    wrong_version = await world.api.client.post(
        "/v1/regulations", json={**REGULATION, "version": 5}, headers=world.admin
    )
    assert wrong_version.json()["rule"] == "regulation_version"


async def test_closing_a_period_and_events_after_the_close(world: World) -> None:
    await organise(world, 3)
    await world.emit(
        world.activities, attendance("a1", "m01", "present", "2010-05-12"), at("2010-05-12")
    )
    await world.settle()
    secretary = world.api.auth("branch_secretary", branches=["nde-b1"], member_id="m01")
    await world.post("/v1/branches/nde-b1/periods/P1/close", {}, secretary)
    again = await world.api.client.post("/v1/branches/nde-b1/periods/P1/close", headers=secretary)
    assert again.json()["rule"] == "period_closed"
    closed = (await world.api.context.store.read_all(types=["assessment.closed"]))[0].data
    assert [r["member_id"] for r in closed["results"]] == ["m01", "m02", "m03"]
    assert closed["revision"] == 1
    # A late attendance for the closed period counts live and is listed as after the close.
    await world.emit(
        world.activities, attendance("a2", "m02", "present", "2010-05-26"), at("2010-05-26")
    )
    await world.settle()
    table = await world.get("/v1/branches/nde-b1/periods/P1", secretary)
    assert table["closed"]["revision"] == 1
    assert [a["members"] for a in table["after_close"]] == [["m02"]]
    assert {m["member_id"]: m["total"] for m in table["members"]}["m02"] == "70.0"
    await world.post("/v1/branches/nde-b1/periods/P1/reopen", {"reason": "补录考勤"}, secretary)
    await world.post("/v1/branches/nde-b1/periods/P1/close", {}, secretary)
    closes = await world.api.context.store.read_all(types=["assessment.closed"])
    assert [c.data["revision"] for c in closes] == [1, 2]
    table = await world.get("/v1/branches/nde-b1/periods/P1", secretary)
    assert (table["closed"]["revision"], table["after_close"]) == (2, [])
