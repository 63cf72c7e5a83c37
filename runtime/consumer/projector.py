"""Applying events to projections exactly once in effect.

The ids of applied events go into the inbox table in the same transaction as the projection
change, so a redelivered event (at-least-once transport) changes nothing the second time. The
inbox keeps each event's place in its producer's chain, and each producer's cursor — the
position up to which everything has been applied, each event linking to the one before — moves
in the same transaction: a gap, or two signed events at one place (a fork), stops it.

An event a projection cannot apply does not hold the others back: the batch is applied again
one event at a time, each in a savepoint; the one that fails is recorded in `failed_events`
(projector `consumer`), left out of the inbox to be delivered and tried again, and skipped once
it has failed `attempts` times: then it goes into the inbox like an applied event, so that the
cursor passes it (runtime.failures). A transient failure (PostgreSQL or Redis down) skips
nothing: the batch stays pending.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol
from uuid import UUID

import asyncpg

from contracts.canonical import GENESIS_HASH
from runtime.consumer.incoming import IncomingEvent
from runtime.db import Connection
from runtime.errors import is_transient
from runtime.eventstore.schema import quote_schema
from runtime.failures import CONSUMER, DEFAULT_ATTEMPTS, FailedEvents, Failing, describe
from runtime.logs import get_logger
from runtime.metrics import CONSUMER_FORKS

log = get_logger("projector")

#: How many inbox rows one cursor advance looks at (the rest: next batch).
CURSOR_WALK = 20_000


class Projection(Protocol):
    """A fold of events into tables of the consuming service's schema.

    `apply` runs inside the transaction that records the events in the inbox; it receives only
    events not applied before, of the types in `event_types`. A projection is a function of the
    set of events it has seen: it must not depend on their arrival order (DESIGN §2.5).
    """

    name: str
    event_types: frozenset[str]

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None: ...


class _AlreadyFailed(Exception):
    """An eager projection failed on the event: the others are not applied with it."""


class ProjectionRetry(Exception):
    """Some events of a batch failed and are to be tried again (the others were applied and
    committed): the consumer leaves their entries pending, to be delivered again."""

    def __init__(self, event_ids: set[UUID], applied: int) -> None:
        self.event_ids = event_ids
        self.applied = applied
        super().__init__(f"{len(event_ids)} event(s) failed and will be tried again")


def projection_lock_key(schema: str) -> str:
    return f"{schema}:projector"


async def lock_projections(conn: Connection, schema: str) -> None:
    """Wait for the consumer's projections of this schema to be between batches, and keep them
    there until the transaction ends: for work outside the consumer that rewrites what they
    write (scoring re-scoring under a new regulation version)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", projection_lock_key(schema))


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
        service: str | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        self._service = service or schema
        self.failures = FailedEvents(schema, self._service, CONSUMER, attempts)
        self._pool = pool
        self._s = quote_schema(schema)
        self.projections = tuple(projections)
        self.eager = tuple(eager)
        self._lock_key = projection_lock_key(schema)
        self._one_at_a_time = asyncio.Lock()

    async def apply(self, events: Sequence[IncomingEvent]) -> int:
        """Apply the events not applied before, in one transaction; return how many were new.
        Raises ProjectionRetry, after committing the rest, when some failed and are to be tried
        again."""
        unique: dict[UUID, IncomingEvent] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        if not unique:
            return 0
        batch = list(unique.values())
        failed: dict[UUID, str] = {}  # this time, not transient
        for projection in self.eager:
            mine = [e for e in batch if e.type in projection.event_types]
            if mine:
                await self._apply_eager(projection, mine, failed)
        # Batches are applied one at a time, in this process (the lock is taken before a
        # connection, so that waiting batches do not hold the connections the applying one
        # needs) and across replicas (the advisory lock): a projection may read what earlier
        # batches wrote (a total from its lines), and must see all of it.
        async with self._one_at_a_time:
            try:
                applied, retry = await self._apply_batch(batch, failed, isolate=bool(failed))
            except Exception as error:
                if is_transient(error):
                    raise
                # Something in the batch cannot be applied: again, one event at a time.
                applied, retry = await self._apply_batch(batch, failed, isolate=True)
        if retry:
            raise ProjectionRetry(retry, applied)
        return applied

    async def _apply_eager(
        self, projection: Projection, events: Sequence[IncomingEvent], failed: dict[UUID, str]
    ) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await projection.apply(conn, events)
            return
        except Exception as error:
            if is_transient(error):
                raise
        for event in events:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await projection.apply(conn, [event])
            except Exception as error:
                if is_transient(error):
                    raise
                failed.setdefault(event.event_id, describe(error))

    async def _apply_batch(
        self, batch: list[IncomingEvent], failed: dict[UUID, str], *, isolate: bool
    ) -> tuple[int, set[UUID]]:
        """The inbox, the projections and the cursors in one transaction; return how many
        events were new and applied (or skipped), and the ids of those to try again."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._lock_key)
            retry: set[UUID] = set()
            if isolate:
                fresh, retry = await self._apply_one_by_one(conn, batch, failed)
            else:
                rows = await conn.fetch(
                    f"INSERT INTO {self._s}.inbox (event_id, source, position, hash, prev_hash) "
                    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], "
                    "$5::text[]) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    [e.event_id for e in batch],
                    [e.source for e in batch],
                    [e.position for e in batch],
                    [e.hash for e in batch],
                    [e.prev_hash for e in batch],
                )
                fresh_ids = {row["event_id"] for row in rows}
                fresh = [e for e in batch if e.event_id in fresh_ids]
                for projection in self.projections:
                    mine = [e for e in fresh if e.type in projection.event_types]
                    if mine:
                        await projection.apply(conn, mine)
            for source in sorted({e.source for e in fresh}):
                await self._advance(conn, source)
        return len(fresh), retry

    async def _apply_one_by_one(
        self, conn: Connection, batch: Sequence[IncomingEvent], failed: dict[UUID, str]
    ) -> tuple[list[IncomingEvent], set[UUID]]:
        """Each event with its inbox row in a savepoint. One that fails is recorded; it goes
        into the inbox only once it is skipped (until then it is applied when it comes again).
        Return the events now in the inbox, and the ids of those to try again."""
        done: list[IncomingEvent] = []
        applied: list[UUID] = []
        retry: set[UUID] = set()
        for event in batch:
            error = failed.get(event.event_id)
            try:
                async with conn.transaction():
                    if not await self._inbox(conn, event):
                        continue  # applied before
                    if error is not None:
                        raise _AlreadyFailed(error)
                    for projection in self.projections:
                        if event.type in projection.event_types:
                            await projection.apply(conn, [event])
                done.append(event)
                applied.append(event.event_id)
                continue
            except _AlreadyFailed:
                pass
            except Exception as failure:
                if is_transient(failure):
                    raise
                error = describe(failure)
            assert error is not None
            status, _ = await self.failures.record(
                conn,
                Failing(
                    event.event_id,
                    event.source,
                    event.position,
                    event.envelope.stream_id,
                    event.type,
                    error,
                ),
            )
            if status == "retrying":
                retry.add(event.event_id)
            else:  # skipped: in the inbox, so that the cursor passes it and nothing repeats it
                await self._inbox(conn, event)
                done.append(event)
        await self.failures.applied(conn, applied)
        await self.failures.observe(conn)
        return done, retry

    async def _inbox(self, conn: Connection, event: IncomingEvent) -> bool:
        """Record one event in the inbox; False if it was there already."""
        inserted = await conn.fetchval(
            f"INSERT INTO {self._s}.inbox (event_id, source, position, hash, prev_hash) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            event.event_id,
            event.source,
            event.position,
            event.hash,
            event.prev_hash,
        )
        return inserted is not None

    async def _advance(self, conn: Connection, source: str) -> None:
        # The cursor and the inbox rows after it, in one round trip.
        rows = await conn.fetch(
            f"SELECT c.position AS cursor_position, c.hash AS cursor_hash, i.position, i.hash, "
            f"i.prev_hash FROM (SELECT coalesce(max(p.position), 0) AS position, max(p.hash) "
            f"AS hash FROM {self._s}.producer_cursors p WHERE p.source = $1) AS c "
            f"LEFT JOIN LATERAL (SELECT position, hash, prev_hash FROM {self._s}.inbox "
            "WHERE source = $1 AND position > c.position ORDER BY position LIMIT $2) AS i "
            "ON true ORDER BY i.position",
            source,
            CURSOR_WALK,
        )
        position: int = rows[0]["cursor_position"]
        last_hash: str = rows[0]["cursor_hash"] or GENESIS_HASH
        start = position
        for entry in rows:
            if entry["position"] is None:
                break  # nothing in the inbox after the cursor
            if entry["position"] != position + 1:
                break
            if entry["prev_hash"] is not None and entry["prev_hash"] != last_hash:
                CONSUMER_FORKS.labels(self._service, source).inc()
                log.error(
                    "two signed histories of one log: an event does not link to the one before",
                    producer=source,
                    position=entry["position"],
                )
                break
            position, last_hash = entry["position"], entry["hash"] or last_hash
        if position != start:
            await conn.execute(
                f"INSERT INTO {self._s}.producer_cursors (source, position, hash) "
                "VALUES ($1, $2, $3) ON CONFLICT (source) DO UPDATE SET "
                "position = EXCLUDED.position, hash = EXCLUDED.hash, updated_at = now()",
                source,
                position,
                last_hash,
            )

    async def applied_hashes(self, source: str, positions: Sequence[int]) -> dict[int, str]:
        """The hashes of the events of `source` already applied at these positions."""
        rows = await self._pool.fetch(
            f"SELECT position, hash FROM {self._s}.inbox WHERE source = $1 "
            "AND position = ANY($2::bigint[]) AND hash IS NOT NULL",
            source,
            list(positions),
        )
        return {r["position"]: r["hash"] for r in rows}

    async def cursors(self, producers: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Each producer's cursor and the highest position applied (a gap lies between)."""
        rows = await self._pool.fetch(
            f"SELECT p.source, coalesce((SELECT c.position FROM {self._s}.producer_cursors c "
            "WHERE c.source = p.source), 0) AS cursor, coalesce((SELECT max(i.position) FROM "
            f"{self._s}.inbox i WHERE i.source = p.source), 0) AS highest "
            "FROM unnest($1::text[]) AS p(source)",
            list(producers),
        )
        return {r["source"]: (int(r["cursor"]), int(r["highest"])) for r in rows}
