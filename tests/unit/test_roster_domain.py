"""The roster's pure domain: dates, categories as of a date, deciders, pairing suggestions."""

from __future__ import annotations

from datetime import date

import pytest

from contracts.events import MemberConverted, PairingFormed
from runtime.decider import CommandRefused
from services.roster.domain import care, member
from services.roster.domain.categories import CategoryEntry, categories_as_of
from services.roster.domain.policy import RosterPolicy, add_months

POLICY = RosterPolicy()


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (date(2010, 4, 20), 12, date(2011, 4, 20)),
        (date(2010, 8, 31), 6, date(2011, 2, 28)),
        (date(2011, 8, 31), 6, date(2012, 2, 29)),
        (date(2010, 11, 30), 3, date(2011, 2, 28)),
    ],
)
def test_add_months_keeps_the_day_or_takes_the_month_end(
    start: date, months: int, end: date
) -> None:
    assert add_months(start, months) == end


def test_academic_year() -> None:
    assert POLICY.academic_year(date(2010, 8, 31)) == "2009-2010"
    assert POLICY.academic_year(date(2010, 9, 1)) == "2010-2011"
    assert RosterPolicy(academic_year_starts=(2, 20)).academic_year(date(2011, 3, 1)) == (
        "2011-2012"
    )


def test_categories_as_of_take_the_last_entry_in_effect() -> None:
    entries = [
        CategoryEntry("standing", "probationary", date(2009, 9, 1), 1),
        CategoryEntry("cadre", "cadre", date(2009, 9, 1), 1),
        CategoryEntry("performance", "excellent", date(2010, 1, 15), 5),
        CategoryEntry("performance", "lagging", date(2010, 1, 15), 9),  # same day, later
        CategoryEntry("standing", "full", date(2010, 6, 1), 12),
    ]
    graduation = date(2011, 7, 1)
    before = categories_as_of(entries, date(2010, 1, 14), graduation, POLICY)
    assert (before.standing, before.performance, before.graduating) == (
        "probationary",
        "neither",
        "not_graduating",
    )
    after = categories_as_of(entries, date(2010, 9, 1), graduation, POLICY)
    assert (after.standing, after.performance, after.graduating) == (
        "full",
        "lagging",
        "graduating",
    )
    assert after.matches({"standing": "full", "cadre": "cadre"})
    assert not after.matches({"performance": "excellent"})


def enrolled(standing: str = "probationary") -> member.MemberState:
    command = member.EnrolMember(
        member_id="m-1",
        branch_id="b1",
        student_number="20080001",
        name="王",
        standing=standing,
        probation_started_on=date(2010, 4, 20) if standing == "probationary" else None,
        joined_on=date(2009, 6, 1) if standing == "full" else None,
        expected_graduation=date(2012, 7, 1),
        enrolled_on=date(2010, 5, 4),
    )
    [event] = member.enrol(command, None, "student", None, POLICY)
    state = member.evolve(None, event)
    assert state is not None
    return state


def test_conversion_is_dated_at_the_end_of_probation_and_changes_standing() -> None:
    state = enrolled()
    assert state.probation_ends_on == date(2011, 4, 20)
    events = member.convert(
        member.ConvertMember(decided_on=date(2011, 4, 25)), state, "m-1", today=date(2011, 5, 1)
    )
    assert isinstance(events[0], MemberConverted)
    assert events[0].converted_on == date(2011, 4, 20)
    converted: member.MemberState | None = state
    for event in events:
        converted = member.evolve(converted, event)
    assert converted is not None
    assert converted.standing == "full"
    assert converted.categories["standing"] == "full"


def test_a_decision_dated_in_the_future_is_refused() -> None:
    with pytest.raises(CommandRefused) as refused:
        member.convert(
            member.ConvertMember(decided_on=date(2011, 5, 2)),
            enrolled(),
            "m-1",
            today=date(2011, 5, 1),
        )
    assert refused.value.rule == "decision_in_future"


def test_extension_moves_the_end_and_happens_once() -> None:
    state = enrolled()
    command = member.ExtendProbation(months=6, reason="继续考察", decided_on=date(2011, 4, 21))
    [event] = member.extend_probation(command, state, "m-1", date(2011, 5, 1), POLICY)
    extended = member.evolve(state, event)
    assert extended is not None
    assert extended.probation_ends_on == date(2011, 10, 20)
    with pytest.raises(CommandRefused) as refused:
        member.extend_probation(
            member.ExtendProbation(months=6, reason="x", decided_on=date(2011, 10, 21)),
            extended,
            "m-1",
            date(2011, 11, 1),
            POLICY,
        )
    assert refused.value.rule == "probation_extended_once"


def test_moves_keep_what_is_left_out() -> None:
    state = enrolled()
    [event] = member.move(
        member.MoveMember(dormitory="9-101", effective_on=date(2010, 9, 1)), state, "m-1", None
    )
    assert event.model_dump()["dormitory"] == "9-101"
    assert event.model_dump()["group_id"] == state.group_id


def test_suggestions_are_stable_and_skip_the_already_paired() -> None:
    candidates = [
        care.Candidate("m-5", "e", "excellent", "full"),
        care.Candidate("m-1", "l", "lagging", "full"),
        care.Candidate("m-3", "e", "excellent", "probationary"),  # cannot mentor
        care.Candidate("m-2", "l", "lagging", "full"),
        care.Candidate("m-4", "e", "excellent", "full"),
    ]
    pairs = care.fold(
        [
            PairingFormed(
                pairing_id="p", mentor_id="m-4", mentee_id="m-9", formed_on=date(2010, 5, 20)
            )
        ]
    )
    assert care.suggest_pairs(candidates, pairs) == [care.Suggestion("m-1", "m-5")]
    assert care.suggest_pairs(list(reversed(candidates)), care.EMPTY) == [
        care.Suggestion("m-1", "m-4"),
        care.Suggestion("m-2", "m-5"),
    ]
