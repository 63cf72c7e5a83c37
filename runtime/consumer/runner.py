"""The consumer runtime: a service's consumer group on the log stream of each producer it
reads (FastStream), and what it believes of them (runtime.consumer.trust).

For every stream two FastStream subscribers share the group and the process's consumer name:
the reader takes new entries in batches (XREADGROUP), the reclaimer takes entries left pending
by a dead consumer (XAUTOCLAIM after `reclaim_idle_ms`). The handler never raises: each entry is
either applied (through the inbox, so a redelivery changes nothing) and acknowledged, moved to the
dead-letter stream with its reason and acknowledged, or left pending for a later retry when a
dependency is down. A consumer never stalls on one bad entry:

* an entry that does not validate (malformed, oversized, unknown type, wrong field types) is
  dead-lettered at once;
* an event a projection fails on is recorded by the projector (runtime.failures), its entry
  left pending and delivered again, and skipped once it has failed `PARTY_PROJECTION_ATTEMPTS`
  times: then it is acknowledged, and the cursor passes it;
* an entry whose handler fails otherwise is retried by redelivery and dead-lettered when it
  fails on its `max_deliveries`-th delivery;
* a failure of PostgreSQL or Redis is never the entry's fault: it stays pending, nothing is
  dead-lettered;
* an entry the producer did not record and sign (forged, misrouted, unsigned) is dead-lettered
  with the reason and counts nowhere; one that cannot be settled now (its producer's record is
  unreachable) stays pending;
* what Redis never delivers (trimmed, taken by another reader, never published) is found by
  comparing what was applied with what the producer has, and read from its record.

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
from contracts.wire import dead_letter_key, log_stream_key
from runtime.clock import Clock, utc_now
from runtime.consumer.incoming import ChainLink, IncomingEvent, chain_link, parse_entry
from runtime.consumer.projector import ProjectionRetry
from runtime.consumer.records import ProducerRecord, RecordUnavailable
from runtime.consumer.trust import PEEK_PAGE, Verifier
from runtime.errors import is_transient
from runtime.logs import get_logger
from runtime.metrics import (
    CONSUMER_BEHIND,
    CONSUMER_CURSOR,
    CONSUMER_FORKS,
    CONSUMER_LAG,
    CONSUMER_PENDING,
    DEAD_LETTERS,
    DUPLICATES_SKIPPED,
    ENTRIES_REFUSED,
    EVENTS_CONSUMED,
    GAPS_FILLED,
    UNVERIFIED_PENDING,
)
from runtime.signing import KeyRing

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
    #: A producer position known (on the stream, in the inbox, at the producer) and not
    #: applied for this long, with the cursor not moving, is a gap: read from the record.
    gap_grace_seconds: float = 5.0


#: Where a consumer finds what it has applied of each producer (runtime.consumer.projector).
Cursors = Callable[[Sequence[str]], Awaitable[dict[str, tuple[int, int]]]]
#: The hashes of what it has applied of a producer at some positions.
Applied = Callable[[str, Sequence[int]], Awaitable[dict[int, str]]]


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
        producers: Sequence[str],
        handler: BatchHandler,
        consumer_name: str,
        keyring: Callable[[], KeyRing],
        records: Mapping[str, ProducerRecord] | None = None,
        cursors: Cursors | None = None,
        applied: Applied | None = None,
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
        self._cursors = cursors
        self._applied = applied
        self.producers = list(producers)
        self.streams = [log_stream_key(prefix, producer) for producer in producers]
        self._producer_of = dict(zip(self.streams, self.producers, strict=True))
        self.verifiers = {
            producer: Verifier(producer, keyring, (records or {}).get(producer), catalogue)
            for producer in producers
        }
        #: producer → (cursor, since when it has not moved, when the producer was last asked)
        self._stuck: dict[str, tuple[int, float, float]] = {}
        self._held: dict[str, set[bytes]] = {stream: set() for stream in self.streams}
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
                await self.find_gaps()
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
        parsed: list[_Entry] = []
        finished: list[bytes] = []  # dead-lettered: acknowledged whatever happens next
        for entry_id, fields in zip(entry_ids, entries, strict=True):
            try:
                parsed.append(_Entry(entry_id, fields, parse_entry(fields, self._catalogue)))
            except ContractViolation as violation:
                await self._dead_letter(
                    stream, entry_id, fields, str(violation), deliveries.get(entry_id, 1)
                )
                finished.append(entry_id)
        believed = await self._believe(stream, parsed, entry_ids, finished, deliveries)
        held = self._held.get(stream, set())
        settled = [e.entry_id for e in parsed if e.entry_id not in held]
        if believed:
            try:
                await self._apply(stream, believed)
                finished.extend(settled)
            except ProjectionRetry as retry:  # the rest was applied; those stay pending
                finished.extend(
                    e.entry_id
                    for e in parsed
                    if e.entry_id not in held and e.event.event_id not in retry.event_ids
                )
            except Exception as error:
                if is_transient(error):
                    log.warning(
                        "dependency unavailable; entries stay pending",
                        error=repr(error),
                        entries=len(believed),
                    )
                else:
                    finished.extend(
                        await self._apply_one_by_one(stream, parsed, believed, held, deliveries)
                    )
        else:
            finished.extend(settled)
        finished = list(dict.fromkeys(finished))
        if finished:
            await self._redis.xack(stream, self.group, *finished)

    async def _believe(
        self,
        stream: str,
        parsed: list[_Entry],
        entry_ids: list[bytes],
        done: list[bytes],
        deliveries: dict[bytes, int],
    ) -> list[IncomingEvent]:
        """Judge the delivery; dead-letter what is refused; keep pending what is held."""
        producer = self._producer_of[stream]
        verifier = self.verifiers[producer]
        last_id = max(entry_ids, key=_entry_order) if entry_ids else None

        after = [last_id]  # where the look ahead has got to

        async def peek(_: int) -> list[ChainLink]:
            if after[0] is None:
                return []
            ahead: Any = await self._redis.xrange(stream, min=b"(" + after[0], count=PEEK_PAGE)
            if ahead:
                after[0] = ahead[-1][0]
            links = []
            for _entry_id, fields in ahead or ():
                try:
                    links.append(chain_link(fields))
                except (ContractViolation, ValueError):
                    continue
            return links

        verdict = await verifier.judge([entry.event for entry in parsed], peek)
        if self._applied is not None and verdict.believed:
            await self._refuse_forks(producer, verdict)
        by_event = {entry.event.event_id: entry for entry in parsed}
        for event, reason in verdict.refused:
            entry = by_event.get(event.event_id)
            if entry is None:
                continue
            ENTRIES_REFUSED.labels(self.service, producer, _reason_label(reason)).inc()
            await self._dead_letter(
                stream, entry.entry_id, entry.fields, reason, deliveries.get(entry.entry_id, 1)
            )
            done.append(entry.entry_id)
        held_ids = {by_event[e.event_id].entry_id for e in verdict.held if e.event_id in by_event}
        self._held[stream] = held_ids
        UNVERIFIED_PENDING.labels(self.service, producer).set(len(held_ids))
        if held_ids:
            log.warning(
                "entries not yet covered by a signature; they stay pending",
                producer=producer,
                entries=len(held_ids),
            )
        if verdict.from_record:
            GAPS_FILLED.labels(self.service, producer).inc(verdict.from_record)
        if verdict.bad_signatures:
            ENTRIES_REFUSED.labels(self.service, producer, "bad_signature").inc(
                verdict.bad_signatures
            )
        return verdict.believed

    async def _refuse_forks(self, producer: str, verdict: Any) -> None:
        """A signed event at a position where another was applied is a second history of the
        producer's log (its key was used twice): refused, counted, never applied."""
        assert self._applied is not None
        known = await self._applied(producer, [e.position for e in verdict.believed])
        keep = []
        for event in verdict.believed:
            applied_hash = known.get(event.position)
            if applied_hash is not None and applied_hash != event.hash:
                CONSUMER_FORKS.labels(self.service, producer).inc()
                verdict.refused.append(
                    (
                        event,
                        f"fork: another event of {producer} was applied at position "
                        f"{event.position}",
                    )
                )
            else:
                keep.append(event)
        verdict.believed = keep

    # -- what Redis did not deliver -------------------------------------------------------------

    async def find_gaps(self) -> None:
        """Compare what was applied of each producer with what it is known to have (on its
        stream, in the inbox, and now and then at the producer itself); read from its record
        what has been missing, with the cursor not moving, for longer than the grace period —
        at once when Redis has nothing more to deliver, later when it is still delivering (a
        backlog is not a gap)."""
        if self._cursors is None:
            return
        applied = await self._cursors(self.producers)
        now = asyncio.get_running_loop().time()
        grace = self._options.gap_grace_seconds
        for stream, producer in self._producer_of.items():
            cursor, highest = applied.get(producer, (0, 0))
            known = max(highest, await self._stream_tail(stream))
            verifier = self.verifiers[producer]
            stuck_cursor, since, asked = self._stuck.get(producer, (cursor, now, now))
            if stuck_cursor != cursor:
                stuck_cursor, since = cursor, now
            if known <= cursor and verifier.record is not None and now - asked >= 10 * grace:
                # A publish that never happened leaves nothing on the stream to compare with:
                # now and then, ask the producer itself.
                asked = now
                with contextlib.suppress(RecordUnavailable):
                    known = max(known, await verifier.record.head())
            self._stuck[producer] = (stuck_cursor, since, asked)
            CONSUMER_CURSOR.labels(self.service, producer).set(cursor)
            CONSUMER_BEHIND.labels(self.service, producer).set(max(0, known - cursor))
            if known <= cursor:
                continue
            delivering = await self._still_delivering(stream)
            if now - since < (6 * grace if delivering else grace):
                continue
            await self._fill(producer, cursor, known)
            self._stuck[producer] = (cursor, now, asked)

    async def _still_delivering(self, stream: str) -> bool:
        """Whether Redis has entries for this group not yet delivered or not yet settled."""
        for group in await self._redis.xinfo_groups(stream):
            if _text(group["name"]) == self.group:
                return bool(group.get("lag")) or bool(group.get("pending"))
        return False

    async def _stream_tail(self, stream: str) -> int:
        last: Any = await self._redis.xrevrange(stream, count=1)
        if not last:
            return 0
        try:
            return int(last[0][1][b"position"])
        except (KeyError, ValueError):
            return 0

    async def _fill(self, producer: str, cursor: int, known: int) -> None:
        verifier = self.verifiers[producer]
        if verifier.record is None:
            log.error(
                "events are missing and there is no record to read them from",
                producer=producer,
                applied_through=cursor,
                known=known,
            )
            return
        try:
            events = await verifier.read_covered(cursor, min(known, cursor + 5000))
        except RecordUnavailable as error:
            log.warning("the producer's record cannot be read now", error=str(error))
            return
        if not events:
            return
        try:
            fresh = await self._handler(events)
        except ProjectionRetry as retry:  # tried again at the next round
            fresh = retry.applied
        GAPS_FILLED.labels(self.service, producer).inc(fresh)
        log.warning(
            "a gap was filled from the producer's record",
            producer=producer,
            after=cursor,
            read=len(events),
            applied=fresh,
        )

    async def _apply(self, stream: str, events: Sequence[IncomingEvent]) -> None:
        try:
            fresh = await self._handler(events)
        except ProjectionRetry as retry:
            EVENTS_CONSUMED.labels(self.service, stream).inc(retry.applied)
            raise
        EVENTS_CONSUMED.labels(self.service, stream).inc(fresh)
        if fresh < len(events):
            DUPLICATES_SKIPPED.labels(self.service).inc(len(events) - fresh)

    async def _apply_one_by_one(
        self,
        stream: str,
        parsed: list[_Entry],
        believed: list[IncomingEvent],
        held: set[bytes],
        deliveries: dict[bytes, int],
    ) -> list[bytes]:
        """Isolate the events that fail; return the entry ids that are finished with."""
        entry_of = {e.event.event_id: e for e in parsed}
        done: list[bytes] = []
        for event in believed:
            entry = entry_of.get(event.event_id)
            with structlog.contextvars.bound_contextvars(
                event_id=str(event.event_id),
                correlation_id=str(event.envelope.correlation_id),
            ):
                try:
                    await self._apply(stream, [event])
                    if entry is not None:
                        done.append(entry.entry_id)
                except Exception as error:
                    # ProjectionRetry: the projector counts its attempts and skips it in time.
                    if is_transient(error) or entry is None or isinstance(error, ProjectionRetry):
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
        believed_ids = {e.event_id for e in believed}
        # Entries refused or duplicated in the delivery are finished with too.
        done.extend(
            e.entry_id
            for e in parsed
            if e.event.event_id not in believed_ids and e.entry_id not in held
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


def _entry_order(entry_id: bytes) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.decode().partition("-")
    return int(milliseconds), int(sequence or 0)


def _reason_label(reason: str) -> str:
    """A short, bounded label for a refusal (the full reason goes with the dead letter)."""
    for needle, label in (
        ("comes from", "wrong_source"),
        ("does not produce", "wrong_family"),
        ("does not hash", "bad_hash"),
        ("has no position", "not_in_record"),
        ("another event of", "fork"),
        ("another event", "not_in_record"),
        ("unsigned", "unsigned_in_record"),
    ):
        if needle in reason:
            return label
    return "other"
