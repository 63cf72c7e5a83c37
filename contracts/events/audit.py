"""The `audit` family, recorded by every service in its own log: the signing keys it used and
the checkpoints of other services' logs it witnessed (DESIGN §9–10)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from contracts.envelope import HASH_PATTERN, EventPayload, Family, StrictModel
from contracts.types import Identifier, Instant


class _AuditFamily(EventPayload):
    family: ClassVar[Family] = "audit"


class SigningKeyRotated(_AuditFamily):
    """From this event on, the service signs its log with a new key (its public key is
    published beside the old ones); signatures by the previous key after it do not verify."""

    event_type: ClassVar[str] = "signing_key.rotated"

    service: Identifier
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    previous_key_id: str | None = Field(None, pattern=r"^[0-9a-f]{16}$")
    public_key: str = Field(min_length=40, max_length=64, description="raw Ed25519, base64")


class Checkpoint(StrictModel):
    """A service's signed statement of its log: its size, the hash of its last event and the
    RFC 9162 Merkle tree root over every event hash, at a time."""

    service: Identifier
    tree_size: int = Field(ge=0)
    head_hash: str = Field(pattern=HASH_PATTERN)
    root_hash: str = Field(pattern=HASH_PATTERN)
    at: Instant
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    signature: str = Field(min_length=40, max_length=200)


class CheckpointWitnessed(_AuditFamily):
    """A checkpoint of another service's log, verified (signature, and consistency with the
    one witnessed before) and kept in this service's own log: a witness outside the database
    that holds the log."""

    event_type: ClassVar[str] = "checkpoint.witnessed"

    checkpoint: Checkpoint
    consistent_with_size: int | None = Field(
        None, ge=0, description="the earlier witnessed size this one was proven to extend"
    )
