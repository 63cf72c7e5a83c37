"""Who may vote at a branch general meeting (支部大会) on a given day, and whether a meeting and
a vote were valid. Used by the committee election (services.roster.domain.election) and by the
decisions on a probation (转正, extension) in services.roster.domain.member.

The electorate is the roster's own fact, computed from the members' folded states as of the
meeting's day: members of the branch that day who are full members (a probationary member has no
vote) and neither expelled nor under 留党察看. Everything here is pure: the service layer loads
the members' streams and hands them over as a `BranchRoll`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.events.member import MeetingVote
from contracts.types import Identifier
from runtime.decider import CommandRefused
from services.roster.domain.policy import RosterPolicy, fraction_text

if TYPE_CHECKING:
    from services.roster.domain.member import MemberState

#: A count typed by people: a whole number, never a string or a boolean coerced into one.
Count = Annotated[int, Field(strict=True, ge=0, le=100_000)]


def more_than(count: int, share: Fraction, of: int) -> bool:
    """count > share × of, exactly (no floating point: 8 > 4/5 × 10 is false)."""
    return count * share.denominator > share.numerator * of


def named_once(ids: Iterable[str], field_name: str) -> None:
    seen: set[str] = set()
    for member_id in ids:
        if member_id in seen:
            raise ValueError(f"{field_name}: {member_id} is named twice")
        seen.add(member_id)


@dataclass(frozen=True)
class Electorate:
    """Those entitled to vote in a branch on one day, and why each other member is not."""

    branch_id: str
    day: date
    entitled: tuple[str, ...]  # in member id order
    reasons: Mapping[str, str] = field(default_factory=dict)  # member id → why no vote

    def __contains__(self, member_id: object) -> bool:
        return member_id in self.entitled

    def why_not(self, member_id: str) -> str:
        return self.reasons.get(
            member_id, f"{member_id} is not on the roster of branch {self.branch_id}"
        )

    def split(self, present: Iterable[str]) -> tuple[list[str], list[str]]:
        """Those present with voting rights and those present without, in the order given."""
        with_vote: list[str] = []
        without: list[str] = []
        for member_id in present:
            (with_vote if member_id in self.entitled else without).append(member_id)
        return with_vote, without


@dataclass(frozen=True)
class BranchRoll:
    """The looked-up facts: every member the branch has had, as folded from their streams."""

    branch_id: str
    members: Mapping[str, MemberState]

    def electorate(self, day: date, excluding: frozenset[str] = frozenset()) -> Electorate:
        entitled: list[str] = []
        reasons: dict[str, str] = {}
        for member_id in sorted(self.members):
            reason = self.members[member_id].no_vote_on(day, self.branch_id)
            if member_id in excluding:
                reason = f"member {member_id} is the member concerned"
            if reason is None:
                entitled.append(member_id)
            else:
                reasons[member_id] = reason
        return Electorate(self.branch_id, day, tuple(entitled), reasons)


class VoteCount(BaseModel):
    """The show of a branch general meeting's vote on one member: who was there, and the counts
    (the roster works out who of them had a vote)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    present: list[Identifier] = Field(max_length=1000, description="member ids of those present")
    yes: Count
    no: Count
    abstain: Count

    @model_validator(mode="after")
    def _once(self) -> VoteCount:
        named_once(self.present, "present")
        return self


def count_probation_vote(
    vote: VoteCount,
    electorate: Electorate,
    policy: RosterPolicy,
    failed_rule: str,
    what: str,
) -> MeetingVote:
    """The vote on a probation as the event records it, or a refusal: more than `vote_quorum`
    of the entitled present with voting rights, and more than `vote_majority` of the entitled
    (not only of those present) voting yes."""
    present, not_entitled = electorate.split(vote.present)
    entitled = len(electorate.entitled)
    if vote.yes + vote.no + vote.abstain > len(present):
        raise CommandRefused(
            "vote_count",
            f"{vote.yes + vote.no + vote.abstain} votes were counted, but only {len(present)} "
            "of those present had a vote",
            field="vote",
        )
    quorum, majority = policy.vote_quorum, policy.vote_majority
    if not more_than(len(present), quorum, entitled):
        raise CommandRefused(
            "vote_quorum",
            f"{len(present)} of the {entitled} members entitled to vote were present; more "
            f"than {fraction_text(quorum)} of them must be for the meeting to decide {what}",
            field="vote.present",
        )
    if not more_than(vote.yes, majority, entitled):
        raise CommandRefused(
            failed_rule,
            f"{vote.yes} of the {entitled} members entitled to vote voted yes; {what} needs "
            f"more than {fraction_text(majority)} of them",
            field="vote.yes",
        )
    return MeetingVote(
        entitled=entitled,
        entitled_ids=list(electorate.entitled),
        present_entitled=len(present),
        present_entitled_ids=present,
        present_not_entitled=not_entitled,
        yes=vote.yes,
        no=vote.no,
        abstain=vote.abstain,
        quorum=fraction_text(quorum),
        majority=fraction_text(majority),
    )
