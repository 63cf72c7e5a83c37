"""Deadlines from events, and the deadline itself (one stream per deadline, `deadline-{id}`).

What each published event means for deadlines (`derive`), with stable deadline ids so that the
same event always concerns the same deadline:

* report.required / submitted / withdrawn: `report-{obligation}` set, met, withdrawn;
* activity.scheduled / rescheduled / cancelled: `meeting-{activity}` set, moved, withdrawn
  (a reminder only, never missed); its first attendance.recorded meets it (it was held);
* member.enrolled as probationary: `probation-{member}` at the end of probation and
  `conversion-application-{member}` 30 days before; an extension moves both, conversion meets
  both;
* member.enrolled and responsibility.agreement_signed: `agreement-{member}-{year}` for the
  academic year; signing meets it and sets the next year's;
* member.enrolled / transferred_out: `graduation-{member}` at the expected graduation / met,
  and the member's other deadlines withdrawn;
* member.enrolled and attendance (present, late, left early): `lapsed-{member}`, N months after
  the last organisational life;
* org.unit_registered (a branch): the calendar of fixed reviews for this year and the next;
* assessment.closed: `year_end_assessment-{branch}-{year}` met (the year of the period) and
  the reviews of the year after next set, so the calendar rolls on; a democratic appraisal
  scheduled meets `democratic_appraisal-{branch}-{year}`; regulation.published meets the
  `regulation_revision` deadlines of the year it takes effect.

A deadline falls in the range of dates every input does (contracts.ranges): an event recorded
before inputs were bounded (an `expected_graduation` of 9999-12-31 once was) sets none outside
it, and the arithmetic on its dates never overflows (it once stopped notify for every branch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import MAXYEAR, MINYEAR, date, datetime, time, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from contracts.envelope import EventPayload
from contracts.events import (
    ActivityCancelled,
    ActivityRescheduled,
    ActivityScheduled,
    AgreementSigned,
    AssessmentClosed,
    AttendanceCorrected,
    AttendanceRecorded,
    DeadlineMet,
    DeadlineMissed,
    DeadlineScheduled,
    DeadlineWithdrawn,
    MemberConverted,
    MemberEnrolled,
    MemberTransferredOut,
    ProbationExtended,
    RegulationPublished,
    ReportRequired,
    ReportSubmitted,
    ReportWithdrawn,
    UnitRegistered,
)
from contracts.events.deadline import DeadlineKind
from contracts.ranges import instant_in_range
from services.notify.domain.config import NotifyConfig, month_day

TITLES = {
    "report_due": "汇报截止 / report due",
    "meeting": "会议 / meeting",
    "conversion_application": "转正申请 / conversion application due",
    "probation_end": "预备期满，讨论转正 / probation ends: conversion due",
    "agreement_renewal": "签订年度党员责任书 / responsibility agreement due",
    "graduation_transfer": "毕业组织关系转接 / graduation: transfer of membership",
    "midterm_review": "结对帮扶中期考核 / mid-term review of pairs and links",
    "year_end_assessment": "年终量化考核 / year-end assessment",
    "regulation_revision": "修订管理规定 / regulation revision",
    "democratic_appraisal": "民主评议党员 / democratic appraisal",
    "lapsed_membership": "长期未参加组织生活 / no organisational life for months",
}


@dataclass(frozen=True)
class Schedule:
    deadline_id: str
    kind: DeadlineKind
    title: str
    branch_id: str | None
    member_id: str | None
    due_at: datetime
    order: int = 0  # a later cause (higher position) moves it; an earlier one does not
    only_later: bool = False  # lapsed membership: only ever pushed back
    group_id: str | None = None


@dataclass(frozen=True)
class Meet:
    deadline_id: str
    kind: DeadlineKind
    branch_id: str | None
    member_id: str | None
    at: datetime


@dataclass(frozen=True)
class Withdraw:
    deadline_id: str
    kind: DeadlineKind
    branch_id: str | None
    member_id: str | None
    reason: str


@dataclass(frozen=True)
class WithdrawMember:
    """Every open deadline of a member who left, but their graduation transfer."""

    member_id: str
    reason: str


@dataclass(frozen=True)
class MeetKind:
    """Every open deadline of a kind in a year (a regulation revised for the whole university)."""

    kind: DeadlineKind
    year: int
    at: datetime


Intent = Schedule | Meet | Withdraw | WithdrawMember | MeetKind

ATTENDED = frozenset({"present", "late", "left_early"})


class Calendar:
    """Business dates as instants: a date falls due at the configured time of day."""

    def __init__(self, config: NotifyConfig, zone: ZoneInfo) -> None:
        self.config = config
        self.zone = zone
        hours, minutes = (int(p) for p in config.due_time.split(":"))
        self.due_time = time(hours, minutes)

    def at(self, day: date) -> datetime:
        return datetime.combine(day, self.due_time, self.zone)

    def day(self, moment: datetime) -> date:
        try:
            return moment.astimezone(self.zone).date()
        except OverflowError:  # an instant at the very edge of the calendar (year 1 or 9999)
            return date.max if moment.year > MINYEAR else date.min


def academic_year(day: date) -> int:
    """The year the academic year containing `day` began (1 September)."""
    return day.year if day.month >= 9 else day.year - 1


def shift(day: date, days: int) -> date:
    """`day` moved by `days`, held at the calendar's edge rather than overflowing."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def on(text: str, year: int) -> date:
    """The configured day (`MM-DD`) of a year, held at the calendar's edge."""
    return month_day(text, min(max(year, MINYEAR), MAXYEAR))


