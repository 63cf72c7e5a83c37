"""Field types shared by every event payload.

They are strict on purpose: an outside campus system that sends `"5"` where a number belongs, or
a float where exact points belong, gets an error naming the field instead of a silent coercion.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from contracts.canonical import format_instant

#: Stable identifiers (members, units, activities, …): short, printable, no spaces.
Identifier = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"),
]

#: Free text typed by people (names, reasons, places). Chinese is welcome.
Text = Annotated[str, Field(min_length=1, max_length=2000)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]

#: An instant with an offset (ISO 8601). Naive timestamps are refused; on the wire every instant
#: has one form, UTC with microseconds, as in the envelope.
Instant = Annotated[
    AwareDatetime, PlainSerializer(format_instant, return_type=str, when_used="json")
]

#: A calendar date in the university's time zone.
BusinessDate = date


def _exact_decimal(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('exact decimal required: send points as a string such as "2.50"')
    if isinstance(value, bool):
        raise ValueError("a number is required, not true or false")
    if isinstance(value, str | int):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
    return value


#: Digits before the decimal point of points, as the published pattern allows.
POINTS_INTEGER_DIGITS = 10


def _at_most_hundredths(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("points must be a finite number")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValueError("points have at most two decimal places (hundredths)")
    if value and value.adjusted() >= POINTS_INTEGER_DIGITS:
        raise ValueError(f"points have at most {POINTS_INTEGER_DIGITS} digits before the point")
    # One plain form, the one the published pattern describes: "1E+1" is stored as "10", "-0"
    # as "0" (str() of a Decimal with a positive exponent would keep the exponent).
    if isinstance(exponent, int) and exponent > 0:
        value = value.quantize(Decimal(1))
    return value if value else value.copy_abs()


#: Points are exact decimals in hundredths, written as strings on the wire ("-2", "1.50"): a
#: total must not depend on the order it was summed in.
Points = Annotated[
    Decimal,
    BeforeValidator(_exact_decimal),
    AfterValidator(_at_most_hundredths),
    Field(max_digits=12),
    PlainSerializer(lambda value: str(value), return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rf"^-?[0-9]{{1,{POINTS_INTEGER_DIGITS}}}(\.[0-9]{{1,2}})?$",
            "examples": ["-2", "1.50"],
        }
    ),
]

#: Money in fen (分), the smallest unit of the yuan: 1,400 CNY is 140000.
Fen = Annotated[int, Field(ge=0, le=10**12)]

#: Roles a signed token can carry (DESIGN §6).
PersonRole = Literal[
    "university_admin",
    "school_admin",
    "branch_secretary",
    "committee_member",
    "member",
    "auditor",
    "campus_system",
]

#: Who caused an event: a person in one of their roles, or `system` for events a service derives
#: itself (a score awarded by a rule, a deadline computed from a date).
ActorRole = Literal[PersonRole, "system"]
