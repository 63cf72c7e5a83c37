"""The regulation (管理规定) as data: the document a university writes (YAML), its validation, and
the history of its versions.

A document is checked against the event catalogue when it is published: every rule names a
known event type, conditions name fields that type has and values those fields can take, caps
are positive, periods do not overlap. Every error names the rule and the field.
"""

from __future__ import annotations

import functools
import itertools
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.catalogue import CATALOGUE, Catalogue
from contracts.errors import FieldError, field_errors
from contracts.ranges import OutOfRange, check_date
from contracts.types import Identifier, Points

ScalarValue = str | bool | int
ConditionValue = ScalarValue | list[ScalarValue]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Title(_Model):
    zh: str | None = None
    en: str | None = None


class Period(_Model):
    id: Identifier
    starts_on: date
    ends_on: date


class PointsPer(_Model):
    field: str
    factor: Points


class Rule(_Model):
    id: Identifier
    title: Title | str
    on: str
    when: dict[str, ConditionValue] = Field(default_factory=dict)
    member: str = "member_id"
    points: Points | None = None
    points_per: PointsPer | None = None
    cap: Points | None = None


class Veto(_Model):
    id: Identifier
    title: Title | str
    on: str
    when: dict[str, ConditionValue] = Field(default_factory=dict)
    member: str = "member_id"


class Grade(_Model):
    grade: Identifier
    min: Points | None = None
    max_share: str | None = Field(None, pattern=r"^\d+/\d+$", examples=["1/3"])


class RegulationDocument(_Model):
    id: Identifier
    version: int = Field(ge=1)
    title: Title | str
    effective_from: date
    periods: list[Period] = Field(min_length=1)
    base: Points
    floor: Points
    ceiling: Points
    #: Decimal places every point and total is kept and shown to (one: "94.0"); points computed
    #: from a field (hours × factor) are rounded half up to it.
    precision: int = Field(1, ge=0, le=2)
    grade_probationary: bool = False
    rules: list[Rule] = Field(min_length=1)
    vetoes: list[Veto] = Field(default_factory=list)
    grades: list[Grade] = Field(min_length=1)
    classification: dict[str, Literal["excellent", "lagging"]] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _distinct_rules(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id} is used twice")
            seen.add(rule.id)
        return rules

    def period_of(self, day: date) -> Period | None:
        return next((p for p in self.periods if p.starts_on <= day <= p.ends_on), None)

    def period(self, period_id: str) -> Period | None:
        return next((p for p in self.periods if p.id == period_id), None)

    def title_text(self) -> str:
        return _title(self.title)

    @property
    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.precision)

    def scaled(self, value: Decimal) -> Decimal:
        """A number at the regulation's precision: one scale everywhere (94.0, not 94)."""
        return value.quantize(self.quantum, rounding=ROUND_HALF_UP)


def _title(title: Title | str) -> str:
    if isinstance(title, str):
        return title
    return " / ".join(t for t in (title.zh, title.en) if t)


def rule_title(rule: Rule | Veto) -> str:
    return _title(rule.title)


# -- how large a document may be ----------------------------------------------------------------

#: A regulation's size is bounded, so that a what-if under a draft or a re-scoring after a
#: publication stays a matter of seconds: each input is matched against every rule and each of
#: its conditions. The shipped regulation has 17 rules, 1 veto, 4 grades, 2 conditions at most.
MAX_RULES = 500
MAX_VETOES = 100
MAX_CONDITIONS = 20  # fields in one rule's or veto's `when`
MAX_CONDITION_VALUES = 100  # values in one condition's list
MAX_PERIODS = 50
MAX_GRADES = 20

_LIMITS = {
    "rules": MAX_RULES,
    "vetoes": MAX_VETOES,
    "periods": MAX_PERIODS,
    "grades": MAX_GRADES,
    "classification": MAX_GRADES,
}


def _too_many(field: str, count: int, limit: int, what: str) -> FieldError:
    return FieldError(field, f"at most {limit} {what} (this one has {count})")


