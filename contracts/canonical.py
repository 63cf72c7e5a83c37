"""Canonical bytes and hashes of events, so anyone can verify a service's hash chain.

The canonical form of an envelope is its JSON with the `hash` field removed, keys sorted,
no insignificant whitespace, UTF-8 without escaping non-ASCII characters, and timestamps as
`YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (UTC, always six fractional digits). For the data our events
carry (ASCII keys, integers, strings, no binary floats) this is exactly RFC 8785 (JCS), so a
verifier in another language reproduces it with a JCS library.

    hash = sha256(canonical_bytes(envelope without "hash")).hexdigest()
    prev_hash = hash of the previous event of the same service (GENESIS_HASH for the first)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS_HASH = "0" * 64


def format_instant(moment: datetime) -> str:
    """The one textual form of a timestamp inside hashed and published envelopes."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must carry an offset")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def envelope_hash(envelope_without_hash: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(envelope_without_hash)).hexdigest()
