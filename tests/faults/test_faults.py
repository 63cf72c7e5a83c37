"""Faults under load, with the services as real processes: each killed with SIGKILL in turn,
PostgreSQL stopped for ten seconds, Redis restarted empty. Afterwards every accepted command's
events are in the logs exactly once, the chains verify, every read model equals its log folded
again, scoring equals its replay, and no reminder went out twice. Each test ends by itself."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from runtime.eventstore import verify_chain
from runtime.service import rebuild_read_models
from runtime.settings import Settings
from services.registry import SERVICES
from services.scenario.load import CONSUMES
from tests.conftest import REDIS_URL
from tests.support.keys import keys_dir
from tests.support.processes import NAMES, CarefulClient, Outcome, ServiceProcesses, bearer
from tests.support.servers import RedisServer, free_port

pytestmark = pytest.mark.timeout(600)

BRANCH = "nde-b1"
REGULARS = [f"m-regular-{n}" for n in range(8)]  # enrolled before the load: in every sheet
#: The load happens now: the branch's year starts yesterday, in this year's period.
YESTERDAY = date.today() - timedelta(days=1)
YEAR = str(date.today().year)


@dataclass
class Accepted:
    members: list[str] = field(default_factory=list)
    activities: list[str] = field(default_factory=list)
    sheets: dict[str, list[str]] = field(default_factory=dict)
    adjustments: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)


@asynccontextmanager
async def fault_world(
    database_url: str, redis_url: str, log_dir: Path, **env: str
) -> AsyncIterator[tuple[ServiceProcesses, CarefulClient]]:
    prefix = f"f{uuid4().hex[:8]}"
    stack = ServiceProcesses(database_url, redis_url, prefix, log_dir, extra_env=env)
    stack.start_all()
    client = CarefulClient({name: stack.url(name) for name in NAMES})
    try:
        await organisation(client)
        yield stack, client
    except BaseException:
        for name in NAMES:  # what went wrong inside, for the failure report
            lines = stack.log_tail(name, 5000).splitlines()
            errors = [line for line in lines if '"level": "error"' in line]
            print(f"--- {name}: {len(errors)} error lines", *errors[-5:], sep="\n")
        raise
    finally:
        await client.close()
        stack.stop_all()


async def organisation(client: CarefulClient) -> None:
    units = [
        {"unit_id": "nde", "kind": "school", "name": "国防教育学院"},
        {
            "unit_id": BRANCH,
            "kind": "branch",
            "name": "学生第一党支部",
            "parent_id": "nde",
            "branch_kind": "student",
        },
        {"unit_id": f"{BRANCH}-g1", "kind": "group", "name": "第一党小组", "parent_id": BRANCH},
    ]
    for unit in units:
        await client.command("roster", "/v1/units", unit, f"unit-{unit['unit_id']}")
    for member in REGULARS:
        await client.command("roster", "/v1/members", enrolment(member), f"enrol-{member}")
    committee = {
        "secretary_id": REGULARS[0],
        "member_ids": REGULARS[:3],
        "term_starts_on": YESTERDAY.isoformat(),
        "term_ends_on": (YESTERDAY + timedelta(days=3 * 365)).isoformat(),
        "elected_on": YESTERDAY.isoformat(),
    }
    await client.command("roster", f"/v1/branches/{BRANCH}/committee", committee, "committee")
    # A regulation with a period for this year, so that the load is scored.
    async with httpx.AsyncClient(timeout=30) as http:
        versions = (
            await http.get(f"{client.urls['scoring']}/v1/regulations", headers=client.admin)
        ).json()
    document = {
        **versions[-1]["document"],
        "version": 2,
        "effective_from": f"{YEAR}-01-01",
        "periods": [{"id": YEAR, "starts_on": f"{YEAR}-01-01", "ends_on": f"{YEAR}-12-31"}],
    }
    await client.command("scoring", "/v1/regulations", document, f"regulation-{YEAR}")
    await settle(client, "activities", "scoring", "notify")


def enrolment(member_id: str) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "branch_id": BRANCH,
        "student_number": str(abs(hash(member_id)) % 10**10).rjust(10, "0"),
        "name": f"党员{member_id[-4:]}",
        "group_id": f"{BRANCH}-g1",
        "class_name": "国防2601",
        "company": "一连",
        "dormitory": "8-312",
        "bed": "1",
        "standing": "full",
        "joined_on": (YESTERDAY - timedelta(days=365)).isoformat(),
        "enrolled_on": YESTERDAY.isoformat(),
        "expected_graduation": (YESTERDAY + timedelta(days=3 * 365)).isoformat(),
    }


async def settle(client: CarefulClient, *services: str, within: float = 120.0) -> None:
    """Until these services have applied everything their producers have recorded."""
    auditor = bearer("auditor")
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=10) as http:

        async def progress(service: str) -> dict[str, int]:
            while True:
                try:
                    response = await http.get(
                        f"{client.urls[service]}/v1/audit/progress", headers=auditor
                    )
                    if response.status_code == 200:
                        return response.json()  # type: ignore[no-any-return]
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"{service} does not answer")
                await asyncio.sleep(0.2)

        for service in services:
            seen: list[tuple[float, int]] = []  # to tell a slow consumer from a stuck one
            while True:
                producers = [p for p in CONSUMES[service] if p != "scoring" or service != "roster"]
                heads = sum([(await progress(p))["head_position"] for p in producers])
                applied = (await progress(service))["inbox"]
                if applied >= heads:
                    break
                seen.append((time.monotonic(), applied))
                if time.monotonic() > deadline:
                    earlier = next((n for t, n in seen if t >= seen[-1][0] - 30), applied)
                    raise AssertionError(
                        f"{service} applied {applied} of {heads} events "
                        f"({applied - earlier} in the last 30 s)"
                    )
                await asyncio.sleep(0.3)


async def mixed_load(client: CarefulClient, accepted: Accepted, stop: asyncio.Event) -> None:
    """Enrolments, activities (with reminders ahead or attendance behind), and adjustments,
    from four callers at once, until told to stop."""
    tag = uuid4().hex[:6]
    now = datetime.now(UTC)
    counter = itertools.count()

    async def enrol() -> None:
        while not stop.is_set():
            member = f"m-{tag}-{next(counter)}"
            outcome = await client.command("roster", "/v1/members", enrolment(member), member)
            accepted.outcomes.append(outcome)
            if outcome.status == 201:
                accepted.members.append(member)
            await asyncio.sleep(0.05)  # a registrar's pace, not a flood

    async def activities(worker: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            activity_id = f"a-{tag}-{worker}-{n}"
            # Ahead: reminders go out (a few, as a branch plans a few weeks ahead); behind:
            # attendance is taken.
            ahead = n % 2 == 0 and n < 4
            starts = now + (timedelta(hours=2) if ahead else -timedelta(hours=3, minutes=n))
            body = {
                "activity_id": activity_id,
                "kind": "all_member_meeting",
                "title": f"支部大会 {n}",
                "branch_id": BRANCH,
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=1)).isoformat(),
                "place": "301",
            }
            outcome = await client.command("activities", "/v1/activities", body, activity_id)
            accepted.outcomes.append(outcome)
            if outcome.status != 201:
                continue
            accepted.activities.append(activity_id)
            if not ahead:
                lines = [{"member_id": m, "status": "present"} for m in REGULARS]
                sheet = await client.command(
                    "activities",
                    f"/v1/activities/{activity_id}/attendance",
                    {"lines": lines},
                    f"sheet-{activity_id}",
                )
                accepted.outcomes.append(sheet)
                if sheet.status == 200:
                    accepted.sheets[activity_id] = REGULARS

    secretary = bearer(
        "branch_secretary", subject=REGULARS[0], branches=[BRANCH], member_id=REGULARS[0]
    )

    async def adjust() -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            adjustment = f"adj-{tag}-{n}"
            body = {
                "adjustment_id": adjustment,
                "member_id": REGULARS[n % len(REGULARS)],
                "period_id": YEAR,
                "points": "0.5",
                "reason": "志愿服务表彰",
            }
            outcome = await client.command(
                "scoring", f"/v1/branches/{BRANCH}/adjustments", body, adjustment, as_=secretary
            )
            accepted.outcomes.append(outcome)
            if outcome.status == 201:
                accepted.adjustments.append(adjustment)

    await asyncio.gather(enrol(), activities(0), activities(1), adjust())


async def check_everything(
    database_url: str,
    redis_url: str,
    stack: ServiceProcesses,
    client: CarefulClient,
    accepted: Accepted,
    redis_kept: bool = True,
) -> None:
    for name in NAMES:
        stack.wait_ready(name)
    # Notify, the slowest consumer, may still be working off the load on a busy machine.
    await settle(client, "activities", "scoring", "notify", "roster", within=240)
    refused = [o for o in accepted.outcomes if o.status >= 400]
    assert not refused, refused[:5]
    assert not client.unexpected, client.unexpected[:5]
    assert accepted.members
    assert accepted.activities
    assert accepted.sheets
    assert accepted.adjustments
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        await exactly_once(pool, accepted)
        for name in NAMES:
            report = await verify_chain(pool, name)
            assert report.intact, (name, report)
        await wait_for_quiet_reminders(pool)
        settings = Settings(
            database_url=database_url,
            redis_url=redis_url,
            stream_prefix=stack.prefix,
            keys_dir=str(keys_dir()),  # the stack's: the roster's personal-data key is there
            create_missing_key=False,
        )
        for definition in SERVICES.values():
            rebuilt = await rebuild_read_models(definition, settings, pool)
            assert rebuilt.equal, "\n".join(rebuilt.examples)
        await no_reminder_twice(pool, redis_url, stack.prefix, redis_kept)
    finally:
        await pool.close()
    async with httpx.AsyncClient(timeout=120) as http:
        replay = (
            await http.post(f"{stack.url('scoring')}/v1/replay", headers=bearer("auditor"))
        ).json()
        assert replay["equal"], replay
        for name in NAMES:
            letters = (
                await http.get(
                    f"{stack.url(name)}/v1/audit/dead-letters", headers=bearer("auditor")
                )
            ).json()
            assert letters == [], (name, letters[:2])


async def exactly_once(pool: asyncpg.Pool, accepted: Accepted) -> None:
    async def counts(schema: str, event_type: str, field: str) -> dict[str, int]:
        rows = await pool.fetch(
            f"SELECT data->>'{field}' AS id, count(*) AS n FROM {schema}.events "
            "WHERE type = $1 GROUP BY 1",
            event_type,
        )
        return {r["id"]: r["n"] for r in rows}

    enrolled = await counts("roster", "member.enrolled", "member_id")
    assert all(enrolled.get(m) == 1 for m in accepted.members), "an enrolment not exactly once"
    scheduled = await counts("activities", "activity.scheduled", "activity_id")
    assert all(scheduled.get(a) == 1 for a in accepted.activities)
    lines = await pool.fetch(
        "SELECT data->>'activity_id' AS a, data->>'member_id' AS m, count(*) AS n "
        "FROM activities.events WHERE type = 'attendance.recorded' GROUP BY 1, 2"
    )
    recorded = {(r["a"], r["m"]): r["n"] for r in lines}
    for activity, members in accepted.sheets.items():
        assert all(recorded.get((activity, m)) == 1 for m in members), activity
    requested = await counts("scoring", "score.adjustment_requested", "adjustment_id")
    assert all(requested.get(a) == 1 for a in accepted.adjustments)


async def wait_for_quiet_reminders(pool: asyncpg.Pool, within: float = 120.0) -> None:
    """Until no reminder is being delivered, due or waiting for a retry (after an outage of
    its channel): a rebuild compares a quiet service."""
    deadline = time.monotonic() + within
    while await pool.fetchval(
        "SELECT count(*) FROM notify.deliveries WHERE status = 'delivering' "
        "OR (status = 'pending' AND (next_attempt_at <= now() OR attempts > 0))"
    ):
        if time.monotonic() > deadline:
            counts = await pool.fetch(
                "SELECT status, count(*) AS n, min(next_attempt_at) AS first "
                "FROM notify.deliveries GROUP BY 1"
            )
            raise AssertionError(f"reminders still being delivered: {[dict(c) for c in counts]}")
        await asyncio.sleep(0.5)


async def no_reminder_twice(
    pool: asyncpg.Pool, redis_url: str, prefix: str, redis_kept: bool
) -> None:
    sent = await pool.fetch(
        "SELECT data->>'deadline_id' AS d, data->>'recipient_id' AS r, data->>'channel' AS c, "
        "data->>'lead_seconds' AS l FROM notify.events WHERE type = 'reminder.sent'"
    )
    assert sent, "the load was meant to send reminders"
    assert len(sent) == len({tuple(r) for r in sent}), "a reminder recorded as sent twice"
    client = redis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(f"{prefix}:notifications")
    finally:
        await client.aclose()
    delivered = [fields[b"delivery_id"] for _, fields in entries]
    assert len(delivered) == len(set(delivered)), "a reminder delivered twice"
    recorded = sum(r["c"] == "stream" for r in sent)
    # A Redis restarted empty lost what was delivered before; nothing is delivered again.
    assert len(delivered) == recorded if redis_kept else len(delivered) <= recorded


async def test_each_service_killed_in_turn_under_load_loses_and_repeats_nothing(
    fault_database: str, tmp_path: Path
) -> None:
    async with fault_world(fault_database, REDIS_URL, tmp_path) as (stack, client):
        accepted, stop = Accepted(), asyncio.Event()
        load = asyncio.create_task(mixed_load(client, accepted, stop))
        await asyncio.sleep(2)
        for name in NAMES:
            before = len(accepted.outcomes)
            stack.kill(name, signal.SIGKILL)
            await asyncio.sleep(1.5)
            stack.start(name)
            await asyncio.to_thread(stack.wait_ready, name)
            await asyncio.sleep(2)
            assert len(accepted.outcomes) > before, f"the load stalled after killing {name}"
        stop.set()
        await load
        assert sum(o.retries for o in accepted.outcomes) > 0, "no command met a dead service"
        await check_everything(fault_database, REDIS_URL, stack, client, accepted)


@contextmanager
def private_postgres(base_dir: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A PostgreSQL of our own, to stop and start (as root it runs as the postgres user)."""
    bindir = Path(shutil.which("pg_ctl") or "/usr/lib/postgresql/15/bin/pg_ctl").resolve().parent
    data = base_dir / "pgdata"
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data.mkdir()
    if as_owner:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        [*as_owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    control = [*as_owner, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "log")]
    options = ["-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {data} -c fsync=on"]
    subprocess.run([*control, *options, "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/party", data, [*control, *options]
    finally:
        subprocess.run([*control, "-m", "immediate", "stop"], stdout=subprocess.DEVNULL)


def postgres(control: list[str], *args: str) -> None:
    subprocess.run([*control, *args], check=True, stdout=subprocess.DEVNULL)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="party-fault-"))
    path.chmod(0o755)  # the postgres user must reach the data folder
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_postgres_down_for_ten_seconds_gives_503_and_the_services_recover(
    open_dir: Path,
) -> None:
    with private_postgres(open_dir) as (database_url, _, control):
        async with fault_world(database_url, REDIS_URL, open_dir) as (stack, client):
            pids = {name: stack.pid(name) for name in NAMES}
            accepted, stop = Accepted(), asyncio.Event()
            load = asyncio.create_task(mixed_load(client, accepted, stop))
            await asyncio.sleep(2)
            await asyncio.to_thread(postgres, control, "-m", "fast", "stop")
            async with httpx.AsyncClient(timeout=10) as http:
                await asyncio.sleep(2)
                ready = await http.get(f"{stack.url('roster')}/ready")
                assert ready.status_code == 503
                assert ready.headers["retry-after"]
            await asyncio.sleep(8)
            await asyncio.to_thread(postgres, control, "start")
            await asyncio.sleep(6)
            stop.set()
            await load
            assert any(o.saw_503 for o in accepted.outcomes), "no command met the outage"
            # They reconnected by themselves: the same processes, ready again.
            assert {name: stack.pid(name) for name in NAMES} == pids
            await check_everything(database_url, REDIS_URL, stack, client, accepted)


async def test_redis_restarted_empty_under_load_is_caught_up(
    fault_database: str, tmp_path: Path
) -> None:
    with RedisServer(tmp_path) as server:
        async with fault_world(fault_database, server.url, tmp_path) as (stack, client):
            accepted, stop = Accepted(), asyncio.Event()
            load = asyncio.create_task(mixed_load(client, accepted, stop))
            await asyncio.sleep(3)
            # Restarted without a disk: every stream, group and watermark is gone.
            await asyncio.to_thread(server.restart, pause=2.0)
            await asyncio.sleep(6)
            stop.set()
            await load
            await check_everything(
                fault_database, server.url, stack, client, accepted, redis_kept=False
            )
