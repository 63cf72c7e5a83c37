"""Democratic elections (民主选举) and the votes on a probation, decided by the pure domain.

Given the events of the branch's members (folded into their states) and of the branch, when an
election or a conversion is decided, then the events it records or the rule that refuses it.
Every number is worked out by hand in a comment: the rules are "more than", never "at least".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from fractions import Fraction
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.envelope import EventPayload
from contracts.events import (
    CommitteeElected,
    ElectionHeld,
    MemberConverted,
    MemberDisciplined,
    MemberEnrolled,
    ProbationExtended,
    UnitRegistered,
)
from runtime.decider import CommandRefused
from services.roster.domain import election, member, organisation
from services.roster.domain.policy import RosterPolicy
from services.roster.domain.voting import BranchRoll, VoteCount

POLICY = RosterPolicy()
TODAY = date(2026, 3, 1)  # everything is entered long after it happened
HELD_ON = date(2010, 5, 10)
BRANCH = "b1"


# -- given ------------------------------------------------------------------------------------


def enrolled(
    member_id: str,
    standing: str = "full",
    branch_id: str = BRANCH,
    enrolled_on: date = date(2009, 9, 1),
    probation_started_on: date = date(2009, 4, 20),
) -> MemberEnrolled:
    probationary = standing == "probationary"
    return MemberEnrolled(
        member_id=member_id,
        student_number=f"sn{member_id}",
        name=f"党员{member_id}",
        branch_id=branch_id,
        group_id=None,
        class_name=None,
        company=None,
        dormitory=None,
        bed=None,
        standing=standing,
        joined_on=None if probationary else date(2008, 6, 1),
        probation_started_on=probation_started_on if probationary else None,
        probation_ends_on=date(probation_started_on.year + 1, 4, 20) if probationary else None,
        cadre_post=None,
        expected_graduation=date(2012, 7, 1),
        enrolled_on=enrolled_on,
    )


def disciplined(
    member_id: str,
    decided_on: date,
    lasts_until: date | None,
    measure: str = "probation_within_party",
) -> MemberDisciplined:
    return MemberDisciplined(
        member_id=member_id,
        measure=measure,
        decided_on=decided_on,
        reason="违反党的纪律",
        lasts_until=lasts_until,
    )


def given_roll(*streams: Sequence[EventPayload]) -> BranchRoll:
    """Each member's stream, folded as the service layer folds it."""
    states = {}
    for events in streams:
        state = member.fold(list(events))
        assert state is not None
        states[state.member_id] = state
    return BranchRoll(BRANCH, states)


def full_members(n: int) -> list[list[EventPayload]]:
    """f01 … fNN, full members of the branch since 2009-09-01."""
    return [[enrolled(f"f{i:02d}")] for i in range(1, n + 1)]


def ids(n: int) -> list[str]:
    return [f"f{i:02d}" for i in range(1, n + 1)]


BRANCH_EVENTS: list[EventPayload] = [
    UnitRegistered(
        unit_id=BRANCH, kind="branch", name="学生第一党支部", parent_id="s1", branch_kind="student"
    )
]


def command(**fields: Any) -> election.HoldElection:
    body: dict[str, Any] = {"election_id": "e1", "held_on": HELD_ON, "seats": 3}
    body.update(fields)
    return election.HoldElection(**body)


def when_held(
    cmd: election.HoldElection,
    roll: BranchRoll,
    earlier: Sequence[EventPayload] = (),
    policy: RosterPolicy = POLICY,
) -> list[EventPayload]:
    history = [*BRANCH_EVENTS, *earlier]
    return election.hold_election(
        cmd, organisation.fold(history), election.fold(history), roll, TODAY, policy
    )


def then_refused(call: Any, rule: str, field: str | None) -> CommandRefused:
    with pytest.raises(CommandRefused) as refused:
        call()
    assert (refused.value.rule, refused.value.field) == (rule, field), refused.value.message
    return refused.value


# -- the quorum: MORE than four fifths of those entitled, present with a vote ---------------------


