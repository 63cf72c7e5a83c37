"""What goes into the event store and what comes out of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import orjson

from contracts.canonical import envelope_hash, format_instant
from contracts.envelope import EventPayload


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """Who caused the events of one command, and the conversation they belong to."""

    actor_id: str
    actor_role: str
    correlation_id: UUID = field(default_factory=uuid4)
    causation_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended. `data` is JSON-ready (strings, integers, lists, dicts)."""

    type: str
    data: Mapping[str, Any]
    occurred_at: datetime
    branch_id: str | None = None
    schema_version: int = 1
    event_id: UUID = field(default_factory=uuid4)

    @classmethod
    def from_payload(
        cls,
        payload: EventPayload,
        *,
        occurred_at: datetime,
        branch_id: str | None,
        event_id: UUID | None = None,
    ) -> NewEvent:
        return cls(
            type=payload.event_type,
            data=payload.model_dump(mode="json"),
            occurred_at=occurred_at,
            branch_id=branch_id,
            schema_version=payload.schema_version,
            event_id=event_id or uuid4(),
        )


@dataclass(frozen=True, slots=True)
class UniqueClaim:
    """A value that no other stream may claim in the same scope (e.g. a student number)."""

    scope: str
    value: str


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream. `expected_version` None accepts any version; 0 means the stream
    must not exist yet. An append with no events is a guard: it only checks the version."""

    stream_id: str
    events: Sequence[NewEvent] = ()
    expected_version: int | None = None
    claims: Sequence[UniqueClaim] = ()


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's key for one command, and a fingerprint of what the command asked."""

    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    event_id: UUID
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    branch_id: str | None
    occurred_at: datetime
    recorded_at: datetime
    actor_id: str
    actor_role: str
    correlation_id: UUID
    causation_id: UUID | None
    data: dict[str, Any]
    hash: str
    prev_hash: str
    #: The service's signature over this position and hash (the last event of each commit).
    signature: str | None = None
    key_id: str | None = None

    def canonical_document(self) -> dict[str, Any]:
        """The envelope without its hash: the bytes the hash covers (contracts.canonical)."""
        return envelope_document(
            event_id=self.event_id,
            event_type=self.type,
            schema_version=self.schema_version,
            stream_id=self.stream_id,
            stream_version=self.stream_version,
            branch_id=self.branch_id,
            occurred_at=self.occurred_at,
            recorded_at=self.recorded_at,
            actor_id=self.actor_id,
            actor_role=self.actor_role,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            data=self.data,
            prev_hash=self.prev_hash,
        )

    def envelope_json(self) -> bytes:
        """The published envelope (contracts.Envelope) as JSON."""
        document = self.canonical_document()
        document["hash"] = self.hash
        return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)

    def computed_hash(self) -> str:
        return envelope_hash(self.canonical_document())


def envelope_document(
    *,
    event_id: UUID,
    event_type: str,
    schema_version: int,
    stream_id: str,
    stream_version: int,
    branch_id: str | None,
    occurred_at: datetime,
    recorded_at: datetime,
    actor_id: str,
    actor_role: str,
    correlation_id: UUID,
    causation_id: UUID | None,
    data: Mapping[str, Any],
    prev_hash: str,
) -> dict[str, Any]:
    return {
        "event_id": str(event_id),
        "type": event_type,
        "schema_version": schema_version,
        "stream_id": stream_id,
        "stream_version": stream_version,
        "branch_id": branch_id,
        "occurred_at": format_instant(occurred_at),
        "recorded_at": format_instant(recorded_at),
        "actor": {"id": actor_id, "role": actor_role},
        "correlation_id": str(correlation_id),
        "causation_id": str(causation_id) if causation_id else None,
        "data": data,
        "prev_hash": prev_hash,
    }


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one command appended. `replayed` is true when an idempotency key matched an earlier
    command: nothing was appended and this is that command's original result."""

    stream_versions: dict[str, int]
    event_ids: list[UUID]
    first_position: int | None
    last_position: int | None
    recorded_at: datetime
    replayed: bool = False

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "stream_versions": self.stream_versions,
                "event_ids": [str(e) for e in self.event_ids],
                "first_position": self.first_position,
                "last_position": self.last_position,
                "recorded_at": format_instant(self.recorded_at),
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str | bytes, *, replayed: bool) -> AppendResult:
        raw = orjson.loads(text)
        return cls(
            stream_versions=dict(raw["stream_versions"]),
            event_ids=[UUID(e) for e in raw["event_ids"]],
            first_position=raw["first_position"],
            last_position=raw["last_position"],
            recorded_at=datetime.fromisoformat(raw["recorded_at"]),
            replayed=replayed,
        )


class EventStoreError(Exception):
    """Base of the errors the event store raises on purpose."""


class ConcurrencyConflict(EventStoreError):
    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, not the expected version {expected}: "
            "someone changed it since it was read"
        )


class IdempotencyKeyReused(EventStoreError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"idempotency key {key!r} was already used for a different command; use a new key"
        )


class LogTampered(EventStoreError):
    """The log's head was not written by the service (no valid signature of its own): the
    store refuses to extend it, so that nothing appended beside it is ever signed over."""


class UniqueClaimTaken(EventStoreError):
    def __init__(self, claim: UniqueClaim, owner: str) -> None:
        self.claim = claim
        self.owner = owner
        super().__init__(f"{claim.scope} {claim.value!r} is already taken by {owner}")
