"""Scoring under hostile input (issue 14), against the real PostgreSQL and Redis: a draft
regulation's size is bounded, points in exponent notation are stored in the one plain form the
published JSON Schema describes, two callers' idempotency keys never collide, and a regulation
file is read with limits (no YAML aliases, a size, a depth) over HTTP and by partyctl. A
what-if off the event loop, with a time limit, while /health and commands answer:
test_scoring_compute.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts import CATALOGUE
from contracts.generate import SCHEMA_DIR, event_schema_name
from services import auditor
from services.scoring.domain.regulation import MAX_CONDITIONS, MAX_RULES
from services.scoring.regulation_file import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    default_regulation,
    load_regulation,
)
from tests.integration import test_scoring
from tests.integration.test_scoring import REGULATION, World, hand_computed_branch

#: The world of tests/integration/test_scoring.py: scoring fed by stand-in producers.
world = test_scoring.world

#: A list of members long enough to cost something per rule, the branch's own last.
MEMBERS = [f"x{n:02d}" for n in range(88)] + [f"m{n:02d}" for n in range(1, 13)]


def heavy_draft(rules: int) -> dict[str, Any]:
    """A draft whose every rule matches every attendance of a member present: each input gives
    one line per rule, each matched against a long list first."""
    return {
        **REGULATION,
        "version": 2,
        "rules": [
            {
                "id": f"r{n}",
                "title": f"rule {n}",
                "on": "attendance.recorded",
                "when": {"status": "present", "member_id": MEMBERS},
                "points": "0.5",
            }
            for n in range(rules)
        ],
    }


async def test_a_draft_over_the_limits_is_refused_naming_the_field_and_the_limit(
    world: World,
) -> None:
    body = {"period_id": "P1", "branch_id": "nde-b1", "draft": heavy_draft(MAX_RULES + 1)}
    response = await world.api.client.post("/v1/what-if", json=body, headers=world.auditor)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "body.draft.rules"
    assert f"at most {MAX_RULES} rules" in error["reason"]
    assert f"has {MAX_RULES + 1}" in error["reason"]

    wide = heavy_draft(1)
    wide["rules"][0]["when"] = {f"field_{n}": "x" for n in range(MAX_CONDITIONS + 1)}
    body["draft"] = wide
    response = await world.api.client.post("/v1/what-if", json=body, headers=world.auditor)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "body.draft.rules[r0].when"
    assert f"at most {MAX_CONDITIONS} conditions" in error["reason"]

    # Publishing is bounded the same way.
    published = await world.api.client.post(
        "/v1/regulations", json=heavy_draft(MAX_RULES + 1), headers=world.admin
    )
    assert published.status_code == 422, published.text
    assert published.json()["errors"][0]["field"] == "rules"


async def test_points_in_exponent_notation_are_stored_as_the_schema_says(world: World) -> None:
    await hand_computed_branch(world)
    secretary = world.api.auth(
        "branch_secretary", branches=["nde-b1"], member_id="m01", subject="m01"
    )
    deputy = world.api.auth("committee_member", branches=["nde-b1"], member_id="m02", subject="m02")
    for adjustment_id, points in (("adj-e1", "1E+1"), ("adj-e2", "-5E-1"), ("adj-e3", "+2")):
        await world.post(
            "/v1/branches/nde-b1/adjustments",
            {
                "adjustment_id": adjustment_id,
                "member_id": "m07",
                "points": points,
                "reason": "表彰",
                "effective_on": "2010-10-15",
            },
            secretary,
            status=201,
        )
        await world.post(f"/v1/branches/nde-b1/adjustments/{adjustment_id}/approval", {}, deputy)
    too_large = await world.api.client.post(
        "/v1/branches/nde-b1/adjustments",
        json={"member_id": "m07", "points": "1E+10", "reason": "x", "effective_on": "2010-10-15"},
        headers=secretary,
    )
    assert too_large.status_code == 422, too_large.text
    assert "at most 10 digits" in too_large.text

    events = [
        e
        for e in await world.api.context.store.read_all()
        if e.type in ("score.adjustment_requested", "score.adjusted")
    ]
    assert {e.data["points"] for e in events} == {"10", "-0.5", "2"}
    for event in events:
        path = SCHEMA_DIR / event_schema_name(CATALOGUE.spec(event.type))
        schema = json.loads(path.read_text())
        data_schema = {**schema["properties"]["data"], "$defs": schema.get("$defs", {})}
        jsonschema.validate(event.data, data_schema, cls=jsonschema.Draft202012Validator)
    m07 = (await world.get("/v1/members/m07/score", secretary, period_id="P1"))[0]
    assert m07["total"] == "81.5"  # 70 + 10 − 0.5 + 2


# -- idempotency keys ---------------------------------------------------------------------------


async def test_idempotency_keys_of_two_callers_never_collide(world: World) -> None:
    """`alice` with key `x:1` and `alice:x` with key `1` are two keys: the second caller's
    command runs, it does not get the first caller's cached result."""
    await hand_computed_branch(world)
    body = {"member_id": "m07", "points": "1", "reason": "表彰", "effective_on": "2010-10-15"}
    results = []
    for subject, member, key in (("alice", "m01", "x:1"), ("alice:x", "m02", "1")):
        token = world.api.auth(
            "committee_member", branches=["nde-b1"], member_id=member, subject=subject
        )
        response = await world.api.client.post(
            "/v1/branches/nde-b1/adjustments",
            json=body,
            headers={**token, "Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
        results.append(response.json())
    first, second = results
    assert second["replayed"] is False
    assert second["event_ids"] != first["event_ids"]
    # The same caller with the same key still gets its first result.
    token = world.api.auth(
        "committee_member", branches=["nde-b1"], member_id="m01", subject="alice"
    )
    again = await world.api.client.post(
        "/v1/branches/nde-b1/adjustments",
        json=body,
        headers={**token, "Idempotency-Key": "x:1"},
    )
    assert again.status_code == 201, again.text
    assert again.json()["replayed"] is True
    assert again.json()["event_ids"] == first["event_ids"]


# -- regulation files: YAML with limits -----------------------------------------------------------

#: Nine levels of nine aliases each: 48 lines that expand to 387,420,489 strings.
ALIAS_BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


async def test_a_yaml_alias_bomb_is_refused_over_http(world: World) -> None:
    response = await world.api.client.post(
        "/v1/regulations",
        content=ALIAS_BOMB.encode(),
        headers={**world.admin, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 422, response.text
    assert "aliases (*a) are not allowed" in response.text
    deep = "id: x\nrules: " + "[" * 40 + "]" * 40 + "\n"
    response = await world.api.client.post(
        "/v1/regulations",
        content=deep.encode(),
        headers={**world.admin, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 422, response.text
    assert f"nested deeper than {MAX_DEPTH} levels" in response.text


def test_partyctl_refuses_an_alias_bomb_a_huge_file_and_deep_nesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any service is asked: the file is refused as it is read, in milliseconds and
    without growing (it would expand to 1.5 GB and more)."""
    monkeypatch.delenv("PARTY_TOKEN", raising=False)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB, encoding="utf-8")
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"id: x\n" + b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    deep = tmp_path / "deep.yaml"
    deep.write_text("rules: " + "[" * 100 + "]" * 100 + "\n", encoding="utf-8")
    for path, sentence in (
        (bomb, "aliases (*a) are not allowed in a regulation file (line 2)"),
        (huge, f"larger than {MAX_FILE_BYTES} bytes"),
        (deep, f"nested deeper than {MAX_DEPTH} levels"),
    ):
        started = time.monotonic()
        code = auditor.main(["--token", "t", "whatif", "--period", "P1", "--regulation", str(path)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert sentence in err
        code = auditor.main(["--token", "t", "regulation", "publish", str(path)])
        err = capsys.readouterr().err
        assert code == 2, err
        assert sentence in err
        assert time.monotonic() - started < 5
    # Anchors with no alias and the shipped regulation still load.
    assert load_regulation("id: &x nde\nversion: 1\n") == {"id": "nde", "version": 1}
    assert len(default_regulation()["rules"]) > 10
