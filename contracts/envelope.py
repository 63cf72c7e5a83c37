"""The envelope every event travels in, and the base class of every payload."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.types import ActorRole, Identifier, Instant

Family = Literal["member", "activity", "attendance", "report", "score", "deadline", "audit"]

HASH_PATTERN = r"^[0-9a-f]{64}$"


class StrictModel(BaseModel):
    """Unknown fields and wrong types are errors, never coerced; instances are immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Actor(StrictModel):
    """Who caused an event: a person's or system's id and the role they acted in."""

    id: Identifier
    role: ActorRole


class EventPayload(StrictModel):
    """The `data` of one event type. Subclasses name their type, family and schema version."""

    event_type: ClassVar[str]
    family: ClassVar[Family]
    schema_version: ClassVar[int] = 1


class Envelope(StrictModel):
    """One recorded event as every subscriber sees it (DESIGN §3).

    `hash` is SHA-256 over the canonical bytes of every other field (see `contracts.canonical`);
    `prev_hash` is the hash of the event recorded just before it by the same service, so the log
    of each service is a chain an auditor can verify outside the system.
    """

    event_id: UUID
    type: str = Field(min_length=3, max_length=64, pattern=r"^[a-z_]+\.[a-z_]+$")
    schema_version: int = Field(ge=1)
    stream_id: str = Field(min_length=1, max_length=200)
    stream_version: int = Field(ge=1)
    branch_id: Identifier | None
    occurred_at: Instant
    recorded_at: Instant
    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None
    data: dict[str, Any]
    hash: str = Field(pattern=HASH_PATTERN)
    prev_hash: str = Field(pattern=HASH_PATTERN)
