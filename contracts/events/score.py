"""The `score` family, produced by the scoring service: quantified management (量化管理)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from uuid import UUID

from pydantic import Field

from contracts.envelope import EventPayload, Family, StrictModel
from contracts.types import BusinessDate, Identifier, Instant, Points, ShortText, Text


class _ScoreFamily(EventPayload):
    family: ClassVar[Family] = "score"


class RegulationPublished(_ScoreFamily):
    """A version of a regulation (管理规定): its whole document, as published. A school writes
    its own (`owner_unit_id`); without an owner it is the university's."""

    event_type: ClassVar[str] = "regulation.published"

    regulation_id: Identifier
    version: int = Field(ge=1)
    title: ShortText
    effective_from: BusinessDate
    document: dict[str, Any]
    owner_unit_id: Identifier | None = None
    published_on: BusinessDate | None = None  # absent in versions published before it was added


class RegulationAdopted(_ScoreFamily):
    """A school (or a branch, overriding its school) follows a regulation from a date (采用).
    A unit that adopted nothing follows its school's choice, and a school that adopted nothing
    the university's default regulation."""

    event_type: ClassVar[str] = "regulation.adopted"

    unit_id: Identifier
    unit_kind: Literal["school", "branch"]
    regulation_id: Identifier
    effective_from: BusinessDate
    decided_on: BusinessDate
    reason: Text | None = None


class _ScoreLine(_ScoreFamily):
    member_id: Identifier
    branch_id: Identifier
    period_id: Identifier
    points: Points
    rule_id: Identifier
    regulation_id: Identifier
    regulation_version: int = Field(ge=1)
    cause_event_id: UUID
    cause_type: str
    cause_occurred_at: Instant
    reverses_event_id: UUID | None = None


class ScoreAwarded(_ScoreLine):
    event_type: ClassVar[str] = "score.awarded"


class ScoreDeducted(_ScoreLine):
    event_type: ClassVar[str] = "score.deducted"


class AdjustmentRequested(_ScoreFamily):
    """A committee member asks for a manual award or deduction; it counts once a second member
    of the same committee approves it (`score.adjusted`)."""

    event_type: ClassVar[str] = "score.adjustment_requested"

    adjustment_id: Identifier
    member_id: Identifier
    branch_id: Identifier
    period_id: Identifier
    points: Points
    reason: Text
    requested_by: Identifier
    effective_on: BusinessDate | None = None  # absent before adjustments were dated


class ScoreAdjusted(_ScoreFamily):
    """A manual award or deduction by the branch committee, approved by a second member."""

    event_type: ClassVar[str] = "score.adjusted"

    adjustment_id: Identifier
    member_id: Identifier
    branch_id: Identifier
    period_id: Identifier
    points: Points
    reason: Text
    requested_by: Identifier
    approved_by: Identifier
    #: The business date it counts on (`as_of`); absent before adjustments were dated, when
    #: the approval's own time stood for it.
    effective_on: BusinessDate | None = None
    requested_event_id: UUID | None = None


class AssessmentReopened(_ScoreFamily):
    """A closed period is open again (late events, a revised regulation); a new close follows."""

    event_type: ClassVar[str] = "assessment.reopened"

    branch_id: Identifier
    period_id: Identifier
    revision: int = Field(ge=1, description="the revision of the close this reopens")
    reason: Text


class AssessmentResult(StrictModel):
    member_id: Identifier
    total: Points
    rank: int = Field(ge=1)
    grade: str | None  # None: probationary members when the regulation does not grade them


class AssessmentClosed(_ScoreFamily):
    """A period closed for a branch: totals, ranks, grades, the excellent and the lagging."""

    event_type: ClassVar[str] = "assessment.closed"

    branch_id: Identifier
    period_id: Identifier
    regulation_id: Identifier
    regulation_version: int = Field(ge=1)
    closed_at: Instant
    revision: int = Field(ge=1)
    results: list[AssessmentResult]
    #: The period as the governing regulation defines it (absent in closes recorded before).
    period_starts_on: BusinessDate | None = None
    period_ends_on: BusinessDate | None = None
    excellent: list[Identifier]
    lagging: list[Identifier]
