"""Personal data (个人信息保护法) on the real PostgreSQL and Redis, through the services' APIs.

A member's name, student number, dormitory and bed — and a guide's name and phone — are sealed
under a key of that person alone before they are recorded: the log, the streams and every other
service hold only ciphertext, while the roster's views show them. Erasing a member who left,
once the retention period is over, destroys their key: the events stay, every chain still
verifies, the scores replay to the same numbers, a rebuild equals the live read models, and
every view shows the member as erased; nothing readable of them is left in any table or
stream. Logs carry none of it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as redis

from runtime.eventstore import verify_chain
from runtime.personal import ERASED, PersonalDataKeyMismatch, load_master_key
from runtime.service import rebuild_read_models
from services.activities.service import DEFINITION as ACTIVITIES
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from services.scenario.load import CONSUMES
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.processes import ServiceProcesses, bearer
from tests.support.roster import RosterClient
from tests.support.stack import services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)

#: What is personal about the member who will be erased, and the guide: none of these strings
#: may be readable anywhere but the roster's views (and, once erased, not even there).
NAME, NUMBER, DORMITORY, BED = "欧阳晓明", "20071234", "7-519", "3"
NEW_DORMITORY, NEW_BED = "9-228", "4"
EMAIL = "ouyang.xiaoming@example.edu"
GUIDE_NAME, GUIDE_PHONE = "司马连长", "0533-2781234"
PERSONAL = (NAME, NUMBER, DORMITORY, NEW_DORMITORY, EMAIL, GUIDE_NAME, GUIDE_PHONE)


class Campus:
    def __init__(self, apis: dict[str, Api]) -> None:
        self.apis = apis
        self.roster = RosterClient(apis["roster"])
        self.admin = apis["roster"].auth("university_admin", subject="org-office")

    async def call(
        self, method: str, service: str, path: str, body: Any = None, **kwargs: Any
    ) -> httpx.Response:
        headers = kwargs.pop("headers", self.admin)
        return await self.apis[service].client.request(
            method, path, json=body, headers=headers, params=kwargs or None
        )

    async def ok(self, method: str, service: str, path: str, body: Any = None, **kw: Any) -> Any:
        response = await self.call(method, service, path, body, **kw)
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()

    async def settle(self) -> None:
        """Until every consumer has applied everything its producers recorded."""

        async def settled() -> bool:
            for name, producers in CONSUMES.items():
                if name == "roster":
                    continue  # it consumes closed assessments only: none here
                api = self.apis[name]
                applied = await api.context.pool.fetchval(
                    f'SELECT count(*) FROM "{api.context.schema}".inbox'
                )
                recorded = 0
                for producer in producers:
                    recorded += (await self.apis[producer].context.store.head())[0]
                if applied < recorded:
                    return False
            return True

        await wait_until(settled, within=60, what="every consumer caught up")


@pytest.fixture
async def campus(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[Campus]:
    async with services(
        [ROSTER, ACTIVITIES, SCORING, NOTIFY], database_url, stream_prefix, REDIS_URL
    ) as apis:
        yield Campus(apis)


async def branch_with_two_members(c: Campus) -> None:
    r = c.roster
    await r.organisation()
    await r.enrol(
        "m-ouyang",
        name=NAME,
        number=NUMBER,
        dormitory=DORMITORY,
        bed=BED,
        enrolled_on="2010-05-04",
    )
    await r.enrol("m-keeps", name="李四", enrolled_on="2010-05-04")
    await r.post(
        "/v1/members/m-ouyang/moves",
        {"dormitory": NEW_DORMITORY, "bed": NEW_BED, "effective_on": "2010-09-01"},
    )
    await r.post(
        "/v1/members/m-ouyang/plaques",
        {
            "plaque_id": "pl-1",
            "kind": "bed",
            "dormitory": NEW_DORMITORY,
            "bed": NEW_BED,
            "issued_on": "2010-09-10",
        },
    )
    await r.post(
        "/v1/members/m-ouyang/responsibility-space",
        {"dormitory": NEW_DORMITORY, "effective_on": "2010-09-11"},
    )
    # A meeting both attended: it scores, and the score must replay the same after erasure.
    await c.ok(
        "POST",
        "activities",
        "/v1/activities",
        {
            "activity_id": "a1",
            "kind": "all_member_meeting",
            "title": "全体党员大会",
            "branch_id": "nde-b1",
            "place": "301",
            "starts_at": "2010-06-10T19:00:00+08:00",
        },
    )
    await c.settle()
    await c.ok(
        "POST",
        "activities",
        "/v1/activities/a1/attendance",
        {
            "lines": [
                {"member_id": "m-ouyang", "status": "present"},
                {"member_id": "m-keeps", "status": "present"},
            ]
        },
    )
    await c.ok("PUT", "notify", "/v1/recipients/m-ouyang", {"channels": ["email"], "email": EMAIL})
    await c.settle()


async def every_row_as_text(pool: asyncpg.Pool, schema: str) -> str:
    """Every row of every table of a schema, as text (what a stolen dump would show)."""
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    text = []
    for table in tables:
        rows = await pool.fetch(f'SELECT t::text AS row FROM "{schema}"."{table[0]}" t')
        text += [r["row"] for r in rows]
    return "\n".join(text)


async def every_stream_as_text(client: redis.Redis, prefix: str) -> str:
    text = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        if await client.type(key) == b"stream":
            text += [repr(fields) for _, fields in await client.xrange(key)]
    return "\n".join(text)


def decoded(text: str) -> str:
    """Rows print JSON with \\uXXXX escapes at times: look for the values both ways."""
    return text + "\n" + text.encode().decode("unicode_escape", errors="ignore")


async def score_of(c: Campus, member_id: str) -> tuple[str, list[tuple[str, str]]]:
    [period] = await c.ok("GET", "scoring", f"/v1/members/{member_id}/score", period_id="2010")
    return period["total"], sorted((e["rule_id"], e["points"]) for e in period["ledger"])


async def test_personal_fields_are_sealed_everywhere_but_the_roster_views(
    campus: Campus, redis_client: redis.Redis, stream_prefix: str
) -> None:
    c = campus
    await branch_with_two_members(c)
    await c.roster.post(
        "/v1/guides",
        {
            "guide_id": "guide-1",
            "name": GUIDE_NAME,
            "kind": "army_officer",
            "organisation": "某部三连",
            "phone": GUIDE_PHONE,
            "registered_on": "2010-05-15",
        },
    )

    # The roster's views show them …
    member = await c.ok("GET", "roster", "/v1/members/m-ouyang")
    assert (member["name"], member["student_number"]) == (NAME, NUMBER)
    assert (member["dormitory"], member["bed"]) == (NEW_DORMITORY, NEW_BED)
    guide = await c.ok("GET", "roster", "/v1/guides/guide-1")
    assert (guide["name"], guide["phone"]) == (GUIDE_NAME, GUIDE_PHONE)

    # … while the log holds them sealed (pd1:…), each under the person's own key.
    roster = c.apis["roster"].context
    enrolled = await roster.pool.fetchval(
        f"SELECT data FROM \"{roster.schema}\".events WHERE type = 'member.enrolled' "
        "AND data->>'member_id' = 'm-ouyang'"
    )
    data = json.loads(enrolled)
    for field in ("name", "student_number", "dormitory", "bed"):
        assert data[field].startswith("pd1:"), (field, data[field])
    # A student number is claimed by its keyed hash, not by itself.
    claims = await roster.pool.fetch(f'SELECT value FROM "{roster.schema}".unique_claims')
    assert claims
    assert all(r["value"].startswith("bi1:") for r in claims)

    # Nothing readable in the log and claims of the roster, in any other service's tables
    # (their copies of the organisation), or on any stream.
    everywhere = [
        await every_row_as_text(c.apis[name].context.pool, c.apis[name].context.schema)
        for name in ("activities", "scoring")
    ]
    roster_record = await roster.pool.fetch(
        f'SELECT data::text AS d FROM "{roster.schema}".events '
        f'UNION ALL SELECT value FROM "{roster.schema}".unique_claims'
    )
    everywhere.append("\n".join(r["d"] for r in roster_record))
    everywhere.append(await every_stream_as_text(redis_client, stream_prefix))
    for text in map(decoded, everywhere):
        for value in PERSONAL:
            if value == EMAIL:
                continue  # notify keeps the address the member gave it, to send mail to
            assert value not in text, value


async def test_an_erased_member_leaves_scores_chains_and_rebuilds_intact(
    campus: Campus, redis_client: redis.Redis, stream_prefix: str
) -> None:
    c = campus
    await branch_with_two_members(c)
    # Present at one all-member meeting under the built-in regulation: see the ledger below.
    before = await score_of(c, "m-ouyang")
    kept_before = await score_of(c, "m-keeps")

    # Not while they are a member, not before the retention period after the transfer is over
    # (1826 days by default: from 2010-07-01, five years with one 29 February, 2015-07-01),
    # not by a branch secretary,
    # and not by another school's admin. Each refusal names why and changes nothing.
    async def refused(body: dict[str, Any], status: int, rule: str, **kw: Any) -> None:
        head = (await c.apis["roster"].context.store.head())[0]
        response = await c.call("POST", "roster", "/v1/members/m-ouyang/erasure", body, **kw)
        assert response.status_code == status, response.text
        if rule:
            assert response.json()["rule"] == rule, response.text
        assert (await c.apis["roster"].context.store.head())[0] == head

    erasure = {"erased_on": "2015-07-01", "reason": "五年保存期满"}
    await refused(erasure, 409, "member_not_transferred")
    await c.roster.post(
        "/v1/members/m-ouyang/transfer-out",
        {"destination": "某部队党委", "transferred_on": "2010-07-01", "reason": "graduation"},
    )
    await refused({**erasure, "erased_on": "2015-06-30"}, 409, "retention_not_over")
    secretary = c.apis["roster"].auth(
        "branch_secretary", branches=["nde-b1"], member_id="m-keeps", subject="m-keeps"
    )
    await refused(erasure, 403, "", headers=secretary)
    elsewhere = c.apis["roster"].auth("school_admin", schools=["hist"], subject="hist-office")
    await refused(erasure, 403, "", headers=elsewhere)

    erased = await c.call("POST", "roster", "/v1/members/m-ouyang/erasure", erasure)
    assert erased.status_code == 200, erased.text
    again = await c.call("POST", "roster", "/v1/members/m-ouyang/erasure", erasure)
    assert again.status_code == 409
    assert again.json()["rule"] == "member_erased"
    await c.settle()

    # Every view shows the member as erased; the other member is as they were.
    member = await c.ok("GET", "roster", "/v1/members/m-ouyang")
    assert member["erased_on"] == "2015-07-01"
    for field in ("name", "student_number", "dormitory", "bed", "space_dormitory"):
        assert member[field] == ERASED, field
    assert all(p["dormitory"] == ERASED for p in member["plaques"])
    listed = {m["member_id"]: m for m in await c.ok("GET", "roster", "/v1/branches/nde-b1/members")}
    assert listed["m-ouyang"]["name"] == ERASED
    assert listed["m-keeps"]["name"] == "李四"
    # notify forgot where to write to them
    notify = c.apis["notify"].context
    assert not await notify.pool.fetchval(
        f"SELECT count(*) FROM \"{notify.schema}\".recipients WHERE recipient_id = 'm-ouyang'"
    )

    # The events stay, and every chain still verifies.
    for name in ("roster", "activities", "scoring", "notify"):
        context = c.apis[name].context
        report = await verify_chain(
            context.pool, context.schema, keyring=context.keyring, source=name
        )
        assert report.intact, (name, report.reason)
    roster = c.apis["roster"].context
    assert (
        await roster.pool.fetchval(
            f"SELECT count(*) FROM \"{roster.schema}\".events WHERE data->>'member_id' = 'm-ouyang'"
        )
        == 6
    )  # enrolled, moved, plaque, space, transferred out, erased

    # The scores replay to the same numbers: scoring's read models folded again from its log
    # and what it consumed equal the live ones, and the member's score is what it was.
    for definition in (ROSTER, SCORING, ACTIVITIES, NOTIFY):
        context = c.apis[definition.name].context
        rebuilt = await rebuild_read_models(definition, context.settings, context.pool)
        assert rebuilt.equal, (definition.name, rebuilt.examples)
    assert await score_of(c, "m-ouyang") == before
    assert await score_of(c, "m-keeps") == kept_before
    # And a rebuild after the erasure reads the erased member as erased (the key is gone).
    member = await c.ok("GET", "roster", "/v1/members/m-ouyang")
    assert member["name"] == ERASED

    # Nothing readable of them is left in any table of any service, nor on any stream: their
    # key is destroyed and their student number's claim released.
    for name in ("roster", "activities", "scoring", "notify"):
        context = c.apis[name].context
        text = decoded(await every_row_as_text(context.pool, context.schema))
        for value in (NAME, NUMBER, DORMITORY, NEW_DORMITORY, EMAIL):
            assert value not in text, (name, value)
    key = await roster.pool.fetchrow(
        f'SELECT wrapped_key, erased_at FROM "{roster.schema}".personal_keys '
        "WHERE subject_id = 'm-ouyang'"
    )
    assert key["wrapped_key"] is None
    assert key["erased_at"] is not None
    text = decoded(await every_stream_as_text(redis_client, stream_prefix))
    assert not any(value in text for value in (NAME, NUMBER, DORMITORY, NEW_DORMITORY))

    # The student number is free again: the person, back years later, is a new member.
    await c.roster.enrol(
        "m-back",
        name=NAME,
        number=NUMBER,
        enrolled_on="2016-09-01",
        expected_graduation="2019-07-01",
    )


async def test_a_personal_data_key_that_does_not_fit_is_refused_before_anything_is_folded(
    campus: Campus, tmp_path: Path
) -> None:
    """Another machine's key, or one created afresh over a lost one, opens nobody's key: the
    roster refuses it (at start, and before a rebuild) instead of folding everyone as erased
    or skipping every event."""
    c = campus
    await branch_with_two_members(c)
    roster = c.apis["roster"].context
    before = await every_row_as_text(roster.pool, roster.schema)
    wrong = tmp_path / "keys"
    load_master_key(wrong, create=True)
    settings = roster.settings.model_copy(
        update={"keys_dir": str(wrong), "create_missing_key": False}
    )
    with pytest.raises(PersonalDataKeyMismatch, match="does not open the key of m-"):
        await rebuild_read_models(ROSTER, settings, roster.pool)
    assert await every_row_as_text(roster.pool, roster.schema) == before
    member = await c.ok("GET", "roster", "/v1/members/m-ouyang")
    assert member["name"] == NAME


async def test_a_guide_is_erased_once_no_longer_appointed(campus: Campus) -> None:
    c = campus
    await c.roster.organisation()
    await c.roster.enrol("m-a", enrolled_on="2010-05-04")
    await c.roster.post(
        "/v1/guides",
        {
            "guide_id": "guide-1",
            "name": GUIDE_NAME,
            "kind": "army_officer",
            "organisation": "某部三连",
            "phone": GUIDE_PHONE,
            "registered_on": "2010-05-15",
        },
    )
    await c.roster.post(
        "/v1/guides/guide-1/appointments",
        {
            "appointment_id": "ap-1",
            "branch_id": "nde-b1",
            "member_ids": ["m-a"],
            "term_starts_on": "2010-06-01",
            "term_ends_on": "2011-05-31",
        },
    )
    # The last day guided is 2011-05-31; 1826 days later (two 29 Februaries in between) is
    # 2016-05-30.
    early = await c.call(
        "POST", "roster", "/v1/guides/guide-1/erasure", {"erased_on": "2016-05-29", "reason": "x"}
    )
    assert early.status_code == 409, early.text
    assert early.json()["rule"] == "retention_not_over"
    school = c.apis["roster"].auth("school_admin", schools=["nde"], subject="nde-office")
    forbidden = await c.call(
        "POST",
        "roster",
        "/v1/guides/guide-1/erasure",
        {"erased_on": "2016-05-30", "reason": "x"},
        headers=school,
    )
    assert forbidden.status_code == 403
    await c.ok(
        "POST",
        "roster",
        "/v1/guides/guide-1/erasure",
        {"erased_on": "2016-05-30", "reason": "五年保存期满"},
    )
    guide = await c.ok("GET", "roster", "/v1/guides/guide-1")
    assert (guide["name"], guide["phone"], guide["erased_on"]) == (ERASED, ERASED, "2016-05-30")
    roster = c.apis["roster"].context
    text = decoded(await every_row_as_text(roster.pool, roster.schema))
    assert GUIDE_NAME not in text
    assert GUIDE_PHONE not in text
    report = await rebuild_read_models(ROSTER, roster.settings, roster.pool)
    assert report.equal, report.examples


async def test_student_numbers_stay_unique_without_being_stored(campus: Campus) -> None:
    c = campus
    await c.roster.organisation()
    await c.roster.enrol("m-first", number=NUMBER)
    taken = await c.call(
        "POST",
        "roster",
        "/v1/members",
        {
            "member_id": "m-second",
            "branch_id": "nde-b1",
            "student_number": NUMBER,
            "name": "张三",
            "standing": "full",
            "joined_on": "2009-06-01",
            "expected_graduation": "2012-07-01",
            "enrolled_on": "2010-05-04",
        },
    )
    assert taken.status_code == 409, taken.text
    # The refusal tells neither whose the number is nor the number.
    assert "m-first" not in taken.text
    assert NUMBER not in taken.text

    # An id that holds the student number is refused: an id cannot be erased.
    holding = await c.call(
        "POST",
        "roster",
        "/v1/members",
        {
            "member_id": f"m{NUMBER}x",
            "branch_id": "nde-b1",
            "student_number": "20079999",
            "name": "张三",
            "standing": "full",
            "joined_on": "2009-06-01",
            "expected_graduation": "2012-07-01",
            "enrolled_on": "2010-05-04",
        },
    )
    assert holding.status_code == 201, holding.text  # another number inside is no matter
    bad = await c.call(
        "POST",
        "roster",
        "/v1/members",
        {
            "member_id": "m20078888",
            "branch_id": "nde-b1",
            "student_number": "20078888",
            "name": "张三",
            "standing": "full",
            "joined_on": "2009-06-01",
            "expected_graduation": "2012-07-01",
            "enrolled_on": "2010-05-04",
        },
    )
    assert bad.status_code == 422, bad.text
    assert bad.json()["errors"][0]["field"] == "member_id"
    # Left out, the id is opaque.
    made = await c.roster.post(
        "/v1/members",
        {
            "branch_id": "nde-b1",
            "student_number": "20077777",
            "name": "王五",
            "standing": "full",
            "joined_on": "2009-06-01",
            "expected_graduation": "2012-07-01",
            "enrolled_on": "2010-05-04",
        },
    )
    assert made["id"].startswith("m-")
    assert "7777" not in made["id"]


async def test_claims_recorded_plain_before_are_indexed_at_start(campus: Campus) -> None:
    c = campus
    await c.roster.organisation()
    roster = c.apis["roster"].context
    # A claim as the roster recorded it before student numbers were indexed.
    await roster.pool.execute(
        f'INSERT INTO "{roster.schema}".unique_claims VALUES '
        "('student_number', '20060001', 'member-m-old', now())"
    )
    assert ROSTER.on_start is not None
    await ROSTER.on_start(roster)
    values = [
        r["value"]
        for r in await roster.pool.fetch(f'SELECT value FROM "{roster.schema}".unique_claims')
    ]
    assert values
    assert all(v.startswith("bi1:") for v in values)
    response = await c.call(
        "POST",
        "roster",
        "/v1/members",
        {
            "member_id": "m-new",
            "branch_id": "nde-b1",
            "student_number": "20060001",
            "name": "张三",
            "standing": "full",
            "joined_on": "2009-06-01",
            "expected_graduation": "2012-07-01",
            "enrolled_on": "2010-05-04",
        },
    )
    assert response.status_code == 409, response.text


async def test_the_logs_of_a_running_roster_carry_no_personal_data(
    database_url: str, stream_prefix: str, tmp_path: Path
) -> None:
    """The roster as a real process at DEBUG: every command above, refusals included, and not
    one log line holds a name, student number, dormitory, phone or e-mail."""
    processes = ServiceProcesses(
        database_url,
        REDIS_URL,
        stream_prefix,
        tmp_path,
        extra_env={"PARTY_LOG_LEVEL": "DEBUG", "PARTY_DB_SCHEMA": f"{stream_prefix}_roster"},
    )
    processes.start_all(["roster"])
    try:
        admin = bearer("university_admin")
        async with httpx.AsyncClient(base_url=processes.url("roster"), headers=admin) as client:

            async def post(path: str, body: dict[str, Any]) -> httpx.Response:
                return await client.post(path, json=body)

            for unit in (
                {"unit_id": "nde", "kind": "school", "name": "国防教育学院"},
                {
                    "unit_id": "nde-b1",
                    "kind": "branch",
                    "name": "第一支部",
                    "parent_id": "nde",
                    "branch_kind": "student",
                },
            ):
                assert (await post("/v1/units", unit)).status_code == 201
            enrolment = {
                "member_id": "m-ouyang",
                "branch_id": "nde-b1",
                "student_number": NUMBER,
                "name": NAME,
                "dormitory": DORMITORY,
                "bed": BED,
                "standing": "full",
                "joined_on": "2009-06-01",
                "expected_graduation": "2012-07-01",
                "enrolled_on": "2010-05-04",
            }
            assert (await post("/v1/members", enrolment)).status_code == 201
            # A refusal (the number taken) and a bad request (a dormitory far too long).
            taken = await post("/v1/members", {**enrolment, "member_id": "m-other"})
            assert taken.status_code == 409
            bad = await post("/v1/members", {**enrolment, "dormitory": NEW_DORMITORY * 100})
            assert bad.status_code == 422
            moved = await post(
                "/v1/members/m-ouyang/moves",
                {"dormitory": NEW_DORMITORY, "effective_on": "2010-09-01"},
            )
            assert moved.status_code == 200, moved.text
            guide = {
                "guide_id": "guide-1",
                "name": GUIDE_NAME,
                "kind": "army_officer",
                "organisation": "某部三连",
                "phone": GUIDE_PHONE,
                "registered_on": "2010-05-15",
            }
            assert (await post("/v1/guides", guide)).status_code == 201
            await post(
                "/v1/members/m-ouyang/transfer-out",
                {"destination": "某部", "transferred_on": "2010-07-01"},
            )
            erased = await post(
                "/v1/members/m-ouyang/erasure", {"erased_on": "2016-01-01", "reason": "期满"}
            )
            assert erased.status_code == 200, erased.text
            assert (await client.get("/v1/members/m-ouyang")).status_code == 200
    finally:
        processes.stop_all()
        await _drop_schema(database_url, f"{stream_prefix}_roster")
    text = decoded((tmp_path / "roster.log").read_text())
    assert "service started" in text  # the log is the service's, at DEBUG
    for value in PERSONAL:
        assert value not in text, value


async def _drop_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