def add_months(day: date, months: int) -> date:
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    if not MINYEAR <= year <= MAXYEAR:
        return date.max if months > 0 else date.min
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def derive(
    payload: EventPayload,
    occurred_at: datetime,
    branch_id: str | None,
    order: int,
    calendar: Calendar,
) -> list[Intent]:
    """What the event means for deadlines: none due outside the range of dates accepted."""
    return [
        intent
        for intent in _derive(payload, occurred_at, branch_id, order, calendar)
        if not isinstance(intent, Schedule) or instant_in_range(intent.due_at)
    ]


def _derive(
    payload: EventPayload,
    occurred_at: datetime,
    branch_id: str | None,
    order: int,
    calendar: Calendar,
) -> list[Intent]:
    config = calendar.config
    at = calendar.at
    match payload:
        case ReportRequired():
            return [
                Schedule(
                    f"report-{payload.obligation_id}",
                    "report_due",
                    f"{'思想汇报' if payload.kind == 'thought' else '信息汇报'} "
                    f"{payload.period_label} / {payload.kind} report",
                    payload.branch_id,
                    payload.member_id,
                    at(payload.due_on),
                    order,
                )
            ]
        case ReportSubmitted():
            return [
                Meet(
                    f"report-{payload.obligation_id}",
                    "report_due",
                    payload.branch_id,
                    payload.member_id,
                    payload.submitted_at,
                )
            ]
        case ReportWithdrawn():
            return [
                Withdraw(
                    f"report-{payload.obligation_id}",
                    "report_due",
                    payload.branch_id,
                    payload.member_id,
                    payload.reason,
                )
            ]
        case ActivityScheduled():
            intents: list[Intent] = [
                Schedule(
                    f"meeting-{payload.activity_id}",
                    "meeting",
                    payload.title[:150],
                    payload.branch_id,
                    None,
                    payload.starts_at,
                    order,
                    group_id=payload.group_id,
                )
            ]
            if payload.kind == "democratic_appraisal":
                year = calendar.day(payload.starts_at).year
                intents.append(
                    Meet(
                        f"democratic_appraisal-{payload.branch_id}-{year}",
                        "democratic_appraisal",
                        payload.branch_id,
                        None,
                        occurred_at,
                    )
                )
            return intents
        case ActivityRescheduled():
            return [
                Schedule(
                    f"meeting-{payload.activity_id}",
                    "meeting",
                    # reschedules recorded before they named the activity: the generic title
                    (payload.title or TITLES["meeting"])[:150],
                    payload.branch_id,
                    None,
                    payload.starts_at,
                    order,
                    group_id=payload.group_id,
                )
            ]
        case ActivityCancelled():
            return [
                Withdraw(
                    f"meeting-{payload.activity_id}",
                    "meeting",
                    payload.branch_id,
                    None,
                    payload.reason[:200],
                )
            ]
        case MemberEnrolled():
            return _enrolment(payload, order, calendar)
        case ProbationExtended():
            return [
                Schedule(
                    f"probation-{payload.member_id}",
                    "probation_end",
                    TITLES["probation_end"],
                    branch_id,
                    payload.member_id,
                    at(payload.new_end_on),
                    order,
                ),
                Schedule(
                    f"conversion-application-{payload.member_id}",
                    "conversion_application",
                    TITLES["conversion_application"],
                    branch_id,
                    payload.member_id,
                    at(shift(payload.new_end_on, -config.conversion_application_days)),
                    order,
                ),
            ]
        case MemberConverted():
            return [
                Meet(
                    f"probation-{payload.member_id}",
                    "probation_end",
                    branch_id,
                    payload.member_id,
                    occurred_at,
                ),
                Meet(
                    f"conversion-application-{payload.member_id}",
                    "conversion_application",
                    branch_id,
                    payload.member_id,
                    occurred_at,
                ),
            ]
        case AgreementSigned():
            start = int(payload.academic_year.split("-")[0])
            following = start + 1
            return [
                Meet(
                    f"agreement-{payload.member_id}-{start}",
                    "agreement_renewal",
                    branch_id,
                    payload.member_id,
                    occurred_at,
                ),
                Schedule(
                    f"agreement-{payload.member_id}-{following}",
                    "agreement_renewal",
                    f"{TITLES['agreement_renewal']} {following}-{following + 1}",
                    branch_id,
                    payload.member_id,
                    at(on(config.agreement_due, following + 1)),
                    order,
                ),
            ]
        case MemberTransferredOut():
            return [
                Meet(
                    f"graduation-{payload.member_id}",
                    "graduation_transfer",
                    branch_id,
                    payload.member_id,
                    occurred_at,
                ),
                WithdrawMember(
                    payload.member_id, f"transferred out on {payload.transferred_on.isoformat()}"
                ),
            ]
        case AttendanceRecorded() | AttendanceCorrected():
            held: list[Intent] = []
            if isinstance(payload, AttendanceRecorded):
                # Attendance is taken: the meeting was held, nobody needs reminding of it.
                held.append(
                    Meet(
                        f"meeting-{payload.activity_id}",
                        "meeting",
                        payload.branch_id,
                        None,
                        occurred_at,
                    )
                )
            if payload.status in ATTENDED:
                held.append(
                    Schedule(
                        f"lapsed-{payload.member_id}",
                        "lapsed_membership",
                        TITLES["lapsed_membership"],
                        payload.branch_id,
                        payload.member_id,
                        at(add_months(payload.activity_date, config.lapsed_after_months)),
                        order,
                        only_later=True,
                    )
                )
            return held
        case UnitRegistered() if payload.kind == "branch":
            day = calendar.day(occurred_at)
            return _reviews(payload.unit_id, (day.year, day.year + 1), day, order, calendar)
        case AssessmentClosed():
            # The year of the period closed (a period of 2010 may close in January 2011);
            # closes recorded before the period was carried: the year they were closed in.
            if payload.period_ends_on is not None:
                year = payload.period_ends_on.year
            else:
                year = calendar.day(payload.closed_at).year
            return [
                Meet(
                    f"year_end_assessment-{payload.branch_id}-{year}",
                    "year_end_assessment",
                    payload.branch_id,
                    None,
                    payload.closed_at,
                ),
                # The calendar rolls on: closing year Y sets the reviews of Y + 2 (see `_reviews`).
                *_reviews(
                    payload.branch_id, (year + 2,), calendar.day(occurred_at), order, calendar
                ),
            ]
        case RegulationPublished():
            # The revision of the year it takes effect, whenever it is recorded.
            return [MeetKind("regulation_revision", payload.effective_from.year, occurred_at)]
    return []


