"""The activities HTTP API: commands (POST) and queries (GET), authorised by role and scope."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from runtime.auth import Principal
from runtime.directory import Directory
from runtime.http import Accepted, Command, CurrentPrincipal, Problem, accepted, problem_responses
from runtime.http.moments import InstantQuery
from services.activities.domain import activity, attendance, budget, reports
from services.activities.handlers import (
    ActivitiesService,
    activity_stream,
    attendance_stream,
    report_stream,
)
from services.activities.queries import ActivitiesQueries

router = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 422, 503))
COMMAND_ERRORS = problem_responses(409)
Year = Annotated[int, Path(ge=1949, le=2100, description="the budget year")]


def _service(request: Request) -> ActivitiesService:
    service: ActivitiesService = request.app.state.context.extras["activities"]
    return service


def _queries(request: Request) -> ActivitiesQueries:
    queries: ActivitiesQueries = request.app.state.context.extras["activities_queries"]
    return queries


def _directory(request: Request) -> Directory:
    directory: Directory = request.app.state.context.directory
    return directory


def _not_found(what: str) -> Problem:
    return Problem(404, "Not found", f"{what} is not known", type_="/problems/not-found")


async def _write(request: Request, principal: Principal, branch_id: str) -> None:
    principal.require_write(branch_id, await _directory(request).school_of(branch_id))


async def _read(request: Request, principal: Principal, branch_id: str) -> None:
    principal.require_read(branch_id, await _directory(request).school_of(branch_id))


async def _activity_branch(request: Request, activity_id: str) -> str:
    found = await _queries(request).activity(activity_id)
    if found is None:
        raise _not_found(f"activity {activity_id}")
    return str(found["branch_id"])


# -- activities -------------------------------------------------------------------------------


class ScheduleRequest(activity.ScheduleActivity):
    activity_id: str | None = Field(  # type: ignore[assignment]
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$",
        description="generated when left out",
    )


@router.post(
    "/activities",
    status_code=201,
    tags=["activities"],
    responses=COMMAND_ERRORS,
    summary="Schedule an activity of any kind",
)
async def schedule(
    body: ScheduleRequest,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    # The units the command names, read once: for the scope check and for the decision.
    directory = _directory(request)
    attending = body.attendees.group_id if body.attendees else None
    units = await directory.units_by_id(
        [body.branch_id, *(u for u in (body.group_id, attending) if u)]
    )
    branch = units.get(body.branch_id)
    if branch is not None and branch.kind == "branch":
        principal.require_write(body.branch_id, branch.parent_id)
    else:
        await _write(request, principal, body.branch_id)
    activity_id = body.activity_id or f"act-{uuid.uuid4().hex[:12]}"
    scheduled = activity.ScheduleActivity(**{**body.model_dump(), "activity_id": activity_id})
    result = await _service(request).schedule(scheduled, command, units)
    created = next(s for s in result.stream_versions).removeprefix("activity-")
    return accepted(result, response, id=created, stream=activity_stream(created))


@router.post(
    "/activities/{activity_id}/reschedule",
    tags=["activities"],
    responses=COMMAND_ERRORS,
    summary="Move an activity",
)
async def reschedule(
    activity_id: str,
    body: activity.RescheduleActivity,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    branch_id = await _activity_branch(request, activity_id)
    await _write(request, principal, branch_id)
    result = await _service(request).reschedule(activity_id, body, command, branch_id)
    return accepted(result, response, stream=activity_stream(activity_id))


@router.post(
    "/activities/{activity_id}/cancel",
    tags=["activities"],
    responses=COMMAND_ERRORS,
    summary="Cancel an activity",
)
async def cancel(
    activity_id: str,
    body: activity.CancelActivity,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    branch_id = await _activity_branch(request, activity_id)
    await _write(request, principal, branch_id)
    result = await _service(request).cancel(activity_id, body, command, branch_id)
    return accepted(result, response, stream=activity_stream(activity_id))


class SemesterPlanned(BaseModel):
    scheduled: list[str]
    already_planned: list[str]
    skipped_holidays: list[date]
    position: int | None


@router.post(
    "/branches/{branch_id}/semesters",
    tags=["activities"],
    responses=COMMAND_ERRORS,
    summary="Plan a semester: all-member meetings in odd weeks, group meetings in even",
)
async def plan_semester(
    branch_id: str,
    body: activity.PlanSemester,
    request: Request,
    principal: CurrentPrincipal,
    command: Command,
) -> SemesterPlanned:
    await _write(request, principal, branch_id)
    if await _directory(request).unit(branch_id) is None:
        raise _not_found(f"branch {branch_id}")
    plan, result = await _service(request).plan_semester(branch_id, body, command)
    return SemesterPlanned(
        scheduled=plan.scheduled,
        already_planned=plan.already_planned,
        skipped_holidays=plan.skipped_days,
        position=result.last_position,
    )


@router.get("/activities/{activity_id}", tags=["activities"], summary="One activity")
async def get_activity(
    activity_id: str, request: Request, principal: CurrentPrincipal
) -> dict[str, Any]:
    found = await _queries(request).activity(activity_id)
    if found is None:
        raise _not_found(f"activity {activity_id}")
    await _read(request, principal, found["branch_id"])
    return found


@router.get(
    "/branches/{branch_id}/activities",
    tags=["activities"],
    summary="A branch's activities, in time order",
)
async def list_activities(
    branch_id: str,
    request: Request,
    principal: CurrentPrincipal,
    start: InstantQuery = None,
    end: InstantQuery = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    await _read(request, principal, branch_id)
    return await _queries(request).activities(branch_id, start, end, kind)


# -- attendance -------------------------------------------------------------------------------


@router.post(
    "/activities/{activity_id}/attendance",
    tags=["attendance"],
    responses=COMMAND_ERRORS,
    summary="Record a whole attendance sheet (all or nothing)",
)
async def record_sheet(
    activity_id: str,
    body: attendance.RecordSheet,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write(request, principal, await _activity_branch(request, activity_id))
    result = await _service(request).record_sheet(activity_id, body, command)
    return accepted(result, response, stream=attendance_stream(activity_id))


@router.post(
    "/activities/{activity_id}/attendance/corrections",
    tags=["attendance"],
    responses=COMMAND_ERRORS,
    summary="Correct one member's attendance",
)
async def correct(
    activity_id: str,
    body: attendance.CorrectAttendance,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write(request, principal, await _activity_branch(request, activity_id))
    result = await _service(request).correct(activity_id, body, command)
    return accepted(result, response, stream=attendance_stream(activity_id))


@router.get(
    "/activities/{activity_id}/attendance",
    tags=["attendance"],
    summary="Current attendance and every record and correction, with who made it",
)
async def get_attendance(
    activity_id: str, request: Request, principal: CurrentPrincipal
) -> dict[str, Any]:
    await _read(request, principal, await _activity_branch(request, activity_id))
    return await _queries(request).attendance(activity_id)


# -- reports ----------------------------------------------------------------------------------


@router.post(
    "/branches/{branch_id}/report-cadence",
    tags=["reports"],
    responses=COMMAND_ERRORS,
    summary="How often situation reports fall due (信息汇报)",
)
async def set_cadence(
    branch_id: str,
    body: reports.SetCadence,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write(request, principal, branch_id)
    result = await _service(request).set_cadence(branch_id, body, command)
    return accepted(result, response)


class ObligationsPlanned(BaseModel):
    planned: list[str]
    position: int | None


@router.post(
    "/branches/{branch_id}/report-obligations",
    tags=["reports"],
    responses=COMMAND_ERRORS,
    summary="Plan the report obligations falling due by a date (adds nothing twice)",
)
async def plan_obligations(
    branch_id: str,
    body: reports.PlanObligations,
    request: Request,
    principal: CurrentPrincipal,
    command: Command,
) -> ObligationsPlanned:
    await _write(request, principal, branch_id)
    existing = await _queries(request).obligation_ids(branch_id)
    planned, result = await _service(request).plan_obligations(
        branch_id, body.through, command, existing
    )
    return ObligationsPlanned(planned=planned, position=result.last_position if result else None)


async def _obligation(request: Request, obligation_id: str) -> dict[str, Any]:
    found = await _queries(request).obligation(obligation_id)
    if found is None:
        raise _not_found(f"report obligation {obligation_id}")
    return found


@router.post(
    "/reports/{obligation_id}/submission",
    tags=["reports"],
    responses=COMMAND_ERRORS,
    summary="Submit a report (the member, or the branch on their behalf)",
)
async def submit(
    obligation_id: str,
    body: reports.SubmitReport,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    found = await _obligation(request, obligation_id)
    if principal.member_id != found["member_id"]:
        await _write(request, principal, found["branch_id"])
    result = await _service(request).submit(obligation_id, body, command)
    return accepted(result, response, stream=report_stream(obligation_id))


@router.post(
    "/reports/{obligation_id}/review",
    tags=["reports"],
    responses=COMMAND_ERRORS,
    summary="Review a submitted report with a grade (again to re-review)",
)
async def review(
    obligation_id: str,
    body: reports.ReviewReport,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    found = await _obligation(request, obligation_id)
    await _write(request, principal, found["branch_id"])
    result = await _service(request).review(obligation_id, body, command)
    return accepted(result, response, stream=report_stream(obligation_id))


Status = Annotated[str, Query(pattern="^(pending|overdue|all)$")]


@router.get(
    "/members/{member_id}/obligations",
    tags=["reports"],
    summary="A member's report obligations (pending by default)",
)
async def member_obligations(
    member_id: str, request: Request, principal: CurrentPrincipal, status: Status = "pending"
) -> list[dict[str, Any]]:
    if principal.member_id != member_id:
        member = await _directory(request).member(member_id)
        if member is None:
            raise _not_found(f"member {member_id}")
        await _read(request, principal, member.branch_id)
    return await _queries(request).obligations(
        member_id=member_id, status=status, as_of=_service(request).today()
    )


@router.get(
    "/branches/{branch_id}/obligations", tags=["reports"], summary="A branch's report obligations"
)
async def branch_obligations(
    branch_id: str, request: Request, principal: CurrentPrincipal, status: Status = "pending"
) -> list[dict[str, Any]]:
    await _read(request, principal, branch_id)
    return await _queries(request).obligations(
        branch_id=branch_id, status=status, as_of=_service(request).today()
    )


# -- budget -----------------------------------------------------------------------------------


@router.post(
    "/branches/{branch_id}/budgets/{year}",
    tags=["budget"],
    responses=COMMAND_ERRORS,
    summary="Plan (or re-plan) a branch's budget for a year, in fen",
)
async def plan_budget(
    branch_id: str,
    year: Year,
    body: budget.PlanBudget,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write(request, principal, branch_id)
    result = await _service(request).plan_budget(branch_id, year, body, command)
    return accepted(result, response, stream=budget.budget_id(branch_id, year))


@router.post(
    "/branches/{branch_id}/budgets/{year}/expenses",
    status_code=201,
    tags=["budget"],
    responses=COMMAND_ERRORS,
    summary="Record an expense against a budget line",
)
async def record_expense(
    branch_id: str,
    year: Year,
    body: budget.RecordExpense,
    request: Request,
    response: Response,
    principal: CurrentPrincipal,
    command: Command,
) -> Accepted:
    await _write(request, principal, branch_id)
    result = await _service(request).record_expense(branch_id, year, body, command)
    return accepted(result, response, id=body.expense_id, stream=budget.budget_id(branch_id, year))


class StatementLine(BaseModel):
    line: str
    planned_fen: int
    spent_fen: int
    remaining_fen: int


class BudgetStatement(BaseModel):
    branch_id: str
    year: int
    lines: list[StatementLine]
    planned_fen: int
    spent_fen: int
    expenses: list[dict[str, Any]]


@router.get(
    "/branches/{branch_id}/budgets/{year}",
    tags=["budget"],
    summary="Planned against spent, line by line",
)
async def get_budget(
    branch_id: str, year: Year, request: Request, principal: CurrentPrincipal
) -> BudgetStatement:
    await _read(request, principal, branch_id)
    state = await _service(request).budget(branch_id, year)
    if not state.planned:
        raise _not_found(f"a budget of branch {branch_id} for {year}")
    lines = [StatementLine(**line.__dict__) for line in budget.statement(state)]
    return BudgetStatement(
        branch_id=branch_id,
        year=year,
        lines=lines,
        planned_fen=sum(line.planned_fen for line in lines),
        spent_fen=sum(line.spent_fen for line in lines),
        expenses=await _queries(request).expenses(branch_id, year),
    )
