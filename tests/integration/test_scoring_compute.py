"""A what-if under a large draft, and a replay, leave scoring answering (issue 14, "What-if
blocks scoring"): the service runs as a real process (`party serve scoring`, as in production)
on the real PostgreSQL and Redis, fed by stand-in producers over the real streams; while a
what-if under a draft of as many rules as allowed computes, `/health` and a command are polled
and timed from another process. A what-if past its time limit is stopped with 422 naming the
limit while the service goes on answering, and a draft over the size limits is refused at once.
(tests/integration/test_scoring_limits.py checks the same in the test process.)"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from contracts.events import AttendanceRecorded, CommitteeElected, MemberEnrolled, UnitRegistered
from runtime.eventstore import EventMetadata, NewEvent, StreamAppend
from services.scoring.domain.regulation import MAX_CONDITION_VALUES
from tests.conftest import REDIS_URL
from tests.support.processes import ServiceProcesses, bearer
from tests.support.producer import Producer, at, producer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(420)

MEMBERS = 60
MEETINGS = 150  # 9,000 attendance records: the scale of a school's year
#: The `/health` answer the issue asks for while a what-if computes (100 ms), and a command's
#: (a committee member asks for an adjustment: a few queries and a commit). On a quiet machine
#: every answer is within them; on one busy with other work (CI shares two cores with other
#: jobs) the idle service is already slower, so the test holds the median to them, or to three
#: times the idle median measured just before, and every answer to a ceiling ten times higher:
#: with the computation on the event loop, the first answer waits for all of it (tens of
#: seconds), whatever the load.
HEALTH_BOUND = 0.1
COMMAND_BOUND = 0.5
CEILING = 10

REGULATION: dict[str, Any] = {
    "id": "test-reg",
    "version": 1,
    "title": "Test regulation",
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
            "points": "1",
            "cap": "30",
        },
        {
            "id": "absent",
            "title": "absent",
            "on": "attendance.recorded",
            "when": {"status": "absent"},
            "points": "-2",
        },
    ],
    "grades": [
        {"grade": "excellent", "min": "90", "max_share": "1/3"},
        {"grade": "qualified", "min": "80"},
        {"grade": "basic", "min": "60"},
        {"grade": "unqualified"},
    ],
}


def large_draft(rules: int, conditions_values: int = 10) -> dict[str, Any]:
    """A draft of `rules` rules, each of them looked at for every attendance record: all but
    two never match (their last condition lists members who do not exist), the way a draft
    written in a hurry (or by an attacker) makes the fold as long as it can. (The engine's rule
    index leaves every filler rule a candidate for a present member, but checks each once:
    the largest drafts list as many values as a condition may, MAX_CONDITION_VALUES.)"""
    nobody = [f"x{n:03d}" for n in range(conditions_values)]
    filler = [
        {
            "id": f"r{n:04d}",
            "title": {"zh": f"规则 {n}", "en": f"rule {n}"},
            "on": "attendance.recorded",
            "when": {
                "status": "present",
                "activity_kind": "all_member_meeting",
                "member_id": nobody,
            },
            "points": "1",
        }
        for n in range(rules - 2)
    ]
    return {
        **REGULATION,
        "version": 2,
        "rules": [
            {**REGULATION["rules"][0], "points": "2"},
            {**REGULATION["rules"][1], "points": "-5"},
            *filler,
        ],
    }


def meeting_day(n: int) -> date:
    return date(2010, 5, 3) + timedelta(days=4 * n)


@dataclass
class Scoring:
    processes: ServiceProcesses
    pool: asyncpg.Pool
    schema: str
    roster: Producer
    activities: Producer
    admin: dict[str, str] = field(default_factory=lambda: bearer("university_admin"))
    auditor: dict[str, str] = field(default_factory=lambda: bearer("auditor"))

    @property
    def url(self) -> str:
        return self.processes.url("scoring")

    async def applied(self) -> int:
        return int(await self.pool.fetchval(f'SELECT count(*) FROM "{self.schema}".inbox'))


async def _append(source: Producer, events: list[tuple[Any, Any, str | None]]) -> None:
    """Many events in a few commits (a producer's batch), each commit signed."""
    for start in range(0, len(events), 500):
        await source.store.append(
            StreamAppend(
                f"s-{uuid4()}",
                [
                    NewEvent.from_payload(payload, occurred_at=occurred, branch_id=branch)
                    for payload, occurred, branch in events[start : start + 500]
                ],
            ),
            metadata=EventMetadata("secretary-b1", "branch_secretary"),
        )


async def _organise(world: Scoring) -> int:
    members = [f"m{n:02d}" for n in range(1, MEMBERS + 1)]
    roster: list[tuple[Any, Any, str | None]] = [
        (
            UnitRegistered(unit_id="nde", kind="school", name="国防教育学院", parent_id=None),
            at("2010-05-01", 8),
            None,
        ),
        (
            UnitRegistered(
                unit_id="nde-b1",
                kind="branch",
                name="学生第一党支部",
                parent_id="nde",
                branch_kind="student",
            ),
            at("2010-05-01", 8),
            "nde-b1",
        ),
    ]
    for n, member_id in enumerate(members):
        roster.append(
            (
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
                    enrolled_on=date(2010, 5, 2),
                ),
                at("2010-05-02", 9),
                "nde-b1",
            )
        )
    roster.append(
        (
            CommitteeElected(
                branch_id="nde-b1",
                secretary_id="m01",
                member_ids=["m01", "m02"],
                term_starts_on=date(2010, 5, 2),
                term_ends_on=date(2013, 5, 1),
                elected_on=date(2010, 5, 2),
            ),
            at("2010-05-02", 10),
            "nde-b1",
        )
    )
    attendance: list[tuple[Any, Any, str | None]] = []
    for meeting in range(MEETINGS):
        day = meeting_day(meeting)
        for n, member_id in enumerate(members):
            attendance.append(
                (
                    AttendanceRecorded(
                        activity_id=f"a{meeting}",
                        member_id=member_id,
                        status="absent" if (n + meeting) % 7 == 0 else "present",
                        excuse=None,
                        activity_kind="all_member_meeting",
                        branch_id="nde-b1",
                        group_id=None,
                        activity_date=day,
                        volunteer_hours=None,
                    ),
                    at(day.isoformat()),
                    "nde-b1",
                )
            )
    await _append(world.roster, roster)
    await _append(world.activities, attendance)
    await world.roster.publish()
    await world.activities.publish()
    return len(roster) + len(attendance)


