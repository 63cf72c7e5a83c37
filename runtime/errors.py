"""Which failures are worth retrying as they are (a dependency is down) and which are not."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.exceptions

from runtime.eventstore.models import LogTampered

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # includes a connection that was closed under us
    # A connection whose server went away mid-operation can come back from the pool in a
    # state asyncpg cannot use (MagicStack/asyncpg#1069); another connection will do.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, crash shutdown
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
)


class OperatorNeeded(Exception):
    """A failure no event is to blame for and no retry alone mends (a key that does not fit
    the records): what waits for it is kept and retried, never skipped or dead-lettered."""


def is_transient(error: BaseException) -> bool:
    """True when retrying the same work later may succeed: a dependency is down, or the
    service's own log needs an operator (its head is not signed by it) — what waits for that is
    kept, never dead-lettered."""
    return isinstance(error, (*TRANSIENT_ERRORS, LogTampered, OperatorNeeded))
