"""The HTTP plumbing every service shares: operations endpoints, authentication and scopes,
problem details, idempotency keys, the body limit and the 503 for a dependency that is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi import APIRouter, Request
from pydantic import BaseModel

from runtime.decider import CommandRefused
from runtime.eventstore import EventMetadata, NewEvent, StreamAppend
from runtime.http import CommandKey, CurrentPrincipal
from runtime.service import ServiceContext, ServiceDefinition
from tests.conftest import REDIS_URL
from tests.support.apps import Api, running, service_settings


class Note(BaseModel):
    text: str


router = APIRouter(prefix="/v1/test")


@router.post("/notes/{branch_id}")
async def write_note(
    branch_id: str, note: Note, request: Request, principal: CurrentPrincipal, key: CommandKey
) -> dict[str, Any]:
    principal.require_write(branch_id)
    if note.text == "refuse":
        raise CommandRefused("note_not_allowed", f"note {note.text!r} is not allowed", field="text")
    context: ServiceContext = request.app.state.context
    result = await context.store.append(
        StreamAppend(
            f"note-{branch_id}",
            [NewEvent("note.written", {"text": note.text}, datetime.now(UTC), branch_id=branch_id)],
        ),
        metadata=EventMetadata(principal.subject, principal.role),
        idempotency=key,
    )
    return {"event_ids": [str(e) for e in result.event_ids], "replayed": result.replayed}


@router.get("/down")
async def down() -> None:
    raise ConnectionRefusedError("database gone")


@router.get("/broken")
async def broken() -> None:
    raise RuntimeError("a bug")


@pytest.fixture
async def api(
    database_url: str, schema_name: str, stream_prefix: str, redis_client: Any
) -> AsyncIterator[Api]:
    settings = service_settings(
        database_url, schema_name, stream_prefix, REDIS_URL, max_body_bytes=4096
    )
    definition = ServiceDefinition(name="testsvc", title="Test", routers=[router])
    async with running(definition, settings) as api:
        yield api


async def test_operations_endpoints(api: Api) -> None:
    assert (await api.client.get("/health")).json() == {"status": "ok", "service": "testsvc"}
    ready = await api.client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}
    metrics = await api.client.get("/metrics")
    assert "party_http_request_seconds" in metrics.text


async def test_unauthenticated_forged_and_expired_tokens_get_401(api: Api) -> None:
    missing = await api.client.get("/v1/audit/verify")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["title"] == "Not authenticated"
    forged = jwt.encode(
        {
            "sub": "x",
            "role": "auditor",
            "aud": "party-members",
            "exp": datetime.now(UTC) + timedelta(hours=1),
        },
        "another-secret-0123456789-abcdef",
    )
    assert (
        await api.client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {forged}"})
    ).status_code == 401
    expired = api.tokens.issue("a", "auditor", ttl=timedelta(minutes=-5))
    response = await api.client.get(
        "/v1/audit/verify", headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "the token has expired"


async def test_roles_and_branch_scopes(api: Api) -> None:
    secretary_a = api.auth("branch_secretary", branches=["b-a"])
    assert (await api.client.get("/v1/audit/verify", headers=secretary_a)).status_code == 403
    verified = await api.client.get("/v1/audit/verify", headers=api.auth("auditor"))
    assert verified.status_code == 200
    assert verified.json()["intact"] is True

    ok = await api.client.post("/v1/test/notes/b-a", json={"text": "hi"}, headers=secretary_a)
    assert ok.status_code == 200
    other = await api.client.post("/v1/test/notes/b-b", json={"text": "hi"}, headers=secretary_a)
    assert other.status_code == 403
    assert "may not change branch b-b" in other.json()["detail"]
    auditor = await api.client.post(
        "/v1/test/notes/b-a", json={"text": "hi"}, headers=api.auth("auditor")
    )
    assert auditor.status_code == 403


async def test_idempotency_key_returns_the_first_result_or_refuses_a_new_body(api: Api) -> None:
    headers = {**api.auth("branch_secretary", branches=["b-a"]), "Idempotency-Key": "note-1"}
    first = await api.client.post("/v1/test/notes/b-a", json={"text": "a"}, headers=headers)
    again = await api.client.post("/v1/test/notes/b-a", json={"text": "a"}, headers=headers)
    assert first.json()["event_ids"] == again.json()["event_ids"]
    assert (first.json()["replayed"], again.json()["replayed"]) == (False, True)
    changed = await api.client.post("/v1/test/notes/b-a", json={"text": "b"}, headers=headers)
    assert changed.status_code == 422
    assert changed.json()["errors"] == [
        {"field": "Idempotency-Key", "reason": "used before for a different command"}
    ]
    page = await api.client.get("/v1/audit/events", headers=api.auth("auditor"))
    assert [e["data"] for e in page.json()["events"]] == [{"text": "a"}]


async def test_problem_details_for_invalid_input_and_refusals(api: Api) -> None:
    headers = api.auth("branch_secretary", branches=["b-a"])
    invalid = await api.client.post("/v1/test/notes/b-a", json={"txt": "a"}, headers=headers)
    assert invalid.status_code == 422
    assert invalid.json()["errors"] == [{"field": "body.text", "reason": "Field required"}]
    bad_query = await api.client.get("/v1/audit/events?limit=0", headers=api.auth("auditor"))
    assert bad_query.json()["errors"][0]["field"] == "query.limit"
    refused = await api.client.post("/v1/test/notes/b-a", json={"text": "refuse"}, headers=headers)
    assert refused.status_code == 409
    assert refused.json()["rule"] == "note_not_allowed"
    assert refused.json()["detail"] == "note 'refuse' is not allowed"


async def test_body_limit_dependency_down_and_bugs(api: Api) -> None:
    headers = api.auth("branch_secretary", branches=["b-a"])
    big = await api.client.post(
        "/v1/test/notes/b-a",
        content=b'{"text":"' + b"x" * 5000 + b'"}',
        headers={**headers, "content-type": "application/json"},
    )
    assert big.status_code == 413
    down = await api.client.get("/v1/test/down")
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
    broken = await api.client.get("/v1/test/broken")
    assert broken.status_code == 500
    assert broken.json()["title"] == "Internal error"
    assert "a bug" not in broken.text  # internals are logged, not shown
