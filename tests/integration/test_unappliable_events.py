"""An event a projection cannot apply never stops the events after it (issue 14).

The reproduction: enrolling a member with `expected_graduation` 9999-12-31 was accepted, and
from then on notify's projector failed on every retry, its checkpoint stopped, and new
deadlines of every branch were never seen. The API refuses such a date now, but a log is
append-only: an event recorded before the bounds stays. Here such events are recorded straight
into the roster's log (as old events would be), with the services running in-process, and

* the later events, of other branches, are still projected by notify (consumer and read
  models) and its cursor passes the old events;
* an event the roster's own read models cannot hold (a second registration of a unit) is
  recorded as failed where an operator sees it (`GET /v1/audit/failed-events`, the metric
  `party_failed_events`), skipped, and the projector goes on;
* `party rebuild` (runtime.service.rebuild_read_models) comes out equal to live, the same event
  skipped the same way.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis.asyncio as redis

from contracts.catalogue import CATALOGUE
from runtime.eventstore import EventMetadata, NewEvent, StreamAppend
from runtime.service import rebuild_read_models
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.examples import EXAMPLES
from tests.support.roster import RosterClient
from tests.support.stack import services

pytestmark = pytest.mark.timeout(300)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.2)


class Campus:
    def __init__(self, apis: dict[str, Api]) -> None:
        self.apis = apis
        self.roster = RosterClient(apis["roster"])
        self.admin = apis["roster"].auth("university_admin", subject="org-office")
        self.auditor = apis["roster"].auth("auditor")

    async def get(self, service: str, path: str, **params: Any) -> Any:
        response = await self.apis[service].client.get(path, headers=self.admin, params=params)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()

    async def deadline_ids(self, branch: str) -> set[str]:
        rows = await self.get("notify", f"/v1/branches/{branch}/deadlines", status="all")
        return {r["deadline_id"] for r in rows}

    async def record_old(self, event_type: str, occurred_at: datetime, **changes: Any) -> int:
        """An event straight into the roster's log, as it was recorded before the bounds (its
        `data` validated by the contract only); return its position."""
        data = {**EXAMPLES[event_type], **changes}
        payload = CATALOGUE.spec(event_type).model.model_validate_json(json.dumps(data))
        event_id = uuid4()
        result = await self.apis["roster"].context.store.append(
            StreamAppend(
                f"injected-{event_id}",
                [
                    NewEvent.from_payload(
                        payload,
                        occurred_at=occurred_at,
                        branch_id=data.get("branch_id") or data.get("unit_id"),
                        event_id=event_id,
                    )
                ],
            ),
            metadata=EventMetadata("org-office", "university_admin"),
        )
        assert result.last_position is not None
        return result.last_position

    async def metric(self, of: str, name: str, **labels: str) -> float:
        text = (await self.apis[of].client.get("/metrics")).text
        total = 0.0
        for found in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.MULTILINE):
            series = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            if all(series.get(k) == v for k, v in labels.items()):
                total += float(found.group(2))
        return total

    async def quiet(self, service: str, within: float = 60.0) -> None:
        """Until the service's log stops growing and its read models include all of it (a
        rebuild compares a quiet service)."""
        context = self.apis[service].context
        assert context.local_projector is not None
        deadline = time.monotonic() + within
        steady, last = 0, -1
        while steady < 5:
            head, _ = await context.store.head()
            await context.local_projector.wait_for(head)
            steady = steady + 1 if head == last else 0
            last = head
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} did not become quiet")
            await asyncio.sleep(0.3)


@pytest.fixture
async def campus(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[Campus]:
    async with services(
        [ROSTER, NOTIFY],
        database_url,
        stream_prefix,
        REDIS_URL,
        projection_attempts=2,
    ) as apis:
        c = Campus(apis)
        await c.roster.organisation()
        yield c


async def test_old_events_with_far_dates_do_not_stop_notify(campus: Campus) -> None:
    c = campus
    await c.roster.enrol("m1", "nde-b1")

    async def m1_known() -> bool:
        return "graduation-m1" in await c.deadline_ids("nde-b1")

    await eventually(m1_known, "notify to know m1's deadlines")
    enrolled = {"branch_id": "nde-b1", "group_id": "nde-b1-g1", "standing": "full"}
    enrolled |= {"joined_on": "2009-06-01", "probation_started_on": None}
    enrolled |= {"probation_ends_on": None}
    when = datetime(2010, 5, 4, 2, tzinfo=UTC)
    old = [
        await c.record_old(
            "member.enrolled",
            when,
            **enrolled,
            member_id="m-far-graduation",
            student_number="90000001",
            expected_graduation="9999-12-31",
        ),
        await c.record_old(
            "member.enrolled",
            when,
            **enrolled,
            member_id="m-far-enrolment",
            student_number="90000002",
            enrolled_on="9999-12-31",
            expected_graduation="9999-12-31",
        ),
    ]
    # Later: another branch, another member; notify must see their deadlines.
    await c.roster.unit("nde-b3", "branch", "学生第三党支部", "nde", "student")
    await c.roster.unit("nde-b3-g1", "group", "nde-b3-g1 党小组", "nde-b3")
    await c.roster.enrol("m2", "nde-b2", number="20100002", group_id="nde-b2-g1")

    async def later_known() -> bool:
        return "graduation-m2" in await c.deadline_ids("nde-b2") and bool(
            await c.deadline_ids("nde-b3")
        )

    await eventually(later_known, "notify to project the events after the old ones")
    roster_head, _ = await c.apis["roster"].context.store.head()
    assert roster_head > max(old)
    projector = c.apis["notify"].context.projector
    assert projector is not None

    async def cursor_passed() -> bool:
        assert projector is not None
        cursor, _ = (await projector.cursors(["roster"]))["roster"]
        return cursor >= roster_head

    await eventually(cursor_passed, "notify's cursor on the roster to pass the old events")
    # Whatever notify made of them (applied without overflowing, or skipped and recorded),
    # the read models folded again come out the same.
    await c.quiet("notify")
    notify = c.apis["notify"].context
    report = await rebuild_read_models(NOTIFY, notify.settings, notify.pool)
    assert report.equal, "\n".join(report.examples)


async def test_an_event_the_read_models_cannot_hold_is_recorded_skipped_and_rebuilt_alike(
    campus: Campus,
) -> None:
    c = campus
    roster = c.apis["roster"]
    # nde-b1 registered again (the read model's primary key refuses a second row): no fix of
    # the code applies it, so it is what any projector must get past.
    bad = await c.record_old(
        "org.unit_registered",
        datetime(2010, 5, 1, tzinfo=UTC),
        unit_id="nde-b1",
        name="又一个第一支部",
    )
    await c.roster.enrol("m1", "nde-b2", number="20100001", group_id="nde-b2-g1")

    async def m1_projected() -> bool:
        response = await roster.client.get("/v1/members/m1", headers=c.admin)
        return response.status_code == 200

    await eventually(m1_projected, "the roster to project the enrolment after the bad event")
    branch = await c.get("roster", "/v1/units/nde-b1")
    assert branch["name"] == "学生第一党支部"  # the first registration stands

    async def skipped() -> bool:
        response = await roster.client.get("/v1/audit/failed-events", headers=c.auditor)
        assert response.status_code == 200, response.text
        return bool(response.json()["skipped"])

    await eventually(skipped, "the failed event to be skipped")
    page = (await roster.client.get("/v1/audit/failed-events", headers=c.auditor)).json()
    [failed] = page["events"]
    assert (failed["source"], failed["position"], failed["type"]) == (
        "roster",
        bad,
        "org.unit_registered",
    )
    assert failed["status"] == "skipped"
    assert failed["projector"] == "roster_read_models"
    assert "Unique" in failed["error"] or "unique" in failed["error"], failed["error"]
    assert await c.metric("roster", "party_failed_events", service="roster") == 1
    # Auditors see it; a branch secretary does not.
    secretary = roster.auth("branch_secretary", branches=["nde-b1"], subject="sec-b1")
    refused = await roster.client.get("/v1/audit/failed-events", headers=secretary)
    assert refused.status_code == 403
    # The projector went on: its checkpoint is at the head.
    await c.quiet("roster")
    head, _ = await roster.context.store.head()
    assert roster.context.local_projector is not None
    assert roster.context.local_projector.position == head
    # A rebuild skips the same event the same way and ends where live is.
    report = await rebuild_read_models(ROSTER, roster.context.settings, roster.context.pool)
    assert report.equal, "\n".join(report.examples)
    assert [UUID(e) for e in report.skipped] == [UUID(failed["event_id"])]
    again = (await roster.client.get("/v1/audit/failed-events", headers=c.auditor)).json()
    assert [e["event_id"] for e in again["events"]] == [failed["event_id"]]
