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

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property, partial
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


#: Input and Line are plain slotted dataclasses, not frozen ones: a frozen one is made with an
#: object.__setattr__ per field (1 µs for a line, against 0.2 µs), and a replay makes a
#: million of each. Nothing changes them once made (dataclasses.replace makes another).


@dataclass(slots=True)
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


@dataclass(slots=True)
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


# -- the rule index -------------------------------------------------------------------------------
#
# Trying every rule of a regulation on every input costs (rules × conditions) per input. The
# index is built once per regulation version (rule_index(), kept while the document lives): for
# each event type the rules that can match it (`on`, and SCORED_AS), and for one field those
# rules test for equality or membership (activity_kind, on_time, grade …: the one that leaves
# the fewest candidates) a table from its value to the rules that can hold. An input looks its
# candidates up and checks only their remaining conditions. A candidate list keeps the
# regulation's order of rules, so the lines come out exactly as trying every rule gives them
# (tests/unit/test_rule_index.py holds the index to that).

#: A condition left to check once a rule is a candidate: (field, wanted value, wanted is a list).
Check = tuple[str, Any, bool]


@dataclass(frozen=True, slots=True)
class Scorer:
    """A rule as the index applies it: its fixed points scaled and its title written once."""

    rule_id: str
    title: str
    member: str
    fixed: Decimal | None  # the points of a rule with fixed points, at the precision
    per_field: str | None  # the field of a points_per rule, and its factor
    factor: Decimal | None


#: A candidate rule and the conditions left to check on it.
Candidate = tuple[Scorer, tuple[Check, ...]]


@dataclass(frozen=True, slots=True)
class Dispatch:
    """The candidate rules of one input type: by the value of `field` when one was chosen
    (`by_value`), else (or for a value no rule names) `rest`, the rules with no condition on it."""

    field: str | None
    by_value: Mapping[Any, tuple[Candidate, ...]]
    rest: tuple[Candidate, ...]

    def candidates(self, data: Mapping[str, Any]) -> tuple[Candidate, ...]:
        if self.field is None:
            return self.rest
        try:
            return self.by_value.get(data.get(self.field), self.rest)
        except TypeError:  # a list or an object in the field: it equals no condition's value
            return self.rest


#: How many distinct field values a points_per rule's computed points are remembered for.
_POINTS_MEMO = 4096


class RuleIndex:
    """One regulation version compiled for evaluation (rule_index() builds it once)."""

    def __init__(self, document: RegulationDocument) -> None:
        self.regulation_id = document.id
        self.regulation_version = document.version
        self.quantum = document.quantum
        self.base = document.scaled(document.base)
        self.caps: dict[str, Decimal | None] = {rule.id: rule.cap for rule in document.rules}
        scorers = [
            Scorer(
                rule.id,
                rule_title(rule),
                rule.member,
                document.scaled(rule.points) if rule.points is not None else None,
                rule.points_per.field if rule.points_per is not None else None,
                rule.points_per.factor if rule.points_per is not None else None,
            )
            for rule in document.rules
        ]
        rules = list(zip(document.rules, scorers, strict=True))
        ons = {rule.on for rule in document.rules}
        types = ons | {t for t, scored_as in SCORED_AS.items() if scored_as in ons}
        self.dispatch: dict[str, Dispatch] = {
            t: _dispatch([(r, s) for r, s in rules if r.on in (t, SCORED_AS.get(t))])
            for t in sorted(types)
        }
        self.vetoes: dict[str, tuple[Veto, ...]] = {}
        for veto in document.vetoes:
            self.vetoes[veto.on] = (*self.vetoes.get(veto.on, ()), veto)
        self._points: dict[tuple[str, str], Decimal] = {}

    def candidates(self, type_: str, data: Mapping[str, Any]) -> tuple[Candidate, ...]:
        dispatch = self.dispatch.get(type_)
        return () if dispatch is None else dispatch.candidates(data)

    def points_per(self, scorer: Scorer, raw: Any) -> Decimal:
        """A points_per rule's points for a field's value, rounded half up to the precision
        (as rule_points: Decimal(str(value)) × factor)."""
        text = str(raw)
        key = (scorer.rule_id, text)
        points = self._points.get(key)
        if points is None:
            assert scorer.factor is not None
            points = (Decimal(text) * scorer.factor).quantize(self.quantum, rounding=ROUND_HALF_UP)
            if len(self._points) < _POINTS_MEMO:
                self._points[key] = points
        return points

    def lines(self, input_: Input, period_id: str) -> list[Line]:
        """The lines of one input under this version, in the regulation's order of rules."""
        dispatch = self.dispatch.get(input_.type)
        if dispatch is None:
            return []
        data = input_.data
        if dispatch.field is None:
            candidates = dispatch.rest
        else:
            try:
                candidates = dispatch.by_value.get(data.get(dispatch.field), dispatch.rest)
            except TypeError:  # unhashable: equals no condition's value (Dispatch.candidates)
                candidates = dispatch.rest
        lines = []
        for scorer, checks in candidates:
            for name, wanted, many in checks:
                value = data.get(name)
                if many:
                    if value not in wanted:
                        break
                elif value != wanted:
                    break
            else:
                points = scorer.fixed
                if points is None:
                    raw = data.get(scorer.per_field)  # type: ignore[arg-type]
                    if raw is None:
                        continue
                    points = self.points_per(scorer, raw)
                member = data.get(scorer.member)
                if not member or points == ZERO:
                    continue
                lines.append(
                    Line(
                        str(member),
                        input_.branch_id,
                        period_id,
                        scorer.rule_id,
                        scorer.title,
                        self.regulation_id,
                        self.regulation_version,
                        points,
                        input_,
                    )
                )
        return lines


