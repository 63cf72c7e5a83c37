"""Budget (services/activities/domain/budget.py), given / when / then: a branch's yearly lines in
fen, expenses against them, and an overspend only with another person's approval."""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import EventPayload
from contracts.events import BudgetPlanned, ExpenseRecorded
from contracts.events.activity import BudgetLine, BudgetOverride
from services.activities.domain import budget
from services.activities.domain.budget import PlanBudget, RecordExpense, StatementLine
from tests.support.gwt import then_refused

BRANCH = "nde-b1"
BUDGET = "budget-nde-b1-2010"
SECRETARY = "sec-b1"
COMMITTEE = "wei"

# Half of the plan's 2,000 CNY for branch 1: outings 700.00, plaques 200.00, stationery 100.00.
LINES = [
    BudgetLine(line="outings", amount_fen=70000),
    BudgetLine(line="plaques", amount_fen=20000),
    BudgetLine(line="stationery", amount_fen=10000),
]
PLANNED = BudgetPlanned(budget_id=BUDGET, branch_id=BRANCH, year=2010, lines=LINES)


def expense(expense_id: str = "e-1", **changes: Any) -> RecordExpense:
    fields: dict[str, Any] = {
        "expense_id": expense_id,
        "line": "plaques",
        "amount_fen": 19000,  # 190.00 CNY
        "spent_on": date(2010, 5, 20),
        "description": "党员宿舍挂牌",
    }
    return RecordExpense.model_validate({**fields, **changes})


def recorded_expense(expense_id: str, line: str, amount_fen: int) -> ExpenseRecorded:
    return ExpenseRecorded(
        expense_id=expense_id,
        budget_id=BUDGET,
        branch_id=BRANCH,
        year=2010,
        line=line,
        amount_fen=amount_fen,
        activity_id=None,
        spent_on=date(2010, 5, 20),
        description="党员宿舍挂牌",
    )


def given_budget(*events: EventPayload) -> budget.Budget:
    return budget.fold(BUDGET, list(events))


def spend(
    command: RecordExpense,
    state: budget.Budget,
    *,
    recorder: str = SECRETARY,
    activity_branch: str | None = None,
) -> list[EventPayload]:
    return budget.record_expense(command, state, BRANCH, 2010, recorder, activity_branch)


def test_the_stream_of_a_branchs_budget_is_per_year() -> None:
    assert budget.budget_id("nde-b1", 2010) == BUDGET


# -- plan -----------------------------------------------------------------------------------------


def test_a_branch_plans_its_budget_line_by_line() -> None:
    assert budget.plan(PlanBudget(lines=LINES), given_budget(), BRANCH, 2010) == [PLANNED]


def test_each_line_is_named_once() -> None:
    twice = PlanBudget(lines=[*LINES, BudgetLine(line="plaques", amount_fen=100)])
    then_refused(lambda: budget.plan(twice, given_budget(), BRANCH, 2010), "line_twice", "lines")


def test_a_line_cannot_be_planned_below_what_is_spent_on_it() -> None:
    state = given_budget(PLANNED, recorded_expense("e-1", "plaques", 19000))  # 190.00 spent
    lower = PlanBudget(lines=[LINES[0], BudgetLine(line="plaques", amount_fen=18999), LINES[2]])
    refusal = then_refused(
        lambda: budget.plan(lower, state, BRANCH, 2010), "line_below_spent", "lines"
    )
    assert "190.00 CNY" in refusal.message
    dropped = PlanBudget(lines=[LINES[0], LINES[2]])
    then_refused(lambda: budget.plan(dropped, state, BRANCH, 2010), "line_below_spent", "lines")
    exactly = PlanBudget(lines=[BudgetLine(line="plaques", amount_fen=19000)])
    [replanned] = budget.plan(exactly, state, BRANCH, 2010)
    after = budget.fold(BUDGET, [PLANNED, recorded_expense("e-1", "plaques", 19000), replanned])
    # planning again replaces the lines; what was spent stays spent
    assert (after.planned, after.spent) == ({"plaques": 19000}, {"plaques": 19000})


# -- record an expense ----------------------------------------------------------------------------


def test_an_expense_within_its_line_is_recorded_in_fen() -> None:
    state = given_budget(PLANNED)
    events = spend(expense(activity_id="act-visit"), state, activity_branch=BRANCH)
    assert events == [
        ExpenseRecorded(
            expense_id="e-1",
            budget_id=BUDGET,
            branch_id=BRANCH,
            year=2010,
            line="plaques",
            amount_fen=19000,
            activity_id="act-visit",
            spent_on=date(2010, 5, 20),
            description="党员宿舍挂牌",
            override=None,
        )
    ]
    # 200.00 − 190.00 = 10.00 CNY left on plaques
    assert budget.fold(BUDGET, [PLANNED, *events]).remaining("plaques") == 1000


