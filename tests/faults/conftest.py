"""A database of its own for each fault test, dropped afterwards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from uuid import uuid4

import asyncpg
import pytest

from tests.conftest import ADMIN_URL


@pytest.fixture
def fault_database() -> Iterator[str]:
    name = f"fault_{uuid4().hex[:8]}"
    base = ADMIN_URL.rpartition("/")[0]

    async def run(statement: str) -> None:
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(
            run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        )
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}"'))
