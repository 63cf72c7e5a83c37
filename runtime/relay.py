"""The relay: publishes a service's committed events to Redis Streams, in commit order.

It wakes on NOTIFY from each commit and polls as a fallback. Each round reads the next events
after the position Redis has (a watermark key written in the same MULTI/EXEC as the XADDs), so
after a crash it resumes where Redis stopped, and after Redis lost its data (FLUSHALL, a restart
without persistence) the watermark is gone or behind and the relay republishes from there.
Duplicates are possible on the wire (consumers deduplicate on event_id); gaps are not.

One relay per service is active at a time: replicas compete for a PostgreSQL advisory lock held
on the relay's own connection; if that process dies, the lock goes with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import asyncpg
import redis.asyncio as redis
from redis.exceptions import WatchError

from contracts.catalogue import CATALOGUE
from contracts.wire import encode_entry, stream_key
from runtime.clock import Clock, utc_now, wait_at_most
from runtime.errors import is_transient
from runtime.eventstore.schema import quote_schema
from runtime.eventstore.store import EventStore, notify_channel
from runtime.logs import get_logger
from runtime.metrics import EVENTS_PUBLISHED, RELAY_BEHIND, RELAY_LAG

log = get_logger("relay")

FamilyOf = Callable[[str], str | None]


def catalogue_family(event_type: str) -> str | None:
    """Route by the published catalogue; a type outside it is private to its service."""
    return CATALOGUE.family_of(event_type) if event_type in CATALOGUE else None


def watermark_key(prefix: str, source: str) -> str:
    return f"{prefix}:relay:{source}"


class Relay:
    def __init__(
        self,
        *,
        store: EventStore,
        redis_client: redis.Redis,
        source: str,
        prefix: str,
        maxlen: int = 1_000_000,
        batch_size: int = 1000,
        poll_seconds: float = 1.0,
        standby_seconds: float = 1.0,
        family_of: FamilyOf = catalogue_family,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._redis = redis_client
        self._source = source
        self._prefix = prefix
        self._maxlen = maxlen
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._standby_seconds = standby_seconds
        self._family_of = family_of
        self._clock = clock
        self._wake = asyncio.Event()
        self._watermark = watermark_key(prefix, source)
        self._recorded = 0  # how far PostgreSQL says we got (relay_progress)
        self.is_leader = False

    async def run(self) -> None:
        """Run until cancelled: wait for leadership, then publish; recover from outages."""
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a relay that dies publishes nothing more
                log.log(
                    logging.WARNING if is_transient(error) else logging.ERROR,
                    "relay interrupted; retrying",
                    source=self._source,
                    error=f"{type(error).__name__}: {error}",
                )
                self.is_leader = False
                await asyncio.sleep(1.0)

    async def _lead(self) -> None:
        conn = await self._store.pool.acquire()
        try:
            while not await conn.fetchval(  # noqa: ASYNC110 - the lock is in PostgreSQL
                "SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self._store.schema}"
            ):
                await asyncio.sleep(self._standby_seconds)
            self.is_leader = True
            self._recorded = await conn.fetchval(
                f"SELECT position FROM {quote_schema(self._store.schema)}.relay_progress"
            )
            await conn.add_listener(notify_channel(self._store.schema), self._on_notify)
            log.info("relay leading", source=self._source, from_position=self._recorded)
            try:
                while True:
                    self._wake.clear()
                    published = await self.publish_once()
                    if published >= self._batch_size:
                        continue  # more waiting: no sleep
                    await wait_at_most(self._wake, self._poll_seconds)
                    if conn.is_closed():
                        raise asyncpg.InterfaceError("relay connection lost")
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(notify_channel(self._store.schema), self._on_notify)
        finally:
            self.is_leader = False
            # The session lock is released with the connection; terminate rather than reuse it.
            conn.terminate()
            with contextlib.suppress(Exception):
                await self._store.pool.release(conn)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def publish_once(self) -> int:
        """Publish the next batch after Redis's watermark; return how many were published."""
        while True:
            try:
                return await self._publish_batch()
            except WatchError:
                # Redis changed under us (a flush, another relay): read the watermark again.
                continue

    async def _publish_batch(self) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            # WATCH makes the EXEC fail if the watermark vanished meanwhile (FLUSHALL), so a
            # batch is never appended after a hole.
            await pipe.watch(self._watermark)
            raw = await pipe.get(self._watermark)
            on_redis = int(raw) if raw is not None else 0
            if on_redis < self._recorded:
                log.warning(
                    "redis is behind the relay; republishing",
                    source=self._source,
                    redis_position=on_redis,
                    relayed_position=self._recorded,
                )
            events = await self._store.read_all(after_position=on_redis, limit=self._batch_size)
            head, _ = await self._store.head()
            if not events:
                await pipe.unwatch()  # type: ignore[no-untyped-call]
                RELAY_BEHIND.labels(self._source).set(max(0, head - on_redis))
                await self._record(on_redis)
                return 0
            pipe.multi()  # type: ignore[no-untyped-call]
            for event in events:
                family = self._family_of(event.type)
                if family is None:
                    continue
                pipe.xadd(
                    stream_key(self._prefix, family),
                    encode_entry(  # type: ignore[arg-type]
                        event_type=event.type,
                        event_id=event.event_id,
                        branch_id=event.branch_id,
                        schema_version=event.schema_version,
                        source=self._source,
                        position=event.position,
                        envelope=event.envelope_json(),
                    ),
                    maxlen=self._maxlen,
                    approximate=True,
                )
            pipe.set(self._watermark, events[-1].position)
            await pipe.execute()
        published_at = self._clock()
        for event in events:
            RELAY_LAG.labels(self._source).observe(_seconds(event.recorded_at, published_at))
        EVENTS_PUBLISHED.labels(self._source).inc(len(events))
        RELAY_BEHIND.labels(self._source).set(max(0, head - events[-1].position))
        await self._record(events[-1].position)
        return len(events)

    async def _record(self, position: int) -> None:
        if position != self._recorded:
            await self._store.pool.execute(
                f"UPDATE {quote_schema(self._store.schema)}.relay_progress "
                "SET position = $1, updated_at = now()",
                position,
            )
            self._recorded = position


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
