"""What a university configures about reminders: lead times and recipients per kind of
deadline, escalation delays, the calendar of fixed reviews, channels and retries."""

from __future__ import annotations

import re
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.events.deadline import Channel, DeadlineKind, RecipientRole

Role = RecipientRole  # who is reminded: the member, the branch secretary, the school office

_DURATION = re.compile(r"^(\d+)([dhm])$")


def duration(text: str) -> timedelta:
    """`7d`, `1d`, `1h`, `30m`."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 7d, 1h or 30m")
    amount, unit = int(match.group(1)), match.group(2)
    return {
        "d": timedelta(days=amount),
        "h": timedelta(hours=amount),
        "m": timedelta(minutes=amount),
    }[unit]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Escalation(_Model):
    secretary: str = "1d"
    school_office: str = "7d"
    kinds: list[DeadlineKind] = Field(default_factory=list)

    @field_validator("secretary", "school_office")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration(value)
        return value


class Webhook(_Model):
    url: str | None = None
    secret: str | None = None
    timeout_seconds: float = 5.0


class Email(_Model):
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "party-members@example.edu"
    use_tls: bool = False


class Retry(_Model):
    attempts: int = Field(6, ge=1)
    backoff_seconds: float = Field(30, gt=0)
    max_backoff_seconds: float = Field(3600, gt=0)


class NotifyConfig(_Model):
    leads: dict[DeadlineKind, list[str]]
    recipients: dict[DeadlineKind, list[Role]]
    escalation: Escalation = Escalation()
    calendar: dict[DeadlineKind, str] = Field(
        default_factory=dict, description="kind → MM-DD each year, for every branch"
    )
    agreement_due: str = "03-31"
    agreement_grace_days: int = 30
    conversion_application_days: int = 30
    lapsed_after_months: int = 3
    due_time: str = Field("18:00", pattern=r"^\d{2}:\d{2}$")
    default_channels: list[Channel] = Field(default_factory=lambda: list[Channel](["stream"]))
    webhook: Webhook = Webhook()
    email: Email = Email()
    retry: Retry = Retry()
    lease_seconds: float = 60
    stale_after: str = "1d"
    school_offices: dict[str, str] = Field(default_factory=dict)

    @field_validator("leads")
    @classmethod
    def _leads(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for leads in value.values():
            for lead in leads:
                duration(lead)
        return value

    def lead_times(self, kind: str) -> list[timedelta]:
        return [duration(lead) for lead in self.leads.get(kind, [])]  # type: ignore[call-overload]

    def school_office(self, school_id: str) -> str:
        return self.school_offices.get(school_id, f"office-{school_id}")


def month_day(text: str, year: int) -> date:
    month, day = (int(part) for part in text.split("-"))
    return date(year, month, day)
