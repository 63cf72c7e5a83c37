"""Which Redis to talk to: the URL as given, or the primary that Redis Sentinel names.

With `PARTY_REDIS_SENTINELS` set, a service asks the sentinels for the current primary of
`PARTY_REDIS_SENTINEL_MASTER` when it starts, and keeps asking. When the primary moves (a
failover), the service stops itself so that its supervisor (Kubernetes, compose, systemd)
starts it again against the new primary: crash-only, because the stream consumer's
connection cannot be re-pointed in place, and a restart loses nothing (unacknowledged entries
are reclaimed, the relay resumes from its watermark).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis

from runtime.logs import get_logger

log = get_logger(__name__)


class NoPrimary(Exception):
    """No sentinel answered with a primary for the master name."""


def parse_sentinels(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` → [(host, port), …]; a clear error names the bad entry."""
    sentinels = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redis_sentinels: {item!r} is not host:port")
        sentinels.append((host, int(port)))
    return sentinels


def with_address(url: str, host: str, port: int) -> str:
    """The URL with its host and port replaced (user, password, database kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = (f"{credentials}@" if credentials else "") + f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def ask_sentinels(sentinels: Sequence[tuple[str, int]], master: str) -> tuple[str, int]:
    for host, port in sentinels:
        client = redis.Redis(host=host, port=port, socket_timeout=2, socket_connect_timeout=2)
        try:
            answer = await client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", master
            )
        except (redis.RedisError, OSError) as error:
            log.warning("sentinel not answering", sentinel=f"{host}:{port}", error=repr(error))
            continue
        finally:
            await client.aclose()
        if answer:
            address, primary_port = answer
            return _text(address), int(primary_port)
    raise NoPrimary(f"no sentinel of {list(sentinels)} names a primary for {master!r}")


async def resolve_redis_url(url: str, sentinels: str | None, master: str) -> str:
    if not sentinels:
        return url
    host, port = await ask_sentinels(parse_sentinels(sentinels), master)
    log.info("redis primary from sentinel", master=master, primary=f"{host}:{port}")
    return with_address(url, host, port)


def _stop_this_process() -> None:
    os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop, as `kill` from the supervisor


async def watch_primary(
    current: str,
    sentinels: str,
    master: str,
    *,
    every: float = 5.0,
    on_move: Callable[[], None] = _stop_this_process,
) -> None:
    """Stop this process when the sentinels name another primary than the one in use."""
    parsed = urlsplit(current)
    in_use = (parsed.hostname, parsed.port)
    while True:
        await asyncio.sleep(every)
        try:
            primary = await ask_sentinels(parse_sentinels(sentinels), master)
        except NoPrimary as error:
            log.warning("no primary known", error=str(error))
            continue
        if primary != in_use:
            log.warning(
                "redis primary moved: restarting to follow it",
                was=f"{in_use[0]}:{in_use[1]}",
                now=f"{primary[0]}:{primary[1]}",
            )
            on_move()
            return


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
