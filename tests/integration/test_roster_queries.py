"""What the roster answers: categories as of a date, classified archives (JSON, CSV, XLSX),
agreements, pairing suggestions; scopes; and what it publishes and takes from scoring."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import jsonschema
import openpyxl
import pytest
import redis.asyncio as redis

from contracts import CATALOGUE
from contracts.events import AssessmentClosed
from contracts.events.score import AssessmentResult
from contracts.generate import SCHEMA_DIR, event_schema_name
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    EventMetadata,
    EventStore,
    NewEvent,
    StreamAppend,
    load_migrations,
    migrate,
)
from runtime.relay import Relay
from services.roster.service import DEFINITION as ROSTER
from tests.conftest import REDIS_URL
from tests.support.apps import running, service_settings
from tests.support.keys import signer
from tests.support.roster import RosterClient
from tests.support.waiting import wait_until


@pytest.fixture
async def roster(
    database_url: str, schema_name: str, stream_prefix: str, redis_client: Any
) -> AsyncIterator[RosterClient]:
    settings = service_settings(database_url, schema_name, stream_prefix, REDIS_URL)
    async with running(ROSTER, settings) as api:
        client = RosterClient(api)
        await client.organisation()
        yield client


async def test_category_as_of_three_dates_after_several_changes(roster: RosterClient) -> None:
    await roster.enrol(
        "m-1",
        standing="probationary",
        probation_started_on="2009-06-01",
        enrolled_on="2009-09-01",
        expected_graduation="2011-07-01",
        cadre_post="班长",
    )
    for dimension, value, day in (
        ("performance", "excellent", "2010-01-15"),
        ("cadre", "non_cadre", "2010-03-01"),
        ("performance", "lagging", "2010-12-31"),
    ):
        await roster.post(
            "/v1/members/m-1/categories",
            {
                "dimension": dimension,
                "value": value,
                "reason": "支委会决定",
                "effective_on": day,
            },
        )
    await roster.post("/v1/members/m-1/conversion", {"decided_on": "2010-06-05"})

    async def categories(day: str) -> dict[str, str]:
        record = await roster.get("/v1/members/m-1", as_of=day)
        return record["categories"]  # type: ignore[no-any-return]

    assert await categories("2009-12-01") == {
        "standing": "probationary",
        "cadre": "cadre",
        "graduating": "not_graduating",
        "performance": "neither",
    }
    assert await categories("2010-04-01") == {
        "standing": "probationary",
        "cadre": "non_cadre",
        "graduating": "not_graduating",
        "performance": "excellent",
    }
    assert await categories("2010-10-01") == {
        "standing": "full",
        "cadre": "non_cadre",
        "graduating": "graduating",
        "performance": "excellent",
    }
    assert (await categories("2011-01-05"))["performance"] == "lagging"
    # An explicit graduating entry overrides the academic calendar from its date on.
    await roster.post(
        "/v1/members/m-1/categories",
        {
            "dimension": "graduating",
            "value": "not_graduating",
            "reason": "延期毕业",
            "effective_on": "2011-03-01",
        },
    )
    assert (await categories("2011-03-02"))["graduating"] == "not_graduating"
    assert (await categories("2010-10-01"))["graduating"] == "graduating"


async def enrol_branch_of_forty(roster: RosterClient) -> None:
    """40 members of branch 1 with every category: 10 probationary, 8 cadres, 12 graduating
    (expected 2011), 6 excellent and 4 lagging; two groups."""
    for n in range(40):
        fields: dict[str, Any] = {
            "name": f"学员{n:02d}",
            "group_id": "nde-b1-g1" if n % 2 == 0 else "nde-b1-g2",
            "expected_graduation": "2011-07-01" if n < 12 else "2013-07-01",
        }
        if n % 5 == 0:
            fields["cadre_post"] = "班长"
        standing = "probationary" if n >= 30 else "full"
        await roster.enrol(f"m-{n:02d}", standing=standing, number=f"2008{n:04d}", **fields)
    for n, verdict in [
        *((n, "excellent") for n in range(12, 18)),
        *((n, "lagging") for n in range(18, 22)),
    ]:
        await roster.post(
            f"/v1/members/m-{n:02d}/categories",
            {
                "dimension": "performance",
                "value": verdict,
                "reason": "中期考核",
                "effective_on": "2010-10-20",
            },
        )


async def test_archives_of_a_branch_of_forty_in_json_csv_and_xlsx(roster: RosterClient) -> None:
    await enrol_branch_of_forty(roster)
    archive = await roster.get("/v1/archives", unit_id="nde-b1", as_of="2010-11-01")
    assert len(archive["members"]) == 40
    assert archive["counts"]["standing"] == {"full": 30, "probationary": 10}
    assert archive["counts"]["cadre"] == {"cadre": 8, "non_cadre": 32}
    assert archive["counts"]["graduating"] == {"graduating": 12, "not_graduating": 28}
    assert archive["counts"]["performance"] == {"neither": 30, "excellent": 6, "lagging": 4}
    assert archive["by_party_group"] == {"nde-b1-g1": 20, "nde-b1-g2": 20}
    assert sum(g["count"] for g in archive["groups"]) == 40
    # Any combination of the four dimensions.
    chosen = await roster.get(
        "/v1/archives",
        unit_id="nde-b1",
        as_of="2010-11-01",
        standing="full",
        graduating="not_graduating",
        performance="excellent",
    )
    assert [m["member_id"] for m in chosen["members"]] == [f"m-{n}" for n in range(12, 18)]
    # Before the mid-term review nobody was excellent yet.
    earlier = await roster.get("/v1/archives", unit_id="nde-b1", as_of="2010-09-01")
    assert earlier["counts"]["performance"] == {"neither": 40}

    response = await roster.api.client.get(
        "/v1/archives",
        params={"unit_id": "nde-b1", "as_of": "2010-11-01", "format": "xlsx"},
        headers=roster.admin,
    )
    assert response.status_code == 200
    assert "spreadsheetml" in response.headers["content-type"]
    book = openpyxl.load_workbook(io.BytesIO(response.content))
    sheet = book["分类档案"]
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][0] == "学生第一党支部 — 截至 2010-11-01 (as of)"
    assert rows[1][:3] == ("党员编号 Member id", "学号 Student number", "姓名 Name")
    body = rows[2:]
    assert len(body) == 40
    first = body[0]
    assert first[:5] == ("m-00", "20080000", "学员00", "nde-b1", "nde-b1-g1")
    assert first[8:] == ("正式党员", "学生干部党员", "毕业生党员", "—")
    assert body[30][8] == "预备党员"
    assert body[12][11] == "优秀党员"
    counts = list(book["统计 Counts"].iter_rows(values_only=True))
    assert counts[-1] == ("合计 Total", None, None, None, 40)

    response = await roster.api.client.get(
        "/v1/archives",
        params={"unit_id": "nde-b1", "as_of": "2010-11-01", "format": "csv"},
        headers=roster.admin,
    )
    lines = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(lines) == 41
    assert lines[19][11] == "相对落后党员"  # m-18


async def test_school_and_university_archives(roster: RosterClient) -> None:
    await roster.enrol("m-a", "nde-b1", number="11110001")
    await roster.enrol("m-b", "nde-b2", number="11110002")
    school = await roster.get("/v1/archives", unit_id="nde", as_of="2010-06-01")
    assert {m["member_id"] for m in school["members"]} == {"m-a", "m-b"}
    university = await roster.get("/v1/archives", as_of="2010-06-01")
    assert len(university["members"]) == 2
    school_admin = roster.api.auth("school_admin", schools=["nde"])
    assert (
        await roster.api.client.get("/v1/archives", params={"unit_id": "nde"}, headers=school_admin)
    ).status_code == 200
    assert (await roster.api.client.get("/v1/archives", headers=school_admin)).status_code == 403


async def test_members_without_a_current_agreement(roster: RosterClient) -> None:
    for n in range(3):
        await roster.enrol(f"m-{n}", number=f"2222000{n}")
    await roster.post(
        "/v1/members/m-0/agreements",
        {"agreement_id": "agr-0", "academic_year": "2009-2010", "signed_on": "2010-05-15"},
    )
    await roster.post(
        "/v1/members/m-1/agreements",
        {"agreement_id": "agr-1", "academic_year": "2010-2011", "signed_on": "2011-03-10"},
    )
    missing = await roster.get("/v1/branches/nde-b1/without-agreement", as_of="2010-06-01")
    assert [m["member_id"] for m in missing] == ["m-1", "m-2"]
    missing = await roster.get("/v1/branches/nde-b1/without-agreement", as_of="2011-05-16")
    assert [m["member_id"] for m in missing] == ["m-0", "m-2"]  # m-0's year expired


async def test_pairing_suggestions_follow_performance(roster: RosterClient) -> None:
    for member_id, verdict in (
        ("m-e1", "excellent"),
        ("m-e2", "excellent"),
        ("m-l1", "lagging"),
        ("m-l2", "lagging"),
        ("m-l3", "lagging"),
    ):
        await roster.enrol(member_id, number=f"3333{member_id[-2:]}00")
        await roster.post(
            f"/v1/members/{member_id}/categories",
            {
                "dimension": "performance",
                "value": verdict,
                "reason": "考核",
                "effective_on": "2010-05-10",
            },
        )
    await roster.post(
        "/v1/branches/nde-b1/pairings",
        {"pairing_id": "p-1", "mentor_id": "m-e1", "mentee_id": "m-l1", "formed_on": "2010-05-20"},
    )
    suggestions = await roster.get("/v1/branches/nde-b1/pairing-suggestions", as_of="2010-06-01")
    assert suggestions == [{"mentee_id": "m-l2", "mentor_id": "m-e2"}]
    await roster.post(
        "/v1/branches/nde-b1/pairings/p-1/end", {"ended_on": "2010-10-15", "reason": "帮扶见效"}
    )
    suggestions = await roster.get("/v1/branches/nde-b1/pairing-suggestions", as_of="2010-11-01")
    assert suggestions == [
        {"mentee_id": "m-l1", "mentor_id": "m-e1"},
        {"mentee_id": "m-l2", "mentor_id": "m-e2"},
    ]


async def test_a_secretary_of_one_branch_cannot_touch_the_other(roster: RosterClient) -> None:
    await roster.enrol("m-a", "nde-b1", number="44440001")
    await roster.enrol("m-b", "nde-b2", number="44440002")
    secretary = roster.api.auth("branch_secretary", branches=["nde-b1"], subject="sec-b1")
    auditor = roster.api.auth("auditor")
    writes: list[tuple[str, dict[str, Any]]] = [
        (
            "/v1/units",
            {"unit_id": "nde-b2-g9", "kind": "group", "name": "x", "parent_id": "nde-b2"},
        ),
        (
            "/v1/branches/nde-b2/committee",
            {
                "secretary_id": "m-b",
                "member_ids": ["m-b"],
                "term_starts_on": "2010-05-01",
                "term_ends_on": "2011-05-01",
                "elected_on": "2010-05-01",
            },
        ),
        (
            "/v1/groups/nde-b2-g1/links",
            {"link_id": "l", "target_kind": "class", "target": "x", "established_on": "2010-05-01"},
        ),
        (
            "/v1/members",
            {
                **{
                    "branch_id": "nde-b2",
                    "student_number": "44449999",
                    "name": "x",
                    "standing": "full",
                    "joined_on": "2009-01-01",
                    "expected_graduation": "2012-07-01",
                    "enrolled_on": "2010-05-04",
                }
            },
        ),
        ("/v1/members/m-b/moves", {"dormitory": "9-101", "effective_on": "2010-09-01"}),
        ("/v1/members/m-b/transfer-out", {"destination": "x", "transferred_on": "2010-09-01"}),
        (
            "/v1/members/m-b/categories",
            {"dimension": "cadre", "value": "cadre", "reason": "x", "effective_on": "2010-09-01"},
        ),
        ("/v1/members/m-b/conversion", {"decided_on": "2011-05-01"}),
        (
            "/v1/members/m-b/probation-extension",
            {"months": 6, "reason": "x", "decided_on": "2011-05-01"},
        ),
        (
            "/v1/members/m-b/responsibility-space",
            {"dormitory": "8-1", "effective_on": "2010-09-01"},
        ),
        (
            "/v1/members/m-b/agreements",
            {"agreement_id": "a", "academic_year": "2010-2011", "signed_on": "2010-09-01"},
        ),
        (
            "/v1/members/m-b/plaques",
            {"plaque_id": "p", "kind": "dormitory", "dormitory": "8-1", "issued_on": "2010-09-01"},
        ),
        ("/v1/members/m-b/plaques/p/withdrawal", {"withdrawn_on": "2010-09-02", "reason": "x"}),
        (
            "/v1/members/m-b/discipline",
            {"measure": "warning", "decided_on": "2010-09-02", "reason": "x"},
        ),
        (
            "/v1/branches/nde-b2/pairings",
            {"pairing_id": "p", "mentor_id": "m-b", "mentee_id": "m-b", "formed_on": "2010-09-01"},
        ),
        ("/v1/branches/nde-b2/pairings/p/end", {"ended_on": "2010-10-01", "reason": "x"}),
    ]
    reads = [
        "/v1/branches/nde-b2/committee",
        "/v1/groups/nde-b2-g1/links",
        "/v1/branches/nde-b2/members",
        "/v1/members/m-b",
        "/v1/archives?unit_id=nde-b2",
        "/v1/archives?unit_id=nde-b2&format=xlsx",
        "/v1/branches/nde-b2/without-agreement",
        "/v1/branches/nde-b2/pairings",
        "/v1/branches/nde-b2/pairing-suggestions",
    ]
    before = await roster.api.event_count()
    for path, body in writes:
        for who in (secretary, auditor):
            response = await roster.api.client.post(path, json=body, headers=who)
            assert response.status_code == 403, (path, response.text)
    for path in reads:
        assert (await roster.api.client.get(path, headers=secretary)).status_code == 403, path
        assert (await roster.api.client.get(path, headers=auditor)).status_code == 200, path
    assert await roster.api.event_count() == before
    # Their own branch is theirs.
    own = await roster.api.client.get("/v1/members/m-a", headers=secretary)
    assert own.status_code == 200
    # A member reads their own record and nobody else's.
    member = roster.api.auth("member", member_id="m-a", subject="m-a")
    assert (await roster.api.client.get("/v1/members/m-a", headers=member)).status_code == 200
    assert (await roster.api.client.get("/v1/members/m-b", headers=member)).status_code == 403


async def test_member_stream_validates_against_the_committed_schemas(
    roster: RosterClient, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await roster.enrol("m-1", standing="probationary", number="55550001")
    await roster.enrol("m-2", number="55550002")
    await roster.post(
        "/v1/branches/nde-b1/committee",
        {
            "secretary_id": "m-2",
            "member_ids": ["m-2"],
            "term_starts_on": "2010-05-10",
            "term_ends_on": "2013-05-09",
            "elected_on": "2010-05-10",
        },
    )
    await roster.post(
        "/v1/members/m-1/probation-extension",
        {"months": 6, "reason": "x", "decided_on": "2011-04-21"},
    )
    await roster.post(
        "/v1/members/m-1/plaques",
        {"plaque_id": "p", "kind": "dormitory", "dormitory": "8-1", "issued_on": "2010-09-01"},
    )
    total = await roster.api.event_count()
    key = f"{stream_prefix}:member"

    async def all_published() -> bool:
        return int(await redis_client.xlen(key)) == total

    await wait_until(all_published, what="the relay")
    types = set()
    for _, fields in await redis_client.xrange(key):
        envelope = json.loads(fields[b"envelope"])
        spec = CATALOGUE.spec(envelope["type"])
        schema = json.loads((SCHEMA_DIR / event_schema_name(spec)).read_text())
        jsonschema.validate(envelope, schema, cls=jsonschema.Draft202012Validator)
        types.add(envelope["type"])
    assert {
        "org.unit_registered",
        "member.enrolled",
        "branch.committee_elected",
        "member.probation_extended",
        "plaque.issued",
    } <= types


async def test_performance_follows_closed_assessments(
    roster: RosterClient, pool: Any, stream_prefix: str, redis_client: redis.Redis
) -> None:
    for member_id in ("m-1", "m-2", "m-3"):
        await roster.enrol(member_id, number=f"6666{member_id[-1]}000")
    # A scoring service publishes a closed assessment on the score stream.
    schema = f"t_{uuid4().hex[:12]}"
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
    scoring = EventStore(pool, schema, signer=signer("scoring"), source="scoring")
    closed = AssessmentClosed(
        branch_id="nde-b1",
        period_id="2010",
        regulation_id="nde-2010",
        regulation_version=1,
        closed_at=datetime(2010, 12, 31, 8, tzinfo=UTC),
        revision=1,
        results=[
            AssessmentResult(member_id=m, total=t, rank=r, grade=g)
            for m, t, r, g in (
                ("m-1", "95", 1, "excellent"),
                ("m-2", "85", 2, "qualified"),
                ("m-3", "55", 3, "unqualified"),
                ("m-unknown", "50", 4, "unqualified"),
            )
        ],
        excellent=["m-1"],
        lagging=["m-3", "m-unknown"],
    )
    try:
        await scoring.append(
            StreamAppend(
                "assessment-nde-b1-2010",
                [NewEvent.from_payload(closed, occurred_at=closed.closed_at, branch_id="nde-b1")],
            ),
            metadata=EventMetadata("scoring", "system"),
        )
        relay = Relay(
            store=scoring, redis_client=redis_client, source="scoring", prefix=stream_prefix
        )
        await relay.publish_once()

        async def verdicts_recorded() -> bool:
            record = await roster.get("/v1/members/m-3", as_of="2011-01-01")
            return record["categories"]["performance"] == "lagging"  # type: ignore[no-any-return]

        await wait_until(verdicts_recorded, what="the verdict of the assessment")
        m1 = await roster.get("/v1/members/m-1", as_of="2011-01-01")
        assert m1["categories"]["performance"] == "excellent"
        history = [h for h in m1["category_history"] if h["dimension"] == "performance"]
        assert history[-1]["source"] == "assessment"
        assert (await roster.get("/v1/members/m-2", as_of="2011-01-01"))["categories"][
            "performance"
        ] == "neither"
        # Redelivered (Redis lost it and it came again): recorded once.
        before = await roster.api.event_count()
        await redis_client.delete(f"{stream_prefix}:relay:scoring")
        await relay.publish_once()
        await asyncio.sleep(1.0)
        assert await roster.api.event_count() == before
    finally:
        await scoring.close()
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def test_rebuilt_read_models_equal_the_live_ones(roster: RosterClient) -> None:
    await enrol_branch_of_forty(roster)
    await roster.post(
        "/v1/members/m-02/moves", {"group_id": "nde-b1-g2", "effective_on": "2010-09-01"}
    )
    context = roster.api.context
    tables = ("units", "members", "member_categories", "member_placements", "pairings")

    async def dump() -> dict[str, list[Any]]:
        return {
            t: sorted(
                (
                    tuple(r)
                    for r in await context.pool.fetch(f'SELECT * FROM "{context.schema}".{t}')
                ),
                key=repr,
            )
            for t in tables
        }

    live = await dump()
    assert context.local_projector is not None
    applied = await context.local_projector.rebuild()
    assert applied == await roster.api.event_count()
    assert await dump() == live
