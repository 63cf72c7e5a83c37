"""Scoring's reads answer from the stored lines (issue 15), against the real PostgreSQL: the same
member's score and branch table with and without years of older history, `as_of` and `known_at`
cuts of the stored lines (events entered late, a correction entered late, a version published
later) with totals worked out by hand, and a structural check that a read loads no archived
input and touches the same rows whatever the history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from contracts.events import AttendanceCorrected, MemberDisciplined
from services.scoring.archive import Archive
from services.scoring.handlers import ScoringService
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.integration.test_scoring import World, attendance, organise
from tests.support.apps import SettableClock, running, service_settings
from tests.support.producer import at, producer

YEARS = ("2007", "2008", "2009", "2010")
REGULATION: dict[str, Any] = {
    "id": "reads-reg",
    "version": 1,
    "title": {"zh": "测试规定", "en": "Reads regulation"},
    "effective_from": "2007-01-01",
    "periods": [{"id": y, "starts_on": f"{y}-01-01", "ends_on": f"{y}-12-31"} for y in YEARS],
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


class ReadsWorld(World):
    clock: SettableClock


@pytest.fixture
async def world(
    database_url: str,
    stream_prefix: str,
    redis_client: redis.Redis,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[ReadsWorld]:
    monkeypatch.setenv("PARTY_SCORING_REGULATION_ID", "reads-reg")
    monkeypatch.setenv("PARTY_SCORING_DEFAULT_REGULATION", "")
    settings = service_settings(
        database_url, f"t_reads_{id(pool) % 10**8}", stream_prefix, REDIS_URL
    )
    clock = SettableClock()
    clock.now = at("2006-12-30", 9)  # published before the first year of history
    async with (
        running(SCORING, settings, clock) as api,
        producer(pool, redis_client, stream_prefix, "roster") as roster,
        producer(pool, redis_client, stream_prefix, "activities") as activities,
    ):
        made = ReadsWorld(api, roster, activities)
        made.clock = clock
        await made.post("/v1/regulations", REGULATION, status=201)
        clock.now = None
        yield made


def meeting(activity: str, member: str, status: str, day: str) -> Any:
    return attendance(activity, member, status, day)


def volunteer(activity: str, member: str, hours: str, day: str) -> Any:
    return attendance(activity, member, "present", day, kind="volunteer_service", hours=hours)


async def correct(w: World, original: Any, wrong: Any, status: str, day: str) -> None:
    await w.emit(
        w.activities,
        AttendanceCorrected(
            **{
                **meeting(original.activity_id, original.member_id, status, day).model_dump(),
                "corrects_event_id": wrong,
                "previous_status": original.status,
                "reason": "误记",
            }
        ),
        at(day),
    )


async def this_year(w: World) -> None:
    """2010, worked out by hand (base 60; present +10 capped at 30; absent −5; volunteer hours
    × 2 capped at 20; a discipline measure vetoes the period):

    | member | lines                                   | arithmetic           | total |
    |--------|-----------------------------------------|----------------------|-------|
    | m01    | present a1 a2 a3 a4                     | 60 + min(40, 30)     | 90    |
    | m02    | present a1, absent a2                   | 60 + 10 − 5          | 65    |
    | m03    | present a1; volunteer 4 h and 8 h       | 60 + 10 + min(24,20) | 90    |
    | m04    | —                                       | 60                   | 60    |
    | m05    | present a1; disciplined                 | veto → floor         | 0     |
    | m06    | present a1, corrected to absent         | 60 − 5               | 55    |
    """
    await organise(w, 6)
    days = {"a1": "2010-05-12", "a2": "2010-05-26", "a3": "2010-06-09", "a4": "2010-06-23"}
    a = w.activities
    for activity in ("a1", "a2", "a3", "a4"):
        await w.emit(a, meeting(activity, "m01", "present", days[activity]), at(days[activity]))
    await w.emit(a, meeting("a1", "m02", "present", days["a1"]), at(days["a1"]))
    await w.emit(a, meeting("a2", "m02", "absent", days["a2"]), at(days["a2"]))
    await w.emit(a, meeting("a1", "m03", "present", days["a1"]), at(days["a1"]))
    await w.emit(a, volunteer("v1", "m03", "4", "2010-07-03"), at("2010-07-03"))
    await w.emit(a, volunteer("v2", "m03", "8", "2010-08-07"), at("2010-08-07"))
    await w.emit(a, meeting("a1", "m05", "present", days["a1"]), at(days["a1"]))
    await w.emit(
        w.roster,
        MemberDisciplined(
            member_id="m05", measure="warning", decided_on=date(2010, 9, 1), reason="违纪"
        ),
        at("2010-09-01", 10),
    )
    original = meeting("a1", "m06", "present", days["a1"])
    wrong = await w.emit(a, original, at(days["a1"]))
    await correct(w, original, wrong, "absent", days["a1"])
    await w.settle()


THIS_YEAR = [  # member, total, rank, grade (two at 90: 2 ≤ ⌊6/3⌋ = 2, both excellent)
    ("m01", "90.0", 1, "excellent"),
    ("m03", "90.0", 1, "excellent"),
    ("m02", "65.0", 3, "basic"),
    ("m04", "60.0", 4, "basic"),
    ("m06", "55.0", 5, "unqualified"),
    ("m05", "0.0", 6, "unqualified"),
]


async def history(w: World, years: tuple[str, ...] = ("2007", "2008", "2009")) -> None:
    """Three earlier years, entered after this year's (recorded late): in each, m01 is absent
    from five meetings (60 − 25 = 35) and present at one corrected to absent; the others are
    present at four meetings (60 + 30 = 90); m02 is disciplined in 2008 (that year's 0)."""
    a = w.activities
    for year in years:
        for n in range(5):
            day = f"{year}-0{n + 3}-10"
            await w.emit(a, meeting(f"h{year}-{n}", "m01", "absent", day), at(day))
            for member in ("m02", "m03", "m04", "m05", "m06"):
                if n < 4:
                    await w.emit(a, meeting(f"h{year}-{n}", member, "present", day), at(day))
        original = meeting(f"h{year}-x", "m01", "present", f"{year}-10-10")
        wrong = await w.emit(a, original, at(f"{year}-10-10"))
        await correct(w, original, wrong, "absent", f"{year}-10-10")
    await w.emit(
        w.roster,
        MemberDisciplined(
            member_id="m02", measure="warning", decided_on=date(2008, 9, 1), reason="违纪"
        ),
        at("2008-09-01", 10),
    )
    await w.settle()


def table_rows(table: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    return [(m["member_id"], m["total"], m["rank"], m["grade"]) for m in table["members"]]


async def test_reads_are_the_same_with_and_without_years_of_history(world: ReadsWorld) -> None:
    await this_year(world)
    score = await world.get("/v1/members/m01/score", period_id="2010")
    table = await world.get("/v1/branches/nde-b1/periods/2010")
    summary = await world.get("/v1/periods/2010/summary")
    assert table_rows(table) == THIS_YEAR
    assert [(p["period_id"], p["total"]) for p in score] == [("2010", "90.0")]
    assert [e["counted"] for e in score[0]["ledger"]] == ["10.0", "10.0", "10.0", "0.0"]
    m06 = (await world.get("/v1/members/m06/score", period_id="2010"))[0]
    assert m06["total"] == "55.0"  # the corrected line no longer counts: 60 − 5

    await history(world)
    assert await world.get("/v1/members/m01/score", period_id="2010") == score
    assert await world.get("/v1/branches/nde-b1/periods/2010") == table
    assert await world.get("/v1/periods/2010/summary") == summary
    # The history is there, each year on its own: m01 60 − 5 × 5 − 5 (the corrected one) = 30
    every = {p["period_id"]: p["total"] for p in await world.get("/v1/members/m01/score")}
    assert every == {"2007": "30.0", "2008": "30.0", "2009": "30.0", "2010": "90.0"}
    m02 = {p["period_id"]: p["total"] for p in await world.get("/v1/members/m02/score")}
    assert m02 == {"2007": "90.0", "2008": "0.0", "2009": "90.0", "2010": "65.0"}  # 2008 vetoed
    # Each line still names its cause, rule and version.
    line = score[0]["ledger"][0]
    assert (line["cause_type"], line["rule_id"], line["regulation_id"]) == (
        "attendance.recorded",
        "present",
        "reads-reg",
    )
    assert line["regulation_version"] == 1
    assert line["actor_id"] == "secretary-b1"
    replay = await world.post("/v1/replay", {}, world.auditor)
    assert replay["equal"], replay["first_difference"]


async def test_as_of_and_known_at_cut_the_stored_lines(world: ReadsWorld) -> None:
    """m01 in 2010, each event entered on the day in brackets:

    | event                                     | occurred | recorded | points |
    |-------------------------------------------|----------|----------|--------|
    | present a1                                | 05-12    | 05-13    | +10    |
    | present a2 (late)                         | 05-26    | 11-20    | +10    |
    | absent a3                                 | 06-09    | 06-10    | −5     |
    | a3 corrected to present (late)            | 06-09    | 12-10    | −5→+10 |
    | volunteer 3 h                             | 07-01    | 07-02    | +6     |
    | version 2 published: present worth 5      | —        | 2011-01-10 | —    |
    """
    await organise(world, 2)
    await world.settle()
    a = world.activities
    # Entered in the order of record time (a producer's record times never go back).
    ids = {}
    for activity, status, day, recorded in [
        ("a1", "present", "2010-05-12", "2010-05-13"),
        ("a3", "absent", "2010-06-09", "2010-06-10"),
    ]:
        a.now = at(recorded, 9)
        ids[activity] = await world.emit(a, meeting(activity, "m01", status, day), at(day))
    a.now = at("2010-07-02", 9)
    await world.emit(a, volunteer("v1", "m01", "3", "2010-07-01"), at("2010-07-01"))
    a.now = at("2010-11-20", 9)
    await world.emit(a, meeting("a2", "m01", "present", "2010-05-26"), at("2010-05-26"))
    a.now = at("2010-12-10", 9)
    await correct(
        world, meeting("a3", "m01", "absent", "2010-06-09"), ids["a3"], "present", "2010-06-09"
    )
    await world.settle()

    async def total(**cut: Any) -> str:
        periods = await world.get("/v1/members/m01/score", period_id="2010", **cut)
        table = await world.get("/v1/branches/nde-b1/periods/2010", **cut)
        by_member = {m["member_id"]: m["total"] for m in table["members"]}
        assert by_member["m02"] == "60.0"  # nothing but the base
        assert (periods[0]["total"] if periods else "60.0") == by_member["m01"]
        return str(by_member["m01"])

    # live: 60 + min(10 + 10 + 10, 30) + 6 = 96
    assert await total() == "96.0"
    # as_of 30 June (what had occurred): a1, a2, a3 corrected → 60 + 30 = 90 (no volunteering)
    assert await total(as_of="2010-06-30") == "90.0"
    # as_of 31 May: a1, a2 → 80
    assert await total(as_of="2010-05-31") == "80.0"
    # known_at 1 November (what was recorded): a1, a3 still absent, volunteering → 60+10−5+6
    assert await total(known_at="2010-11-01T00:00:00+08:00") == "71.0"
    # known_at 1 December: a2 entered on 20 November too → 81
    assert await total(known_at="2010-12-01T00:00:00+08:00") == "81.0"
    # both: occurred by 30 June and recorded by 1 November → a1, a3 absent → 65
    assert await total(as_of="2010-06-30", known_at="2010-11-01T00:00:00+08:00") == "65.0"

    # A version recorded later re-scores the year: present worth 5 from then on.
    world.clock.now = at("2011-01-10", 9)
    revised = {
        **REGULATION,
        "version": 2,
        "rules": [{**REGULATION["rules"][0], "points": "5"}, *REGULATION["rules"][1:]],
    }
    await world.post("/v1/regulations", revised, status=201)
    world.clock.now = None
    # live, under version 2: 60 + 5 + 5 + 5 + 6 = 81
    assert await total() == "81.0"
    # known before version 2 was: version 1's lines, as they were
    assert await total(known_at="2010-12-31T00:00:00+08:00") == "96.0"
    assert await total(known_at="2010-11-01T00:00:00+08:00") == "71.0"
    # as_of 30 June under version 2: 60 + 15 = 75
    assert await total(as_of="2010-06-30") == "75.0"
    ledger = (await world.get("/v1/members/m01/score", period_id="2010"))[0]["ledger"]
    assert {(e["rule_id"], e["regulation_version"]) for e in ledger} == {
        ("present", 2),
        ("volunteer", 2),
    }
    before = (
        await world.get(
            "/v1/members/m01/score", period_id="2010", known_at="2010-12-31T00:00:00+08:00"
        )
    )[0]["ledger"]
    assert [(e["rule_id"], e["regulation_version"], e["counted"]) for e in before] == [
        ("present", 1, "10.0"),  # a1
        ("present", 1, "10.0"),  # a2
        ("present", 1, "10.0"),  # a3 as corrected; the absence it replaced is not shown
        ("volunteer", 1, "6.0"),
    ]
    replay = await world.post("/v1/replay", {}, world.auditor)
    assert replay["equal"], replay["first_difference"]


class Recorder:
    """The archive's pool, recording each query and how many rows it returned."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.queries: list[tuple[str, int]] = []

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        rows = await self._pool.fetch(query, *args)
        self.queries.append((query, len(rows)))
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


async def test_reads_load_no_archived_input_and_touch_the_same_rows(
    world: ReadsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    await this_year(world)
    context = world.api.context
    archive: Archive = context.extras["scoring_archive"]
    reads = [
        ("/v1/members/m01/score", {"period_id": "2010"}),
        ("/v1/members/m01/score", {"period_id": "2010", "as_of": "2010-06-30"}),
        ("/v1/members/m03/score", {"period_id": "2010", "known_at": "2030-01-01T00:00:00Z"}),
        ("/v1/branches/nde-b1/periods/2010", {}),
        ("/v1/branches/nde-b1/periods/2010", {"known_at": "2030-01-01T00:00:00Z"}),
        ("/v1/schools/nde/periods/2010", {"as_of": "2010-08-01"}),
        ("/v1/periods/2010/summary", {}),
    ]

    async def rows_read() -> list[list[tuple[str, int]]]:
        found = []
        for path, params in reads:
            recorder = Recorder(archive.pool)
            with monkeypatch.context() as m:
                m.setattr(archive, "pool", recorder)
                await world.get(path, **params)
            found.append(recorder.queries)
        return found

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a read loaded archived inputs")

    # No read folds inputs again: the loaders of archived inputs are not called at all.
    for name in ("inputs_of", "inputs_since", "all_inputs", "members_with_inputs_since"):
        monkeypatch.setattr(Archive, name, refuse)
    for name in ("member_periods", "branch_inputs", "branch_result"):
        monkeypatch.setattr(ScoringService, name, refuse)
    without = await rows_read()
    # every query of a read is one of the stored lines, adjustments, directory, regulations
    for queries in without:
        for query, _ in queries:
            assert " data::text" not in query, query
    # m01's ledger read returned its four lines of 2010, no more
    lines = [n for q, n in without[0] if "FROM" in q and ".lines WHERE" in q]
    assert lines == [4]

    monkeypatch.undo()
    await history(world)
    for name in ("inputs_of", "inputs_since", "all_inputs", "members_with_inputs_since"):
        monkeypatch.setattr(Archive, name, refuse)
    for name in ("member_periods", "branch_inputs", "branch_result"):
        monkeypatch.setattr(ScoringService, name, refuse)
    # Three years more in the archive: every read runs the same queries and gets the same rows.
    assert await rows_read() == without
