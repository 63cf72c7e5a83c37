"""The roster's HTTP API: commands (POST) and queries (GET), each authorised by role and scope."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from contracts.ranges import BoundedDate
from runtime.auth import AccessDenied, Principal, Role
from runtime.commands import CommandContext
from runtime.http import Accepted, Command, CurrentPrincipal, Problem, accepted, problem_responses
from services.roster.domain import care, election, guide, member, organisation
from services.roster.export import to_csv, to_xlsx
from services.roster.handlers import (
    RosterService,
    guide_stream,
    member_id_of,
    member_stream,
    unit_stream,
)
from services.roster.queries import RosterQueries, Scope

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

router = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 422, 503))
COMMAND_ERRORS = problem_responses(409)

AsOf = Annotated[BoundedDate | None, Query(description="the date to answer for (default: today)")]


def _service(request: Request) -> RosterService:
    service: RosterService = request.app.state.context.extras["roster"]
    return service


def _queries(request: Request) -> RosterQueries:
    queries: RosterQueries = request.app.state.context.extras["roster_queries"]
    return queries


def _today(request: Request, as_of: date | None) -> date:
    return as_of or _service(request).today()


def _not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} is not on the roster", type_="/problems/not-found")


async def _branch_scope(request: Request, branch_id: str) -> Scope:
    scope = await _queries(request).unit_scope(branch_id)
    if scope is None or scope.kind != "branch":
        raise _not_found(f"branch {branch_id}")
    return scope


async def _member_scope(request: Request, member_id: str) -> Scope:
    scope = await _queries(request).member_scope(member_id)
    if scope is None:
        raise _not_found(f"member {member_id}")
    return scope


def _no_campus_systems(principal: Principal) -> None:
    if principal.role == "campus_system":
        raise AccessDenied("campus systems subscribe to the event streams; the API is for people")


def _generated_id(prefix: str, command: CommandContext) -> str:
    """An id for what a command creates when the caller left it out: derived from the
    idempotency key when there is one, so that a retry names the same thing."""
    if command.idempotency is not None:
        return f"{prefix}-{hashlib.sha256(command.idempotency.key.encode()).hexdigest()[:12]}"
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


OPTIONAL_ID = Field(
    None,
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
    description="generated when left out",
)


# -- organisation -----------------------------------------------------------------------------


@router.post(
    "/units",
    status_code=201,
    tags=["organisation"],
    responses=COMMAND_ERRORS,
    summary="Register a school, a branch or a Party group",
)
async def register_unit(
    body: organisation.RegisterUnit,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    if body.kind == "school":
        principal.require_role("university_admin")
    elif body.kind == "branch":
        # A school's business: its admin or the university's (a secretary's scope is the branch
        # they run, not a school they could put a new branch into).
        if principal.role != "university_admin" and not (
            principal.role == "school_admin" and body.parent_id in principal.schools
        ):
            raise AccessDenied(
                f"{principal.role} {principal.subject} may not register a branch in school "
                f"{body.parent_id}: that is for its school's admin or the university's"
            )
    else:
        parent = await _queries(request).unit_scope(body.parent_id or "")
        principal.require_write(body.parent_id or "", parent.school_id if parent else None)
    result = await _service(request).register_unit(body, command)
    return accepted(result, response, id=body.unit_id, stream=unit_stream(body.unit_id))


@router.get("/units", tags=["organisation"], summary="Units, by parent or kind")
async def list_units(
    request: Request,
    principal: CurrentPrincipal,
    parent_id: str | None = None,
    kind: Literal["school", "branch", "group"] | None = None,
) -> list[dict[str, Any]]:
    _no_campus_systems(principal)
    return await _queries(request).units(parent_id, kind)


@router.get("/units/{unit_id}", tags=["organisation"], summary="One unit")
async def get_unit(unit_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    _no_campus_systems(principal)
    unit = await _queries(request).unit(unit_id)
    if unit is None:
        raise _not_found(f"unit {unit_id}")
    return unit


@router.post(
    "/branches/{branch_id}/committee",
    tags=["organisation"],
    responses=COMMAND_ERRORS,
    summary="Record a committee election (支部委员会)",
)
async def elect_committee(
    branch_id: str,
    body: organisation.ElectCommittee,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _branch_scope(request, branch_id)
    principal.require_write(branch_id, scope.school_id)
    result = await _service(request).elect_committee(branch_id, body, command)
    return accepted(result, response, stream=unit_stream(branch_id))


@router.get(
    "/branches/{branch_id}/committee",
    tags=["organisation"],
    summary="The branch's current committee",
)
async def get_committee(
    branch_id: str, request: Request, principal: CurrentPrincipal
) -> dict[str, Any] | None:
    scope = await _branch_scope(request, branch_id)
    principal.require_read(branch_id, scope.school_id)
    return await _queries(request).committee(branch_id)


class ElectionRequest(election.HoldElection):
    election_id: str | None = OPTIONAL_ID  # type: ignore[assignment]


@router.post(
    "/branches/{branch_id}/elections",
    status_code=201,
    tags=["organisation"],
    responses=COMMAND_ERRORS,
    summary="Record a committee election (民主选举): the electorate, the ballots, the result",
)
async def hold_election(
    branch_id: str,
    body: ElectionRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _branch_scope(request, branch_id)
    principal.require_write(branch_id, scope.school_id)
    election_id = body.election_id or _generated_id("e", command)
    held = election.HoldElection(**{**body.model_dump(), "election_id": election_id})
    roll = await _queries(request).branch_member_ids(branch_id)
    result = await _service(request).hold_election(branch_id, held, command, roll)
    return accepted(result, response, id=election_id, stream=unit_stream(branch_id))


@router.get(
    "/branches/{branch_id}/elections",
    tags=["organisation"],
    summary="The branch's elections, each round with its result and the committee it gave",
)
async def list_elections(
    branch_id: str, request: Request, principal: CurrentPrincipal
) -> list[dict[str, Any]]:
    scope = await _branch_scope(request, branch_id)
    principal.require_read(branch_id, scope.school_id)
    return await _queries(request).elections(branch_id)


@router.post(
    "/groups/{group_id}/links",
    tags=["care"],
    responses=COMMAND_ERRORS,
    summary="Link a Party group to a company, class or student in difficulty",
)
async def link_group(
    group_id: str,
    body: organisation.LinkGroup,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _queries(request).unit_scope(group_id)
    if scope is None or scope.kind != "group" or scope.branch_id is None:
        raise _not_found(f"Party group {group_id}")
    principal.require_write(scope.branch_id, scope.school_id)
    result = await _service(request).link_group(group_id, scope.branch_id, body, command)
    return accepted(result, response, id=body.link_id, stream=unit_stream(group_id))


@router.get("/groups/{group_id}/links", tags=["care"], summary="A Party group's links")
async def get_links(
    group_id: str, request: Request, principal: CurrentPrincipal
) -> list[dict[str, Any]]:
    scope = await _queries(request).unit_scope(group_id)
    if scope is None or scope.branch_id is None:
        raise _not_found(f"Party group {group_id}")
    principal.require_read(scope.branch_id, scope.school_id)
    return await _queries(request).links(group_id)


# -- members ----------------------------------------------------------------------------------


class EnrolRequest(member.EnrolMember):
    member_id: str | None = Field(  # type: ignore[assignment]
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
        description="a stable internal id; generated when left out",
    )


@router.post(
    "/members",
    status_code=201,
    tags=["members"],
    responses=COMMAND_ERRORS,
    summary="Enrol a member into a branch",
)
async def enrol(
    body: EnrolRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _queries(request).unit_scope(body.branch_id)
    principal.require_write(body.branch_id, scope.school_id if scope else None)
    member_id = body.member_id or f"m-{uuid.uuid4().hex[:12]}"
    enrolment = member.EnrolMember(**{**body.model_dump(), "member_id": member_id})
    result = await _service(request).enrol(enrolment, command)
    created = member_id_of(result)
    return accepted(result, response, id=created, stream=member_stream(created))


@router.get(
    "/branches/{branch_id}/members", tags=["members"], summary="A branch's members, in pages"
)
async def list_members(
    branch_id: str,
    request: Request,
    principal: CurrentPrincipal,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    scope = await _branch_scope(request, branch_id)
    principal.require_read(branch_id, scope.school_id)
    return await _queries(request).members(branch_id, after, limit)


@router.get(
    "/members/{member_id}", tags=["members"], summary="A member with their categories as of a date"
)
async def get_member(
    member_id: str, request: Request, principal: CurrentPrincipal, as_of: AsOf = None
) -> dict[str, Any]:
    scope = await _member_scope(request, member_id)
    if principal.member_id != member_id:
        principal.require_read(scope.branch_id or "", scope.school_id)
    record = await _queries(request).member(member_id, _today(request, as_of))
    assert record is not None
    return record


async def _authorise_member_command(
    request: Request, principal: Principal, member_id: str
) -> Scope:
    scope = await _member_scope(request, member_id)
    principal.require_write(scope.branch_id or "", scope.school_id)
    return scope


async def _roll(request: Request, scope: Scope, vote: object) -> list[str]:
    """Every member the branch has had, when a vote is to be counted against them."""
    if vote is None or scope.branch_id is None:
        return []
    return await _queries(request).branch_member_ids(scope.branch_id)


def _member_endpoint(path: str, summary: str) -> Callable[[Endpoint], Endpoint]:
    return router.post(
        f"/members/{{member_id}}/{path}",
        tags=["members"],
        responses=COMMAND_ERRORS,
        summary=summary,
    )


@_member_endpoint("moves", "Move a member to another group, class, company, dorm or bed")
async def move(
    member_id: str,
    body: member.MoveMember,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    queries = _queries(request)
    group_branch = await queries.group_branch(body.group_id) if body.group_id else None
    result = await _service(request).move(member_id, body, command, lambda _: group_branch)
    return accepted(result, response, stream=member_stream(member_id))


@_member_endpoint("transfer-out", "Transfer the membership out (组织关系转接)")
async def transfer_out(
    member_id: str,
    body: member.TransferOut,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    result = await _service(request).transfer_out(member_id, body, command)
    return accepted(result, response, stream=member_stream(member_id))


@_member_endpoint(
    "erasure",
    "Erase a member who left, once the retention period is over (个人信息保护法): their "
    "personal data can no longer be read; the record and the scores stay",
)
async def erase_member(
    member_id: str,
    body: member.EraseMember,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    # A university's decision about its records, not a branch's: a school's admin for their
    # school, or the university's.
    scope = await _member_scope(request, member_id)
    principal.require_role("university_admin", "school_admin")
    if principal.role == "school_admin" and scope.school_id not in principal.schools:
        raise AccessDenied(
            f"school_admin {principal.subject} may not erase member {member_id} of another school"
        )
    result = await _service(request).erase_member(member_id, body, command)
    return accepted(result, response, stream=member_stream(member_id))


@_member_endpoint("categories", "Change the cadre, graduating or performance category")
async def change_category(
    member_id: str,
    body: member.ChangeCategory,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    result = await _service(request).change_category(member_id, body, command)
    return accepted(result, response, stream=member_stream(member_id))


@_member_endpoint("conversion", "Convert a probationary member to a full member (转正)")
async def convert(
    member_id: str,
    body: member.ConvertMember,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _authorise_member_command(request, principal, member_id)
    roll = await _roll(request, scope, body.vote)
    result = await _service(request).convert(member_id, body, command, roll)
    return accepted(result, response, stream=member_stream(member_id))


@_member_endpoint("probation-extension", "Extend a probation once, by 6 to 12 months")
async def extend_probation(
    member_id: str,
    body: member.ExtendProbation,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _authorise_member_command(request, principal, member_id)
    roll = await _roll(request, scope, body.vote)
    result = await _service(request).extend_probation(member_id, body, command, roll)
    return accepted(result, response, stream=member_stream(member_id))


@_member_endpoint("responsibility-space", "Assign the member's responsibility space (责任空间)")
async def assign_space(
    member_id: str,
    body: member.AssignSpace,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    result = await _service(request).assign_space(member_id, body, command)
    return accepted(result, response, stream=member_stream(member_id))


@_member_endpoint("agreements", "Record the yearly responsibility agreement (责任书)")
async def sign_agreement(
    member_id: str,
    body: member.SignAgreement,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    result = await _service(request).sign_agreement(member_id, body, command)
    return accepted(result, response, id=body.agreement_id, stream=member_stream(member_id))


@_member_endpoint("plaques", "Issue a Party-member dormitory or bed plaque")
async def issue_plaque(
    member_id: str,
    body: member.IssuePlaque,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    result = await _service(request).issue_plaque(member_id, body, command)
    return accepted(result, response, id=body.plaque_id, stream=member_stream(member_id))


@_member_endpoint("discipline", "Record a Party discipline measure (党纪处分)")
async def discipline(
    member_id: str,
    body: member.Discipline,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    result = await _service(request).discipline(member_id, body, command)
    return accepted(result, response, stream=member_stream(member_id))


@router.post(
    "/members/{member_id}/plaques/{plaque_id}/withdrawal",
    tags=["members"],
    responses=COMMAND_ERRORS,
    summary="Withdraw a plaque",
)
async def withdraw_plaque(
    member_id: str,
    plaque_id: str,
    body: member.WithdrawPlaque,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _authorise_member_command(request, principal, member_id)
    result = await _service(request).withdraw_plaque(member_id, plaque_id, body, command)
    return accepted(result, response, stream=member_stream(member_id))


# -- guides -----------------------------------------------------------------------------------

GUIDE_READERS: tuple[Role, ...] = (
    "university_admin",
    "auditor",
    "school_admin",
    "branch_secretary",
    "committee_member",
)


class GuideRequest(guide.RegisterGuide):
    guide_id: str | None = OPTIONAL_ID  # type: ignore[assignment]


@router.post(
    "/guides",
    status_code=201,
    tags=["guides"],
    responses=COMMAND_ERRORS,
    summary="Register a Party-member guide (党员引路人) from outside the branch",
)
async def register_guide(
    body: GuideRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    principal.require_role("university_admin", "school_admin", "branch_secretary")
    guide_id = body.guide_id or _generated_id("g", command)
    registration = guide.RegisterGuide(**{**body.model_dump(), "guide_id": guide_id})
    result = await _service(request).register_guide(registration, command)
    return accepted(result, response, id=guide_id, stream=guide_stream(guide_id))


@router.get(
    "/guides/{guide_id}",
    tags=["guides"],
    summary="A guide and their appointments (those of the branches in your scope)",
)
async def get_guide(guide_id: str, request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    principal.require_role(*GUIDE_READERS)
    queries = _queries(request)
    record = await queries.guide(guide_id)
    if record is None:
        raise _not_found(f"guide {guide_id}")
    if not principal.reads_everything:
        # The guide is the university's; their appointments are the branches': each caller
        # sees those of the branches in their scope only.
        shown = []
        for appointment in record["appointments"]:
            scope = await queries.unit_scope(appointment["branch_id"])
            school = scope.school_id if scope is not None else None
            if principal.covers_branch(appointment["branch_id"], school):
                shown.append(appointment)
        record["appointments"] = shown
    return record


class AppointmentRequest(guide.AppointGuide):
    appointment_id: str | None = OPTIONAL_ID  # type: ignore[assignment]


@router.post(
    "/guides/{guide_id}/appointments",
    status_code=201,
    tags=["guides"],
    responses=COMMAND_ERRORS,
    summary="Appoint a guide for a term to members of a branch or to one of its Party groups",
)
async def appoint_guide(
    guide_id: str,
    body: AppointmentRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _branch_scope(request, body.branch_id)
    principal.require_write(body.branch_id, scope.school_id)
    appointment_id = body.appointment_id or _generated_id("ga", command)
    appointment = guide.AppointGuide(**{**body.model_dump(), "appointment_id": appointment_id})
    result = await _service(request).appoint_guide(guide_id, appointment, command)
    return accepted(result, response, id=appointment_id, stream=guide_stream(guide_id))


@router.post(
    "/guides/{guide_id}/appointments/{appointment_id}/end",
    tags=["guides"],
    responses=COMMAND_ERRORS,
    summary="End a guide's appointment before its term",
)
async def end_guide_appointment(
    guide_id: str,
    appointment_id: str,
    body: guide.EndAppointment,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    queries = _queries(request)
    appointment = await queries.guide_appointment(guide_id, appointment_id)
    if appointment is None:
        raise _not_found(f"appointment {appointment_id} of guide {guide_id}")
    scope = await _branch_scope(request, appointment["branch_id"])
    principal.require_write(appointment["branch_id"], scope.school_id)
    result = await _service(request).end_guide_appointment(guide_id, appointment_id, body, command)
    return accepted(result, response, stream=guide_stream(guide_id))


@router.post(
    "/guides/{guide_id}/erasure",
    tags=["guides"],
    responses=COMMAND_ERRORS,
    summary="Erase a guide no longer appointed, once the retention period is over: their name "
    "and phone can no longer be read",
)
async def erase_guide(
    guide_id: str,
    body: guide.EraseGuide,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    principal.require_role("university_admin")  # guides are the university's, not a branch's
    if await _queries(request).guide(guide_id) is None:
        raise _not_found(f"guide {guide_id}")
    result = await _service(request).erase_guide(guide_id, body, command)
    return accepted(result, response, stream=guide_stream(guide_id))


@router.get(
    "/branches/{branch_id}/guides",
    tags=["guides"],
    summary="The branch's guides: every appointment, or those in force on a date",
)
async def branch_guides(
    branch_id: str,
    request: Request,
    principal: CurrentPrincipal,
    as_of: Annotated[
        BoundedDate | None, Query(description="only the appointments in force that day")
    ] = None,
) -> list[dict[str, Any]]:
    scope = await _branch_scope(request, branch_id)
    principal.require_read(branch_id, scope.school_id)
    return await _queries(request).branch_guides(branch_id, as_of)


# -- archives ---------------------------------------------------------------------------------


class ArchiveMember(BaseModel):
    member_id: str
    student_number: str
    name: str
    branch_id: str
    group_id: str | None
    class_name: str | None
    company: str | None
    dormitory: str | None
    standing: str | None
    cadre: str | None
    graduating: str | None
    performance: str | None


class ArchiveResponse(BaseModel):
    unit_id: str | None
    as_of: date
    members: list[ArchiveMember]
    counts: dict[str, dict[str, int]]
    groups: list[dict[str, Any]] = Field(description="each combination of the four dimensions")
    by_party_group: dict[str, int]


@router.get(
    "/archives",
    tags=["archives"],
    summary="Classified archives (分类党员群体档案) of a branch, a school or the university",
    responses={
        200: {
            "content": {
                "text/csv": {},
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {},
            }
        }
    },
)
async def archives(
    request: Request,
    principal: CurrentPrincipal,
    unit_id: Annotated[
        str | None, Query(description="a branch or school; none: university")
    ] = None,
    as_of: AsOf = None,
    standing: Literal["full", "probationary"] | None = None,
    cadre: Literal["cadre", "non_cadre"] | None = None,
    graduating: Literal["graduating", "not_graduating"] | None = None,
    performance: Literal["excellent", "lagging", "neither"] | None = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Any:
    queries = _queries(request)
    title = "全校 University"
    if unit_id is None:
        principal.require_role("university_admin", "auditor")
    else:
        scope = await queries.unit_scope(unit_id)
        if scope is None or scope.kind == "group":
            raise _not_found(f"branch or school {unit_id}")
        if scope.kind == "school":
            if not (principal.reads_everything or unit_id in principal.schools):
                raise AccessDenied(
                    f"{principal.role} {principal.subject} may not read school {unit_id}"
                )
        else:
            principal.require_read(unit_id, scope.school_id)
        unit = await queries.unit(unit_id)
        title = unit["name"] if unit else unit_id
    wanted: dict[str, str] = {
        k: v
        for k, v in {
            "standing": standing,
            "cadre": cadre,
            "graduating": graduating,
            "performance": performance,
        }.items()
        if v is not None
    }
    archive = await queries.archive(unit_id, _today(request, as_of), wanted)
    filename = f"archives-{unit_id or 'university'}-{archive.as_of.isoformat()}"
    if format == "csv":
        return Response(
            to_csv(archive),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )
    if format == "xlsx":
        return Response(
            to_xlsx(archive, title),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'},
        )
    return ArchiveResponse(
        unit_id=unit_id,
        as_of=archive.as_of,
        members=[
            ArchiveMember(
                member_id=r.member_id,
                student_number=r.student_number,
                name=r.name,
                branch_id=r.branch_id,
                group_id=r.group_id,
                class_name=r.class_name,
                company=r.company,
                dormitory=r.dormitory,
                **r.categories.__dict__,
            )
            for r in archive.rows
        ],
        counts=archive.counts,
        groups=archive.groups,
        by_party_group=archive.by_party_group,
    )


@router.get(
    "/branches/{branch_id}/without-agreement",
    tags=["responsibility"],
    summary="Members without a current responsibility agreement",
)
async def without_agreement(
    branch_id: str, request: Request, principal: CurrentPrincipal, as_of: AsOf = None
) -> list[dict[str, Any]]:
    scope = await _branch_scope(request, branch_id)
    principal.require_read(branch_id, scope.school_id)
    return await _queries(request).without_agreement(branch_id, _today(request, as_of))


# -- care -------------------------------------------------------------------------------------


@router.post(
    "/branches/{branch_id}/pairings",
    status_code=201,
    tags=["care"],
    responses=COMMAND_ERRORS,
    summary="Form a mentor/mentee pair (哥俩好)",
)
async def form_pair(
    branch_id: str,
    body: care.FormPair,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _branch_scope(request, branch_id)
    principal.require_write(branch_id, scope.school_id)
    result = await _service(request).form_pair(branch_id, body, command)
    return accepted(result, response, id=body.pairing_id)


@router.post(
    "/branches/{branch_id}/pairings/{pairing_id}/end",
    tags=["care"],
    responses=COMMAND_ERRORS,
    summary="End a pair",
)
async def end_pair(
    branch_id: str,
    pairing_id: str,
    body: care.EndPair,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    scope = await _branch_scope(request, branch_id)
    principal.require_write(branch_id, scope.school_id)
    result = await _service(request).end_pair(branch_id, pairing_id, body, command)
    return accepted(result, response)


@router.get("/branches/{branch_id}/pairings", tags=["care"], summary="The branch's pairs")
async def list_pairings(
    branch_id: str, request: Request, principal: CurrentPrincipal, active: bool = True
) -> list[dict[str, Any]]:
    scope = await _branch_scope(request, branch_id)
    principal.require_read(branch_id, scope.school_id)
    return await _queries(request).pairings(branch_id, active)


class PairSuggestion(BaseModel):
    mentee_id: str
    mentor_id: str


@router.get(
    "/branches/{branch_id}/pairing-suggestions",
    tags=["care"],
    summary="Lagging members paired with excellent members not yet mentoring",
)
async def pairing_suggestions(
    branch_id: str, request: Request, principal: CurrentPrincipal, as_of: AsOf = None
) -> list[PairSuggestion]:
    scope = await _branch_scope(request, branch_id)
    principal.require_read(branch_id, scope.school_id)
    suggestions = await _queries(request).suggestions(branch_id, _today(request, as_of))
    return [PairSuggestion(mentee_id=s.mentee_id, mentor_id=s.mentor_id) for s in suggestions]
