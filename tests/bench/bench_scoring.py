"""Fold throughput of scoring: live consumption (batches through the inbox, re-scoring and the
published ledger) and replay from the archive.

    .venv/bin/python -m tests.bench.bench_scoring [--events 1000000] [--live 50000]

Creates a private database, generates attendance inputs for 3,000 members in 60 branches under
the shipped 2010 regulation, and prints a table. Everything is real PostgreSQL (fsync on).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import orjson
import uvloop

from contracts.catalogue import CATALOGUE
from contracts.envelope import Actor, Envelope
from contracts.events import AttendanceRecorded
from runtime.commands import CommandContext
from runtime.consumer import IncomingEvent, Projector
from runtime.directory import Directory
from runtime.eventstore import EventStore, migrate
from runtime.projection import LocalProjector
from services.scoring.archive import Archive
from services.scoring.handlers import ScoringService
from services.scoring.projections import INPUT_FAMILIES, ScoringInputs, ScoringReadModels
from services.scoring.queries import ScoringQueries
from services.scoring.regulation_file import default_regulation
from services.scoring.service import DEFINITION as SCORING

ADMIN_URL = os.environ.get("PARTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KINDS = ["all_member_meeting", "group_meeting", "party_lecture", "volunteer_service", "visit"]
STATUSES = ["present"] * 8 + ["late", "absent", "excused"]
HASH = "0" * 64


def attendance(n: int, members: int) -> tuple[AttendanceRecorded, datetime, str]:
    rng = random.Random(n)
    member = rng.randrange(members)
    branch = f"b{member % 60:02d}"
    kind = rng.choice(KINDS)
    status = rng.choice(STATUSES)
    day = date(2010, 5, 1) + timedelta(days=rng.randrange(240))
    payload = AttendanceRecorded(
        activity_id=f"a{n // 40}",
        member_id=f"m{member:05d}",
        status=status,
        excuse="病假" if status == "excused" else None,
        activity_kind=kind,
        branch_id=branch,
        group_id=None,
        activity_date=day,
        volunteer_hours=None
        if kind != "volunteer_service" or status != "present"
        else rng.choice(["1", "2", "2.5", "4"]),
    )
    return payload, datetime(day.year, day.month, day.day, 11, tzinfo=UTC), branch


def incoming(n: int, members: int) -> IncomingEvent:
    payload, occurred, branch = attendance(n, members)
    envelope = Envelope(
        event_id=uuid.UUID(int=n + 1),
        type=payload.event_type,
        schema_version=1,
        stream_id=f"attendance-{n // 40}",
        stream_version=n % 40 + 1,
        branch_id=branch,
        occurred_at=occurred,
        recorded_at=occurred,
        actor=Actor(id="sec", role="branch_secretary"),
        correlation_id=uuid.UUID(int=n + 1),
        causation_id=None,
        data=payload.model_dump(mode="json"),
        hash=HASH,
        prev_hash=HASH,
    )
    return IncomingEvent(envelope, payload, "activities", n + 1)


@dataclass(frozen=True)
class ScoringFigures:
    live_events: int
    live_rate: float  # events/s
    ledger_events: int
    replay_inputs: int
    replay_rows: int
    replay_rate: float  # events/s


async def measure(
    events: int = 1_000_000,
    live: int = 50_000,
    members: int = 3000,
    admin_url: str = ADMIN_URL,
    say: Callable[[str], None] = print,
) -> ScoringFigures:
    """Live consumption of `live` inputs and replay of `events` archived inputs, on a private
    database that is dropped afterwards."""
    database = f"party_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    pool = await asyncpg.create_pool(admin_url.rsplit("/", 1)[0] + f"/{database}", max_size=10)
    assert pool is not None
    try:
        schema = "scoring"
        async with pool.acquire() as conn:
            await migrate(conn, schema, SCORING.migrations())
        store = EventStore(pool, schema)
        regulation = default_regulation()
        archive = Archive(pool, schema, regulation["id"])
        projector = LocalProjector(
            store, [ScoringReadModels(schema)], name="read", source="scoring"
        )
        service = ScoringService(
            store,
            archive,
            Directory(pool, schema),
            projector,
            clock=lambda: datetime(2010, 4, 30, tzinfo=UTC),
            timezone="Asia/Shanghai",
        )
        await service.publish_regulation(regulation, CommandContext("bench", "university_admin"))
        consumer = Projector(
            pool, schema, [ScoringInputs(service, archive, CATALOGUE.types_of(*INPUT_FAMILIES))]
        )

        inputs = [incoming(n, members) for n in range(live)]
        started = time.perf_counter()
        for start in range(0, len(inputs), 1000):
            await consumer.apply(inputs[start : start + 1000])
        live_elapsed = time.perf_counter() - started
        ledger = await pool.fetchval(f"SELECT count(*) FROM {schema}.events")
        say(
            f"    live consumption: {live / live_elapsed:,.0f} events/s "
            f"({live:,} inputs, {ledger:,} ledger events written)"
        )

        # The rest of the archive, bulk-loaded, for the replay.
        batch: list[tuple[object, ...]] = []
        for n in range(live, events):
            payload, occurred, branch = attendance(n, members)
            batch.append(
                (
                    uuid.UUID(int=n + 1),
                    payload.event_type,
                    occurred,
                    occurred,
                    branch,
                    "sec",
                    orjson.dumps(payload.model_dump(mode="json")).decode(),
                    [payload.member_id],
                    "activities",
                    n + 1,
                    None,
                )
            )
            if len(batch) == 50_000:
                await pool.copy_records_to_table("inputs", schema_name=schema, records=batch)
                batch.clear()
        if batch:
            await pool.copy_records_to_table("inputs", schema_name=schema, records=batch)
        queries = ScoringQueries(service, archive)
        started = time.perf_counter()
        report = await queries.replay()
        replay_elapsed = time.perf_counter() - started
        say(
            f"    replay: {report.inputs / replay_elapsed:,.0f} events/s "
            f"({report.inputs:,} inputs, {report.rows:,} member-periods)"
        )
        await store.close()
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()
    return ScoringFigures(
        live_events=live,
        live_rate=live / live_elapsed,
        ledger_events=ledger,
        replay_inputs=report.inputs,
        replay_rows=report.rows,
        replay_rate=report.inputs / replay_elapsed,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000, help="inputs replayed")
    parser.add_argument("--live", type=int, default=50_000, help="inputs consumed live")
    parser.add_argument("--members", type=int, default=3000)
    args = parser.parse_args()
    print(
        f"scoring benchmark: {args.live:,} live, {args.events:,} replayed, "
        f"{args.members:,} members; {platform.node()}, {os.cpu_count()} cores",
        flush=True,
    )
    figures = await measure(args.events, args.live, args.members)
    rows = [
        (
            "live consumption (batches of 1,000: archive, re-score, ledger)",
            f"{figures.live_rate:,.0f} events/s ({figures.ledger_events:,} ledger events written)",
        ),
        (
            f"replay from the archive ({figures.replay_inputs:,} inputs, "
            f"{figures.replay_rows:,} member-periods)",
            f"{figures.replay_rate:,.0f} events/s",
        ),
    ]
    print()
    print("| figure | measured |")
    print("|---|---|")
    for figure, value in rows:
        print(f"| {figure} | {value} |")


if __name__ == "__main__":
    uvloop.run(main())
