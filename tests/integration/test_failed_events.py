"""An event a projection cannot apply never stops the others (issue 14): against the real
PostgreSQL and Redis, events are put straight into a log — bypassing every API, as an event
recorded before the inputs were bounded already is — and a projection fails on one of them.

Both ways a service folds events are covered: the local projector (read models of its own log,
runtime.projection) and the consumer (what another service published, runtime.consumer). Each
time the later events are applied; the failing one is tried a bounded number of times, then
recorded as skipped in `failed_events`, visible in `GET /v1/audit/failed-events` and in
`party_failed_events`; a transient error (the database gone) is never a reason to skip; an
event that fails once and then applies leaves no trace; and a rebuild from position 0 gives the
same read models and the same set of skipped events as live.

Then notify, where it happened: an `expected_graduation` of 9999-12-31 in roster's log stopped
its read models for every branch (OverflowError). Now it sets no deadline outside the range,
every later deadline is there, and a rebuild equals live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import redis.asyncio as redis

from contracts.events import DeadlineScheduled, UnitRegistered
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore import EventMetadata, NewEvent, StreamAppend
from runtime.service import ServiceContext, ServiceDefinition, rebuild_read_models
from services.notify.service import DEFINITION as NOTIFY
from tests.conftest import REDIS_URL
from tests.integration.test_notify import World, enrolment, organise, world  # noqa: F401
from tests.support.apps import Api, running, service_settings
from tests.support.producer import at, producer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)

SQL = "CREATE TABLE {schema}.unit_names (unit_id text PRIMARY KEY, position bigint NOT NULL)"


@dataclass
class Behaviour:
    """How the test projection fails, shared by every instance (live and rebuilt)."""

    #: unit id → how many more times applying it raises, and what
    failing: dict[str, tuple[int, type[Exception]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def touch(self, unit_id: str) -> None:
        self.calls[unit_id] = self.calls.get(unit_id, 0) + 1
        if unit_id.startswith("poison"):
            raise ValueError(f"{unit_id} cannot be folded (an old event the code cannot read)")
        left, kind = self.failing.get(unit_id, (0, RuntimeError))
        if left > 0:
            self.failing[unit_id] = (left - 1, kind)
            raise kind(f"{unit_id}: failing {left} more time(s)")


class UnitNames:
    """A read model of unit ids, failing as its behaviour says."""

    name = "unit_names"
    event_types = frozenset({"org.unit_registered"})

    def __init__(self, schema: str, behaviour: Behaviour) -> None:
        self._s = f'"{schema}"'
        self.behaviour = behaviour

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        for event in events:
            payload = event.payload
            assert isinstance(payload, UnitRegistered)
            self.behaviour.touch(payload.unit_id)
            await conn.execute(
                f"INSERT INTO {self._s}.unit_names VALUES ($1, $2)",
                payload.unit_id,
                event.position,
            )

    async def reset(self, conn: Connection) -> None:
        await conn.execute(f"TRUNCATE {self._s}.unit_names")


def unit(unit_id: str) -> UnitRegistered:
    return UnitRegistered(unit_id=unit_id, kind="school", name=f"学院 {unit_id}", parent_id=None)


def migrations(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / "0001_unit_names.sql").write_text(SQL)
    return folder


async def names(api: Api) -> set[str]:
    rows = await api.context.pool.fetch(f'SELECT unit_id FROM "{api.context.schema}".unit_names')
    return {r["unit_id"] for r in rows}


async def failed(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.client.get(
        "/v1/audit/failed-events", params=params, headers=api.auth("auditor")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def metric(api: Api, name: str, **labels: str) -> float | None:
    text = (await api.client.get("/metrics")).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def append(context: ServiceContext, *unit_ids: str) -> dict[str, UUID]:
    """Straight into the service's own log, one commit each, as old events already are."""
    ids = {}
    for unit_id in unit_ids:
        event_id = uuid4()
        await context.store.append(
            StreamAppend(
                f"unit-{unit_id}",
                [
                    NewEvent.from_payload(
                        unit(unit_id),
                        occurred_at=datetime(2010, 5, 1, tzinfo=UTC),
                        branch_id=None,
                        event_id=event_id,
                    )
                ],
            ),
            metadata=EventMetadata("org-office", "university_admin"),
        )
        ids[unit_id] = event_id
    return ids


# -- the local projector ---------------------------------------------------------------------


@pytest.fixture
async def local(
    database_url: str, stream_prefix: str, redis_client: redis.Redis, tmp_path: Path
) -> AsyncIterator[tuple[Api, Behaviour, ServiceDefinition]]:
    behaviour = Behaviour()
    definition = ServiceDefinition(
        name="faultysvc",
        title="A service whose read model fails on some events",
        migrations_dir=migrations(tmp_path),
        local_projections=lambda context: [UnitNames(context.schema, behaviour)],
    )
    settings = service_settings(
        database_url,
        f"t_{uuid4().hex[:10]}",
        stream_prefix,
        REDIS_URL,
        projection_attempts=3,
    )
    async with running(definition, settings) as api:
        yield api, behaviour, definition


