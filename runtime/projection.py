"""Read models a service folds from its own log, in position order, straight from PostgreSQL.

A producing service (roster, activities) answers its queries from tables it projects from the
events it recorded itself. The projector follows the log like the relay does (NOTIFY wake-up,
polling fallback), applies each batch in one transaction together with its checkpoint, and can
rebuild everything from position 0. Replicas may all run it: the checkpoint row is locked for
the batch, so each event is applied once.

A command handler that wants read-your-writes waits for the projector to pass the position its
append returned (`wait_for`).

An event the read models cannot be folded with (a bug, or an old event outside what the code
now expects) does not stop them: a batch that fails is applied again one event at a time, each
in a savepoint; the event that fails is recorded in `failed_events`, tried again a few times
and then skipped, and the events after it are applied (runtime.failures). A transient failure
(PostgreSQL gone, the log needing an operator) never skips anything: the batch waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol
from uuid import UUID

import asyncpg
import orjson

from contracts.catalogue import CATALOGUE
from contracts.envelope import Envelope
from runtime.clock import wait_at_most
from runtime.consumer.incoming import IncomingEvent
from runtime.db import Connection
from runtime.errors import is_transient
from runtime.eventstore import EventStore, RecordedEvent, notify_channel
from runtime.eventstore.schema import quote_schema
from runtime.eventstore.store import SELECT_EVENTS, row_to_event
from runtime.failures import DEFAULT_ATTEMPTS, FailedEvents, Failing, describe
from runtime.logs import get_logger

log = get_logger("projection")


class LocalProjection(Protocol):
    """Tables folded from the service's own events; `reset` empties them for a rebuild."""

    name: str
    event_types: frozenset[str]

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None: ...

    async def reset(self, conn: Connection) -> None: ...


def incoming(event: RecordedEvent, source: str) -> IncomingEvent:
    """The event as the read models receive it: its envelope (contracts.Envelope) validated from
    the recorded fields directly, with the values parsing its published JSON (`envelope_json`)
    would give (UUIDs as `uuid.UUID`, instants in UTC, `data` a copy with its keys sorted), at
    a fraction of the cost of writing that JSON and reading it back."""
    envelope = Envelope.model_validate(
        {
            "event_id": _uuid(event.event_id),
            "type": event.type,
            "schema_version": event.schema_version,
            "stream_id": event.stream_id,
            "stream_version": event.stream_version,
            "branch_id": event.branch_id,
            "occurred_at": _instant(event.occurred_at),
            "recorded_at": _instant(event.recorded_at),
            "actor": {"id": event.actor_id, "role": event.actor_role},
            "correlation_id": _uuid(event.correlation_id),
            "causation_id": _uuid(event.causation_id) if event.causation_id else None,
            "data": orjson.loads(orjson.dumps(event.data, option=orjson.OPT_SORT_KEYS)),
            "hash": event.hash,
            "prev_hash": event.prev_hash,
        }
    )
    payload = CATALOGUE.parse_data(event.type, event.schema_version, event.data)
    return IncomingEvent(envelope, payload, source, event.position)


def _uuid(value: UUID) -> UUID:
    """A plain `uuid.UUID` (asyncpg returns its own subclass), as parsed from the JSON."""
    return value if type(value) is UUID else UUID(int=value.int)


