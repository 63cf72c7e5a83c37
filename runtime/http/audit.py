"""Endpoints every service offers to auditors: its log, its chain verification, dead letters."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from contracts.wire import dead_letter_key
from runtime.eventstore import verify_chain
from runtime.http.moments import KnownAt
from runtime.http.problems import problem_responses
from runtime.http.security import CurrentPrincipal
from runtime.service import ServiceContext

audit_router = APIRouter(
    prefix="/v1/audit", tags=["audit"], responses=problem_responses(401, 403, 422, 503)
)


class ChainVerification(BaseModel):
    service: str
    events_checked: int
    head_position: int
    intact: bool
    first_broken_position: int | None
    reason: str | None


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    next_after: int | None = Field(description="pass as `after` for the next page")


class DeadLetter(BaseModel):
    id: str
    fields: dict[str, str]


def _context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


@audit_router.get("/verify", summary="Verify this service's hash chain")
async def verify(request: Request, principal: CurrentPrincipal) -> ChainVerification:
    principal.require_role("auditor", "university_admin")
    context = _context(request)
    report = await verify_chain(context.pool, context.schema)
    return ChainVerification(
        service=context.definition.name,
        events_checked=report.events_checked,
        head_position=report.head_position,
        intact=report.intact,
        first_broken_position=report.first_broken_position,
        reason=report.reason,
    )


@audit_router.get("/events", summary="This service's log, in position order")
async def events(
    request: Request,
    principal: CurrentPrincipal,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[list[str] | None, Query(max_length=50)] = None,
    known_at: KnownAt = None,
) -> EventPage:
    principal.require_role("auditor", "university_admin")
    recorded = await _context(request).store.read_all(
        after_position=after, limit=limit, types=type, known_at=known_at
    )
    return EventPage(
        events=[{"position": e.position, **orjson.loads(e.envelope_json())} for e in recorded],
        next_after=recorded[-1].position if len(recorded) == limit else None,
    )


class Progress(BaseModel):
    service: str
    head_position: int = Field(description="events this service has recorded")
    inbox: int = Field(description="events from other services it has applied")


@audit_router.get("/progress", summary="How far this service has got: its log and its inbox")
async def progress(request: Request, principal: CurrentPrincipal) -> Progress:
    principal.require_role("auditor", "university_admin")
    context = _context(request)
    head, _ = await context.store.head()
    inbox = await context.pool.fetchval(f'SELECT count(*) FROM "{context.schema}".inbox')
    return Progress(service=context.definition.name, head_position=head, inbox=int(inbox))


@audit_router.get("/dead-letters", summary="Entries this service could not consume")
async def dead_letters(
    request: Request,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    principal.require_role("auditor", "university_admin")
    context = _context(request)
    key = dead_letter_key(context.settings.stream_prefix, context.definition.name)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await context.redis.xrevrange(  # type: ignore[assignment]
        key, count=limit
    )
    return [
        DeadLetter(
            id=entry_id.decode(),
            fields={
                k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()
            },
        )
        for entry_id, fields in entries
    ]
