"""Tamper evidence: a superuser who bypasses the append-only trigger is still caught."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import asyncpg
import pytest

from runtime.eventstore import EventMetadata, EventStore, NewEvent, StreamAppend, verify_chain

WHEN = datetime(2010, 5, 12, 11, tzinfo=UTC)


@pytest.fixture
async def log_of_ten(store: EventStore) -> EventStore:
    for n in range(10):
        await store.append(
            StreamAppend(
                f"member-{n % 3}",
                [NewEvent("member.moved", {"n": n, "宿舍": "8-312"}, WHEN, branch_id="b1")],
            ),
            metadata=EventMetadata("secretary-b1", "branch_secretary"),
        )
    return store


async def as_superuser(pool: asyncpg.Pool, statement: str) -> None:
    """What someone with the database's superuser password could do: switch the trigger off."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(statement)


async def test_an_untouched_log_verifies(log_of_ten: EventStore) -> None:
    report = await verify_chain(log_of_ten.pool, log_of_ten.schema)
    assert report.intact
    assert (report.events_checked, report.head_position) == (10, 10)


async def test_an_edited_row_is_named_by_its_position(log_of_ten: EventStore) -> None:
    s = f'"{log_of_ten.schema}"'
    await as_superuser(
        log_of_ten.pool,
        f"UPDATE {s}.events SET data = jsonb_set(data, '{{n}}', '70') WHERE position = 7",
    )
    report = await verify_chain(log_of_ten.pool, log_of_ten.schema)
    assert not report.intact
    assert report.first_broken_position == 7
    assert report.reason == "content does not match its hash (the row was changed)"
    assert report.events_checked == 6


async def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(
    log_of_ten: EventStore,
) -> None:
    s = f'"{log_of_ten.schema}"'
    [row] = await log_of_ten.read_all(after_position=3, limit=1)
    forged = dataclasses.replace(row, actor_id="someone-else")
    await as_superuser(
        log_of_ten.pool,
        f"UPDATE {s}.events SET actor_id = 'someone-else', hash = '{forged.computed_hash()}' "
        "WHERE position = 4",
    )
    report = await verify_chain(log_of_ten.pool, log_of_ten.schema)
    assert report.first_broken_position == 5
    assert report.reason == "prev_hash does not link to position 4"


async def test_a_deleted_row_is_found(log_of_ten: EventStore) -> None:
    s = f'"{log_of_ten.schema}"'
    await as_superuser(log_of_ten.pool, f"DELETE FROM {s}.events WHERE position = 3")
    report = await verify_chain(log_of_ten.pool, log_of_ten.schema)
    assert (report.first_broken_position, report.reason) == (3, "position 3 is missing")


async def test_a_cut_tail_is_found(log_of_ten: EventStore) -> None:
    s = f'"{log_of_ten.schema}"'
    await as_superuser(log_of_ten.pool, f"DELETE FROM {s}.events WHERE position >= 9")
    report = await verify_chain(log_of_ten.pool, log_of_ten.schema)
    assert report.first_broken_position == 9
    assert "ends at position 8" in (report.reason or "")
