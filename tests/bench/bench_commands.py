"""Commands on this machine: what a command costs over HTTP, and what it costs without HTTP.

    .venv/bin/python -m tests.bench.bench_commands [--quick] [--alone] [--profile DIR]

Starts the services as processes on a private database and stream prefix (tests.bench.harness;
with `--alone` only roster and activities), enrols a branch of 100 members, and measures

* single-event commands over HTTP: N clients in a closed loop, each POST /v1/activities
  scheduling one activity (one `activity.scheduled`): commands/s, p50, p99;
* attendance sheets of 100 lines over HTTP: events/s appended, a sheet's p50 and p99;
* the same schedule command in this process, without HTTP (ActivitiesService.schedule on a
  schema of its own, the directory copied from the service's, its read model followed): the
  command's own cost, apart from HTTP's;
* references from the same run: asyncpg `executemany` of rows shaped like the log's (what a
  sheet's append is compared with), and the peer library `eventsourcing` in process
  (`repository.get` + trigger + `save`, PostgreSQL, one thread).

With `--profile DIR`, py-spy samples the activities process during the HTTP phases and writes a
text summary of the hottest frames next to the raw profile. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis.asyncio as redis
import uvloop

from runtime.clock import utc_now
from runtime.commands import CommandContext
from runtime.directory import Directory
from runtime.eventstore import EventStore, IdempotencyKey, migrate
from runtime.projection import LocalProjector
from runtime.settings import Settings
from runtime.signing import Signer
from services.activities.domain import activity
from services.activities.handlers import ActivitiesService
from services.activities.projections import ActivitiesReadModels
from services.activities.service import DEFINITION as ACTIVITIES
from tests.bench.harness import (
    ADMIN_URL,
    LOAD_BRANCH,
    READS_BRANCH,
    REDIS_URL,
    SCHOOL,
    Activities,
    LeanHttp,
    World,
    bench_notify_config,
    command,
    cpu_use,
    enrolment,
    in_parallel,
    members_of,
    organisation,
    percentile,
    schedule_body,
    scoring_year,
    server_facts,
    sheet_body,
    world,
)
from tests.support.processes import NAMES, ServiceProcesses

PY_SPY = Path(sys.executable).parent / "py-spy"


def say(text: str) -> None:
    print(text, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- the services -----------------------------------------------------------------------------


@asynccontextmanager
async def alone() -> AsyncIterator[World]:
    """Roster and activities only (no scoring or notify taking the cores)."""
    database = f"party_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    log_dir = Path(tempfile.mkdtemp(prefix="party-bench-"))
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{database}"')
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    env = {
        "PARTY_RECLAIM_IDLE_MS": "30000",
        "PARTY_RELAY_POLL_SECONDS": "1.0",
        "PARTY_NOTIFY_CONFIG": str(bench_notify_config(log_dir)),
    }
    stack = ServiceProcesses(database_url, REDIS_URL, prefix, log_dir, extra_env=env)
    client = redis.Redis.from_url(REDIS_URL)
    http: dict[str, LeanHttp] = {}
    try:
        await asyncio.to_thread(stack.start_all, ("roster", "activities"))
        http = {name: LeanHttp(stack.url(name)) for name in ("roster", "activities")}
        yield World(stack, http, client, prefix, database)
    finally:
        for each in http.values():
            await each.close()
        await asyncio.to_thread(stack.stop_all)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(log_dir, ignore_errors=True)


async def small_organisation(w: World, year: int, members: int) -> None:
    """The school and the load branch, without scoring's regulation (`--alone`)."""
    units: list[dict[str, Any]] = [{"unit_id": SCHOOL, "kind": "school", "name": "国防教育学院"}]
    for branch in (LOAD_BRANCH, READS_BRANCH):
        units.append(
            {
                "unit_id": branch,
                "kind": "branch",
                "name": "学生党支部",
                "parent_id": SCHOOL,
                "branch_kind": "student",
            }
        )
        units.append(
            {"unit_id": f"{branch}-g1", "kind": "group", "name": "第一党小组", "parent_id": branch}
        )
    for unit in units:
        await command(w, "roster", "/v1/units", unit, f"unit-{unit['unit_id']}")
    await in_parallel(
        [
            command(w, "roster", "/v1/members", enrolment(m, LOAD_BRANCH, n, year), f"enrol-{m}")
            for n, m in enumerate(members_of(LOAD_BRANCH, members))
        ],
        8,
    )


