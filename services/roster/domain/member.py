"""A member's life in the branch: enrolment, moves, the four category dimensions, probation
(预备期) and conversion (转正), the responsibility space (责任空间) and yearly agreement (责任书),
plaques, and the transfer out at graduation. One stream per member (`member-{id}`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import EventPayload
from contracts.events import (
    AgreementSigned,
    CategoryChanged,
    MemberConverted,
    MemberDisciplined,
    MemberEnrolled,
    MemberErased,
    MemberMoved,
    MemberTransferredOut,
    PlaqueIssued,
    PlaqueWithdrawn,
    ProbationExtended,
    SpaceAssigned,
)
from contracts.events.member import DIMENSION_VALUES, MeetingVote, Standing
from contracts.ranges import BoundedDate
from contracts.types import Identifier, ShortText, Text
from runtime.decider import CommandRefused
from services.roster.domain.policy import RosterPolicy, add_months
from services.roster.domain.voting import BranchRoll, VoteCount, count_probation_vote


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnrolMember(Command):
    member_id: Identifier
    branch_id: Identifier
    student_number: str = Field(min_length=4, max_length=32, pattern=r"^[A-Za-z0-9]+$")
    name: ShortText
    group_id: Identifier | None = None
    class_name: ShortText | None = None
    company: ShortText | None = Field(None, description="连队 of national-defence students")
    dormitory: ShortText | None = None
    bed: ShortText | None = None
    standing: Standing
    joined_on: BoundedDate | None = Field(None, description="full members: when they became full")
    probation_started_on: BoundedDate | None = Field(
        None, description="probationary members: the branch meeting that admitted them"
    )
    cadre_post: ShortText | None = None
    expected_graduation: BoundedDate
    enrolled_on: BoundedDate


class MoveMember(Command):
    """Fields left out keep their current value; `null` clears one."""

    group_id: Identifier | None = None
    class_name: ShortText | None = None
    company: ShortText | None = None
    dormitory: ShortText | None = None
    bed: ShortText | None = None
    effective_on: BoundedDate
    reason: Text | None = None


class TransferOut(Command):
    destination: Text
    transferred_on: BoundedDate
    reason: Literal["graduation", "other"] = "graduation"
    letter_valid_until: BoundedDate | None = None


class ChangeCategory(Command):
    dimension: Literal["standing", "cadre", "graduating", "performance"]
    value: str
    reason: Text
    effective_on: BoundedDate


class ConvertMember(Command):
    decided_on: BoundedDate
    vote: VoteCount | None = Field(
        None, description="the branch general meeting's vote; when given, the roster checks it"
    )


class ExtendProbation(Command):
    months: int = Field(ge=1, le=24)
    reason: Text
    decided_on: BoundedDate
    vote: VoteCount | None = Field(
        None, description="the branch general meeting's vote; when given, the roster checks it"
    )


class AssignSpace(Command):
    dormitory: ShortText | None = None
    class_name: ShortText | None = None
    company: ShortText | None = None
    post_scope: Text | None = None
    effective_on: BoundedDate


class SignAgreement(Command):
    agreement_id: Identifier
    academic_year: str = Field(pattern=r"^\d{4}-\d{4}$", examples=["2010-2011"])
    signed_on: BoundedDate
    expires_on: BoundedDate | None = Field(None, description="default: one year after signing")


class IssuePlaque(Command):
    plaque_id: Identifier
    kind: Literal["dormitory", "bed"]
    dormitory: ShortText
    bed: ShortText | None = None
    issued_on: BoundedDate


PARTY_PROBATION_YEARS = (1, 2)  # 留党察看 lasts one or two years


def _years_after(day: date, years: int) -> date:
    try:
        return add_months(day, 12 * years)
    except (AssertionError, ValueError):  # beyond the calendar
        return date.max


class Discipline(Command):
    measure: Literal[
        "warning", "serious_warning", "removal_from_post", "probation_within_party", "expulsion"
    ]
    decided_on: BoundedDate
    reason: Text
    lasts_until: BoundedDate | None = Field(
        None,
        description="留党察看 (probation_within_party) only, and required for it: the day it is "
        "over, one or two years after decided_on",
    )

    @model_validator(mode="after")
    def _duration(self) -> Discipline:
        if self.measure != "probation_within_party":
            if self.lasts_until is not None:
                raise ValueError("lasts_until: only 留党察看 (probation_within_party) lasts a term")
            return self
        if self.lasts_until is None:
            raise ValueError("lasts_until: required for 留党察看 (probation_within_party)")
        shortest, longest = (_years_after(self.decided_on, y) for y in PARTY_PROBATION_YEARS)
        if not shortest <= self.lasts_until <= longest:
            raise ValueError(
                f"lasts_until: 留党察看 lasts one or two years, from {shortest.isoformat()} "
                f"to {longest.isoformat()}"
            )
        return self


class WithdrawPlaque(Command):
    withdrawn_on: BoundedDate
    reason: Text


PLACEMENT = ("group_id", "class_name", "company", "dormitory", "bed")


class EraseMember(Command):
    """Erase a member who left (个人信息保护法): their personal data can no longer be read."""

    erased_on: BoundedDate
    reason: Text


@dataclass(frozen=True)
class DisciplineMeasure:
    measure: str
    decided_on: date
    lasts_until: date | None  # 留党察看: the day it is over (a year after decision if unknown)


@dataclass(frozen=True)
class MemberState:
    member_id: str
    branch_id: str
    group_id: str | None
    class_name: str | None
    company: str | None
    dormitory: str | None
    bed: str | None
    standing: str
    probation_ends_on: date | None
    probation_extended: bool
    enrolled_on: date
    expected_graduation: date
    categories: dict[str, str] = field(default_factory=dict)
    transferred_on: date | None = None
    agreement_years: frozenset[str] = frozenset()
    active_plaques: dict[str, str] = field(default_factory=dict)  # plaque id → kind
    withdrawn_plaques: frozenset[str] = frozenset()
    # The day the member had full standing by the branch's decision: when they joined (enrolled
    # as full) or when their conversion was decided (a probationary member has no vote until
    # the branch has converted them, even though 转正 counts from the end of probation).
    full_from: date | None = None
    disciplines: tuple[DisciplineMeasure, ...] = ()
    erased_on: date | None = None

    def active_on(self, day: date) -> bool:
        return self.enrolled_on <= day and (
            self.transferred_on is None or day < self.transferred_on
        )

    def no_vote_on(self, day: date, branch_id: str) -> str | None:
        """Why the member has no right to vote (表决权, 选举权) in the branch on `day`, or None
        when they have it: a member of the branch that day, full, not expelled and not under
        留党察看."""
        if self.branch_id != branch_id or not self.active_on(day):
            return f"member {self.member_id} is not a member of branch {branch_id} on {day}"
        if self.full_from is None or day < self.full_from:
            return (
                f"member {self.member_id} is a probationary member on {day}; "
                "probationary members have no vote"
            )
        for measure in self.disciplines:
            if measure.decided_on > day:
                continue
            if measure.measure == "expulsion":
                return f"member {self.member_id} was expelled on {measure.decided_on}"
            if measure.measure == "probation_within_party" and (
                measure.lasts_until is None or day < measure.lasts_until
            ):
                return (
                    f"member {self.member_id} is under 留党察看 (probation within the Party) "
                    f"from {measure.decided_on} until {measure.lasts_until} and has no vote"
                )
        return None

    @property
    def active(self) -> bool:
        return self.transferred_on is None


def evolve(state: MemberState | None, event: EventPayload) -> MemberState | None:
    match event:
        case MemberEnrolled():
            return MemberState(
                member_id=event.member_id,
                branch_id=event.branch_id,
                group_id=event.group_id,
                class_name=event.class_name,
                company=event.company,
                dormitory=event.dormitory,
                bed=event.bed,
                standing=event.standing,
                probation_ends_on=event.probation_ends_on,
                probation_extended=False,
                enrolled_on=event.enrolled_on,
                expected_graduation=event.expected_graduation,
                categories={
                    "standing": event.standing,
                    "cadre": "cadre" if event.cadre_post else "non_cadre",
                    "performance": "neither",
                },
                full_from=event.joined_on if event.standing == "full" else None,
            )
    if state is None:
        return None
    match event:
        case CategoryChanged():
            categories = {**state.categories, event.dimension: event.value}
            standing = event.value if event.dimension == "standing" else state.standing
            return replace(state, categories=categories, standing=standing)
        case ProbationExtended():
            return replace(state, probation_ends_on=event.new_end_on, probation_extended=True)
        case MemberConverted():
            return replace(
                state,
                standing="full",
                categories={**state.categories, "standing": "full"},
                full_from=event.decided_on,
            )
        case MemberDisciplined():
            lasts_until = event.lasts_until
            if lasts_until is None and event.measure == "probation_within_party":
                lasts_until = add_months(event.decided_on, 12)  # recorded before the field
            measure = DisciplineMeasure(event.measure, event.decided_on, lasts_until)
            return replace(state, disciplines=(*state.disciplines, measure))
        case MemberMoved():
            return replace(
                state,
                group_id=event.group_id,
                class_name=event.class_name,
                company=event.company,
                dormitory=event.dormitory,
                bed=event.bed,
            )
        case MemberTransferredOut():
            return replace(state, transferred_on=event.transferred_on)
        case MemberErased():
            return replace(state, erased_on=event.erased_on)
        case AgreementSigned():
            return replace(state, agreement_years=state.agreement_years | {event.academic_year})
        case PlaqueIssued():
            return replace(
                state, active_plaques={**state.active_plaques, event.plaque_id: event.kind}
            )
        case PlaqueWithdrawn():
            plaques = {k: v for k, v in state.active_plaques.items() if k != event.plaque_id}
            return replace(
                state,
                active_plaques=plaques,
                withdrawn_plaques=state.withdrawn_plaques | {event.plaque_id},
            )
    return state


def fold(events: Sequence[EventPayload]) -> MemberState | None:
    state: MemberState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def _require_active(state: MemberState | None, member_id: str) -> MemberState:
    if state is None:
        raise CommandRefused("member_unknown", f"member {member_id} is not on the roster")
    if not state.active:
        raise CommandRefused(
            "member_transferred_out",
            f"member {member_id} was transferred out on "
            f"{state.transferred_on}; their record is closed",
        )
    return state


def _not_before(day: date, earliest: date, field_name: str, what: str) -> None:
    if day < earliest:
        raise CommandRefused(
            f"{field_name}_too_early",
            f"{field_name} {day.isoformat()} is before {what} ({earliest.isoformat()})",
            field=field_name,
        )


def enrol(
    command: EnrolMember,
    existing: MemberState | None,
    branch_kind: str | None,
    group_branch: str | None,
    policy: RosterPolicy,
) -> list[EventPayload]:
    """`branch_kind` is None when the branch is not registered; `group_branch` is the branch
    of the named group (None when the group is not registered)."""
    if existing is not None:
        raise CommandRefused(
            "member_exists", f"member {command.member_id} is already enrolled", field="member_id"
        )
    if branch_kind is None:
        raise CommandRefused(
            "branch_unknown", f"branch {command.branch_id} is not registered", field="branch_id"
        )
    if command.group_id is not None and group_branch != command.branch_id:
        raise CommandRefused(
            "group_not_in_branch",
            f"Party group {command.group_id} is not a group of branch {command.branch_id}",
            field="group_id",
        )
    probation_ends_on = None
    if command.standing == "full":
        if command.joined_on is None:
            raise CommandRefused(
                "joined_on_required",
                "a full member needs the date they became a full member",
                field="joined_on",
            )
        if command.probation_started_on is not None:
            raise CommandRefused(
                "probation_of_full_member",
                "a full member has no running probation",
                field="probation_started_on",
            )
    else:
        if command.probation_started_on is None:
            raise CommandRefused(
                "probation_start_required",
                "a probationary member needs the date their probation began",
                field="probation_started_on",
            )
        if command.joined_on is not None:
            raise CommandRefused(
                "joined_on_of_probationary",
                "a probationary member becomes a full member by conversion",
                field="joined_on",
            )
        probation_ends_on = add_months(command.probation_started_on, policy.probation_months)
    if command.student_number.lower() in command.member_id.lower():
        # An id travels everywhere (logs, streams, URLs, other services); a student number
        # is personal data and may be erased — it must not be part of what cannot be.
        raise CommandRefused(
            "member_id_holds_student_number",
            "member_id must not contain the student number: leave it out for an opaque one",
            field="member_id",
            invalid=True,
        )
    if command.expected_graduation <= command.enrolled_on:
        raise CommandRefused(
            "graduation_before_enrolment",
            "expected_graduation must be after enrolled_on",
            field="expected_graduation",
        )
    return [
        MemberEnrolled(
            member_id=command.member_id,
            student_number=command.student_number,
            name=command.name,
            branch_id=command.branch_id,
            group_id=command.group_id,
            class_name=command.class_name,
            company=command.company,
            dormitory=command.dormitory,
            bed=command.bed,
            standing=command.standing,
            joined_on=command.joined_on,
            probation_started_on=command.probation_started_on,
            probation_ends_on=probation_ends_on,
            cadre_post=command.cadre_post,
            expected_graduation=command.expected_graduation,
            enrolled_on=command.enrolled_on,
        )
    ]


def move(
    command: MoveMember, state: MemberState | None, member_id: str, group_branch: str | None
) -> list[EventPayload]:
    member = _require_active(state, member_id)
    placement = {name: getattr(member, name) for name in PLACEMENT}
    placement.update(
        {name: getattr(command, name) for name in command.model_fields_set if name in PLACEMENT}
    )
    if (
        placement["group_id"] is not None
        and placement["group_id"] != member.group_id
        and (group_branch != member.branch_id)
    ):
        raise CommandRefused(
            "group_not_in_branch",
            f"Party group {placement['group_id']} is not a group of branch {member.branch_id}",
            field="group_id",
        )
    if placement == {name: getattr(member, name) for name in PLACEMENT}:
        raise CommandRefused("nothing_moves", f"member {member_id} is already placed so")
    _not_before(command.effective_on, member.enrolled_on, "effective_on", "the enrolment")
    return [
        MemberMoved(
            member_id=member_id,
            effective_on=command.effective_on,
            reason=command.reason,
            **placement,
        )
    ]


def transfer_out(
    command: TransferOut, state: MemberState | None, member_id: str
) -> list[EventPayload]:
    member = _require_active(state, member_id)
    _not_before(command.transferred_on, member.enrolled_on, "transferred_on", "the enrolment")
    if command.letter_valid_until is not None:
        _not_before(
            command.letter_valid_until, command.transferred_on, "letter_valid_until", "the transfer"
        )
    return [
        MemberTransferredOut(
            member_id=member_id,
            destination=command.destination,
            transferred_on=command.transferred_on,
            reason=command.reason,
            letter_valid_until=command.letter_valid_until,
        )
    ]


def erase(
    command: EraseMember,
    state: MemberState | None,
    member_id: str,
    policy: RosterPolicy,
    today: date,
) -> list[EventPayload]:
    """Only a member who left, and only once the retention period after their transfer is
    over: until then the branch may still need to know who they were."""
    if state is None:
        raise CommandRefused("member_unknown", f"member {member_id} is not on the roster")
    if state.erased_on is not None:
        raise CommandRefused(
            "member_erased", f"member {member_id} was erased on {state.erased_on.isoformat()}"
        )
    if state.transferred_on is None:
        raise CommandRefused(
            "member_not_transferred",
            f"member {member_id} has not left: only a member transferred out may be erased",
        )
    if command.erased_on > today:
        raise CommandRefused(
            "erased_in_future",
            f"erased_on {command.erased_on.isoformat()} is in the future",
            field="erased_on",
        )
    earliest = state.transferred_on + timedelta(days=policy.retention_days)
    if command.erased_on < earliest:
        raise CommandRefused(
            "retention_not_over",
            f"member {member_id} left on {state.transferred_on.isoformat()}; they may be erased "
            f"from {earliest.isoformat()}, after the retention period of "
            f"{policy.retention_days} days",
            field="erased_on",
        )
    return [MemberErased(member_id=member_id, erased_on=command.erased_on, reason=command.reason)]


def change_category(
    command: ChangeCategory,
    state: MemberState | None,
    member_id: str,
    source: Literal["branch", "assessment", "calendar"] = "branch",
) -> list[EventPayload]:
    member = _require_active(state, member_id)
    if command.dimension == "standing":
        raise CommandRefused(
            "standing_changes_by_conversion",
            "standing changes only by conversion (转正): use the conversion command",
            field="dimension",
        )
    allowed = DIMENSION_VALUES[command.dimension]
    if command.value not in allowed:
        raise CommandRefused(
            "category_value", f"{command.dimension} is one of {', '.join(allowed)}", field="value"
        )
    previous = member.categories.get(command.dimension)
    if previous == command.value:
        raise CommandRefused(
            "category_unchanged",
            f"member {member_id} already has {command.dimension} {command.value}",
            field="value",
        )
    _not_before(command.effective_on, member.enrolled_on, "effective_on", "the enrolment")
    return [
        CategoryChanged(
            member_id=member_id,
            dimension=command.dimension,
            value=command.value,
            previous=previous,
            reason=command.reason,
            effective_on=command.effective_on,
            source=source,
        )
    ]


def _probation_outcome_allowed(
    member: MemberState, member_id: str, decided_on: date, today: date
) -> date:
    if member.standing != "probationary" or member.probation_ends_on is None:
        raise CommandRefused("not_probationary", f"member {member_id} is not a probationary member")
    if decided_on > today:
        raise CommandRefused(
            "decision_in_future",
            f"decided_on {decided_on.isoformat()} is in the future",
            field="decided_on",
        )
    if decided_on < member.probation_ends_on:
        raise CommandRefused(
            "probation_not_ended",
            f"the probation of member {member_id} ends on "
            f"{member.probation_ends_on.isoformat()}; the branch may not decide "
            "on it before then",
            field="decided_on",
        )
    return member.probation_ends_on


def _meeting_vote(
    vote: VoteCount | None,
    roll: BranchRoll | None,
    member: MemberState,
    decided_on: date,
    policy: RosterPolicy,
    failed_rule: str,
    what: str,
) -> MeetingVote | None:
    if vote is None:
        return None
    assert roll is not None, "a vote is counted against the branch's roll"
    electorate = roll.electorate(decided_on, excluding=frozenset({member.member_id}))
    return count_probation_vote(vote, electorate, policy, failed_rule, what)


def convert(
    command: ConvertMember,
    state: MemberState | None,
    member_id: str,
    today: date,
    roll: BranchRoll | None = None,
    policy: RosterPolicy | None = None,
) -> list[EventPayload]:
    """`roll` (every member the branch has had) is needed when the command carries a vote."""
    member = _require_active(state, member_id)
    ends_on = _probation_outcome_allowed(member, member_id, command.decided_on, today)
    vote = _meeting_vote(
        command.vote,
        roll,
        member,
        command.decided_on,
        policy or RosterPolicy(),
        "conversion_vote_failed",
        f"the conversion of member {member_id}",
    )
    return [
        MemberConverted(
            member_id=member_id,
            converted_on=ends_on,
            probation_ended_on=ends_on,
            decided_on=command.decided_on,
            vote=vote,
        ),
        CategoryChanged(
            member_id=member_id,
            dimension="standing",
            value="full",
            previous="probationary",
            reason="转正 (conversion to full member)",
            effective_on=ends_on,
            source="branch",
        ),
    ]


def extend_probation(
    command: ExtendProbation,
    state: MemberState | None,
    member_id: str,
    today: date,
    policy: RosterPolicy,
    roll: BranchRoll | None = None,
) -> list[EventPayload]:
    """`roll` (every member the branch has had) is needed when the command carries a vote."""
    member = _require_active(state, member_id)
    ends_on = _probation_outcome_allowed(member, member_id, command.decided_on, today)
    if member.probation_extended:
        raise CommandRefused(
            "probation_extended_once",
            f"the probation of member {member_id} was extended once already; "
            "it can be extended only once",
        )
    if not policy.extension_min_months <= command.months <= policy.extension_max_months:
        raise CommandRefused(
            "extension_length",
            f"an extension is {policy.extension_min_months} to "
            f"{policy.extension_max_months} months, not {command.months}",
            field="months",
        )
    vote = _meeting_vote(
        command.vote,
        roll,
        member,
        command.decided_on,
        policy,
        "extension_vote_failed",
        f"the extension of the probation of member {member_id}",
    )
    return [
        ProbationExtended(
            member_id=member_id,
            months=command.months,
            previous_end_on=ends_on,
            new_end_on=add_months(ends_on, command.months),
            reason=command.reason,
            decided_on=command.decided_on,
            vote=vote,
        )
    ]


def assign_space(
    command: AssignSpace, state: MemberState | None, member_id: str
) -> list[EventPayload]:
    member = _require_active(state, member_id)
    if not any([command.dormitory, command.class_name, command.company, command.post_scope]):
        raise CommandRefused(
            "empty_space",
            "a responsibility space names at least a dormitory, class, company or post scope",
        )
    _not_before(command.effective_on, member.enrolled_on, "effective_on", "the enrolment")
    return [
        SpaceAssigned(
            member_id=member_id,
            dormitory=command.dormitory,
            class_name=command.class_name,
            company=command.company,
            post_scope=command.post_scope,
            effective_on=command.effective_on,
        )
    ]


def sign_agreement(
    command: SignAgreement, state: MemberState | None, member_id: str
) -> list[EventPayload]:
    member = _require_active(state, member_id)
    start, end = (int(y) for y in command.academic_year.split("-"))
    if end != start + 1:
        raise CommandRefused(
            "academic_year",
            f"{command.academic_year} is not an academic year such as 2010-2011",
            field="academic_year",
        )
    if command.academic_year in member.agreement_years:
        raise CommandRefused(
            "agreement_exists",
            f"member {member_id} already signed the agreement for {command.academic_year}",
            field="academic_year",
        )
    expires_on = command.expires_on or add_months(command.signed_on, 12)
    if expires_on <= command.signed_on:
        raise CommandRefused(
            "agreement_expiry", "expires_on must be after signed_on", field="expires_on"
        )
    return [
        AgreementSigned(
            agreement_id=command.agreement_id,
            member_id=member_id,
            academic_year=command.academic_year,
            signed_on=command.signed_on,
            expires_on=expires_on,
        )
    ]


def issue_plaque(
    command: IssuePlaque, state: MemberState | None, member_id: str
) -> list[EventPayload]:
    member = _require_active(state, member_id)
    if command.kind == "bed" and command.bed is None:
        raise CommandRefused("bed_required", "a bed plaque names the bed", field="bed")
    if command.plaque_id in member.active_plaques or command.plaque_id in member.withdrawn_plaques:
        raise CommandRefused(
            "plaque_exists", f"plaque {command.plaque_id} was issued before", field="plaque_id"
        )
    if command.kind in member.active_plaques.values():
        raise CommandRefused(
            "plaque_already_issued",
            f"member {member_id} already has a {command.kind} plaque",
            field="kind",
        )
    return [
        PlaqueIssued(
            plaque_id=command.plaque_id,
            member_id=member_id,
            kind=command.kind,
            dormitory=command.dormitory,
            bed=command.bed,
            issued_on=command.issued_on,
        )
    ]


def discipline(
    command: Discipline, state: MemberState | None, member_id: str, today: date
) -> list[EventPayload]:
    member = _require_active(state, member_id)
    if command.decided_on > today:
        raise CommandRefused(
            "decision_in_future",
            f"decided_on {command.decided_on.isoformat()} is in the future",
            field="decided_on",
        )
    _not_before(command.decided_on, member.enrolled_on, "decided_on", "the enrolment")
    return [
        MemberDisciplined(
            member_id=member_id,
            measure=command.measure,
            decided_on=command.decided_on,
            reason=command.reason,
            lasts_until=command.lasts_until,
        )
    ]


def withdraw_plaque(
    command: WithdrawPlaque, state: MemberState | None, member_id: str, plaque_id: str
) -> list[EventPayload]:
    if state is None:
        raise CommandRefused("member_unknown", f"member {member_id} is not on the roster")
    kind = state.active_plaques.get(plaque_id)
    if kind is None:
        raise CommandRefused(
            "plaque_not_active", f"member {member_id} has no plaque {plaque_id} hanging"
        )
    return [
        PlaqueWithdrawn(
            plaque_id=plaque_id,
            member_id=member_id,
            kind=kind,  # type: ignore[arg-type]
            withdrawn_on=command.withdrawn_on,
            reason=command.reason,
        )
    ]
