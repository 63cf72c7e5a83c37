"""A projection is a function of the set of events it has seen (DESIGN §2.5): the same events
delivered in any order, in any batching, with any duplicates, give the same state. Checked with
hypothesis against the real PostgreSQL, through the wire format the consumers read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.wire import encode_entry
from runtime.consumer import IncomingEvent, Projector, parse_entry
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    EventMetadata,
    EventStore,
    StreamAppend,
    load_migrations,
    migrate,
)
from tests.support.tally import AttendanceTally, attendance_event

SECRETARY = EventMetadata("secretary-b1", "branch_secretary")


async def recorded_events(store: EventStore) -> list[IncomingEvent]:
    """A small history with corrections: records, a correction, a correction of it."""
    appended = []
    for member in ("m1", "m2", "m3", "m4"):
        result = await store.append(
            StreamAppend("attendance-a1", [attendance_event("a1", member, "absent")]),
            metadata=SECRETARY,
        )
        appended.append(result.event_ids[0])
    first_fix = await store.append(
        StreamAppend("attendance-a1", [attendance_event("a1", "m2", "late", corrects=appended[1])]),
        metadata=SECRETARY,
    )
    await store.append(
        StreamAppend(
            "attendance-a1",
            [attendance_event("a1", "m2", "present", corrects=first_fix.event_ids[0])],
        ),
        metadata=SECRETARY,
    )
    await store.append(
        StreamAppend("attendance-a2", [attendance_event("a2", m, "excused") for m in ("m1", "m3")]),
        metadata=SECRETARY,
    )
    incoming = []
    for event in await store.read_all():
        fields = encode_entry(
            event_type=event.type,
            event_id=event.event_id,
            branch_id=event.branch_id,
            schema_version=event.schema_version,
            source="activities",
            position=event.position,
            envelope=event.envelope_json(),
        )
        incoming.append(parse_entry(fields))
    return incoming


@pytest.fixture
async def history(store: EventStore) -> list[IncomingEvent]:
    return await recorded_events(store)


@pytest.fixture
async def target(pool: asyncpg.Pool) -> AsyncIterator[tuple[str, AttendanceTally, Projector]]:
    schema = f"t_{uuid4().hex[:12]}"
    projection = AttendanceTally(schema)
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
        await projection.create(conn)
    try:
        yield schema, projection, Projector(pool, schema, [projection])
    finally:
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')


@st.composite
def deliveries(draw: st.DrawFn, size: int) -> list[list[int]]:
    """Indexes of events, each at least once, some repeated, shuffled, cut into batches."""
    repeats = draw(st.lists(st.integers(0, size - 1), max_size=size))
    order = draw(st.permutations([*range(size), *repeats]))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=5)))
    batches, start = [], 0
    for cut in [*cuts, len(order)]:
        if cut > start:
            batches.append(order[start:cut])
            start = cut
    return batches


HISTORY_SIZE = 8


async def state_after(
    batches: list[list[int]],
    history: list[IncomingEvent],
    target: tuple[str, AttendanceTally, Projector],
    pool: asyncpg.Pool,
) -> dict[tuple[str, str], str]:
    schema, projection, projector = target
    await pool.execute(f'TRUNCATE "{schema}".attendance_facts, "{schema}".inbox')
    for batch in batches:
        await projector.apply([history[i] for i in batch])
    async with pool.acquire() as conn:
        return await projection.state(conn)


async def test_the_reference_history_folds_as_expected(
    history: list[IncomingEvent],
    target: tuple[str, AttendanceTally, Projector],
    pool: asyncpg.Pool,
) -> None:
    assert len(history) == HISTORY_SIZE
    reference = await state_after([list(range(HISTORY_SIZE))], history, target, pool)
    assert reference[("a1", "m2")] == "present"  # the last correction wins
    assert reference[("a1", "m1")] == "absent"
    assert reference[("a2", "m3")] == "excused"
    assert len(reference) == 6


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=deliveries(HISTORY_SIZE))
async def test_any_order_and_duplication_gives_the_same_state(
    batches: list[list[int]],
    history: list[IncomingEvent],
    target: tuple[str, AttendanceTally, Projector],
    pool: asyncpg.Pool,
) -> None:
    # Fixtures live across examples: each example starts from empty tables.
    reference = await state_after([list(range(HISTORY_SIZE))], history, target, pool)
    assert await state_after(batches, history, target, pool) == reference
    schema = target[0]
    assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".inbox') == HISTORY_SIZE
