"""Throughput of the foundation on this machine: append, publish, consume — each twice, back
to back in one run: with the service's signatures (a signature per commit, consumers checking
every hash, chain and signature: what runs) and without them (no signer; a consumer that
believes every entry: what ran before), so that the cost of trust is a ratio on one machine.

    .venv/bin/python -m tests.bench.bench_foundation [--events 100000]

Creates a private database and stream prefix, removes them afterwards, and prints a table.
Everything runs on loopback against the real PostgreSQL (fsync on) and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import redis.asyncio as redis
import uvloop

from runtime.consumer import ConsumerOptions, EventConsumer, IncomingEvent, Projector
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    EventMetadata,
    EventStore,
    StreamAppend,
    load_migrations,
    migrate,
)
from runtime.relay import Relay
from runtime.signing import KeyRing, Signer
from tests.support.tally import AttendanceTally, attendance_event, sheet

SOURCE = "activities"

ADMIN_URL = os.environ.get("PARTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PARTY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")  # not db 0
METADATA = EventMetadata("bench", "branch_secretary")

rows: list[tuple[str, str, str]] = []
figures: dict[tuple[str, str], float] = {}
variant = "signed"


def report(figure: str, value: float, unit: str, note: str = "") -> None:
    rows.append((f"{figure} [{variant}]", f"{value:,.0f} {unit}", note))
    figures[(variant, figure)] = value
    print(f"  {figure} [{variant}]: {value:,.0f} {unit} {note}", flush=True)


class TrustingConsumer(EventConsumer):
    """The consumer as it was before signatures: every entry that parses is believed."""

    async def _believe(
        self,
        stream: str,
        parsed: list[Any],
        entry_ids: list[bytes],
        done: list[bytes],
        deliveries: dict[bytes, int],
    ) -> list[IncomingEvent]:
        self._held[stream] = set()
        return [entry.event for entry in parsed]


async def bench_appends(store: EventStore, events: int) -> None:
    # One command at a time, each waiting for its commit: the latency-bound floor.
    n = min(2000, events // 10)
    started = time.perf_counter()
    for i in range(n):
        await store.append(
            StreamAppend(f"seq-{i % 100}", [attendance_event("a", f"m{i}", "present")]),
            metadata=METADATA,
        )
    elapsed = time.perf_counter() - started
    report(
        "single appends, one client", n / elapsed, "events/s", f"({elapsed / n * 1000:.2f} ms each)"
    )

    # Many clients at once: group commit folds their appends into shared transactions.
    clients, per_client = 64, max(1, events // 64)
    latencies: list[float] = []

    async def client(c: int) -> None:
        for i in range(per_client):
            t0 = time.perf_counter()
            await store.append(
                StreamAppend(f"member-{c}-{i % 50}", [attendance_event("a", f"m{c}", "present")]),
                metadata=METADATA,
            )
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - started
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    report(
        "single-event appends, 64 concurrent clients",
        clients * per_client / elapsed,
        "events/s",
        f"(p99 {p99:.1f} ms)",
    )

    # Attendance sheets of 100 lines, 8 clients: batched appends.
    sheets = max(1, events // 100)
    started = time.perf_counter()

    async def sheet_client(c: int) -> None:
        for i in range(c, sheets, 8):
            await store.append(sheet(f"act-{i}", 100), metadata=METADATA)

    await asyncio.gather(*(sheet_client(c) for c in range(8)))
    elapsed = time.perf_counter() - started
    report("sheets of 100 events, 8 clients", sheets * 100 / elapsed, "events/s")


async def bench_publish(store: EventStore, client: redis.Redis, prefix: str) -> int:
    relay = Relay(store=store, redis_client=client, source=SOURCE, prefix=prefix, batch_size=2000)
    started = time.perf_counter()
    published = 0
    while n := await relay.publish_once():
        published += n
    elapsed = time.perf_counter() - started
    report(
        "relay publish to Redis (pipelined XADD)",
        published / elapsed,
        "events/s",
        f"({published:,} events)",
    )
    return published


async def bench_consume(
    pool: asyncpg.Pool, client: redis.Redis, prefix: str, total: int, signer: Signer | None
) -> None:
    schema = f"bench_c_{uuid.uuid4().hex[:8]}"
    tally = AttendanceTally(schema)
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
        await tally.create(conn)
    projector = Projector(pool, schema, [tally])
    done = asyncio.Event()
    applied = 0

    async def handler(events: Sequence[IncomingEvent]) -> int:
        nonlocal applied
        fresh = await projector.apply(events)
        applied += len(events)
        if applied >= total:
            done.set()
        return fresh

    ring = KeyRing()
    if signer is not None:
        ring.add(SOURCE, signer.public_key)
    kind = EventConsumer if signer is not None else TrustingConsumer
    consumer = kind(
        service="bench",
        redis_url=REDIS_URL,
        redis_client=client,
        prefix=prefix,
        producers=[SOURCE],
        handler=handler,
        consumer_name="bench-1",
        keyring=lambda: ring,
        options=ConsumerOptions(batch_size=1000),
    )
    started = time.perf_counter()
    await consumer.start()
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - started
    await consumer.stop()
    report(
        "consume into a projection (batches of 1000, inbox)",
        total / elapsed,
        "events/s",
        "(validation + inbox + projection in one transaction per batch)",
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    database = f"party_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{database}"')
    pool = await asyncpg.create_pool(
        ADMIN_URL.rsplit("/", 1)[0] + f"/{database}", min_size=2, max_size=10
    )
    assert pool is not None
    client = redis.Redis.from_url(REDIS_URL)
    print(
        f"foundation benchmark, {args.events:,} events; {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}",
        flush=True,
    )
    global variant
    try:
        for variant, signer in (("unsigned", None), ("signed", Signer.generate(SOURCE))):
            schema = f"bench_{variant}"
            run_prefix = f"{prefix}{variant}"
            async with pool.acquire() as conn:
                await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
            store = EventStore(pool, schema, signer=signer, source=SOURCE)
            await bench_appends(store, args.events)
            await store.close()
            published = await bench_publish(store, client, run_prefix)
            await bench_consume(pool, client, run_prefix, published, signer)
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await pool.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()
    width = max(len(r[0]) for r in rows)
    print()
    print(f"| {'figure'.ljust(width)} | measured | note |")
    print(f"|{'-' * (width + 2)}|---|---|")
    for figure, value, note in rows:
        print(f"| {figure.ljust(width)} | {value} | {note} |")
    print()
    print("signed / unsigned, same run:")
    for (kind, name), measured in figures.items():
        if kind == "signed" and ("unsigned", name) in figures:
            print(f"  {name}: {measured / figures[('unsigned', name)]:.2f}")


if __name__ == "__main__":
    uvloop.run(main())
