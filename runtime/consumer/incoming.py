"""An event as a consumer receives it from a stream, validated against the contracts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from contracts.catalogue import CATALOGUE, Catalogue
from contracts.envelope import Envelope, EventPayload
from contracts.errors import ContractViolation, FieldError
from contracts.wire import decode_entry


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    envelope: Envelope
    payload: EventPayload
    source: str  # the producing service
    position: int  # in the producing service's log

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


def parse_entry(fields: Mapping[Any, Any], catalogue: Catalogue = CATALOGUE) -> IncomingEvent:
    """Decode and validate one stream entry; raise ContractViolation naming what is wrong."""
    entry = decode_entry(fields)
    catalogue.spec(entry.type)  # an unknown type is refused before its envelope is read
    envelope, payload = catalogue.parse_envelope(entry.envelope)
    if envelope.type != entry.type or envelope.event_id != entry.event_id:
        raise ContractViolation(
            "stream entry disagrees with its envelope",
            [FieldError("type/event_id", "routing fields differ from the envelope")],
        )
    return IncomingEvent(envelope, payload, entry.source, entry.position)