async def directory_ready(database_url: str, schema: str, members: int, within: float) -> bool:
    """Whether activities' copy of the organisation has the load branch's members."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(asyncpg.UndefinedTableError):
                count = await conn.fetchval(
                    f'SELECT count(*) FROM "{schema}".directory_members WHERE branch_id = $1',
                    LOAD_BRANCH,
                )
                if count >= members:
                    return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await conn.close()


# -- profiling --------------------------------------------------------------------------------


class Profile:
    """py-spy on one process for the duration of a phase (when asked for and installed)."""

    def __init__(self, directory: Path | None, pid: int, name: str) -> None:
        self.directory, self.pid, self.name = directory, pid, name
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profile:
        if self.directory is None or not PY_SPY.exists():
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                str(PY_SPY),
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "--pid",
                str(self.pid),
                "--output",
                str(self.directory / f"{self.name}.raw"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *_: object) -> None:
        if self._process is None:
            return
        self._process.send_signal(2)  # SIGINT: py-spy writes what it has
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=30)
        assert self.directory is not None
        raw = self.directory / f"{self.name}.raw"
        if raw.exists():
            (self.directory / f"{self.name}.txt").write_text(summarise(raw), encoding="utf-8")


def summarise(raw: Path, top: int = 40) -> str:
    """The frames with the most samples in them (inclusive) and at the top (self), from a
    py-spy raw (collapsed stacks) file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        # "function (path:line)": one entry per function, whichever line was running
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples", "", "inclusive (a frame and what it calls):"]
    for frame, count in inclusive.most_common(top):
        lines.append(f"  {count / total:6.1%}  {frame}")
    lines += ["", "self (where the samples were):"]
    for frame, count in own.most_common(top):
        lines.append(f"  {count / total:6.1%}  {frame}")
    return "\n".join(lines) + "\n"


# -- over HTTP ----------------------------------------------------------------------------------


async def single_commands(
    w: World, clients: int, warmup: float, seconds: float, year: int, activities: Activities
) -> dict[str, float]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    completed = 0
    started = time.perf_counter()
    window_start = started + warmup
    window_end = window_start + seconds
    run = uuid.uuid4().hex[:4]

    async def client(c: int) -> None:
        nonlocal completed
        n = 0
        while (sent := time.perf_counter()) < window_end:
            activity_id = f"s{run}-{c}-{n}"
            reply = await w.http["activities"].post(
                "/v1/activities",
                schedule_body(activity_id, LOAD_BRANCH, n * clients + c, year),
                {**w.admin, "Idempotency-Key": f"schedule-{activity_id}"},
            )
            done = time.perf_counter()
            n += 1
            if reply.status == 201:
                activities.add(activity_id)
            if sent >= window_start:
                statuses[reply.status] += 1
                latencies.append(done - sent)
                if done <= window_end and reply.status == 201:
                    completed += 1

    await asyncio.gather(*(client(c) for c in range(clients)))
    rate = completed / seconds
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    others = {s: n for s, n in statuses.items() if s != 201}
    say(
        f"  single-event commands over HTTP, {clients} clients: {rate:,.0f} commands/s, "
        f"p50 {ms(p50)}, p99 {ms(p99)}" + (f"; answers {dict(statuses)}" if others else "")
    )
    return {"rate": rate, "p50": p50, "p99": p99}


