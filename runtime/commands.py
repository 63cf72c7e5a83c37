"""The service layer's one way to run a command against event-sourced streams.

    load the streams the command reads  →  decide (pure, in the domain)  →  append

Every stream that was read is guarded with the version it was read at, so a decision that
looked at a member while deciding about a pairing is refused if that member changed meanwhile;
without an explicit `If-Match` such a conflict is retried from a fresh read. With an idempotency
key, a command seen before returns its first result without deciding again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


def typed(event: RecordedEvent) -> EventPayload:
    return CATALOGUE.parse_data(event.type, event.schema_version, event.data)


async def load(store: EventStore, stream_id: str) -> LoadedStream:
    recorded = await store.read_stream(stream_id)
    return LoadedStream(stream_id, len(recorded), [typed(e) for e in recorded], recorded)


async def load_many(store: EventStore, stream_ids: Sequence[str]) -> dict[str, LoadedStream]:
    """Several streams in one round trip."""
    if len(stream_ids) == 1:
        return {stream_ids[0]: await load(store, stream_ids[0])}
    streams = await store.read_streams(stream_ids)
    return {
        stream_id: LoadedStream(stream_id, len(recorded), [typed(e) for e in recorded], recorded)
        for stream_id, recorded in streams.items()
    }


async def execute(
    store: EventStore,
    context: CommandContext,
    stream_ids: Sequence[str],
    decide: Decide,
    *,
    primary: str | None = None,
    record_no_op: bool = True,
) -> AppendResult:
    """Run a command reading `stream_ids`; `primary` is the stream `If-Match` refers to.
    `record_no_op=False` appends nothing (not even the idempotency key) when the decision
    changes nothing: for commands derived from consumed events, whose inbox already stops a
    redelivery, a commit per no-op is pure cost."""
    if context.idempotency is not None:
        earlier = await store.find_result(context.idempotency.key)
        if earlier is not None:
            fingerprint, result = earlier
            if fingerprint != context.idempotency.fingerprint:
                raise IdempotencyKeyReused(context.idempotency.key)
            return result
    metadata = EventMetadata(
        context.actor_id, context.actor_role, context.correlation_id, context.causation_id
    )
    target = primary or (stream_ids[0] if stream_ids else None)
    for attempt in range(RETRIES):
        loaded = await load_many(store, list(dict.fromkeys(stream_ids)))
        if context.expected_version is not None and target is not None:
            actual = loaded[target].version if target in loaded else 0
            if actual != context.expected_version:
                raise ConcurrencyConflict(target, context.expected_version, actual)
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
