"""The `attendance` family, produced by the activities service. Each event carries what a
consumer needs without a join: the activity's kind, branch, group and date."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import model_validator

from contracts.envelope import EventPayload, Family
from contracts.events.activity import ActivityKind, Hours
from contracts.types import BusinessDate, Identifier, Text

AttendanceStatus = Literal["present", "late", "left_early", "excused", "absent"]


class _AttendanceFamily(EventPayload):
    family: ClassVar[Family] = "attendance"

    activity_id: Identifier
    member_id: Identifier
    status: AttendanceStatus
    excuse: Text | None = None
    activity_kind: ActivityKind
    branch_id: Identifier
    group_id: Identifier | None
    activity_date: BusinessDate
    volunteer_hours: Hours | None = None

    @model_validator(mode="after")
    def _excuse_only_when_excused(self) -> _AttendanceFamily:
        if (self.status == "excused") != (self.excuse is not None):
            raise ValueError("excuse: required when status is excused, and only then")
        return self


class AttendanceRecorded(_AttendanceFamily):
    event_type: ClassVar[str] = "attendance.recorded"


class AttendanceCorrected(_AttendanceFamily):
    """A correction: the original record stays in the log; this one supersedes it."""

    event_type: ClassVar[str] = "attendance.corrected"

    corrects_event_id: UUID
    previous_status: AttendanceStatus
    reason: Text
