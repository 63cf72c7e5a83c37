"""Democratic elections (民主选举) of a branch committee by its general meeting, recorded as the
election they were so that an auditor can check their validity.

The rules (the shares are the university's, in RosterPolicy):

* 差额选举: at least `election_candidate_margin` (20%) more candidates than seats,
  ceil(seats × 1.2); every candidate a full member of the branch with voting rights that day;
* the meeting is valid only when MORE than `election_quorum` (4/5) of those entitled to vote
  are present with voting rights; someone present without a vote is reported, not counted;
* ballots cast ≤ those present with a vote; votes ≤ ballots × seats, and ≤ ballots each;
* a candidate is elected with MORE than `election_majority` (half) of the votes of those present
  with a vote, by votes, most first, for the seats; candidates tied for the last seat(s) go to a
  further round (`round_of`) for the seats that remain; seats nobody won are left empty;
* when the result is complete (no tie pending) and someone was elected, the committee follows
  (`branch.committee_elected`), with the secretary the new committee names among the elected.

The elections of a branch live in the branch's own stream (`unit-{branch}`), beside its
committees. `hold_election` is pure: the service layer hands it the branch, its elections and the
roll of its members (`BranchRoll`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import EventPayload
from contracts.events import ElectionHeld
from contracts.ranges import BoundedDate
from contracts.types import Identifier
from runtime.decider import CommandRefused
from services.roster.domain import organisation
from services.roster.domain.organisation import UnitState
from services.roster.domain.policy import RosterPolicy, add_months, fraction_text
from services.roster.domain.voting import BranchRoll, Count, more_than, named_once

Seats = Annotated[int, Field(strict=True, ge=1, le=50)]


class HoldElection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    election_id: Identifier
    held_on: BoundedDate = Field(description="the day of the general meeting")
    seats: Seats | None = Field(
        None,
        description="seats to fill; a further round fills the seats its earlier round left "
        "(the default there), a first round must say",
    )
    candidates: list[Identifier] = Field(min_length=1, max_length=200)
    present: list[Identifier] = Field(
        max_length=1000, description="member ids of those present at the meeting"
    )
    tally: dict[Identifier, Count] = Field(description="votes per candidate (secret ballot)")
    ballots_cast: Count
    secretary_id: Identifier | None = Field(
        None, description="whom the new committee names secretary: one of the elected"
    )
    term_ends_on: BoundedDate | None = Field(
        None, description="the committee's term (default: held_on + the committee term)"
    )
    round_of: Identifier | None = Field(
        None, description="the election whose tied candidates this round decides between"
    )

    @model_validator(mode="after")
    def _shape(self) -> HoldElection:
        if self.round_of is None and self.seats is None:
            raise ValueError("seats: required (only a further round takes the seats left)")
        named_once(self.candidates, "candidates")
        named_once(self.present, "present")
        strangers = sorted(set(self.tally) - set(self.candidates))
        if strangers:
            raise ValueError(f"tally: {', '.join(strangers)} is not a candidate")
        missing = [c for c in self.candidates if c not in self.tally]
        if missing:
            raise ValueError(f"tally: no count for candidate {', '.join(missing)}")
        return self


@dataclass(frozen=True)
class Round:
    """An election as recorded, as far as later rounds need it."""

    election_id: str
    round: int
    round_of: str | None
    held_on: date
    elected: tuple[str, ...]
    tied: tuple[str, ...]
    seats_for_next_round: int


@dataclass(frozen=True)
class BranchElections:
    rounds: Mapping[str, Round]

    def continued(self, election_id: str) -> str | None:
        """The round that continues `election_id`, if one was held."""
        return next(
            (r.election_id for r in self.rounds.values() if r.round_of == election_id), None
        )

    def elected_before(self, election_id: str | None) -> tuple[str, ...]:
        """Those elected in `election_id` and the rounds before it, first round first."""
        chain: list[tuple[str, ...]] = []
        while election_id is not None:
            earlier = self.rounds[election_id]
            chain.append(earlier.elected)
            election_id = earlier.round_of
        return tuple(m for elected in reversed(chain) for m in elected)


NO_ELECTIONS = BranchElections({})


def evolve(state: BranchElections, event: EventPayload) -> BranchElections:
    if isinstance(event, ElectionHeld):
        held = Round(
            event.election_id,
            event.round,
            event.round_of,
            event.held_on,
            tuple(event.elected),
            tuple(event.tied),
            event.seats_for_next_round,
        )
        return BranchElections({**state.rounds, event.election_id: held})
    return state


def fold(events: Sequence[EventPayload]) -> BranchElections:
    state = NO_ELECTIONS
    for event in events:
        state = evolve(state, event)
    return state


@dataclass(frozen=True)
class Result:
    elected: tuple[str, ...]
    tied: tuple[str, ...]
    seats_for_next_round: int
    empty_seats: int


def count_seats(
    candidates: Sequence[str],
    tally: Mapping[str, int],
    seats: int,
    present_entitled: int,
    majority: Fraction,
) -> Result:
    """Who wins the seats: more than `majority` × `present_entitled` votes, by votes, most first
    (equal votes in the order the candidates were listed); candidates tied for the last seat(s)
    go to a further round; seats nobody won stay empty."""
    order = {c: i for i, c in enumerate(candidates)}
    qualified = sorted(
        (c for c in candidates if more_than(tally[c], majority, present_entitled)),
        key=lambda c: (-tally[c], order[c]),
    )
    if len(qualified) <= seats:
        return Result(tuple(qualified), (), 0, seats - len(qualified))
    last = tally[qualified[seats - 1]]  # the votes of the last seat
    elected = tuple(c for c in qualified if tally[c] > last)
    tied = tuple(c for c in qualified if tally[c] == last)
    if len(elected) + len(tied) == seats:  # the last seat's votes were not shared
        return Result(elected + tied, (), 0, 0)
    return Result(elected, tied, seats - len(elected), 0)


def hold_election(
    command: HoldElection,
    branch: UnitState | None,
    elections: BranchElections,
    roll: BranchRoll,
    today: date,
    policy: RosterPolicy,
) -> list[EventPayload]:
    """The election as it was (`branch.election_held`), and the committee it produced when the
    result is complete; or a refusal naming the rule, recording nothing."""
    if branch is None or branch.kind != "branch":
        raise CommandRefused("branch_unknown", "elections are held by registered branches")
    if command.election_id in elections.rounds:
        raise CommandRefused(
            "election_exists",
            f"election {command.election_id} is already recorded",
            field="election_id",
        )
    if command.held_on > today:
        raise CommandRefused(
            "election_in_future",
            f"held_on {command.held_on.isoformat()} is in the future",
            field="held_on",
        )
    seats, round_number = _round(command, elections)
    if seats > policy.committee_max_members:
        raise CommandRefused(
            "election_seats",
            f"a branch committee has at most {policy.committee_max_members} members, "
            f"so an election fills at most {policy.committee_max_members} seats, not {seats}",
            field="seats",
        )
    margin = policy.election_candidate_margin
    needed = math.ceil(seats * (1 + margin))
    if len(command.candidates) < needed:
        raise CommandRefused(
            "candidate_margin",
            f"差额选举: {seats} seats need at least {needed} candidates "
            f"({fraction_text(margin)} more than the seats), not {len(command.candidates)}",
            field="candidates",
        )
    electorate = roll.electorate(command.held_on)
    for candidate in command.candidates:
        if candidate not in electorate:
            raise CommandRefused(
                "candidate_not_eligible",
                f"candidates are full members of the branch with voting rights: "
                f"{electorate.why_not(candidate)}",
                field="candidates",
            )
    present, not_entitled = electorate.split(command.present)
    entitled = len(electorate.entitled)
    quorum = policy.election_quorum
    if not more_than(len(present), quorum, entitled):
        raise CommandRefused(
            "election_quorum",
            f"{len(present)} of the {entitled} members entitled to vote were present with "
            f"voting rights; an election needs more than {fraction_text(quorum)} of them",
            field="present",
        )
    if command.ballots_cast > len(present):
        raise CommandRefused(
            "ballots_exceed_present",
            f"{command.ballots_cast} ballots were cast by {len(present)} members present with "
            "voting rights",
            field="ballots_cast",
        )
    total = sum(command.tally.values())
    if total > command.ballots_cast * seats:
        raise CommandRefused(
            "votes_exceed_ballots",
            f"{total} votes on {command.ballots_cast} ballots for {seats} seats: a ballot "
            f"names at most {seats} candidates",
            field="tally",
        )
    over = [c for c in command.candidates if command.tally[c] > command.ballots_cast]
    if over:
        raise CommandRefused(
            "votes_exceed_ballots",
            f"candidate {over[0]} has {command.tally[over[0]]} votes on "
            f"{command.ballots_cast} ballots: a ballot gives a candidate one vote at most",
            field="tally",
        )
    majority = policy.election_majority
    result = count_seats(command.candidates, command.tally, seats, len(present), majority)
    held = ElectionHeld(
        election_id=command.election_id,
        branch_id=branch.unit_id,
        held_on=command.held_on,
        round=round_number,
        round_of=command.round_of,
        seats=seats,
        candidates=list(command.candidates),
        entitled=entitled,
        entitled_ids=list(electorate.entitled),
        present_entitled=len(present),
        present_entitled_ids=present,
        present_not_entitled=not_entitled,
        ballots_cast=command.ballots_cast,
        tally={c: command.tally[c] for c in command.candidates},
        elected=list(result.elected),
        tied=list(result.tied),
        seats_for_next_round=result.seats_for_next_round,
        empty_seats=result.empty_seats,
        quorum=fraction_text(quorum),
        margin=fraction_text(margin),
        majority=fraction_text(majority),
    )
    if result.tied:
        for name in ("secretary_id", "term_ends_on"):
            if getattr(command, name) is not None:
                raise CommandRefused(
                    "committee_pending",
                    f"{', '.join(result.tied)} tied for the last "
                    f"{result.seats_for_next_round} seat(s): the committee is known after a "
                    f"further round; give {name} with that round",
                    field=name,
                )
        return [held]
    members = (*elections.elected_before(command.round_of), *result.elected)
    if not members:
        if command.secretary_id is not None:
            raise CommandRefused(
                "secretary_not_elected",
                "nobody was elected, so there is no committee and no secretary",
                field="secretary_id",
            )
        return [held]
    return [held, *_committee(command, branch, members, roll, policy)]


def _round(command: HoldElection, elections: BranchElections) -> tuple[int, int]:
    """The seats and the round number of the election, checking a further round against the
    round it continues."""
    if command.round_of is None:
        assert command.seats is not None  # the command's own validation
        return command.seats, 1
    earlier = elections.rounds.get(command.round_of)
    if earlier is None:
        raise CommandRefused(
            "round_of_unknown",
            f"branch has no election {command.round_of} to hold a further round of",
            field="round_of",
        )
    if not earlier.tied:
        raise CommandRefused(
            "round_not_needed",
            f"election {command.round_of} left no tie to decide",
            field="round_of",
        )
    later = elections.continued(command.round_of)
    if later is not None:
        raise CommandRefused(
            "round_already_held",
            f"the further round of election {command.round_of} was held: {later}",
            field="round_of",
        )
    if command.held_on < earlier.held_on:
        raise CommandRefused(
            "round_before_previous",
            f"a further round is held on or after its earlier round ({earlier.held_on})",
            field="held_on",
        )
    strangers = [c for c in command.candidates if c not in earlier.tied]
    if strangers:
        raise CommandRefused(
            "round_candidates",
            f"a further round is between the candidates tied in election {command.round_of} "
            f"({', '.join(earlier.tied)}), not {', '.join(strangers)}",
            field="candidates",
        )
    if command.seats is not None and command.seats != earlier.seats_for_next_round:
        raise CommandRefused(
            "round_seats",
            f"the further round fills the {earlier.seats_for_next_round} seat(s) left by "
            f"election {command.round_of}, not {command.seats}",
            field="seats",
        )
    return earlier.seats_for_next_round, earlier.round + 1


def _committee(
    command: HoldElection,
    branch: UnitState,
    members: Sequence[str],
    roll: BranchRoll,
    policy: RosterPolicy,
) -> list[EventPayload]:
    if command.secretary_id is None:
        raise CommandRefused(
            "secretary_required",
            f"the election completes the committee ({', '.join(members)}): name its "
            "secretary among them",
            field="secretary_id",
        )
    if command.secretary_id not in members:
        raise CommandRefused(
            "secretary_not_elected",
            f"the secretary is one of the elected ({', '.join(members)}), "
            f"not {command.secretary_id}",
            field="secretary_id",
        )
    term_ends_on = command.term_ends_on or add_months(
        command.held_on, 12 * policy.committee_term_years
    )
    committee = organisation.ElectCommittee(
        secretary_id=command.secretary_id,
        member_ids=list(members),
        term_starts_on=command.held_on,
        term_ends_on=term_ends_on,
        elected_on=command.held_on,
    )
    return organisation.elect_committee(
        committee, branch, roll.members, policy, election_id=command.election_id
    )
