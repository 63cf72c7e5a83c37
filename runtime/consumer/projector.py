"""Applying events to projections exactly once in effect.

The ids of applied events go into the inbox table in the same transaction as the projection
change, so a redelivered event (at-least-once transport) changes nothing the second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import asyncpg

from runtime.consumer.incoming import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema


class Projection(Protocol):
    """A fold of events into tables of the consuming service's schema.

    `apply` runs inside the transaction that records the events in the inbox; it receives only
    events not applied before, of the types in `event_types`. A projection is a function of the
    set of events it has seen: it must not depend on their arrival order (DESIGN §2.5).
    """

    name: str
    event_types: frozenset[str]

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None: ...


class Projector:
    """`eager` projections must be idempotent (applying an event twice changes nothing): they
    are applied, and committed, before the others, so that what the others do outside their
    transaction (appending events, which other readers then act on) already finds them. The
    organisation directory is one."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        projections: Sequence[Projection],
        eager: Sequence[Projection] = (),
    ) -> None:
        self._pool = pool
        self._s = quote_schema(schema)
        self.projections = tuple(projections)
        self.eager = tuple(eager)
        self._lock_key = f"{schema}:projector"
        self._one_at_a_time = asyncio.Lock()

    async def apply(self, events: Sequence[IncomingEvent]) -> int:
        """Apply the events not applied before, in one transaction; return how many were new."""
        unique: dict[object, IncomingEvent] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        if not unique:
            return 0
        batch = list(unique.values())
        for projection in self.eager:
            mine = [e for e in batch if e.type in projection.event_types]
            if mine:
                async with self._pool.acquire() as conn, conn.transaction():
                    await projection.apply(conn, mine)
        # Batches are applied one at a time, in this process (the lock is taken before a
        # connection, so that waiting batches do not hold the connections the applying one
        # needs) and across replicas (the advisory lock): a projection may read what earlier
        # batches wrote (a total from its lines), and must see all of it.
        async with self._one_at_a_time, self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock_key)
            rows = await conn.fetch(
                f"INSERT INTO {self._s}.inbox (event_id, source, position) "
                "SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[]) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                [e.event_id for e in batch],
                [e.source for e in batch],
                [e.position for e in batch],
            )
            fresh_ids = {row["event_id"] for row in rows}
            fresh = [e for e in batch if e.event_id in fresh_ids]
            for projection in self.projections:
                mine = [e for e in fresh if e.type in projection.event_types]
                if mine:
                    await projection.apply(conn, mine)
        return len(fresh)
