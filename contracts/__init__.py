"""Versioned event contracts shared by every service and every outside campus system.

`contracts` imports no service and no runtime: outside systems may vendor it as it is.
"""

from contracts.catalogue import CATALOGUE, FAMILIES, Catalogue, EventSpec, Upcaster
from contracts.envelope import Actor, Envelope, EventPayload
from contracts.errors import ContractViolation, FieldError, UnknownEventType

__all__ = [
    "CATALOGUE",
    "FAMILIES",
    "Actor",
    "Catalogue",
    "ContractViolation",
    "Envelope",
    "EventPayload",
    "EventSpec",
    "FieldError",
    "UnknownEventType",
    "Upcaster",
]
