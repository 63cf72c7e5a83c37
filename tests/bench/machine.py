"""What this machine's PostgreSQL and Redis can do through the same drivers the services use,
with none of the project's code in the way: the limits each project figure is set against.

    .venv/bin/python -m tests.bench.machine [--quick]

* asyncpg: single-row INSERTs, each its own commit (autocommit), from 1 client and from 32;
  `executemany` of 100 rows per transaction (a sheet's shape) from 1 client and from 8; and an
  ordered keyset read of a table of ~1M rows (`WHERE position > $1 ORDER BY position LIMIT n`,
  pages of 10,000), each row decoded by the driver;
* redis-py (hiredis, asyncio): XADD one at a time (each awaited: the round trip), XADD in
  pipelines of 500, and XREAD COUNT 1000 over what was added.

The rows and entries have the shape of the project's events (a stream id, a version, a type
and a JSON payload of about 300 bytes); the table has the primary key and the unique
(stream_id, stream_version) the event log has, and nothing else: no hash chain, signature,
inbox or projection. Everything goes to a database and stream keys of its own, removed
afterwards even when a measurement fails.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import asyncpg
import orjson
import redis.asyncio as redis
import uvloop

from tests.bench.harness import ADMIN_URL, REDIS_URL, percentile

Say = Callable[[str], None]
Reply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


@dataclass(frozen=True)
class MachinePlan:
    seconds: float = 8.0  # each timed insert measurement
    many_clients: int = 32
    batch: int = 100  # rows per executemany: a sheet of 100 lines
    batch_clients: int = 8
    keyset_rows: int = 1_000_000
    keyset_page: int = 10_000
    xadd_seconds: float = 5.0
    xadd_entries: int = 200_000  # pipelined, then read back
    pipeline: int = 500


QUICK_MACHINE = MachinePlan(
    seconds=1.5,
    keyset_rows=50_000,
    xadd_seconds=1.0,
    xadd_entries=20_000,
)


@dataclass(frozen=True)
class MachineFigures:
    insert_rate: float  # rows/s, 1 client, one commit per row
    insert_p50: float  # seconds
    insert_p99: float
    insert_many_rate: float  # rows/s, `many_clients` clients
    many_clients: int
    executemany_rate: float  # rows/s, 1 client, `batch` rows per transaction
    executemany_many_rate: float  # rows/s, `batch_clients` clients
    batch: int
    batch_clients: int
    keyset_rate: float  # rows/s
    keyset_rows: int
    keyset_page: int
    xadd_rate: float  # entries/s, each awaited
    xadd_p50: float  # seconds
    xadd_p99: float
    xadd_pipelined_rate: float  # entries/s
    pipeline: int
    xread_rate: float  # entries/s
    xread_entries: int

    @property
    def best_insert(self) -> float:
        return max(self.insert_rate, self.insert_many_rate)

    @property
    def best_executemany(self) -> float:
        return max(self.executemany_rate, self.executemany_many_rate)


TABLE = """
CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       text        NOT NULL,
    stream_version  integer     NOT NULL,
    type            text        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    data            jsonb       NOT NULL,
    UNIQUE (stream_id, stream_version)
)
"""
INSERT = "INSERT INTO events (stream_id, stream_version, type, data) VALUES ($1, $2, $3, $4)"


def payload(n: int) -> str:
    """An attendance line's worth of JSON (~300 bytes), different for each n."""
    return orjson.dumps(
        {
            "activity_id": f"a-{n // 100}",
            "member_id": f"m-load-{n % 100:03d}",
            "status": "present",
            "excuse": None,
            "activity_kind": "all_member_meeting",
            "branch_id": "bsch-load",
            "group_id": "bsch-load-g1",
            "activity_date": "2026-05-01",
            "volunteer_hours": None,
            "note": "支部大会 第一党小组 国防教育学院",
        }
    ).decode()


