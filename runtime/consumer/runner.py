"""The consumer runtime: a service's consumer group on each family stream it reads (FastStream).

For every stream two FastStream subscribers share the group and the process's consumer name:
the reader takes new entries in batches (XREADGROUP), the reclaimer takes entries left pending
by a dead consumer (XAUTOCLAIM after `reclaim_idle_ms`). The handler never raises: each entry is
either applied (through the inbox, so a redelivery changes nothing) and acknowledged, moved to the
dead-letter stream with its reason and acknowledged, or left pending for a later retry when a
dependency is down. A consumer never stalls on one bad entry:

* an entry that does not validate (malformed, oversized, unknown type, wrong field types) is
  dead-lettered at once;
* an entry whose projection fails is retried by redelivery and dead-lettered when it fails on
  its `max_deliveries`-th delivery;
* a failure of PostgreSQL or Redis is never the entry's fault: it stays pending, nothing is
  dead-lettered.

FastStream facts this relies on (see FASTSTREAM.md): groups are created here at id 0 before the
subscribers start, never through `last_id`; the default parser chokes on bytes that are not
UTF-8, so a raw parser hands the entry over untouched; a deleted stream or group (NOGROUP) stops
a subscriber for good, so a watchdog recreates the group and restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
import structlog
from faststream import AckPolicy, Context
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, StreamSub
from redis.exceptions import ResponseError

from contracts.catalogue import CATALOGUE, Catalogue
from contracts.errors import ContractViolation
from contracts.wire import dead_letter_key, stream_key
from runtime.clock import Clock, utc_now
from runtime.consumer.incoming import IncomingEvent, parse_entry
from runtime.errors import is_transient
from runtime.logs import get_logger
from runtime.metrics import (
    CONSUMER_LAG,
    CONSUMER_PENDING,
    DEAD_LETTERS,
    DUPLICATES_SKIPPED,
    EVENTS_CONSUMED,
)

log = get_logger("consumer")

#: Applies a batch of validated events; returns how many were new (not seen before).
BatchHandler = Callable[[Sequence[IncomingEvent]], Awaitable[int]]

#: Lag and pending counts are read from Redis this often (watchdog ticks) for `/metrics`.
OBSERVE_GROUPS_EVERY_TICKS = 5

#: Consumers idle this long with nothing pending are removed from the group (dead replicas).
STALE_CONSUMER_MS = 3_600_000


@dataclass(frozen=True)
class ConsumerOptions:
    batch_size: int = 500
    block_ms: int = 100
    reclaim_idle_ms: int = 30_000
    max_deliveries: int = 5
    watchdog_seconds: float = 1.0


async def _raw_parser(message: Any) -> StreamMessage[Any]:
    # Hand the entries over as Redis returned them; validation is ours (and dead-letters).
    return StreamMessage(raw_message=message, body=b"")


async def _no_decoder(_message: Any) -> None:
    return None


class EventConsumer:
    def __init__(
        self,
        *,
        service: str,
        redis_url: str,
        redis_client: redis.Redis,
        prefix: str,
        families: Sequence[str],
        handler: BatchHandler,
        consumer_name: str,
        options: ConsumerOptions | None = None,
        catalogue: Catalogue = CATALOGUE,
        clock: Clock = utc_now,
    ) -> None:
        self.service = service
        self.group = service
        self.consumer_name = consumer_name
        self._redis = redis_client
        self._handler = handler
        self._options = options or ConsumerOptions()
        self._catalogue = catalogue
        self._clock = clock
        self._dead_letters = dead_letter_key(prefix, service)
        self.streams = [stream_key(prefix, family) for family in families]
        self.broker = RedisBroker(
            redis_url, logger=logging.getLogger(f"faststream.{service}"), log_level=logging.DEBUG
        )
        self._subscribers: list[tuple[str, Any]] = []
        self._watchdog: asyncio.Task[None] | None = None
        for stream in self.streams:
            self._subscribe(stream, reclaimer=False)
            self._subscribe(stream, reclaimer=True)

    def _subscribe(self, stream: str, *, reclaimer: bool) -> None:
        opts = self._options
        sub = StreamSub(
            stream,
            group=self.group,
            consumer=self.consumer_name,
            batch=True,
            max_records=opts.batch_size,
            polling_interval=max(opts.block_ms, 1000) if reclaimer else opts.block_ms,
            min_idle_time=opts.reclaim_idle_ms if reclaimer else None,
        )
        subscriber = self.broker.subscriber(
            stream=sub,
            ack_policy=AckPolicy.MANUAL,
            parser=_raw_parser,
            decoder=_no_decoder,
        )

        async def handle(message: StreamMessage[Any] = Context("message")) -> None:  # noqa: B008
            raw = message.raw_message
            await self.process(
                raw["channel"], list(raw["message_ids"]), list(raw["data"]), reclaimed=reclaimer
            )

        handle.__name__ = f"{'reclaim' if reclaimer else 'consume'}_{stream.replace(':', '_')}"
        subscriber(handle)
        self._subscribers.append((stream, subscriber))

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for stream in self.streams:
            await self.ensure_group(stream)
        await self.broker.start()
        self._watchdog = asyncio.create_task(self._watch(), name=f"{self.service}-watchdog")
        log.info(
            "consumer started",
            service=self.service,
            consumer=self.consumer_name,
            streams=self.streams,
        )

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self.broker.stop()

    async def ensure_group(self, stream: str) -> None:
        """Create the group at the start of the stream (a new consumer reads what is retained)."""
        try:
            await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _watch(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self._options.watchdog_seconds)
            ticks += 1
            try:
                for stream, subscriber in self._subscribers:
                    if not subscriber.running:
                        log.warning(
                            "subscriber stopped (stream or group gone); restarting", stream=stream
                        )
                        await self.ensure_group(stream)
                        await subscriber.start()
                if ticks % OBSERVE_GROUPS_EVERY_TICKS == 0:
                    await self._observe_groups()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the watchdog must outlive a Redis outage
                log.warning("consumer watchdog failed; will retry", error=repr(error))

    async def _observe_groups(self) -> None:
        for stream in self.streams:
            for group in await self._redis.xinfo_groups(stream):
                if _text(group["name"]) != self.group:
                    continue
                CONSUMER_PENDING.labels(self.service, stream).set(group.get("pending") or 0)
                CONSUMER_LAG.labels(self.service, stream).set(group.get("lag") or 0)
            for consumer in await self._redis.xinfo_consumers(stream, self.group):
                name = _text(consumer["name"])
                if (
                    name != self.consumer_name
                    and consumer["pending"] == 0
                    and consumer["idle"] > STALE_CONSUMER_MS
                ):
                    await self._redis.xgroup_delconsumer(stream, self.group, name)

    # -- processing ---------------------------------------------------------------------------

    async def process(
        self,
        stream: str,
        entry_ids: list[bytes],
        entries: list[Mapping[bytes, bytes]],
        *,
        reclaimed: bool,
    ) -> None:
        """Apply, dead-letter or leave pending each entry of one delivery. Never raises."""
        with structlog.contextvars.bound_contextvars(stream=stream, service=self.service):
            try:
                await self._process(stream, entry_ids, entries, reclaimed=reclaimed)
            except Exception as error:  # only Redis can fail here; entries stay pending
                log.warning("delivery left pending", error=repr(error), entries=len(entry_ids))

    async def _process(
        self,
        stream: str,
        entry_ids: list[bytes],
        entries: list[Mapping[bytes, bytes]],
        *,
        reclaimed: bool,
    ) -> None:
        deliveries = await self._delivery_counts(stream, entry_ids) if reclaimed else {}
        valid: list[_Entry] = []
        done: list[bytes] = []
        for entry_id, fields in zip(entry_ids, entries, strict=True):
            try:
                valid.append(_Entry(entry_id, fields, parse_entry(fields, self._catalogue)))
            except ContractViolation as violation:
                await self._dead_letter(
                    stream, entry_id, fields, str(violation), deliveries.get(entry_id, 1)
                )
                done.append(entry_id)
        if valid:
            try:
                await self._apply(stream, [entry.event for entry in valid])
                done.extend(entry.entry_id for entry in valid)
            except Exception as error:
                if is_transient(error):
                    log.warning(
                        "dependency unavailable; entries stay pending",
                        error=repr(error),
                        entries=len(valid),
                    )
                else:
                    done.extend(await self._apply_one_by_one(stream, valid, deliveries))
        if done:
            await self._redis.xack(stream, self.group, *done)

    async def _apply(self, stream: str, events: Sequence[IncomingEvent]) -> None:
        fresh = await self._handler(events)
        EVENTS_CONSUMED.labels(self.service, stream).inc(fresh)
        if fresh < len(events):
            DUPLICATES_SKIPPED.labels(self.service).inc(len(events) - fresh)

    async def _apply_one_by_one(
        self,
        stream: str,
        valid: list[_Entry],
        deliveries: dict[bytes, int],
    ) -> list[bytes]:
        """Isolate the entries that fail; return the ids that are finished with."""
        done: list[bytes] = []
        for entry in valid:
            with structlog.contextvars.bound_contextvars(
                event_id=str(entry.event.event_id),
                correlation_id=str(entry.event.envelope.correlation_id),
            ):
                try:
                    await self._apply(stream, [entry.event])
                    done.append(entry.entry_id)
                except Exception as error:
                    if is_transient(error):
                        continue
                    count = deliveries.get(entry.entry_id, 1)
                    reason = f"{type(error).__name__}: {error}"
                    if count >= self._options.max_deliveries:
                        await self._dead_letter(stream, entry.entry_id, entry.fields, reason, count)
                        done.append(entry.entry_id)
                    else:
                        log.warning(
                            "event failed; it will be redelivered", error=reason, delivery=count
                        )
        return done

    async def _delivery_counts(self, stream: str, entry_ids: list[bytes]) -> dict[bytes, int]:
        counts: dict[bytes, int] = {}
        for entry_id in entry_ids:
            pending = await self._redis.xpending_range(
                stream, self.group, min=entry_id, max=entry_id, count=1
            )
            counts[entry_id] = int(pending[0]["times_delivered"]) if pending else 1
        return counts

    async def _dead_letter(
        self,
        stream: str,
        entry_id: bytes,
        fields: Mapping[Any, Any],
        reason: str,
        deliveries: int,
    ) -> None:
        record: dict[Any, Any] = dict(fields)
        record.update(
            {
                "dead_letter.reason": reason,
                "dead_letter.stream": stream,
                "dead_letter.entry_id": entry_id,
                "dead_letter.group": self.group,
                "dead_letter.consumer": self.consumer_name,
                "dead_letter.deliveries": str(deliveries),
                "dead_letter.at": self._clock().isoformat(),
            }
        )
        await self._redis.xadd(self._dead_letters, record, maxlen=100_000, approximate=True)
        DEAD_LETTERS.labels(self.service, stream).inc()
        log.error(
            "entry dead-lettered", entry_id=_text(entry_id), reason=reason, deliveries=deliveries
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    entry_id: bytes
    fields: Mapping[bytes, bytes]
    event: IncomingEvent


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
