"""The rules a university may set differently (DOMAIN "Rules and practice"), with the defaults
of the national regulations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction


@dataclass(frozen=True)
class RosterPolicy:
    probation_months: int = 12  # 预备期: one year from admission
    extension_min_months: int = 6
    extension_max_months: int = 12
    academic_year_starts: tuple[int, int] = (9, 1)  # month, day
    committee_max_members: int = 5
    committee_term_years: int = 3
    # 民主选举: at least this share more candidates than seats (差额选举, 20%) …
    election_candidate_margin: Fraction = Fraction(1, 5)
    # … a meeting valid when MORE than this share of those entitled to vote are present …
    election_quorum: Fraction = Fraction(4, 5)
    # … and a candidate elected with MORE than this share of the votes of those present.
    election_majority: Fraction = Fraction(1, 2)
    # A branch general meeting deciding on a probation (转正, extension): MORE than this share of
    # those entitled present, and MORE than this share of those entitled voting yes.
    vote_quorum: Fraction = Fraction(1, 2)
    vote_majority: Fraction = Fraction(1, 2)
    # 个人信息保护法: how long a member who left (or a guide no longer appointed) is kept
    # readable before they may be erased (five years by default).
    retention_days: int = 1826

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


def fraction_text(value: Fraction) -> str:
    """A fraction as the events record it: "4/5", "1/2", "1/1"."""
    return f"{value.numerator}/{value.denominator}"
