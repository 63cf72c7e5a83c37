"""The consumer runtime against the real Redis and PostgreSQL: dead letters, redelivery, a
killed consumer, and Redis losing everything mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
import redis.asyncio as redis

from runtime.consumer import ConsumerOptions, EventConsumer, IncomingEvent, Projector
from runtime.eventstore import EventMetadata, EventStore
from runtime.relay import Relay
from tests.conftest import REDIS_URL
from tests.support.keys import keyring
from tests.support.servers import private_redis
from tests.support.tally import AttendanceTally, sheet
from tests.support.waiting import wait_until

SECRETARY = EventMetadata("secretary-b1", "branch_secretary")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Tally:
    """A consuming service's schema with the test projection and its inbox."""

    schema: str
    projection: AttendanceTally
    projector: Projector
    pool: asyncpg.Pool

    async def state(self) -> dict[tuple[str, str], str]:
        async with self.pool.acquire() as conn:
            return await self.projection.state(conn)

    async def facts(self) -> int:
        return int(
            await self.pool.fetchval(f'SELECT count(*) FROM "{self.schema}".attendance_facts')
        )

    async def inbox(self) -> int:
        return int(await self.pool.fetchval(f'SELECT count(*) FROM "{self.schema}".inbox'))


@pytest.fixture
async def tally(pool: asyncpg.Pool) -> AsyncIterator[Tally]:
    from runtime.eventstore import EVENT_STORE_MIGRATIONS, load_migrations, migrate

    schema = f"t_{uuid4().hex[:12]}"
    projection = AttendanceTally(schema)
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
        await projection.create(conn)
    try:
        yield Tally(schema, projection, Projector(pool, schema, [projection]), pool)
    finally:
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')


def consumer_for(
    handler,
    client: redis.Redis,
    prefix: str,
    *,
    url: str = REDIS_URL,
    name: str = "c1",
    **options: object,
) -> EventConsumer:
    return EventConsumer(
        service="tally",
        redis_url=url,
        redis_client=client,
        prefix=prefix,
        producers=["activities"],
        handler=handler,
        consumer_name=name,
        keyring=keyring,
        options=ConsumerOptions(**options),
    )


async def publish_all(store: EventStore, client: redis.Redis, prefix: str) -> None:
    relay = Relay(store=store, redis_client=client, source="activities", prefix=prefix)
    while await relay.publish_once():
        pass


