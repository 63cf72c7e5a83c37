"""The rules a university may set differently (DOMAIN "Rules and practice"), with the defaults
of the national regulations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class RosterPolicy:
    probation_months: int = 12  # 预备期: one year from admission
    extension_min_months: int = 6
    extension_max_months: int = 12
    academic_year_starts: tuple[int, int] = (9, 1)  # month, day
    committee_max_members: int = 5
    committee_term_years: int = 3

    def academic_year_start(self, day: date) -> date:
        """The first day of the academic year `day` falls in."""
        month, dom = self.academic_year_starts
        start = date(day.year, month, dom)
        return start if day >= start else date(day.year - 1, month, dom)

    def academic_year(self, day: date) -> str:
        """The academic year as it is written, e.g. "2010-2011"."""
        start = self.academic_year_start(day).year
        return f"{start}-{start + 1}"


def add_months(day: date, months: int) -> date:
    """The same day `months` later (the last day of the month when it is shorter)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")