@pytest.fixture
async def world(
    database_url: str,
    stream_prefix: str,
    redis_client: redis.Redis,
    pool: asyncpg.Pool,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Scoring]:
    """Scoring as `party serve scoring` (settings of a test's indirect parameter added), the
    test regulation published, 60 members and 3,000 attendance records applied."""
    schema = f"t_{uuid4().hex[:10]}_scoring"
    settings: dict[str, str] = getattr(request, "param", {})
    processes = ServiceProcesses(
        database_url,
        REDIS_URL,
        stream_prefix,
        tmp_path,
        extra_env={
            "PARTY_ENV": "development",
            "PARTY_DB_SCHEMA": schema,
            "PARTY_SCORING_REGULATION_ID": "test-reg",
            "PARTY_SCORING_DEFAULT_REGULATION": "",
            "PARTY_CHECKPOINT_SECONDS": "3600",
            "PARTY_LOG_LEVEL": "WARNING",
            **settings,
        },
    )
    async with (
        producer(pool, redis_client, stream_prefix, "roster") as roster,
        producer(pool, redis_client, stream_prefix, "activities") as activities,
    ):
        processes.start("scoring")
        try:
            await asyncio.to_thread(processes.wait_ready, "scoring")
            made = Scoring(processes, pool, schema, roster, activities)
            async with httpx.AsyncClient(base_url=made.url, timeout=30) as client:
                published = await client.post(
                    "/v1/regulations",
                    json=REGULATION,
                    headers={**made.admin, "Idempotency-Key": "publish-test-reg"},
                )
                assert published.status_code == 201, published.text
            expected = await _organise(made)

            async def all_applied() -> bool:
                return await made.applied() >= expected

            await wait_until(all_applied, within=120, what="scoring to apply every input")
            yield made
        finally:
            processes.stop_all()
            await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Timings:
    health: list[float] = field(default_factory=list)
    commands: list[float] = field(default_factory=list)

    def summary(self) -> str:
        def of(values: list[float]) -> str:
            if not values:
                return "none"
            return (
                f"{len(values)} answers, median {statistics.median(values) * 1000:.1f} ms, "
                f"max {max(values) * 1000:.1f} ms"
            )

        return f"/health: {of(self.health)}; commands: {of(self.commands)}"


async def _poll(world: Scoring, until: Callable[[], bool]) -> Timings:
    """Time /health every 50 ms, and a command every half second, until `until()`."""
    timings = Timings()
    committee = bearer("committee_member", subject="m01", branches=["nde-b1"], member_id="m01")
    async with httpx.AsyncClient(base_url=world.url, timeout=120) as client:
        await client.get("/health")  # a connection of its own, opened before the what-if
        n = 0
        while not until():
            started = time.perf_counter()
            answer = await client.get("/health")
            timings.health.append(time.perf_counter() - started)
            assert answer.status_code == 200
            if n % 10 == 5:
                started = time.perf_counter()
                asked = await client.post(
                    "/v1/branches/nde-b1/adjustments",
                    json={
                        "member_id": "m03",
                        "points": "1",
                        "reason": "helped at the outing",
                        "effective_on": "2010-06-01",
                    },
                    headers={**committee, "Idempotency-Key": f"adjustment-{uuid4()}"},
                )
                timings.commands.append(time.perf_counter() - started)
                assert asked.status_code == 201, asked.text
            n += 1
            await asyncio.sleep(0.05)
    return timings


