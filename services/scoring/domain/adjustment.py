"""Manual adjustments (人工加减分) under four eyes: a committee member asks, another member of
the same committee approves. One stream per adjustment (`adjustment-{id}`).

An adjustment is dated: it counts on its `effective_on` (a day in an open period of the branch)
for `as_of`, and from its approval for `known_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from uuid import UUID

from contracts.envelope import EventPayload
from contracts.events import AdjustmentRequested, ScoreAdjusted
from runtime.decider import CommandRefused
from services.scoring.domain.regulation import Period


def adjustment_stream(adjustment_id: str) -> str:
    return f"adjustment-{adjustment_id}"


@dataclass(frozen=True)
class RequestAdjustment:
    adjustment_id: str
    member_id: str
    branch_id: str
    points: Decimal
    reason: str
    effective_on: date
    period_id: str | None = None  # when given, it must be the period of effective_on


@dataclass(frozen=True)
class ApproveAdjustment:
    adjustment_id: str
    branch_id: str


@dataclass(frozen=True)
class BranchFacts:
    """What the service looked up for the branch: its committee, the member's branch, the
    branch's period that contains the effective date (as the regulation it follows defines
    it), whether that period is closed, and the regulation's precision."""

    committee: frozenset[str]
    member_branch: str | None
    period: Period | None
    period_closed: bool
    precision: int
    regulation_id: str


@dataclass(frozen=True)
class AdjustmentState:
    requested: AdjustmentRequested
    requested_event_id: UUID | None
    approved: bool = False


def initial_state() -> AdjustmentState | None:
    return None


def evolve(
    state: AdjustmentState | None, event: EventPayload, event_id: UUID | None = None
) -> AdjustmentState | None:
    match event:
        case AdjustmentRequested():
            return AdjustmentState(event, event_id)
        case ScoreAdjusted() if state is not None:
            return AdjustmentState(state.requested, state.requested_event_id, approved=True)
    return state


def _on_committee(facts: BranchFacts, person: str | None, branch_id: str, field: str) -> str:
    if person is None or person not in facts.committee:
        raise CommandRefused(
            "not_on_committee",
            f"{person or 'this caller'} is not on the committee of branch {branch_id}",
            field=field,
        )
    return person


def _open_period(facts: BranchFacts, effective_on: date, branch_id: str) -> Period:
    if facts.period is None:
        raise CommandRefused(
            "effective_on_outside_periods",
            f"{effective_on.isoformat()} lies in no period of regulation {facts.regulation_id}, "
            f"which branch {branch_id} follows on that day",
            field="effective_on",
            invalid=True,
        )
    if facts.period_closed:
        raise CommandRefused(
            "effective_on_in_closed_period",
            f"period {facts.period.id} of branch {branch_id} is closed; "
            "reopen it first or date the adjustment in an open period",
            field="effective_on",
            invalid=True,
        )
    return facts.period


def decide_request(
    command: RequestAdjustment,
    state: AdjustmentState | None,
    facts: BranchFacts,
    requester: str | None,
) -> Sequence[EventPayload]:
    person = _on_committee(facts, requester, command.branch_id, "requested_by")
    if state is not None:
        raise CommandRefused(
            "adjustment_exists",
            f"adjustment {command.adjustment_id} exists already",
            field="adjustment_id",
        )
    if command.points == 0:
        raise CommandRefused(
            "adjustment_zero", "an adjustment of 0 points changes nothing", field="points"
        )
    if command.points != command.points.quantize(Decimal(1).scaleb(-facts.precision)):
        raise CommandRefused(
            "points_precision",
            f"regulation {facts.regulation_id} keeps points to {facts.precision} decimal "
            f"place(s); {command.points} has more",
            field="points",
            invalid=True,
        )
    if facts.member_branch != command.branch_id:
        raise CommandRefused(
            "member_not_in_branch",
            f"member {command.member_id} is not a member of branch {command.branch_id}",
            field="member_id",
        )
    period = _open_period(facts, command.effective_on, command.branch_id)
    if command.period_id is not None and command.period_id != period.id:
        raise CommandRefused(
            "period_mismatch",
            f"{command.effective_on.isoformat()} lies in period {period.id}, "
            f"not {command.period_id}",
            field="period_id",
            invalid=True,
        )
    return [
        AdjustmentRequested(
            adjustment_id=command.adjustment_id,
            member_id=command.member_id,
            branch_id=command.branch_id,
            period_id=period.id,
            points=command.points,
            reason=command.reason,
            requested_by=person,
            effective_on=command.effective_on,
        )
    ]


def decide_approval(
    command: ApproveAdjustment,
    state: AdjustmentState | None,
    facts: BranchFacts,
    approver: str | None,
) -> Sequence[EventPayload]:
    person = _on_committee(facts, approver, command.branch_id, "approved_by")
    if state is None or state.requested.branch_id != command.branch_id:
        raise CommandRefused(
            "adjustment_unknown",
            f"branch {command.branch_id} has no adjustment {command.adjustment_id}",
        )
    if state.approved:
        raise CommandRefused(
            "adjustment_approved", f"adjustment {command.adjustment_id} is approved already"
        )
    requested = state.requested
    if requested.requested_by == person:
        raise CommandRefused(
            "four_eyes",
            f"{person} asked for adjustment {command.adjustment_id} and cannot approve it too; "
            "another committee member must",
            field="approved_by",
        )
    if facts.period_closed:
        raise CommandRefused(
            "period_closed",
            f"period {requested.period_id} of branch {command.branch_id} was closed after the "
            "adjustment was asked for; reopen it to approve",
        )
    return [
        ScoreAdjusted(
            adjustment_id=command.adjustment_id,
            member_id=requested.member_id,
            branch_id=command.branch_id,
            period_id=requested.period_id,
            points=requested.points,
            reason=requested.reason,
            requested_by=requested.requested_by,
            approved_by=person,
            effective_on=requested.effective_on,
            requested_event_id=state.requested_event_id,
        )
    ]
