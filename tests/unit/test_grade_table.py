"""A branch's grades (services.scoring.domain.assessment.grade_table): the share limit of a
grade ("at most a third excellent") counts the members with at least one's total, ties
included: a tie at the boundary is excellent for all or for none."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.assessment import grade_table
from tests.unit.test_scoring_deciders import document

REGULATION = document()  # excellent ≥ 90 and at most 1/3; qualified ≥ 80; else unqualified


def grades(totals: dict[str, str], probationary: frozenset[str] = frozenset()) -> dict[str, str]:
    table = grade_table({m: Decimal(t) for m, t in totals.items()}, set(probationary), REGULATION)
    return {row.member_id: row.grade or "-" for row in table}


def test_a_third_of_six_is_two_and_a_tie_at_the_boundary_is_excellent_for_none() -> None:
    # Six members: a third is 2. m1 and m2 alone have ≥ 95 → excellent. m3 and m4 tie at 92:
    # with them four members have ≥ 92 (> 2), so neither is excellent; both are qualified.
    assert grades({"m1": "99", "m2": "95", "m3": "92", "m4": "92", "m5": "81", "m6": "70"}) == {
        "m1": "excellent",
        "m2": "excellent",
        "m3": "qualified",
        "m4": "qualified",
        "m5": "qualified",
        "m6": "unqualified",
    }


def test_three_tied_at_the_top_of_six_are_none_excellent() -> None:
    # Three have ≥ 96 and a third of six is 2: none of the three is excellent.
    assert grades({"a": "96", "b": "96", "c": "96", "d": "50", "e": "50", "f": "50"})["a"] == (
        "qualified"
    )


def test_probationary_members_are_not_graded_nor_counted() -> None:
    # m3 is probationary: the graded are m1, m2, m4 (a third is 1): m1 alone is excellent.
    assert grades({"m1": "99", "m2": "95", "m3": "97", "m4": "60"}, frozenset({"m3"})) == {
        "m1": "excellent",
        "m3": "-",
        "m2": "qualified",
        "m4": "unqualified",
    }


def naive(totals: dict[str, Decimal], probationary: set[str]) -> dict[str, str | None]:
    """The rule as the regulation states it, member by member (quadratic)."""
    graded = {m: t for m, t in totals.items() if m not in probationary}
    result: dict[str, str | None] = {}
    for member, total in totals.items():
        grade = None
        if member in graded:
            for candidate in REGULATION.grades:
                if candidate.min is not None and total < candidate.min:
                    continue
                if candidate.max_share is not None:
                    allowed = math.floor(Fraction(candidate.max_share) * len(graded))
                    if sum(1 for t in graded.values() if t >= total) > allowed:
                        continue
                grade = candidate.grade
                break
        result[member] = grade
    return result


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=3),
        st.integers(min_value=150, max_value=200).map(lambda n: Decimal(n) / 2),
        max_size=40,
    ),
    st.data(),
)
def test_the_grades_are_those_the_rule_gives_member_by_member(
    totals: dict[str, Decimal], data: st.DataObject
) -> None:
    probationary = data.draw(st.sets(st.sampled_from(sorted(totals)))) if totals else set()
    table = grade_table(totals, set(probationary), REGULATION)
    assert {row.member_id: row.grade for row in table} == naive(totals, set(probationary))
