"""A consumer that is slow (an artificial delay in notify's batches) does not hold the others
back, and its lag shows in its `/metrics` until it has caught up."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from runtime.consumer import IncomingEvent
from services.registry import SERVICES
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services, wait_for_members
from tests.support.waiting import wait_until

MEMBERS = [f"m-slow-{n:02d}" for n in range(40)]


async def lag(api: Api, stream: str) -> float:
    text = (await api.client.get("/metrics")).text
    pattern = rf'party_consumer_lag_entries{{service="notify",stream="{stream}"}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


async def test_a_slow_consumer_blocks_no_other_and_its_lag_is_in_metrics(
    database_url: str, stream_prefix: str
) -> None:
    definitions = list(SERVICES.values())
    # Small batches, so that what the slow consumer has not read yet is lag, not pending.
    async with services(
        definitions, database_url, stream_prefix, REDIS_URL, consumer_batch_size=4
    ) as apis:
        roster = RosterClient(apis["roster"])
        await roster.organisation()
        notify = apis["notify"]
        consumer = notify.context.consumer
        assert consumer is not None
        apply = consumer._handler
        slow = asyncio.Event()
        slow.set()

        async def dawdling(events: Sequence[IncomingEvent]) -> int:
            if slow.is_set():
                await asyncio.sleep(1.0)
            return await apply(events)

        consumer._handler = dawdling
        for member in MEMBERS:
            await roster.enrol(member)

        # The others are not held back: they know every member at once...
        for name in ("activities", "scoring"):
            await wait_for_members(apis[name], *MEMBERS, within=10)
        # ...while notify is still behind,
        directory = notify.context.directory
        assert directory is not None
        assert len(await directory.members(MEMBERS)) < len(MEMBERS)
        # and its lag is there for an operator to see.
        member_stream = f"{stream_prefix}:log:roster"

        async def lagging() -> bool:
            return await lag(notify, member_stream) > 0

        await wait_until(lagging, within=15, interval=0.5, what="notify's lag in /metrics")

        # Once it is no longer slow it catches up, and the lag goes back to nothing.
        slow.clear()
        await wait_for_members(notify, *MEMBERS, within=30)

        async def caught_up() -> bool:
            return await lag(notify, member_stream) == 0

        await wait_until(caught_up, within=15, interval=0.5, what="notify's lag back to 0")
