"""Scoring's reads against growing history: the branch table, a member's ledger, a school's and
the university's summary, live and with `as_of` and `known_at`, at 10k, 100k and 1M archived
inputs of earlier years (issue 15: reads must not grow with history).

    .venv/bin/python -m tests.bench.bench_reads [--quick] [--sizes 10000,100000,1000000]

A private database per size (dropped afterwards): 5 schools of 20 branches of 50 members
(5,000 members); this year's period (2026) has 20 attendance lines per member, and one member
of the measured branch has 1,000 (the ledger read); some lines are corrected, one member is
vetoed, one adjusted, and every input is entered late (recorded up to 40 days after it
occurred). The history — `size` inputs in the years 2000–2025 — goes to the measured school's
1,000 members, so its branches and the member carry all of it. Everything is loaded in bulk
(COPY) with the lines the live path computes for each input (`compute_lines`), the live rows
refreshed as the live path does; then each read is timed in process through ScoringQueries
(what the HTTP handlers call) and the table printed: p50 and p99 per read and variant.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import platform
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import uvloop

from runtime.commands import CommandContext
from runtime.directory import Directory, MemberRecord
from runtime.eventstore import EventStore, migrate
from runtime.projection import LocalProjector
from services.scoring import live as live_module
from services.scoring.archive import Archive
from services.scoring.domain.engine import MEMBER_FIELDS, Input
from services.scoring.handlers import ScoringService
from services.scoring.projections import ScoringReadModels
from services.scoring.queries import ScoringQueries
from services.scoring.regulation_file import default_regulation
from services.scoring.service import DEFINITION as SCORING
from tests.bench.harness import percentile

ADMIN_URL = os.environ.get("PARTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ZONE = ZoneInfo("Asia/Shanghai")
SCHOOLS, BRANCHES_PER_SCHOOL, MEMBERS_PER_BRANCH = 5, 20, 50
YEAR, FIRST_YEAR = 2026, 2000
KINDS = ["all_member_meeting", "group_meeting", "party_lecture", "volunteer_service", "visit"]
STATUSES = ["present"] * 8 + ["late", "absent", "excused"]
BRANCH, MEMBER, SCHOOL = "b000", "m00000", "s0"
AS_OF = date(YEAR, 9, 30)
KNOWN_AT = datetime(YEAR, 10, 1, tzinfo=UTC)


def regulation() -> dict[str, Any]:
    """The shipped regulation with a period per year since 2000."""
    raw = default_regulation()
    raw["effective_from"] = f"{FIRST_YEAR}-01-01"
    raw["periods"] = [
        {"id": str(y), "starts_on": f"{y}-01-01", "ends_on": f"{y}-12-31"}
        for y in range(FIRST_YEAR, YEAR + 1)
    ]
    return raw


def member_id(n: int) -> str:
    return f"m{n:05d}"


def branch_of(n: int) -> str:
    return f"b{n // MEMBERS_PER_BRANCH:03d}"


def attendance(n: int, member: int, year: int, rng: random.Random) -> Input:
    kind = rng.choice(KINDS)
    status = rng.choice(STATUSES)
    day = date(year, 1, 1) + timedelta(days=rng.randrange(360))
    occurred = datetime(day.year, day.month, day.day, 3, tzinfo=UTC)
    data = {
        "activity_id": f"a{year}-{n // 40}",
        "member_id": member_id(member),
        "status": status,
        "excuse": "病假" if status == "excused" else None,
        "activity_kind": kind,
        "branch_id": branch_of(member),
        "group_id": None,
        "activity_date": day.isoformat(),
        "volunteer_hours": rng.choice(["1", "2", "2.5", "4"])
        if kind == "volunteer_service" and status == "present"
        else None,
    }
    recorded = occurred + timedelta(hours=rng.randrange(40 * 24))
    return Input(
        uuid.UUID(int=n + 1),
        "attendance.recorded",
        occurred,
        recorded,
        branch_of(member),
        "sec",
        data,
    )


def correction(n: int, original: Input) -> Input:
    data = {
        **original.data,
        "status": "absent",
        "corrects_event_id": str(original.event_id),
        "previous_status": original.data["status"],
        "reason": "录入错误",
    }
    return Input(
        uuid.UUID(int=n + 1),
        "attendance.corrected",
        original.occurred_at,
        original.recorded_at + timedelta(days=3),
        original.branch_id,
        "sec",
        data,
    )


def inputs_for(size: int) -> tuple[list[Input], list[Input]]:
    """(history, this year): history to the measured school's members, this year to all."""
    rng = random.Random(size)
    school_members = BRANCHES_PER_SCHOOL * MEMBERS_PER_BRANCH
    history = [
        attendance(n, n % school_members, FIRST_YEAR + (n * 26) // max(size, 1), rng)
        for n in range(size)
    ]
    now: list[Input] = []
    n = size
    members = SCHOOLS * BRANCHES_PER_SCHOOL * MEMBERS_PER_BRANCH
    for member in range(members):
        for _ in range(1000 if member == 0 else 20):
            now.append(attendance(n, member, YEAR, rng))
            n += 1
    for index in range(0, len(now), 97):  # a correction of about one line in a hundred
        now.append(correction(n, now[index]))
        n += 1
    disciplined = {
        "member_id": member_id(7),
        "measure": "warning",
        "decided_on": f"{YEAR}-05-01",
        "reason": "违纪",
    }
    occurred = datetime(YEAR, 5, 1, 2, tzinfo=UTC)
    now.append(
        Input(
            uuid.UUID(int=n + 1),
            "member.disciplined",
            occurred,
            occurred + timedelta(days=60),
            None,
            "sec",
            disciplined,
        )
    )
    return history, now


def directory_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    units: list[tuple[Any, ...]] = [
        (f"s{s}", "school", f"School {s}", None, None) for s in range(SCHOOLS)
    ]
    members = []
    for b in range(SCHOOLS * BRANCHES_PER_SCHOOL):
        units.append(
            (f"b{b:03d}", "branch", f"Branch {b}", f"s{b // BRANCHES_PER_SCHOOL}", "student")
        )
        for k in range(MEMBERS_PER_BRANCH):
            n = b * MEMBERS_PER_BRANCH + k
            record = MemberRecord(
                member_id(n),
                f"成员{n}",
                f"b{b:03d}",
                None,
                "full",
                date(1999, 9, 1),
                date(2030, 7, 1),
            )
            members.append(
                (
                    record.member_id,
                    record.branch_id,
                    None,
                    "full",
                    record.enrolled_on,
                    None,
                    orjson.dumps(dataclasses.asdict(record)).decode(),
                )
            )
    return units, members


def input_row(i: Input, position: int) -> tuple[Any, ...]:
    named = sorted({str(i.data[f]) for f in MEMBER_FIELDS if i.data.get(f)})
    return (
        i.event_id,
        i.type,
        i.occurred_at,
        i.recorded_at,
        i.branch_id,
        i.actor_id,
        orjson.dumps(i.data).decode(),
        named,
        "activities",
        position,
        i.supersedes,
    )


@dataclasses.dataclass
class World:
    pool: asyncpg.Pool
    service: ScoringService
    queries: ScoringQueries
    store: EventStore


async def build(pool: asyncpg.Pool, size: int, say: Callable[[str], None]) -> World:
    schema = "scoring"
    async with pool.acquire() as conn:
        await migrate(conn, schema, SCORING.migrations())
    clock_now = [datetime(1999, 12, 1, tzinfo=UTC)]  # the regulation, before every input
    store = EventStore(pool, schema, clock=lambda: clock_now[0])
    archive = Archive(pool, schema, "nde-2010")
    projector = LocalProjector(store, [ScoringReadModels(schema)], name="read", source="scoring")
    service = ScoringService(
        store,
        archive,
        Directory(pool, schema),
        projector,
        clock=lambda: clock_now[0],
        timezone=str(ZONE),
    )
    units, members = directory_rows()
    await pool.copy_records_to_table(
        "directory_units",
        schema_name=schema,
        records=units,
        columns=("unit_id", "kind", "name", "parent_id", "branch_kind"),
    )
    await pool.copy_records_to_table(
        "directory_members",
        schema_name=schema,
        records=members,
        columns=(
            "member_id",
            "branch_id",
            "group_id",
            "standing",
            "enrolled_on",
            "transferred_on",
            "record",
        ),
    )
    await service.publish_regulation(regulation(), CommandContext("bench", "university_admin"))
    started = time.perf_counter()
    history, now = inputs_for(size)
    every = history + now
    superseded = {i.supersedes for i in every if i.supersedes}
    book = await archive.book()
    for start in range(0, len(every), 50_000):
        chunk = every[start : start + 50_000]
        await pool.copy_records_to_table(
            "inputs",
            schema_name=schema,
            records=[input_row(i, start + k + 1) for k, i in enumerate(chunk)],
            columns=(
                "event_id",
                "type",
                "occurred_at",
                "recorded_at",
                "branch_id",
                "actor_id",
                "data",
                "members",
                "source",
                "position",
                "supersedes",
            ),
        )
        lines = live_module.compute_lines(chunk, book, ZONE, superseded)
        async with pool.acquire() as conn:
            await service.live._insert_lines(conn, lines)
    all_members = sorted(r[0] for r in members)
    async with pool.acquire() as conn:
        # one approved adjustment in this year's period
        await conn.execute(
            f"INSERT INTO {schema}.adjustments (adjustment_id, member_id, branch_id, period_id, "
            "points, reason, requested_by, requested_at, approved_by, event_id, occurred_at, "
            "recorded_at, effective_on) VALUES ('adj-1', $1, $2, $3, 2, '表彰', 'c1', $4, 'c2', "
            "$5, $4, $6, $7)",
            member_id(1),
            BRANCH,
            str(YEAR),
            datetime(YEAR, 6, 1, tzinfo=UTC),
            uuid.uuid4(),
            datetime(YEAR, 6, 2, tzinfo=UTC),
            date(YEAR, 6, 1),
        )
        for start in range(0, len(all_members), 500):
            async with conn.transaction():
                await service.live.refresh(conn, all_members[start : start + 500], book)
        await conn.execute("VACUUM ANALYZE")  # what autovacuum does to a table of appends
    say(
        f"  built {size:,} inputs of history + {len(now):,} this year "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return World(pool, service, ScoringQueries(service, archive), store)


Read = tuple[str, Callable[..., Awaitable[Any]]]


def reads(w: World) -> list[Read]:
    q = w.queries
    school = [f"b{b:03d}" for b in range(BRANCHES_PER_SCHOOL)]
    everyone = [f"b{b:03d}" for b in range(SCHOOLS * BRANCHES_PER_SCHOOL)]
    period = str(YEAR)

    async def table(**cut: Any) -> Any:
        return await q.branch(BRANCH, period, as_of=cut.get("as_of"), known_at=cut.get("known_at"))

    async def ledger(**cut: Any) -> Any:
        return await q.member(
            MEMBER, period_id=period, as_of=cut.get("as_of"), known_at=cut.get("known_at")
        )

    async def school_summary(**cut: Any) -> Any:
        return await q.summary(school, period, as_of=cut.get("as_of"), known_at=cut.get("known_at"))

    async def university(**cut: Any) -> Any:
        return await q.summary(
            everyone, period, as_of=cut.get("as_of"), known_at=cut.get("known_at")
        )

    return [
        ("branch table (50 members)", table),
        ("member ledger (1,000 lines)", ledger),
        ("school summary (20 branches)", school_summary),
        ("university summary (100 branches)", university),
    ]


VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("live", {}),
    ("as_of", {"as_of": AS_OF}),
    ("known_at", {"known_at": KNOWN_AT}),
]


async def measure(
    w: World, repeats: int, budget: float, say: Callable[[str], None] = print
) -> list[tuple[str, str, float, float, int]]:
    rows = []
    for name, read in reads(w):
        for variant, cut in VARIANTS:
            await read(**cut)  # warm
            samples: list[float] = []
            spent = time.perf_counter()
            while len(samples) < repeats and (
                time.perf_counter() - spent < budget or len(samples) < 3
            ):
                started = time.perf_counter()
                await read(**cut)
                samples.append(time.perf_counter() - started)
            rows.append(
                (name, variant, percentile(samples, 0.5), percentile(samples, 0.99), len(samples))
            )
            say(
                f"    {name} | {variant} | p50 {ms(rows[-1][2])} | p99 {ms(rows[-1][3])} "
                f"| n={len(samples)}"
            )
    return rows


async def profile(w: World, say: Callable[[str], None], reads_named: Sequence[str]) -> None:
    """cProfile of the live reads named (5 runs each): where the time goes."""
    import cProfile
    import io
    import pstats

    for name, read in reads(w):
        if not any(name.startswith(n) for n in reads_named):
            continue
        await read()
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(5):
            await read()
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(18)
        say(
            f"  profile of {name}, 5 runs, {(time.perf_counter() - started) / 5 * 1000:.0f} ms "
            "each (cumulative):"
        )
        say("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])


async def one_size(
    size: int,
    repeats: int,
    budget: float,
    say: Callable[[str], None],
    profiled: Sequence[str] = (),
) -> Any:
    database = f"scoring_reads_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{database}"')
    pool = await asyncpg.create_pool(
        ADMIN_URL.rsplit("/", 1)[0] + f"/{database}", min_size=1, max_size=4
    )
    assert pool is not None
    try:
        w = await build(pool, size, say)
        # What the build made is garbage or long-lived now: a service process holds neither.
        gc.collect()
        gc.freeze()
        if profiled:
            await profile(w, say, profiled)
        figures = await measure(w, repeats, budget, say)
        await w.store.close()
        return figures
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _size(text: str) -> int:
    """`10000`, `10k`, `1M`."""
    factor = {"k": 1_000, "m": 1_000_000}.get(text.strip()[-1:].lower(), 1)
    digits = text.strip()[:-1] if factor > 1 else text.strip()
    return int(float(digits) * factor)


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10k and 100k, few repeats")
    parser.add_argument(
        "--sizes", help="comma-separated history sizes: 10000 or 10k, 1M (default 10k,100k,1M)"
    )
    parser.add_argument("--repeats", type=int, help="samples per read and variant")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per read at most")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        help="cProfile this live read too (its name's "
        "start: 'branch', 'member', 'school', 'university')",
    )
    args = parser.parse_args(argv)
    sizes = (
        [_size(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    )
    repeats = args.repeats or (20 if args.quick else 200)
    print(
        f"scoring reads: history {', '.join(f'{s:,}' for s in sizes)}; {repeats} samples; "
        f"{platform.node()}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    results: dict[int, list[tuple[str, str, float, float, int]]] = {}
    for size in sizes:
        results[size] = await one_size(
            size, repeats, args.budget, lambda s: print(s, flush=True), args.profile
        )
        for name, variant, p50, p99, n in results[size]:
            print(
                f"  {size:>9,} | {name} | {variant} | p50 {ms(p50)} | p99 {ms(p99)} | n={n}",
                flush=True,
            )
    print()
    print("| read | variant | " + " | ".join(f"{s:,}: p50 / p99" for s in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    first = results[sizes[0]]
    for index, (name, variant, *_) in enumerate(first):
        cells = [f"{ms(results[s][index][2])} / {ms(results[s][index][3])}" for s in sizes]
        print(f"| {name} | {variant} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    uvloop.run(main())
