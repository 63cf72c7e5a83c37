"""The relay: publishes a service's committed events to Redis Streams, in commit order: every
event to the service's log stream (`{prefix}:log:{service}`, what other services consume) and
each catalogued one to its family stream (what campus systems subscribe to).

A batch ends at a signed event (the last of a commit), so that what a consumer reads of a
batch is covered by a signature already on the stream. The watermark is checked against the
log's head: one ahead of it (someone wrote it; the log was cut) is an alarm, and the relay
republishes from what the log stream really holds.

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
from typing import Any

import asyncpg
import redis.asyncio as redis
from redis.exceptions import WatchError

from contracts.catalogue import CATALOGUE
from contracts.wire import encode_entry, log_stream_key, stream_key
from runtime.clock import Clock, utc_now, wait_at_most
from runtime.errors import is_transient
from runtime.eventstore.models import RecordedEvent
from runtime.eventstore.schema import quote_schema
from runtime.eventstore.store import EventStore, notify_channel
from runtime.logs import get_logger
from runtime.metrics import (
    EVENTS_PUBLISHED,
    RELAY_BEHIND,
    RELAY_LAG,
    RELAY_WATERMARK_AHEAD,
    RELAY_WATERMARK_REPAIRS,
)

log = get_logger("relay")

FamilyOf = Callable[[str], str | None]


def catalogue_family(event_type: str) -> str | None:
    """Route by the published catalogue; a type outside it is private to its service."""
    return CATALOGUE.family_of(event_type) if event_type in CATALOGUE else None


#: XADD each entry of a batch to the log stream (KEYS[1]) and, when it has one, to its family
#: stream (KEYS[n]); ARGV: the approximate MAXLEN, then for each entry its family's KEYS index
#: (0: none), how many field and value strings follow, and those.
PUBLISH_SCRIPT = """
local maxlen = ARGV[1]
local i = 2
while i <= #ARGV do
    local family = tonumber(ARGV[i])
    local n = tonumber(ARGV[i + 1])
    local fields = {}
    for j = 1, n do
        fields[j] = ARGV[i + 1 + j]
    end
    i = i + 2 + n
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    if family > 0 then
        redis.call('XADD', KEYS[family], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    end
end
return 1
"""


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
        self._log_stream = log_stream_key(prefix, source)
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
            # The head and the next events in one round trip; read again only after a repair.
            first: list[RecordedEvent] | None
            head, first = await self._store.head_and_next(on_redis, self._batch_size)
            streamed = await self._last_streamed() if on_redis else 0
            if on_redis > head or (streamed is not None and on_redis > streamed):
                on_redis = await self._repair_watermark(on_redis, head, streamed)
                first = None
            else:
                RELAY_WATERMARK_AHEAD.labels(self._source).set(0)
            if on_redis < self._recorded:
                log.warning(
                    "redis is behind the relay; republishing",
                    source=self._source,
                    redis_position=on_redis,
                    relayed_position=self._recorded,
                )
            events = await self._next_batch(on_redis, first)
            if not events:
                await pipe.unwatch()  # type: ignore[no-untyped-call]
                RELAY_BEHIND.labels(self._source).set(max(0, head - on_redis))
                await self._record(on_redis)
                return 0
            pipe.multi()  # type: ignore[no-untyped-call]
            # Every entry of the batch in one script call (one command to pack, one reply to
            # read, rather than two of each per event), in the same MULTI/EXEC as the watermark.
            families: dict[str, int] = {}  # family stream → its KEYS index in the script
            args: list[Any] = [self._maxlen]
            for event in events:
                fields = encode_entry(
                    event_type=event.type,
                    event_id=event.event_id,
                    branch_id=event.branch_id,
                    schema_version=event.schema_version,
                    source=self._source,
                    position=event.position,
                    envelope=event.envelope_json(),
                    signature=event.signature,
                    key_id=event.key_id,
                )
                family = self._family_of(event.type)
                index = 0
                if family is not None:
                    index = families.setdefault(stream_key(self._prefix, family), len(families) + 2)
                args += [index, 2 * len(fields)]
                for name, value in fields.items():
                    args += [name, value]
            keys = [self._log_stream, *families]
            pipe.eval(PUBLISH_SCRIPT, len(keys), *keys, *args)
            pipe.set(self._watermark, events[-1].position)
            await pipe.execute()
        published_at = self._clock()
        for event in events:
            RELAY_LAG.labels(self._source).observe(_seconds(event.recorded_at, published_at))
        EVENTS_PUBLISHED.labels(self._source).inc(len(events))
        RELAY_BEHIND.labels(self._source).set(max(0, head - events[-1].position))
        await self._record(events[-1].position)
        return len(events)

    async def _next_batch(
        self, after: int, first: list[RecordedEvent] | None = None
    ) -> list[RecordedEvent]:
        """The events after `after`, up to the last signed one among the next `batch_size`
        (further, when none of them is signed: a commit larger than a batch); `first`: the
        next `batch_size` already read."""
        events = (
            first
            if first is not None
            else await self._store.read_all(after_position=after, limit=self._batch_size)
        )
        if not events or self._store.signer is None:
            return events
        while True:
            last_signed = max(
                (i for i, e in enumerate(events) if e.signature is not None), default=None
            )
            if last_signed is not None:
                return events[: last_signed + 1]
            more = await self._store.read_all(
                after_position=events[-1].position, limit=self._batch_size
            )
            if not more:
                return events  # an unsigned tail: verification will say so
            events += more

    async def _last_streamed(self) -> int | None:
        """The position of the last of this service's entries on its log stream (None: not
        known — junk at the end of the stream is not believed either way)."""
        last: Any = await self._redis.xrevrange(self._log_stream, count=10)
        if not last:
            return 0
        for _entry_id, fields in last:
            try:
                if fields.get(b"source") == self._source.encode():
                    return int(fields[b"position"])
            except (KeyError, ValueError):
                continue
        return None

    async def _repair_watermark(self, on_redis: int, head: int, streamed: int | None) -> int:
        """The watermark claims positions the log does not have, or that never reached the log
        stream (someone wrote it): an alarm, and a restart from what the stream really holds
        (consumers ignore what they already applied)."""
        RELAY_WATERMARK_AHEAD.labels(self._source).set(on_redis - min(head, streamed or head))
        RELAY_WATERMARK_REPAIRS.labels(self._source).inc()
        restart = min(streamed if streamed is not None else head, head, self._recorded)
        log.error(
            "relay watermark claims events the log stream does not hold; republishing",
            source=self._source,
            watermark=on_redis,
            head=head,
            streamed=streamed,
            restart_after=restart,
        )
        return restart

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
