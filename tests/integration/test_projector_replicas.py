"""Two replicas of a consuming service apply their batches to the same tables: a projection
that reads what earlier batches wrote (a running total) must never lose one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import uuid4

import asyncpg

from runtime.consumer import IncomingEvent, Projector
from runtime.db import Connection
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    EventMetadata,
    EventStore,
    StreamAppend,
    load_migrations,
    migrate,
)
from runtime.projection import incoming
from tests.support.tally import attendance_event


class RunningTotal:
    """Attendance counted by read, pause, write: the shape of a total kept per member."""

    name = "running_total"
    event_types = frozenset({"attendance.recorded"})

    def __init__(self, schema: str) -> None:
        self._s = f'"{schema}"'

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        seen = await conn.fetchval(f"SELECT n FROM {self._s}.running_total")
        await asyncio.sleep(0.02)  # the other replica gets every chance to interleave
        await conn.execute(f"UPDATE {self._s}.running_total SET n = $1", seen + len(events))


async def test_concurrent_replicas_lose_no_batch(pool: asyncpg.Pool, store: EventStore) -> None:
    await store.append(
        StreamAppend(
            "attendance-a1", [attendance_event("a1", f"m{n}", "present") for n in range(40)]
        ),
        metadata=EventMetadata("secretary-b1", "branch_secretary"),
    )
    events = [incoming(e, "activities") for e in await store.read_all(after_position=0)]
    schema = f"t_{uuid4().hex[:12]}"
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
        await conn.execute(f'CREATE TABLE "{schema}".running_total (n int)')
        await conn.execute(f'INSERT INTO "{schema}".running_total VALUES (0)')
    try:
        replicas = [Projector(pool, schema, [RunningTotal(schema)]) for _ in range(2)]
        batches = [events[n : n + 4] for n in range(0, len(events), 4)]
        applied = await asyncio.gather(
            *(replicas[n % 2].apply(batch) for n, batch in enumerate(batches))
        )
        assert sum(applied) == 40
        assert await pool.fetchval(f'SELECT n FROM "{schema}".running_total') == 40
        # Whatever order the batches landed in, the cursor reached the end of the chain.
        cursor = await pool.fetchrow(f'SELECT position, hash FROM "{schema}".producer_cursors')
        assert (cursor["position"], cursor["hash"]) == (40, events[-1].hash)
    finally:
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
