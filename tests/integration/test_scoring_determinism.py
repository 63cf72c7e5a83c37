"""Scoring is a function of the set of inputs: any arrival order, any batching and any
duplication give the same totals and the same published ledger; a replay equals the live view.
Checked with hypothesis against the real PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.catalogue import CATALOGUE
from contracts.events import AttendanceCorrected, MemberDisciplined, MemberEnrolled
from contracts.wire import encode_entry
from runtime.commands import CommandContext
from runtime.consumer import IncomingEvent, Projector, parse_entry
from runtime.directory import Directory, MemberDirectory
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    EventMetadata,
    EventStore,
    NewEvent,
    StreamAppend,
    load_migrations,
    migrate,
)
from runtime.projection import LocalProjector
from services.scoring.archive import Archive, score_key
from services.scoring.handlers import ScoringService
from services.scoring.projections import INPUT_FAMILIES, ScoringInputs, ScoringReadModels
from services.scoring.queries import ScoringQueries
from services.scoring.service import DEFINITION as SCORING
from tests.integration.test_scoring import REGULATION, attendance
from tests.support.producer import at

HISTORY_SIZE = 12


async def history(pool: asyncpg.Pool) -> list[IncomingEvent]:
    """Three members; meetings; an absence corrected twice; a veto."""
    schema = f"t_{uuid4().hex[:10]}"
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
    store = EventStore(pool, schema)
    try:

        async def emit(payload: Any, day: str, source: str = "activities") -> Any:
            event_id = uuid4()
            await store.append(
                StreamAppend(
                    f"s-{event_id}",
                    [
                        NewEvent.from_payload(
                            payload, occurred_at=at(day), branch_id="nde-b1", event_id=event_id
                        )
                    ],
                ),
                metadata=EventMetadata("sec", "branch_secretary"),
            )
            return event_id

        for member in ("m1", "m2", "m3"):
            await emit(
                MemberEnrolled(
                    member_id=member,
                    student_number=f"9999{member[-1]}000",
                    name=member,
                    branch_id="nde-b1",
                    group_id=None,
                    class_name=None,
                    company=None,
                    dormitory=None,
                    bed=None,
                    standing="full",
                    joined_on=date(2009, 1, 1),
                    probation_started_on=None,
                    probation_ends_on=None,
                    cadre_post=None,
                    expected_graduation=date(2012, 7, 1),
                    enrolled_on=date(2010, 5, 4),
                ),
                "2010-05-04",
            )
        for meeting, day in (
            ("a1", "2010-05-12"),
            ("a2", "2010-05-26"),
            ("a3", "2010-06-09"),
            ("a4", "2010-06-23"),
        ):
            await emit(attendance(meeting, "m1", "present", day), day)
        await emit(
            attendance("v1", "m2", "present", "2010-07-01", kind="volunteer_service", hours="7.5"),
            "2010-07-01",
        )
        wrong = await emit(attendance("a1", "m3", "absent", "2010-05-12"), "2010-05-12")
        fixed = await emit(
            AttendanceCorrected(
                **{
                    **attendance("a1", "m3", "late", "2010-05-12").model_dump(),
                    "corrects_event_id": wrong,
                    "previous_status": "absent",
                    "reason": "迟到",
                }
            ),
            "2010-05-12",
        )
        await emit(
            AttendanceCorrected(
                **{
                    **attendance("a1", "m3", "present", "2010-05-12").model_dump(),
                    "corrects_event_id": fixed,
                    "previous_status": "late",
                    "reason": "签到表为准",
                }
            ),
            "2010-05-12",
        )
        await emit(
            MemberDisciplined(
                member_id="m2", measure="warning", decided_on=date(2010, 11, 2), reason="x"
            ),
            "2010-11-02",
        )
        return [
            parse_entry(
                encode_entry(
                    event_type=e.type,
                    event_id=e.event_id,
                    branch_id=e.branch_id,
                    schema_version=e.schema_version,
                    source="producer",
                    position=e.position,
                    envelope=e.envelope_json(),
                )
            )
            for e in await store.read_all()
        ]
    finally:
        await store.close()
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def inputs(pool: asyncpg.Pool) -> list[IncomingEvent]:
    return await history(pool)


@pytest.fixture
def regulation_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTY_SCORING_REGULATION_ID", "test-reg")


async def score(
    pool: asyncpg.Pool, inputs: list[IncomingEvent], batches: list[list[int]]
) -> tuple[list[tuple[str, ...]], Counter[Any], bool]:
    """Deliver the inputs to a fresh scoring schema; return the live rows, the ledger and
    whether a replay equals them."""
    schema = f"t_{uuid4().hex[:10]}_scoring"
    async with pool.acquire() as conn:
        await migrate(conn, schema, SCORING.migrations())
    store = EventStore(pool, schema)
    archive = Archive(pool, schema, "test-reg")
    projector = LocalProjector(store, [ScoringReadModels(schema)], name="read", source="scoring")
    service = ScoringService(
        store,
        archive,
        Directory(pool, schema),
        projector,
        clock=lambda: at("2010-04-30"),
        timezone="Asia/Shanghai",
    )
    try:
        await service.publish_regulation(REGULATION, CommandContext("admin", "university_admin"))
        consumer = Projector(
            pool,
            schema,
            [
                MemberDirectory(schema),
                ScoringInputs(service, archive, CATALOGUE.types_of(*INPUT_FAMILIES)),
            ],
        )
        for batch in batches:
            await consumer.apply([inputs[i] for i in batch])
        rows = [score_key(tuple(r.values())) for r in await archive.live_scores()]
        lines = [
            e
            for e in await store.read_all(limit=10_000)
            if e.type.startswith("score.") and e.type != "score.adjusted"
        ]
        by_id = {str(e.event_id): e for e in lines}
        ledger = Counter(
            (
                e.data["member_id"],
                e.data["rule_id"],
                e.data["regulation_version"],
                str(e.data["cause_event_id"]),
                e.data["points"],
                by_id[e.data["reverses_event_id"]].data["points"]
                if e.data["reverses_event_id"]
                else None,
            )
            for e in lines
        )
        replay = await ScoringQueries(service, archive).replay()
        return rows, ledger, replay.equal
    finally:
        await store.close()
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')


@st.composite
def deliveries(draw: st.DrawFn, size: int) -> list[list[int]]:
    repeats = draw(st.lists(st.integers(0, size - 1), max_size=size // 2))
    order = draw(st.permutations([*range(size), *repeats]))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    batches, start = [], 0
    for cut in [*cuts, len(order)]:
        if cut > start:
            batches.append(order[start:cut])
            start = cut
    return batches


async def test_reference_scores(
    inputs: list[IncomingEvent], pool: asyncpg.Pool, regulation_env: None
) -> None:
    assert len(inputs) == HISTORY_SIZE
    rows, ledger, replay_equal = await score(pool, inputs, [list(range(HISTORY_SIZE))])
    totals = {row[0]: row[3] for row in rows}
    assert totals == {"m1": "90", "m2": "0", "m3": "70"}  # m2 vetoed; m3's absence corrected
    reversals = [line for line in ledger if line[5] is not None]
    assert [r[1:2] + r[4:] for r in reversals] == [("absent", "5.0", "-5.0")]  # "late" 0
    assert replay_equal


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=deliveries(HISTORY_SIZE))
async def test_any_arrival_order_gives_the_same_scores_and_ledger(
    batches: list[list[int]],
    inputs: list[IncomingEvent],
    pool: asyncpg.Pool,
    regulation_env: None,
) -> None:
    reference = await score(pool, inputs, [list(range(HISTORY_SIZE))])
    assert await score(pool, inputs, batches) == reference
