"""Business time (DESIGN §11): `occurred_at` is when a thing happened in the world — the
meeting, the submission, the signature, the effective date of an adjustment — given by the
command. The clock only dates what happens now, and is the default when a command leaves the
time out.

Every service turns business dates into instants the same way: a date is the instant it began
in the university's time zone, so that `day_of(start_of(day)) == day` in that zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from runtime.clock import Clock
from runtime.decider import CommandRefused

#: The earliest business date any command may carry: before the founding of the People's
#: Republic no university of this system kept its Party records in it. A date outside the
#: range is refused before it can reach a consumer (one accepted 9999-12-31 once stopped a
#: projector for every branch).
EARLIEST = date(1949, 10, 1)


@dataclass(frozen=True)
class BusinessCalendar:
    """The university's calendar: its time zone and the clock of now."""

    clock: Clock
    zone: ZoneInfo

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.clock().astimezone(self.zone).date()

    def start_of(self, day: date) -> datetime:
        """The instant the business date began (its events' `occurred_at`)."""
        return datetime.combine(day, time(0), self.zone)

    def end_of(self, day: date) -> datetime:
        """The last instant of the business date: `as_of` a day includes all of it."""
        return self.start_of(day + timedelta(days=1)) - timedelta(microseconds=1)

    def day_of(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def past_instant(self, given: datetime | None, field: str, what: str) -> datetime:
        """`given`, or now when it is left out; refused when it lies in the future or before
        the records begin. `what` names the thing in the refusal ("a report's submission")."""
        now = self.clock()
        if given is None:
            return now
        if given > now:
            raise CommandRefused(
                f"{field}_in_future",
                f"{what} cannot lie in the future ({given.isoformat()} is after now)",
                field=field,
            )
        if self.day_of(given) < EARLIEST:
            raise CommandRefused(
                f"{field}_too_early",
                f"{what} cannot lie before {EARLIEST.isoformat()}",
                field=field,
            )
        return given

    def past_day(self, given: date | None, field: str, what: str) -> date:
        """`given`, or today when it is left out; refused in the future or before the records."""
        today = self.today()
        if given is None:
            return today
        if given > today:
            raise CommandRefused(
                f"{field}_in_future",
                f"{what} cannot lie in the future ({given.isoformat()} has not come yet)",
                field=field,
            )
        if given < EARLIEST:
            raise CommandRefused(
                f"{field}_too_early",
                f"{what} cannot lie before {EARLIEST.isoformat()}",
                field=field,
            )
        return given
