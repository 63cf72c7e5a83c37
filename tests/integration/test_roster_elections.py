"""Elections, conversion votes and Party-member guides through the roster's HTTP API, against the
real PostgreSQL and Redis, entered late: the clock says 2026, the meetings were held in 2010.
Every event is dated by its business date, a refused command appends nothing, and the read
models (a fold of the log, equal to a rebuild) show the election, its committee and the guides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from runtime.service import rebuild_read_models
from services.roster.service import DEFINITION as ROSTER
from tests.conftest import REDIS_URL
from tests.support.apps import Api, SettableClock, running, service_settings
from tests.support.roster import RosterClient

ZONE = ZoneInfo("Asia/Shanghai")
FULL = [f"f{i:02d}" for i in range(1, 11)]  # f01 … f10


@pytest.fixture
async def roster(
    database_url: str, schema_name: str, stream_prefix: str, redis_client: Any
) -> AsyncIterator[RosterClient]:
    settings = service_settings(database_url, schema_name, stream_prefix, REDIS_URL)
    clock = SettableClock()
    clock.now = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # history typed in sixteen years late
    async with running(ROSTER, settings, clock) as api:
        client = RosterClient(api)
        await client.organisation()
        for n, member_id in enumerate(FULL):
            await client.enrol(member_id, number=f"2007{n:04d}", enrolled_on="2009-09-01")
        await client.enrol(
            "p1",
            standing="probationary",
            number="20090001",
            probation_started_on="2009-09-10",
            enrolled_on="2009-09-10",
        )
        await client.enrol("d1", number="20070099", enrolled_on="2009-09-01")
        await client.enrol("m-b2", "nde-b2", number="20070201", enrolled_on="2009-09-01")
        yield client


def business(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), ZONE)


async def log_of(api: Api, *types: str) -> list[dict[str, Any]]:
    auditor = api.auth("auditor")
    page = await api.client.get("/v1/audit/events", params={"type": list(types)}, headers=auditor)
    assert page.status_code == 200, page.text
    return page.json()["events"]  # type: ignore[no-any-return]


async def refused(roster: RosterClient, path: str, body: dict[str, Any], rule: str) -> str:
    before = await roster.api.event_count()
    response = await roster.api.client.post(path, json=body, headers=roster.admin)
    assert response.status_code == 409, response.text
    assert response.json()["rule"] == rule, response.json()
    assert await roster.api.event_count() == before  # nothing recorded
    return str(response.json()["detail"])


ROUND_ONE = {
    "election_id": "el-2010",
    "held_on": "2010-05-10",
    "seats": 3,
    "candidates": ["f01", "f02", "f03", "f04"],
    "present": [*FULL, "p1", "d1"],
    "ballots_cast": 10,
    # 10 present with a vote: more than 5 elects. f01 9, f02 8; f03 and f04 tie at 6 for the
    # third seat. 9 + 8 + 6 + 6 = 29 ≤ 10 ballots × 3 seats.
    "tally": {"f01": 9, "f02": 8, "f03": 6, "f04": 6},
}


async def test_an_election_entered_late_is_dated_by_its_meeting(roster: RosterClient) -> None:
    api = roster.api
    # d1 came under 留党察看 on 2010-03-01 for a year; the measure needs its end (422)
    discipline = {
        "measure": "probation_within_party",
        "decided_on": "2010-03-01",
        "reason": "违反党的纪律",
    }
    before = await api.event_count()
    invalid = await api.client.post(
        "/v1/members/d1/discipline", json=discipline, headers=roster.admin
    )
    assert invalid.status_code == 422, invalid.text
    assert [e["field"] for e in invalid.json()["errors"]] == ["body.lasts_until"]
    assert await api.event_count() == before
    await roster.post("/v1/members/d1/discipline", {**discipline, "lasts_until": "2011-03-01"})

    # Entitled on 2010-05-10: f01–f10 = 10 (p1 is probationary, d1 under 留党察看).
    # 8 of them present (and p1, d1): 8 > 10 × 4/5 = 8 is false → refused, nothing recorded.
    detail = await refused(
        roster,
        "/v1/branches/nde-b1/elections",
        {**ROUND_ONE, "present": [*FULL[:8], "p1", "d1"], "ballots_cast": 8},
        "election_quorum",
    )
    assert "8 of the 10 members entitled to vote" in detail
    # 3 seats need ceil(3 × 1.2) = 4 candidates
    await refused(
        roster,
        "/v1/branches/nde-b1/elections",
        {**ROUND_ONE, "candidates": FULL[:3], "tally": dict.fromkeys(FULL[:3], 9)},
        "candidate_margin",
    )
    await refused(
        roster,
        "/v1/branches/nde-b1/elections",
        {
            **ROUND_ONE,
            "candidates": ["f01", "f02", "f03", "p1"],
            "tally": dict.fromkeys(["f01", "f02", "f03", "p1"], 6),
        },
        "candidate_not_eligible",
    )
    malformed = await api.client.post(
        "/v1/branches/nde-b1/elections",
        json={**ROUND_ONE, "tally": {"f01": 9, "f02": 8, "f03": 6}},
        headers=roster.admin,
    )
    assert malformed.status_code == 422
    assert malformed.json()["errors"][0]["field"] == "body.tally"

    # the first round: a tie for the third seat; no committee yet
    secretary = api.auth("branch_secretary", branches=["nde-b1"], subject="secretary-b1")
    first = await roster.post("/v1/branches/nde-b1/elections", ROUND_ONE, secretary, expect=201)
    assert first["id"] == "el-2010"
    assert await roster.get("/v1/branches/nde-b1/committee") is None
    # the second round a week later, between f03 and f04 for the one seat left
    second = await roster.post(
        "/v1/branches/nde-b1/elections",
        {
            "round_of": "el-2010",
            "held_on": "2010-05-17",
            "candidates": ["f03", "f04"],
            "present": FULL,
            "ballots_cast": 10,
            "tally": {"f03": 7, "f04": 3},  # 7 > 10/2
            "secretary_id": "f01",
        },
        secretary,
        expect=201,
    )
    second_id = second["id"]
    assert second_id.startswith("e-")

    # the log: each event at midnight of its meeting in the university's zone, not in 2026
    held, later, committee = await log_of(api, "branch.election_held", "branch.committee_elected")
    assert (held["type"], later["type"], committee["type"]) == (
        "branch.election_held",
        "branch.election_held",
        "branch.committee_elected",
    )
    assert datetime.fromisoformat(held["occurred_at"]) == business("2010-05-10")
    assert datetime.fromisoformat(later["occurred_at"]) == business("2010-05-17")
    assert datetime.fromisoformat(committee["occurred_at"]) == business("2010-05-17")
    assert datetime.fromisoformat(held["recorded_at"]).year == 2026
    assert held["data"]["entitled"] == 10
    assert held["data"]["entitled_ids"] == FULL
    assert held["data"]["present_not_entitled"] == ["p1", "d1"]
    assert (held["data"]["tied"], held["data"]["seats_for_next_round"]) == (["f03", "f04"], 1)
    assert held["actor"] == {"id": "secretary-b1", "role": "branch_secretary"}
    assert committee["data"]["member_ids"] == ["f01", "f02", "f03"]
    assert committee["data"]["election_id"] == second_id

    # the read models: both rounds with their results, the committee that followed
    elections = await roster.get("/v1/branches/nde-b1/elections")
    assert [(e["election_id"], e["round"], e["elected"]) for e in elections] == [
        ("el-2010", 1, ["f01", "f02"]),
        (second_id, 2, ["f03"]),
    ]
    assert elections[0]["tally"] == ROUND_ONE["tally"]
    assert elections[0]["committee"] is None
    assert elections[1]["committee"] == {
        "secretary_id": "f01",
        "member_ids": ["f01", "f02", "f03"],
        "term_starts_on": "2010-05-17",
        "term_ends_on": "2013-05-17",
        "elected_on": "2010-05-17",
    }
    current = await roster.get("/v1/branches/nde-b1/committee")
    assert (current["secretary_id"], current["election_id"]) == ("f01", second_id)

    # a further round of a round that had no tie is refused
    await refused(
        roster,
        "/v1/branches/nde-b1/elections",
        {**ROUND_ONE, "election_id": "el-x", "round_of": second_id, "seats": None},
        "round_not_needed",
    )
    await assert_rebuild_equal(api)


async def test_a_conversion_vote_is_counted_against_the_electorate(roster: RosterClient) -> None:
    await roster.post(
        "/v1/members/d1/discipline",
        {
            "measure": "probation_within_party",
            "decided_on": "2010-03-01",
            "reason": "违反党的纪律",
            "lasts_until": "2011-03-01",
        },
    )
    path = "/v1/members/p1/conversion"
    # p1's probation ended on 2010-09-10. Entitled on 2010-09-15: f01–f10 = 10 (d1 under
    # 留党察看, p1 the member concerned). 5 present: 5 > 10/2 = 5 is false → no quorum.
    await refused(
        roster,
        path,
        {
            "decided_on": "2010-09-15",
            "vote": {"present": FULL[:5], "yes": 5, "no": 0, "abstain": 0},
        },
        "vote_quorum",
    )
    # 8 present, 5 yes: 5 > 10/2 = 5 is false → refused (5 of 8 present is not enough)
    await refused(
        roster,
        path,
        {
            "decided_on": "2010-09-15",
            "vote": {"present": FULL[:8], "yes": 5, "no": 3, "abstain": 0},
        },
        "conversion_vote_failed",
    )
    # 8 present and d1, 6 yes: 6 > 5 → converted, the vote in the event
    await roster.post(
        path,
        {
            "decided_on": "2010-09-15",
            "vote": {"present": [*FULL[:8], "d1"], "yes": 6, "no": 1, "abstain": 1},
        },
    )
    [converted] = await log_of(roster.api, "member.converted")
    assert datetime.fromisoformat(converted["occurred_at"]) == business("2010-09-15")
    vote = converted["data"]["vote"]
    assert (vote["entitled"], vote["present_entitled"], vote["yes"]) == (10, 8, 6)
    assert vote["present_not_entitled"] == ["d1"]
    assert (vote["quorum"], vote["majority"]) == ("1/2", "1/2")
    record = await roster.get("/v1/members/p1", as_of="2010-09-20")
    assert record["standing"] == "full"
    await assert_rebuild_equal(roster.api)


async def test_guides_on_the_member_record_as_of_a_date(roster: RosterClient) -> None:
    api = roster.api
    guide = {
        "guide_id": "g-zhao",
        "name": "赵连长",
        "kind": "army_officer",
        "organisation": "济南军区某部",
        "phone": "0533-2780000",
        "registered_on": "2010-05-20",
    }
    secretary = api.auth("branch_secretary", branches=["nde-b1"], subject="secretary-b1")
    await roster.post("/v1/guides", guide, secretary, expect=201)
    # a committee member may not register a guide (a branch secretary or the offices may)
    response = await api.client.post(
        "/v1/guides",
        json={**guide, "guide_id": "g-other"},
        headers=api.auth("committee_member", branches=["nde-b1"]),
    )
    assert response.status_code == 403
    group = await roster.post(
        "/v1/guides/g-zhao/appointments",
        {
            "appointment_id": "ga-group",
            "branch_id": "nde-b1",
            "group_id": "nde-b1-g1",
            "term_starts_on": "2010-06-01",
            "term_ends_on": "2011-05-31",
        },
        secretary,
        expect=201,
    )
    assert group["id"] == "ga-group"
    direct = await roster.post(
        "/v1/guides/g-zhao/appointments",
        {
            "branch_id": "nde-b1",
            "member_ids": ["f01"],
            "term_starts_on": "2010-07-01",
            "term_ends_on": "2010-12-31",
        },
        secretary,
        expect=201,
    )
    await refused(
        roster,
        "/v1/guides/g-zhao/appointments",
        {
            "appointment_id": "ga-x",
            "branch_id": "nde-b1",
            "member_ids": ["m-b2"],
            "term_starts_on": "2010-07-01",
            "term_ends_on": "2010-12-31",
        },
        "appointee_not_in_branch",
    )
    await refused(
        roster,
        "/v1/guides/g-zhao/appointments",
        {
            "appointment_id": "ga-x",
            "branch_id": "nde-b1",
            "group_id": "nde-b2-g1",
            "term_starts_on": "2010-07-01",
            "term_ends_on": "2010-12-31",
        },
        "group_not_in_branch",
    )
    await roster.post(
        "/v1/guides/g-zhao/appointments/ga-group/end",
        {"ended_on": "2011-01-10", "reason": "调任外地"},
        secretary,
    )

    events = await log_of(api, "guide.registered", "guide.appointed", "guide.appointment_ended")
    assert [(e["type"], datetime.fromisoformat(e["occurred_at"])) for e in events] == [
        ("guide.registered", business("2010-05-20")),
        ("guide.appointed", business("2010-06-01")),
        ("guide.appointed", business("2010-07-01")),
        ("guide.appointment_ended", business("2011-01-10")),
    ]
    assert [e["branch_id"] for e in events] == [None, "nde-b1", "nde-b1", "nde-b1"]

    async def guides_of(member_id: str, day: str) -> list[tuple[str, str]]:
        record = await roster.get(f"/v1/members/{member_id}", as_of=day)
        return [(g["appointment_id"], g["appointed_to"]) for g in record["guides"]]

    # f02 is in group g1: guided through the group from 2010-06-01 until it ended 2011-01-10
    assert await guides_of("f02", "2010-05-31") == []
    assert await guides_of("f02", "2010-06-01") == [("ga-group", "group")]
    assert await guides_of("f02", "2011-01-09") == [("ga-group", "group")]
    assert await guides_of("f02", "2011-01-10") == []
    # f01: the group and, from 2010-07-01 to 2010-12-31, directly
    assert await guides_of("f01", "2010-08-01") == [
        ("ga-group", "group"),
        (direct["id"], "member"),
    ]
    assert await guides_of("f01", "2011-01-01") == [("ga-group", "group")]
    record = await roster.get("/v1/members/f01", as_of="2010-08-01")
    assert record["guides"][0]["name"] == "赵连长"
    assert "phone" not in record["guides"][0]  # the member record shows no guide's phone

    found = await roster.get("/v1/guides/g-zhao")
    assert (found["name"], found["kind"], found["phone"]) == (
        "赵连长",
        "army_officer",
        "0533-2780000",
    )
    assert [a["appointment_id"] for a in found["appointments"]] == ["ga-group", direct["id"]]
    assert found["appointments"][0]["ended_on"] == "2011-01-10"
    listed = await roster.get("/v1/branches/nde-b1/guides")
    assert [a["appointment_id"] for a in listed] == ["ga-group", direct["id"]]
    in_force = await roster.get("/v1/branches/nde-b1/guides", as_of="2011-02-01")
    assert in_force == []
    member_token = api.auth("member", member_id="f01")
    response = await api.client.get("/v1/guides/g-zhao", headers=member_token)
    assert response.status_code == 403
    await assert_rebuild_equal(api)


async def assert_rebuild_equal(api: Api) -> None:
    """`party rebuild`: the read models are a fold of the log."""
    context = api.context
    report = await rebuild_read_models(ROSTER, context.settings, context.pool)
    assert report.equal, "\n".join(report.examples)
    assert {"elections", "guides", "guide_appointments"} <= set(report.tables)
