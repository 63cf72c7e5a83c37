"""Read models a service folds from its own log, in position order, straight from PostgreSQL.

A producing service (roster, activities) answers its queries from tables it projects from the
events it recorded itself. The projector follows the log like the relay does (NOTIFY wake-up,
polling fallback), applies each batch in one transaction together with its checkpoint, and can
rebuild everything from position 0. Replicas may all run it: the checkpoint row is locked for
the batch, so each event is applied once.

A command handler that wants read-your-writes waits for the projector to pass the position its
append returned (`wait_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

import asyncpg

from contracts.catalogue import CATALOGUE
from contracts.envelope import Envelope
from runtime.clock import wait_at_most
from runtime.consumer.incoming import IncomingEvent
from runtime.db import Connection
from runtime.errors import is_transient
from runtime.eventstore import EventStore, RecordedEvent, notify_channel
from runtime.eventstore.schema import quote_schema
from runtime.eventstore.store import SELECT_EVENTS, row_to_event
from runtime.logs import get_logger

log = get_logger("projection")


class LocalProjection(Protocol):
    """Tables folded from the service's own events; `reset` empties them for a rebuild."""

    name: str
    event_types: frozenset[str]

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None: ...

    async def reset(self, conn: Connection) -> None: ...


def incoming(event: RecordedEvent, source: str) -> IncomingEvent:
    envelope = Envelope.model_validate_json(event.envelope_json())
    payload = CATALOGUE.parse_data(event.type, event.schema_version, event.data)
    return IncomingEvent(envelope, payload, source, event.position)


class LocalProjector:
    def __init__(
        self,
        store: EventStore,
        projections: Sequence[LocalProjection],
        *,
        name: str,
        source: str,
        batch_size: int = 1000,
        poll_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._s = quote_schema(store.schema)
        self._projections = tuple(projections)
        self._types = frozenset().union(*(p.event_types for p in projections))
        self.name = name
        self._source = source
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._advanced = asyncio.Event()
        self._following = False
        self.position = 0

    async def run(self) -> None:
        """Follow the log until cancelled; survive outages of PostgreSQL."""
        self._following = True
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a follower that dies leaves its read models behind
                log.log(
                    logging.WARNING if is_transient(error) else logging.ERROR,
                    "projector interrupted; retrying",
                    projector=self.name,
                    error=f"{type(error).__name__}: {error}",
                )
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
        conn = await self._store.pool.acquire()
        try:
            await conn.add_listener(notify_channel(self._store.schema), self._on_notify)
            while True:
                self._wake.clear()
                if await self.catch_up() >= self._batch_size:
                    continue
                await wait_at_most(self._wake, self._poll_seconds)
                if conn.is_closed():
                    raise asyncpg.InterfaceError("projector connection lost")
        finally:
            with contextlib.suppress(Exception):
                await conn.remove_listener(notify_channel(self._store.schema), self._on_notify)
            with contextlib.suppress(Exception):
                await self._store.pool.release(conn)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def catch_up(self) -> int:
        """Apply the next batch after the checkpoint; return how many events were read."""
        async with self._store.pool.acquire() as conn, conn.transaction():
            checkpoint = await self._lock_checkpoint(conn)
            read, checkpoint = await self._apply_batch(conn, checkpoint)
        await self._advance(checkpoint)
        return read

    async def _lock_checkpoint(self, conn: Connection) -> int:
        await conn.execute(
            f"INSERT INTO {self._s}.projection_checkpoints (name, position) VALUES ($1, 0) "
            "ON CONFLICT (name) DO NOTHING",
            self.name,
        )
        position: int = await conn.fetchval(
            f"SELECT position FROM {self._s}.projection_checkpoints WHERE name = $1 FOR UPDATE",
            self.name,
        )
        return position

    async def _apply_batch(self, conn: Connection, checkpoint: int) -> tuple[int, int]:
        rows = await conn.fetch(
            f"SELECT {SELECT_EVENTS} FROM {self._s}.events "
            "WHERE position > $1 ORDER BY position LIMIT $2",
            checkpoint,
            self._batch_size,
        )
        if not rows:
            return 0, checkpoint
        events = [
            incoming(row_to_event(row), self._source) for row in rows if row["type"] in self._types
        ]
        for projection in self._projections:
            mine = [e for e in events if e.type in projection.event_types]
            if mine:
                await projection.apply(conn, mine)
        checkpoint = rows[-1]["position"]
        await conn.execute(
            f"UPDATE {self._s}.projection_checkpoints SET position = $2 WHERE name = $1",
            self.name,
            checkpoint,
        )
        return len(rows), checkpoint

    async def _advance(self, position: int) -> None:
        if position > self.position:
            self.position = position
        self._advanced.set()

    async def wait_for(self, position: int | None, within: float = 5.0) -> bool:
        """Wait until the read models include `position`; False if that took too long."""
        if position is None or self.position >= position:
            return True
        if not self._following:  # nobody follows the log in this process: catch up here
            await self.catch_up_fully()
            return self.position >= position
        deadline = asyncio.get_running_loop().time() + within
        while True:
            self._advanced.clear()
            self._wake.set()
            await wait_at_most(self._advanced, 0.05)
            if self.position < position:
                await self._refresh()  # another replica may have applied it
            if self.position >= position:
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False

    async def _refresh(self) -> None:
        position = await self._store.pool.fetchval(
            f"SELECT position FROM {self._s}.projection_checkpoints WHERE name = $1", self.name
        )
        if position is not None and position > self.position:
            self.position = position

    async def catch_up_fully(self) -> int:
        """Fold everything recorded so far (at start, before answering queries)."""
        total = 0
        while (read := await self.catch_up()) > 0:
            total += read
        return total

    async def rebuild(self) -> int:
        """Empty the read models and fold the whole log again, in one transaction: queries wait
        until the new tables are complete rather than see them half built. Returns the events
        read."""
        total = 0
        async with self._store.pool.acquire() as conn, conn.transaction():
            await self._lock_checkpoint(conn)
            for projection in self._projections:
                await projection.reset(conn)
            checkpoint = 0
            while True:
                read, checkpoint = await self._apply_batch(conn, checkpoint)
                total += read
                if read == 0:
                    break
        self.position = 0
        await self._advance(checkpoint)
        return total
