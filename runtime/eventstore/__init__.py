"""The event store: append-only, hash-chained, group-committed (see store.py)."""

from runtime.eventstore.migrations import (
    EVENT_STORE_MIGRATIONS,
    Migration,
    load_migrations,
    migrate,
)
from runtime.eventstore.models import (
    AppendResult,
    ConcurrencyConflict,
    EventMetadata,
    EventStoreError,
    IdempotencyKey,
    IdempotencyKeyReused,
    LogTampered,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    UniqueClaim,
    UniqueClaimTaken,
)
from runtime.eventstore.store import EventStore, notify_channel
from runtime.eventstore.verify import ChainReport, verify_chain

__all__ = [
    "EVENT_STORE_MIGRATIONS",
    "AppendResult",
    "ChainReport",
    "ConcurrencyConflict",
    "EventMetadata",
    "EventStore",
    "EventStoreError",
    "IdempotencyKey",
    "IdempotencyKeyReused",
    "LogTampered",
    "Migration",
    "NewEvent",
    "RecordedEvent",
    "StreamAppend",
    "UniqueClaim",
    "UniqueClaimTaken",
    "load_migrations",
    "migrate",
    "notify_channel",
    "verify_chain",
]
