"""The `deadline` family, produced by the notify service: review deadlines and reminders."""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field

from contracts.envelope import EventPayload, Family
from contracts.types import Identifier, Instant, ShortText

DeadlineKind = Literal[
    "report_due",
    "meeting",
    "conversion_application",  # the member applies about a month before probation ends
    "probation_end",  # conversion due (转正)
    "agreement_renewal",  # 责任书, each academic year
    "graduation_transfer",  # 组织关系转接
    "midterm_review",  # pairs and links, October
    "year_end_assessment",  # December
    "regulation_revision",  # April
    "democratic_appraisal",  # yearly
    "lapsed_membership",  # warning long before six months without organisational life
]
Channel = Literal["stream", "webhook", "email"]
#: Why the recipient is reminded: the member concerned, the branch secretary, the school office.
RecipientRole = Literal["member", "secretary", "school_office"]


class _DeadlineFamily(EventPayload):
    family: ClassVar[Family] = "deadline"

    deadline_id: Identifier
    kind: DeadlineKind
    branch_id: Identifier | None
    member_id: Identifier | None


class DeadlineScheduled(_DeadlineFamily):
    """A deadline was set or moved (a later revision supersedes an earlier one)."""

    event_type: ClassVar[str] = "deadline.scheduled"

    title: ShortText
    due_at: Instant
    revision: int = Field(ge=1)
    cause_event_id: UUID | None
    group_id: Identifier | None = None  # a group meeting: only its group is reminded
    cause_position: int | None = None  # the cause's position in its producer's log


class DeadlineMet(_DeadlineFamily):
    event_type: ClassVar[str] = "deadline.met"

    met_at: Instant
    cause_event_id: UUID | None


class DeadlineWithdrawn(_DeadlineFamily):
    """The cause of a deadline went away (a meeting cancelled, an obligation withdrawn)."""

    event_type: ClassVar[str] = "deadline.withdrawn"

    reason: ShortText
    cause_event_id: UUID | None


class DeadlineMissed(_DeadlineFamily):
    event_type: ClassVar[str] = "deadline.missed"

    due_at: Instant
    noticed_at: Instant


class _Reminder(_DeadlineFamily):
    recipient_id: Identifier
    channel: Channel
    lead_seconds: int
    role: RecipientRole | None = None  # absent in reminders recorded before it was added


class ReminderFailed(_Reminder):
    """A reminder that could not be delivered after every retry: a dead letter."""

    event_type: ClassVar[str] = "reminder.failed"

    failed_at: Instant
    attempts: int = Field(ge=1)
    reason: ShortText


class ReminderSkipped(_Reminder):
    """A reminder not sent because its moment had passed by the time it could be (the service
    was down, or the deadline was recorded late): kept so that an auditor can see why."""

    event_type: ClassVar[str] = "reminder.skipped"

    skipped_at: Instant
    reason: ShortText


class ReminderSent(_Reminder):
    """One reminder delivered on one channel to one recipient; `lead_seconds` is how long before
    the due time it was meant for (negative: an escalation after the deadline passed)."""

    event_type: ClassVar[str] = "reminder.sent"

    sent_at: Instant
    attempts: int = Field(ge=1)