async def sheets(
    w: World, clients: int, seconds: float, year: int, activities: Activities, needed: int
) -> dict[str, float]:
    counter = iter(range(needed))
    run = uuid.uuid4().hex[:4]

    async def schedule_worker() -> None:
        for n in counter:
            activity_id = f"sheet{run}-{n}"
            await command(
                w,
                "activities",
                "/v1/activities",
                schedule_body(activity_id, LOAD_BRANCH, 50_000 + n, year),
                f"schedule-{activity_id}",
            )
            activities.add(activity_id)

    if len(activities) < needed:
        await asyncio.gather(*(schedule_worker() for _ in range(16)))
    lines = 0
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    ran_out = False
    end = time.perf_counter() + seconds

    async def client(c: int) -> None:
        nonlocal lines, ran_out
        while (sent := time.perf_counter()) < end:
            taken = activities.take(100)
            if taken is None:
                ran_out = True
                return
            activity_id, members = taken
            reply = await w.http["activities"].post(
                f"/v1/activities/{activity_id}/attendance",
                sheet_body(members),
                {**w.admin, "Idempotency-Key": f"sheet-{activity_id}-{members[0]}"},
            )
            done = time.perf_counter()
            statuses[reply.status] += 1
            latencies.append(done - sent)
            if reply.status == 200 and done <= end:
                lines += len(members)

    await asyncio.gather(*(client(c) for c in range(clients)))
    rate = lines / seconds
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    say(
        f"  attendance sheets of 100 lines over HTTP, {clients} clients: {rate:,.0f} events/s "
        f"(a sheet: p50 {ms(p50)}, p99 {ms(p99)})"
        + ("; ran out of activities" if ran_out else "")
        + ("" if set(statuses) <= {200} else f"; answers {dict(statuses)}")
    )
    return {"rate": rate, "p50": p50, "p99": p99}


# -- the relay ----------------------------------------------------------------------------------


async def relay_lag(
    w: World, rate: float, seconds: float, year: int, activities: Activities
) -> dict[str, float]:
    """Sheets of 10 lines sent at `rate` events/s (open loop, at most 64 in flight): the time
    from each event's recorded_at to its arrival on the attendance stream (XREAD BLOCK)."""
    stream = w.stream("attendance")
    last: Any = await w.redis.xrevrange(stream, count=1)
    after = last[0][0] if last else b"0-0"
    lags: list[float] = []
    begun = time.time()
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal after
        while not stop.is_set():
            reply: Any = await w.redis.xread({stream: after}, count=2000, block=200)
            now = time.time()
            for _, entries in reply or ():
                for entry_id, fields in entries:
                    after = entry_id
                    envelope = orjson.loads(fields[b"envelope"])
                    recorded = datetime.fromisoformat(envelope["recorded_at"]).timestamp()
                    if recorded >= begun:
                        lags.append(now - recorded)

    watcher = asyncio.create_task(watch())
    sheets_count = int(rate * seconds / 10)
    in_flight: set[asyncio.Task[None]] = set()
    accepted = 0

    async def send() -> None:
        nonlocal accepted
        taken = activities.take(10, 100, width=50)
        if taken is None:
            return
        activity_id, members = taken
        reply = await w.http["activities"].post(
            f"/v1/activities/{activity_id}/attendance",
            sheet_body(members),
            {**w.admin, "Idempotency-Key": f"lag-{activity_id}-{members[0]}"},
        )
        if reply.status == 200:
            accepted += len(members)

    started = time.perf_counter()
    for i in range(sheets_count):
        delay = started + i * 10 / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= 64:
            continue
        task = asyncio.create_task(send())
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    while in_flight:
        await asyncio.gather(*in_flight)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.0)
    stop.set()
    await watcher
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    say(
        f"  relay lag at {rate:,.0f} events/s offered ({accepted / elapsed:,.0f}/s accepted): "
        f"p50 {ms(p50)}, p99 {ms(p99)} ({len(lags):,} events seen)"
    )
    return {"rate": accepted / elapsed, "p50": p50, "p99": p99}


# -- consumers ----------------------------------------------------------------------------------


async def progress_of(w: World, name: str) -> dict[str, int]:
    reply = await w.http[name].get("/v1/audit/progress", w.auditor)
    return dict(reply.json())


