"""Activities of every kind (open and democratic management, 开放管理 / 民主管理): meetings,
lectures, themed days, exchanges, visits, volunteer service, speeches, elections. One stream
per activity (`activity-{id}`); and the odd/even-week cadence of the plan as a pure planner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import EventPayload
from contracts.events import ActivityCancelled, ActivityRescheduled, ActivityScheduled
from contracts.events.activity import ActivityKind, Attendees
from contracts.ranges import BoundedDate, BoundedInstant
from contracts.types import Fen, Identifier, Points, ShortText, Text
from runtime.decider import CommandRefused


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScheduleActivity(Command):
    activity_id: Identifier
    kind: ActivityKind
    title: ShortText
    branch_id: Identifier
    group_id: Identifier | None = Field(None, description="the group of a group meeting")
    starts_at: BoundedInstant
    ends_at: BoundedInstant | None = None
    place: ShortText
    attendees: Attendees | None = Field(
        None,
        description="who must attend; default: the group for a group meeting, else the "
        "whole branch",
    )
    partner: ShortText | None = Field(None, description="exchanges: the other branch")
    base: ShortText | None = Field(None, description="visits: the base visited")
    volunteer_hours: Points | None = Field(None, description="volunteer service: hours credited")
    planned_cost_fen: Fen = 0
    budget_line: ShortText | None = None
    guide_id: Identifier | None = Field(
        None, description="a Party-member guide (党员引路人) of the roster, carried as given"
    )


class RescheduleActivity(Command):
    starts_at: BoundedInstant
    ends_at: BoundedInstant | None = None
    place: ShortText | None = None
    reason: Text | None = None


class CancelActivity(Command):
    reason: Text
    cancelled_at: BoundedInstant | None = Field(
        None, description="when the branch cancelled it (default: now); not in the future"
    )


@dataclass(frozen=True)
class ActivityState:
    activity_id: str
    kind: ActivityKind
    title: str
    branch_id: str
    group_id: str | None
    starts_at: datetime
    ends_at: datetime | None
    place: str
    attendees: Attendees
    volunteer_hours: Decimal | None
    cancelled: bool = False


def evolve(state: ActivityState | None, event: EventPayload) -> ActivityState | None:
    match event:
        case ActivityScheduled():
            return ActivityState(
                activity_id=event.activity_id,
                kind=event.kind,
                title=event.title,
                branch_id=event.branch_id,
                group_id=event.group_id,
                starts_at=event.starts_at,
                ends_at=event.ends_at,
                place=event.place,
                attendees=event.attendees,
                volunteer_hours=event.volunteer_hours,
            )
        case ActivityRescheduled() if state is not None:
            return replace(
                state, starts_at=event.starts_at, ends_at=event.ends_at, place=event.place
            )
        case ActivityCancelled() if state is not None:
            return replace(state, cancelled=True)
    return state


def fold(events: Sequence[EventPayload]) -> ActivityState | None:
    state: ActivityState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def schedule(
    command: ScheduleActivity,
    existing: ActivityState | None,
    branch_known: bool,
    group_branch: str | None,
    members_in_branch: frozenset[str],
    *,
    attendees_group_branch: str | None = None,
) -> list[EventPayload]:
    """`group_branch` is the branch of the named group; `members_in_branch` the active members
    of the branch (to check named attendees); `attendees_group_branch` the branch of the group
    the attendees name (`attendees.group_id`), None when it is no known group (so an activity
    of no group whose attendees are a group is refused unless the fact is given)."""
    if existing is not None:
        raise CommandRefused(
            "activity_exists",
            f"activity {command.activity_id} is already scheduled",
            field="activity_id",
        )
    if not branch_known:
        raise CommandRefused(
            "branch_unknown", f"branch {command.branch_id} is not known", field="branch_id"
        )
    if command.kind == "group_meeting" and command.group_id is None:
        raise CommandRefused(
            "group_required", "a group meeting names its Party group", field="group_id"
        )
    if command.group_id is not None and group_branch != command.branch_id:
        raise CommandRefused(
            "group_not_in_branch",
            f"Party group {command.group_id} is not a group of branch {command.branch_id}",
            field="group_id",
        )
    if command.kind == "exchange" and command.partner is None:
        raise CommandRefused(
            "partner_required", "an exchange names the partner branch", field="partner"
        )
    if command.kind == "visit" and command.base is None:
        raise CommandRefused("base_required", "a visit names the base visited", field="base")
    if command.kind == "volunteer_service" and not command.volunteer_hours:
        raise CommandRefused(
            "hours_required", "volunteer service states the hours credited", field="volunteer_hours"
        )
    if command.ends_at is not None and command.ends_at <= command.starts_at:
        raise CommandRefused(
            "ends_before_start", "ends_at must be after starts_at", field="ends_at"
        )
    attendees = command.attendees or (
        Attendees(scope="group", group_id=command.group_id)
        if command.kind == "group_meeting"
        else Attendees(scope="branch")
    )
    if (
        attendees.scope == "group"
        and attendees.group_id != command.group_id
        and (command.group_id is not None)
    ):
        raise CommandRefused(
            "attendees_group",
            "the attending group is the meeting's group",
            field="attendees.group_id",
        )
    if (
        attendees.scope == "group"
        and command.group_id is None
        and attendees_group_branch != command.branch_id
    ):
        raise CommandRefused(
            "attendees_group_not_in_branch",
            f"Party group {attendees.group_id} is not a group of branch {command.branch_id}",
            field="attendees.group_id",
        )
    strangers = sorted(set(attendees.member_ids) - members_in_branch)
    if strangers:
        raise CommandRefused(
            "attendee_not_in_branch",
            f"member {strangers[0]} is not a member of branch {command.branch_id}",
            field="attendees.member_ids",
        )
    return [
        ActivityScheduled(
            activity_id=command.activity_id,
            kind=command.kind,
            title=command.title,
            branch_id=command.branch_id,
            group_id=command.group_id,
            starts_at=command.starts_at,
            ends_at=command.ends_at,
            place=command.place,
            attendees=attendees,
            partner=command.partner,
            base=command.base,
            volunteer_hours=command.volunteer_hours,
            planned_cost_fen=command.planned_cost_fen,
            budget_line=command.budget_line,
            guide_id=command.guide_id,
        )
    ]


def _require_open(state: ActivityState | None, activity_id: str) -> ActivityState:
    if state is None:
        raise CommandRefused("activity_unknown", f"there is no activity {activity_id}")
    if state.cancelled:
        raise CommandRefused("activity_cancelled", f"activity {activity_id} was cancelled")
    return state


def reschedule(
    command: RescheduleActivity, state: ActivityState | None, activity_id: str
) -> list[EventPayload]:
    activity = _require_open(state, activity_id)
    ends_at = command.ends_at
    if ends_at is None and activity.ends_at is not None:
        ends_at = command.starts_at + (activity.ends_at - activity.starts_at)
    if ends_at is not None and ends_at <= command.starts_at:
        raise CommandRefused(
            "ends_before_start", "ends_at must be after starts_at", field="ends_at"
        )
    place = command.place or activity.place
    if (command.starts_at, ends_at, place) == (
        activity.starts_at,
        activity.ends_at,
        activity.place,
    ):
        raise CommandRefused("nothing_changes", f"activity {activity_id} is already so")
    return [
        ActivityRescheduled(
            activity_id=activity_id,
            kind=activity.kind,
            branch_id=activity.branch_id,
            group_id=activity.group_id,
            previous_starts_at=activity.starts_at,
            starts_at=command.starts_at,
            ends_at=ends_at,
            place=place,
            reason=command.reason,
            title=activity.title,
        )
    ]


def cancel(
    command: CancelActivity, state: ActivityState | None, activity_id: str
) -> list[EventPayload]:
    activity = _require_open(state, activity_id)
    return [
        ActivityCancelled(
            activity_id=activity_id,
            kind=activity.kind,
            branch_id=activity.branch_id,
            group_id=activity.group_id,
            reason=command.reason,
        )
    ]


# -- the odd/even-week cadence of the plan (单周全体党员大会, 双周党小组会) ----------------------


class PlanSemester(Command):
    semester_id: Identifier = Field(examples=["2010-spring"])
    starts_on: BoundedDate = Field(description="week 1 is the week (Monday to Sunday) of this day")
    weeks: int = Field(ge=1, le=30)
    weekday: int = Field(ge=1, le=7, description="1 Monday … 7 Sunday")
    at: time = Field(description="local time the meetings begin")
    duration_minutes: int = Field(90, ge=15, le=480)
    place: ShortText
    group_place: ShortText | None = Field(None, description="default: the same place")
    holidays: list[BoundedDate] = Field(default_factory=list, max_length=60)


@dataclass(frozen=True)
class PlannedMeeting:
    activity_id: str
    kind: Literal["all_member_meeting", "group_meeting"]
    week: int
    day: date
    group_id: str | None


def plan_semester(
    command: PlanSemester, branch_id: str, group_ids: Sequence[str]
) -> tuple[list[PlannedMeeting], list[date]]:
    """All-member meetings in odd weeks, a meeting of every group in even weeks, on the chosen
    weekday, skipping holidays and days before the semester starts. Ids are derived from the
    branch, semester and week, so planning the same semester again yields the same meetings.
    Returns the meetings and the holidays that fell on a meeting day."""
    monday = command.starts_on - timedelta(days=command.starts_on.weekday())
    holidays = set(command.holidays)
    planned: list[PlannedMeeting] = []
    skipped: list[date] = []
    for week in range(1, command.weeks + 1):
        day = monday + timedelta(weeks=week - 1, days=command.weekday - 1)
        if day < command.starts_on:
            continue
        if day in holidays:
            skipped.append(day)
            continue
        base = f"{branch_id}-{command.semester_id}-w{week:02d}"
        if week % 2 == 1:
            planned.append(PlannedMeeting(f"{base}-all", "all_member_meeting", week, day, None))
        else:
            planned.extend(
                PlannedMeeting(f"{base}-{group}", "group_meeting", week, day, group)
                for group in group_ids
            )
    return planned, skipped


def meeting_command(
    meeting: PlannedMeeting, command: PlanSemester, branch_id: str, zone: ZoneInfo
) -> ScheduleActivity:
    starts_at = datetime.combine(meeting.day, command.at, zone)
    title = (
        f"第{meeting.week}周全体党员大会"
        if meeting.kind == "all_member_meeting"
        else f"第{meeting.week}周党小组会"
    )
    return ScheduleActivity(
        activity_id=meeting.activity_id,
        kind=meeting.kind,
        title=title,
        branch_id=branch_id,
        group_id=meeting.group_id,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=command.duration_minutes),
        place=(command.group_place or command.place) if meeting.group_id else command.place,
    )