def _instant(moment: datetime) -> datetime:
    """The instant in UTC; a naive one is refused as `format_instant` refuses it."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry an offset")
    return moment.astimezone(UTC)


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
        attempts: int = DEFAULT_ATTEMPTS,
        retry_seconds: float = 1.0,
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
        self._refreshing: asyncio.Future[None] | None = None
        self._following = False
        self.position = 0
        self.failures = FailedEvents(store.schema, source, name, attempts)
        self._retry_seconds = retry_seconds
        #: position of an event that failed → when it may be tried again (event loop time)
        self._not_before: dict[int, float] = {}
        #: events skipped during a rebuild (None: not rebuilding)
        self._skipped: set[UUID] | None = None
        #: positions of failed events applied in the transaction under way
        self._recovering: list[int] = []

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
        try:
            self._recovering = []
            async with self._store.pool.acquire() as conn, conn.transaction():
                checkpoint = await self._lock_checkpoint(conn)
                read, checkpoint = await self._apply_batch(conn, checkpoint)
        except Exception as error:
            if is_transient(error):
                raise
            # Something in the batch cannot be applied: again, one event at a time.
            self._recovering = []
            async with self._store.pool.acquire() as conn, conn.transaction():
                checkpoint = await self._lock_checkpoint(conn)
                read, checkpoint = await self._apply_batch(conn, checkpoint, isolate=True)
        for position in self._recovering:  # committed: no longer waiting to be tried again
            self._not_before.pop(position, None)
        await self._advance(checkpoint)
        return read

    async def _lock_checkpoint(self, conn: Connection) -> int:
        """The checkpoint, its row locked until the transaction ends (made at 0 if missing).

        One statement: an insert whose conflict updates the row to itself takes the same row
        lock `SELECT … FOR UPDATE` would, waits for a replica holding it, and returns the
        position committed by then (under READ COMMITTED the update sees the latest version)."""
        position: int = await conn.fetchval(
            f"INSERT INTO {self._s}.projection_checkpoints AS c (name, position) VALUES ($1, 0) "
            "ON CONFLICT (name) DO UPDATE SET position = c.position RETURNING c.position",
            self.name,
        )
        return position

    async def _apply_batch(
        self,
        conn: Connection,
        checkpoint: int,
        *,
        isolate: bool = False,
        patient: bool = True,
    ) -> tuple[int, int]:
        """Apply the events after `checkpoint`; return how many were passed and the new
        checkpoint. The batch at once, failing as a whole (the caller's transaction is then
        unusable: try again with `isolate`); or, with `isolate`, one event at a time. `patient`:
        an event that fails is tried again in a later batch (live); otherwise at once, until it
        is skipped (a rebuild, which applies each batch in a savepoint)."""
        rows = await conn.fetch(
            f"SELECT {SELECT_EVENTS} FROM {self._s}.events "
            "WHERE position > $1 ORDER BY position LIMIT $2",
            checkpoint,
            self._batch_size,
        )
        if not rows:
            return 0, checkpoint
        if patient and not self._due(rows[0]["position"]):
            return 0, checkpoint  # an event that failed, not to be tried again yet
        if isolate:
            passed, checkpoint = await self._apply_one_by_one(conn, rows, checkpoint, patient)
        elif patient:
            passed, checkpoint = await self._apply_all(conn, rows)
        else:
            try:
                async with conn.transaction():  # a savepoint: a failure undoes the batch only
                    passed, checkpoint = await self._apply_all(conn, rows)
            except Exception as error:
                if is_transient(error):
                    raise
                passed, checkpoint = await self._apply_one_by_one(conn, rows, checkpoint, patient)
        await conn.execute(
            f"UPDATE {self._s}.projection_checkpoints SET position = $2 WHERE name = $1",
            self.name,
            checkpoint,
        )
        return passed, checkpoint

    async def _apply_all(self, conn: Connection, rows: Sequence[asyncpg.Record]) -> tuple[int, int]:
        events = [
            incoming(row_to_event(row), self._source) for row in rows if row["type"] in self._types
        ]
        for projection in self._projections:
            mine = [e for e in events if e.type in projection.event_types]
            if mine:
                await projection.apply(conn, mine)
        if self._not_before:
            await self._recovered(conn, [e for e in events if e.position in self._not_before])
        return len(rows), rows[-1]["position"]

    async def _apply_one_by_one(
        self, conn: Connection, rows: Sequence[asyncpg.Record], checkpoint: int, patient: bool
    ) -> tuple[int, int]:
        """Each event in its own savepoint, so that only the one that fails is left out."""
        passed = 0
        for row in rows:
            if row["type"] in self._types and not await self._apply_one(conn, row, patient):
                break  # to be tried again: the checkpoint stays just before it
            checkpoint = row["position"]
            passed += 1
        return passed, checkpoint

    async def _apply_one(self, conn: Connection, row: asyncpg.Record, patient: bool) -> bool:
        """Apply one event; False when it failed and is to be tried again later."""
        tries = 1 if patient else self.failures.attempts
        failure = ""
        for _ in range(tries):
            try:
                async with conn.transaction():
                    event = incoming(row_to_event(row), self._source)
                    for projection in self._projections:
                        if event.type in projection.event_types:
                            await projection.apply(conn, [event])
            except Exception as error:
                if is_transient(error):
                    raise
                failure = describe(error)
                continue
            await self._recovered(conn, [event])
            return True
        status, failed = await self.failures.record(
            conn,
            Failing(
                row["event_id"],
                self._source,
                row["position"],
                row["stream_id"],
                row["type"],
                failure,
            ),
            attempts=tries,
        )
        await self.failures.observe(conn)
        if status == "retrying":
            delay = self._retry_seconds * failed
            self._not_before[row["position"]] = asyncio.get_running_loop().time() + delay
            return False
        self._not_before.pop(row["position"], None)
        if self._skipped is not None:
            self._skipped.add(row["event_id"])
        return True

    async def _recovered(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        """Events that failed before and were applied now (once this transaction commits)."""
        self._recovering += [event.position for event in events]
        if events:
            await self.failures.applied(conn, [e.event_id for e in events])

    def _due(self, position: int) -> bool:
        not_before = self._not_before.get(position)
        return not_before is None or asyncio.get_running_loop().time() >= not_before

    async def _advance(self, position: int) -> None:
        if position > self.position:
            self.position = position
        # Wake every waiter of this advance; later waiters wait for the next one.
        advanced, self._advanced = self._advanced, asyncio.Event()
        advanced.set()

    async def wait_for(self, position: int | None, within: float = 5.0) -> bool:
        """Wait until the read models include `position`; False if that took too long.

        Each advance of the projector is compared with the position it now knows (its
        checkpoint, read under lock, includes what other replicas applied): no query per
        waiter. Only when the projector has not advanced for a while is the checkpoint read,
        once for all the waiters then (another replica may have applied it meanwhile)."""
        if position is None or self.position >= position:
            return True
        if not self._following:  # nobody follows the log in this process: catch up here
            await self.catch_up_fully()
            return self.position >= position
        deadline = asyncio.get_running_loop().time() + within
        stalled = True  # at first, and after a wait in which the projector did not advance
        while True:
            advanced = self._advanced
            if stalled:
                self._wake.set()
            stalled = not await wait_at_most(advanced, 0.05)
            if stalled and self.position < position:
                await self._refresh()  # another replica may have applied it
            if self.position >= position:
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False

    async def _refresh(self) -> None:
        """Read the committed checkpoint: one query at a time, shared by all who ask for it
        while it is under way."""
        if self._refreshing is None:
            task = asyncio.ensure_future(self._read_checkpoint())
            task.add_done_callback(self._refreshed)
            self._refreshing = task
        await asyncio.shield(self._refreshing)

    def _refreshed(self, task: asyncio.Future[None]) -> None:
        self._refreshing = None
        if not task.cancelled():
            task.exception()  # retrieved here too, for when every waiter was cancelled

    async def _read_checkpoint(self) -> None:
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
        self._skipped = set()
        try:
            async with self._store.pool.acquire() as conn, conn.transaction():
                await self._lock_checkpoint(conn)
                for projection in self._projections:
                    await projection.reset(conn)
                checkpoint = 0
                while True:
                    read, checkpoint = await self._apply_batch(conn, checkpoint, patient=False)
                    total += read
                    if read == 0:
                        break
                # What failed this time is what the read models went without; an event that
                # failed before and applies now (after a fix) is no longer failed.
                await self.failures.keep_only(conn, self._skipped)
                await self.failures.observe(conn)
        finally:
            self._skipped = None
        self._not_before.clear()
        self.position = 0
        await self._advance(checkpoint)
        return total
