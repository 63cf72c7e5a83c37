"""The services' pool (runtime.db.create_pool) skips asyncpg's reset query on release, except
for a connection that may hold session state: what one borrower leaves, the next never sees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from runtime.db import create_pool, mark_session_state


@pytest.fixture
async def one_connection(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    # One connection, so that every borrower gets the one the last borrower returned.
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def test_an_open_transaction_is_rolled_back_on_release(
    one_connection: asyncpg.Pool,
) -> None:
    pool = one_connection
    await pool.execute("CREATE TABLE kept (n int)")
    conn = await pool.acquire()
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("INSERT INTO kept VALUES (1)")
    await pool.release(conn)  # never committed
    async with pool.acquire() as again:
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT count(*) FROM kept") == 0


@pytest.mark.filterwarnings("ignore:.*active notification listener")  # left there on purpose
async def test_a_listener_and_a_marked_session_lock_are_cleared(
    one_connection: asyncpg.Pool, database_url: str
) -> None:
    pool = one_connection
    async with pool.acquire() as conn:
        await conn.add_listener("wake", lambda *_: None)
        pid = await conn.fetchval("SELECT pg_backend_pid()")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_backend_pid()") == pid  # the same connection
        listening = await conn.fetchval("SELECT count(*) FROM pg_listening_channels()")
        assert listening == 0
        await conn.execute("SELECT pg_advisory_lock(42)")
        await conn.execute("SET application_name = 'left-behind'")
        mark_session_state(conn)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") != "left-behind"
    other = await asyncpg.connect(database_url)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock(42)")  # released
    finally:
        await other.close()


async def test_an_unmarked_connection_is_returned_without_the_reset_round_trip(
    one_connection: asyncpg.Pool,
) -> None:
    """What the services gain: no `RESET ALL` and the rest after every command. (A `SET` that
    nobody marked would outlive its borrower: the services never issue one on a pooled
    connection, and this shows why they must not.)"""
    pool = one_connection
    async with pool.acquire() as conn:
        await conn.execute("SET application_name = 'unmarked'")
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW application_name") == "unmarked"


async def test_many_borrowers_at_once_each_see_a_clean_connection(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        await pool.execute("CREATE TABLE seen (n int)")

        async def borrow(n: int) -> None:
            async with pool.acquire() as conn:
                assert not conn.is_in_transaction()
                if n % 3 == 0:  # leave a transaction open now and then
                    transaction = conn.transaction()
                    await transaction.start()
                    await conn.execute("INSERT INTO seen VALUES ($1)", n)
                else:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO seen VALUES ($1)", n)

        await asyncio.gather(*(borrow(n) for n in range(60)))
        committed = await pool.fetchval("SELECT count(*) FROM seen")
        assert committed == 40  # the 20 with n % 3 == 0 were rolled back
    finally:
        await pool.close()
