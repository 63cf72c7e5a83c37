"""PostgreSQL connections as the services use them: the type handlers receive (plain or
borrowed from a pool), and the pool every service opens (`create_pool`).

Returning a connection to an asyncpg pool normally costs a round trip: `Connection.reset`
sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;` after every use, a
tenth of a command's time in the activities service. Almost every use leaves nothing of that to
clear: the services use transactions (rolled back by asyncpg itself on release if one is still
open), never `SET`, cursors outside a transaction or session advisory locks on a pooled
connection. So the pool's reset sends that query only for a connection that may hold session
state: one that listened (`add_listener`), or that a caller marked (`mark_session_state`:
the migrations' session lock, say). Anything else is cleared as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias, cast

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Connection = asyncpg.Connection


class TrackedConnection(asyncpg.Connection):
    """A connection that remembers whether it may hold session state to clear on release."""

    __slots__ = ("_session_state",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session_state = False

    async def add_listener(self, channel: str, callback: Any) -> None:
        self._session_state = True
        await super().add_listener(channel, callback)


def mark_session_state(conn: Any) -> None:
    """Say that `conn` now holds session state (a `SET`, a session advisory lock, an open
    cursor) that must be cleared before anyone else borrows it."""
    target = getattr(conn, "_con", conn)  # a pool's proxy holds the connection
    if _tracked(target):
        target._session_state = True


async def reset_connection(conn: asyncpg.Connection) -> None:
    """The pool's reset (asyncpg has already rolled back an open transaction and dropped the
    connection's listener callbacks): the full reset query only when it may be needed."""
    tracked = cast(TrackedConnection, conn) if _tracked(conn) else None
    if tracked is None or tracked._session_state:
        query = conn.get_reset_query()
        if query:
            await conn.execute(query)
        if tracked is not None:
            tracked._session_state = False


def _tracked(conn: Any) -> bool:
    # Not isinstance: asyncpg's Connection metaclass counts every connection (and proxy) as an
    # instance of every Connection subclass.
    return issubclass(type(conn), TrackedConnection)


async def create_pool(dsn: str, **options: Any) -> asyncpg.Pool:
    """An asyncpg pool whose connections are reset on release only as far as needed."""
    pool = await asyncpg.create_pool(
        dsn, connection_class=TrackedConnection, reset=reset_connection, **options
    )
    assert pool is not None
    return pool