async def test_the_local_projector_skips_an_event_it_cannot_apply_and_applies_the_rest(
    local: tuple[Api, Behaviour, ServiceDefinition],
) -> None:
    api, behaviour, definition = local
    context = api.context
    assert context.local_projector is not None
    # Fails twice (the batch, then alone) and then applies: a failure that passes.
    behaviour.failing["once"] = (2, RuntimeError)
    # The database "gone" four times: transient, so never skipped however often it fails.
    behaviour.failing["flaky"] = (4, ConnectionRefusedError)
    ids = await append(context, "u1", "poison", "u2", "once", "flaky", "u3")
    head, _ = await context.store.head()

    async def caught_up() -> bool:
        return context.local_projector is not None and context.local_projector.position >= head

    await wait_until(caught_up, within=60, what="the read models past the failing event")
    assert await names(api) == {"u1", "u2", "once", "flaky", "u3"}
    assert behaviour.calls["poison"] >= 3  # tried, not dropped at the first failure
    assert behaviour.calls["flaky"] > 3  # more often than any event is tried before skipping

    page = await failed(api)
    assert (page["skipped"], page["retrying"]) == (1, 0)
    [record] = page["events"]
    assert record["event_id"] == str(ids["poison"])
    assert record["projector"] == "faultysvc_read_models"
    assert (record["source"], record["type"], record["status"]) == (
        "faultysvc",
        "org.unit_registered",
        "skipped",
    )
    [poisoned] = [e for e in await context.store.read_all() if e.event_id == ids["poison"]]
    assert record["position"] == poisoned.position
    assert record["stream_id"] == "unit-poison"
    assert record["attempts"] == 3
    assert record["error"].startswith("ValueError: poison cannot be folded")
    assert record["first_seen"] <= record["last_seen"]
    assert (await failed(api, status="retrying"))["events"] == []

    # Who sees it: the auditor and the university admin; nobody else.
    for role, expected in (("university_admin", 200), ("branch_secretary", 403)):
        scope = {"branches": ["b1"]} if role == "branch_secretary" else {}
        response = await api.client.get("/v1/audit/failed-events", headers=api.auth(role, **scope))
        assert response.status_code == expected, response.text
    assert (
        await metric(
            api, "party_failed_events", service="faultysvc", projector="faultysvc_read_models"
        )
        == 1.0
    )
    failures = await metric(
        api,
        "party_projection_failures_total",
        service="faultysvc",
        projector="faultysvc_read_models",
    )
    assert failures is not None
    assert failures >= 4  # poison three times, once once

    # Later events still go through.
    await append(context, "u4")
    await wait_until(lambda: _has(api, "u4"), what="an event after the skipped one")

    # A rebuild from position 0: the same read models and the same skipped event.
    report = await rebuild_read_models(definition, context.settings, context.pool)
    assert report.equal, report.examples
    assert report.skipped == (str(ids["poison"]),)
    assert await names(api) == {"u1", "u2", "once", "flaky", "u3", "u4"}
    page = await failed(api)
    assert [(e["event_id"], e["status"]) for e in page["events"]] == [
        (str(ids["poison"]), "skipped")
    ]


async def _has(api: Api, unit_id: str) -> bool:
    return unit_id in await names(api)


async def test_a_rebuild_applies_what_was_skipped_once_it_can_and_says_so(
    local: tuple[Api, Behaviour, ServiceDefinition],
) -> None:
    """After a fix, the skipped event is applied by the rebuild and leaves `failed_events`;
    the report names the difference (the live read models went without it)."""
    api, behaviour, definition = local
    context = api.context
    behaviour.failing["fixed-later"] = (100, RuntimeError)
    ids = await append(context, "a", "fixed-later", "b")
    await wait_until(lambda: _has(api, "b"), within=60, what="the event after the failing one")
    assert [e["event_id"] for e in (await failed(api))["events"]] == [str(ids["fixed-later"])]

    behaviour.failing["fixed-later"] = (0, RuntimeError)  # the fix is deployed
    report = await rebuild_read_models(definition, context.settings, context.pool)
    assert not report.equal
    assert "failed_events" in report.differing
    assert f"failed_events - {ids['fixed-later']}" in report.examples
    assert report.skipped == ()
    assert await names(api) == {"a", "fixed-later", "b"}
    assert (await failed(api))["events"] == []
    assert (
        await metric(
            api, "party_failed_events", service="faultysvc", projector="faultysvc_read_models"
        )
        == 0.0
    )


# -- the consumer ------------------------------------------------------------------------------