def test_quorum_of_exactly_four_fifths_is_refused() -> None:
    roll = given_roll(*full_members(10))
    # 10 entitled, 8 present: 8 > 10 × 4/5 = 8 is false → refused, nothing recorded
    cmd = command(
        candidates=ids(4),
        present=ids(8),
        ballots_cast=8,
        tally={"f01": 8, "f02": 7, "f03": 6, "f04": 1},
    )
    refusal = then_refused(lambda: when_held(cmd, roll), "election_quorum", "present")
    assert "8 of the 10 members entitled to vote" in refusal.message
    assert "more than 4/5" in refusal.message


def test_quorum_of_one_more_than_four_fifths_is_met() -> None:
    roll = given_roll(*full_members(10))
    # 10 entitled, 9 present: 9 > 8 → valid. Majority: more than 9/2 = 4.5, so 5 votes elect.
    cmd = command(
        candidates=ids(4),
        present=ids(9),
        ballots_cast=9,
        tally={"f01": 9, "f02": 7, "f03": 5, "f04": 4},
        secretary_id="f01",
    )
    held, committee = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    assert (held.entitled, held.present_entitled, held.ballots_cast) == (10, 9, 9)
    assert held.elected == ["f01", "f02", "f03"]  # 9, 7, 5 > 4.5; f04's 4 is not
    assert (held.quorum, held.margin, held.majority) == ("4/5", "1/5", "1/2")
    assert committee == CommitteeElected(
        branch_id=BRANCH,
        secretary_id="f01",
        member_ids=["f01", "f02", "f03"],
        term_starts_on=HELD_ON,
        term_ends_on=date(2013, 5, 10),  # held_on + 3 years, the committee term
        elected_on=HELD_ON,
        election_id="e1",
    )


def test_the_quorum_is_the_universitys() -> None:
    roll = given_roll(*full_members(10))
    # with a quorum of 2/3: 8 > 10 × 2/3 = 6.67 → valid
    cmd = command(
        candidates=ids(4),
        present=ids(8),
        ballots_cast=8,
        tally={"f01": 8, "f02": 7, "f03": 6, "f04": 1},
        secretary_id="f02",
    )
    policy = RosterPolicy(election_quorum=Fraction(2, 3))
    held, _ = when_held(cmd, roll, policy=policy)
    assert isinstance(held, ElectionHeld)
    assert held.quorum == "2/3"


# -- 差额选举: at least 20% more candidates than seats -------------------------------------------


def test_candidates_exactly_twenty_percent_more_than_seats_are_accepted() -> None:
    roll = given_roll(*full_members(10))
    # 5 seats: ceil(5 × 1.2) = 6 candidates needed; 6 given → accepted
    cmd = command(
        seats=5,
        candidates=ids(6),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 10, "f02": 9, "f03": 8, "f04": 7, "f05": 6, "f06": 3},
        secretary_id="f01",
    )
    held, _ = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    assert held.elected == ids(5)


def test_one_candidate_short_of_the_margin_is_refused() -> None:
    roll = given_roll(*full_members(10))
    # 5 seats: 6 candidates needed; 5 given → refused (an 等额 election is not allowed)
    cmd = command(
        seats=5,
        candidates=ids(5),
        present=ids(10),
        ballots_cast=10,
        tally=dict.fromkeys(ids(5), 10),
    )
    refusal = then_refused(lambda: when_held(cmd, roll), "candidate_margin", "candidates")
    assert "5 seats need at least 6 candidates" in refusal.message


def test_three_seats_need_four_candidates() -> None:
    roll = given_roll(*full_members(10))
    # 3 seats: ceil(3 × 1.2) = ceil(3.6) = 4; 3 candidates → refused
    cmd = command(
        candidates=ids(3), present=ids(10), ballots_cast=10, tally=dict.fromkeys(ids(3), 9)
    )
    then_refused(lambda: when_held(cmd, roll), "candidate_margin", "candidates")