async def burst_and_catch_up(
    w: World, clients: int, seconds: float, year: int, activities: Activities
) -> dict[str, float]:
    """Sheets for `seconds` (a burst) with every consumer running; then how long each
    consumer takes to apply what the burst left it, against the burst's duration."""
    result = await sheets(w, clients, seconds, year, activities, 300)
    ended = time.monotonic()
    caught: dict[str, float] = {}
    deadline = ended + max(120.0, 10 * seconds)
    while time.monotonic() < deadline:
        behind = await w.behind()
        now = time.monotonic()
        for name, count in behind.items():
            if count <= 0 and name not in caught:
                caught[name] = now - ended
        if len(caught) == len(behind):
            break
        await asyncio.sleep(0.25)
    say(
        f"  after a burst of {seconds:.0f} s ({result['rate']:,.0f} events/s): caught up in "
        + ", ".join(
            f"{name} {caught[name]:.1f} s" if name in caught else f"{name} not in time"
            for name in ("activities", "scoring", "notify", "roster")
        )
        + f" (target ≤ {2 * seconds:.0f} s)"
    )
    return caught


async def drain_alone(
    w: World, clients: int, seconds: float, year: int, activities: Activities
) -> dict[str, float]:
    """Each consumer's rate alone: scoring and notify are stopped (SIGSTOP) while sheets are
    recorded, then let go one at a time, each applying its backlog with the other still
    stopped; events applied per second until it has caught up."""
    consumers = ("notify", "scoring")
    producers_of = {
        "notify": ("roster", "activities", "scoring"),
        "scoring": ("roster", "activities"),
    }
    heads_before = {name: (await progress_of(w, name))["head_position"] for name in consumers}
    for name in consumers:
        os.kill(w.pid(name), signal.SIGSTOP)
    rates: dict[str, float] = {}
    try:
        await sheets(w, clients, seconds, year, activities, 300)
        for name in consumers:
            os.kill(w.pid(name), signal.SIGCONT)
            heads = {
                p: (await progress_of(w, p))["head_position"] if p not in consumers or p == name
                else heads_before[p]
                for p in producers_of[name]
            }  # fmt: skip
            target = sum(heads.values())
            first = (await progress_of(w, name))["inbox"]
            started = time.monotonic()
            applied = first
            while applied < target and time.monotonic() - started < 120:
                await asyncio.sleep(0.1)
                applied = (await progress_of(w, name))["inbox"]
            elapsed = time.monotonic() - started
            rates[name] = (applied - first) / elapsed if elapsed > 0 else 0.0
            say(
                f"  {name}'s consumer alone: {rates[name]:,.0f} events/s "
                f"({applied - first:,} events in {elapsed:.1f} s"
                + ("" if applied >= target else f", {target - applied:,} still to apply")
                + ")"
            )
    finally:
        for name in consumers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid(name), signal.SIGCONT)
    return rates


# -- in process ---------------------------------------------------------------------------------


async def plain_pool(dsn: str, **options: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, **options)
    assert pool is not None
    return pool


async def in_process(
    database_url: str,
    source_schema: str,
    clients: int,
    seconds: float,
    year: int,
    pool_kind: str = "asyncpg",
) -> dict[str, float]:
    """ActivitiesService.schedule without HTTP, on a schema of its own (the organisation copied
    from the service's directory), with its read model followed as the service does; on a
    plain asyncpg pool, or (`pool_kind` "runtime") on runtime.db's, whose reset on release is
    only what is needed."""
    schema = f"inproc_{uuid.uuid4().hex[:6]}"
    factory = plain_pool
    if pool_kind == "runtime":
        from runtime.db import create_pool  # absent before the change: then not measured

        factory = create_pool
    pool = await factory(database_url, min_size=2, max_size=10)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, schema, ACTIVITIES.migrations())
            for table in ("directory_units", "directory_members", "directory_committees"):
                await conn.execute(
                    f'INSERT INTO "{schema}".{table} SELECT * FROM "{source_schema}".{table}'
                )
        store = EventStore(pool, schema, signer=Signer.generate("activities"), source="activities")
        projector = LocalProjector(
            store, [ActivitiesReadModels(schema)], name="inproc", source="activities"
        )
        follower = asyncio.create_task(projector.run())
        directory = Directory(pool, schema)
        service = ActivitiesService(
            store, projector, directory, clock=utc_now, timezone=Settings().timezone
        )
        latencies: list[float] = []
        done_count = 0
        warm_end = time.perf_counter() + 1.0
        end = warm_end + seconds

        async def client(c: int) -> None:
            nonlocal done_count
            n = 0
            while (sent := time.perf_counter()) < end:
                activity_id = f"p-{c}-{n}"
                body = orjson.dumps(schedule_body(activity_id, LOAD_BRANCH, n * clients + c, year))
                n += 1
                scheduled = activity.ScheduleActivity.model_validate_json(body)
                await directory.school_of(scheduled.branch_id)  # what the API's check reads
                context = CommandContext(
                    actor_id="bench",
                    actor_role="university_admin",
                    idempotency=IdempotencyKey(f"bench:{activity_id}", body.hex()[:64]),
                )
                await service.schedule(scheduled, context)
                finished = time.perf_counter()
                if sent >= warm_end and finished <= end:
                    latencies.append(finished - sent)
                    done_count += 1

        try:
            await asyncio.gather(*(client(c) for c in range(clients)))
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await store.close()
        rate = done_count / seconds
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        say(
            f"  schedule in process (no HTTP, {pool_kind} pool), {clients} clients: "
            f"{rate:,.0f} commands/s, p50 {ms(p50)}, p99 {ms(p99)}"
        )
        return {"rate": rate, "p50": p50, "p99": p99}
    finally:
        with contextlib.suppress(Exception):
            await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