async def _baseline(world: Scoring, seconds: float = 3.0) -> Timings:
    """The same polls with nothing else running: what this machine gives right now (a CI
    machine of two cores is shared with other jobs)."""
    deadline = time.monotonic() + seconds
    return await _poll(world, lambda: time.monotonic() > deadline)


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (not of its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _check(what: str, during: list[float], idle: list[float], limit: float) -> None:
    """During the computation: the median within the limit (or three times the idle median,
    when the machine is too loaded to meet it even idle), every answer within ten times it."""
    typical = max(limit, 3 * statistics.median(idle))
    assert statistics.median(during) < typical, f"{what}: median above {typical * 1000:.0f} ms"
    assert max(during) < CEILING * limit, f"{what}: an answer over {CEILING * limit:.1f} s"


async def test_scoring_answers_health_and_commands_while_a_large_what_if_computes(
    world: Scoring,
) -> None:
    # as many rules as a draft may have, and values as a condition may
    draft = large_draft(500, MAX_CONDITION_VALUES)
    idle = await _baseline(world)
    pid = world.processes.pid("scoring")
    async with httpx.AsyncClient(base_url=world.url, timeout=120) as client:
        cpu = _cpu_seconds(pid)
        started = time.perf_counter()
        task = asyncio.create_task(
            client.post(
                "/v1/what-if",
                json={"period_id": "P1", "branch_id": "nde-b1", "draft": draft},
                headers=world.auditor,
            )
        )
        timings = await _poll(world, task.done)
        response = await task
        took = time.perf_counter() - started
        cpu = _cpu_seconds(pid) - cpu
    print(
        f"\nidle: {idle.summary()}\n"
        f"what-if of 500 rules over {MEMBERS * MEETINGS} inputs, {took:.2f} s, the service's "
        f"process {cpu:.2f} s of CPU: {timings.summary()}"
    )
    assert response.status_code == 200, response.text
    members = {m["member_id"]: m for m in response.json()["members"]}
    assert len(members) == MEMBERS
    # m01 was present at every meeting but the ones where (n + meeting) % 7 == 0.
    assert members["m07"]["new_total"] != members["m07"]["old_total"]
    # The what-if took long enough for the polls to mean something …
    assert took > 1.0, f"the what-if took {took:.2f} s: too short to measure anything"
    assert len(timings.health) >= 10
    # … and the service answered all along: no answer waited for the computation (on the event
    # loop, the first one waits for nearly all of it).
    assert max(timings.health) < 0.1 * took, timings.summary()
    _check("/health", timings.health, idle.health, HEALTH_BOUND)
    assert timings.commands, timings.summary()
    _check("commands", timings.commands, idle.commands, COMMAND_BOUND)


async def test_a_replay_leaves_health_answering(world: Scoring) -> None:
    idle = await _baseline(world)
    async with httpx.AsyncClient(base_url=world.url, timeout=120) as client:
        task = asyncio.create_task(client.post("/v1/replay", headers=world.auditor))
        timings = await _poll(world, task.done)
        response = await task
    print(f"\nidle: {idle.summary()}\nreplay: {timings.summary()}")
    assert response.status_code == 200, response.text
    assert response.json()["equal"] is True, response.json()
    _check("/health", timings.health, idle.health, HEALTH_BOUND)


@pytest.mark.parametrize("world", [{"PARTY_SCORING_COMPUTE_SECONDS": "0.5"}], indirect=True)
async def test_a_what_if_past_its_time_limit_is_stopped_and_one_over_the_size_refused(
    world: Scoring,
) -> None:
    async with httpx.AsyncClient(base_url=world.url, timeout=60) as client:
        started = time.perf_counter()
        task = asyncio.create_task(
            client.post(
                "/v1/what-if",
                json={
                    "period_id": "P1",
                    "branch_id": "nde-b1",
                    "draft": large_draft(500, MAX_CONDITION_VALUES),
                },
                headers=world.auditor,
            )
        )
        timings = await _poll(world, task.done)
        response = await task
        took = time.perf_counter() - started
        print(f"\nwhat-if stopped after {took:.2f} s: {timings.summary()}")
        assert response.status_code == 422, response.text
        assert "PARTY_SCORING_COMPUTE_SECONDS" in response.text
        assert took < 6  # stopped at the limit, not computed to the end
        assert max(timings.health) < CEILING * HEALTH_BOUND, timings.summary()
        # The next one gets a process of its own and answers.
        small = await client.post(
            "/v1/what-if",
            json={"period_id": "P1", "branch_id": "nde-b1", "draft": large_draft(3)},
            headers=world.auditor,
        )
        assert small.status_code == 200, small.text
        # A draft over the size limits is refused before anything is computed, naming it.
        refused = await client.post(
            "/v1/what-if",
            json={"period_id": "P1", "branch_id": "nde-b1", "draft": large_draft(4000)},
            headers=world.auditor,
        )
        assert refused.status_code == 422, refused.text
        assert refused.elapsed.total_seconds() < 2
        fields = {e["field"]: e["reason"] for e in refused.json()["errors"]}
        assert "at most 500 rules" in " ".join(fields.values()), fields
        many_values = large_draft(3, conditions_values=101)
        refused = await client.post(
            "/v1/what-if",
            json={"period_id": "P1", "branch_id": "nde-b1", "draft": many_values},
            headers=world.auditor,
        )
        assert refused.status_code == 422, refused.text
        assert "at most 100 values" in refused.text
