"""Time, injectable: production reads the system clock, tests move a fake one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


async def wait_at_most(event: asyncio.Event, seconds: float) -> bool:
    """Wait for the event or the time, whichever comes first; True when the event is set.

    Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation that arrives as the
    event is set, and a task being stopped then runs on forever.
    """
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
