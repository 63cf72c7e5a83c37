"""The service layer's one way to run a command against event-sourced streams.

    load the streams the command reads  →  decide (pure, in the domain)  →  append

Every stream that was read is guarded with the version it was read at, so a decision that
looked at a member while deciding about a pairing is refused if that member changed meanwhile;
without an explicit `If-Match` such a conflict is retried from a fresh read. With an idempotency
key, a command seen before returns its first result without deciding again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID, uuid4

from contracts.catalogue import CATALOGUE
from contracts.envelope import EventPayload
from runtime.clock import utc_now
from runtime.eventstore import (
    AppendResult,
    ConcurrencyConflict,
    EventMetadata,
    EventStore,
    IdempotencyKey,
    IdempotencyKeyReused,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    UniqueClaim,
)

RETRIES = 5


@dataclass(frozen=True)
class CommandContext:
    """Who runs the command, under which key, and what version they saw (If-Match)."""

    actor_id: str
    actor_role: str
    idempotency: IdempotencyKey | None = None
    expected_version: int | None = None
    correlation_id: UUID = field(default_factory=uuid4)
    causation_id: UUID | None = None


@dataclass(frozen=True)
class LoadedStream:
    stream_id: str
    version: int
    events: list[EventPayload]
    recorded: list[RecordedEvent]

    @property
    def exists(self) -> bool:
        return self.version > 0


@dataclass(frozen=True)
class Change:
    """One new event: which stream it goes to and when it happened in the world."""

    stream_id: str
    payload: EventPayload
    occurred_at: datetime
    branch_id: str | None
    event_id: UUID | None = None  # chosen in advance when a later event must cite it


@dataclass(frozen=True)
class Decision:
    changes: Sequence[Change]
    claims: Mapping[str, Sequence[UniqueClaim]] = field(default_factory=dict)


Decide = Callable[[Mapping[str, LoadedStream]], Decision]
#: Reads, from what the streams hold, what else a decision needs (the directory, say).
Prepare = Callable[[Mapping[str, LoadedStream]], Awaitable[None]]


def typed(event: RecordedEvent) -> EventPayload:
    return CATALOGUE.parse_data(event.type, event.schema_version, event.data)


def _loaded(stream_id: str, recorded: list[RecordedEvent]) -> LoadedStream:
    return LoadedStream(stream_id, len(recorded), [typed(e) for e in recorded], recorded)


async def load(store: EventStore, stream_id: str) -> LoadedStream:
    return _loaded(stream_id, await store.read_stream(stream_id))


async def load_many(store: EventStore, stream_ids: Sequence[str]) -> dict[str, LoadedStream]:
    """Several streams in one round trip."""
    if len(stream_ids) == 1:
        return {stream_ids[0]: await load(store, stream_ids[0])}
    streams = await store.read_streams(stream_ids)
    return {stream_id: _loaded(stream_id, recorded) for stream_id, recorded in streams.items()}


async def execute(
    store: EventStore,
    context: CommandContext,
    stream_ids: Sequence[str],
    decide: Decide,
    *,
    primary: str | None = None,
    record_no_op: bool = True,
    prepare: Prepare | None = None,
    cache: StreamCache | None = None,
) -> AppendResult:
    """Run a command reading `stream_ids`; `primary` is the stream `If-Match` refers to.
    `record_no_op=False` appends nothing (not even the idempotency key) when the decision
    changes nothing: for commands derived from consumed events, whose inbox already stops a
    redelivery, a commit per no-op is pure cost. `prepare` reads what else the decision needs
    from the streams as they were read (again after each conflict), before `decide`. With a
    `cache`, only what the streams gained since it last saw them is read and parsed."""
    metadata = EventMetadata(
        context.actor_id, context.actor_role, context.correlation_id, context.causation_id
    )
    target = primary or (stream_ids[0] if stream_ids else None)
    ids = list(dict.fromkeys(stream_ids))
    # The first read takes the idempotency key's earlier result with the streams (one round
    # trip); a retry after a conflict reads the streams again.
    first: dict[str, LoadedStream] | None = None
    if context.idempotency is not None or ids:
        known = {stream_id: cache.get(stream_id) for stream_id in ids} if cache else {}
        streams, earlier = await store.read_for_command(
            ids,
            context.idempotency.key if context.idempotency is not None else None,
            [stream.version if (stream := known.get(s)) else 0 for s in ids],
        )
        if earlier is not None and context.idempotency is not None:
            fingerprint, result = earlier
            if fingerprint != context.idempotency.fingerprint:
                raise IdempotencyKeyReused(context.idempotency.key)
            return result
        first = {s: _grown(known.get(s), s, streams[s], cache) for s in ids}
    for attempt in range(RETRIES):
        loaded = first if first is not None else await read_with_cache(store, ids, cache)
        first = None
        if context.expected_version is not None and target is not None:
            actual = loaded[target].version if target in loaded else 0
            if actual != context.expected_version:
                raise ConcurrencyConflict(target, context.expected_version, actual)
        if prepare is not None:
            await prepare(loaded)
        decision = decide(loaded)
        if not record_no_op and not decision.changes and not decision.claims:
            versions = {stream_id: stream.version for stream_id, stream in loaded.items()}
            return AppendResult(versions, [], None, None, utc_now())
        appends = _appends(decision, loaded)
        try:
            return await store.append(*appends, metadata=metadata, idempotency=context.idempotency)
        except ConcurrencyConflict:
            if context.expected_version is not None or attempt == RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _appends(decision: Decision, loaded: Mapping[str, LoadedStream]) -> list[StreamAppend]:
    by_stream: dict[str, list[NewEvent]] = {}
    for change in decision.changes:
        by_stream.setdefault(change.stream_id, []).append(
            NewEvent.from_payload(
                change.payload,
                occurred_at=change.occurred_at,
                branch_id=change.branch_id,
                event_id=change.event_id,
            )
        )
    streams = list(dict.fromkeys([*loaded, *by_stream, *decision.claims]))
    return [
        StreamAppend(
            stream_id,
            by_stream.get(stream_id, ()),
            expected_version=loaded[stream_id].version if stream_id in loaded else 0,
            claims=decision.claims.get(stream_id, ()),
        )
        for stream_id in streams
    ]


@dataclass(frozen=True)
class BatchCommand:
    """One command of a batch (`execute_batch`): as the arguments of `execute`."""

    context: CommandContext
    stream_ids: Sequence[str]
    decide: Decide
    record_no_op: bool = True


class StreamCache:
    """The streams read lately, as far as they were read: a stream only ever grows (its
    events are immutable, and chained), so what was read of it stays true, and the next read
    asks the log only for what came after (`EventStore.read_streams_after`,
    `read_for_command`), whoever appended it. For streams that grow with every cause (a
    member's lapse deadline moves with every sheet; an activity's attendance, sheet after
    sheet), reading and parsing all of it for each decision is what a command would spend its
    time on. The least recently used streams are forgotten past `max_events` events in all."""

    def __init__(self, max_events: int = 50_000) -> None:
        self._max_events = max_events
        self._events = 0
        self._streams: OrderedDict[str, LoadedStream] = OrderedDict()

    def get(self, stream_id: str) -> LoadedStream | None:
        found = self._streams.get(stream_id)
        if found is not None:
            self._streams.move_to_end(stream_id)
        return found

    def put(self, stream: LoadedStream) -> None:
        before = self._streams.pop(stream.stream_id, None)
        if before is not None:
            self._events -= before.version
        if stream.version > self._max_events:
            return  # a stream larger than the whole cache is read each time
        self._streams[stream.stream_id] = stream
        self._events += stream.version
        while self._events > self._max_events:
            _, dropped = self._streams.popitem(last=False)
            self._events -= dropped.version


def _grown(
    before: LoadedStream | None,
    stream_id: str,
    recorded: list[RecordedEvent],
    cache: StreamCache | None,
) -> LoadedStream:
    """A stream as it is now: what was known of it and the events read after that."""
    if before is None:
        stream = _loaded(stream_id, recorded)
    elif not recorded:
        stream = before
    else:
        fresh = _loaded(stream_id, recorded)
        stream = LoadedStream(
            stream_id,
            before.version + fresh.version,
            [*before.events, *fresh.events],
            [*before.recorded, *fresh.recorded],
        )
    if cache is not None:
        cache.put(stream)
    return stream


async def read_with_cache(
    store: EventStore, stream_ids: Sequence[str], cache: StreamCache | None
) -> dict[str, LoadedStream]:
    """The streams as they are now, reading only what `cache` does not hold yet."""
    if cache is None:
        streams = await store.read_streams(stream_ids) if stream_ids else {}
        return {stream_id: _loaded(stream_id, recorded) for stream_id, recorded in streams.items()}
    known = {stream_id: cache.get(stream_id) for stream_id in stream_ids}
    after = {stream_id: stream.version if stream else 0 for stream_id, stream in known.items()}
    newer = await store.read_streams_after(after) if after else {}
    return {s: _grown(known[s], s, newer.get(s, []), cache) for s in stream_ids}


async def execute_batch(
    store: EventStore, commands: Sequence[BatchCommand], cache: StreamCache | None = None
) -> list[AppendResult]:
    """Run many commands together, each deciding as `execute` would have had they run one
    after the other in this order, with a round trip or two for all of them: the idempotency
    keys and the streams are read at once, the decisions made together, and the appends handed
    to the store at once (its group commit writes them in one transaction).

    Waves keep the order where it matters: a command decides in a later wave than every earlier
    command that reads one of its streams or uses its idempotency key (so a key repeated in the
    batch replays the first command's result), and never in an earlier wave than the command
    before it (so a refusal stops the batch where one at a time would have stopped: the
    commands before it are written, none after it runs, and it is raised).

    For commands derived from consumed events (no `If-Match`). A command whose append meets a
    conflict (another writer of its stream meanwhile) runs again alone, through `execute`. An
    append that fails otherwise (PostgreSQL down) is raised once its wave is over: what the
    wave wrote stays written, and a retry of the batch replays it by its keys."""
    results: list[AppendResult | None] = [None] * len(commands)
    wave_of: list[int] = []
    last_wave: dict[str, int] = {}
    for command in commands:
        touches = _touches(command)
        after = max((last_wave.get(t, -1) for t in touches), default=-1)
        wave = max(after + 1, wave_of[-1] if wave_of else 0)
        wave_of.append(wave)
        for touched in touches:
            last_wave[touched] = wave
    for wave in range(max(wave_of, default=-1) + 1):
        members = [i for i, w in enumerate(wave_of) if w == wave]
        await _run_wave(store, [(i, commands[i]) for i in members], results, cache)
    return [result for result in results if result is not None]


def _touches(command: BatchCommand) -> list[str]:
    """What orders a command against the others of a batch: its streams and its key."""
    key = command.context.idempotency
    # A NUL cannot be in a stream id: the key never meets a stream of the same name.
    return [*command.stream_ids, *([f"\0key:{key.key}"] if key is not None else [])]


async def _run_wave(
    store: EventStore,
    wave: Sequence[tuple[int, BatchCommand]],
    results: list[AppendResult | None],
    cache: StreamCache | None,
) -> None:
    keys = [c.context.idempotency.key for _, c in wave if c.context.idempotency is not None]
    stream_ids = list(dict.fromkeys(s for _, c in wave for s in c.stream_ids))
    known = await store.find_results(keys) if keys else {}
    loaded = await read_with_cache(store, stream_ids, cache)
    decided: list[tuple[int, BatchCommand, list[StreamAppend]]] = []
    refused: Exception | None = None
    for index, command in wave:
        try:
            key = command.context.idempotency
            if key is not None and key.key in known:
                fingerprint, result = known[key.key]
                if fingerprint != key.fingerprint:
                    raise IdempotencyKeyReused(key.key)
                results[index] = result
                continue
            mine = {s: loaded[s] for s in dict.fromkeys(command.stream_ids)}
            decision = command.decide(mine)
        except Exception as error:
            # One at a time, the commands after this one would not have run: they do not.
            refused = error
            break
        if not command.record_no_op and not decision.changes and not decision.claims:
            versions = {stream_id: stream.version for stream_id, stream in mine.items()}
            results[index] = AppendResult(versions, [], None, None, utc_now())
            continue
        decided.append((index, command, _appends(decision, mine)))
    if not decided:
        if refused is not None:
            raise refused
        return
    # Every decision of the wave made (none raised): all appends are queued at once.
    outcomes = await asyncio.gather(
        *(
            store.append(
                *appends,
                metadata=EventMetadata(
                    command.context.actor_id,
                    command.context.actor_role,
                    command.context.correlation_id,
                    command.context.causation_id,
                ),
                idempotency=command.context.idempotency,
            )
            for _, command, appends in decided
        ),
        return_exceptions=True,
    )
    failure: BaseException | None = None
    for (index, command, _), outcome in zip(decided, outcomes, strict=True):
        if isinstance(outcome, ConcurrencyConflict):
            outcome = await execute(
                store,
                command.context,
                command.stream_ids,
                command.decide,
                record_no_op=command.record_no_op,
            )
        if isinstance(outcome, BaseException):
            failure = failure or outcome
            continue
        results[index] = outcome
    if failure is not None:
        raise failure
    if refused is not None:
        raise refused
