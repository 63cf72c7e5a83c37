"""The arithmetic of quantified assessment (量化管理), exact and recomputable by hand.

* An input counts in the period that contains the day it occurred (its business time, in the
  university's time zone), under the regulation its branch follows on that day
  (RegulationBook) in that regulation's latest version whose `effective_from` is on or before
  the day.
* Every matching rule gives a line: fixed points, or a field times a factor (rounded half up
  to the regulation's precision).
* A superseded input (an attendance record that was corrected, a review that was re-reviewed)
  counts no more: its lines are reversed, the lines of what superseded it count instead.
* A member's period total = clamp(base + Σ over rules of clamp(Σ of the rule's lines, −cap,
  +cap) + Σ manual adjustments, floor, ceiling); a veto makes it the floor. Base, floor,
  ceiling, caps and vetoes are those of the version governing the branch's period (in force
  on the period's last day).
* The ledger lists every line and every adjustment in business-time order with a running
  total; when the ceiling, the floor or a veto decides the total, a last line says so, so the
  ledger always ends at the total.

Everything here is a function of the set of inputs: arrival order does not matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from services.scoring.domain.regulation import (
    Governing,
    Period,
    PublishedVersion,
    RegulationBook,
    RegulationDocument,
    Rule,
    Veto,
    rule_title,
)

#: The fields that name members in the events scoring reads.
MEMBER_FIELDS = ("member_id", "mentor_id", "mentee_id")

#: A correction is scored by the rules of the record it corrects (its lines replace the
#: original's), so a regulation need not repeat its attendance rules for corrections.
SCORED_AS = {"attendance.corrected": "attendance.recorded"}

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Input:
    """An event scoring has applied (its archive keeps every one)."""

    event_id: UUID
    type: str
    occurred_at: datetime
    recorded_at: datetime
    branch_id: str | None
    actor_id: str
    data: Mapping[str, Any]

    @property
    def supersedes(self) -> UUID | None:
        if self.type == "attendance.corrected":
            return UUID(str(self.data["corrects_event_id"]))
        if self.type == "report.reviewed" and self.data.get("supersedes_event_id"):
            return UUID(str(self.data["supersedes_event_id"]))
        return None

    def members(self) -> set[str]:
        return {str(self.data[f]) for f in MEMBER_FIELDS if self.data.get(f)}


@dataclass(frozen=True, slots=True)
class Adjustment:
    """A manual award or deduction, approved by a second committee member (four eyes); it
    counts on its effective date (`occurred_at`), and is known from its approval."""

    adjustment_id: str
    member_id: str
    branch_id: str
    period_id: str
    points: Decimal
    reason: str
    requested_by: str
    approved_by: str
    occurred_at: datetime
    recorded_at: datetime
    event_id: UUID
    requested_event_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Line:
    member_id: str
    branch_id: str | None
    period_id: str
    rule_id: str
    rule_title: str
    regulation_id: str
    regulation_version: int
    points: Decimal
    cause: Input
    superseded: bool = False

    @property
    def key(self) -> tuple[str, str, str, int, str]:
        """What identifies a ledger line: its cause, rule, regulation version and member."""
        return (
            str(self.cause.event_id),
            self.rule_id,
            self.regulation_id,
            self.regulation_version,
            self.member_id,
        )


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def _matches(when: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    for name, wanted in when.items():
        value = data.get(name)
        if isinstance(wanted, list):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def rule_points(
    rule: Rule, data: Mapping[str, Any], document: RegulationDocument
) -> Decimal | None:
    if rule.points is not None:
        return document.scaled(rule.points)
    assert rule.points_per is not None
    raw = data.get(rule.points_per.field)
    if raw is None:
        return None
    return document.scaled(Decimal(str(raw)) * rule.points_per.factor)


def lines_of(input_: Input, version: PublishedVersion, period: Period) -> list[Line]:
    document = version.document
    lines = []
    for rule in document.rules:
        if rule.on not in (input_.type, SCORED_AS.get(input_.type)):
            continue
        if not _matches(rule.when, input_.data):
            continue
        member = input_.data.get(rule.member)
        points = rule_points(rule, input_.data, document)
        if not member or points is None or points == ZERO:
            continue
        lines.append(
            Line(
                member_id=str(member),
                branch_id=input_.branch_id,
                period_id=period.id,
                rule_id=rule.id,
                rule_title=rule_title(rule),
                regulation_id=document.id,
                regulation_version=document.version,
                points=points,
                cause=input_,
            )
        )
    return lines


def vetoes_of(input_: Input, document: RegulationDocument) -> list[tuple[str, Veto]]:
    return [
        (str(input_.data[v.member]), v)
        for v in document.vetoes
        if v.on == input_.type and _matches(v.when, input_.data) and input_.data.get(v.member)
    ]


def superseded_ids(inputs: Iterable[Input]) -> set[UUID]:
    return {i.supersedes for i in inputs if i.supersedes is not None}


def placed_lines(input_: Input, book: RegulationBook, zone: ZoneInfo) -> list[Line]:
    """The lines one input gives where its branch and business day place it."""
    placement = book.placed(input_.branch_id, local_day(input_.occurred_at, zone))
    if placement is None:
        return []
    version, period = placement
    return lines_of(input_, version, period)


def vetoes_for(
    input_: Input, book: RegulationBook, zone: ZoneInfo
) -> list[tuple[str, Veto, Governing]]:
    """The vetoes an input casts, under the version governing its branch's period."""
    placement = book.placed(input_.branch_id, local_day(input_.occurred_at, zone))
    if placement is None:
        return []
    governing = book.governing(input_.branch_id, placement[1].id)
    if governing is None:
        return []
    return [(member, veto, governing) for member, veto in vetoes_of(input_, governing.document)]


