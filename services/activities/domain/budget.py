"""A branch's budget for a year, line by line, and what is spent against it (the plan's 2,000
CNY: outings 1,400, plaques 400, stationery 200). Amounts are integer fen. One stream per
branch and year (`budget-{branch}-{year}`), so no two expenses can overspend a line together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import EventPayload
from contracts.events import BudgetPlanned, ExpenseRecorded
from contracts.events.activity import BudgetLine, BudgetOverride
from contracts.ranges import BoundedDate
from contracts.types import Identifier, ShortText, Text
from runtime.decider import CommandRefused


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanBudget(Command):
    lines: list[BudgetLine] = Field(min_length=1, max_length=50)
    planned_on: BoundedDate | None = Field(
        None, description="the day the branch planned it (default: today); not in the future"
    )


class RecordExpense(Command):
    expense_id: Identifier
    line: ShortText
    amount_fen: int = Field(gt=0, le=10**10)
    activity_id: Identifier | None = None
    spent_on: BoundedDate
    description: Text
    override: BudgetOverride | None = Field(
        None, description="an approver's decision to overspend the line, with the reason"
    )


@dataclass
class Budget:
    budget_id: str
    planned: dict[str, int] = field(default_factory=dict)
    spent: dict[str, int] = field(default_factory=dict)
    expenses: set[str] = field(default_factory=set)

    def remaining(self, line: str) -> int:
        return self.planned.get(line, 0) - self.spent.get(line, 0)


def budget_id(branch_id: str, year: int) -> str:
    return f"budget-{branch_id}-{year}"


def fold(budget: str, events: Sequence[EventPayload]) -> Budget:
    state = Budget(budget)
    for event in events:
        if isinstance(event, BudgetPlanned):
            state.planned = {line.line: line.amount_fen for line in event.lines}
        elif isinstance(event, ExpenseRecorded):
            state.spent[event.line] = state.spent.get(event.line, 0) + event.amount_fen
            state.expenses.add(event.expense_id)
    return state


def plan(command: PlanBudget, state: Budget, branch_id: str, year: int) -> list[EventPayload]:
    names = [line.line for line in command.lines]
    if len(set(names)) != len(names):
        raise CommandRefused("line_twice", "each budget line is named once", field="lines")
    planned = {line.line: line.amount_fen for line in command.lines}
    for line, spent in sorted(state.spent.items()):
        if planned.get(line, 0) < spent:
            raise CommandRefused(
                "line_below_spent",
                f"{spent / 100:.2f} CNY is already spent on line {line}; "
                "it cannot be planned lower",
                field="lines",
            )
    return [
        BudgetPlanned(
            budget_id=state.budget_id, branch_id=branch_id, year=year, lines=list(command.lines)
        )
    ]


def record_expense(
    command: RecordExpense,
    state: Budget,
    branch_id: str,
    year: int,
    recorder_id: str,
    activity_branch: str | None,
) -> list[EventPayload]:
    """`activity_branch` is the branch of the named activity (None when it is unknown)."""
    if not state.planned:
        raise CommandRefused("no_budget", f"branch {branch_id} has no budget for {year}")
    if command.expense_id in state.expenses:
        raise CommandRefused(
            "expense_exists",
            f"expense {command.expense_id} is recorded already",
            field="expense_id",
        )
    if command.spent_on.year != year:
        raise CommandRefused(
            "expense_year",
            f"an expense of {command.spent_on.year} does not belong to the budget of {year}",
            field="spent_on",
        )
    if command.line not in state.planned:
        raise CommandRefused(
            "line_unknown",
            f"the budget of {year} has no line {command.line!r}; "
            f"its lines are {', '.join(sorted(state.planned))}",
            field="line",
        )
    if command.activity_id is not None and activity_branch != branch_id:
        raise CommandRefused(
            "activity_not_in_branch",
            f"activity {command.activity_id} is not an activity of branch {branch_id}",
            field="activity_id",
        )
    remaining = state.remaining(command.line)
    if command.amount_fen > remaining:
        if command.override is None:
            raise CommandRefused(
                "line_overspent",
                f"line {command.line} has {remaining / 100:.2f} CNY left; "
                f"{command.amount_fen / 100:.2f} CNY would overspend it (an approver may "
                "override with a reason)",
                field="amount_fen",
            )
        if command.override.approver_id == recorder_id:
            raise CommandRefused(
                "override_by_recorder",
                "an overspend is approved by someone other than who records it",
                field="override.approver_id",
            )
    return [
        ExpenseRecorded(
            expense_id=command.expense_id,
            budget_id=state.budget_id,
            branch_id=branch_id,
            year=year,
            line=command.line,
            amount_fen=command.amount_fen,
            activity_id=command.activity_id,
            spent_on=command.spent_on,
            description=command.description,
            override=command.override,
        )
    ]


@dataclass(frozen=True)
class StatementLine:
    line: str
    planned_fen: int
    spent_fen: int
    remaining_fen: int


def statement(state: Budget) -> list[StatementLine]:
    lines = sorted(set(state.planned) | set(state.spent))
    return [
        StatementLine(
            line, state.planned.get(line, 0), state.spent.get(line, 0), state.remaining(line)
        )
        for line in lines
    ]
