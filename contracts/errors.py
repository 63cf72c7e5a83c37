"""Errors raised when something does not honour a contract. Each names the field and reason."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldError:
    field: str
    reason: str


class ContractViolation(ValueError):
    """An event, entry or payload that does not match its published schema."""

    def __init__(self, summary: str, errors: list[FieldError] | None = None) -> None:
        self.summary = summary
        self.errors = errors or []
        details = "; ".join(f"{e.field}: {e.reason}" for e in self.errors)
        super().__init__(f"{summary}: {details}" if details else summary)


class UnknownEventType(ContractViolation):
    def __init__(self, event_type: str) -> None:
        super().__init__(
            f"unknown event type {event_type!r}",
            [FieldError("type", "not in the event catalogue")],
        )
        self.event_type = event_type


def field_errors(error: ValidationError, prefix: str = "") -> list[FieldError]:
    """Flatten pydantic's errors into `field: reason` pairs with dotted paths."""
    flattened = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        # Model-level validators put the field name first ("parent_id: …"): lift it into the path.
        if not path and message.startswith("Value error, ") and ":" in message:
            field, _, reason = message.removeprefix("Value error, ").partition(":")
            path, message = field.strip(), reason.strip()
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        field = ".".join(p for p in (prefix, path) if p) or prefix or "(root)"
        flattened.append(FieldError(field, message))
    return flattened
