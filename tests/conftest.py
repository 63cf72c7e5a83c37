"""Fixtures on the real PostgreSQL and Redis: a private database for the session, a fresh schema
and a fresh stream prefix for every test, all removed afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as redis

from runtime.eventstore import EVENT_STORE_MIGRATIONS, EventStore, load_migrations, migrate

ADMIN_URL = os.environ.get(
    "PARTY_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PARTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"party_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    try:
        yield _database_url(ADMIN_URL, name)
    finally:
        asyncio.run(drop())


@pytest.fixture
def schema_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def schema(pool: asyncpg.Pool, schema_name: str) -> AsyncIterator[str]:
    """A migrated event-store schema, dropped after the test."""
    async with pool.acquire() as conn:
        await migrate(conn, schema_name, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
    try:
        yield schema_name
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')


@pytest.fixture
async def store(pool: asyncpg.Pool, schema: str) -> AsyncIterator[EventStore]:
    """The log of a stand-in `activities`, signed with the session's activities key."""
    from tests.support.keys import signer

    store = EventStore(pool, schema, signer=signer("activities"), source="activities")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def stream_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_client(stream_prefix: str) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{stream_prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


HANG_REPORT_SECONDS = 90


def _report_hang(name: str) -> None:
    """Print where a test that runs far too long is stuck: every thread and asyncio task."""
    import faulthandler
    import gc
    import sys

    print(f"\n=== {name} still running after {HANG_REPORT_SECONDS}s ===", file=sys.stderr)
    faulthandler.dump_traceback(all_threads=True)
    loops = [
        o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()
    ]
    for loop in loops:
        for task in asyncio.all_tasks(loop):
            print(f"--- task {task.get_name()}", file=sys.stderr)
            task.print_stack(file=sys.stderr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    import threading

    timer = threading.Timer(HANG_REPORT_SECONDS, _report_hang, (item.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()
