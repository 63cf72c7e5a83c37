"""Connections a service holds are bounded in time and in number (issue 14: 3,000 idle half-open
connections were held for ever; about 20,000 exhausted the process's file descriptors).

The service runs as a real process (`party serve roster`, uvicorn with httptools, as in
production) on the real PostgreSQL and Redis; the test opens hundreds of raw TCP connections
that send nothing, half a request's headers, or a header a byte at a time, and checks that the
service closes each after the header timeout while a normal request still answers, that one
connection beyond the limit is refused at once, and that a stalled body, an idle kept-alive
connection and oversized headers are ended too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest

from tests.conftest import REDIS_URL
from tests.support.processes import ServiceProcesses
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

HEADER_TIMEOUT = 2.0
IDLE = 800  # connections held at once (the test's descriptor limit allowing)


def _headroom() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE * 2 + 256
    if soft < wanted and hard >= wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


@pytest.fixture
def serve(
    database_url: str, stream_prefix: str, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcesses]]:
    """`party serve roster` with the given settings (a fresh schema, dropped afterwards)."""
    started: list[tuple[ServiceProcesses, str]] = []

    def start(**env: str) -> ServiceProcesses:
        schema = f"t_{uuid4().hex[:10]}_roster"
        processes = ServiceProcesses(
            database_url,
            REDIS_URL,
            stream_prefix,
            tmp_path,
            extra_env={
                "PARTY_DB_SCHEMA": schema,
                "PARTY_CHECKPOINT_SECONDS": "3600",
                "PARTY_LOG_LEVEL": "WARNING",
                **env,
            },
        )
        started.append((processes, schema))
        processes.start("roster")
        processes.wait_ready("roster")
        return processes

    yield start
    for processes, schema in started:
        processes.stop_all()

        async def drop(schema: str = schema) -> None:
            conn = await asyncpg.connect(database_url)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


def _address(processes: ServiceProcesses) -> tuple[str, int]:
    return "127.0.0.1", processes.ports["roster"]


async def _open(processes: ServiceProcesses, first: bytes = b"") -> asyncio.StreamReader:
    reader, writer = await asyncio.open_connection(*_address(processes))
    if first:
        writer.write(first)
        await writer.drain()
    _WRITERS.append(writer)
    return reader


_WRITERS: list[asyncio.StreamWriter] = []


async def _closed_after(reader: asyncio.StreamReader, within: float) -> tuple[float, bytes]:
    """How long until the service closed the connection (EOF), and what it sent before."""
    started = time.monotonic()
    received = await asyncio.wait_for(reader.read(), within)  # read() returns at EOF
    return time.monotonic() - started, received


def _close_all() -> None:
    for writer in _WRITERS:
        with contextlib.suppress(Exception):
            writer.close()
    _WRITERS.clear()


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _slowloris(processes: ServiceProcesses) -> asyncio.StreamReader:
    """A connection that sends its headers a byte every 0.2 s, never finishing."""
    reader, writer = await asyncio.open_connection(*_address(processes))
    _WRITERS.append(writer)

    async def trickle() -> None:
        with contextlib.suppress(Exception):
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.2)

    _TASKS.append(asyncio.create_task(trickle()))
    return reader


_TASKS: list[asyncio.Task[None]] = []


async def test_idle_and_half_open_connections_are_closed_after_the_header_timeout(
    serve: Callable[..., ServiceProcesses],
) -> None:
    limit = _headroom()
    assert limit >= IDLE + 100, f"the test's descriptor limit ({limit}) is too low"
    processes = serve(PARTY_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT))
    pid = processes.pid("roster")
    try:
        readers = []
        opened = time.monotonic()
        for n in range(IDLE):
            # A third send nothing, a third half a request line, a third half their headers.
            first = (b"", b"GET /hea", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Half: ")[n % 3]
            readers.append(await _open(processes, first))
        slow = await _slowloris(processes)
        took_to_open = time.monotonic() - opened
        assert took_to_open < HEADER_TIMEOUT, f"opening took {took_to_open:.1f} s: too slow a test"
        held = _descriptors(pid)
        while held < IDLE and time.monotonic() - opened < HEADER_TIMEOUT:
            await asyncio.sleep(0.05)  # the service is still accepting them
            held = _descriptors(pid)
        assert held >= IDLE, f"the service holds {held} descriptors: the connections are not open"
        # Meanwhile a normal request answers, at once.
        async with httpx.AsyncClient(timeout=5) as client:
            started = time.monotonic()
            answer = await client.get(f"{processes.url('roster')}/health")
            assert answer.status_code == 200
            assert time.monotonic() - started < 1.0
        # Each idle connection is closed by the service after the header timeout (none before).
        closings = await asyncio.gather(
            *(_closed_after(r, HEADER_TIMEOUT + 10) for r in [*readers, slow])
        )
        assert len(closings) == IDLE + 1
        for _, received in closings:
            assert received == b"" or received.startswith(b"HTTP/1.1 408"), received[:80]
        # The last one went at most a few seconds after the timeout of the first.
        assert time.monotonic() - opened < HEADER_TIMEOUT + took_to_open + 5
        assert _descriptors(pid) < held - IDLE + 50
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{processes.url('roster')}/health")
            assert answer.status_code == 200
            metrics = (await client.get(f"{processes.url('roster')}/metrics")).text
        closed = next(
            line
            for line in metrics.splitlines()
            if line.startswith('party_http_connections_closed_total{reason="header_timeout"}')
        )
        assert float(closed.split()[-1]) >= IDLE + 1
    finally:
        for task in _TASKS:
            task.cancel()
        _TASKS.clear()
        _close_all()


async def test_none_is_closed_before_the_header_timeout(
    serve: Callable[..., ServiceProcesses],
) -> None:
    processes = serve(PARTY_HTTP_HEADER_TIMEOUT_SECONDS="3")
    try:
        reader = await _open(processes, b"GET /health HTTP/1.1\r\n")
        opened = time.monotonic()
        took, received = await _closed_after(reader, 15)
        assert 2.5 < time.monotonic() - opened < 6, took
        assert received.startswith(b"HTTP/1.1 408 Request Timeout"), received
    finally:
        _close_all()


async def test_a_connection_beyond_the_limit_is_refused_at_once(
    serve: Callable[..., ServiceProcesses],
) -> None:
    processes = serve(PARTY_HTTP_MAX_CONNECTIONS="50", PARTY_HTTP_HEADER_TIMEOUT_SECONDS="3")
    pid = processes.pid("roster")
    try:
        idle = _descriptors(pid)
        held = [await _open(processes) for _ in range(50)]

        # Until the service has accepted every one (its other descriptors come and go a little:
        # PostgreSQL and Redis connections).
        async def all_accepted() -> bool:
            return _descriptors(pid) >= idle + 45

        await wait_until(all_accepted, within=2, what="the held connections accepted")
        await asyncio.sleep(0.2)
        before = _descriptors(pid)
        assert before >= idle + 45
        beyond = [await _open(processes) for _ in range(20)]
        for reader in beyond:
            _, received = await _closed_after(reader, 2)
            assert received.startswith(b"HTTP/1.1 503 Service Unavailable"), received
            assert b"retry-after: 1" in received

        async def refused_closed() -> bool:
            return _descriptors(pid) <= before + 5

        # The 20 refused were closed, not kept.
        await wait_until(refused_closed, within=2, what="the refused connections closed")
        # The held ones time out; then a normal request answers again.
        for reader in held:
            await _closed_after(reader, 10)
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(f"{processes.url('roster')}/health")
            assert answer.status_code == 200
    finally:
        _close_all()


async def test_a_stalled_body_an_idle_keep_alive_and_huge_headers_are_ended(
    serve: Callable[..., ServiceProcesses],
) -> None:
    processes = serve(
        PARTY_HTTP_BODY_TIMEOUT_SECONDS="2",
        PARTY_HTTP_KEEP_ALIVE_SECONDS="1",
        PARTY_HTTP_MAX_HEADER_BYTES="8192",
    )
    try:
        # A body that stops after 10 of its 100 bytes.
        stalled = await _open(
            processes,
            b"POST /v1/units HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"unit_id":',
        )
        opened = time.monotonic()
        await _closed_after(stalled, 10)
        assert 1.5 < time.monotonic() - opened < 6
        # A kept-alive connection after its response: closed after the keep-alive time.
        kept = await _open(processes, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        opened = time.monotonic()
        _, received = await _closed_after(kept, 10)
        assert received.startswith(b"HTTP/1.1 200"), received
        assert 0.5 < time.monotonic() - opened < 4
        # Headers over the limit: 431, closed.
        huge = await _open(
            processes, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
        )
        _, received = await _closed_after(huge, 5)
        assert received.startswith(b"HTTP/1.1 431"), received
        # Headers under it still pass.
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(
                f"{processes.url('roster')}/health", headers={"X-Fine": "a" * 4000}
            )
            assert answer.status_code == 200
    finally:
        _close_all()
