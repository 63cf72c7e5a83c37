"""The event store against the real PostgreSQL: concurrency, idempotency, unique claims, reads
and migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    ConcurrencyConflict,
    EventMetadata,
    EventStore,
    IdempotencyKey,
    IdempotencyKeyReused,
    Migration,
    NewEvent,
    StreamAppend,
    UniqueClaim,
    UniqueClaimTaken,
    load_migrations,
    migrate,
)
from runtime.eventstore.migrations import MigrationChanged
from tests.support.keys import signer

SECRETARY = EventMetadata("secretary-b1", "branch_secretary")
WHEN = datetime(2010, 5, 12, 11, tzinfo=UTC)


def event(n: int = 0, event_type: str = "member.moved", branch: str | None = "b1") -> NewEvent:
    return NewEvent(event_type, {"n": n, "名字": "王小明"}, WHEN, branch_id=branch)


@pytest.fixture
async def second_store(database_url: str, schema: str) -> AsyncIterator[EventStore]:
    """The same schema through another pool: as another process of the service would see it
    (with the same signing key, as a replica has)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    store = EventStore(pool, schema, signer=signer("activities"), source="activities")
    try:
        yield store
    finally:
        await store.close()
        await pool.close()


async def count_events(pool: asyncpg.Pool, schema: str) -> int:
    return int(await pool.fetchval(f'SELECT count(*) FROM "{schema}".events'))


async def test_append_assigns_gapless_versions_and_positions(store: EventStore) -> None:
    first = await store.append(
        StreamAppend("member-1", [event(1), event(2)], expected_version=0), metadata=SECRETARY
    )
    second = await store.append(
        StreamAppend("member-1", [event(3)], expected_version=2), metadata=SECRETARY
    )
    assert (first.first_position, first.last_position, first.stream_versions) == (
        1,
        2,
        {"member-1": 2},
    )
    assert (second.first_position, second.stream_versions) == (3, {"member-1": 3})
    events = await store.read_stream("member-1")
    assert [e.stream_version for e in events] == [1, 2, 3]
    assert [e.data["n"] for e in events] == [1, 2, 3]
    assert events[0].data["名字"] == "王小明"
    assert events[1].prev_hash == events[0].hash


async def test_two_concurrent_appends_at_the_same_version_exactly_one_wins(
    store: EventStore, second_store: EventStore, pool: asyncpg.Pool, schema: str
) -> None:
    # Two processes, many rounds: each round both append to a fresh stream at version 0.
    for round_ in range(25):
        stream = f"member-race-{round_}"
        outcomes = await asyncio.gather(
            store.append(StreamAppend(stream, [event(1)], expected_version=0), metadata=SECRETARY),
            second_store.append(
                StreamAppend(stream, [event(2)], expected_version=0), metadata=SECRETARY
            ),
            return_exceptions=True,
        )
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        losers = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(winners) == 1, outcomes
        assert len(losers) == 1, outcomes
        conflict = losers[0]
        assert isinstance(conflict, ConcurrencyConflict)
        assert (conflict.stream_id, conflict.expected, conflict.actual) == (stream, 0, 1)
        assert f"stream '{stream}' is at version 1, not the expected version 0" in str(conflict)
    assert await count_events(pool, schema) == 25


async def test_concurrent_appends_in_one_process_are_decided_one_by_one(store: EventStore) -> None:
    """Appends that land in the same group commit still succeed or fail each on their own."""
    outcomes = await asyncio.gather(
        *[
            store.append(
                StreamAppend("member-9", [event(i)], expected_version=0), metadata=SECRETARY
            )
            for i in range(10)
        ],
        return_exceptions=True,
    )
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, ConcurrencyConflict) for o in outcomes if isinstance(o, BaseException))
    assert len(await store.read_stream("member-9")) == 1


async def test_a_conflict_appends_nothing_from_the_failing_command(
    store: EventStore, pool: asyncpg.Pool, schema: str
) -> None:
    await store.append(StreamAppend("a", [event()]), metadata=SECRETARY)
    with pytest.raises(ConcurrencyConflict):
        await store.append(
            StreamAppend("b", [event()], expected_version=0),
            StreamAppend("a", [event()], expected_version=0),  # stale: all or nothing
            metadata=SECRETARY,
        )
    assert await count_events(pool, schema) == 1
    assert await store.stream_version("b") == 0


async def test_same_idempotency_key_twice_returns_the_first_result(
    store: EventStore, pool: asyncpg.Pool, schema: str
) -> None:
    key = IdempotencyKey("secretary-b1:enrol-42", fingerprint="f1")
    first = await store.append(
        StreamAppend("member-42", [event()], expected_version=0),
        metadata=SECRETARY,
        idempotency=key,
    )
    again = await store.append(
        StreamAppend("member-42", [event()], expected_version=0),
        metadata=SECRETARY,
        idempotency=key,
    )
    assert not first.replayed
    assert again.replayed
    assert again.event_ids == first.event_ids
    assert again.stream_versions == first.stream_versions
    assert await count_events(pool, schema) == 1
    found = await store.find_result(key.key)
    assert found is not None
    assert found[1].event_ids == first.event_ids