def _dispatch(rules: Sequence[tuple[Rule, Scorer]]) -> Dispatch:
    """The candidates of one input type, `rules` being those that can match it, in order.

    The field looked up is the one that leaves the fewest candidates on average over the
    values the rules name (the rules with no condition on it are candidates whatever its value);
    of two as good, the first a rule names."""
    holding: dict[str, dict[Any, set[int]]] = {}  # field → value → the rules it satisfies
    for position, (rule, _) in enumerate(rules):
        for name, wanted in rule.when.items():
            values = holding.setdefault(name, {})
            for value in wanted if isinstance(wanted, list) else [wanted]:
                values.setdefault(value, set()).add(position)

    def left(name: str) -> float:
        values = holding[name]
        tested = sum(1 for rule, _ in rules if name in rule.when)
        if not values:  # only empty lists: those rules never hold
            return float(len(rules) - tested)
        return len(rules) - tested + sum(map(len, values.values())) / len(values)

    field = min(holding, key=left) if holding else None

    def candidate(rule: Rule, scorer: Scorer) -> Candidate:
        checks = tuple(
            (name, tuple(wanted) if isinstance(wanted, list) else wanted, isinstance(wanted, list))
            for name, wanted in rule.when.items()
            if name != field
        )
        return (scorer, checks)

    compiled = [candidate(r, s) for r, s in rules]
    if field is None:
        return Dispatch(None, {}, tuple(compiled))
    rest = {p for p, (rule, _) in enumerate(rules) if field not in rule.when}
    by_value = {
        value: tuple(compiled[p] for p in sorted(positions | rest))
        for value, positions in holding[field].items()
    }
    return Dispatch(field, by_value, tuple(compiled[p] for p in sorted(rest)))


_INDEXES: dict[int, tuple[weakref.ref[RegulationDocument], RuleIndex]] = {}


def rule_index(document: RegulationDocument) -> RuleIndex:
    """The document's rule index, built on first use and kept as long as the document lives."""
    key = id(document)
    found = _INDEXES.get(key)
    if found is not None and found[0]() is document:
        return found[1]
    index = RuleIndex(document)

    def forget(_: object) -> None:
        _INDEXES.pop(key, None)

    _INDEXES[key] = (weakref.ref(document, forget), index)
    return index


def scored_types(book: RegulationBook) -> set[str]:
    """The input types some rule of some version in the book can score."""
    return {t for document in book.documents() for t in rule_index(document).dispatch}


def lines_of(input_: Input, version: PublishedVersion, period: Period) -> list[Line]:
    return rule_index(version.document).lines(input_, period.id)


