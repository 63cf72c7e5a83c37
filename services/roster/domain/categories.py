"""Classified management (分类管理): the four dimensions of a member as of any date.

Each dimension has a history of (value, effective date) entries. The value as of a date is the
last entry in effect by then; "graduating" falls back to the academic calendar when the branch
never set it explicitly: a member graduates in the academic year that contains their expected
graduation, and counts as graduating from the first day of that year.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from services.roster.domain.policy import RosterPolicy

DIMENSIONS = ("standing", "cadre", "graduating", "performance")


@dataclass(frozen=True)
class CategoryEntry:
    dimension: str
    value: str
    effective_on: date
    order: int  # position in the log: breaks ties between entries of the same day


@dataclass(frozen=True)
class Categories:
    standing: str | None
    cadre: str | None
    graduating: str | None
    performance: str | None

    def get(self, dimension: str) -> str | None:
        return getattr(self, dimension)  # type: ignore[no-any-return]

    def matches(self, wanted: dict[str, str]) -> bool:
        return all(self.get(dimension) == value for dimension, value in wanted.items())


def derived_graduating(expected_graduation: date, as_of: date, policy: RosterPolicy) -> str:
    starts = policy.academic_year_start(expected_graduation)
    return "graduating" if as_of >= starts else "not_graduating"


def categories_as_of(
    entries: Iterable[CategoryEntry],
    as_of: date,
    expected_graduation: date,
    policy: RosterPolicy,
) -> Categories:
    latest: dict[str, CategoryEntry] = {}
    for entry in entries:
        if entry.effective_on > as_of:
            continue
        current = latest.get(entry.dimension)
        if current is None or (entry.effective_on, entry.order) > (
            current.effective_on,
            current.order,
        ):
            latest[entry.dimension] = entry
    graduating = latest.get("graduating")
    return Categories(
        standing=latest["standing"].value if "standing" in latest else None,
        cadre=latest["cadre"].value if "cadre" in latest else None,
        graduating=graduating.value
        if graduating
        else derived_graduating(expected_graduation, as_of, policy),
        performance=latest["performance"].value if "performance" in latest else "neither",
    )
