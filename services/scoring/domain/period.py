"""A branch's assessment period (考核期): closed with its results (`assessment.closed`), reopened
when late events or a revised regulation call for a new close. One stream per branch and
period (`assessment-{branch}-{period}`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts.envelope import EventPayload
from contracts.events import AssessmentClosed, AssessmentReopened
from contracts.events.score import AssessmentResult
from runtime.decider import CommandRefused
from services.scoring.domain.assessment import TableRow
from services.scoring.domain.regulation import Period, RegulationDocument


def assessment_stream(branch_id: str, period_id: str) -> str:
    return f"assessment-{branch_id}-{period_id}"


@dataclass(frozen=True)
class PeriodState:
    closes: int = 0
    reopens: int = 0

    @property
    def closed(self) -> bool:
        return self.closes > self.reopens


def initial_state() -> PeriodState:
    return PeriodState()


def evolve(state: PeriodState, event: EventPayload) -> PeriodState:
    match event:
        case AssessmentClosed():
            return PeriodState(state.closes + 1, state.reopens)
        case AssessmentReopened():
            return PeriodState(state.closes, state.reopens + 1)
    return state


@dataclass(frozen=True)
class ClosePeriod:
    branch_id: str
    period_id: str
    closed_at: datetime


@dataclass(frozen=True)
class ReopenPeriod:
    branch_id: str
    period_id: str
    reason: str


@dataclass(frozen=True)
class Results:
    """The branch's table as computed when it closes, and the regulation that governed it."""

    governing: RegulationDocument
    period: Period
    table: Sequence[TableRow]


def decide_close(
    command: ClosePeriod, state: PeriodState, results: Results
) -> Sequence[EventPayload]:
    if state.closed:
        raise CommandRefused(
            "period_closed",
            f"period {command.period_id} of branch {command.branch_id} is closed "
            f"(revision {state.closes}); reopen it first",
        )
    table, document = results.table, results.governing
    return [
        AssessmentClosed(
            branch_id=command.branch_id,
            period_id=command.period_id,
            regulation_id=document.id,
            regulation_version=document.version,
            closed_at=command.closed_at,
            revision=state.closes + 1,
            results=[
                AssessmentResult(
                    member_id=r.member_id,
                    total=document.scaled(r.total),
                    rank=r.rank,
                    grade=r.grade,
                )
                for r in table
            ],
            excellent=[r.member_id for r in table if r.classification == "excellent"],
            lagging=[r.member_id for r in table if r.classification == "lagging"],
            period_starts_on=results.period.starts_on,
            period_ends_on=results.period.ends_on,
        )
    ]


def decide_reopen(command: ReopenPeriod, state: PeriodState) -> Sequence[EventPayload]:
    if not state.closed:
        raise CommandRefused(
            "period_open", f"period {command.period_id} of branch {command.branch_id} is not closed"
        )
    return [
        AssessmentReopened(
            branch_id=command.branch_id,
            period_id=command.period_id,
            revision=state.closes,
            reason=command.reason,
        )
    ]
