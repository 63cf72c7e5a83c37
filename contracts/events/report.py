"""The `report` family, produced by the activities service: the information-reporting system
(信息汇报制度) and the thought reports (思想汇报) of probationary members."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from contracts.envelope import EventPayload, Family
from contracts.types import BusinessDate, Identifier, Instant, ShortText

ReportKind = Literal["situation", "thought"]
ReportGrade = Literal["excellent", "good", "pass", "fail"]


class _ReportFamily(EventPayload):
    family: ClassVar[Family] = "report"

    obligation_id: Identifier
    member_id: Identifier
    kind: ReportKind
    branch_id: Identifier


class ReportRequired(_ReportFamily):
    """A report obligation with its due date."""

    event_type: ClassVar[str] = "report.required"

    due_on: BusinessDate
    period_label: ShortText  # e.g. "2010-Q3" or "2010-W37"


class ReportCadenceSet(EventPayload):
    """How often a branch's members report on their responsibility space (信息汇报制度):
    a situation report falls due every `every_weeks` weeks from `starts_on`."""

    event_type: ClassVar[str] = "report.cadence_set"
    family: ClassVar[Family] = "report"

    branch_id: Identifier
    every_weeks: int = Field(ge=1, le=26)
    starts_on: BusinessDate


class ReportWithdrawn(_ReportFamily):
    """An obligation no longer stands (a probationary member was converted before a thought
    report fell due); nothing is owed and its deadline goes."""

    event_type: ClassVar[str] = "report.withdrawn"

    due_on: BusinessDate
    reason: ShortText


class ReportSubmitted(_ReportFamily):
    event_type: ClassVar[str] = "report.submitted"

    due_on: BusinessDate
    submitted_at: Instant
    on_time: bool
    days_late: int = Field(ge=0)


class ReportReviewed(_ReportFamily):
    """A review; a re-review supersedes the earlier one (`supersedes_event_id`)."""

    event_type: ClassVar[str] = "report.reviewed"

    grade: ReportGrade
    reviewer_id: Identifier
    reviewed_at: Instant
    on_time: bool
    review_number: int = Field(ge=1)
    supersedes_event_id: UUID | None = None
