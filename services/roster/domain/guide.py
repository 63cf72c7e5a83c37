"""Party-member guides (党员引路人): people from outside the branch — an army officer, a faculty
member, an alumnus — whom a branch appoints for a term to some of its members or to one of its
Party groups (open management, 开放管理: "聘请优秀革命军人担当党员引路人").

One stream per guide (`guide-{id}`) holds their registration and every appointment, so that an
appointment's id is unique for the guide and overlapping terms are seen at once. A guide's name
and phone are personal data: they are never logged (runtime.logs redacts them by name)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.envelope import EventPayload
from contracts.events import (
    GuideAppointed,
    GuideAppointmentEnded,
    GuideErased,
    GuideRegistered,
)
from contracts.events.member import GuideKind
from contracts.ranges import BoundedDate
from contracts.types import Identifier, ShortText, Text
from runtime.decider import CommandRefused
from services.roster.domain.member import MemberState
from services.roster.domain.organisation import UnitState


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterGuide(Command):
    guide_id: Identifier
    name: ShortText
    kind: GuideKind
    organisation: ShortText = Field(description="where the guide serves or works")
    phone: ShortText | None = Field(None, pattern=r"^\+?[0-9][0-9 \-]{2,30}$")
    registered_on: BoundedDate


class AppointGuide(Command):
    appointment_id: Identifier
    branch_id: Identifier
    member_ids: list[Identifier] = Field(default_factory=list, max_length=200)
    group_id: Identifier | None = None
    term_starts_on: BoundedDate
    term_ends_on: BoundedDate = Field(description="the last day of the term")

    @model_validator(mode="after")
    def _whom(self) -> AppointGuide:
        if bool(self.member_ids) == (self.group_id is not None):
            raise ValueError("member_ids: name the members or the Party group (group_id), not both")
        if len(set(self.member_ids)) != len(self.member_ids):
            raise ValueError("member_ids: a member is named twice")
        return self


class EndAppointment(Command):
    ended_on: BoundedDate = Field(description="from this day the guide no longer guides them")
    reason: Text


class EraseGuide(Command):
    """Erase a guide no longer appointed (个人信息保护法): their name and phone can no longer be
    read."""

    erased_on: BoundedDate
    reason: Text


@dataclass(frozen=True)
class Appointment:
    appointment_id: str
    branch_id: str
    member_ids: tuple[str, ...]
    group_id: str | None
    term_starts_on: date
    term_ends_on: date  # included
    ended_on: date | None = None  # excluded

    @property
    def last_day(self) -> date:
        """The last day the guide guides them."""
        if self.ended_on is None:
            return self.term_ends_on
        return min(self.term_ends_on, date.fromordinal(self.ended_on.toordinal() - 1))

    def overlaps(self, starts_on: date, ends_on: date) -> bool:
        return self.term_starts_on <= ends_on and starts_on <= self.last_day


@dataclass(frozen=True)
class GuideState:
    guide_id: str
    registered_on: date
    appointments: Mapping[str, Appointment]
    erased_on: date | None = None


def evolve(state: GuideState | None, event: EventPayload) -> GuideState | None:
    match event:
        case GuideRegistered():
            return GuideState(event.guide_id, event.registered_on, {})
        case GuideAppointed() if state is not None:
            appointment = Appointment(
                event.appointment_id,
                event.branch_id,
                tuple(event.member_ids),
                event.group_id,
                event.term_starts_on,
                event.term_ends_on,
            )
            return replace(
                state, appointments={**state.appointments, event.appointment_id: appointment}
            )
        case GuideAppointmentEnded() if state is not None and (
            event.appointment_id in state.appointments
        ):
            ended = replace(state.appointments[event.appointment_id], ended_on=event.ended_on)
            return replace(state, appointments={**state.appointments, event.appointment_id: ended})
        case GuideErased() if state is not None:
            return replace(state, erased_on=event.erased_on)
    return state


def fold(events: Sequence[EventPayload]) -> GuideState | None:
    state: GuideState | None = None
    for event in events:
        state = evolve(state, event)
    return state


def register(
    command: RegisterGuide, existing: GuideState | None, today: date
) -> list[EventPayload]:
    if existing is not None:
        raise CommandRefused(
            "guide_exists", f"guide {command.guide_id} is already registered", field="guide_id"
        )
    if command.registered_on > today:
        raise CommandRefused(
            "registered_in_future",
            f"registered_on {command.registered_on.isoformat()} is in the future",
            field="registered_on",
        )
    return [
        GuideRegistered(
            guide_id=command.guide_id,
            name=command.name,
            kind=command.kind,
            organisation=command.organisation,
            phone=command.phone,
            registered_on=command.registered_on,
        )
    ]


def _require_guide(state: GuideState | None, guide_id: str) -> GuideState:
    if state is None:
        raise CommandRefused("guide_unknown", f"guide {guide_id} is not registered")
    if state.erased_on is not None:
        raise CommandRefused(
            "guide_erased", f"guide {guide_id} was erased on {state.erased_on.isoformat()}"
        )
    return state


def erase(
    command: EraseGuide, state: GuideState | None, guide_id: str, retention_days: int, today: date
) -> list[EventPayload]:
    """Only once the guide's last appointment is over and the retention period after it (or
    after the registration, for a guide never appointed) has passed."""
    guide = _require_guide(state, guide_id)
    if command.erased_on > today:
        raise CommandRefused(
            "erased_in_future",
            f"erased_on {command.erased_on.isoformat()} is in the future",
            field="erased_on",
        )
    last_day = max((a.last_day for a in guide.appointments.values()), default=guide.registered_on)
    earliest = last_day + timedelta(days=retention_days)
    if command.erased_on < earliest:
        raise CommandRefused(
            "retention_not_over",
            f"guide {guide_id} was last appointed or registered until {last_day.isoformat()}; "
            f"they may be erased from {earliest.isoformat()}, after the retention period of "
            f"{retention_days} days",
            field="erased_on",
        )
    return [GuideErased(guide_id=guide_id, erased_on=command.erased_on, reason=command.reason)]


def appoint(
    command: AppointGuide,
    state: GuideState | None,
    guide_id: str,
    members: Mapping[str, MemberState | None],
    group: UnitState | None,
    today: date,
) -> list[EventPayload]:
    """`members`: the named members' states; `group`: the named Party group's."""
    guide = _require_guide(state, guide_id)
    if command.appointment_id in guide.appointments:
        raise CommandRefused(
            "appointment_exists",
            f"guide {guide_id} already has an appointment {command.appointment_id}",
            field="appointment_id",
        )
    if command.term_ends_on <= command.term_starts_on:
        raise CommandRefused(
            "appointment_term", "term_ends_on must be after term_starts_on", field="term_ends_on"
        )
    if command.term_starts_on < guide.registered_on:
        raise CommandRefused(
            "appointment_before_registration",
            f"the term starts before guide {guide_id} was registered "
            f"({guide.registered_on.isoformat()})",
            field="term_starts_on",
        )
    if command.term_starts_on > today:
        raise CommandRefused(
            "appointment_in_future",
            f"term_starts_on {command.term_starts_on.isoformat()} is in the future: record the "
            "appointment when its term begins",
            field="term_starts_on",
        )
    if command.group_id is not None and (
        group is None or group.kind != "group" or group.parent_id != command.branch_id
    ):
        raise CommandRefused(
            "group_not_in_branch",
            f"Party group {command.group_id} is not a group of branch {command.branch_id}",
            field="group_id",
        )
    for member_id in command.member_ids:
        member = members.get(member_id)
        if (
            member is None
            or member.branch_id != command.branch_id
            or not member.active_on(command.term_starts_on)
        ):
            raise CommandRefused(
                "appointee_not_in_branch",
                f"member {member_id} is not a member of branch {command.branch_id} on "
                f"{command.term_starts_on.isoformat()}",
                field="member_ids",
            )
    for other in guide.appointments.values():
        if not other.overlaps(command.term_starts_on, command.term_ends_on):
            continue
        shared = sorted(set(other.member_ids) & set(command.member_ids))
        if shared or (command.group_id is not None and other.group_id == command.group_id):
            whom = f"member {shared[0]}" if shared else f"Party group {command.group_id}"
            raise CommandRefused(
                "appointment_overlaps",
                f"guide {guide_id} already guides {whom} then ({other.appointment_id}, "
                f"{other.term_starts_on} to {other.last_day})",
                field="term_starts_on",
            )
    return [
        GuideAppointed(
            appointment_id=command.appointment_id,
            guide_id=guide_id,
            branch_id=command.branch_id,
            member_ids=list(command.member_ids),
            group_id=command.group_id,
            term_starts_on=command.term_starts_on,
            term_ends_on=command.term_ends_on,
        )
    ]


def end_appointment(
    command: EndAppointment,
    state: GuideState | None,
    guide_id: str,
    appointment_id: str,
    today: date,
) -> list[EventPayload]:
    guide = _require_guide(state, guide_id)
    appointment = guide.appointments.get(appointment_id)
    if appointment is None:
        raise CommandRefused(
            "appointment_unknown", f"guide {guide_id} has no appointment {appointment_id}"
        )
    if appointment.ended_on is not None:
        raise CommandRefused(
            "appointment_ended",
            f"appointment {appointment_id} ended on {appointment.ended_on.isoformat()}",
        )
    if command.ended_on > today:
        raise CommandRefused(
            "ended_in_future",
            f"ended_on {command.ended_on.isoformat()} is in the future",
            field="ended_on",
        )
    if command.ended_on < appointment.term_starts_on:
        raise CommandRefused(
            "ended_on_too_early",
            f"ended_on is before the term began ({appointment.term_starts_on.isoformat()})",
            field="ended_on",
        )
    if command.ended_on > appointment.term_ends_on:
        raise CommandRefused(
            "term_over",
            f"the term of appointment {appointment_id} was over on "
            f"{appointment.term_ends_on.isoformat()}; there is nothing to end",
            field="ended_on",
        )
    return [
        GuideAppointmentEnded(
            appointment_id=appointment_id,
            guide_id=guide_id,
            branch_id=appointment.branch_id,
            ended_on=command.ended_on,
            reason=command.reason,
        )
    ]