def test_spending_exactly_what_is_left_is_not_an_overspend() -> None:
    state = given_budget(PLANNED, recorded_expense("e-1", "plaques", 19000))
    [event] = spend(expense("e-2", amount_fen=1000), state)  # the last 10.00 CNY
    assert isinstance(event, ExpenseRecorded)
    assert (
        budget.fold(BUDGET, [PLANNED, recorded_expense("e-1", "plaques", 19000), event]).remaining(
            "plaques"
        )
        == 0
    )


def test_one_fen_over_the_line_is_refused_without_an_approver() -> None:
    state = given_budget(PLANNED, recorded_expense("e-1", "plaques", 19000))
    refusal = then_refused(
        lambda: spend(expense("e-2", amount_fen=1001), state), "line_overspent", "amount_fen"
    )
    assert "10.00 CNY left" in refusal.message
    assert "10.01 CNY" in refusal.message


def test_the_recorder_cannot_approve_their_own_overspend() -> None:
    state = given_budget(PLANNED, recorded_expense("e-1", "plaques", 19000))
    own = expense(
        "e-2",
        amount_fen=5000,
        override=BudgetOverride(approver_id=SECRETARY, reason="挂牌涨价"),
    )
    then_refused(
        lambda: spend(own, state, recorder=SECRETARY),
        "override_by_recorder",
        "override.approver_id",
    )


def test_another_approver_may_let_an_expense_overspend_with_a_reason() -> None:
    state = given_budget(PLANNED, recorded_expense("e-1", "plaques", 19000))
    approved = BudgetOverride(approver_id=COMMITTEE, reason="挂牌涨价，支委会同意")
    [event] = spend(expense("e-2", amount_fen=5000, override=approved), state)
    assert isinstance(event, ExpenseRecorded)
    assert (event.amount_fen, event.override) == (5000, approved)
    # 200.00 planned, 190.00 + 50.00 spent → 40.00 CNY over
    after = budget.fold(BUDGET, [PLANNED, recorded_expense("e-1", "plaques", 19000), event])
    assert after.remaining("plaques") == -4000


def test_an_override_within_the_line_is_recorded_too() -> None:
    approved = BudgetOverride(approver_id=COMMITTEE, reason="预先批准")
    [event] = spend(expense(override=approved), given_budget(PLANNED), recorder=SECRETARY)
    assert isinstance(event, ExpenseRecorded)
    assert event.override == approved


def test_nothing_is_spent_without_a_budget() -> None:
    then_refused(lambda: spend(expense(), given_budget()), "no_budget")


def test_an_expense_is_recorded_once() -> None:
    state = given_budget(PLANNED, recorded_expense("e-1", "stationery", 100))
    then_refused(lambda: spend(expense("e-1"), state), "expense_exists", "expense_id")


def test_an_expense_belongs_to_the_budget_of_its_year() -> None:
    then_refused(
        lambda: spend(expense(spent_on=date(2011, 1, 3)), given_budget(PLANNED)),
        "expense_year",
        "spent_on",
    )


def test_an_expense_names_a_planned_line() -> None:
    then_refused(
        lambda: spend(expense(line="banquets"), given_budget(PLANNED)), "line_unknown", "line"
    )


def test_an_expense_for_an_activity_names_one_of_the_branch() -> None:
    of_b2 = expense(activity_id="act-b2")
    then_refused(
        lambda: spend(of_b2, given_budget(PLANNED), activity_branch="nde-b2"),
        "activity_not_in_branch",
        "activity_id",
    )
    then_refused(  # an activity that does not exist has no branch
        lambda: spend(of_b2, given_budget(PLANNED), activity_branch=None),
        "activity_not_in_branch",
        "activity_id",
    )


def test_the_statement_shows_each_line_planned_spent_and_left() -> None:
    state = given_budget(
        PLANNED,
        recorded_expense("e-1", "outings", 70000),
        recorded_expense("e-2", "plaques", 19000),
        recorded_expense("e-3", "stationery", 7800),
    )
    # The README's table for nde-b1: 700/700/0, 200/190/10, 100/78/22.
    assert budget.statement(state) == [
        StatementLine("outings", 70000, 70000, 0),
        StatementLine("plaques", 20000, 19000, 1000),
        StatementLine("stationery", 10000, 7800, 2200),
    ]


@settings(max_examples=200, deadline=None)
@given(amounts=st.lists(st.integers(1, 25000), min_size=1, max_size=12))
def test_without_overrides_a_line_is_never_overspent(amounts: list[int]) -> None:
    log: list[EventPayload] = [PLANNED]
    spent = 0  # the oracle: a running total against the 20,000 fen of plaques
    for n, amount in enumerate(amounts):
        command = expense(f"e-{n}", amount_fen=amount)
        state = budget.fold(BUDGET, log)
        if spent + amount > 20000:
            then_refused(lambda c=command, s=state: spend(c, s), "line_overspent", "amount_fen")
        else:
            log += spend(command, state)
            spent += amount
    state = budget.fold(BUDGET, log)
    assert state.spent.get("plaques", 0) == spent <= 20000
    assert state.remaining("plaques") == 20000 - spent
