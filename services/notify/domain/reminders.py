"""The reminder plan of a deadline, and the words of a reminder (Chinese and English).

Each reminder is one (deadline, recipient, channel, lead): a lead before the due time, or a
negative lead for an escalation after it. Its delivery id is derived from those four, so every
replica and every retry speaks of the same delivery, and receivers can recognise a repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

from contracts.events.deadline import Channel
from services.notify.domain.config import NotifyConfig, Role, duration

DELIVERY_NAMESPACE = UUID("0e2c6f5a-9a61-4bd4-8d1c-3f1a5e7b9c20")


@dataclass(frozen=True)
class DeadlineView:
    deadline_id: str
    kind: str
    title: str
    branch_id: str | None
    member_id: str | None
    due_at: datetime


@dataclass(frozen=True)
class Planned:
    deadline_id: str
    recipient_id: str
    role: Role
    channel: Channel
    lead_seconds: int
    send_at: datetime

    @property
    def key(self) -> str:
        return f"{self.deadline_id}|{self.recipient_id}|{self.channel}|{self.lead_seconds}"

    @property
    def delivery_id(self) -> UUID:
        return delivery_id(self.deadline_id, self.recipient_id, self.channel, self.lead_seconds)


def delivery_id(deadline_id: str, recipient_id: str, channel: str, lead_seconds: int) -> UUID:
    """One delivery per deadline, recipient, channel and lead time, whoever plans it."""
    return uuid5(DELIVERY_NAMESPACE, f"{deadline_id}|{recipient_id}|{channel}|{lead_seconds}")


def plan(
    deadline: DeadlineView,
    recipients: Mapping[Role, Sequence[str]],
    channels_of: Callable[[str], Sequence[Channel]],
    config: NotifyConfig,
) -> list[Planned]:
    planned = []
    roles = config.recipients.get(deadline.kind, [])  # type: ignore[call-overload]
    for lead in config.lead_times(deadline.kind):
        for role in roles:
            for recipient in recipients.get(role, ()):
                planned += _each_channel(deadline, recipient, role, lead, channels_of)
    if deadline.kind in config.escalation.kinds:
        escalations: tuple[tuple[Role, str], ...] = (
            ("secretary", config.escalation.secretary),
            ("school_office", config.escalation.school_office),
        )
        for role, delay in escalations:
            for recipient in recipients.get(role, ()):
                planned += _each_channel(deadline, recipient, role, -duration(delay), channels_of)
    unique = {p.key: p for p in planned}
    return sorted(unique.values(), key=lambda p: (p.send_at, p.key))


def _each_channel(
    deadline: DeadlineView,
    recipient: str,
    role: Role,
    lead: timedelta,
    channels_of: Callable[[str], Sequence[Channel]],
) -> list[Planned]:
    try:
        send_at = deadline.due_at - lead
    except OverflowError:
        # A due time at the calendar's edge (a deadline.scheduled recorded before dates were
        # bounded, due 9999-12-31): an escalation after it cannot be dated, nor ever sent.
        return []
    return [
        Planned(deadline.deadline_id, recipient, role, channel, int(lead.total_seconds()), send_at)
        for channel in channels_of(recipient)
    ]


@dataclass(frozen=True)
class Message:
    subject: str
    body: str


def _lead_words(lead_seconds: int) -> tuple[str, str]:
    """How long is left (or overdue), in the largest whole unit: days, hours, then minutes (a
    lead the config gives as `30m`); "due now" only for no lead at all."""
    amount = abs(lead_seconds)
    days, hours, minutes = amount // 86400, amount % 86400 // 3600, amount % 3600 // 60
    if lead_seconds < 0:
        if days:
            return f"已逾期{days}天", f"overdue by {days} day{'s' * (days != 1)}"
        if hours:
            return f"已逾期{hours}小时", f"overdue by {hours} h"
        return f"已逾期{minutes}分钟", f"overdue by {minutes} min"
    if days:
        return f"还有{days}天到期", f"due in {days} day{'s' * (days != 1)}"
    if hours:
        return f"还有{hours}小时", f"due in {hours} hour{'s' * (hours != 1)}"
    if minutes:
        return f"还有{minutes}分钟", f"due in {minutes} minute{'s' * (minutes != 1)}"
    return "今天到期", "due now"


def render(deadline: DeadlineView, lead_seconds: int, zone: ZoneInfo) -> Message:
    """The reminder's subject and body, in Chinese then English."""
    zh_when, en_when = _lead_words(lead_seconds)
    due = deadline.due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    escalation = lead_seconds < 0
    subject = (
        f"【{'逾期' if escalation else '提醒'}】{deadline.title}（{zh_when}）"
        f" / {'Overdue' if escalation else 'Reminder'}: {en_when}"
    )
    zh = f"{deadline.title}\n截止时间：{due}（{zone.key}）\n{zh_when}。" + (
        "\n该事项已逾期，请支部书记督促办理。" if escalation else "\n请按时完成。"
    )
    en = f"{deadline.title}\nDue: {due} ({zone.key})\nThis is {en_when}." + (
        "\nIt is overdue: the branch secretary is asked to follow it up."
        if escalation
        else "\nPlease complete it on time."
    )
    who = f"\n\n（党员 / member: {deadline.member_id}）" if deadline.member_id else ""
    return Message(subject[:200], f"{zh}\n\n{en}{who}")
