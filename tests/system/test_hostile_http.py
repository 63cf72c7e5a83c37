"""Hostile HTTP input against the running stack (real processes, real HTTP, the scenario's data):
a fuzzer driven by each service's own OpenAPI document, every endpoint walked with bad tokens,
bodies over the limit, injection attempts in every query parameter, and text that must come
back unchanged."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.auth import TokenAuthority
from runtime.settings import Settings
from services.scenario.people import build as build_scenario
from tests.system.conftest import SERVICES, Stack, stack_secret, token

pytestmark = pytest.mark.timeout(600)

SCHEMATHESIS = str(Path(sys.executable).parent / "st")
PUBLIC = {"/health", "/ready", "/metrics"}
FIRST_MEMBER = build_scenario().people[0].member_id
#: Values for path parameters that exist in the scenario.
SAMPLES = {
    "branch_id": "nde-b1",
    "school_id": "nde",
    "unit_id": "nde-b1",
    "group_id": "nde-b1-g1",
    "member_id": FIRST_MEMBER,
    "period_id": "2010",
    "year": "2010",
    "activity_id": "volunteer-2010-05-nde-b1",
    "obligation_id": "x",
    "deadline_id": "x",
    "pairing_id": "x",
    "plaque_id": "x",
    "adjustment_id": "x",
    "recipient_id": FIRST_MEMBER,
    "guide_id": "x",
    "appointment_id": "x",
    "election_id": "x",
}
INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE events; --",
    "%' AND pg_sleep(5) --",
    "../../../../etc/passwd",
    "<script>alert(1)</script>",
    "${jndi:ldap://x}",
    "\u0000",
    "9" * 400,
]


def operations(stack: Stack, service: str) -> list[tuple[str, str, dict[str, Any]]]:
    document = httpx.get(f"{stack.urls[service]}/openapi.json").json()
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if path not in PUBLIC
    ]


def changes(operation: dict[str, Any]) -> bool:
    """Commands take an Idempotency-Key; so does nothing that only reads (what-if, replay)."""
    headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
    return "Idempotency-Key" in headers or operation.get("operationId", "").startswith(
        "set_preferences"
    )


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES[m.group(1)], path)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}", "Idempotency-Key": "hostile-1"}


@pytest.mark.parametrize("service", SERVICES)
def test_the_fuzzer_finds_no_server_error_and_no_response_off_its_schema(
    stack: Stack, service: str
) -> None:
    admin = token("university_admin")
    result = subprocess.run(
        [
            *(SCHEMATHESIS, "run", f"{stack.urls[service]}/openapi.json"),
            *("-H", f"Authorization: Bearer {admin}"),
            *(
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance",
            ),
            *("--phases", "examples,fuzzing", "--max-examples", "15", "--seed", "2010"),
            *("--request-timeout", "30", "--exclude-path", "/metrics"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout[-2000:]


@pytest.mark.parametrize("service", SERVICES)
def test_every_endpoint_refuses_missing_expired_forged_and_wrong_scope_tokens(
    stack: Stack, service: str
) -> None:
    secret = stack_secret()
    authority = TokenAuthority(secret=secret)
    expired = authority.issue("admin", "university_admin", ttl=timedelta(seconds=-60))
    forged = TokenAuthority(secret="not-the-secret-0123456789-0123456789").issue(
        "admin", "university_admin"
    )
    campus = authority.issue("campus-system", "campus_system")
    auditor = authority.issue("auditor", "auditor")
    other_branch = authority.issue("sec-b9", "branch_secretary", branches=["nde-b9"])
    other_member = authority.issue("m-other", "member", member_id="m-other")
    walked = 0
    with httpx.Client(base_url=stack.urls[service], timeout=30) as client:
        for method, path, operation in operations(stack, service):
            url = concrete(path)
            refusals = [
                ({}, 401),
                (bearer(expired), 401),
                (bearer(forged), 401),
                (bearer("not.a.token"), 401),
                (bearer(campus), 403),  # the streams' role, not the API's
            ]
            if changes(operation):
                refusals.append((bearer(auditor), 403))  # reads everything, changes nothing
            if "{branch_id}" in path:
                refusals.append((bearer(other_branch), 403))
            if "{member_id}" in path and method == "GET":
                refusals.append((bearer(other_member), 403))
            for credentials, expected in refusals:
                response = client.request(method, url, headers=credentials, json={})
                assert response.status_code == expected, (method, path, expected, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
            walked += 1
    assert walked >= 10


@pytest.mark.parametrize("service", SERVICES)
def test_bodies_over_the_limit_get_413_everywhere(stack: Stack, service: str) -> None:
    limit = Settings().max_body_bytes
    admin = bearer(token("university_admin"))
    body = b'{"x": "' + b"a" * limit + b'"}'
    with httpx.Client(base_url=stack.urls[service], timeout=30) as client:
        for method, path, _ in operations(stack, service):
            if method not in ("POST", "PUT"):
                continue
            response = client.request(
                method,
                concrete(path),
                headers={**admin, "Content-Type": "application/json"},
                content=body,
            )
            assert response.status_code == 413, (method, path, response.text)


def _state(stack: Stack) -> dict[str, Any]:
    """What must not change: every log's head and hash, and scoring's live checksum."""
    auditor = {"Authorization": f"Bearer {token('auditor')}"}
    heads = {
        service: httpx.get(f"{url}/v1/audit/verify", headers=auditor, timeout=60).json()
        for service, url in stack.urls.items()
    }
    replay = httpx.post(f"{stack.urls['scoring']}/v1/replay", headers=auditor, timeout=120).json()
    return {
        "heads": {s: (h["head_position"], h["intact"]) for s, h in heads.items()},
        "scores": replay["live_checksum"],
    }


def test_injection_in_every_query_parameter_changes_nothing(stack: Stack) -> None:
    before = _state(stack)
    admin = {"Authorization": f"Bearer {token('university_admin')}"}
    tried = 0
    for service in SERVICES:
        with httpx.Client(base_url=stack.urls[service], timeout=30) as client:
            for method, path, operation in operations(stack, service):
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
                if method != "GET" or not names:
                    continue
                for name in names:
                    for value in INJECTIONS:
                        response = client.get(concrete(path), params={name: value}, headers=admin)
                        assert response.status_code < 500, (path, name, value, response.text)
                        tried += 1
    assert tried > 100
    assert _state(stack) == before


def test_chinese_full_width_digits_and_emoji_come_back_unchanged(stack: Stack) -> None:
    admin = {"Authorization": f"Bearer {token('university_admin')}"}
    name = "欧阳😀明"
    dormitory = "８-３１２（北）"
    body = {
        "member_id": "m-unicode-1",
        "branch_id": "nde-b2",
        "student_number": "20119999",
        "name": name,
        "group_id": "nde-b2-g1",
        "class_name": "国防１１０１",
        "company": "二连",
        "dormitory": dormitory,
        "bed": "２",
        "standing": "full",
        "joined_on": "2011-04-01",
        "enrolled_on": "2011-04-02",
        "expected_graduation": "2015-07-01",
    }
    roster = stack.urls["roster"]
    created = httpx.post(
        f"{roster}/v1/members", json=body, headers={**admin, "Idempotency-Key": "unicode-1"}
    )
    assert created.status_code == 201, created.text
    member = httpx.get(f"{roster}/v1/members/m-unicode-1", headers=admin).json()
    assert (member["name"], member["dormitory"], member["class_name"]) == (
        name,
        dormitory,
        "国防１１０１",
    )
    events = httpx.get(
        f"{roster}/v1/audit/events",
        params={"type": "member.enrolled", "limit": 1000},
        headers=admin,
    ).json()["events"]
    # In the log the name is sealed (runtime.personal); the roster's view unseals it whole.
    [enrolled] = [e for e in events if e["data"]["member_id"] == "m-unicode-1"]
    assert enrolled["data"]["name"].startswith("pd1:")
    assert member["bed"] == "２"


def test_nul_characters_are_refused_with_422_naming_where(stack: Stack) -> None:
    admin = {
        "Authorization": f"Bearer {token('university_admin')}",
        "Idempotency-Key": "nul-1",
        "Content-Type": "application/json",
    }
    roster = stack.urls["roster"]
    body = b'{"unit_id": "g-nul", "kind": "group", "name": "\\u0000", "parent_id": "nde-b1"}'
    refused = httpx.post(f"{roster}/v1/units", content=body, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"field": "body", "reason": "contains a NUL character (U+0000), which cannot be stored"}
    ]
    in_query = httpx.get(f"{roster}/v1/units", params={"parent_id": "a\x00b"}, headers=admin)
    assert in_query.status_code == 422
    assert in_query.json()["errors"][0]["field"] == "query"
    # An escaped backslash before "u0000" is ordinary text, not a NUL.
    text = b'{"unit_id": "g-nul", "kind": "group", "name": "\\\\u0000", "parent_id": "nde-b1"}'
    accepted = httpx.post(f"{roster}/v1/units", content=text, headers=admin)
    assert accepted.status_code == 201, accepted.text
    unit = httpx.get(f"{roster}/v1/units/g-nul", headers=admin).json()
    assert unit["name"] == "\\u0000"