# -- the majority: MORE than half of those present with a vote ------------------------------------


def test_exactly_half_of_the_votes_does_not_elect_and_the_seat_stays_empty() -> None:
    roll = given_roll(*full_members(10))
    # 10 present: more than 10/2 = 5 votes elect. f01 9 and f02 6 are elected; f03 has exactly
    # 5, not more than half → not elected; f04 4. 3 seats − 2 elected = 1 empty seat.
    cmd = command(
        candidates=ids(4),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 9, "f02": 6, "f03": 5, "f04": 4},
        secretary_id="f02",
    )
    held, committee = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    assert isinstance(committee, CommitteeElected)
    assert held.elected == ["f01", "f02"]
    assert (held.empty_seats, held.seats_for_next_round, held.tied) == (1, 0, [])
    assert committee.member_ids == ["f01", "f02"]


def test_seats_go_by_votes_most_first() -> None:
    roll = given_roll(*full_members(12))
    # 2 seats, 3 candidates (ceil(2.4) = 3), 12 present, more than 12/2 = 6 votes elect:
    # f02 9 and f03 8 take the seats; f01's 7 is a majority but comes third.
    # Votes 9 + 8 + 7 = 24 ≤ 12 ballots × 2 seats = 24.
    cmd = command(
        seats=2,
        candidates=ids(3),
        present=ids(12),
        ballots_cast=12,
        tally={"f01": 7, "f02": 9, "f03": 8},
        secretary_id="f03",
    )
    held, committee = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    assert isinstance(committee, CommitteeElected)
    assert held.elected == ["f02", "f03"]
    assert (held.empty_seats, held.tied) == (0, [])
    assert committee.member_ids == ["f02", "f03"]


def test_nobody_with_a_majority_leaves_every_seat_empty_and_no_committee() -> None:
    roll = given_roll(*full_members(10))
    # 10 present, more than 5 needed; 5, 5, 4, 3 → nobody elected, 3 empty seats
    cmd = command(
        candidates=ids(4),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 5, "f02": 5, "f03": 4, "f04": 3},
    )
    [held] = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    assert (held.elected, held.empty_seats) == ([], 3)


# -- a tie for the last seat goes to a further round --------------------------------------------


def round_one(roll: BranchRoll) -> ElectionHeld:
    # 10 present, more than 5 needed. 3 seats: f01 9, f02 8 elected; f03 and f04 both 6 tie for
    # the last seat. Votes 9 + 8 + 6 + 6 = 29 ≤ 10 ballots × 3 seats = 30.
    cmd = command(
        candidates=ids(4),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 9, "f02": 8, "f03": 6, "f04": 6},
    )
    [held] = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    return held


def test_a_tie_for_the_last_seat_sends_it_to_another_round_then_the_committee_follows() -> None:
    roll = given_roll(*full_members(10))
    first = round_one(roll)
    assert first.elected == ["f01", "f02"]
    assert (first.tied, first.seats_for_next_round, first.empty_seats) == (["f03", "f04"], 1, 0)
    assert first.round == 1
    # the further round, a week later: 1 seat between f03 and f04 (ceil(1 × 1.2) = 2
    # candidates); 10 present, 7 > 5 → f03 elected; the committee is f01, f02 and f03.
    later = date(2010, 5, 17)
    second = election.HoldElection(
        election_id="e2",
        round_of="e1",
        held_on=later,
        candidates=["f03", "f04"],
        present=ids(10),
        ballots_cast=10,
        tally={"f03": 7, "f04": 3},
        secretary_id="f01",
    )
    held, committee = when_held(second, roll, [first])
    assert isinstance(held, ElectionHeld)
    assert (held.round, held.round_of, held.seats, held.elected) == (2, "e1", 1, ["f03"])
    assert committee == CommitteeElected(
        branch_id=BRANCH,
        secretary_id="f01",
        member_ids=["f01", "f02", "f03"],
        term_starts_on=later,
        term_ends_on=date(2013, 5, 17),
        elected_on=later,
        election_id="e2",
    )