def all_lines(inputs: Sequence[Input], book: RegulationBook, zone: ZoneInfo) -> list[Line]:
    """Every ledger line the inputs give, superseded ones marked (they are reversed)."""
    replaced = superseded_ids(inputs)
    lines = []
    for input_ in inputs:
        for line in placed_lines(input_, book, zone):
            lines.append(line if input_.event_id not in replaced else _superseded(line))
    return lines


def _superseded(line: Line) -> Line:
    return Line(
        line.member_id,
        line.branch_id,
        line.period_id,
        line.rule_id,
        line.rule_title,
        line.regulation_id,
        line.regulation_version,
        line.points,
        line.cause,
        True,
    )


def clamp(value: Decimal, low: Decimal, high: Decimal) -> Decimal:
    return max(low, min(high, value))


EntryKind = str  # "rule", "adjustment", "ceiling", "floor" or "veto"


@dataclass(frozen=True)
class LedgerEntry:
    """One line as the member's ledger shows it: what it was worth, what it counted, and the
    running total after it. A rule's line has its `line`; an adjustment its `adjustment`; the
    last line of a total decided by the ceiling, the floor or a veto has neither."""

    kind: EntryKind
    points: Decimal
    counted: Decimal  # after the rule's cap
    capped: bool
    running_total: Decimal
    line: Line | None = None
    adjustment: Adjustment | None = None
    vetoed_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemberPeriod:
    member_id: str
    branch_id: str | None
    period_id: str
    base: Decimal
    by_rule: dict[str, Decimal]  # after caps
    raw_by_rule: dict[str, Decimal]
    adjustments: Decimal
    vetoed_by: list[str]
    total: Decimal
    entries: list[LedgerEntry] = field(default_factory=list)
    adjustment_list: list[Adjustment] = field(default_factory=list)
    regulation_version: int | None = None
    regulation_id: str | None = None
    precision: int = 2

    @property
    def rule_lines(self) -> int:
        """How many rule lines count (adjustments and the closing line are not rule lines)."""
        return sum(1 for entry in self.entries if entry.kind == "rule")


def _when(item: Line | Adjustment) -> tuple[datetime, str, str]:
    if isinstance(item, Line):
        return (item.cause.occurred_at, str(item.cause.event_id), item.rule_id)
    return (item.occurred_at, str(item.event_id), "~adjustment")


def sort_key(line: Line) -> tuple[datetime, str, str]:
    return _when(line)


def member_period(
    member_id: str,
    period: Period,
    governing: RegulationDocument,
    lines: Iterable[Line],
    adjustments: Iterable[Adjustment],
    vetoes: Iterable[str],
    branch_id: str | None,
) -> MemberPeriod:
    """The total of one member in one period, with the ledger that explains it."""
    caps = {rule.id: rule.cap for rule in governing.rules}
    base = governing.scaled(governing.base)
    counted_lines = [line for line in lines if not line.superseded]
    adjustment_list = sorted(adjustments, key=_when)
    raw: dict[str, Decimal] = {}
    counted: dict[str, Decimal] = {}
    entries = []
    running = base
    items: list[Line | Adjustment] = [*counted_lines, *adjustment_list]
    # A running total is shown at the governing regulation's scale: a line of a finer
    # regulation the branch followed earlier in the period (0.25 under precision 2, the period
    # governed at precision 1) or an adjustment decided under it would otherwise leave the
    # ledger one rounding away from the total.
    for item in sorted(items, key=_when):
        if isinstance(item, Adjustment):
            running += item.points
            entries.append(
                LedgerEntry(
                    "adjustment",
                    item.points,
                    item.points,
                    False,
                    governing.scaled(running),
                    None,
                    item,
                )
            )
            continue
        before = counted.get(item.rule_id, ZERO)
        raw[item.rule_id] = raw.get(item.rule_id, ZERO) + item.points
        cap = caps.get(item.rule_id)
        now = raw[item.rule_id] if cap is None else clamp(raw[item.rule_id], -cap, cap)
        counted[item.rule_id] = now
        worth = now - before
        running += worth
        entries.append(
            LedgerEntry(
                "rule", item.points, worth, worth != item.points, governing.scaled(running), item
            )
        )
    adjusted = sum((a.points for a in adjustment_list), ZERO)
    vetoed_by = sorted(set(vetoes))
    total = clamp(base + sum(counted.values(), ZERO) + adjusted, governing.floor, governing.ceiling)
    closing = None
    if vetoed_by:
        total = governing.floor
        closing = "veto"
    elif total != running:
        closing = "ceiling" if running > total else "floor"
    total = governing.scaled(total)
    if closing is not None:
        difference = total - governing.scaled(running)
        entries.append(
            LedgerEntry(closing, difference, difference, False, total, vetoed_by=tuple(vetoed_by))
        )
    return MemberPeriod(
        member_id,
        branch_id,
        period.id,
        base,
        counted,
        raw,
        adjusted,
        vetoed_by,
        total,
        entries,
        adjustment_list,
        governing.version,
        governing.id,
        governing.precision,
    )
