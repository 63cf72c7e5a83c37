"""A branch's table for a period: totals, ranks, grades, the excellent and the lagging.

* Rank inside the branch by total, descending; equal totals share a rank (1, 2, 2, 4).
* A grade is the first whose minimum the total meets. A grade with a `max_share` (excellent at
  most one third) is given only if the members of the branch with a total at least as high
  number at most floor(share × branch size): ties at the boundary are all left out rather than
  exceed the share, and fall to the next grade.
* Probationary members take part and are ranked, but get no grade unless the regulation says
  `grade_probationary`; the branch size for shares counts the graded members.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

from services.scoring.domain.engine import (
    Adjustment,
    Input,
    Line,
    MemberPeriod,
    all_lines,
    member_period,
    vetoes_for,
)
from services.scoring.domain.regulation import Governing, RegulationBook, RegulationDocument


@dataclass(frozen=True)
class Participant:
    """A member of the branch who takes part in the period's assessment."""

    member_id: str
    branch_id: str
    probationary: bool


@dataclass(frozen=True)
class TableRow:
    member_id: str
    total: Decimal
    rank: int
    grade: str | None
    classification: str  # excellent, lagging or neither
    probationary: bool


def ranks(totals: Mapping[str, Decimal]) -> dict[str, int]:
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    result: dict[str, int] = {}
    for index, (member, total) in enumerate(ordered):
        if index and total == ordered[index - 1][1]:
            result[member] = result[ordered[index - 1][0]]
        else:
            result[member] = index + 1
    return result


def grade_table(
    totals: Mapping[str, Decimal], probationary: set[str], document: RegulationDocument
) -> list[TableRow]:
    graded = {
        m: t for m, t in totals.items() if document.grade_probationary or m not in probationary
    }
    size = len(graded)
    # How many graded members have at least a total: by bisection, not a count per member (a
    # branch of n members would cost n² for every table and summary).
    ascending = sorted(graded.values())
    rank_of = ranks(totals)
    rows = []
    for member, total in sorted(totals.items(), key=lambda kv: (rank_of[kv[0]], kv[0])):
        grade = None
        if member in graded:
            for candidate in document.grades:
                if candidate.min is not None and total < candidate.min:
                    continue
                if candidate.max_share is not None:
                    allowed = math.floor(Fraction(candidate.max_share) * size)
                    at_least = size - bisect.bisect_left(ascending, total)
                    if at_least > allowed:
                        continue
                grade = candidate.grade
                break
        classification = document.classification.get(grade, "neither") if grade else "neither"
        rows.append(
            TableRow(member, total, rank_of[member], grade, classification, member in probationary)
        )
    return rows


@dataclass(frozen=True)
class PeriodResult:
    """Every member's result in one period. Each branch's period is governed by the regulation
    that branch follows (`governing`, by branch id; None for results booked to no branch)."""

    period_id: str
    members: dict[str, MemberPeriod]
    governing: dict[str | None, Governing]

    def governing_of(self, branch_id: str | None) -> Governing | None:
        return self.governing.get(branch_id)


def compute_period(
    period_id: str,
    book: RegulationBook,
    inputs: Sequence[Input],
    adjustments: Iterable[Adjustment],
    zone: ZoneInfo,
    participants: Iterable[Participant] = (),
    lines: Sequence[Line] | None = None,
) -> PeriodResult:
    """Every member's result for a period: those with lines, adjustments or vetoes in it and
    the participants named (who start from the base)."""
    lines = all_lines(inputs, book, zone) if lines is None else lines
    by_member: dict[str, list[Line]] = defaultdict(list)
    # A member's branch: the greatest branch id among what scored them (one, in practice).
    branches: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        if line.period_id == period_id:
            by_member[line.member_id].append(line)
            branches[line.member_id].update([line.branch_id] if line.branch_id else [])
    vetoes: dict[str, list[str]] = defaultdict(list)
    for input_ in inputs:
        for member, veto, governing in vetoes_for(input_, book, zone):
            if governing.period.id == period_id:
                vetoes[member].append(veto.id)
                branches[member].update([input_.branch_id] if input_.branch_id else [])
    adjusted: dict[str, list[Adjustment]] = defaultdict(list)
    for adjustment in adjustments:
        if adjustment.period_id == period_id:
            adjusted[adjustment.member_id].append(adjustment)
            branches[adjustment.member_id].add(adjustment.branch_id)
    branch_of: dict[str, str | None] = {m: max(b) if b else None for m, b in branches.items()}
    for participant in participants:
        branch_of[participant.member_id] = participant.branch_id
    governing_of: dict[str | None, Governing] = {}
    for branch in sorted(set(branch_of.values()), key=lambda b: b or ""):
        found = book.governing(branch, period_id)
        if found is not None:
            governing_of[branch] = found
    results = {
        member: member_period(
            member,
            governing_of[branch].period,
            governing_of[branch].document,
            by_member.get(member, ()),
            adjusted.get(member, ()),
            vetoes.get(member, ()),
            branch,
        )
        for member, branch in branch_of.items()
        if branch in governing_of
    }
    return PeriodResult(period_id, results, governing_of)


def branch_table(
    result: PeriodResult, branch_id: str, participants: Iterable[Participant]
) -> list[TableRow]:
    """The branch's ranking: its participants, and anyone with a result booked to it."""
    governing = result.governing_of(branch_id)
    if governing is None:
        return []
    members = {p.member_id: p for p in participants if p.branch_id == branch_id}
    totals = {
        m: r.total
        for m, r in result.members.items()
        if m in members or (r.branch_id == branch_id and not members)
    }
    for member in members:
        totals.setdefault(member, governing.document.scaled(governing.document.base))
    probationary = {m for m, p in members.items() if p.probationary}
    return grade_table(totals, probationary, governing.document)
