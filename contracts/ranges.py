"""The range of dates and instants the APIs accept (DESIGN §2.11: every input has a sane range).

Dates from 1900-01-01 to 2199-12-31; instants from 1900-01-01T00:00:00Z up to (not including)
2200-01-01T00:00:00Z, that is on one of those days in UTC, whatever offset they are written with.

Why these bounds: nothing a university's Party organisation records lies before 1900 (the
Communist Party of China was founded in 1921; the oldest faculty members' Party dates are after
it), and two centuries ahead leave room for any expiry, term or graduation anyone could mean.
What lies outside is a typing error (`0201-05-05`) or a probe (`9999-12-31`), and it is far
enough inside Python's calendar (years 1 to 9999) and PostgreSQL's that the arithmetic the
services do on an accepted date — months of probation, a year of deadlines, a week of
escalation, a time zone's offset — cannot overflow.

These types bound what is *accepted* (command bodies and query parameters): the event payloads
in `contracts.events` keep the plain `BusinessDate` and `Instant`, so that an event recorded
before the bound, already in a log, still reads (a log is append-only); what reads it must not
fail on it (runtime.projection records and skips an event it cannot apply).

The OpenAPI documents show the range as `formatMinimum` and `formatMaximum` (dates) or
`formatExclusiveMaximum` (instants); a value outside gets 422 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

#: The first and the last day accepted.
EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2199, 12, 31)
#: The first instant accepted, and the first one no longer accepted.
EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
END_OF_INSTANTS = datetime(2200, 1, 1, tzinfo=UTC)

DATE_RANGE_TEXT = f"{EARLIEST_DATE.isoformat()} to {LATEST_DATE.isoformat()}"
INSTANT_RANGE_TEXT = "1900-01-01T00:00:00Z up to (not including) 2200-01-01T00:00:00Z"


class OutOfRange(ValueError):
    """A date or an instant outside the range accepted."""


def date_in_range(day: date) -> bool:
    return EARLIEST_DATE <= day <= LATEST_DATE


def instant_in_range(moment: datetime) -> bool:
    """Whether an aware instant lies in the range (one too far for Python to shift to UTC, such
    as 9999-12-31T23:30-05:00, does not)."""
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return False
    return EARLIEST_INSTANT <= utc < END_OF_INSTANTS


def check_date(day: date) -> date:
    """The day, or OutOfRange with a sentence naming the range."""
    if not date_in_range(day.date() if isinstance(day, datetime) else day):
        raise OutOfRange(
            f"must be a date from {DATE_RANGE_TEXT} (the range this system accepts), "
            f"not {day.isoformat()}"
        )
    return day


def check_instant(moment: datetime) -> datetime:
    if not instant_in_range(moment):
        raise OutOfRange(
            f"must be an instant from {INSTANT_RANGE_TEXT} (the range this system accepts), "
            f"not {moment.isoformat()}"
        )
    return moment


@dataclass(frozen=True)
class _Published:
    """Adds the range to the JSON Schema of a date or date-time (OpenAPI documents)."""

    keywords: tuple[tuple[str, str], ...]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema: dict[str, Any] = handler(core_schema)
        schema.update(self.keywords)
        return schema


DATE_SCHEMA = _Published(
    (("formatMinimum", EARLIEST_DATE.isoformat()), ("formatMaximum", LATEST_DATE.isoformat()))
)
INSTANT_SCHEMA = _Published(
    (
        ("formatMinimum", "1900-01-01T00:00:00Z"),
        ("formatExclusiveMaximum", "2200-01-01T00:00:00Z"),
    )
)

#: A calendar date a command or a query accepts (in the university's time zone).
BoundedDate = Annotated[date, AfterValidator(check_date), DATE_SCHEMA]

#: An instant with its offset a command or a query accepts.
BoundedInstant = Annotated[AwareDatetime, AfterValidator(check_instant), INSTANT_SCHEMA]