async def dead_letters(client: redis.Redis, prefix: str) -> list[dict[str, str]]:
    return [
        {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
        for _, fields in await client.xrange(f"{prefix}:deadletter:tally")
    ]


async def test_bad_entries_are_dead_lettered_with_a_reason_and_consuming_goes_on(
    store: EventStore, tally: Tally, redis_client: redis.Redis, stream_prefix: str
) -> None:
    key = f"{stream_prefix}:log:activities"
    await store.append(sheet("act-1", 10), metadata=SECRETARY)
    await publish_all(store, redis_client, stream_prefix)
    good = (await redis_client.xrange(key))[0][1]
    envelope = json.loads(good[b"envelope"])
    wrong_type = {
        **envelope,
        "event_id": str(uuid4()),
        "data": {**envelope["data"], "member_id": 42},
    }
    await redis_client.xadd(key, {b"\xff": b"\x80 not even text"})
    await redis_client.xadd(
        key, {**good, b"type": b"attendance.teleported", b"event_id": str(uuid4()).encode()}
    )
    await redis_client.xadd(
        key,
        {
            **good,
            b"event_id": wrong_type["event_id"].encode(),
            b"envelope": json.dumps(wrong_type).encode(),
        },
    )
    await redis_client.xadd(key, {**good, b"envelope": b"{" + b" " * 300_000 + b"}"})
    await store.append(sheet("act-2", 10), metadata=SECRETARY)
    await publish_all(store, redis_client, stream_prefix)

    consumer = consumer_for(tally.projector.apply, redis_client, stream_prefix)
    await consumer.start()
    try:
        await wait_until(lambda: _equals(tally.facts, 20), what="the good entries")
        letters = await dead_letters(redis_client, stream_prefix)
        reasons = [letter["dead_letter.reason"] for letter in letters]
        assert len(reasons) == 4, reasons
        assert reasons[0] == "malformed stream entry: type: missing"
        assert reasons[1].startswith("unknown event type 'attendance.teleported'")
        assert "data.member_id: Input should be a valid string" in reasons[2]
        assert reasons[3].startswith("oversized stream entry")
        assert letters[1]["type"] == "attendance.teleported"  # the entry itself is kept
        assert all(letter["dead_letter.stream"] == key for letter in letters)
        pending = await redis_client.xpending(key, "tally")
        assert pending["pending"] == 0
    finally:
        await consumer.stop()


async def test_an_event_that_keeps_failing_is_dead_lettered_after_n_deliveries(
    store: EventStore, tally: Tally, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await store.append(sheet("act-1", 5), metadata=SECRETARY)
    await publish_all(store, redis_client, stream_prefix)
    poisoned = (await store.read_all(limit=5))[2].event_id
    attempts: list[int] = []

    async def fragile(events: Sequence[IncomingEvent]) -> int:
        if any(e.event_id == poisoned for e in events):
            attempts.append(len(events))
            raise ValueError("member m2 is not in this branch")
        return await tally.projector.apply(events)

    consumer = consumer_for(
        fragile, redis_client, stream_prefix, reclaim_idle_ms=200, max_deliveries=3
    )
    await consumer.start()
    try:
        await wait_until(
            lambda: _has_dead_letter(redis_client, stream_prefix),
            within=20,
            what="the dead letter",
        )
        [letter] = await dead_letters(redis_client, stream_prefix)
        assert letter["dead_letter.reason"] == "ValueError: member m2 is not in this branch"
        assert letter["dead_letter.deliveries"] == "3"
        assert letter["event_id"] == str(poisoned)
        assert await tally.facts() == 4  # the other events were not held back
    finally:
        await consumer.stop()


async def test_a_killed_consumer_leaves_nothing_behind(
    store: EventStore,
    tally: Tally,
    redis_client: redis.Redis,
    stream_prefix: str,
    database_url: str,
) -> None:
    for n in range(8):
        await store.append(sheet(f"act-{n}", 25), metadata=SECRETARY)
    await publish_all(store, redis_client, stream_prefix)
    expected = {(f"act-{n}", f"m{i}"): "present" for n in range(8) for i in range(25)}
    key = f"{stream_prefix}:log:activities"

    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.consumer_process",
        database_url,
        tally.schema,
        REDIS_URL,
        stream_prefix,
        "victim",
        "--hold-after-apply",
        "60",
        "--batch-size",
        "50",
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert victim.stdout is not None
        lines = [
            (await asyncio.wait_for(victim.stdout.readline(), 20)).decode().strip()
            for _ in range(2)
        ]
        assert lines == ["ready", "applied 50"], lines
        # Killed after its first batch committed but before it was acknowledged.
        victim.send_signal(signal.SIGKILL)
        await asyncio.wait_for(victim.wait(), 10)
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
    summary = await redis_client.xpending(key, "tally")
    assert summary["pending"] == 50
    assert await tally.facts() == 50

    survivor = consumer_for(
        tally.projector.apply, redis_client, stream_prefix, name="survivor", reclaim_idle_ms=300
    )
    await survivor.start()
    try:
        await wait_until(lambda: _no_pending(redis_client, key), what="the reclaim")
        await wait_until(lambda: _equals(tally.facts, 200), what="all events")
        assert await tally.state() == expected
        assert await tally.facts() == 200  # the 50 applied before the kill were not re-applied
        assert await tally.inbox() == 200
    finally:
        await survivor.stop()


async def test_redis_flushed_mid_run_the_projection_still_completes(
    store: EventStore, tally: Tally, tmp_path: Path
) -> None:
    with private_redis(tmp_path) as url:
        client = redis.Redis.from_url(url)
        relay = Relay(
            store=store, redis_client=client, source="activities", prefix="party", poll_seconds=0.2
        )
        relay_task = asyncio.create_task(relay.run())
        consumer = consumer_for(
            tally.projector.apply, client, "party", url=url, watchdog_seconds=0.2
        )
        await consumer.start()
        try:
            for n in range(10):
                await store.append(sheet(f"act-{n}", 20), metadata=SECRETARY)
                if n == 4:
                    await wait_until(lambda: _at_least(tally.facts, 60), what="a first part")
                    await client.flushall()
                await asyncio.sleep(0.05)
            await wait_until(
                lambda: _equals(tally.facts, 200), within=30, what="the whole projection"
            )
            assert await tally.inbox() == 200
            assert len(await tally.state()) == 200
        finally:
            await consumer.stop()
            relay_task.cancel()
            await asyncio.gather(relay_task, return_exceptions=True)
            await client.aclose()


async def _equals(count, expected: int) -> bool:
    return bool(await count() == expected)


async def _at_least(count, expected: int) -> bool:
    return bool(await count() >= expected)


async def _no_pending(client: redis.Redis, key: str) -> bool:
    return bool((await client.xpending(key, "tally"))["pending"] == 0)


async def _has_dead_letter(client: redis.Redis, prefix: str) -> bool:
    return bool(await client.xlen(f"{prefix}:deadletter:tally"))


async def _sleep_forever() -> None:
    await asyncio.Event().wait()
