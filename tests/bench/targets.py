"""The performance targets, measured on this machine with everything running on it at once:
the four services as processes (`party serve NAME`), PostgreSQL (fsync on), Redis, and the
load generator, over loopback.

    .venv/bin/python -m tests.bench.targets [--quick] [--events 1000000] [--bulk-seconds 600]
        [--wait 600] [--meeting-reminders] [--no-scoring] [--no-peer] [--no-machine]
        [--keep-logs] [--profile DIR]

Each figure is printed as it is measured, then a table: figure | target | measured | peer (same
run) | limit (same run) | ratio to peer | ratio to limit | pass/fail, under the run's date and
the machine's facts. Private databases, a Redis database of their own (db 15 unless
PARTY_BENCH_REDIS_URL says otherwise) and a stream prefix of their own are used and removed
afterwards, even on failure. The scoring consumption and replay figures come from
tests.bench.bench_scoring (in-process, on a database of their own); everything else goes
through the services' HTTP APIs. The services sign every commit and check every entry's
signature, as they do in production.

Before the project's phases, on the quiet machine, the references every figure is set against
(tests.bench.references says which against which):

* the peer: the `eventsourcing` library with PostgreSQL (tests.bench.peer; the optional `bench`
  dependency group, which `make bench` installs): commands, batch append, aggregate read and
  subscription;
* the limits: raw asyncpg INSERT, executemany and keyset read rates, and redis-py XADD and
  XREAD rates (tests.bench.machine).

Then the project's phases, in this order (consumers are let catch up between them, for a
bounded time, so that one phase's backlog does not weigh on the next one's figures; when they
cannot, a note says so):

1. organisation: a school, a load branch of 100 members, a reads branch of 50, a regulation
   version with a period for this year;
2. reads: 1,000 activities in the reads branch, one member at all of them (1,000 ledger lines),
   the 49 others at one in five; then the member's ledger and the branch table, GET in turn;
3. single-event commands: 32 clients scheduling activities (one `activity.scheduled` each);
4. relay lag: sheets of 10 lines at 100 a second (1,000 events/s), the attendance stream read
   with XREAD BLOCK;
5. accepted → visible: single-line sheets at 500 a second, scoring's published stream watched
   for the `score.awarded` citing each line;
6. sheets of 100 lines from 8 clients;
7. the bulk, sheets of 100, until the activities log holds --events events (or --bulk-seconds
   have passed); consumers are waited for (at most --wait seconds, less once none of those
   still behind can catch up in the time left at its pace), then each service's resident
   memory is read;
8. scoring's in-process consumption and replay (tests.bench.bench_scoring).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import platform
import shutil
import signal
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson
import uvloop

from tests.bench import bench_scoring, machine
from tests.bench.harness import (
    LOAD_BRANCH,
    READS_BRANCH,
    Activities,
    Reply,
    World,
    backlog,
    cpu_use,
    in_parallel,
    machine_facts,
    members_of,
    organisation,
    percentile,
    read_rss,
    schedule_body,
    scoring_year,
    server_facts,
    sheet_body,
    world,
)
from tests.bench.references import NONE, Comparison, References
from tests.support.processes import NAMES

if TYPE_CHECKING:
    from tests.bench.peer import PeerFigures

say = functools.partial(print, flush=True)

CLIENT_NOTE = (
    "client: a minimal keep-alive HTTP/1.1 client over asyncio streams (tests/bench/harness.py), "
    "uvloop, in one process beside the services"
)


@dataclass(frozen=True)
class Plan:
    events: int = 1_000_000
    clients: int = 32
    warmup_seconds: float = 3.0
    single_seconds: float = 20.0
    sheet_clients: int = 8
    sheet_seconds: float = 20.0
    sheet_activities: int = 6000  # enough for 30,000 events/s
    relay_rate: float = 1000.0  # events/s
    relay_seconds: float = 20.0
    visible_rate: float = 500.0  # commands/s
    visible_seconds: float = 20.0
    ledger_lines: int = 1000
    reads: int = 300
    settle_seconds: float = 180.0
    bulk_seconds: float = 900.0
    wait_seconds: float = 600.0
    grace_seconds: float = 30.0
    scoring_live: int = 50_000
    scoring_replay: int = 1_000_000


QUICK = Plan(
    events=20_000,
    warmup_seconds=1.0,
    single_seconds=4.0,
    sheet_seconds=4.0,
    sheet_activities=300,
    relay_seconds=5.0,
    visible_seconds=5.0,
    ledger_lines=100,
    reads=50,
    settle_seconds=90.0,
    bulk_seconds=60.0,
    wait_seconds=120.0,
    grace_seconds=15.0,
    scoring_live=5_000,
    scoring_replay=20_000,
)


@dataclass
class Row:
    figure: str
    target: str
    measured: str
    passed: bool | None  # None: not measured (or, with `informative`, no target)
    hint: str = ""
    key: str = ""  # what the figure is set against (tests.bench.references)
    value: float = math.nan  # the rate, or the p99 in seconds, compared with the references
    rows: int = 0  # for reads: the events folded
    informative: bool = False  # a figure without a target of its own
    comparison: Comparison = field(default_factory=Comparison)


def verdict(row: Row, table: bool = False) -> str:
    if row.informative and row.passed is None:
        return NONE
    return {True: "pass", False: "**fail**" if table else "FAIL", None: "not measured"}[row.passed]


class Report:
    def __init__(self, references: References | None = None) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = [CLIENT_NOTE]
        self.references = references or References(None, None)

    def add(self, row: Row) -> None:
        if row.key and not math.isnan(row.value):
            row.comparison = c = self.references.compare(row.key, row.value, row.rows)
            if c.relative_target:
                row.target = f"{row.target}; {c.relative_target}"
                if c.relative_met is False and row.passed:
                    row.passed = False
        self.rows.append(row)
        c = row.comparison
        against = f"; peer {c.peer} ({c.peer_ratio}), limit {c.limit} ({c.limit_ratio})"
        say(
            f"  {row.figure}: {row.measured} (target {row.target}) — {verdict(row)}"
            + (against if row.key else "")
        )

    def note(self, text: str) -> None:
        self.notes.append(text)
        say(f"    note: {text}")

    def failed(self, figure: str, target: str, error: BaseException) -> None:
        self.add(Row(figure, target, f"error: {type(error).__name__}: {error}"[:200], None))
        traceback.print_exception(error)

    def table(self) -> str:
        lines = [
            "| figure | target | measured | peer (same run) | limit (same run) | ratio to peer "
            "| ratio to limit | pass/fail |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            c = row.comparison
            lines.append(
                f"| {row.figure} | {row.target} | {row.measured} | {c.peer} | {c.limit} "
                f"| {c.peer_ratio} | {c.limit_ratio} | {verdict(row, table=True)} |"
            )
        return "\n".join(lines)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


#: The figure and target each write phase reports under when it fails outright.
PHASE_FIGURES = {
    "single": ("single-event commands over HTTP", "≥ 1,500 commands/s, p99 ≤ 50 ms"),
    "relay": ("relay publish lag", "p99 ≤ 20 ms"),
    "visible": ("command accepted → score visible", "p99 ≤ 150 ms"),
    "sheets": ("attendance sheets of 100 lines", "≥ 20,000 events/s appended"),
}

#: Where the time goes, from py-spy profiles of these phases (run with --profile DIR to see
#: them again); printed under the table for the targets that were missed.
HINTS = {
    "single": "the two cores are shared with the consumers handling the same events (see the cores "
    "line): notify and scoring take most of what activities leaves; per command activities "
    "still pays FastAPI's validation and dependencies, the idempotency-and-streams read, the "
    "signed, hash-chained group commit, and the wait for its own read model "
    "(tests/bench/profiles/commands_after.txt)",
    "sheets": "per event: a pydantic model of the payload, its hash, the relay's XADD and the "
    "local read model (the relay and the local projector are half of activities' samples "
    "during sheets), then three consumers on the same two cores",
    "relay": "the relay is a task in the busy activities event loop (woken by NOTIFY; one query "
    "for the head and the batch; XADDs and the watermark in one MULTI/EXEC): with the cores "
    "full, each hop waits for a core, so the lag follows the load of the process, not Redis",
    "visible": "activities' relay, then scoring's XREADGROUP (BLOCK 100 ms per family "
    "reader), validation, archive, line computation, the ledger append through scoring's group "
    "commit (fsync), and scoring's relay",
    "reads": "the reads sum this period's kept lines (services/scoring/live.py, archive."
    "member_sums); what is left is Python per member (tests/bench/profiles/"
    "scoring_university_summary.txt)",
    "rss": "",
    "scoring_live": "per batch: compute_lines, a ScoreAwarded per line for the ledger, the "
    "archive COPY, the members' re-aggregation, and the ledger append hashing and signing each "
    "envelope under the chain lock",
    "scoring_replay": "on a small archive the worker process's start and the pages' packing "
    "dominate; at 1M inputs replay runs at ~0.4x the keyset read: the service process packing "
    "rows for the worker is the limit (tests/bench/profiles/scoring_replay_after.txt)",
}


class Profiler:
    """The CPU time each process used during a phase, and, when --profile is given and py-spy
    is on PATH, py-spy sampling the services meanwhile, as collapsed stacks in
    DIR/<phase>-<service>.txt. Sampling costs CPU: figures from a profiled run are not the
    figures."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.binary = shutil.which("py-spy") if directory else None
        if directory and not self.binary:
            say("    (--profile: py-spy is not on PATH; nothing is profiled)")
        if self.directory:
            self.directory.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def phase(
        self, w: World, name: str, services: Sequence[str], report: Report
    ) -> AsyncIterator[None]:
        """Profile (if asked) and measure the CPU each process used in the phase."""
        cpu = cpu_use(w, lambda line: report.note(f"cores used during {name}: {line}"))
        async with cpu, self._sampled(w, name, services):
            yield

    @asynccontextmanager
    async def _sampled(self, w: World, name: str, services: Sequence[str]) -> AsyncIterator[None]:
        if not self.binary or not self.directory:
            yield
            return
        samplers = [
            await asyncio.create_subprocess_exec(
                self.binary,
                *("record", "--nonblocking", "--rate", "50", "--format", "raw"),
                *("--pid", str(w.pid(service))),
                *("--output", str(self.directory / f"{name}-{service}.txt")),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            for service in services
        ]
        try:
            yield
        finally:
            for sampler in samplers:
                sampler.send_signal(signal.SIGINT)  # py-spy writes what it has, then ends
            for sampler in samplers:
                await sampler.wait()


Profiling = AbstractAsyncContextManager[None]
NOT_PROFILED: Profiling = contextlib.nullcontext()


async def timed(
    report: Report, figure: str, target: str, phase: Callable[[], Awaitable[None]]
) -> None:
    """Run a phase; a failure is reported as a row, and the benchmark goes on."""
    try:
        await phase()
    except Exception as error:
        report.failed(figure, target, error)


# -- phases ----------------------------------------------------------------------------------------


async def schedule(w: World, activity_id: str, branch_id: str, n: int, year: int) -> Reply:
    """Schedule one activity (`n` spreads the start times over the year)."""
    return await w.http["activities"].post(
        "/v1/activities",
        schedule_body(activity_id, branch_id, n, year),
        {**w.admin, "Idempotency-Key": f"schedule-{activity_id}"},
    )


async def record(w: World, activity_id: str, members: Sequence[str]) -> Reply:
    """Record these members present at the activity, as one sheet."""
    return await w.http["activities"].post(
        f"/v1/activities/{activity_id}/attendance",
        sheet_body(members),
        {**w.admin, "Idempotency-Key": f"sheet-{activity_id}-{members[0]}"},
    )


async def schedule_more(
    w: World, activities: Activities, count: int, year: int, tag: str, workers: int = 16
) -> None:
    """Activities in the load branch for the phases that record attendance (not measured)."""
    counter = iter(range(count))

    async def worker() -> None:
        for n in counter:
            activity_id = f"{tag}-{n}"
            reply = await schedule(w, activity_id, LOAD_BRANCH, n, year)
            if reply.status == 201:
                activities.add(activity_id)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def reads_fixture(w: World, plan: Plan, year: int) -> str:
    """The reads branch: `ledger_lines` activities, its first member at every one, the others
    at one in five. Returns the member with the long ledger."""
    members = members_of(READS_BRANCH, 50)
    star, others = members[0], members[1:]
    ids = [f"r-{n}" for n in range(plan.ledger_lines)]

    async def scheduled(n: int) -> None:
        reply = await schedule(w, ids[n], READS_BRANCH, n, year)
        if reply.status != 201:
            raise RuntimeError(f"scheduling {ids[n]}: {reply.status} {reply.body[:200]!r}")

    async def recorded(n: int) -> None:
        present = [star, *(m for i, m in enumerate(others) if (i + n) % 5 == 0)]
        reply = await record(w, ids[n], present)
        if reply.status != 200:
            raise RuntimeError(f"sheet of {ids[n]}: {reply.status} {reply.body[:200]!r}")

    await in_parallel([scheduled(n) for n in range(len(ids))], 16)
    await in_parallel([recorded(n) for n in range(len(ids))], 16)
    return star


async def measure_reads(
    w: World, plan: Plan, year: int, member: str, report: Report, count: int, describe: bool = True
) -> tuple[list[float], list[float]]:
    http = w.http["scoring"]
    ledger_path = f"/v1/members/{member}/score?period_id={year}"
    table_path = f"/v1/branches/{READS_BRANCH}/periods/{year}"
    first = await http.get(ledger_path, w.admin)
    periods = first.json() if first.status == 200 else []
    lines = len(periods[0]["ledger"]) if periods else 0
    table = await http.get(table_path, w.admin)
    in_table = len(table.json()["members"]) if table.status == 200 else 0
    if describe:
        report.note(
            f"reads: the member's ledger has {lines:,} lines ({len(first.body) / 1e6:.2f} MB); "
            f"the branch table {in_table} members ({len(table.body) / 1e3:.0f} kB), whose other "
            f"members were at one activity in five; {count} sequential GETs each, after one "
            "unmeasured"
        )
    timings: list[list[float]] = []
    for path in (ledger_path, table_path):
        spent = []
        for _ in range(count):
            started = time.perf_counter()
            reply = await http.get(path, w.admin)
            spent.append(time.perf_counter() - started)
            if reply.status != 200:
                raise RuntimeError(f"GET {path}: {reply.status} {reply.body[:200]!r}")
        timings.append(spent)
    return timings[0], timings[1]


async def single_event_commands(
    w: World,
    plan: Plan,
    year: int,
    activities: Activities,
    report: Report,
    profiling: Profiling = NOT_PROFILED,
) -> None:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    completed = 0
    started = time.perf_counter()
    window_start = started + plan.warmup_seconds
    window_end = window_start + plan.single_seconds

    async def client(c: int) -> None:
        nonlocal completed
        n = 0
        while (sent := time.perf_counter()) < window_end:
            activity_id = f"s-{c}-{n}"
            reply = await schedule(w, activity_id, LOAD_BRANCH, n * plan.clients + c, year)
            done = time.perf_counter()
            n += 1
            if reply.status == 201:
                activities.add(activity_id)
            if sent >= window_start:
                statuses[reply.status] += 1
                latencies.append(done - sent)
                if done <= window_end and reply.status == 201:
                    completed += 1

    async with profiling:
        await asyncio.gather(*(client(c) for c in range(plan.clients)))
    rate = completed / plan.single_seconds
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    refused = sum(n for status, n in statuses.items() if status != 201)
    report.add(
        Row(
            f"single-event commands over HTTP, {plan.clients} concurrent clients",
            "≥ 1,500 commands/s, p99 ≤ 50 ms",
            f"{rate:,.0f} commands/s, p50 {ms(p50)}, p99 {ms(p99)}"
            + (f", {refused} not 201: {dict(statuses)}" if refused else ""),
            rate >= 1500 and p99 <= 0.050 and not refused,
            HINTS["single"],
            key="single",
            value=rate,
        )
    )
    report.note(
        f"single-event commands: POST /v1/activities (one activity.scheduled each), "
        f"{plan.warmup_seconds:.0f} s warm-up then {plan.single_seconds:.0f} s measured; "
        "closed loop, each client sends its next command when the last is answered"
    )


@dataclass
class Paced:
    sent: int = 0
    skipped: int = 0  # send times that found `max_in_flight` commands unanswered
    sending: float = 0.0  # seconds
    elapsed: float = 0.0  # seconds, until the last answer


async def paced(
    rate: float, count: int, send: Callable[[int], Awaitable[None]], max_in_flight: int = 64
) -> Paced:
    """Open loop: send(i) is started at start + i / rate whatever the answers, unless
    `max_in_flight` are still unanswered: then that send is skipped (and counted), so that a
    service slower than the rate gives a lower achieved rate, not an ever longer queue."""
    outcome = Paced()
    in_flight: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            outcome.skipped += 1
            continue
        task: asyncio.Task[None] = asyncio.create_task(send(i))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        outcome.sent += 1
    outcome.sending = time.perf_counter() - started
    while in_flight:
        await asyncio.gather(*in_flight)
    outcome.elapsed = time.perf_counter() - started
    return outcome


async def until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    # The condition is met by the watcher task; polling keeps both simple.
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


async def last_id(w: World, stream: str) -> bytes:
    entries = cast(list[tuple[bytes, Any]], await w.redis.xrevrange(stream, count=1))
    return entries[0][0] if entries else b"0-0"


async def watch(
    w: World, stream: str, after: bytes, seen: Callable[[float, Any], None], stop: asyncio.Event
) -> None:
    """XREAD BLOCK on a stream; hand each entry's envelope over with the time it arrived."""
    while not stop.is_set():
        reply = cast(
            list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
            await w.redis.xread({stream: after}, count=2000, block=200),
        )
        now = time.time()
        for _, entries in reply or ():
            for entry_id, fields in entries:
                after = entry_id
                seen(now, orjson.loads(fields[b"envelope"]))


async def relay_lag(
    w: World,
    plan: Plan,
    year: int,
    activities: Activities,
    report: Report,
    profiling: Profiling = NOT_PROFILED,
) -> None:
    sheet, per_activity = 10, 100
    sheets = int(plan.relay_rate * plan.relay_seconds / sheet)
    # Round 200 activities: each comes back every 2 s, when its last sheet is long recorded.
    width = 200
    needed = activities.needed(sheets, sheet, per_activity) + width
    if len(activities) < needed:
        await schedule_more(w, activities, needed - len(activities), year, "relay")
        await settled(w, plan, report)
    stream = w.stream("attendance")
    stop = asyncio.Event()
    lags: list[float] = []
    begun = time.time()

    def seen(now: float, envelope: Any) -> None:
        recorded = datetime.fromisoformat(envelope["recorded_at"]).timestamp()
        if recorded >= begun:
            lags.append(now - recorded)

    watcher = asyncio.create_task(watch(w, stream, await last_id(w, stream), seen, stop))
    appended = 0
    statuses: Counter[int] = Counter()

    async def send(i: int) -> None:
        nonlocal appended
        taken = activities.take(sheet, per_activity, width)
        if taken is None:
            statuses[0] += 1
            return
        activity_id, members = taken
        reply = await record(w, activity_id, members)
        statuses[reply.status] += 1
        if reply.status == 200:
            appended += len(members)

    async with profiling:
        pace = await paced(plan.relay_rate / sheet, sheets, send)
    await until(lambda: len(lags) >= appended, plan.grace_seconds)
    stop.set()
    await watcher
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    missing = appended - len(lags)
    report.add(
        Row(
            f"relay publish lag at {plan.relay_rate:,.0f} events/s",
            "p99 ≤ 20 ms",
            f"p50 {ms(p50)}, p99 {ms(p99)} ({len(lags):,} events; appended at "
            f"{appended / pace.sending:,.0f} events/s"
            + (
                f", {pace.skipped:,} of {sheets:,} sheets skipped: 64 in flight"
                if pace.skipped
                else ""
            )
            + ")"
            + (f"; {missing:,} not seen in {plan.grace_seconds:.0f} s" if missing else "")
            + ("" if set(statuses) == {200} else f"; answers {dict(statuses)}"),
            p99 <= 0.020 and missing == 0 and appended > 0,
            HINTS["relay"],
            key="relay",
            value=p99,
        )
    )
    report.note(
        "relay lag: sheets of 10 lines at 100 a second to activities; lag = when XREAD BLOCK on "
        "the attendance stream returned the entry minus the envelope's recorded_at (taken "
        "inside the appending transaction, just before COMMIT)"
    )


async def accepted_to_visible(
    w: World,
    plan: Plan,
    year: int,
    activities: Activities,
    report: Report,
    profiling: Profiling = NOT_PROFILED,
) -> None:
    count = int(plan.visible_rate * plan.visible_seconds)
    per_activity, width = 10, 1000  # an activity comes back every 2 s
    needed = activities.needed(count, 1, per_activity) + width
    if len(activities) < needed:
        await schedule_more(w, activities, needed - len(activities), year, "visible")
        await settled(w, plan, report)
    stream = w.stream("score")
    stop = asyncio.Event()
    visible: dict[str, float] = {}
    accepted: dict[str, float] = {}
    statuses: Counter[int] = Counter()

    def seen(now: float, envelope: Any) -> None:
        if envelope["type"] == "score.awarded":
            visible.setdefault(envelope["data"]["cause_event_id"], now)

    watcher = asyncio.create_task(watch(w, stream, await last_id(w, stream), seen, stop))

    async def send(i: int) -> None:
        taken = activities.take(1, per_activity, width)
        if taken is None:
            statuses[0] += 1
            return
        activity_id, members = taken
        reply = await record(w, activity_id, members)
        now = time.time()
        statuses[reply.status] += 1
        if reply.status == 200:
            accepted[str(reply.json()["event_ids"][0])] = now

    async with profiling:
        pace = await paced(plan.visible_rate, count, send)
    await until(lambda: all(e in visible for e in accepted), plan.grace_seconds)
    stop.set()
    await watcher
    delays = [max(0.0, visible[e] - t) for e, t in accepted.items() if e in visible]
    missing = len(accepted) - len(delays)
    # What was not seen within the grace counts as slower than anything seen.
    everything = delays + [float("inf")] * missing
    p50, p99 = percentile(everything, 0.5), percentile(everything, 0.99)

    def shown(seconds: float) -> str:
        return ms(seconds) if seconds != float("inf") else f"> {plan.grace_seconds:.0f} s"

    report.add(
        Row(
            f"command accepted → score visible, at {plan.visible_rate:,.0f} commands/s",
            "p99 ≤ 150 ms",
            f"p50 {shown(p50)}, p99 {shown(p99)} ({len(accepted):,} commands accepted at "
            f"{len(accepted) / pace.sending:,.0f}/s"
            + (f", {pace.skipped:,} of {count:,} skipped: 64 in flight" if pace.skipped else "")
            + ")"
            + (f"; {missing:,} not visible in {plan.grace_seconds:.0f} s" if missing else "")
            + ("" if set(statuses) == {200} else f"; answers {dict(statuses)}"),
            p99 <= 0.150 and bool(accepted),
            HINTS["visible"],
            key="visible",
            value=p99,
        )
    )
    report.note(
        "accepted → visible: single-line attendance sheets (present at an all-member meeting), "
        "paced; from the 2xx answer to the moment the score.awarded event citing that line "
        "arrives on scoring's published stream (XREAD BLOCK) — what other services and campus "
        "systems see. Scoring appends it inside the consumer batch that archives the line, so "
        "its read endpoints show the line when that batch commits, within the same moment"
    )


async def sheets_of_100(
    w: World,
    plan: Plan,
    year: int,
    activities: Activities,
    report: Report,
    profiling: Profiling = NOT_PROFILED,
) -> None:
    # Scheduled beforehand, so that the sheets never wait for an activity.
    needed = plan.sheet_activities
    if len(activities) < needed:
        await schedule_more(w, activities, needed - len(activities), year, "sheets")
        await settled(w, plan, report)
    lines = 0
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    ran_out = False
    started = time.perf_counter()
    end = started + plan.sheet_seconds

    async def client(c: int) -> None:
        nonlocal lines, ran_out
        while (sent := time.perf_counter()) < end:
            taken = activities.take(100)
            if taken is None:
                ran_out = True
                return
            activity_id, members = taken
            reply = await record(w, activity_id, members)
            done = time.perf_counter()
            statuses[reply.status] += 1
            latencies.append(done - sent)
            if reply.status == 200 and done <= end:
                lines += len(members)

    async with profiling:
        await asyncio.gather(*(client(c) for c in range(plan.sheet_clients)))
    rate = lines / plan.sheet_seconds
    report.add(
        Row(
            f"attendance sheets of 100 lines, {plan.sheet_clients} clients",
            "≥ 20,000 events/s appended",
            f"{rate:,.0f} events/s (a sheet: p50 {ms(percentile(latencies, 0.5))}, "
            f"p99 {ms(percentile(latencies, 0.99))})"
            + ("; ran out of activities" if ran_out else "")
            + ("" if set(statuses) == {200} else f"; answers {dict(statuses)}"),
            rate >= 20_000,
            HINTS["sheets"],
            key="sheets",
            value=rate,
        )
    )


async def bulk(w: World, plan: Plan, year: int, activities: Activities) -> int:
    """Sheets of 100 until the activities log holds `plan.events` events; returns its head."""
    head = (await w.progress())["activities"]["head_position"]
    appended = 0
    started = time.perf_counter()
    statuses: Counter[int] = Counter()
    say(f"    bulk: from {head:,} to {plan.events:,} events in the activities log")

    stop_at = started + plan.bulk_seconds

    async def client(c: int) -> None:
        nonlocal appended
        n = 0
        while head + appended < plan.events and time.perf_counter() < stop_at:
            taken = activities.take(100)
            if taken is None:
                activity_id = f"b-{c}-{n}"
                n += 1
                reply = await schedule(w, activity_id, LOAD_BRANCH, n * 8 + c, year)
                statuses[reply.status] += 1
                if reply.status != 201:
                    continue
                appended += 1
                activities.add(activity_id)
                continue
            activity_id, members = taken
            reply = await record(w, activity_id, members)
            statuses[reply.status] += 1
            if reply.status == 200:
                appended += len(members)

    async def progress() -> None:
        while True:
            await asyncio.sleep(30)
            spent = time.perf_counter() - started
            say(
                f"    bulk: {head + appended:,} events in the activities log, "
                f"{appended / spent:,.0f} events/s over {spent:.0f} s"
            )

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(client(c) for c in range(8)))
    finally:
        reporter.cancel()
    spent = time.perf_counter() - started
    say(
        f"    bulk: appended {appended:,} events in {spent:.0f} s ({appended / spent:,.0f}/s); "
        f"answers {dict(statuses)}"
    )
    if head + appended < plan.events:
        say(f"    bulk: stopped at its bound of {plan.bulk_seconds:.0f} s (--bulk-seconds)")
    return head + appended