ENVELOPE = orjson.dumps(
    {
        "event_id": str(uuid.UUID(int=1)),
        "type": "attendance.recorded",
        "schema_version": 1,
        "stream_id": "attendance-a-1",
        "stream_version": 1,
        "branch_id": "bsch-load",
        "occurred_at": "2026-05-01T11:00:00+00:00",
        "recorded_at": "2026-05-01T11:00:00+00:00",
        "actor": {"id": "sec", "role": "branch_secretary"},
        "data": orjson.loads(payload(1)),
        "hash": "0" * 64,
        "prev_hash": "0" * 64,
        "signature": "0" * 88,
    }
)


class Streams:
    """Unique stream numbers for the writers: no two rows ever claim one (stream, version)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> str:
        self.next += 1
        return f"s-{self.next}"


async def inserts(
    pool: asyncpg.Pool, clients: int, seconds: float, streams: Streams
) -> tuple[float, list[float]]:
    """Single-row INSERTs, each committed on its own, from `clients` at once."""
    latencies: list[float] = []
    done = 0
    end = time.perf_counter() + seconds
    data = payload(7)

    async def client() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while (sent := time.perf_counter()) < end:
                await conn.execute(INSERT, streams.take(), 1, "attendance.recorded", data)
                latencies.append(time.perf_counter() - sent)
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - started), latencies


async def executemanys(
    pool: asyncpg.Pool, clients: int, seconds: float, batch: int, streams: Streams
) -> float:
    """`batch` rows of one stream per transaction, with executemany, from `clients` at once."""
    done = 0
    end = time.perf_counter() + seconds
    data = [payload(n) for n in range(batch)]

    async def client() -> None:
        nonlocal done
        async with pool.acquire() as conn:
            while time.perf_counter() < end:
                stream = streams.take()
                rows = [(stream, v + 1, "attendance.recorded", data[v]) for v in range(batch)]
                async with conn.transaction():
                    await conn.executemany(INSERT, rows)
                done += batch

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return done / (time.perf_counter() - started)


async def keyset(conn: asyncpg.Connection, rows: int, page: int, say: Say) -> float:
    """Fill the table to `rows` with COPY (not measured), then read it all in position order,
    a page at a time; the better of two passes (the first also warms the cache)."""
    have = await conn.fetchval("SELECT count(*) FROM events")
    records: list[tuple[str, int, str, str]] = []
    for n in range(have, rows):
        records.append((f"k-{n // 100}", n % 100 + 1, "attendance.recorded", payload(n)))
        if len(records) == 50_000:
            await conn.copy_records_to_table(
                "events", records=records, columns=["stream_id", "stream_version", "type", "data"]
            )
            records.clear()
    if records:
        await conn.copy_records_to_table(
            "events", records=records, columns=["stream_id", "stream_version", "type", "data"]
        )
    await conn.execute("VACUUM ANALYZE events")
    total = await conn.fetchval("SELECT count(*) FROM events")
    query = await conn.prepare(
        "SELECT position, stream_id, stream_version, type, recorded_at, data FROM events "
        "WHERE position > $1 ORDER BY position LIMIT $2"
    )
    best = 0.0
    for _ in range(2):
        read, after = 0, 0
        started = time.perf_counter()
        while batch := await query.fetch(after, page):
            read += len(batch)
            after = batch[-1]["position"]
        best = max(best, read / (time.perf_counter() - started))
    say(f"    keyset read: {best:,.0f} rows/s over {total:,} rows, pages of {page:,}")
    return best


async def postgres_figures(plan: MachinePlan, say: Say) -> dict[str, float]:
    database = f"party_bench_machine_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        url = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
        pool = await asyncpg.create_pool(url, min_size=1, max_size=plan.many_clients)
        assert pool is not None
        try:
            await pool.execute(TABLE)
            streams = Streams()
            await inserts(pool, 1, min(1.0, plan.seconds / 4), streams)  # warm-up
            rate, latencies = await inserts(pool, 1, plan.seconds, streams)
            p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
            say(
                f"    asyncpg INSERT, 1 client, a commit each: {rate:,.0f} rows/s "
                f"(p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms)"
            )
            many, _ = await inserts(pool, plan.many_clients, plan.seconds, streams)
            say(f"    asyncpg INSERT, {plan.many_clients} clients: {many:,.0f} rows/s")
            em = await executemanys(pool, 1, plan.seconds, plan.batch, streams)
            say(f"    asyncpg executemany, {plan.batch} rows a transaction: {em:,.0f} rows/s")
            em_many = await executemanys(
                pool, plan.batch_clients, plan.seconds, plan.batch, streams
            )
            say(f"    asyncpg executemany, {plan.batch_clients} clients: {em_many:,.0f} rows/s")
            async with pool.acquire() as conn:
                read = await keyset(conn, plan.keyset_rows, plan.keyset_page, say)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return {
        "insert_rate": rate,
        "insert_p50": p50,
        "insert_p99": p99,
        "insert_many_rate": many,
        "executemany_rate": em,
        "executemany_many_rate": em_many,
        "keyset_rate": read,
    }


async def redis_figures(plan: MachinePlan, say: Say, redis_url: str) -> dict[str, float]:
    client = redis.Redis.from_url(redis_url)
    prefix = f"benchmachine{uuid.uuid4().hex[:8]}"
    single, piped = f"{prefix}:single", f"{prefix}:pipelined"
    fields = {"envelope": ENVELOPE}
    try:
        latencies: list[float] = []
        end = time.perf_counter() + plan.xadd_seconds
        started = time.perf_counter()
        while (sent := time.perf_counter()) < end:
            await client.xadd(single, fields)
            latencies.append(time.perf_counter() - sent)
        xadd = len(latencies) / (time.perf_counter() - started)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        say(
            f"    XADD one at a time: {xadd:,.0f}/s "
            f"(p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms)"
        )

        started = time.perf_counter()
        for start in range(0, plan.xadd_entries, plan.pipeline):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(plan.pipeline, plan.xadd_entries - start)):
                pipe.xadd(piped, fields)
            await pipe.execute()
        pipelined = plan.xadd_entries / (time.perf_counter() - started)
        say(f"    XADD pipelined by {plan.pipeline}: {pipelined:,.0f}/s")

        read, after = 0, b"0-0"
        started = time.perf_counter()
        while reply := cast(Reply, await client.xread({piped: after}, count=1000)):
            for _, entries in reply:
                read += len(entries)
                after = entries[-1][0]
        xread = read / (time.perf_counter() - started)
        say(f"    XREAD COUNT 1000: {xread:,.0f} entries/s ({read:,} entries)")
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    return {
        "xadd_rate": xadd,
        "xadd_p50": p50,
        "xadd_p99": p99,
        "xadd_pipelined_rate": pipelined,
        "xread_rate": xread,
        "xread_entries": read,
    }


async def measure(
    plan: MachinePlan = MachinePlan(), say: Say = print, redis_url: str = REDIS_URL
) -> MachineFigures:
    """Every limit, PostgreSQL then Redis, on private storage removed afterwards."""
    pg = await postgres_figures(plan, say)
    rd = await redis_figures(plan, say, redis_url)
    return MachineFigures(
        insert_rate=pg["insert_rate"],
        insert_p50=pg["insert_p50"],
        insert_p99=pg["insert_p99"],
        insert_many_rate=pg["insert_many_rate"],
        many_clients=plan.many_clients,
        executemany_rate=pg["executemany_rate"],
        executemany_many_rate=pg["executemany_many_rate"],
        batch=plan.batch,
        batch_clients=plan.batch_clients,
        keyset_rate=pg["keyset_rate"],
        keyset_rows=plan.keyset_rows,
        keyset_page=plan.keyset_page,
        xadd_rate=rd["xadd_rate"],
        xadd_p50=rd["xadd_p50"],
        xadd_p99=rd["xadd_p99"],
        xadd_pipelined_rate=rd["xadd_pipelined_rate"],
        pipeline=plan.pipeline,
        xread_rate=rd["xread_rate"],
        xread_entries=int(rd["xread_entries"]),
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every size shrunk: a smoke run")
    args = parser.parse_args()
    figures = await measure(QUICK_MACHINE if args.quick else MachinePlan(), say=print)
    print(figures)


if __name__ == "__main__":
    uvloop.run(main())