def vetoes_of(input_: Input, document: RegulationDocument) -> list[tuple[str, Veto]]:
    return [
        (str(input_.data[v.member]), v)
        for v in rule_index(document).vetoes.get(input_.type, ())
        if _matches(v.when, input_.data) and input_.data.get(v.member)
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
    if input_.type not in book.veto_types:
        return []
    placement = book.placed(input_.branch_id, local_day(input_.occurred_at, zone))
    if placement is None:
        return []
    governing = book.governing(input_.branch_id, placement[1].id)
    if governing is None:
        return []
    return [(member, veto, governing) for member, veto in vetoes_of(input_, governing.document)]


def all_lines(inputs: Sequence[Input], book: RegulationBook, zone: ZoneInfo) -> list[Line]:
    """Every ledger line the inputs give, superseded ones marked (they are reversed)."""
    fold = LineFold(book, zone)
    fold.add(inputs)
    return fold.lines()


class LineFold:
    """all_lines of inputs given a page at a time (a replay folds the archive as it is read):
    each page's lines as it comes, the superseded ones marked once every input is known (a
    correction may come after what it corrects)."""

    def __init__(self, book: RegulationBook, zone: ZoneInfo) -> None:
        self.book = book
        self.zone = zone
        self.inputs: list[Input] = []
        self._lines: list[Line] = []
        self._scored = scored_types(book)
        # Where an input counts depends on its branch and business day only: looked up once.
        self._where: dict[tuple[str | None, date], tuple[RuleIndex, str] | None] = {}

    def add(self, inputs: Sequence[Input]) -> None:
        self.inputs.extend(inputs)
        book, zone, scored, where, lines = self.book, self.zone, self._scored, self._where, []
        for input_ in inputs:
            if input_.type not in scored:
                continue
            key = (input_.branch_id, input_.occurred_at.astimezone(zone).date())
            try:
                placement = where[key]
            except KeyError:
                placed = book.placed(*key)
                placement = where[key] = (
                    None if placed is None else (rule_index(placed[0].document), placed[1].id)
                )
            if placement is not None:
                lines += placement[0].lines(input_, placement[1])
        self._lines += lines

    def lines(self) -> list[Line]:
        replaced = superseded_ids(self.inputs)
        if not replaced:
            return list(self._lines)
        return [
            _superseded(line) if line.cause.event_id in replaced else line for line in self._lines
        ]


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


@dataclass(frozen=True, eq=False)
class MemberPeriod:
    """A member's total in a period. Its ledger (`entries`) is written out when first read:
    a replay or a what-if needs the totals of every member, not their ledgers."""

    member_id: str
    branch_id: str | None
    period_id: str
    base: Decimal
    by_rule: dict[str, Decimal]  # after caps
    raw_by_rule: dict[str, Decimal]
    adjustments: Decimal
    vetoed_by: list[str]
    total: Decimal
    adjustment_list: list[Adjustment] = field(default_factory=list)
    regulation_version: int | None = None
    regulation_id: str | None = None
    precision: int = 2
    #: How many rule lines count (adjustments and the closing line are not rule lines).
    rule_lines: int = 0
    ledger: Callable[[], list[LedgerEntry]] | None = field(default=None, repr=False)

    @cached_property
    def entries(self) -> list[LedgerEntry]:
        return self.ledger() if self.ledger is not None else []

    def _compared(self) -> tuple[Any, ...]:
        return (
            self.member_id,
            self.branch_id,
            self.period_id,
            self.base,
            self.by_rule,
            self.raw_by_rule,
            self.adjustments,
            self.vetoed_by,
            self.total,
            self.adjustment_list,
            self.regulation_version,
            self.regulation_id,
            self.precision,
            self.rule_lines,
            self.entries,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemberPeriod):
            return NotImplemented
        return self._compared() == other._compared()


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
    """The total of one member in one period, with the ledger that explains it.

    The total does not depend on the order of the lines (points are exact decimals: a rule's
    counted points are its capped sum), so it is summed as the lines come; the ledger, which
    shows them in business-time order with a running total, is written when it is read."""
    index = rule_index(governing)
    caps = index.caps
    base = index.base
    counted_lines = [line for line in lines if not line.superseded]
    adjustment_list = sorted(adjustments, key=_when)
    sums: dict[str, Decimal] = {}
    for line in counted_lines:
        rule_id = line.rule_id
        sums[rule_id] = sums.get(rule_id, ZERO) + line.points
    raw = dict(sorted(sums.items()))
    counted = {}
    for rule_id, points in raw.items():
        cap = caps.get(rule_id)
        counted[rule_id] = points if cap is None else clamp(points, -cap, cap)
    adjusted = sum((a.points for a in adjustment_list), ZERO)
    vetoed_by = sorted(set(vetoes))
    total = clamp(base + sum(counted.values(), ZERO) + adjusted, governing.floor, governing.ceiling)
    if vetoed_by:
        total = governing.floor
    return MemberPeriod(
        member_id,
        branch_id,
        period.id,
        base,
        counted,
        raw,
        adjusted,
        vetoed_by,
        governing.scaled(total),
        adjustment_list,
        governing.version,
        governing.id,
        governing.precision,
        len(counted_lines),
        partial(_ledger, governing, counted_lines, adjustment_list, vetoed_by),
    )


def _ledger(
    governing: RegulationDocument,
    counted_lines: Sequence[Line],
    adjustment_list: Sequence[Adjustment],
    vetoed_by: Sequence[str],
) -> list[LedgerEntry]:
    """The member's ledger: every line and adjustment in business-time order with the running
    total, and a closing line when the ceiling, the floor or a veto decides the total."""
    caps = rule_index(governing).caps
    base = governing.scaled(governing.base)
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
    return entries
