"""Scoring's HTTP API."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from contracts.errors import FieldError
from contracts.ranges import BoundedDate
from contracts.types import Identifier, Points, Text
from runtime.auth import AccessDenied, Principal
from runtime.directory import Directory
from runtime.http import Accepted, Command, CurrentPrincipal, Problem, accepted, problem_responses
from runtime.http.moments import AsOf, KnownAt
from runtime.http.problems import RETRY_AFTER_SECONDS, validation_problem
from services.scoring.domain import adjustment
from services.scoring.domain.publishing import adoption_stream, regulation_stream
from services.scoring.domain.regulation import RegulationDocument, parse_document
from services.scoring.handlers import RegulationInvalid, ScoringService
from services.scoring.offload import ComputeBusy, ComputeFailed, ComputeTimeout
from services.scoring.queries import ScoringQueries
from services.scoring.regulation_file import RegulationFileError, load_regulation

router = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 422, 503))
COMMAND_ERRORS = problem_responses(409)


def _service(request: Request) -> ScoringService:
    service: ScoringService = request.app.state.context.extras["scoring"]
    return service


def _queries(request: Request) -> ScoringQueries:
    queries: ScoringQueries = request.app.state.context.extras["scoring_queries"]
    return queries


def _directory(request: Request) -> Directory:
    directory: Directory = request.app.state.context.directory
    return directory


def _not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} is not known", type_="/problems/not-found")


def _invalid(errors: list[FieldError]) -> Problem:
    return validation_problem([{"field": e.field, "reason": e.reason} for e in errors])


async def _read_branch(request: Request, principal: Principal, branch_id: str) -> None:
    principal.require_read(branch_id, await _directory(request).school_of(branch_id))


async def _write_branch(request: Request, principal: Principal, branch_id: str) -> None:
    principal.require_write(branch_id, await _directory(request).school_of(branch_id))


# -- regulations --------------------------------------------------------------------------------


@router.post(
    "/regulations",
    status_code=201,
    tags=["regulation"],
    responses=COMMAND_ERRORS,
    summary="Publish a regulation version (JSON, or YAML with Content-Type application/yaml)",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/yaml": {"schema": {"type": "string"}},
            },
            "required": True,
        }
    },
)
async def publish_regulation(
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
    published_on: Annotated[
        BoundedDate | None,
        Query(description="the day it was published (default: today); not in the future"),
    ] = None,
) -> Accepted:
    """Any regulation id, no restart: the university's (a university admin) or a school's own
    (its school admin; the school owns the id from its first version)."""
    principal.require_role("university_admin", "school_admin")
    publisher_school = None
    if principal.role == "school_admin":
        if len(principal.schools) != 1:
            raise AccessDenied("a school admin publishes for exactly one school")
        (publisher_school,) = principal.schools
    body = await request.body()
    try:
        raw = load_regulation(body.decode("utf-8"))
    except (RegulationFileError, UnicodeDecodeError) as error:
        raise _invalid([FieldError("(body)", str(error))]) from None
    try:
        result = await _service(request).publish_regulation(
            raw, command, publisher_school=publisher_school, published_on=published_on
        )
    except RegulationInvalid as invalid:
        raise _invalid(invalid.errors) from None
    return accepted(
        result,
        response,
        id=f"{raw.get('id')}:v{raw.get('version')}",
        stream=regulation_stream(str(raw.get("id"))),
    )


@router.get(
    "/regulations", tags=["regulation"], summary="Every published version of every regulation"
)
async def list_regulations(
    request: Request,
    principal: CurrentPrincipal,
    known_at: KnownAt = None,
    regulation_id: Annotated[Identifier | None, Query(description="one regulation")] = None,
) -> list[dict[str, Any]]:
    if principal.role == "campus_system":
        raise AccessDenied("campus systems subscribe to the streams")
    archive = _service(request).archive
    book = await archive.book(known_at)
    return [
        {
            "id": v.document.id,
            "version": v.document.version,
            "title": v.document.title_text(),
            "effective_from": v.document.effective_from,
            "precision": v.document.precision,
            "default": rid == book.default_id,
            "owner_unit_id": await archive.owner_of(rid),
            "periods": [p.model_dump() for p in v.document.periods],
            "recorded_at": v.recorded_at,
            "document": v.document.model_dump(mode="json"),
        }
        for rid, history in book.histories.items()
        if regulation_id is None or rid == regulation_id
        for v in history.versions
    ]


class Adopt(BaseModel):
    regulation_id: Identifier
    effective_from: BoundedDate = Field(description="the first day the unit follows it")
    decided_on: BoundedDate | None = Field(
        None, description="the day the unit decided it (default: today); not in the future"
    )
    reason: Text | None = None


@router.post(
    "/units/{unit_id}/regulation",
    tags=["regulation"],
    responses=COMMAND_ERRORS,
    summary="A school, or a branch overriding its school, adopts a regulation from a date",
)
async def adopt_regulation(
    unit_id: Identifier,
    body: Adopt,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    principal.require_role("university_admin", "school_admin")
    directory = _directory(request)
    unit = await directory.unit(unit_id)
    if principal.role == "school_admin":
        school = unit_id if unit is not None and unit.kind == "school" else None
        if unit is not None and unit.kind == "branch":
            school = unit.parent_id
        if school is None or school not in principal.schools:
            raise AccessDenied(f"school_admin {principal.subject} may not change {unit_id}")
    result = await _service(request).adopt_regulation(
        unit_id,
        body.regulation_id,
        body.effective_from,
        command,
        decided_on=body.decided_on,
        reason=body.reason,
    )
    return accepted(result, response, id=unit_id, stream=adoption_stream(unit_id))


@router.get(
    "/units/{unit_id}/regulation",
    tags=["regulation"],
    summary="Which regulation a school or branch follows on a day, and why",
)
async def unit_regulation(
    unit_id: Identifier,
    request: Request,
    principal: CurrentPrincipal,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> dict[str, Any]:
    if principal.role == "campus_system":
        raise AccessDenied("campus systems subscribe to the streams")
    service = _service(request)
    unit = await _directory(request).unit(unit_id)
    if unit is None or unit.kind not in ("school", "branch"):
        raise _not_found(f"school or branch {unit_id}")
    book = await service.archive.book(known_at)
    day = service.day(as_of) if as_of is not None else service.calendar.today()
    regulation_id = book.regulation_of(unit_id, day)
    version = book.history(regulation_id).in_force(day)
    return {
        "unit_id": unit_id,
        "as_of": day,
        "regulation_id": regulation_id,
        "regulation_version": version.document.version if version else None,
        "source": book.source_of(unit_id, day),
        "adoptions": [
            {"unit_id": a.unit_id, "regulation_id": a.regulation_id, "from": a.effective_from}
            for a in book.adoptions
            if a.unit_id in (unit_id, book.school_of(unit_id))
        ],
    }


# -- queries ------------------------------------------------------------------------------------


@router.get(
    "/members/{member_id}/score",
    tags=["scores"],
    summary="A member's totals, by rule, and the ledger line by line",
)
async def member_score(
    member_id: str,
    request: Request,
    principal: CurrentPrincipal,
    period_id: str | None = None,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> list[dict[str, Any]]:
    if principal.member_id != member_id:
        member = await _directory(request).member(member_id)
        if member is None:
            raise _not_found(f"member {member_id}")
        await _read_branch(request, principal, member.branch_id)
    return await _queries(request).member(
        member_id, as_of=as_of, known_at=known_at, period_id=period_id
    )


@router.get(
    "/branches/{branch_id}/periods/{period_id}",
    tags=["scores"],
    summary="A branch's table: totals, ranks, grades, and events after the close",
)
async def branch_table(
    branch_id: str,
    period_id: str,
    request: Request,
    principal: CurrentPrincipal,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> dict[str, Any]:
    await _read_branch(request, principal, branch_id)
    table = await _queries(request).branch(branch_id, period_id, as_of=as_of, known_at=known_at)
    if table is None:
        raise _not_found(f"period {period_id}")
    return table


async def _school_branches(request: Request, school_id: str) -> list[str]:
    return [
        u.unit_id for u in await _directory(request).units("branch") if u.parent_id == school_id
    ]


@router.get(
    "/schools/{school_id}/periods/{period_id}",
    tags=["scores"],
    summary="A school's summary across its branches",
)
async def school_summary(
    school_id: str,
    period_id: str,
    request: Request,
    principal: CurrentPrincipal,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> list[dict[str, Any]]:
    if not (principal.reads_everything or school_id in principal.schools):
        raise AccessDenied(f"{principal.role} {principal.subject} may not read school {school_id}")
    branches = await _school_branches(request, school_id)
    return await _queries(request).summary(branches, period_id, as_of=as_of, known_at=known_at)


@router.get(
    "/periods/{period_id}/summary",
    tags=["scores"],
    summary="The university's summary across every branch",
)
async def university_summary(
    period_id: str,
    request: Request,
    principal: CurrentPrincipal,
    as_of: AsOf = None,
    known_at: KnownAt = None,
) -> list[dict[str, Any]]:
    principal.require_role("university_admin", "auditor")
    branches = [u.unit_id for u in await _directory(request).units("branch")]
    return await _queries(request).summary(branches, period_id, as_of=as_of, known_at=known_at)


# -- adjustments (four eyes) --------------------------------------------------------------------


class AdjustmentRequest(BaseModel):
    adjustment_id: Identifier | None = Field(None, description="generated when left out")
    member_id: Identifier
    points: Points
    reason: Text
    effective_on: BoundedDate | None = Field(
        None,
        description="the day it counts on (default: today): in an open period of the branch",
    )
    period_id: Identifier | None = Field(
        None, description="optional: the period of effective_on, checked when given"
    )


@router.post(
    "/branches/{branch_id}/adjustments",
    status_code=201,
    tags=["adjustments"],
    responses=COMMAND_ERRORS,
    summary="Ask for a manual award or deduction (a committee member)",
)
async def request_adjustment(
    branch_id: str,
    body: AdjustmentRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write_branch(request, principal, branch_id)
    adjustment_id = body.adjustment_id or f"adj-{uuid.uuid4().hex[:12]}"
    if body.points == Decimal(0):
        raise _invalid([FieldError("body.points", "an adjustment of 0 points changes nothing")])
    service = _service(request)
    result = await service.request_adjustment(
        adjustment.RequestAdjustment(
            adjustment_id=adjustment_id,
            member_id=body.member_id,
            branch_id=branch_id,
            points=body.points,
            reason=body.reason,
            effective_on=body.effective_on or service.calendar.today(),
            period_id=body.period_id,
        ),
        principal.member_id,
        command,
    )
    return accepted(result, response, id=adjustment_id)


@router.post(
    "/branches/{branch_id}/adjustments/{adjustment_id}/approval",
    tags=["adjustments"],
    responses=COMMAND_ERRORS,
    summary="Approve an adjustment (another member of the same committee)",
)
async def approve_adjustment(
    branch_id: str,
    adjustment_id: str,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write_branch(request, principal, branch_id)
    result = await _service(request).approve_adjustment(
        branch_id, adjustment_id, principal.member_id, command
    )
    return accepted(result, response, id=adjustment_id)


# -- periods ------------------------------------------------------------------------------------


class Close(BaseModel):
    closed_on: BoundedDate | None = Field(
        None, description="the day the branch closed it (default: today); not in the future"
    )


@router.post(
    "/branches/{branch_id}/periods/{period_id}/close",
    tags=["periods"],
    responses=COMMAND_ERRORS,
    summary="Close a period: publish assessment.closed",
)
async def close_period(
    branch_id: str,
    period_id: str,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
    body: Close | None = None,
) -> Accepted:
    await _write_branch(request, principal, branch_id)
    closed_on = body.closed_on if body else None
    result = await _service(request).close_period(branch_id, period_id, command, closed_on)
    return accepted(result, response)


class Reopen(BaseModel):
    reason: Text
    reopened_on: BoundedDate | None = Field(
        None, description="the day the branch reopened it (default: now); not in the future"
    )


@router.post(
    "/branches/{branch_id}/periods/{period_id}/reopen",
    tags=["periods"],
    responses=COMMAND_ERRORS,
    summary="Reopen a closed period",
)
async def reopen_period(
    branch_id: str,
    period_id: str,
    body: Reopen,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write_branch(request, principal, branch_id)
    result = await _service(request).reopen_period(
        branch_id, period_id, body.reason, command, body.reopened_on
    )
    return accepted(result, response)


# -- what-if and replay -------------------------------------------------------------------------


class WhatIf(BaseModel):
    period_id: Identifier
    branch_id: Identifier | None = Field(None, description="one branch")
    school_id: Identifier | None = Field(None, description="every branch of a school")
    regulation_id: Identifier | None = Field(
        None,
        description="the regulation of regulation_version (default: the one the branches "
        "follow, when they all follow one)",
    )
    regulation_version: int | None = Field(None, ge=1, le=10000, description="a published version")
    draft: dict[str, Any] | None = Field(None, description="or a regulation document")


@router.post(
    "/what-if",
    tags=["what-if"],
    summary="Re-run a period under another regulation, side by side (writes nothing)",
)
async def what_if(body: WhatIf, request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    if (body.regulation_version is None) == (body.draft is None):
        raise _invalid([FieldError("body", "give either regulation_version or draft")])
    directory = _directory(request)
    if body.branch_id is not None:
        await _read_branch(request, principal, body.branch_id)
        branches = [body.branch_id]
    elif body.school_id is not None:
        if not (principal.reads_everything or body.school_id in principal.schools):
            raise AccessDenied(f"{principal.role} may not read school {body.school_id}")
        branches = await _school_branches(request, body.school_id)
    else:
        principal.require_role("university_admin", "auditor")
        branches = [u.unit_id for u in await directory.units("branch")]
    document: RegulationDocument
    if body.draft is not None:
        # In a thread: checking a draft of hundreds of rules against the catalogue takes tens
        # of milliseconds the event loop need not wait for.
        parsed, errors = await asyncio.to_thread(parse_document, body.draft)
        if errors or parsed is None:
            raise _invalid([FieldError(f"body.draft.{e.field}", e.reason) for e in errors])
        document = parsed
    else:
        service = _service(request)
        book = await service.archive.book()
        regulation_id = body.regulation_id
        if regulation_id is None:
            followed = set()
            for branch in branches:
                governing = book.governing(branch, body.period_id)
                if governing is not None:
                    followed.add(governing.document.id)
            if len(followed) > 1:
                raise _invalid(
                    [
                        FieldError(
                            "body.regulation_id",
                            "these branches follow different regulations "
                            f"({', '.join(sorted(followed))}): name the one of the version",
                        )
                    ]
                )
            regulation_id = followed.pop() if followed else book.default_id
        version = book.history(regulation_id).version(body.regulation_version or 0)
        if version is None:
            raise _not_found(f"version {body.regulation_version} of regulation {regulation_id}")
        document = version.document
    try:
        return await _queries(request).what_if(body.period_id, branches, document)
    except LookupError:
        raise _not_found(f"period {body.period_id}") from None
    except ComputeTimeout as stopped:
        # The request asks too much of one run: narrow it (one branch, fewer rules).
        raise _invalid(
            [
                FieldError(
                    "body",
                    f"the what-if {stopped}: ask for one branch or a smaller draft",
                )
            ]
        ) from None
    except (ComputeBusy, ComputeFailed) as error:
        raise _busy(str(error)) from None


def _busy(detail: str) -> Problem:
    return Problem(
        503,
        "Service unavailable",
        detail,
        type_="/problems/compute-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


@router.post(
    "/replay",
    tags=["audit"],
    summary="Rebuild every score from the archive apart from the live view, compare",
)
async def replay(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    principal.require_role("auditor", "university_admin")
    try:
        report = await _queries(request).replay()
    except ComputeTimeout as stopped:  # the archive outgrew the limit an operator set
        raise _busy(f"the replay {stopped}") from None
    except (ComputeBusy, ComputeFailed) as error:
        raise _busy(str(error)) from None
    return {
        "equal": report.equal,
        "inputs": report.inputs,
        "members": report.members,
        "rows": report.rows,
        "live_checksum": report.live_checksum,
        "replay_checksum": report.replay_checksum,
        "first_difference": report.first_difference,
    }