def _reviews(
    branch_id: str, years: Sequence[int], since: date, order: int, calendar: Calendar
) -> list[Intent]:
    """The fixed reviews of a branch (`config.calendar`) in those years, but the days before
    `since` (the cause's day: what had passed when it happened is not owed).

    Which years, so that every year gets its reviews from the events alone: registering a
    branch in year R sets R and R + 1; closing the year-end assessment of year Y (its
    `assessment.closed`) sets Y + 2. So each year is set once, by one cause, a year or more
    ahead: R + 2 by closing R, R + 3 by closing R + 1, and so on; a close that comes late (in
    January, or reopened and closed again) still sets its year in time. It is a function of
    the event (its payload and `occurred_at`), nothing of the clock or of what is stored, so
    a redelivery or a replay derives the same deadlines: the ids are `{kind}-{branch}-{year}`
    and the due times fixed, so setting one again decides nothing (or, from a later cause,
    records only its order). A branch whose assessment is never closed gets no further years;
    its open `year_end_assessment` is missed and escalated meanwhile."""
    config, at = calendar.config, calendar.at
    return [
        Schedule(
            f"{kind}-{branch_id}-{year}",
            kind,
            f"{TITLES[kind]} {year}",
            branch_id,
            None,
            at(on(text, year)),
            order,
        )
        for year in years
        for kind, text in sorted(config.calendar.items())
        if on(text, year) >= since
    ]