def test_no_committee_is_named_while_a_round_is_pending() -> None:
    roll = given_roll(*full_members(10))
    cmd = command(
        candidates=ids(4),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 9, "f02": 8, "f03": 6, "f04": 6},
        secretary_id="f01",
    )
    then_refused(lambda: when_held(cmd, roll), "committee_pending", "secretary_id")


def test_a_further_round_is_between_the_tied_only_and_only_once() -> None:
    roll = given_roll(*full_members(10))
    first = round_one(roll)
    base = {
        "election_id": "e2",
        "round_of": "e1",
        "held_on": date(2010, 5, 17),
        "present": ids(10),
        "ballots_cast": 10,
        "secretary_id": "f01",
    }
    stranger = election.HoldElection(**base, candidates=["f03", "f05"], tally={"f03": 7, "f05": 3})
    then_refused(lambda: when_held(stranger, roll, [first]), "round_candidates", "candidates")
    more_seats = election.HoldElection(
        **base, seats=2, candidates=["f03", "f04"], tally={"f03": 7, "f04": 3}
    )
    then_refused(lambda: when_held(more_seats, roll, [first]), "round_seats", "seats")
    good = election.HoldElection(**base, candidates=["f03", "f04"], tally={"f03": 7, "f04": 3})
    second = when_held(good, roll, [first])
    again = election.HoldElection(
        **{**base, "election_id": "e3"}, candidates=["f03", "f04"], tally={"f03": 7, "f04": 3}
    )
    then_refused(lambda: when_held(again, roll, [first, *second]), "round_already_held", "round_of")
    unknown = election.HoldElection(
        **{**base, "round_of": "e9"}, candidates=["f03", "f04"], tally={"f03": 7, "f04": 3}
    )
    then_refused(lambda: when_held(unknown, roll, [first]), "round_of_unknown", "round_of")


def test_a_tie_inside_the_seats_is_no_tie() -> None:
    roll = given_roll(*full_members(10))
    # 3 seats: 9, 8, 8, 4 → f02 and f03 share 8 but both fit in the 3 seats: no further round
    cmd = command(
        candidates=ids(4),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 9, "f02": 8, "f03": 8, "f04": 4},
        secretary_id="f01",
    )
    held, _ = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    assert (held.elected, held.tied) == (["f01", "f02", "f03"], [])


# -- who may vote and stand ----------------------------------------------------------------------


def branch_with_the_unentitled() -> BranchRoll:
    """10 full members f01–f10; f10 under 留党察看 from 2009-12-01 until 2010-12-01; p1 and
    p2 probationary; x1 transferred in from another branch's roll by mistake (branch b2)."""
    streams = full_members(10)
    streams[9].append(disciplined("f10", date(2009, 12, 1), date(2010, 12, 1)))
    streams.append([enrolled("p1", "probationary")])
    streams.append([enrolled("p2", "probationary")])
    streams.append([enrolled("x1", branch_id="b2")])
    return given_roll(*streams)


def test_probationary_members_and_a_member_under_party_probation_have_no_vote() -> None:
    roll = branch_with_the_unentitled()
    # entitled: f01–f09 = 9 (f10 under 留党察看, p1 and p2 probationary, x1 of another branch).
    # All 13 present: 9 with a vote, 4 reported without; 9 > 9 × 4/5 = 7.2 → valid.
    everyone = [*ids(10), "p1", "p2", "x1", "y9"]
    cmd = command(
        candidates=ids(4),
        present=everyone,
        ballots_cast=9,
        tally={"f01": 9, "f02": 8, "f03": 7, "f04": 3},
        secretary_id="f01",
    )
    held, _ = when_held(cmd, roll)
    assert isinstance(held, ElectionHeld)
    assert (held.entitled, held.entitled_ids) == (9, ids(9))
    assert held.present_entitled == 9
    assert held.present_not_entitled == ["f10", "p1", "p2", "x1", "y9"]
    assert held.elected == ["f01", "f02", "f03"]  # more than 9/2 = 4.5


