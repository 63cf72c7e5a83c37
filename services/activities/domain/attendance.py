"""Attendance: who was present, late, left early, excused or absent at an activity. One stream
per activity (`attendance-{activity}`); a whole sheet is one command, all lines or none, and a
correction keeps the original record and says who corrected what (its actor)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import EventPayload
from contracts.events import AttendanceCorrected, AttendanceRecorded
from contracts.events.attendance import AttendanceStatus
from contracts.types import Identifier, Text
from runtime.decider import CommandRefused
from services.activities.domain.activity import ActivityState

CREDITED = frozenset({"present", "late", "left_early"})  # volunteer hours are earned


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SheetLine(Command):
    member_id: Identifier
    status: AttendanceStatus
    excuse: Text | None = Field(None, description="required when excused")


class RecordSheet(Command):
    lines: list[SheetLine] = Field(min_length=1, max_length=500)


class CorrectAttendance(Command):
    member_id: Identifier
    status: AttendanceStatus
    excuse: Text | None = None
    reason: Text


@dataclass(frozen=True)
class Record:
    status: str
    event_id: UUID


@dataclass(frozen=True)
class Roll:
    """Who must attend on the activity's day, and who is in the branch at all."""

    required: frozenset[str]
    in_branch: frozenset[str]


def fold(recorded: Sequence[tuple[UUID, EventPayload]]) -> dict[str, Record]:
    """The current record of each member, with the id of the event that set it."""
    records: dict[str, Record] = {}
    for event_id, event in recorded:
        if isinstance(event, AttendanceRecorded | AttendanceCorrected):
            records[event.member_id] = Record(event.status, event_id)
    return records


def _open_for_attendance(
    activity: ActivityState | None, activity_id: str, now: datetime
) -> ActivityState:
    if activity is None:
        raise CommandRefused("activity_unknown", f"there is no activity {activity_id}")
    if activity.cancelled:
        raise CommandRefused(
            "activity_cancelled", f"activity {activity_id} was cancelled; there is no attendance"
        )
    if activity.starts_at > now:
        raise CommandRefused(
            "activity_in_future",
            f"activity {activity_id} begins {activity.starts_at.isoformat()}; "
            "attendance is taken once it has begun",
        )
    return activity


def _payload(
    activity: ActivityState, day: date, line: SheetLine | CorrectAttendance
) -> dict[str, object]:
    hours = activity.volunteer_hours if line.status in CREDITED else None
    return {
        "activity_id": activity.activity_id,
        "member_id": line.member_id,
        "status": line.status,
        "excuse": line.excuse,
        "activity_kind": activity.kind,
        "branch_id": activity.branch_id,
        "group_id": activity.group_id,
        "activity_date": day,
        "volunteer_hours": hours,
    }


def _check_line(
    line: SheetLine | CorrectAttendance, roll: Roll, prefix: str, branch_id: str
) -> None:
    """`prefix` locates the line in the command (`lines[3]`), or is empty when the command is
    the line itself (a correction): its fields are then named as they are (`excuse`)."""

    def field(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    if (line.status == "excused") != (line.excuse is not None):
        raise CommandRefused(
            "excuse_rule",
            "an excused absence gives its reason, and only it",
            field=field("excuse"),
        )
    if line.member_id not in roll.in_branch:
        raise CommandRefused(
            "member_not_in_branch",
            f"member {line.member_id} is not a member of branch {branch_id} "
            "on the day of the activity",
            field=field("member_id"),
        )
    if line.member_id not in roll.required:
        raise CommandRefused(
            "member_not_required",
            f"member {line.member_id} was not required at this activity",
            field=field("member_id"),
        )


def record_sheet(
    command: RecordSheet,
    activity: ActivityState | None,
    activity_id: str,
    records: Mapping[str, Record],
    roll: Roll,
    day: date,
    now: datetime,
) -> list[EventPayload]:
    """`day` is the activity's date in the university's time zone."""
    open_activity = _open_for_attendance(activity, activity_id, now)
    seen: set[str] = set()
    events: list[EventPayload] = []
    for index, line in enumerate(command.lines):
        field = f"lines[{index}]"
        if line.member_id in seen:
            raise CommandRefused(
                "member_twice",
                f"member {line.member_id} is on the sheet twice",
                field=f"{field}.member_id",
            )
        seen.add(line.member_id)
        if line.member_id in records:
            raise CommandRefused(
                "attendance_already_recorded",
                f"the attendance of member {line.member_id} is recorded "
                "already; correct it instead",
                field=f"{field}.member_id",
            )
        _check_line(line, roll, field, open_activity.branch_id)
        events.append(AttendanceRecorded.model_validate(_payload(open_activity, day, line)))
    return events


def correct(
    command: CorrectAttendance,
    activity: ActivityState | None,
    activity_id: str,
    records: Mapping[str, Record],
    roll: Roll,
    day: date,
    now: datetime,
) -> list[EventPayload]:
    open_activity = _open_for_attendance(activity, activity_id, now)
    current = records.get(command.member_id)
    if current is None:
        raise CommandRefused(
            "nothing_to_correct",
            f"no attendance of member {command.member_id} is recorded at activity {activity_id}",
            field="member_id",
        )
    if current.status == command.status:
        raise CommandRefused(
            "correction_changes_nothing",
            f"member {command.member_id} is already recorded {command.status}",
            field="status",
        )
    _check_line(
        command,
        Roll(roll.required | {command.member_id}, roll.in_branch | {command.member_id}),
        "",
        open_activity.branch_id,
    )
    return [
        AttendanceCorrected.model_validate(
            {
                **_payload(open_activity, day, command),
                "corrects_event_id": current.event_id,
                "previous_status": current.status,
                "reason": command.reason,
            }
        )
    ]
