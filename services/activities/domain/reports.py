"""Reports (信息汇报 / 思想汇报): obligations with due dates, submissions (on time or late, derived
from the due date), reviews with a grade. One stream per obligation (`report-{id}`).

Obligations are derived, not typed in: a situation report from every member with a
responsibility space at the branch's cadence, and a thought report each quarter from every
member who is probationary when it falls due. The planner gives each a stable id, so planning
the same period again adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import EventPayload
from contracts.events import ReportRequired, ReportReviewed, ReportSubmitted, ReportWithdrawn
from contracts.events.report import ReportGrade, ReportKind
from contracts.ranges import BoundedDate, BoundedInstant
from runtime.decider import CommandRefused


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SetCadence(Command):
    every_weeks: int = Field(ge=1, le=26)
    starts_on: BoundedDate


class PlanObligations(Command):
    through: BoundedDate = Field(description="plan every obligation falling due by this day")


class SubmitReport(Command):
    submitted_at: BoundedInstant | None = Field(
        None, description="when the report was handed in (default: now); not in the future"
    )


class ReviewReport(Command):
    grade: ReportGrade
    reviewed_at: BoundedInstant | None = Field(
        None,
        description="when the reviewer graded it (default: now); not before the submission, "
        "not in the future",
    )


@dataclass(frozen=True)
class Obligation:
    obligation_id: str
    member_id: str
    kind: ReportKind
    branch_id: str
    due_on: date
    withdrawn: bool = False
    submitted_at: datetime | None = None
    on_time: bool | None = None
    reviews: int = 0
    last_review: UUID | None = None


def fold(recorded: Sequence[tuple[UUID, EventPayload]]) -> Obligation | None:
    state: Obligation | None = None
    for event_id, event in recorded:
        match event:
            case ReportRequired():
                state = Obligation(
                    event.obligation_id, event.member_id, event.kind, event.branch_id, event.due_on
                )
            case ReportWithdrawn() if state is not None:
                state = replace(state, withdrawn=True)
            case ReportSubmitted() if state is not None:
                state = replace(state, submitted_at=event.submitted_at, on_time=event.on_time)
            case ReportReviewed() if state is not None:
                state = replace(state, reviews=state.reviews + 1, last_review=event_id)
    return state


def _open(state: Obligation | None, obligation_id: str) -> Obligation:
    if state is None:
        raise CommandRefused("obligation_unknown", f"there is no report obligation {obligation_id}")
    if state.withdrawn:
        raise CommandRefused(
            "obligation_withdrawn",
            f"report obligation {obligation_id} was withdrawn; nothing is owed",
        )
    return state


def submit(
    state: Obligation | None, obligation_id: str, submitted_at: datetime, submitted_on: date
) -> list[EventPayload]:
    """`submitted_on` is the submission's date in the university's time zone."""
    obligation = _open(state, obligation_id)
    if obligation.submitted_at is not None:
        raise CommandRefused(
            "report_submitted",
            f"report {obligation_id} was submitted on {obligation.submitted_at.isoformat()}",
        )
    days_late = max(0, (submitted_on - obligation.due_on).days)
    return [
        ReportSubmitted(
            obligation_id=obligation_id,
            member_id=obligation.member_id,
            kind=obligation.kind,
            branch_id=obligation.branch_id,
            due_on=obligation.due_on,
            submitted_at=submitted_at,
            on_time=days_late == 0,
            days_late=days_late,
        )
    ]


def review(
    command: ReviewReport,
    state: Obligation | None,
    obligation_id: str,
    reviewer_id: str,
    reviewed_at: datetime,
) -> list[EventPayload]:
    obligation = _open(state, obligation_id)
    if obligation.submitted_at is None or obligation.on_time is None:
        raise CommandRefused(
            "report_not_submitted", f"report {obligation_id} has not been submitted yet"
        )
    if reviewed_at < obligation.submitted_at:
        raise CommandRefused(
            "reviewed_before_submission",
            f"report {obligation_id} was submitted at {obligation.submitted_at.isoformat()}; "
            "it cannot have been reviewed before",
            field="reviewed_at",
        )
    return [
        ReportReviewed(
            obligation_id=obligation_id,
            member_id=obligation.member_id,
            kind=obligation.kind,
            branch_id=obligation.branch_id,
            grade=command.grade,
            reviewer_id=reviewer_id,
            reviewed_at=reviewed_at,
            on_time=obligation.on_time,
            review_number=obligation.reviews + 1,
            supersedes_event_id=obligation.last_review,
        )
    ]


def withdraw(state: Obligation | None, reason: str) -> list[EventPayload]:
    if state is None or state.withdrawn or state.submitted_at is not None:
        return []
    return [
        ReportWithdrawn(
            obligation_id=state.obligation_id,
            member_id=state.member_id,
            kind=state.kind,
            branch_id=state.branch_id,
            due_on=state.due_on,
            reason=reason,
        )
    ]


# -- planning -----------------------------------------------------------------------------------


def owed_until(due_on: date, ended_on: date) -> bool:
    """Whether a report due on `due_on` is owed by a member whose duty ends on `ended_on` (the
    day they are converted to full member, or transferred out): only one due before that day.
    A member converted on the last day of a quarter is full that day, so owes no thought report
    of that quarter. The planner plans by it, and the withdrawal that follows a conversion or
    a transfer (services/activities/policies.py) withdraws by it, so the two agree."""
    return due_on < ended_on


def no_longer_owed(pending: Iterable[tuple[str, date]], ended_on: date) -> list[str]:
    """Of the pending obligations (id, due date), those to withdraw when the duty ends on
    `ended_on`, in id order."""
    return sorted(o for o, due_on in pending if not owed_until(due_on, ended_on))


@dataclass(frozen=True)
class Reporter:
    """What the planner needs to know of a member."""

    member_id: str
    enrolled_on: date
    transferred_on: date | None
    has_space: bool
    probationary_until: date | None  # the day they stop being probationary (None: not so)
    probation_started_on: date | None

    def active_on(self, day: date) -> bool:
        return self.enrolled_on <= day and (
            self.transferred_on is None or owed_until(day, self.transferred_on)
        )


@dataclass(frozen=True)
class Cadence:
    every_weeks: int
    starts_on: date


def quarter_ends(start: date, through: date) -> Iterable[tuple[str, date]]:
    year, quarter = start.year, (start.month - 1) // 3 + 1
    while True:
        end_month = quarter * 3
        end = date(year + (end_month == 12), end_month % 12 + 1, 1) - timedelta(days=1)
        if end > through:
            return
        yield f"{year}-Q{quarter}", end
        quarter += 1
        if quarter == 5:
            year, quarter = year + 1, 1


def plan(
    branch_id: str,
    reporters: Iterable[Reporter],
    cadence: Cadence | None,
    through: date,
) -> list[ReportRequired]:
    planned: list[ReportRequired] = []
    for reporter in sorted(reporters, key=lambda r: r.member_id):
        if cadence is not None and reporter.has_space:
            due = cadence.starts_on
            while due <= through:
                if reporter.active_on(due):
                    planned.append(
                        ReportRequired(
                            obligation_id=f"situation-{reporter.member_id}-{due.isoformat()}",
                            member_id=reporter.member_id,
                            kind="situation",
                            branch_id=branch_id,
                            due_on=due,
                            period_label=f"{due.isocalendar().year}-W{due.isocalendar().week:02d}",
                        )
                    )
                due += timedelta(weeks=cadence.every_weeks)
        if reporter.probation_started_on is not None:
            for label, due in quarter_ends(reporter.probation_started_on, through):
                still_probationary = reporter.probationary_until is None or owed_until(
                    due, reporter.probationary_until
                )
                if still_probationary and reporter.active_on(due):
                    planned.append(
                        ReportRequired(
                            obligation_id=f"thought-{reporter.member_id}-{label}",
                            member_id=reporter.member_id,
                            kind="thought",
                            branch_id=branch_id,
                            due_on=due,
                            period_label=label,
                        )
                    )
    return planned