async def executemany_rate(database_url: str, clients: int, seconds: float) -> float:
    """Rows/s of asyncpg `executemany`, 100 rows a call, rows shaped like the log's."""
    pool = await asyncpg.create_pool(database_url, min_size=clients, max_size=clients)
    assert pool is not None
    table = f"bench_rows_{uuid.uuid4().hex[:6]}"
    await pool.execute(
        f"CREATE TABLE {table} (position bigint PRIMARY KEY, event_id uuid, stream_id text, "
        "stream_version integer, type text, occurred_at timestamptz, data jsonb, hash text)"
    )
    data = orjson.dumps({"activity_id": "a", "member_id": "m-000", "status": "present"}).decode()
    next_position = iter(range(1, 1 << 40))
    rows = 0
    end = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal rows
        while time.perf_counter() < end:
            batch = [
                (next(next_position), uuid.uuid4(), "attendance-a", i, "attendance.recorded",
                 utc_now(), data, "0" * 64)
                for i in range(100)
            ]  # fmt: skip
            await pool.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                                   batch)  # fmt: skip
            if time.perf_counter() <= end:
                rows += len(batch)

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await pool.execute(f"DROP TABLE {table}")
        await pool.close()
    rate = rows / seconds
    say(f"  asyncpg executemany, 100 rows a call, {clients} clients: {rate:,.0f} rows/s")
    return rate