def check_size(raw: Mapping[str, Any]) -> list[FieldError]:
    """A document's lists measured before anything else is done with them, so that a draft of
    thousands of rules is refused at once (422 naming the field and the limit)."""
    errors = []
    for field, limit in _LIMITS.items():
        value = raw.get(field)
        if isinstance(value, list | dict) and len(value) > limit:
            errors.append(_too_many(field, len(value), limit, f"{field} in a regulation"))
    for kind in ("rules", "vetoes"):
        items = raw.get(kind)
        if not isinstance(items, list) or len(items) > _LIMITS[kind]:
            continue
        for index, item in enumerate(items):
            when = item.get("when") if isinstance(item, dict) else None
            if not isinstance(when, dict):
                continue
            name = item.get("id") if isinstance(item.get("id"), str) else index
            where = f"{kind}[{name}].when"
            if len(when) > MAX_CONDITIONS:
                errors.append(_too_many(where, len(when), MAX_CONDITIONS, "conditions in one rule"))
            for field, values in when.items():
                if isinstance(values, list) and len(values) > MAX_CONDITION_VALUES:
                    errors.append(
                        _too_many(
                            f"{where}.{field}",
                            len(values),
                            MAX_CONDITION_VALUES,
                            "values in one condition",
                        )
                    )
    return errors


# -- validation against the catalogue -------------------------------------------------------------


def _field_kinds(annotation: Any) -> tuple[set[type], set[Any] | None]:
    """The python types a field can hold and, when it is a Literal, the values it can take."""
    kinds: set[type] = set()
    literals: set[Any] | None = None
    stack = [annotation]
    while stack:
        current = stack.pop()
        origin = typing.get_origin(current)
        if origin is typing.Annotated:
            stack.append(typing.get_args(current)[0])
        elif origin in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(current))
        elif origin is Literal:
            literals = (literals or set()) | set(typing.get_args(current))
            kinds.update(type(v) for v in typing.get_args(current))
        elif current is type(None):
            kinds.add(type(None))
        elif isinstance(current, type):
            kinds.add(current)
    return kinds, literals


def _check_condition(
    where: str, event_type: str, field: str, value: ConditionValue, fields: Mapping[str, Any]
) -> list[FieldError]:
    if field not in fields:
        known = ", ".join(sorted(fields))
        return [
            FieldError(
                f"{where}.when.{field}",
                f"{event_type} has no field {field!r} (its fields: {known})",
            )
        ]
    kinds, literals = _field_kinds(fields[field].annotation)
    values = value if isinstance(value, list) else [value]
    if not values:
        return [FieldError(f"{where}.when.{field}", "an empty list of values can never hold")]
    errors = []
    for v in values:
        if literals is not None and v not in literals:
            allowed = ", ".join(sorted(map(str, literals)))
            errors.append(
                FieldError(
                    f"{where}.when.{field}", f"{v!r} can never hold: {field} is one of {allowed}"
                )
            )
        elif literals is None and bool in kinds and not isinstance(v, bool):
            errors.append(
                FieldError(
                    f"{where}.when.{field}", f"{v!r} can never hold: {field} is true or false"
                )
            )
        elif literals is None and bool not in kinds and isinstance(v, bool):
            errors.append(
                FieldError(
                    f"{where}.when.{field}", f"{v!r} can never hold: {field} is not true or false"
                )
            )
    return errors


_NUMERIC = (int, Decimal, float)


def validate(document: RegulationDocument, catalogue: Catalogue = CATALOGUE) -> list[FieldError]:
    """Everything wrong with a document, each error naming where (rule and field) and why."""
    too_large = check_size(document.model_dump(include=set(_LIMITS)))
    if too_large:
        return too_large
    errors: list[FieldError] = []
    for kind, items in (("rules", document.rules), ("vetoes", document.vetoes)):
        for item in items:
            where = f"{kind}[{item.id}]"
            if item.on not in catalogue:
                errors.append(FieldError(f"{where}.on", f"unknown event type {item.on!r}"))
                continue
            fields = catalogue.spec(item.on).model.model_fields
            for field, value in item.when.items():
                errors += _check_condition(where, item.on, field, value, fields)
            if item.member not in fields:
                errors.append(
                    FieldError(
                        f"{where}.member", f"{item.on} has no field {item.member!r} naming a member"
                    )
                )
            if isinstance(item, Rule):
                errors += _check_points(where, item, fields)
    errors += _check_dates(document)
    errors += _check_periods(document.periods)
    errors += _check_grades(document)
    errors += _check_precision(document)
    if not document.floor <= document.base <= document.ceiling:
        errors.append(FieldError("base", "must lie between floor and ceiling"))
    return errors


