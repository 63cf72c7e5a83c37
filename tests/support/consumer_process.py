"""A consumer in its own process, for tests that kill it.

    python -m tests.support.consumer_process DATABASE_URL SCHEMA REDIS_URL PREFIX NAME \
        [--hold-after-apply SECONDS]

It applies attendance events to the AttendanceTally of SCHEMA. With --hold-after-apply it
sleeps after each batch is committed and before it is acknowledged: killed then, it leaves
entries pending that are already applied (the worst moment for a crash).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import asyncpg
import redis.asyncio as redis

from runtime.consumer import ConsumerOptions, EventConsumer, IncomingEvent, Projector
from runtime.logs import configure_logging
from tests.support.keys import keyring
from tests.support.tally import AttendanceTally


async def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("database_url", "schema", "redis_url", "prefix", "name"):
        parser.add_argument(name)
    parser.add_argument("--hold-after-apply", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    configure_logging("WARNING", "console", stream=sys.stderr)  # stdout is for the test

    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=4)
    assert pool is not None
    projector = Projector(pool, args.schema, [AttendanceTally(args.schema)])

    async def handler(events: Sequence[IncomingEvent]) -> int:
        applied = await projector.apply(events)
        if args.hold_after_apply:
            print(f"applied {applied}", flush=True)
            await asyncio.sleep(args.hold_after_apply)
        return applied

    client = redis.Redis.from_url(args.redis_url)
    consumer = EventConsumer(
        service="tally",
        redis_url=args.redis_url,
        redis_client=client,
        prefix=args.prefix,
        producers=["activities"],
        handler=handler,
        consumer_name=args.name,
        keyring=keyring,
        options=ConsumerOptions(batch_size=args.batch_size, reclaim_idle_ms=60_000),
    )
    await consumer.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
