"""The event catalogue: which types exist, their family and schema version, and how an event
recorded under an older schema version is upcast to the current shape.

Additive changes (a new optional field) keep the version. A breaking change bumps the type's
`schema_version` and registers an `Upcaster` from the old version, so events recorded years ago
replay as the new shape; the stored event is never rewritten (it is hash-chained).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from contracts import events
from contracts.envelope import Envelope, EventPayload, Family
from contracts.errors import ContractViolation, FieldError, UnknownEventType, field_errors

FAMILIES: tuple[Family, ...] = (
    "member",
    "activity",
    "attendance",
    "report",
    "score",
    "deadline",
    "audit",
)

#: The service that produces each family: a consumer believes an event of a family only from
#: its producer's log. `audit` (signing keys, witnessed checkpoints) is every service's own.
FAMILY_PRODUCER: dict[str, str] = {
    "member": "roster",
    "activity": "activities",
    "attendance": "activities",
    "report": "activities",
    "score": "scoring",
    "deadline": "notify",
}
EVERY_SERVICE_FAMILY = "audit"

#: The producing services, each with its own signed log.
PRODUCERS: tuple[str, ...] = ("roster", "activities", "scoring", "notify")


def produced_by(family: str, service: str) -> bool:
    """Whether events of `family` may come from `service`'s log."""
    return family == EVERY_SERVICE_FAMILY or FAMILY_PRODUCER.get(family) == service


def families_of(service: str) -> tuple[str, ...]:
    return (*(f for f, owner in FAMILY_PRODUCER.items() if owner == service), EVERY_SERVICE_FAMILY)


Json = dict[str, Any]


@dataclass(frozen=True)
class Upcaster:
    """Turns the `data` of `event_type` at `from_version` into the shape of `from_version + 1`."""

    event_type: str
    from_version: int
    transform: Callable[[Json], Json]


@dataclass(frozen=True)
class EventSpec:
    event_type: str
    family: Family
    model: type[EventPayload]
    schema_version: int


class Catalogue:
    def __init__(
        self, models: Iterable[type[EventPayload]], upcasters: Iterable[Upcaster] = ()
    ) -> None:
        self._specs: dict[str, EventSpec] = {}
        for model in models:
            if model.event_type in self._specs:
                raise ValueError(f"event type {model.event_type} registered twice")
            self._specs[model.event_type] = EventSpec(
                model.event_type, model.family, model, model.schema_version
            )
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for upcaster in upcasters:
            spec = self.spec(upcaster.event_type)
            if not 1 <= upcaster.from_version < spec.schema_version:
                raise ValueError(
                    f"upcaster {upcaster.event_type} v{upcaster.from_version}: the current "
                    f"version is {spec.schema_version}"
                )
            self._upcasters[(upcaster.event_type, upcaster.from_version)] = upcaster
        for spec in self._specs.values():
            for version in range(1, spec.schema_version):
                if (spec.event_type, version) not in self._upcasters:
                    raise ValueError(f"{spec.event_type}: no upcaster from version {version}")

    @property
    def specs(self) -> tuple[EventSpec, ...]:
        return tuple(sorted(self._specs.values(), key=lambda s: (s.family, s.event_type)))

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._specs

    def spec(self, event_type: str) -> EventSpec:
        try:
            return self._specs[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None

    def family_of(self, event_type: str) -> Family:
        return self.spec(event_type).family

    def types_of(self, *families: Family) -> frozenset[str]:
        return frozenset(s.event_type for s in self._specs.values() if s.family in families)

    def upcast(self, event_type: str, schema_version: int, data: Json) -> Json:
        """The data as the current schema version of its type expects it."""
        spec = self.spec(event_type)
        if schema_version > spec.schema_version or schema_version < 1:
            raise ContractViolation(
                f"{event_type}: schema_version {schema_version} is not known",
                [FieldError("schema_version", f"this catalogue knows 1..{spec.schema_version}")],
            )
        for version in range(schema_version, spec.schema_version):
            data = self._upcasters[(event_type, version)].transform(data)
        return data

    def parse_data(
        self, event_type: str, schema_version: int, data: bytes | str | Mapping[str, Any]
    ) -> EventPayload:
        """Validate an event's data against its type, upcasting older versions first."""
        spec = self.spec(event_type)
        try:
            if schema_version == spec.schema_version and not isinstance(data, Mapping):
                return spec.model.model_validate_json(data)
            raw = dict(data) if isinstance(data, Mapping) else orjson.loads(data)
            current = self.upcast(event_type, schema_version, raw)
            # Validate through JSON so strict mode reads dates and decimals as the wire has them.
            return spec.model.model_validate_json(orjson.dumps(current))
        except ValidationError as error:
            raise ContractViolation(
                f"{event_type} v{spec.schema_version}: invalid data", field_errors(error, "data")
            ) from None
        except orjson.JSONDecodeError as error:
            raise ContractViolation(
                f"{event_type}: data is not JSON", [FieldError("data", str(error))]
            ) from None

    def parse_envelope(self, raw: bytes | str) -> tuple[Envelope, EventPayload]:
        """Validate a whole published envelope and its typed payload."""
        try:
            envelope = Envelope.model_validate_json(raw)
        except ValidationError as error:
            raise ContractViolation("invalid envelope", field_errors(error)) from None
        payload = self.parse_data(envelope.type, envelope.schema_version, envelope.data)
        return envelope, payload


EVENT_MODELS: tuple[type[EventPayload], ...] = tuple(
    getattr(events, name) for name in events.__all__
)


def _unchanged(data: Json) -> Json:
    """Version 2 of these types seals personal fields; a version 1 event's plain values are
    still valid values of them (read as they are, never erasable)."""
    return data


#: Upcasters of the production catalogue (a worked example of a shape-changing bump lives in
#: tests/unit/test_contracts.py).
UPCASTERS: tuple[Upcaster, ...] = tuple(
    Upcaster(event_type, 1, _unchanged)
    for event_type in (
        "member.enrolled",
        "member.moved",
        "responsibility.space_assigned",
        "plaque.issued",
        "guide.registered",
    )
)

CATALOGUE = Catalogue(EVENT_MODELS, UPCASTERS)