def test_those_without_a_vote_do_not_make_the_quorum() -> None:
    roll = branch_with_the_unentitled()
    # 9 entitled; f01–f07 and the 3 without a vote present: 7 > 9 × 4/5 = 7.2 is false
    cmd = command(
        candidates=ids(4),
        present=[*ids(7), "f10", "p1", "p2"],
        ballots_cast=7,
        tally={"f01": 7, "f02": 6, "f03": 5, "f04": 2},
    )
    then_refused(lambda: when_held(cmd, roll), "election_quorum", "present")


@pytest.mark.parametrize("candidate", ["p1", "f10", "x1", "nobody"])
def test_candidates_are_full_members_of_the_branch_with_a_vote(candidate: str) -> None:
    roll = branch_with_the_unentitled()
    candidates = [*ids(3), candidate]
    cmd = command(
        candidates=candidates,
        present=ids(9),
        ballots_cast=9,
        tally=dict.fromkeys(candidates, 6),
    )
    refusal = then_refused(lambda: when_held(cmd, roll), "candidate_not_eligible", "candidates")
    assert candidate in refusal.message


def test_party_probation_recorded_without_its_end_counts_one_year() -> None:
    # an old event: 留党察看 decided on 2009-06-01, no lasts_until → until 2010-06-01
    streams = full_members(10)
    streams[9].append(disciplined("f10", date(2009, 6, 1), None))
    roll = given_roll(*streams)
    assert "f10" not in roll.electorate(date(2010, 5, 31))
    assert "f10" in roll.electorate(date(2010, 6, 1))


def test_a_probationary_member_votes_once_the_branch_has_converted_them() -> None:
    # probation ended 2010-04-20, conversion decided 2010-05-20 (counted from 2010-04-20)
    stream: list[EventPayload] = [
        enrolled("p1", "probationary"),
        MemberConverted(
            member_id="p1",
            converted_on=date(2010, 4, 20),
            probation_ended_on=date(2010, 4, 20),
            decided_on=date(2010, 5, 20),
        ),
    ]
    roll = given_roll(stream)
    assert "p1" not in roll.electorate(date(2010, 5, 19))
    assert "p1" in roll.electorate(date(2010, 5, 20))


def test_an_expelled_member_has_no_vote() -> None:
    streams = full_members(2)
    streams[1].append(disciplined("f02", date(2010, 3, 1), None, measure="expulsion"))
    assert given_roll(*streams).electorate(HELD_ON).entitled == ("f01",)


# -- ballots and votes -----------------------------------------------------------------------------


def test_more_ballots_than_those_present_with_a_vote_is_refused() -> None:
    roll = given_roll(*full_members(10))
    # 9 present with a vote, 10 ballots
    cmd = command(
        candidates=ids(4), present=ids(9), ballots_cast=10, tally=dict.fromkeys(ids(4), 5)
    )
    then_refused(lambda: when_held(cmd, roll), "ballots_exceed_present", "ballots_cast")


def test_more_votes_than_the_ballots_allow_is_refused() -> None:
    roll = given_roll(*full_members(10))
    # 10 ballots × 3 seats = 30 votes at most; 9 + 9 + 9 + 4 = 31
    cmd = command(
        candidates=ids(4),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 9, "f02": 9, "f03": 9, "f04": 4},
    )
    then_refused(lambda: when_held(cmd, roll), "votes_exceed_ballots", "tally")
    # one candidate with more votes than ballots: 11 on 10 ballots
    cmd = command(
        candidates=ids(4),
        present=ids(10),
        ballots_cast=10,
        tally={"f01": 11, "f02": 1, "f03": 1, "f04": 1},
    )
    then_refused(lambda: when_held(cmd, roll), "votes_exceed_ballots", "tally")


