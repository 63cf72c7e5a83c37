"""Query parameters that look back in time: `as_of` (business time) and `known_at` (record
time), read the same way by every service.

An instant needs its offset (`Z` or `+08:00`): a naive time is ambiguous for a university
whose offices and servers sit in different zones. In a URL a literal `+` stands for a space,
so `known_at=2011-01-01T00:00:00+08:00` arrives as `…T00:00:00 08:00`; the error then says to
write `%2B`.

Both lie in the range every service accepts (`contracts.ranges`: dates 1900-01-01 to
2199-12-31, instants in UTC on those days); outside it the answer is 422 naming the parameter.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BeforeValidator

from contracts.ranges import DATE_SCHEMA, INSTANT_SCHEMA, check_date, check_instant

_DECODED_PLUS = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?) (\d{2}(:?\d{2})?)$"
)


def parse_instant(value: Any) -> Any:
    """An ISO 8601 instant with its offset, or a clear reason why not."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    plus = _DECODED_PLUS.match(text)
    if plus:
        raise ValueError(
            f"the '+' of the offset in {value!r} arrived as a space (in a URL '+' means a "
            f"space); write it as %2B, as in {plus.group(1)}%2B{plus.group(4)}, or use Z"
        )
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an ISO 8601 instant such as 2010-12-31T23:59:59+08:00 or "
            f"2010-12-31T15:59:59Z, not {value!r}"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"an instant needs its offset (Z for UTC, or such as +08:00): {value!r}")
    return check_instant(moment)


def parse_moment(value: Any) -> Any:
    """A business day (YYYY-MM-DD: the whole of it) or an instant with its offset."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"no such calendar date as {value!r}") from None
        return check_date(day)
    return parse_instant(value)


#: Record time: only what the system had recorded by this instant.
KnownAt = Annotated[
    Annotated[datetime, INSTANT_SCHEMA] | None,
    BeforeValidator(parse_instant),
    Query(
        description="record time: only what the system had recorded by this instant "
        "(ISO 8601 with Z or an offset; write '+' as %2B)"
    ),
]

#: Business time: what had occurred by this day (all of it) or this instant.
AsOf = Annotated[
    Annotated[date, DATE_SCHEMA] | Annotated[datetime, INSTANT_SCHEMA] | None,
    BeforeValidator(parse_moment),
    Query(
        description="business time: what had occurred by this day (YYYY-MM-DD, the whole day "
        "in the university's time zone) or this instant (with Z or an offset)"
    ),
]

#: An instant to look from (notify's upcoming and overdue).
AtInstant = Annotated[
    Annotated[datetime, INSTANT_SCHEMA] | None,
    BeforeValidator(parse_instant),
    Query(
        description="as seen at this instant (ISO 8601 with Z or an offset; default: now; "
        "write '+' as %2B)"
    ),
]


#: An instant that bounds a window of time (activities' `start` and `end`).
InstantQuery = Annotated[
    Annotated[datetime, INSTANT_SCHEMA] | None,
    BeforeValidator(parse_instant),
    Query(description="an instant (ISO 8601 with Z or an offset; write '+' as %2B)"),
]