def span(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


def hopeless(behind: dict[str, int], applied: dict[str, int], spent: float, left: float) -> str:
    """Why waiting longer is no use, when every consumer still behind, applying at the pace it
    has kept so far, cannot apply its backlog in the time left (a lower bound: its producers
    may still be adding to it); empty while one of them still can."""
    reasons = []
    for name, left_to_apply in behind.items():
        if left_to_apply <= 0:
            continue
        pace = applied[name] / spent
        if pace <= 0:
            reasons.append(f"{name} applied nothing in {spent:.0f} s ({left_to_apply:,} to apply)")
        elif left_to_apply / pace > left:
            reasons.append(
                f"{name} would need at least {span(left_to_apply / pace)} more at its pace "
                f"({left_to_apply:,} to apply at {pace:,.0f} events/s, {span(left)} left)"
            )
        else:
            return ""
    return "; ".join(reasons)


async def memory_after_bulk(w: World, plan: Plan, events: int, report: Report) -> None:
    before = await w.progress()
    started = time.monotonic()
    deadline = started + plan.wait_seconds
    last_said = started
    verdict = ""
    while True:
        progress = await w.progress()
        behind = backlog(progress)
        now = time.monotonic()
        if all(n <= 0 for n in behind.values()) or now > deadline:
            break
        applied = {n: progress[n]["inbox"] - before[n]["inbox"] for n in behind}
        # Past a minute the pace is known: waiting out a hopeless bound teaches nothing.
        if now - started >= 60:
            verdict = hopeless(behind, applied, now - started, deadline - now)
            if verdict:
                break
        if now - last_said >= 30:
            last_said = now
            say(f"    waiting for consumers ({now - started:.0f} s): behind {behind}")
        await asyncio.sleep(2)
    waited = time.monotonic() - started
    progress = await w.progress()
    behind = backlog(progress)
    say(f"    waited {waited:.0f} s for the consumers; still to apply: {behind}")
    if verdict:
        report.note(f"stopped waiting for the consumers after {waited:.0f} s: {verdict}")
    for (family, group), count in (await w.trimmed_unread()).items():
        report.note(
            f"Redis trimmed {count:,} entries of the {family} stream before {group} had read "
            "them (PARTY_STREAM_MAXLEN): they will never reach it"
        )
    if waited >= 10:
        rates = {
            name: (progress[name]["inbox"] - before[name]["inbox"]) / waited
            for name in ("scoring", "notify", "roster")
        }
        for name, rate in rates.items():
            report.add(
                Row(
                    f"{name} consuming its backlog once the load had stopped",
                    NONE,
                    f"{rate:,.0f} events/s applied over {waited:.0f} s",
                    None,
                    key="consumer",
                    value=rate,
                    informative=True,
                )
            )
    for name in NAMES:
        rss, peak = read_rss(w.pid(name))
        applied_total = progress[name]["inbox"]
        logged = progress[name]["head_position"]
        caught_up = behind[name] <= 0
        report.add(
            Row(
                f"resident memory of {name} after {events:,} events",
                "≤ 200 MB",
                f"{rss / 1e6:,.0f} MB (peak {peak / 1e6:,.0f} MB); its log {logged:,} events, "
                f"applied {applied_total:,} from others"
                + ("" if caught_up else f", {behind[name]:,} still to apply"),
                rss <= 200e6,
                HINTS["rss"],
            )
        )
    report.note(
        f"memory: VmRSS of each `party serve` process once its consumers had caught up, or when "
        f"waiting longer (at most {plan.wait_seconds:.0f} s) was no use; {waited:.0f} s spent; "
        f"'events' = events in the activities log, the bulk as sheets of 100"
    )


# -- the run ---------------------------------------------------------------------------------------


async def settled(w: World, plan: Plan, report: Report) -> None:
    """Let the consumers catch up before the next phase; say so when they could not."""
    if not await w.settle(plan.settle_seconds, say):
        report.note(
            f"a phase began with consumers still behind after {plan.settle_seconds:.0f} s of "
            f"waiting ({await w.behind()}): their catching up competed for the CPU"
        )


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def measure_references(
    *, quick: bool, peer: bool, limits: bool
) -> tuple[References, list[str]]:
    """The peer's figures and the machine's limits, before anything of the project runs; what
    could not be measured is said, and the figures go on without that column."""
    notes: list[str] = []
    peer_figures: PeerFigures | None = None
    machine_figures: machine.MachineFigures | None = None
    if peer:
        say("  the peer (eventsourcing with PostgreSQL, tests.bench.peer) …")
        try:
            from tests.bench import peer as peer_bench
        except ImportError as error:
            notes.append(
                f"the peer was not measured: {error} (its pinned version is the optional "
                "`bench` dependency group: pip install -e '.[bench]', which `make bench` does)"
            )
        else:
            try:
                peer_figures = await peer_bench.measure(
                    peer_bench.QUICK_PEER if quick else peer_bench.PeerPlan(), say=say
                )
            except Exception as error:
                traceback.print_exception(error)
                notes.append(f"the peer could not be measured: {type(error).__name__}: {error}")
    if limits:
        say("  the machine's limits (asyncpg, redis-py: tests.bench.machine) …")
        try:
            machine_figures = await machine.measure(
                machine.QUICK_MACHINE if quick else machine.MachinePlan(), say=say
            )
        except Exception as error:
            traceback.print_exception(error)
            notes.append(f"the limits could not be measured: {type(error).__name__}: {error}")
    references = References(peer_figures, machine_figures)
    return references, [*notes, *references.lines()]


async def run(
    plan: Plan,
    *,
    meeting_reminders: bool,
    scoring: bool,
    keep_logs: bool,
    profile: Path | None,
    references: References | None = None,
) -> Report:
    report = Report(references)
    profiler = Profiler(profile)
    year = scoring_year()
    activities = Activities(members_of(LOAD_BRANCH, 100))
    started = time.monotonic()
    load_at_start = loadavg()
    say(f"  load average at start: {load_at_start}")
    async with world(meeting_reminders=meeting_reminders, keep_logs=keep_logs, say=say) as w:
        say("  organisation …")
        await organisation(w, year, 100, 50)
        await settled(w, plan, report)
        if not meeting_reminders:
            report.note(
                "notify runs with the shipped configuration less meeting reminders (the "
                "benchmark schedules meetings in the past: each would give 2 × members "
                "reminder.skipped events); --meeting-reminders keeps them"
            )

        ledger_target = "p99 ≤ 20 ms"
        say(f"  reads fixture ({plan.ledger_lines:,} activities in the reads branch) …")
        member = ""

        async def reads() -> None:
            nonlocal member
            member = await reads_fixture(w, plan, year)
            await settled(w, plan, report)
            ledger, table = await measure_reads(w, plan, year, member, report, plan.reads)
            # The lines each read folds (reads_fixture: the others at one activity in five).
            in_table = plan.ledger_lines + sum(
                (i + n) % 5 == 0 for n in range(plan.ledger_lines) for i in range(49)
            )
            for figure, timings, lines in (
                (f"a member's ledger of {plan.ledger_lines:,} lines", ledger, plan.ledger_lines),
                ("a branch table of 50 members", table, in_table),
            ):
                p50, p99 = percentile(timings, 0.5), percentile(timings, 0.99)
                report.add(
                    Row(
                        figure,
                        ledger_target,
                        f"p50 {ms(p50)}, p99 {ms(p99)}",
                        p99 <= 0.020,
                        HINTS["reads"],
                        key="read",
                        value=p99,
                        rows=lines,
                    )
                )

        await timed(report, "reads", ledger_target, reads)

        # The write phases, each on a quiet system: the one before is let settle first.
        phases = [
            ("single-event commands", single_event_commands, "single", ["activities"]),
            ("relay lag", relay_lag, "relay", ["activities"]),
            ("accepted → visible", accepted_to_visible, "visible", ["activities", "scoring"]),
            ("sheets of 100", sheets_of_100, "sheets", ["activities"]),
        ]
        for n, (label, measure, phase, profiled) in enumerate(phases):
            if n:
                await settled(w, plan, report)
            say(f"  {label} …")
            figure, target = PHASE_FIGURES[phase]
            await timed(
                report,
                figure,
                target,
                functools.partial(
                    measure,
                    w,
                    plan,
                    year,
                    activities,
                    report,
                    profiler.phase(w, phase, profiled, report),
                ),
            )

        say(f"  bulk to {plan.events:,} events, then memory …")

        async def memory() -> None:
            services = ["activities", "scoring", "notify"]
            async with profiler.phase(w, "bulk", services, report):
                events = await bulk(w, plan, year, activities)
            async with profiler.phase(w, "wait", services, report):
                await memory_after_bulk(w, plan, events, report)
            if member:
                ledger, table = await measure_reads(
                    w, plan, year, member, report, max(10, plan.reads // 3), describe=False
                )
                busy = any(n > 0 for n in (await w.behind()).values())
                report.note(
                    f"reads again after the bulk (consumers {'still busy' if busy else 'idle'}): "
                    f"ledger p50 {ms(percentile(ledger, 0.5))} p99 {ms(percentile(ledger, 0.99))}, "
                    f"branch table p50 {ms(percentile(table, 0.5))} "
                    f"p99 {ms(percentile(table, 0.99))}"
                )

        await timed(report, "resident memory after the bulk", "≤ 200 MB", memory)
    say(f"  services stopped after {time.monotonic() - started:.0f} s; load {loadavg()}")

    if scoring:
        say(
            f"  scoring in-process: {plan.scoring_live:,} live, "
            f"{plan.scoring_replay:,} replayed (tests.bench.bench_scoring) …"
        )

        async def scoring_figures() -> None:
            figures = await bench_scoring.measure(
                events=plan.scoring_replay, live=plan.scoring_live, say=say
            )
            report.add(
                Row(
                    "scoring live consumption (batched, in-process)",
                    "≥ 30,000 events/s",
                    f"{figures.live_rate:,.0f} events/s ({figures.live_events:,} inputs in "
                    f"batches of 1,000; {figures.ledger_events:,} ledger events)",
                    figures.live_rate >= 30_000,
                    HINTS["scoring_live"],
                    key="scoring_live",
                    value=figures.live_rate,
                )
            )
            report.add(
                Row(
                    f"scoring replay from its archive, {figures.replay_inputs:,} events",
                    "≥ 100,000 events/s",
                    f"{figures.replay_rate:,.0f} events/s ({figures.replay_rows:,} member-periods)",
                    figures.replay_rate >= 100_000,
                    HINTS["scoring_replay"],
                    key="scoring_replay",
                    value=figures.replay_rate,
                )
            )

        await timed(report, "scoring consumption and replay", "see bench_scoring", scoring_figures)
    say(f"  done in {time.monotonic() - started:.0f} s; load average at end: {loadavg()}")
    report.note(
        f"load average (1, 5, 15 min) {load_at_start} at the start, {loadavg()} at the end, "
        f"{time.monotonic() - started:.0f} s in all; anything else running shares the 2 cores"
    )
    return report


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every size shrunk: a smoke run")
    parser.add_argument("--events", type=int, help="events in the activities log before RSS")
    parser.add_argument(
        "--bulk-seconds", type=float, help="the most the bulk may take (RSS is then read earlier)"
    )
    parser.add_argument("--wait", type=float, help="seconds to wait for consumers before RSS")
    parser.add_argument("--keep-logs", action="store_true", help="keep the services' logs")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the services with py-spy (if on PATH) during each phase, into DIR",
    )
    parser.add_argument(
        "--meeting-reminders",
        action="store_true",
        help="keep notify's meeting reminders (each past meeting: 2 × members skipped)",
    )
    parser.add_argument(
        "--no-scoring", action="store_true", help="leave out the in-process scoring figures"
    )
    parser.add_argument(
        "--no-peer", action="store_true", help="leave out the peer library's figures"
    )
    parser.add_argument(
        "--no-machine", action="store_true", help="leave out the machine's raw limits"
    )
    return parser.parse_args()


async def main() -> None:
    args = parse()
    plan = QUICK if args.quick else Plan()
    if args.events is not None:
        plan = replace(plan, events=args.events)
    if args.wait is not None:
        plan = replace(plan, wait_seconds=args.wait)
    if args.bulk_seconds is not None:
        plan = replace(plan, bulk_seconds=args.bulk_seconds)
    header = (
        f"party-members performance targets — {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
        + (" (--quick: sizes shrunk, not the targets' conditions)" if args.quick else "")
    )
    if args.profile:
        header += " (profiled with py-spy: figures distorted)"
    header += (
        f"\nmachine: {machine_facts()}, Python {platform.python_version()}"
        f"\n{await server_facts()}; the services sign every commit and check every signature"
    )
    say(header)
    references, reference_notes = await measure_references(
        quick=args.quick, peer=not args.no_peer, limits=not args.no_machine
    )
    if references.peer:
        header += f"\npeer: eventsourcing {references.peer.version} (PostgreSQL, psycopg 3)"
    report = await run(
        plan,
        meeting_reminders=args.meeting_reminders,
        scoring=not args.no_scoring,
        keep_logs=args.keep_logs,
        profile=args.profile,
        references=references,
    )
    say()
    say(header)
    say()
    say(report.table())
    say()
    for note in [*reference_notes, *report.notes]:
        say(f"- {note}")
    missed = [row for row in report.rows if row.passed is False and row.hint]
    if missed:
        say()
        say("Where the time goes (missed targets):")
        for row in missed:
            say(f"- {row.figure}: {row.hint}")


if __name__ == "__main__":
    uvloop.run(main())