def test_seats_secretary_and_dates() -> None:
    roll = given_roll(*full_members(10))
    ok = {
        "candidates": ids(4),
        "present": ids(10),
        "ballots_cast": 10,
        "tally": {"f01": 9, "f02": 8, "f03": 7, "f04": 2},
    }
    # 6 seats (5 at most), with 8 candidates to satisfy ceil(6 × 1.2) = 8
    six = command(**{**ok, "candidates": ids(8), "tally": dict.fromkeys(ids(8), 6)}, seats=6)
    then_refused(lambda: when_held(six, roll), "election_seats", "seats")
    then_refused(lambda: when_held(command(**ok), roll), "secretary_required", "secretary_id")
    then_refused(
        lambda: when_held(command(**ok, secretary_id="f04"), roll),
        "secretary_not_elected",
        "secretary_id",
    )
    then_refused(
        lambda: when_held(command(**ok, held_on=date(2026, 3, 2)), roll),
        "election_in_future",
        "held_on",
    )
    then_refused(
        lambda: when_held(command(**ok, secretary_id="f01", term_ends_on=date(2014, 1, 1)), roll),
        "committee_term",
        "term_ends_on",
    )
    [held, _] = when_held(command(**ok, secretary_id="f01"), roll)
    then_refused(
        lambda: when_held(command(**ok, secretary_id="f01"), roll, [held]),
        "election_exists",
        "election_id",
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"seats": None}, "seats"),
        ({"seats": 0}, "seats"),
        ({"candidates": ["f01", "f01", "f02", "f03"]}, "candidates"),
        ({"present": ["f01", "f01"]}, "present"),
        ({"tally": {"f01": 1, "f02": 1, "f03": 1}}, "tally"),  # f04 has no count
        ({"tally": {"f01": 1, "f02": 1, "f03": 1, "f04": 1, "f09": 1}}, "tally"),
        ({"tally": {"f01": -1, "f02": 1, "f03": 1, "f04": 1}}, "tally"),
        ({"ballots_cast": "10"}, "ballots_cast"),  # a string is not coerced into a count
    ],
)
def test_malformed_elections_are_invalid_input(fields: dict[str, Any], field: str) -> None:
    body: dict[str, Any] = {
        "election_id": "e1",
        "held_on": HELD_ON,
        "seats": 3,
        "candidates": ids(4),
        "present": ids(10),
        "ballots_cast": 10,
        "tally": dict.fromkeys(ids(4), 5),
        **fields,
    }
    with pytest.raises(ValidationError) as invalid:
        election.HoldElection(**body)
    assert field in str(invalid.value)


# -- the vote on a probation (转正, extension) --------------------------------------------------


def probation_branch() -> tuple[BranchRoll, member.MemberState]:
    """f01–f06 full members; p1 probationary since 2009-04-20 (ends 2010-04-20)."""
    p1 = [enrolled("p1", "probationary")]
    roll = given_roll(*full_members(6), p1)
    state = member.fold(p1)
    assert state is not None
    return roll, state


def when_converted(vote: VoteCount | None) -> list[EventPayload]:
    roll, state = probation_branch()
    cmd = member.ConvertMember(decided_on=date(2010, 4, 25), vote=vote)
    return member.convert(cmd, state, "p1", TODAY, roll, POLICY)


def test_a_conversion_vote_that_passes_is_recorded_with_its_tally() -> None:
    # entitled: f01–f06 = 6 (p1, the member concerned, is left out); all 6 present and p1:
    # 6 > 6/2 = 3 present; yes 4 > 6/2 = 3 → converted
    converted, _ = when_converted(VoteCount(present=[*ids(6), "p1"], yes=4, no=1, abstain=1))
    assert isinstance(converted, MemberConverted)
    assert converted.vote is not None
    assert converted.vote.model_dump() == {
        "entitled": 6,
        "entitled_ids": ids(6),
        "present_entitled": 6,
        "present_entitled_ids": ids(6),
        "present_not_entitled": ["p1"],
        "yes": 4,
        "no": 1,
        "abstain": 1,
        "quorum": "1/2",
        "majority": "1/2",
    }


