"""An event as a consumer receives it — from a stream entry or from its producer's record —
validated against the contracts, with what is needed to believe it: the hash recomputed from
its canonical bytes, and the producer's signature when it is the last event of a commit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from contracts.canonical import envelope_hash
from contracts.catalogue import CATALOGUE, Catalogue
from contracts.envelope import Envelope, EventPayload
from contracts.errors import ContractViolation, FieldError
from contracts.wire import MAX_ENTRY_BYTES, WireEntry, decode_entry


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    envelope: Envelope
    payload: EventPayload
    source: str  # the producing service
    position: int  # in the producing service's log
    signature: str | None = None
    key_id: str | None = None
    #: The hash of the envelope's canonical bytes as received (None: not computed).
    computed_hash: str | None = None

    @property
    def event_id(self) -> UUID:
        return self.envelope.event_id

    @property
    def type(self) -> str:
        return self.envelope.type

    @property
    def occurred_at(self) -> datetime:
        return self.envelope.occurred_at

    @property
    def recorded_at(self) -> datetime:
        return self.envelope.recorded_at

    @property
    def branch_id(self) -> str | None:
        return self.envelope.branch_id

    @property
    def hash(self) -> str:
        return self.envelope.hash

    @property
    def prev_hash(self) -> str:
        return self.envelope.prev_hash


def canonical_hash(raw_envelope: bytes) -> str:
    """The hash the producer computed, if the envelope is what it recorded."""
    document = orjson.loads(raw_envelope)
    if not isinstance(document, dict):
        raise ContractViolation("invalid envelope", [FieldError("envelope", "not an object")])
    document.pop("hash", None)
    return envelope_hash(document)


def parse_envelope_bytes(
    raw: bytes,
    source: str,
    position: int,
    signature: str | None = None,
    key_id: str | None = None,
    catalogue: Catalogue = CATALOGUE,
) -> IncomingEvent:
    envelope, payload = catalogue.parse_envelope(raw)
    return IncomingEvent(
        envelope, payload, source, position, signature, key_id, canonical_hash(raw)
    )


@dataclass(frozen=True, slots=True)
class ChainLink:
    """Just enough of an entry to follow the chain to a signature (a look ahead on the
    stream): its place, its hashes, its signature. Not validated further: never applied."""

    source: str
    position: int
    hash: str
    prev_hash: str
    computed_hash: str
    signature: str | None
    key_id: str | None


def chain_link(fields: Mapping[Any, Any]) -> ChainLink:
    entry = decode_entry(fields)
    document = orjson.loads(entry.envelope)
    if not isinstance(document, dict):
        raise ContractViolation("invalid envelope", [FieldError("envelope", "not an object")])
    claimed = str(document.pop("hash", ""))
    return ChainLink(
        entry.source,
        entry.position,
        claimed,
        str(document.get("prev_hash", "")),
        envelope_hash(document),
        entry.signature,
        entry.key_id,
    )


_ROUTING = (b"type", b"event_id", b"branch_id", b"schema_version", b"source", b"position")


def _fast_entry(fields: Mapping[Any, Any]) -> WireEntry | None:
    """The routing fields of an entry as Redis returns them (bytes keys and values, every
    field there and well formed), read without the general decoder's detours; None for
    anything else, which `decode_entry` then reads or refuses with its reasons."""
    try:
        event_type, event_id, branch_id, schema_version, source, position = (
            fields[name] for name in _ROUTING
        )
        envelope = fields[b"envelope"]
    except (KeyError, TypeError):
        return None
    signature = fields.get(b"signature")
    key_id = fields.get(b"key_id")
    if signature and key_id is None:
        return None
    size = 0
    for name, value in fields.items():
        if not isinstance(value, bytes) or not isinstance(name, bytes):
            return None
        size += len(name) + len(value)
    if size > MAX_ENTRY_BYTES:
        return None
    try:
        return WireEntry(
            type=event_type.decode(),
            event_id=UUID(event_id.decode()),
            branch_id=branch_id.decode() or None,
            schema_version=int(schema_version.decode()),
            source=source.decode(),
            position=int(position.decode()),
            envelope=envelope,
            signature=signature.decode() or None if signature else None,
            key_id=key_id.decode() or None if signature and key_id else None,
        )
    except (UnicodeDecodeError, ValueError):
        return None


def parse_entry(fields: Mapping[Any, Any], catalogue: Catalogue = CATALOGUE) -> IncomingEvent:
    """Decode and validate one stream entry; raise ContractViolation naming what is wrong."""
    entry = _fast_entry(fields) or decode_entry(fields)
    catalogue.spec(entry.type)  # an unknown type is refused before its envelope is read
    event = parse_envelope_bytes(
        entry.envelope, entry.source, entry.position, entry.signature, entry.key_id, catalogue
    )
    if event.type != entry.type or event.event_id != entry.event_id:
        raise ContractViolation(
            "stream entry disagrees with its envelope",
            [FieldError("type/event_id", "routing fields differ from the envelope")],
        )
    return event