def _finer_than(value: Decimal, precision: int) -> bool:
    exponent = value.as_tuple().exponent
    return (
        isinstance(exponent, int)
        and -exponent > precision
        and value != value.quantize(Decimal(1).scaleb(-precision))
    )


def _check_precision(document: RegulationDocument) -> list[FieldError]:
    """Every fixed number of the document is exact at its precision, so that no total needs
    rounding: only points computed from a field are rounded."""
    places = document.precision
    numbers: list[tuple[str, Decimal | None]] = [
        ("base", document.base),
        ("floor", document.floor),
        ("ceiling", document.ceiling),
    ]
    for rule in document.rules:
        numbers += [(f"rules[{rule.id}].points", rule.points), (f"rules[{rule.id}].cap", rule.cap)]
    for grade in document.grades:
        numbers.append((f"grades[{grade.grade}].min", grade.min))
    return [
        FieldError(where, f"{value} has more decimal places than the precision ({places})")
        for where, value in numbers
        if value is not None and _finer_than(value, places)
    ]


def _check_points(where: str, rule: Rule, fields: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    if (rule.points is None) == (rule.points_per is None):
        errors.append(FieldError(f"{where}.points", "give either points or points_per"))
    if rule.points_per is not None:
        name = rule.points_per.field
        if name not in fields:
            errors.append(
                FieldError(f"{where}.points_per.field", f"{rule.on} has no field {name!r}")
            )
        elif not _field_kinds(fields[name].annotation)[0] & set(_NUMERIC):
            errors.append(FieldError(f"{where}.points_per.field", f"{name} is not a number"))
    if rule.cap is not None and rule.cap <= 0:
        errors.append(
            FieldError(
                f"{where}.cap",
                f"a cap is the largest absolute total ({rule.cap} is not "
                "positive); the sign comes from the points",
            )
        )
    return errors


def _check_dates(document: RegulationDocument) -> list[FieldError]:
    """The document's days lie in the range every input does (contracts.ranges). Checked when
    it is published or tried, not when a published one is read again."""
    days = [("effective_from", document.effective_from)]
    for period in document.periods:
        days += [
            (f"periods[{period.id}].starts_on", period.starts_on),
            (f"periods[{period.id}].ends_on", period.ends_on),
        ]
    errors = []
    for field, day in days:
        try:
            check_date(day)
        except OutOfRange as error:
            errors.append(FieldError(field, str(error)))
    return errors


def _check_periods(periods: Sequence[Period]) -> list[FieldError]:
    errors = []
    for period in periods:
        if period.ends_on < period.starts_on:
            errors.append(FieldError(f"periods[{period.id}].ends_on", "ends before it starts"))
    ordered = sorted(periods, key=lambda p: p.starts_on)
    for earlier, later in itertools.pairwise(ordered):
        if later.starts_on <= earlier.ends_on:
            errors.append(
                FieldError(
                    f"periods[{later.id}].starts_on",
                    f"overlaps period {earlier.id} (until {earlier.ends_on.isoformat()})",
                )
            )
    ids = [p.id for p in periods]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        errors.append(FieldError(f"periods[{duplicate}].id", "period id is used twice"))
    return errors


def _check_grades(document: RegulationDocument) -> list[FieldError]:
    errors = []
    previous = None
    for index, grade in enumerate(document.grades):
        last = index == len(document.grades) - 1
        if grade.min is None and not last:
            errors.append(
                FieldError(f"grades[{grade.grade}].min", "only the last grade has no minimum")
            )
        if grade.min is not None and previous is not None and grade.min >= previous:
            errors.append(
                FieldError(
                    f"grades[{grade.grade}].min", "grades are listed from the highest minimum down"
                )
            )
        if grade.max_share is not None:
            share = Fraction(grade.max_share)
            if not 0 < share <= 1:
                errors.append(
                    FieldError(f"grades[{grade.grade}].max_share", "a share lies between 0 and 1")
                )
        previous = grade.min if grade.min is not None else previous
    names = {g.grade for g in document.grades}
    for name in document.classification:
        if name not in names:
            errors.append(FieldError(f"classification.{name}", "not one of the grades"))
    return errors


def parse_document(raw: Mapping[str, Any]) -> tuple[RegulationDocument | None, list[FieldError]]:
    """A document from its decoded YAML or JSON, or the errors that stop it."""
    too_large = check_size(raw)
    if too_large:
        return None, too_large
    try:
        document = RegulationDocument.model_validate(raw)
    except ValidationError as error:
        return None, field_errors(error)
    return document, validate(document)


# -- versions in force ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedVersion:
    document: RegulationDocument
    event_id: Any  # the regulation.published event, cited by re-scored lines
    recorded_at: Any


class RegulationHistory:
    """The published versions of one regulation. An event counts under the latest version whose
    `effective_from` is on or before the day it occurred."""

    def __init__(self, versions: Iterable[PublishedVersion]) -> None:
        self.versions = sorted(versions, key=lambda v: v.document.version)

    def known_at(self, moment: Any) -> RegulationHistory:
        if moment is None:
            return self
        return RegulationHistory(v for v in self.versions if v.recorded_at <= moment)

    def in_force(self, day: date) -> PublishedVersion | None:
        candidates = [v for v in self.versions if v.document.effective_from <= day]
        return max(
            candidates, key=lambda v: (v.document.effective_from, v.document.version), default=None
        )

    def latest(self) -> PublishedVersion | None:
        return self.versions[-1] if self.versions else None

    def version(self, number: int) -> PublishedVersion | None:
        return next((v for v in self.versions if v.document.version == number), None)

    def periods(self) -> dict[str, Period]:
        """Every period any version defines (a later version's definition wins)."""
        found: dict[str, Period] = {}
        for version in self.versions:
            for period in version.document.periods:
                found[period.id] = period
        return found


# -- who follows which regulation -----------------------------------------------------------------


@dataclass(frozen=True)
class Adoption:
    """A unit follows a regulation from a date (`regulation.adopted`)."""

    unit_id: str
    regulation_id: str
    effective_from: date
    recorded_at: Any = None
    order: int = 0  # position in scoring's log: of two adoptions from one day, the later wins


@dataclass(frozen=True)
class Governing:
    """The regulation version that governs a branch's period, and that period as it defines it."""

    version: PublishedVersion
    period: Period

    @property
    def document(self) -> RegulationDocument:
        return self.version.document


class RegulationBook:
    """Every published regulation side by side, and which one each unit follows on each day.

    A branch follows what it adopted itself; otherwise what its school adopted; otherwise the
    university's default. An event counts under the regulation its branch follows on the day it
    occurred, under that regulation's version in force on that day (RegulationHistory).
    """

    def __init__(
        self,
        histories: Mapping[str, RegulationHistory],
        adoptions: Iterable[Adoption],
        default_id: str,
        parents: Mapping[str, str | None],
    ) -> None:
        self.histories = dict(sorted(histories.items()))
        self.default_id = default_id
        self.parents = dict(parents)
        by_unit: dict[str, list[Adoption]] = {}
        for adoption in adoptions:
            by_unit.setdefault(adoption.unit_id, []).append(adoption)
        self._adoptions = {
            unit: sorted(items, key=lambda a: (a.effective_from, a.order))
            for unit, items in by_unit.items()
        }
        # What placed() and governing() found: a book does not change once made.
        self._placed: dict[tuple[str | None, date], tuple[PublishedVersion, Period] | None] = {}
        self._governing: dict[tuple[str | None, str], Governing | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_placed": {}, "_governing": {}}

    def documents(self) -> list[RegulationDocument]:
        """Every version of every regulation in the book."""
        return [v.document for h in self.histories.values() for v in h.versions]

    @functools.cached_property
    def veto_types(self) -> frozenset[str]:
        """The input types a veto of some version in the book is cast on."""
        return frozenset(veto.on for document in self.documents() for veto in document.vetoes)

    @classmethod
    def single(cls, history: RegulationHistory, regulation_id: str | None = None) -> RegulationBook:
        """A book of one regulation that every unit follows (a what-if, a test)."""
        latest = history.latest()
        rid = regulation_id or (latest.document.id if latest else "none")
        return cls({rid: history}, (), rid, {})

    @property
    def adoptions(self) -> list[Adoption]:
        return [a for items in self._adoptions.values() for a in items]

    def known_at(self, moment: Any) -> RegulationBook:
        if moment is None:
            return self
        return RegulationBook(
            {rid: h.known_at(moment) for rid, h in self.histories.items()},
            (a for a in self.adoptions if a.recorded_at is None or a.recorded_at <= moment),
            self.default_id,
            self.parents,
        )

    def history(self, regulation_id: str) -> RegulationHistory:
        return self.histories.get(regulation_id) or RegulationHistory(())

    def _adopted(self, unit_id: str | None, day: date) -> str | None:
        if unit_id is None:
            return None
        chosen = None
        for adoption in self._adoptions.get(unit_id, ()):
            if adoption.effective_from <= day:
                chosen = adoption.regulation_id
        return chosen

    def school_of(self, branch_id: str | None) -> str | None:
        return self.parents.get(branch_id) if branch_id is not None else None

    def regulation_of(self, branch_id: str | None, day: date) -> str:
        """The id of the regulation the branch follows on that day, and why is `source_of`."""
        return (
            self._adopted(branch_id, day)
            or self._adopted(self.school_of(branch_id), day)
            or self.default_id
        )

    def source_of(self, unit_id: str | None, day: date) -> str:
        """Where a unit's regulation comes from: `own`, `school` or `university`."""
        if self._adopted(unit_id, day):
            return "own"
        if self._adopted(self.school_of(unit_id), day):
            return "school"
        return "university"

    def in_force(self, branch_id: str | None, day: date) -> PublishedVersion | None:
        return self.history(self.regulation_of(branch_id, day)).in_force(day)

    def placed(self, branch_id: str | None, day: date) -> tuple[PublishedVersion, Period] | None:
        """The version an event of that branch and day counts under, and its period."""
        key = (branch_id, day)
        try:
            return self._placed[key]
        except KeyError:
            pass
        version = self.in_force(branch_id, day)
        period = version.document.period_of(day) if version is not None else None
        found = (version, period) if version is not None and period is not None else None
        self._placed[key] = found
        return found

    def governing(self, branch_id: str | None, period_id: str) -> Governing | None:
        """What governs the branch's period: the regulation the branch follows on the last day
        of the period as that regulation defines it, in its version in force on that day."""
        key = (branch_id, period_id)
        try:
            return self._governing[key]
        except KeyError:
            pass
        found = self._find_governing(branch_id, period_id)
        self._governing[key] = found
        return found

    def _find_governing(self, branch_id: str | None, period_id: str) -> Governing | None:
        for regulation_id, history in self.histories.items():
            period = history.periods().get(period_id)
            if period is None or self.regulation_of(branch_id, period.ends_on) != regulation_id:
                continue
            version = history.in_force(period.ends_on)
            if version is not None:
                return Governing(version, period)
        return None

    def period_ids(self) -> list[str]:
        """Every period any regulation defines, by id."""
        return sorted({p for h in self.histories.values() for p in h.periods()})

    def period_starts(self) -> list[Period]:
        return [p for h in self.histories.values() for p in h.periods().values()]
