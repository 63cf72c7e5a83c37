"""How events travel on Redis Streams: stream keys and the layout of one entry.

One stream per event family, `{prefix}:{family}` (e.g. `party:attendance`). Each entry has flat
string fields that any Redis client can read without this package:

| field            | content                                                              |
|------------------|----------------------------------------------------------------------|
| `type`           | event type, e.g. `attendance.recorded`                               |
| `event_id`       | the event's UUID (deduplicate on it: delivery is at least once)       |
| `branch_id`      | the tenant key, empty for university-level events                    |
| `schema_version` | version of the type's schema the `data` follows                       |
| `source`         | the producing service (`roster`, `activities`, `scoring`, `notify`)  |
| `position`       | the event's position in the producing service's log (a decimal int)   |
| `envelope`       | the whole envelope as UTF-8 JSON (see `contracts/schemas/`)           |
| `signature`      | on the last event of each commit: the producer's Ed25519 signature   |
|                  | (base64) over `party-log-v1\n{source}\n{position}\n{hash}`; else empty  |
| `key_id`         | the id of the producer's key that made it; else empty                 |

Besides the family streams, every service's whole log goes, in order, to `{prefix}:log:{service}`:
what the services consume from each other, so that a consumer can check that each event chains
onto the one before it and is covered by a signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from contracts.errors import ContractViolation, FieldError

ENTRY_FIELDS = ("type", "event_id", "branch_id", "schema_version", "source", "position", "envelope")
#: Fields present on signed entries only (empty or absent on the others).
SIGNATURE_FIELDS = ("signature", "key_id")

#: Entries larger than this are refused by consumers (dead-lettered); no event comes near it.
MAX_ENTRY_BYTES = 256 * 1024


def stream_key(prefix: str, family: str) -> str:
    return f"{prefix}:{family}"


def log_stream_key(prefix: str, service: str) -> str:
    """The stream carrying a service's whole log, in order (what other services consume)."""
    return f"{prefix}:log:{service}"


def dead_letter_key(prefix: str, service: str) -> str:
    """Where a consuming service parks the entries it could not apply, with the reason."""
    return f"{prefix}:deadletter:{service}"


@dataclass(frozen=True, slots=True)
class WireEntry:
    type: str
    event_id: UUID
    branch_id: str | None
    schema_version: int
    source: str
    position: int
    envelope: bytes
    signature: str | None = None
    key_id: str | None = None


def encode_entry(
    *,
    event_type: str,
    event_id: UUID | str,
    branch_id: str | None,
    schema_version: int,
    source: str,
    position: int,
    envelope: bytes,
    signature: str | None = None,
    key_id: str | None = None,
) -> dict[str, str | bytes]:
    fields: dict[str, str | bytes] = {
        "type": event_type,
        "event_id": str(event_id),
        "branch_id": branch_id or "",
        "schema_version": str(schema_version),
        "source": source,
        "position": str(position),
        "envelope": envelope,
    }
    if signature:
        fields["signature"] = signature
        fields["key_id"] = key_id or ""
    return fields


def _text(fields: Mapping[Any, Any], name: str) -> str:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        raise ContractViolation("malformed stream entry", [FieldError(name, "missing")])
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ContractViolation(
                "malformed stream entry", [FieldError(name, "not UTF-8")]
            ) from None
    return str(value)


def decode_entry(fields: Mapping[Any, Any]) -> WireEntry:
    """Read the routing fields of an entry; the envelope itself is validated by the catalogue."""
    size = sum(len(k) + len(v) for k, v in fields.items())
    if size > MAX_ENTRY_BYTES:
        raise ContractViolation(
            "oversized stream entry",
            [FieldError("envelope", f"{size} bytes, the limit is {MAX_ENTRY_BYTES}")],
        )
    event_type = _text(fields, "type")
    try:
        event_id = UUID(_text(fields, "event_id"))
    except ValueError:
        raise ContractViolation(
            "malformed stream entry", [FieldError("event_id", "not a UUID")]
        ) from None
    try:
        schema_version = int(_text(fields, "schema_version"))
        position = int(_text(fields, "position"))
    except ValueError:
        raise ContractViolation(
            "malformed stream entry",
            [FieldError("schema_version/position", "not an integer")],
        ) from None
    branch_id = _text(fields, "branch_id") or None
    raw_envelope = fields.get(b"envelope", fields.get("envelope"))
    if raw_envelope is None:
        raise ContractViolation("malformed stream entry", [FieldError("envelope", "missing")])
    envelope = raw_envelope if isinstance(raw_envelope, bytes) else str(raw_envelope).encode()
    has_signature = fields.get(b"signature", fields.get("signature")) is not None
    signature = _text(fields, "signature") if has_signature else ""
    key_id = _text(fields, "key_id") if signature else ""
    return WireEntry(
        type=event_type,
        event_id=event_id,
        branch_id=branch_id,
        schema_version=schema_version,
        source=_text(fields, "source"),
        position=position,
        envelope=envelope,
        signature=signature or None,
        key_id=key_id or None,
    )
