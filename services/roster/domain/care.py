"""Care (关怀机制): "good brothers" pairs (哥俩好), where an excellent member mentors a relatively
lagging one. The pairs of a branch live in one stream (`pairings-{branch}`), so the rule "a
member is in at most one active pair per role" is checked against everything at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from pydantic import BaseModel, ConfigDict

from contracts.envelope import EventPayload
from contracts.events import PairingEnded, PairingFormed
from contracts.ranges import BoundedDate
from contracts.types import Identifier, Text
from runtime.decider import CommandRefused
from services.roster.domain.member import MemberState


class FormPair(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pairing_id: Identifier
    mentor_id: Identifier
    mentee_id: Identifier
    formed_on: BoundedDate


class EndPair(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ended_on: BoundedDate
    reason: Text


@dataclass(frozen=True)
class Pair:
    pairing_id: str
    mentor_id: str
    mentee_id: str
    formed_on: date
    ended_on: date | None = None

    @property
    def active(self) -> bool:
        return self.ended_on is None


@dataclass(frozen=True)
class BranchPairs:
    pairs: Mapping[str, Pair]

    def active_as(self, role: str, member_id: str) -> Pair | None:
        for pair in self.pairs.values():
            if pair.active and getattr(pair, f"{role}_id") == member_id:
                return pair
        return None


EMPTY = BranchPairs({})


def evolve(state: BranchPairs, event: EventPayload) -> BranchPairs:
    match event:
        case PairingFormed():
            pair = Pair(event.pairing_id, event.mentor_id, event.mentee_id, event.formed_on)
            return BranchPairs({**state.pairs, event.pairing_id: pair})
        case PairingEnded() if event.pairing_id in state.pairs:
            ended = replace(state.pairs[event.pairing_id], ended_on=event.ended_on)
            return BranchPairs({**state.pairs, event.pairing_id: ended})
    return state


def fold(events: Sequence[EventPayload]) -> BranchPairs:
    state = EMPTY
    for event in events:
        state = evolve(state, event)
    return state


def form_pair(
    command: FormPair,
    state: BranchPairs,
    branch_id: str,
    mentor: MemberState | None,
    mentee: MemberState | None,
) -> list[EventPayload]:
    if command.mentor_id == command.mentee_id:
        raise CommandRefused(
            "pair_with_self", "a member cannot mentor themselves", field="mentee_id"
        )
    if command.pairing_id in state.pairs:
        raise CommandRefused(
            "pairing_exists", f"pairing {command.pairing_id} exists already", field="pairing_id"
        )
    for role, member, member_id in (
        ("mentor", mentor, command.mentor_id),
        ("mentee", mentee, command.mentee_id),
    ):
        if (
            member is None
            or member.branch_id != branch_id
            or not member.active_on(command.formed_on)
        ):
            raise CommandRefused(
                "pair_member_not_in_branch",
                f"member {member_id} is not a member of branch {branch_id}",
                field=f"{role}_id",
            )
    assert mentor is not None
    if mentor.standing != "full":
        raise CommandRefused(
            "mentor_not_full_member",
            f"member {command.mentor_id} is a probationary member; a mentor must be a full member",
            field="mentor_id",
        )
    for role, member_id in (("mentor", command.mentor_id), ("mentee", command.mentee_id)):
        current = state.active_as(role, member_id)
        if current is not None:
            raise CommandRefused(
                "already_paired",
                f"member {member_id} is already in an active pair as {role} ({current.pairing_id})",
                field=f"{role}_id",
            )
    return [
        PairingFormed(
            pairing_id=command.pairing_id,
            mentor_id=command.mentor_id,
            mentee_id=command.mentee_id,
            formed_on=command.formed_on,
        )
    ]


def end_pair(command: EndPair, state: BranchPairs, pairing_id: str) -> list[EventPayload]:
    pair = state.pairs.get(pairing_id)
    if pair is None:
        raise CommandRefused("pairing_unknown", f"there is no pairing {pairing_id} in this branch")
    if not pair.active:
        raise CommandRefused("pairing_ended", f"pairing {pairing_id} ended on {pair.ended_on}")
    if command.ended_on < pair.formed_on:
        raise CommandRefused(
            "ended_on_too_early",
            f"ended_on is before the pair was formed ({pair.formed_on})",
            field="ended_on",
        )
    return [
        PairingEnded(
            pairing_id=pairing_id,
            mentor_id=pair.mentor_id,
            mentee_id=pair.mentee_id,
            ended_on=command.ended_on,
            reason=command.reason,
        )
    ]


@dataclass(frozen=True)
class Candidate:
    member_id: str
    name: str
    performance: str
    standing: str


@dataclass(frozen=True)
class Suggestion:
    mentee_id: str
    mentor_id: str


def suggest_pairs(candidates: Iterable[Candidate], pairs: BranchPairs) -> list[Suggestion]:
    """Each lagging member not yet mentored, with an excellent full member not yet mentoring,
    in a stable order (by member id) so the same roster always gives the same suggestions."""
    ordered = sorted(candidates, key=lambda c: c.member_id)
    mentees = [
        c
        for c in ordered
        if c.performance == "lagging" and pairs.active_as("mentee", c.member_id) is None
    ]
    mentors = [
        c
        for c in ordered
        if c.performance == "excellent"
        and c.standing == "full"
        and pairs.active_as("mentor", c.member_id) is None
    ]
    return [
        Suggestion(mentee.member_id, mentor.member_id)
        for mentee, mentor in zip(mentees, mentors, strict=False)
    ]
