"""Every rule of the roster refuses what it must, says which rule and why, and appends nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.roster.service import DEFINITION as ROSTER
from tests.conftest import REDIS_URL
from tests.support.apps import Api, running, service_settings
from tests.support.roster import RosterClient


@pytest.fixture
async def roster(
    database_url: str, schema_name: str, stream_prefix: str, redis_client: Any
) -> AsyncIterator[RosterClient]:
    settings = service_settings(database_url, schema_name, stream_prefix, REDIS_URL)
    async with running(ROSTER, settings) as api:
        yield RosterClient(api)


@pytest.fixture
async def world(roster: RosterClient) -> RosterClient:
    await roster.organisation()
    await roster.enrol("m-full-1", number="20070101")
    await roster.enrol("m-full-2", number="20070102")
    await roster.enrol("m-lag-1", number="20080101")
    await roster.enrol("m-prob-1", standing="probationary", number="20090101")
    await roster.enrol(
        "m-prob-ext",
        standing="probationary",
        number="20090102",
        probation_started_on="2009-01-10",
        enrolled_on="2009-02-01",
    )
    await roster.post(
        "/v1/members/m-prob-ext/probation-extension",
        {"months": 6, "reason": "继续考察", "decided_on": "2010-01-12"},
    )
    await roster.enrol("m-b2", "nde-b2", number="20070201")
    await roster.enrol("m-gone", number="20060101")
    await roster.post(
        "/v1/members/m-gone/transfer-out",
        {"destination": "某部队党委", "transferred_on": "2010-06-25"},
    )
    await roster.post(
        "/v1/members/m-full-1/agreements",
        {"agreement_id": "agr-1", "academic_year": "2010-2011", "signed_on": "2010-05-15"},
    )
    await roster.post(
        "/v1/members/m-full-1/plaques",
        {
            "plaque_id": "plq-1",
            "kind": "bed",
            "dormitory": "8-312",
            "bed": "1",
            "issued_on": "2010-05-28",
        },
    )
    await roster.post(
        "/v1/branches/nde-b1/pairings",
        {
            "pairing_id": "pair-1",
            "mentor_id": "m-full-1",
            "mentee_id": "m-lag-1",
            "formed_on": "2010-05-20",
        },
    )
    await roster.post(
        "/v1/groups/nde-b1-g1/links",
        {
            "link_id": "link-1",
            "target_kind": "company",
            "target": "一连",
            "established_on": "2010-05-25",
        },
    )
    return roster


MEMBER = {
    "standing": "full",
    "joined_on": "2009-06-01",
    "expected_graduation": "2012-07-01",
    "enrolled_on": "2010-05-04",
    "name": "新党员",
}
COMMITTEE = {
    "secretary_id": "m-full-1",
    "member_ids": ["m-full-1", "m-full-2"],
    "term_starts_on": "2010-05-01",
    "term_ends_on": "2013-04-30",
    "elected_on": "2010-05-10",
}

CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    (
        "/v1/units",
        "unit twice",
        {
            "unit_id": "nde-b1",
            "kind": "branch",
            "name": "x",
            "parent_id": "nde",
            "branch_kind": "student",
        },
        "unit_exists",
        "unit nde-b1 is already registered",
    ),
    (
        "/v1/units",
        "unknown parent",
        {
            "unit_id": "x-b9",
            "kind": "branch",
            "name": "x",
            "parent_id": "nowhere",
            "branch_kind": "student",
        },
        "parent_unknown",
        "parent unit nowhere is not registered",
    ),
    (
        "/v1/units",
        "group under a school",
        {"unit_id": "nde-g9", "kind": "group", "name": "x", "parent_id": "nde"},
        "parent_kind",
        "a group belongs to a branch, and nde is a school",
    ),
    (
        "/v1/units",
        "school with a parent",
        {"unit_id": "s2", "kind": "school", "name": "x", "parent_id": "nde"},
        "school_has_no_parent",
        "has no parent unit",
    ),
    (
        "/v1/units",
        "branch without kind",
        {"unit_id": "nde-b9", "kind": "branch", "name": "x", "parent_id": "nde"},
        "branch_kind_required",
        "student or a faculty branch",
    ),
    (
        "/v1/branches/nde-b1/committee",
        "secretary off the committee",
        {**COMMITTEE, "secretary_id": "m-lag-1"},
        "secretary_on_committee",
        "the secretary must be one of the committee's members",
    ),
    (
        "/v1/branches/nde-b1/committee",
        "member of another branch",
        {**COMMITTEE, "member_ids": ["m-full-1", "m-b2"]},
        "committee_member_not_in_branch",
        "member m-b2 is not a member of branch nde-b1",
    ),
    (
        "/v1/branches/nde-b1/committee",
        "six members",
        {
            **COMMITTEE,
            "member_ids": ["m-full-1", "m-full-2", "m-lag-1", "m-prob-1", "m-prob-ext", "m-x"],
        },
        "committee_size",
        "at most 5 members, not 6",
    ),
    (
        "/v1/branches/nde-b1/committee",
        "a four-year term",
        {**COMMITTEE, "term_ends_on": "2014-04-30"},
        "committee_term",
        "at most 3 years, until 2013-05-01",
    ),
    (
        "/v1/members",
        "student number taken",
        {**MEMBER, "branch_id": "nde-b1", "student_number": "20070101"},
        "unique_student_number",
        # … without saying whose (their record) or the number (personal data).
        "this student_number is already recorded for someone else",
    ),
    (
        "/v1/members",
        "group of another branch",
        {**MEMBER, "branch_id": "nde-b1", "student_number": "31000001", "group_id": "nde-b2-g1"},
        "group_not_in_branch",
        "Party group nde-b2-g1 is not a group of branch nde-b1",
    ),
    (
        "/v1/members",
        "full member without joined_on",
        {**MEMBER, "branch_id": "nde-b1", "student_number": "31000002", "joined_on": None},
        "joined_on_required",
        "a full member needs the date they became a full member",
    ),
    (
        "/v1/members",
        "probationary without start",
        {
            **MEMBER,
            "branch_id": "nde-b1",
            "student_number": "31000003",
            "joined_on": None,
            "standing": "probationary",
        },
        "probation_start_required",
        "a probationary member needs the date their probation began",
    ),
    (
        "/v1/members/m-full-1/categories",
        "standing by hand",
        {
            "dimension": "standing",
            "value": "probationary",
            "reason": "x",
            "effective_on": "2010-06-01",
        },
        "standing_changes_by_conversion",
        "standing changes only by conversion",
    ),
    (
        "/v1/members/m-full-1/categories",
        "no change",
        {
            "dimension": "performance",
            "value": "neither",
            "reason": "x",
            "effective_on": "2010-06-01",
        },
        "category_unchanged",
        "member m-full-1 already has performance neither",
    ),
    (
        "/v1/members/m-full-1/categories",
        "unknown value",
        {"dimension": "cadre", "value": "excellent", "reason": "x", "effective_on": "2010-06-01"},
        "category_value",
        "cadre is one of cadre, non_cadre",
    ),
    (
        "/v1/members/m-prob-1/conversion",
        "conversion before the end",
        {"decided_on": "2011-04-19"},
        "probation_not_ended",
        "the probation of member m-prob-1 ends on 2011-04-20; the branch may not decide on it "
        "before then",
    ),
    (
        "/v1/members/m-full-1/conversion",
        "conversion of a full member",
        {"decided_on": "2011-04-19"},
        "not_probationary",
        "member m-full-1 is not a probationary",
    ),
    (
        "/v1/members/m-prob-1/probation-extension",
        "a three-month extension",
        {"months": 3, "reason": "x", "decided_on": "2011-04-21"},
        "extension_length",
        "an extension is 6 to 12 months, not 3",
    ),
    (
        "/v1/members/m-prob-ext/probation-extension",
        "a second extension",
        {"months": 6, "reason": "x", "decided_on": "2010-07-12"},
        "probation_extended_once",
        "it can be extended only once",
    ),
    (
        "/v1/members/m-full-1/agreements",
        "the same year twice",
        {"agreement_id": "agr-2", "academic_year": "2010-2011", "signed_on": "2010-09-01"},
        "agreement_exists",
        "member m-full-1 already signed the agreement for 2010-2011",
    ),
    (
        "/v1/members/m-full-1/plaques",
        "a second bed plaque",
        {
            "plaque_id": "plq-2",
            "kind": "bed",
            "dormitory": "8-312",
            "bed": "2",
            "issued_on": "2010-06-01",
        },
        "plaque_already_issued",
        "member m-full-1 already has a bed plaque",
    ),
    (
        "/v1/members/m-full-1/plaques/plq-9/withdrawal",
        "withdraw what was never issued",
        {"withdrawn_on": "2010-11-02", "reason": "x"},
        "plaque_not_active",
        "member m-full-1 has no plaque plq-9 hanging",
    ),
    (
        "/v1/members/m-full-1/moves",
        "a move that moves nothing",
        {"group_id": "nde-b1-g1", "effective_on": "2010-09-01"},
        "nothing_moves",
        "member m-full-1 is already placed so",
    ),
    (
        "/v1/members/m-gone/moves",
        "a member transferred out",
        {"dormitory": "9-101", "effective_on": "2010-09-01"},
        "member_transferred_out",
        "member m-gone was transferred out on 2010-06-25",
    ),
    (
        "/v1/branches/nde-b1/pairings",
        "a probationary mentor",
        {
            "pairing_id": "pair-2",
            "mentor_id": "m-prob-1",
            "mentee_id": "m-full-2",
            "formed_on": "2010-05-20",
        },
        "mentor_not_full_member",
        "member m-prob-1 is a probationary member; a mentor must be a full",
    ),
    (
        "/v1/branches/nde-b1/pairings",
        "a mentor from another branch",
        {
            "pairing_id": "pair-2",
            "mentor_id": "m-b2",
            "mentee_id": "m-full-2",
            "formed_on": "2010-05-20",
        },
        "pair_member_not_in_branch",
        "member m-b2 is not a member of branch nde-b1",
    ),
    (
        "/v1/branches/nde-b1/pairings",
        "a mentee already paired",
        {
            "pairing_id": "pair-2",
            "mentor_id": "m-full-2",
            "mentee_id": "m-lag-1",
            "formed_on": "2010-05-21",
        },
        "already_paired",
        "member m-lag-1 is already in an active pair as mentee (pair-1)",
    ),
    (
        "/v1/branches/nde-b1/pairings",
        "a mentor already mentoring",
        {
            "pairing_id": "pair-2",
            "mentor_id": "m-full-1",
            "mentee_id": "m-full-2",
            "formed_on": "2010-05-21",
        },
        "already_paired",
        "member m-full-1 is already in an active pair as mentor (pair-1)",
    ),
    (
        "/v1/branches/nde-b1/pairings",
        "mentoring oneself",
        {
            "pairing_id": "pair-2",
            "mentor_id": "m-full-2",
            "mentee_id": "m-full-2",
            "formed_on": "2010-05-21",
        },
        "pair_with_self",
        "a member cannot mentor themselves",
    ),
    (
        "/v1/branches/nde-b1/pairings/pair-9/end",
        "ending an unknown pair",
        {"ended_on": "2010-10-01", "reason": "x"},
        "pairing_unknown",
        "there is no pairing pair-9 in this branch",
    ),
    (
        "/v1/groups/nde-b1-g1/links",
        "the same link twice",
        {
            "link_id": "link-1",
            "target_kind": "class",
            "target": "国防0801",
            "established_on": "2010-05-26",
        },
        "link_exists",
        "link link-1 already exists",
    ),
]


@pytest.mark.parametrize(
    ("path", "case", "body", "rule", "message"), CASES, ids=[c[1] for c in CASES]
)
async def test_rule_refuses_and_appends_nothing(
    world: RosterClient, path: str, case: str, body: dict[str, Any], rule: str, message: str
) -> None:
    api: Api = world.api
    before = await api.event_count()
    response = await api.client.post(path, json=body, headers=world.admin)
    problem = response.json()
    assert response.status_code == 409, (case, problem)
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["rule"] == rule, (case, problem)
    assert message in problem["detail"], (case, problem)
    assert await api.event_count() == before


async def test_invalid_input_names_the_field_and_appends_nothing(world: RosterClient) -> None:
    before = await world.api.event_count()
    response = await world.api.client.post(
        "/v1/members",
        headers=world.admin,
        json={
            **MEMBER,
            "branch_id": "nde-b1",
            "student_number": "12",
            "standing": "guest",
            "enrolled_on": "May 4th",
        },
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"body.student_number", "body.standing", "body.enrolled_on"}
    assert await world.api.event_count() == before


async def test_allowed_outcomes_of_probation(world: RosterClient) -> None:
    await world.post("/v1/members/m-prob-1/conversion", {"decided_on": "2011-04-22"})
    record = await world.get("/v1/members/m-prob-1", as_of="2011-05-01")
    assert record["standing"] == "full"
    assert record["joined_on"] == "2011-04-20"  # converted as of the end of probation
    assert record["categories"]["standing"] == "full"
    assert (await world.get("/v1/members/m-prob-1", as_of="2011-04-19"))["categories"][
        "standing"
    ] == "probationary"
    extended = await world.get("/v1/members/m-prob-ext")
    assert extended["probation_ends_on"] == "2010-07-10"
    assert extended["probation_extended"] is True


async def test_idempotent_enrolment_returns_the_same_member(roster: RosterClient) -> None:
    await roster.organisation()
    headers = {**roster.admin, "Idempotency-Key": "enrol-wang"}
    body = {**MEMBER, "branch_id": "nde-b1", "student_number": "40000001"}
    first = await roster.post("/v1/members", body, headers)
    again = await roster.post("/v1/members", body, headers)
    assert first["id"] == again["id"]
    assert again["replayed"] is True
    members = await roster.get("/v1/branches/nde-b1/members")
    assert [m["member_id"] for m in members] == [first["id"]]