async def test_the_consumer_skips_an_event_it_cannot_apply_and_its_cursor_passes_it(
    database_url: str,
    stream_prefix: str,
    redis_client: redis.Redis,
    pool: asyncpg.Pool,
    tmp_path: Path,
) -> None:
    behaviour = Behaviour()
    behaviour.failing["flaky"] = (3, ConnectionRefusedError)
    definition = ServiceDefinition(
        name="faultycon",
        title="A service whose projection of roster's events fails on some",
        migrations_dir=migrations(tmp_path),
        consumes=("member",),
        projections=lambda context: [UnitNames(context.schema, behaviour)],
    )
    settings = service_settings(
        database_url,
        f"t_{uuid4().hex[:10]}",
        stream_prefix,
        REDIS_URL,
        projection_attempts=3,
    )
    async with (
        producer(pool, redis_client, stream_prefix, "roster") as roster,
        running(definition, settings) as api,
    ):
        ids = {}
        for unit_id in ("u1", "poison", "u2", "flaky", "u3"):
            ids[unit_id] = await roster.emit(unit(unit_id), at("2010-05-01", 8), None)
        await roster.publish()
        head, _ = await roster.store.head()

        async def cursor_at_head() -> bool:
            position: int | None = await api.context.pool.fetchval(
                f'SELECT position FROM "{api.context.schema}".producer_cursors '
                "WHERE source = 'roster'"
            )
            return position == head

        await wait_until(cursor_at_head, within=90, what="the cursor past the failing event")
        assert await names(api) == {"u1", "u2", "flaky", "u3"}
        assert behaviour.calls["poison"] >= 3
        assert behaviour.calls["flaky"] > 3
        page = await failed(api)
        assert (page["skipped"], page["retrying"]) == (1, 0)
        [record] = page["events"]
        assert (record["projector"], record["source"], record["event_id"]) == (
            "consumer",
            "roster",
            str(ids["poison"]),
        )
        assert (record["position"], record["status"], record["attempts"]) == (2, "skipped", 3)
        assert (
            await metric(api, "party_failed_events", service="faultycon", projector="consumer")
            == 1.0
        )
        # Acknowledged: nothing left pending, nothing dead-lettered (it is recorded here).
        pending = await redis_client.xpending(f"{stream_prefix}:log:roster", "faultycon")
        assert pending["pending"] == 0
        assert not await redis_client.xlen(f"{stream_prefix}:deadletter:faultycon")

        # What comes after is applied as ever.
        await roster.emit(unit("u4"), at("2010-05-02", 8), None)
        await roster.publish()
        await wait_until(lambda: _has(api, "u4"), what="an event after the skipped one")


# -- notify, where it happened -----------------------------------------------------------------


async def test_notify_goes_on_after_a_graduation_of_9999_in_the_roster_log(
    world: World,  # noqa: F811
) -> None:
    """The reproduction of issue 14: `member.enrolled` with `expected_graduation` 9999-12-31
    (accepted before inputs were bounded) is in roster's log, and a `deadline.scheduled` due
    then in notify's own (derived from it back then). Notify sets no deadline outside the
    range of dates, reminds nobody at the end of the calendar, and every later event — a
    branch registered after it — still gets its deadlines; a rebuild equals live."""
    await organise(world)
    late = enrolment("m99", 99).model_copy(update={"expected_graduation": date(9999, 12, 31)})
    await world.emit(world.roster, late, at("2010-05-06", 9))
    # What notify derived from it before the fix, already in its own log.
    context = world.api.context
    await context.store.append(
        StreamAppend(
            "deadline-graduation-m98",
            [
                NewEvent.from_payload(
                    DeadlineScheduled(
                        deadline_id="graduation-m98",
                        kind="graduation_transfer",
                        branch_id="nde-b1",
                        member_id="m01",
                        title="毕业组织关系转接 / graduation: transfer of membership",
                        due_at=datetime(9999, 12, 31, 10, 0, tzinfo=UTC),
                        revision=1,
                        cause_event_id=uuid4(),
                    ),
                    occurred_at=datetime(2010, 5, 6, 1, tzinfo=UTC),
                    branch_id="nde-b1",
                )
            ],
        ),
        metadata=EventMetadata("notify", "system"),
    )
    await world.emit(
        world.roster,
        UnitRegistered(
            unit_id="nde-b2",
            kind="branch",
            name="学生第二党支部",
            parent_id="nde",
            branch_kind="student",
        ),
        at("2010-05-07", 9),
    )
    await world.settle()
    head, _ = await context.store.head()
    assert context.local_projector is not None
    assert context.local_projector.position == head

    deadlines = await world.deadlines()
    assert "graduation-m99" not in deadlines  # 9999-12-31 is no deadline
    assert {"agreement-m99-2009", "lapsed-m99"} <= set(deadlines)  # the rest of the enrolment
    assert deadlines["graduation-m98"]["due_at"].startswith("9999-12-31")  # the old one, shown
    second = await world.get("/v1/branches/nde-b2/deadlines", status="all")
    assert {d["kind"] for d in second} >= {"year_end_assessment", "midterm_review"}
    assert (await failed(world.api))["events"] == []

    report = await rebuild_read_models(NOTIFY, context.settings, context.pool)
    assert report.equal, report.examples
