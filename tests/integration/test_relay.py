"""The relay against real PostgreSQL and Redis: order, resumption, republishing, leadership."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import redis.asyncio as redis

from contracts import CATALOGUE
from runtime.eventstore import EventMetadata, EventStore, StreamAppend
from runtime.relay import Relay, watermark_key
from tests.support.tally import attendance_event, sheet
from tests.support.waiting import wait_until

SECRETARY = EventMetadata("secretary-b1", "branch_secretary")


def relay(store: EventStore, client: redis.Redis, prefix: str, **options: object) -> Relay:
    return Relay(store=store, redis_client=client, source="activities", prefix=prefix, **options)


async def entries(client: redis.Redis, key: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await client.xrange(key)]


async def test_events_are_published_in_commit_order_and_validate(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    for n in range(12):
        await store.append(sheet(f"act-{n}", 25), metadata=SECRETARY)
    r = relay(store, redis_client, stream_prefix, batch_size=100)
    while await r.publish_once():
        pass
    published = await entries(redis_client, f"{stream_prefix}:attendance")
    positions = [int(f[b"position"]) for f in published]
    assert positions == list(range(1, 301))
    recorded = {e.position: e for e in await store.read_all(limit=1000)}
    for fields in published[:20]:
        envelope, payload = CATALOGUE.parse_envelope(fields[b"envelope"])
        stored = recorded[int(fields[b"position"])]
        assert envelope.hash == stored.hash
        assert fields[b"type"].decode() == payload.event_type == stored.type
        assert fields[b"source"] == b"activities"
    assert int(await redis_client.get(watermark_key(stream_prefix, "activities"))) == 300


async def test_a_new_relay_resumes_where_redis_stopped_without_gaps_or_repeats(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    for n in range(4):
        await store.append(sheet(f"act-{n}", 25), metadata=SECRETARY)
    first = relay(store, redis_client, stream_prefix, batch_size=30)
    # A batch ends with the last commit it holds whole (25 events), so that its last entry
    # carries the signature that covers it.
    assert await first.publish_once() == 25
    del first  # the process died here
    second = relay(store, redis_client, stream_prefix, batch_size=30)
    while await second.publish_once():
        pass
    positions = [
        int(f[b"position"]) for f in await entries(redis_client, f"{stream_prefix}:attendance")
    ]
    assert positions == list(range(1, 101))


async def test_after_redis_lost_its_data_everything_is_republished(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await store.append(sheet("act-1", 40), metadata=SECRETARY)
    r = relay(store, redis_client, stream_prefix)
    await r.publish_once()
    # What a restart of a Redis without persistence leaves behind: nothing.
    await redis_client.delete(
        f"{stream_prefix}:attendance", watermark_key(stream_prefix, "activities")
    )
    await store.append(sheet("act-2", 10), metadata=SECRETARY)
    while await r.publish_once():
        pass
    positions = [
        int(f[b"position"]) for f in await entries(redis_client, f"{stream_prefix}:attendance")
    ]
    assert positions == list(range(1, 51))
    recorded = await store.pool.fetchval(f'SELECT position FROM "{store.schema}".relay_progress')
    assert recorded == 50


async def test_events_go_to_their_family_stream(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    from datetime import UTC, datetime

    from runtime.eventstore import NewEvent
    from tests.support.examples import EXAMPLES

    when = datetime(2010, 5, 4, tzinfo=UTC)
    await store.append(
        StreamAppend(
            "member-1",
            [NewEvent("member.enrolled", EXAMPLES["member.enrolled"], when, branch_id="nde-b1")],
        ),
        StreamAppend(
            "act-1",
            [
                NewEvent(
                    "activity.scheduled", EXAMPLES["activity.scheduled"], when, branch_id="nde-b1"
                )
            ],
        ),
        StreamAppend("attendance-1", [attendance_event("act-1", "m-1", "present")]),
        metadata=SECRETARY,
    )
    await relay(store, redis_client, stream_prefix).publish_once()
    for family, event_type in [
        ("member", "member.enrolled"),
        ("activity", "activity.scheduled"),
        ("attendance", "attendance.recorded"),
    ]:
        [fields] = await entries(redis_client, f"{stream_prefix}:{family}")
        assert fields[b"type"].decode() == event_type
        assert orjson.loads(fields[b"envelope"])["type"] == event_type


async def test_notify_wakes_the_relay_and_only_one_replica_leads(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    # A long polling interval: only NOTIFY can make the relays publish quickly.
    replicas = [relay(store, redis_client, stream_prefix, poll_seconds=30) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in replicas]
    try:
        await wait_until(lambda: _any_leader(replicas), what="a leader")
        await asyncio.sleep(0.3)
        assert sum(r.is_leader for r in replicas) == 1
        await store.append(sheet("act-1", 5), metadata=SECRETARY)
        key = f"{stream_prefix}:attendance"
        await wait_until(lambda: _length_is(redis_client, key, 5), within=5, what="publish")
        # The leader dies: the standby takes over and publishes the next events.
        leader = next(i for i, r in enumerate(replicas) if r.is_leader)
        tasks[leader].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[leader]
        await store.append(sheet("act-2", 5), metadata=SECRETARY)
        await wait_until(
            lambda: _length_is(redis_client, key, 10), within=10, what="the standby to publish"
        )
        assert replicas[1 - leader].is_leader
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _any_leader(replicas: list[Relay]) -> bool:
    return any(r.is_leader for r in replicas)


async def _length_is(client: redis.Redis, key: str, length: int) -> bool:
    return int(await client.xlen(key)) == length


async def test_a_watermark_moved_forward_within_the_log_is_repaired(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    """Someone with the relay's Redis user says the next events are published: they are not on
    the log stream, so the relay republishes them (and counts a repair)."""
    await store.append(sheet("act-1", 10), metadata=SECRETARY)
    r = relay(store, redis_client, stream_prefix)
    await r.publish_once()
    await store.append(sheet("act-2", 10), metadata=SECRETARY)
    head, _ = await store.head()
    await redis_client.set(watermark_key(stream_prefix, "activities"), head)
    while await r.publish_once():
        pass
    log = f"{stream_prefix}:log:activities"
    positions = [int(f[b"position"]) for f in await entries(redis_client, log)]
    assert positions == list(range(1, 21))