def _enrolment(payload: MemberEnrolled, order: int, calendar: Calendar) -> list[Intent]:
    config, at = calendar.config, calendar.at
    member, branch = payload.member_id, payload.branch_id
    intents: list[Intent] = []
    if payload.standing == "probationary" and payload.probation_ends_on is not None:
        ends = payload.probation_ends_on
        intents += [
            Schedule(
                f"probation-{member}",
                "probation_end",
                TITLES["probation_end"],
                branch,
                member,
                at(ends),
                order,
            ),
            Schedule(
                f"conversion-application-{member}",
                "conversion_application",
                TITLES["conversion_application"],
                branch,
                member,
                at(shift(ends, -config.conversion_application_days)),
                order,
            ),
        ]
    year = academic_year(payload.enrolled_on)
    due = on(config.agreement_due, year + 1)
    if due <= payload.enrolled_on:
        due = shift(payload.enrolled_on, config.agreement_grace_days)
    intents += [
        Schedule(
            f"agreement-{member}-{year}",
            "agreement_renewal",
            f"{TITLES['agreement_renewal']} {year}-{year + 1}",
            branch,
            member,
            at(due),
            order,
        ),
        Schedule(
            f"graduation-{member}",
            "graduation_transfer",
            TITLES["graduation_transfer"],
            branch,
            member,
            at(payload.expected_graduation),
            order,
        ),
        Schedule(
            f"lapsed-{member}",
            "lapsed_membership",
            TITLES["lapsed_membership"],
            branch,
            member,
            at(add_months(payload.enrolled_on, config.lapsed_after_months)),
            order,
            only_later=True,
        ),
    ]
    return intents


# -- the deadline ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deadline:
    deadline_id: str
    kind: DeadlineKind
    branch_id: str | None
    member_id: str | None
    due_at: datetime | None
    revision: int = 0
    order: int = 0
    status: str = "open"  # open, met, withdrawn
    missed: bool = False


def fold(events: Sequence[EventPayload]) -> Deadline | None:
    state: Deadline | None = None
    for event in events:
        match event:
            case DeadlineScheduled():
                base = state or Deadline(
                    event.deadline_id, event.kind, event.branch_id, event.member_id, None
                )
                state = replace(
                    base,
                    due_at=event.due_at,
                    revision=event.revision,
                    order=max(base.order, event.cause_position or 0),
                )
            case DeadlineMet():
                state = replace(
                    state
                    or Deadline(
                        event.deadline_id, event.kind, event.branch_id, event.member_id, None
                    ),
                    status="met",
                )
            case DeadlineWithdrawn():
                state = replace(
                    state
                    or Deadline(
                        event.deadline_id, event.kind, event.branch_id, event.member_id, None
                    ),
                    status="withdrawn",
                )
            case DeadlineMissed() if state is not None:
                state = replace(state, missed=True)
    return state


def decide(
    intent: Schedule | Meet | Withdraw, state: Deadline | None, cause: UUID | None
) -> list[EventPayload]:
    match intent:
        case Schedule():
            if state is not None and state.status != "open":
                return []
            if state is not None and state.due_at is not None:
                if intent.only_later:
                    if intent.due_at <= state.due_at:
                        return []  # the lapse warning is only ever pushed back
                elif intent.order < state.order:
                    return []  # an older cause arriving late does not move it back
                elif intent.due_at == state.due_at and intent.order == state.order:
                    return []  # the same cause again (a redelivery or a replay)
                # A later cause naming the due time already set is still recorded, as a
                # revision with the same due_at and its higher `cause_position`: the state's
                # order comes only from the log, and without it an older cause arriving after
                # would move the deadline although the latest cause says otherwise. So the
                # outcome is a function of the set of causes, whatever order they came in.
                # The read models take it as an unchanged deadline: the board re-plans the same
                # delivery ids (deadline, recipient, channel, lead) at the same send times.
            return [
                DeadlineScheduled(
                    deadline_id=intent.deadline_id,
                    kind=intent.kind,
                    branch_id=intent.branch_id,
                    member_id=intent.member_id,
                    title=intent.title[:200],
                    due_at=intent.due_at,
                    revision=(state.revision if state else 0) + 1,
                    cause_event_id=cause,
                    group_id=intent.group_id,
                    cause_position=intent.order,
                )
            ]
        case Meet():
            if state is not None and state.status != "open":
                return []
            return [
                DeadlineMet(
                    deadline_id=intent.deadline_id,
                    kind=intent.kind,
                    branch_id=intent.branch_id,
                    member_id=intent.member_id,
                    met_at=intent.at,
                    cause_event_id=cause,
                )
            ]
        case Withdraw():
            if state is not None and state.status != "open":
                return []
            return [
                DeadlineWithdrawn(
                    deadline_id=intent.deadline_id,
                    kind=intent.kind,
                    branch_id=intent.branch_id,
                    member_id=intent.member_id,
                    reason=intent.reason[:200],
                    cause_event_id=cause,
                )
            ]


def decide_missed(state: Deadline | None, now: datetime) -> list[EventPayload]:
    if (
        state is None
        or state.status != "open"
        or state.missed
        or state.due_at is None
        or state.due_at > now
        or state.kind == "meeting"
    ):
        return []
    return [
        DeadlineMissed(
            deadline_id=state.deadline_id,
            kind=state.kind,
            branch_id=state.branch_id,
            member_id=state.member_id,
            due_at=state.due_at,
            noticed_at=now,
        )
    ]
