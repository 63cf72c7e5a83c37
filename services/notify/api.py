"""Notify's HTTP API: deadlines, delivery logs, dead letters, calendars, channel preferences."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from contracts.events.deadline import Channel
from runtime.auth import AccessDenied, Principal
from runtime.directory import Directory
from runtime.http import CurrentPrincipal, Problem, problem_responses
from runtime.http.moments import AtInstant
from services.notify.domain.config import NotifyConfig
from services.notify.handlers import NotifyService
from services.notify.ics import calendar
from services.notify.queries import NotifyQueries

router = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 422, 503))

Status = Annotated[Literal["upcoming", "overdue", "all"], Query()]
AsOf = AtInstant  # upcoming and overdue as seen at this instant (default: now)


def _queries(request: Request) -> NotifyQueries:
    queries: NotifyQueries = request.app.state.context.extras["notify_queries"]
    return queries


def _service(request: Request) -> NotifyService:
    service: NotifyService = request.app.state.context.extras["notify"]
    return service


def _directory(request: Request) -> Directory:
    directory: Directory = request.app.state.context.directory
    return directory


def _now(request: Request) -> Any:
    return request.app.state.context.clock()


def _not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} is not known", type_="/problems/not-found")


async def _read_branch(request: Request, principal: Principal, branch_id: str) -> None:
    principal.require_read(branch_id, await _directory(request).school_of(branch_id))


@router.get(
    "/members/{member_id}/deadlines",
    tags=["deadlines"],
    summary="A member's deadlines (upcoming by default)",
)
async def member_deadlines(
    member_id: str,
    request: Request,
    principal: CurrentPrincipal,
    status: Status = "upcoming",
    as_of: AsOf = None,
) -> list[dict[str, Any]]:
    if principal.member_id != member_id:
        member = await _directory(request).member(member_id)
        if member is None:
            raise _not_found(f"member {member_id}")
        await _read_branch(request, principal, member.branch_id)
    return await _queries(request).deadlines(
        status=status, now=as_of or _now(request), member_id=member_id
    )


@router.get(
    "/branches/{branch_id}/deadlines",
    tags=["deadlines"],
    summary="A branch's deadlines (upcoming by default)",
)
async def branch_deadlines(
    branch_id: str,
    request: Request,
    principal: CurrentPrincipal,
    status: Status = "upcoming",
    as_of: AsOf = None,
) -> list[dict[str, Any]]:
    await _read_branch(request, principal, branch_id)
    return await _queries(request).deadlines(
        status=status, now=as_of or _now(request), branch_ids=[branch_id]
    )


@router.get(
    "/schools/{school_id}/deadlines",
    tags=["deadlines"],
    summary="Every branch of a school (overdue by default)",
)
async def school_deadlines(
    school_id: str,
    request: Request,
    principal: CurrentPrincipal,
    status: Status = "overdue",
    as_of: AsOf = None,
) -> list[dict[str, Any]]:
    if not (principal.reads_everything or school_id in principal.schools):
        raise AccessDenied(f"{principal.role} {principal.subject} may not read school {school_id}")
    branches = [
        u.unit_id for u in await _directory(request).units("branch") if u.parent_id == school_id
    ]
    return await _queries(request).deadlines(
        status=status, now=as_of or _now(request), branch_ids=branches
    )


@router.get(
    "/deadlines/{deadline_id}", tags=["deadlines"], summary="A deadline with its delivery log"
)
async def get_deadline(
    deadline_id: str, request: Request, principal: CurrentPrincipal
) -> dict[str, Any]:
    found = await _queries(request).deadline(deadline_id)
    if found is None:
        raise _not_found(f"deadline {deadline_id}")
    if found["branch_id"] is None:
        covered = principal.reads_everything
    else:
        school = await _directory(request).school_of(found["branch_id"])
        covered = principal.covers_branch(found["branch_id"], school)
    if covered:
        return found
    if principal.member_id is None or principal.member_id != found["member_id"]:
        where = f"branch {found['branch_id']}" if found["branch_id"] else "the university"
        raise AccessDenied(
            f"{principal.role} {principal.subject} may not read deadline {deadline_id} of {where}"
        )
    # The member's own deadline, seen by the member: their own deliveries only (the secretary's
    # and the school office's, with their errors, are not theirs to read).
    mine = [d for d in found["deliveries"] if d["recipient_id"] == principal.member_id]
    return {**found, "deliveries": mine}


@router.get(
    "/dead-letters",
    tags=["deliveries"],
    summary="Reminders that could not be delivered after every retry",
)
async def dead_letters(
    request: Request,
    principal: CurrentPrincipal,
    branch_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    if branch_id is None:
        principal.require_role("university_admin", "auditor")
    else:
        await _read_branch(request, principal, branch_id)
    return await _queries(request).dead_letters([branch_id] if branch_id else None, limit)


@router.get(
    "/branches/{branch_id}/calendar.ics",
    tags=["deadlines"],
    summary="The branch's deadlines as an iCalendar feed",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}}},
)
async def branch_calendar(
    branch_id: str, request: Request, principal: CurrentPrincipal
) -> Response:
    await _read_branch(request, principal, branch_id)
    unit = await _directory(request).unit(branch_id)
    if unit is None:  # also keeps an unknown id out of the Content-Disposition header
        raise _not_found(f"branch {branch_id}")
    deadlines = await _queries(request).deadlines(
        status="all", now=_now(request), branch_ids=[branch_id], limit=5000
    )
    text = calendar(branch_id, unit.name, deadlines, _now(request))
    return Response(
        text,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{branch_id}.ics"'},
    )


class Preferences(BaseModel):
    channels: list[Channel] = Field(min_length=1, max_length=3)
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=200)


async def _may_set_preferences(
    recipient_id: str, request: Request, principal: CurrentPrincipal
) -> Principal:
    """Checked before the body is read (issue 14: reminders must not be pointed at someone
    else's address). A member's preferences: the member themself, the secretary (and the
    committee members) of their branch, the admin of their school, the university admin. A
    school office's: the admin of that school, the university admin. Anyone else gets 403, and
    so does an auditor (who changes nothing, not even their own) and another service."""
    if principal.role in ("auditor", "service"):
        raise AccessDenied(f"the {principal.role} role changes no recipient's preferences")
    if principal.role == "university_admin" or principal.member_id == recipient_id:
        return principal
    directory = _directory(request)
    member = await directory.member(recipient_id)
    if member is not None:
        school = await directory.school_of(member.branch_id)
        if not principal.covers_branch(member.branch_id, school):
            raise AccessDenied(
                f"{principal.role} {principal.subject} may not change how member "
                f"{recipient_id} is reminded: that is for the member, the committee of branch "
                f"{member.branch_id}, the admin of its school or the university admin"
            )
        return principal
    config: NotifyConfig = request.app.state.context.extras["notify_config"]
    for unit in await directory.units("school"):
        if config.school_office(unit.unit_id) == recipient_id:
            if principal.role != "school_admin" or unit.unit_id not in principal.schools:
                raise AccessDenied(
                    f"{principal.role} {principal.subject} may not change how the office of "
                    f"school {unit.unit_id} is reminded: that is for the admin of that school "
                    "or the university admin"
                )
            return principal
    raise AccessDenied(
        f"{principal.role} {principal.subject} may not change the preferences of "
        f"{recipient_id}, who is neither a member in their scope nor their school's office"
    )


@router.put(
    "/recipients/{recipient_id}",
    tags=["deliveries"],
    summary="How a recipient wants to be reminded (yourself, your branch's committee, or an "
    "admin whose scope includes you)",
)
async def set_preferences(
    recipient_id: str,
    body: Preferences,
    request: Request,
    principal: Annotated[Principal, Depends(_may_set_preferences)],
) -> dict[str, Any]:
    await _queries(request).set_channels(
        recipient_id, list(body.channels), body.email, principal.subject, _now(request)
    )
    return {
        "recipient_id": recipient_id,
        "channels": body.channels,
        "email": body.email,
        "applies_to": "reminders planned from now on",
    }
