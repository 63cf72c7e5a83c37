"""Organisation units: schools (学院), Party branches (党支部) and Party groups (党小组), a
branch's committee (支部委员会) and the links of a Party group outside the Party (党外帮扶).

One stream per unit (`unit-{id}`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.envelope import EventPayload
from contracts.events import CommitteeElected, GroupLinkEstablished, UnitRegistered
from contracts.events.member import BranchKind, UnitKind
from contracts.ranges import BoundedDate
from contracts.types import Identifier, ShortText
from runtime.decider import CommandRefused
from services.roster.domain.member import MemberState
from services.roster.domain.policy import RosterPolicy, add_months

PARENT_KIND: dict[str, str | None] = {"school": None, "branch": "school", "group": "branch"}


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterUnit(Command):
    unit_id: Identifier
    kind: UnitKind
    name: ShortText
    parent_id: Identifier | None = None
    branch_kind: BranchKind | None = Field(None, description="student or faculty, for a branch")
    established_on: BoundedDate | None = Field(
        None,
        description="when the unit was set up (default: today); a branch's review calendar "
        "starts from it",
    )


class ElectCommittee(Command):
    secretary_id: Identifier
    member_ids: list[Identifier] = Field(min_length=1, max_length=7)
    term_starts_on: BoundedDate
    term_ends_on: BoundedDate
    elected_on: BoundedDate


class LinkGroup(Command):
    link_id: Identifier
    target_kind: Literal["company", "class", "student_in_difficulty"]
    target: ShortText
    established_on: BoundedDate


@dataclass(frozen=True)
class Committee:
    secretary_id: str
    member_ids: tuple[str, ...]
    term_starts_on: date
    term_ends_on: date


@dataclass(frozen=True)
class UnitState:
    unit_id: str
    kind: str
    name: str
    parent_id: str | None
    branch_kind: str | None
    committee: Committee | None = None
    links: frozenset[str] = frozenset()


def evolve(state: UnitState | None, event: EventPayload) -> UnitState | None:
    match event:
        case UnitRegistered():
            return UnitState(
                event.unit_id, event.kind, event.name, event.parent_id, event.branch_kind
            )
        case CommitteeElected() if state is not None:
            committee = Committee(
                event.secretary_id,
                tuple(event.member_ids),
                event.term_starts_on,
                event.term_ends_on,
            )
            return replace(state, committee=committee)
        case GroupLinkEstablished() if state is not None:
            return replace(state, links=state.links | {event.link_id})
    return state


def fold(events: Sequence[EventPayload]) -> UnitState | None:
    state: UnitState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def register(
    command: RegisterUnit, existing: UnitState | None, parent: UnitState | None
) -> list[EventPayload]:
    if existing is not None:
        raise CommandRefused(
            "unit_exists", f"unit {command.unit_id} is already registered", field="unit_id"
        )
    wanted = PARENT_KIND[command.kind]
    if wanted is None and command.parent_id is not None:
        raise CommandRefused(
            "school_has_no_parent",
            "a school belongs to the university and has no parent unit",
            field="parent_id",
        )
    if wanted is not None:
        if parent is None:
            raise CommandRefused(
                "parent_unknown",
                f"parent unit {command.parent_id} is not registered",
                field="parent_id",
            )
        if parent.kind != wanted:
            raise CommandRefused(
                "parent_kind",
                f"a {command.kind} belongs to a {wanted}, and {parent.unit_id} is a {parent.kind}",
                field="parent_id",
            )
    if command.kind == "branch" and command.branch_kind is None:
        raise CommandRefused(
            "branch_kind_required",
            "say whether the branch is a student or a faculty branch",
            field="branch_kind",
        )
    if command.kind != "branch" and command.branch_kind is not None:
        raise CommandRefused(
            "branch_kind_only_for_branches",
            f"a {command.kind} has no branch_kind",
            field="branch_kind",
        )
    return [
        UnitRegistered(
            unit_id=command.unit_id,
            kind=command.kind,
            name=command.name,
            parent_id=command.parent_id,
            branch_kind=command.branch_kind,
        )
    ]


def elect_committee(
    command: ElectCommittee,
    branch: UnitState | None,
    members: Mapping[str, MemberState | None],
    policy: RosterPolicy,
    *,
    election_id: str | None = None,
) -> list[EventPayload]:
    """`election_id`: the election (its last round) the committee came from, when recorded."""
    if branch is None or branch.kind != "branch":
        raise CommandRefused("branch_unknown", "committees are elected by registered branches")
    if command.secretary_id not in command.member_ids:
        raise CommandRefused(
            "secretary_on_committee",
            "the secretary must be one of the committee's members",
            field="secretary_id",
        )
    if len(set(command.member_ids)) != len(command.member_ids):
        raise CommandRefused(
            "committee_member_twice", "a member is named twice", field="member_ids"
        )
    if len(command.member_ids) > policy.committee_max_members:
        raise CommandRefused(
            "committee_size",
            f"a branch committee has at most {policy.committee_max_members} "
            f"members, not {len(command.member_ids)}",
            field="member_ids",
        )
    longest = add_months(command.term_starts_on, 12 * policy.committee_term_years)
    if not command.term_starts_on < command.term_ends_on <= longest:
        raise CommandRefused(
            "committee_term",
            f"a committee's term runs at most {policy.committee_term_years} "
            f"years, until {longest.isoformat()} at the latest",
            field="term_ends_on",
        )
    for member_id in command.member_ids:
        member = members.get(member_id)
        if (
            member is None
            or member.branch_id != branch.unit_id
            or not member.active_on(command.elected_on)
        ):
            raise CommandRefused(
                "committee_member_not_in_branch",
                f"member {member_id} is not a member of branch {branch.unit_id}",
                field="member_ids",
            )
    return [
        CommitteeElected(
            branch_id=branch.unit_id,
            secretary_id=command.secretary_id,
            member_ids=list(command.member_ids),
            term_starts_on=command.term_starts_on,
            term_ends_on=command.term_ends_on,
            elected_on=command.elected_on,
            election_id=election_id,
        )
    ]


def link_group(command: LinkGroup, group: UnitState | None) -> list[EventPayload]:
    if group is None or group.kind != "group":
        raise CommandRefused("group_unknown", "links are made by registered Party groups")
    if command.link_id in group.links:
        raise CommandRefused(
            "link_exists", f"link {command.link_id} already exists", field="link_id"
        )
    return [
        GroupLinkEstablished(
            link_id=command.link_id,
            group_id=group.unit_id,
            target_kind=command.target_kind,
            target=command.target,
            established_on=command.established_on,
        )
    ]