def test_a_conversion_vote_without_a_quorum_is_refused() -> None:
    # 6 entitled, 3 present: 3 > 6/2 = 3 is false
    then_refused(
        lambda: when_converted(VoteCount(present=ids(3), yes=3, no=0, abstain=0)),
        "vote_quorum",
        "vote.present",
    )


def test_a_conversion_needs_more_than_half_of_the_entitled_not_of_those_present() -> None:
    # 6 entitled, 4 present, 3 yes: 3 of 4 present is a majority of those present, but
    # 3 > 6/2 = 3 is false → refused
    then_refused(
        lambda: when_converted(VoteCount(present=ids(4), yes=3, no=1, abstain=0)),
        "conversion_vote_failed",
        "vote.yes",
    )


def test_more_votes_than_those_present_with_a_vote_is_refused() -> None:
    # p1 present but without a vote: 5 entitled present, 6 votes counted
    then_refused(
        lambda: when_converted(VoteCount(present=[*ids(5), "p1"], yes=4, no=1, abstain=1)),
        "vote_count",
        "vote",
    )


def test_a_conversion_without_a_vote_is_as_before() -> None:
    converted, standing = when_converted(None)
    assert isinstance(converted, MemberConverted)
    assert converted.vote is None
    assert standing.model_dump()["value"] == "full"


def test_an_extension_vote_that_fails_is_refused_and_one_that_passes_recorded() -> None:
    roll, state = probation_branch()

    def extend(yes: int) -> list[EventPayload]:
        cmd = member.ExtendProbation(
            months=6,
            reason="继续考察",
            decided_on=date(2010, 4, 25),
            vote=VoteCount(present=ids(6), yes=yes, no=6 - yes, abstain=0),
        )
        return member.extend_probation(cmd, state, "p1", TODAY, POLICY, roll)

    # 6 entitled, 6 present; yes 3 > 3 is false → refused; yes 4 > 3 → extended
    then_refused(lambda: extend(3), "extension_vote_failed", "vote.yes")
    [extended] = extend(4)
    assert isinstance(extended, ProbationExtended)
    assert extended.vote is not None
    assert (extended.vote.yes, extended.vote.entitled) == (4, 6)


# -- 留党察看 lasts one or two years -------------------------------------------------------------


@pytest.mark.parametrize(
    ("measure", "lasts_until", "ok"),
    [
        ("probation_within_party", None, False),  # required for it
        ("probation_within_party", date(2011, 5, 1), False),  # six months
        ("probation_within_party", date(2011, 11, 1), True),  # one year
        ("probation_within_party", date(2012, 11, 1), True),  # two years
        ("probation_within_party", date(2012, 11, 2), False),  # two years and a day
        ("warning", date(2011, 11, 1), False),  # a warning has no term
        ("warning", None, True),
    ],
)
def test_party_probation_lasts_one_or_two_years(
    measure: str, lasts_until: date | None, ok: bool
) -> None:
    fields = {
        "measure": measure,
        "decided_on": date(2010, 11, 1),
        "reason": "违反党的纪律",
        "lasts_until": lasts_until,
    }
    if ok:
        assert member.Discipline(**fields).lasts_until == lasts_until
    else:
        with pytest.raises(ValidationError, match="lasts_until"):
            member.Discipline(**fields)


def test_a_discipline_carries_its_end_into_the_event() -> None:
    state = member.fold([enrolled("f01")])
    cmd = member.Discipline(
        measure="probation_within_party",
        decided_on=date(2010, 11, 1),
        reason="违反党的纪律",
        lasts_until=date(2011, 11, 1),
    )
    [event] = member.discipline(cmd, state, "f01", TODAY)
    assert event == disciplined("f01", date(2010, 11, 1), date(2011, 11, 1))
    after = member.evolve(state, event)
    assert after is not None
    assert after.no_vote_on(date(2011, 10, 31), BRANCH) is not None
    assert after.no_vote_on(date(2011, 11, 1), BRANCH) is None