async def test_same_idempotency_key_concurrently_appends_one_set(
    store: EventStore, second_store: EventStore, pool: asyncpg.Pool, schema: str
) -> None:
    key = IdempotencyKey("secretary-b1:sheet-7", fingerprint="f")
    # No expected version: without the key, every one of these would append.
    attempts = [
        s.append(
            StreamAppend("attendance-7", [event(i), event(i + 100)]),
            metadata=SECRETARY,
            idempotency=key,
        )
        for i, s in enumerate([store, second_store] * 5)
    ]
    results = await asyncio.gather(*attempts)
    assert len({tuple(r.event_ids) for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert await count_events(pool, schema) == 2


async def test_a_key_reused_for_another_command_is_refused(store: EventStore) -> None:
    await store.append(
        StreamAppend("s", [event()]), metadata=SECRETARY, idempotency=IdempotencyKey("k", "body-1")
    )
    with pytest.raises(IdempotencyKeyReused, match="already used for a different command"):
        await store.append(
            StreamAppend("s", [event()]),
            metadata=SECRETARY,
            idempotency=IdempotencyKey("k", "body-2"),
        )


async def test_unique_claims_across_streams(store: EventStore, second_store: EventStore) -> None:
    claim = UniqueClaim("student_number", "2008301")
    results = await asyncio.gather(
        store.append(StreamAppend("member-a", [event()], claims=[claim]), metadata=SECRETARY),
        second_store.append(
            StreamAppend("member-b", [event()], claims=[claim]), metadata=SECRETARY
        ),
        return_exceptions=True,
    )
    taken = [r for r in results if isinstance(r, UniqueClaimTaken)]
    assert len(taken) == 1
    # The owner may claim its own value again (a later event re-asserting it).
    owner = "member-a" if isinstance(results[1], UniqueClaimTaken) else "member-b"
    await store.append(StreamAppend(owner, [event()], claims=[claim]), metadata=SECRETARY)
    assert str(taken[0]) == f"student_number '2008301' is already taken by {owner}"


async def test_reads_by_stream_position_type_branch_and_time(store: EventStore) -> None:
    clock_times = iter(
        [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in range(100)]
    )
    timed = EventStore(
        store.pool,
        store.schema,
        clock=lambda: next(clock_times),
        signer=signer("activities"),
        source="activities",
    )
    try:
        await timed.append(
            StreamAppend("m-1", [event(1, "member.enrolled", "b1")]), metadata=SECRETARY
        )
        await timed.append(
            StreamAppend("m-2", [event(2, "member.enrolled", "b2")]), metadata=SECRETARY
        )
        await timed.append(
            StreamAppend("m-1", [event(3, "member.moved", "b1")]), metadata=SECRETARY
        )
        await timed.append(
            StreamAppend("u-1", [event(4, "org.unit_registered", None)]), metadata=SECRETARY
        )
    finally:
        await timed.close()
    everything = await store.read_all()
    assert [e.position for e in everything] == [1, 2, 3, 4]
    assert [e.data["n"] for e in await store.read_all(after_position=1, up_to_position=3)] == [2, 3]
    assert [e.position for e in await store.read_all(types=["member.enrolled"])] == [1, 2]
    assert [e.position for e in await store.read_all(branch_id="b1")] == [1, 3]
    # As of a time: what had been recorded by the second minute.
    as_of = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert [e.position for e in await store.read_all(known_at=as_of)] == [1, 2]
    assert [e.stream_version for e in await store.read_stream("m-1", known_at=as_of)] == [1]
    assert [e.position async for e in store.iterate(page=1)] == [1, 2, 3, 4]
    assert (await store.head())[0] == 4


async def test_recorded_at_never_goes_backwards(store: EventStore) -> None:
    times = iter([datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)])
    skewed = EventStore(
        store.pool,
        store.schema,
        clock=lambda: next(times),
        signer=signer("activities"),
        source="activities",
    )
    try:
        await skewed.append(StreamAppend("s", [event()]), metadata=SECRETARY)
        await skewed.append(StreamAppend("s", [event()]), metadata=SECRETARY)
    finally:
        await skewed.close()
    first, second = await store.read_stream("s")
    assert second.recorded_at >= first.recorded_at


async def test_update_delete_and_truncate_are_refused_by_the_database(
    store: EventStore, pool: asyncpg.Pool, schema: str
) -> None:
    await store.append(StreamAppend("s", [event()]), metadata=SECRETARY)
    for statement in (
        f"UPDATE \"{schema}\".events SET type = 'x.y'",
        f'DELETE FROM "{schema}".events',
        f'TRUNCATE "{schema}".events',
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)
    assert await count_events(pool, schema) == 1


async def test_migrations_twice_change_nothing(pool: asyncpg.Pool, schema: str) -> None:
    migrations = load_migrations("eventstore", EVENT_STORE_MIGRATIONS)
    snapshot_sql = (
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = $1 ORDER BY 1, 2"
    )
    async with pool.acquire() as conn:
        before = await conn.fetch(snapshot_sql, schema)
        applied_before = await conn.fetch(f'SELECT * FROM "{schema}".schema_migrations')
        assert await migrate(conn, schema, migrations) == []
        assert await conn.fetch(snapshot_sql, schema) == before
        assert await conn.fetch(f'SELECT * FROM "{schema}".schema_migrations') == applied_before
        assert {r["table_name"] for r in before} >= {"events", "chain_head", "inbox"}
        changed = [Migration(migrations[0].id, migrations[0].sql + "\n-- edited")]
        with pytest.raises(MigrationChanged, match="changed after it was applied"):
            await migrate(conn, schema, changed)
