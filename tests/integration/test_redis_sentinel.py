"""Redis Sentinel: the services find the primary through real sentinels and notice when it
moves (the production overlay's setting)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from runtime.redis_primary import (
    NoPrimary,
    parse_sentinels,
    resolve_redis_url,
    watch_primary,
    with_address,
)

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing on port {port}")


@pytest.fixture
def redis_primary(tmp_path: Path) -> Iterator[int]:
    """A private Redis to be the primary the sentinel watches."""
    port = _free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def sentinel(tmp_path: Path, redis_primary: int) -> Iterator[int]:
    port = _free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\n"
        f"sentinel monitor party 127.0.0.1 {redis_primary} 1\n"
        "sentinel monitor elsewhere 127.0.0.1 6379 1\n"
    )
    process = subprocess.Popen(
        ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL
    )
    try:
        _wait_for(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


async def test_the_primary_is_asked_of_the_sentinels(sentinel: int, redis_primary: int) -> None:
    url = await resolve_redis_url(
        "redis://party_roster:secret@redis-primary:6379/0",
        f"127.0.0.1:1,127.0.0.1:{sentinel}",  # the first sentinel is down: the next answers
        "party",
    )
    assert url == f"redis://party_roster:secret@127.0.0.1:{redis_primary}/0"
    client = redis.Redis(host="127.0.0.1", port=redis_primary)
    assert await client.ping()
    await client.aclose()


async def test_without_sentinels_the_url_is_used_as_given() -> None:
    assert await resolve_redis_url("redis://h:1/2", None, "party") == "redis://h:1/2"


async def test_an_unknown_master_name_is_a_clear_error(sentinel: int) -> None:
    with pytest.raises(NoPrimary, match=r"no sentinel .* names a primary for 'nobody'"):
        await resolve_redis_url("redis://h:1/0", f"127.0.0.1:{sentinel}", "nobody")


async def test_a_moved_primary_stops_the_service(sentinel: int, redis_primary: int) -> None:
    moved = asyncio.Event()
    # The service talks to 6379, but the sentinels say the primary of `party` is elsewhere.
    await asyncio.wait_for(
        watch_primary(
            "redis://127.0.0.1:6379/0",
            f"127.0.0.1:{sentinel}",
            "party",
            every=0.05,
            on_move=moved.set,
        ),
        timeout=10,
    )
    assert moved.is_set()


async def test_an_unmoved_primary_is_left_alone(sentinel: int) -> None:
    moved = asyncio.Event()
    watching = asyncio.create_task(
        watch_primary(
            "redis://127.0.0.1:6379/0",
            f"127.0.0.1:{sentinel}",
            "elsewhere",
            every=0.05,
            on_move=moved.set,
        )
    )
    await asyncio.sleep(0.5)
    assert not moved.is_set()
    watching.cancel()


def test_sentinel_addresses_are_checked() -> None:
    assert parse_sentinels("a:26379, b:26380") == [("a", 26379), ("b", 26380)]
    with pytest.raises(ValueError, match="redis_sentinels: 'a' is not host:port"):
        parse_sentinels("a")
    assert with_address("redis://u:p@old:1/3", "new", 2) == "redis://u:p@new:2/3"