def peer_rate(database: str, seconds: float) -> float:
    """eventsourcing in process: get an aggregate, trigger one event, save (PostgreSQL)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class PeerActivity(Aggregate):
        @event("Scheduled")
        def __init__(self, title: str) -> None:
            self.title = title
            self.place = ""

        @event("Moved")
        def move(self, place: str) -> None:
            self.place = place

    host, _, rest = ADMIN_URL.removeprefix("postgresql://").partition("@")[2].partition(":")
    port = rest.split("/")[0] or "5432"
    user = ADMIN_URL.removeprefix("postgresql://").partition("@")[0] or "postgres"
    app: Application[Any] = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": database,
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": port,
            "POSTGRES_USER": user,
            "POSTGRES_PASSWORD": "",
            "CREATE_TABLE": "y",
        }
    )
    ids = []
    for n in range(200):
        aggregate = PeerActivity(f"meeting {n}")
        app.save(aggregate)
        ids.append(aggregate.id)
    count = 0
    started = time.perf_counter()
    end = started + seconds
    while time.perf_counter() < end:
        aggregate = app.repository.get(ids[count % len(ids)])
        aggregate.move(f"room {count}")
        app.save(aggregate)
        count += 1
    elapsed = time.perf_counter() - started
    app.close()
    rate = count / elapsed
    say(f"  peer eventsourcing in process (get + trigger + save, one thread): {rate:,.0f} cmd/s")
    return rate


# -- the run ------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short phases")
    parser.add_argument("--alone", action="store_true", help="only roster and activities")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--sheet-clients", type=int, default=8)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output directory")
    parser.add_argument("--skip-peer", action="store_true")
    args = parser.parse_args()
    warmup, seconds = (2.0, 5.0) if args.quick else (5.0, 15.0)
    sheet_seconds = 5.0 if args.quick else 10.0
    year = scoring_year()
    say(f"commands benchmark; {os.cpu_count()} cores; {await server_facts()}")
    context = alone() if args.alone else world()
    results: dict[str, dict[str, float]] = {}
    async with context as w:
        database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{w.database}"
        if args.alone:
            await small_organisation(w, year, 100)
        else:
            await organisation(w, year, 100, 50)
        if not await directory_ready(database_url, "activities", 100, 60):
            say("  (activities' directory did not get the load branch's members in 60 s)")
        activities = Activities(members_of(LOAD_BRANCH, 100))
        names = ["roster", "activities"] if args.alone else list(NAMES)
        usage: list[str] = []
        with Profile(args.profile, w.pid("activities"), "http_single"):
            async with cpu_use_of(w, names, usage.append):
                results["single"] = await single_commands(
                    w, args.clients, warmup, seconds, year, activities
                )
        say(f"    cores: {usage[-1]}")
        if not args.alone:
            await w.settle(120, say)
        with Profile(args.profile, w.pid("activities"), "http_sheets"):
            async with cpu_use_of(w, names, usage.append):
                results["sheets"] = await sheets(
                    w, args.sheet_clients, sheet_seconds, year, activities, 400
                )
        say(f"    cores: {usage[-1]}")
        if not args.alone:
            await w.settle(180, say)
            # The floor first: a light load, where nothing queues for a core.
            results["relay lag, light"] = await relay_lag(w, 200.0, sheet_seconds, year, activities)
            await w.settle(60, say)
            with Profile(args.profile, w.pid("activities"), "relay_lag"):
                results["relay lag"] = await relay_lag(w, 1000.0, sheet_seconds, year, activities)
            await w.settle(180, say)
            with contextlib.suppress(Exception):
                await burst_and_catch_up(w, args.sheet_clients, sheet_seconds, year, activities)
            with Profile(args.profile, w.pid("notify"), "notify_alone"):
                await drain_alone(w, args.sheet_clients, sheet_seconds, year, activities)
            await w.settle(180, say)
        with Profile(args.profile, os.getpid(), "in_process"):
            results["in_process"] = await in_process(
                database_url, "activities", args.clients, seconds / 2, year
            )
        with contextlib.suppress(ImportError):
            results["in_process, runtime.db pool"] = await in_process(
                database_url, "activities", args.clients, seconds / 2, year, "runtime"
            )
        executemany = await executemany_rate(database_url, args.sheet_clients, 5.0)
        peer = None
        if not args.skip_peer:
            peer = await asyncio.to_thread(peer_rate, w.database, 5.0)
    say("")
    say("| figure | measured |")
    say("|---|---|")
    for name, figure in results.items():
        unit = "events/s" if name.startswith(("sheets", "relay")) else "commands/s"
        say(
            f"| {name} | {figure['rate']:,.0f} {unit}, p50 {ms(figure['p50'])}, "
            f"p99 {ms(figure['p99'])} |"
        )
    say(f"| asyncpg executemany | {executemany:,.0f} rows/s |")
    if peer is not None:
        say(f"| peer eventsourcing | {peer:,.0f} commands/s |")
        say(
            f"single over HTTP / peer: {results['single']['rate'] / peer:.2f} (target ≥ 2, "
            f"p99 ≤ 50 ms); sheets / executemany: {results['sheets']['rate'] / executemany:.2f} "
            "(target ≥ 0.5)"
        )


@asynccontextmanager
async def cpu_use_of(w: World, names: Sequence[str], sink: Any) -> AsyncIterator[None]:
    """harness.cpu_use, for the services that run (all four, or those `--alone` starts)."""
    if set(names) == set(NAMES):
        async with cpu_use(w, sink):
            yield
        return
    from tests.bench.harness import cpu_seconds

    pids = {name: w.pid(name) for name in names}
    before = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    sink(
        ", ".join(
            f"{name} {((cpu_seconds(pid) or 0.0) - before[name]) / elapsed:.2f}"
            for name, pid in pids.items()
        )
    )


if __name__ == "__main__":
    uvloop.run(main())
