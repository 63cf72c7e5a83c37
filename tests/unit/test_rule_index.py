"""The rule index (services/scoring/domain/engine.py, RuleIndex): an input is tried only on the
rules its type and the value of one discriminating field leave, and gives exactly the lines
trying every rule gives, in the same order.

A reference evaluation that tries every rule on every input is written out here (not calling
the index); random regulations (rules with random `when` over event types and fields) and random
inputs are given to both. Then a few cases by hand, with the lines they give stated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.engine import (
    Input,
    Line,
    all_lines,
    lines_of,
    rule_index,
    vetoes_of,
)
from services.scoring.domain.regulation import (
    PublishedVersion,
    RegulationBook,
    RegulationDocument,
    RegulationHistory,
)
from services.scoring.regulation_file import default_regulation

BEIJING = ZoneInfo("Asia/Shanghai")
TYPES = ["attendance.recorded", "attendance.corrected", "report.submitted", "plaque.withdrawn"]
FIELDS = ["status", "kind", "activity_kind", "on_time", "n"]
VALUES: list[Any] = ["a", "b", "c", "present", True, False, 0, 1, 2]
#: What an input's field may hold: the values conditions name, others, and odd ones (a float
#: equal to an int, a digit as text, None, a list: unhashable, equal to no condition's value).
DATA_VALUES: list[Any] = [*VALUES, "d", 1.0, "1", None, ["a"], {"a": 1}]


# -- the reference: every rule tried on every input ---------------------------------------------


def holds(when: Mapping[str, Any], data: Mapping[str, Any]) -> bool:
    """A rule's conditions as the regulation's format defines them: each field equal to the
    value, or one of the values of a list."""
    for name, wanted in when.items():
        value = data.get(name)
        if isinstance(wanted, list):
            if not any(value is w or value == w for w in wanted):
                return False
        elif value != wanted:
            return False
    return True


def reference_lines(input_: Input, document: RegulationDocument, period_id: str) -> list[Line]:
    """The lines of an input, trying every rule of the document in its order."""
    scored_as = {"attendance.corrected": "attendance.recorded"}
    quantum = Decimal(1).scaleb(-document.precision)
    found = []
    for rule in document.rules:
        if rule.on != input_.type and rule.on != scored_as.get(input_.type):
            continue
        if not holds(rule.when, input_.data):
            continue
        if rule.points is not None:
            points = rule.points.quantize(quantum, rounding=ROUND_HALF_UP)
        else:
            assert rule.points_per is not None
            raw = input_.data.get(rule.points_per.field)
            if raw is None:
                continue
            points = (Decimal(str(raw)) * rule.points_per.factor).quantize(
                quantum, rounding=ROUND_HALF_UP
            )
        member = input_.data.get(rule.member)
        if not member or points == 0:
            continue
        title = (
            rule.title
            if isinstance(rule.title, str)
            else " / ".join(t for t in (rule.title.zh, rule.title.en) if t)
        )
        found.append(
            Line(
                str(member),
                input_.branch_id,
                period_id,
                rule.id,
                title,
                document.id,
                document.version,
                points,
                input_,
            )
        )
    return found


def shown(lines: Sequence[Line]) -> list[tuple[Any, ...]]:
    """A line as everything in it, the cause by identity."""
    return [
        (
            line.member_id,
            line.branch_id,
            line.period_id,
            line.rule_id,
            line.rule_title,
            line.regulation_id,
            line.regulation_version,
            line.points,
            str(line.points),  # the same scale too
            id(line.cause),
            line.superseded,
        )
        for line in lines
    ]


# -- random regulations and inputs ----------------------------------------------------------------

condition_values = st.one_of(
    st.sampled_from(VALUES), st.lists(st.sampled_from(VALUES), min_size=1, max_size=4)
)


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": f"r{index}",
        "title": {"zh": f"规则{index}", "en": f"rule {index}"},
        "on": draw(st.sampled_from(TYPES)),
        "when": draw(
            st.dictionaries(st.sampled_from(FIELDS), condition_values, min_size=0, max_size=3)
        ),
        "member": draw(st.sampled_from(["member_id", "member_id", "mentor_id"])),
    }
    if draw(st.booleans()):
        rule["points"] = draw(st.sampled_from(["1", "-2", "0.5", "0", "3.25"]))
    else:
        rule["points_per"] = {"field": "hours", "factor": draw(st.sampled_from(["1", "0.5", "-1"]))}
    if draw(st.booleans()):
        rule["cap"] = draw(st.sampled_from(["1", "5", "10"]))
    return rule


@st.composite
def regulations(draw: st.DrawFn) -> RegulationDocument:
    count = draw(st.integers(min_value=1, max_value=12))
    return RegulationDocument.model_validate(
        {
            "id": "random",
            "version": 1,
            "title": "random",
            "effective_from": "2010-05-01",
            "periods": [{"id": "2010", "starts_on": "2010-05-01", "ends_on": "2010-12-31"}],
            "base": "60",
            "floor": "0",
            "ceiling": "100",
            "precision": draw(st.sampled_from([0, 1, 2])),
            "rules": [draw(rules(n)) for n in range(count)],
            "vetoes": [
                {"id": "v", "title": "v", "on": draw(st.sampled_from(TYPES)), "when": when}
                for when in draw(
                    st.lists(
                        st.dictionaries(st.sampled_from(FIELDS), condition_values, max_size=2),
                        max_size=2,
                    )
                )
            ],
            "grades": [{"grade": "any"}],
        }
    )


@st.composite
def inputs(draw: st.DrawFn, number: int) -> Input:
    data: dict[str, Any] = {
        name: draw(st.sampled_from(DATA_VALUES))
        for name in draw(st.lists(st.sampled_from(FIELDS), unique=True, max_size=len(FIELDS)))
    }
    for name in ("member_id", "mentor_id"):
        member = draw(st.sampled_from(["m1", "m2", "", None, "absent"]))
        if member != "absent":
            data[name] = member
    hours = draw(st.sampled_from(["1.5", 2, 0.25, "0", None, "absent"]))
    if hours != "absent":
        data["hours"] = hours
    type_ = draw(st.sampled_from([*TYPES, "member.disciplined"]))
    if type_ == "attendance.corrected":  # of one of the first inputs, or of none given
        data["corrects_event_id"] = str(UUID(int=draw(st.integers(1, 40))))
    day = date(2010, 5, 1) + timedelta(days=draw(st.integers(min_value=0, max_value=300)))
    return Input(
        UUID(int=number + 1),
        type_,
        datetime(day.year, day.month, day.day, draw(st.integers(0, 23)), tzinfo=UTC),
        datetime(day.year, day.month, day.day, 23, tzinfo=UTC),
        draw(st.sampled_from(["b1", "b2", None])),
        "sec",
        data,
    )


@settings(max_examples=400, deadline=None)
@given(regulations(), st.lists(st.integers(0, 10_000), min_size=1, max_size=30), st.data())
def test_the_index_gives_the_lines_of_trying_every_rule(
    document: RegulationDocument, numbers: list[int], data: st.DataObject
) -> None:
    version = PublishedVersion(document, None, None)
    period = document.periods[0]
    for number in numbers:
        input_ = data.draw(inputs(number))
        assert shown(lines_of(input_, version, period)) == shown(
            reference_lines(input_, document, period.id)
        )
        expected_vetoes = [
            (str(input_.data[v.member]), v.id)
            for v in document.vetoes
            if v.on == input_.type and holds(v.when, input_.data) and input_.data.get(v.member)
        ]
        assert [(m, v.id) for m, v in vetoes_of(input_, document)] == expected_vetoes


@settings(max_examples=200, deadline=None)
@given(regulations(), st.data())
def test_all_lines_are_those_of_every_input_in_turn(
    document: RegulationDocument, data: st.DataObject
) -> None:
    """Over a book: each input under the version and period of its business day, superseded
    lines marked, in the order of the inputs."""
    book = RegulationBook.single(RegulationHistory([PublishedVersion(document, None, None)]))
    given_inputs = [data.draw(inputs(n)) for n in range(data.draw(st.integers(0, 25)))]
    if given_inputs and data.draw(st.booleans()):  # a correction of the first input
        first = given_inputs[0]
        given_inputs.append(
            Input(
                UUID(int=99_999),
                "attendance.corrected",
                first.occurred_at,
                first.recorded_at,
                first.branch_id,
                "sec",
                {**first.data, "corrects_event_id": str(first.event_id)},
            )
        )
    replaced = {i.supersedes for i in given_inputs if i.supersedes is not None}
    expected = []
    for input_ in given_inputs:
        day = input_.occurred_at.astimezone(BEIJING).date()
        period = document.period_of(day)
        if period is None or document.effective_from > day:
            continue
        for line in reference_lines(input_, document, period.id):
            expected.append((line, input_.event_id in replaced))
    got = all_lines(given_inputs, book, BEIJING)
    assert [line.superseded for line in got] == [gone for _, gone in expected]
    assert [s[:-1] for s in shown(got)] == [s[:-1] for s in shown([e for e, _ in expected])]


# -- by hand --------------------------------------------------------------------------------------

NDE = RegulationDocument.model_validate(default_regulation())
NDE_VERSION = PublishedVersion(NDE, None, None)
YEAR = NDE.periods[0]


def attendance(kind: str, status: str, hours: str | None = None, n: int = 1) -> Input:
    at = datetime(2010, 6, 1, 11, tzinfo=UTC)
    return Input(
        UUID(int=n),
        "attendance.recorded",
        at,
        at,
        "nde-b1",
        "sec",
        {
            "activity_id": "a1",
            "member_id": "m1",
            "status": status,
            "activity_kind": kind,
            "branch_id": "nde-b1",
            "volunteer_hours": hours,
        },
    )


def given_lines(input_: Input, version: PublishedVersion = NDE_VERSION) -> list[tuple[str, str]]:
    return [(line.rule_id, str(line.points)) for line in lines_of(input_, version, YEAR)]


@pytest.mark.parametrize(
    ("kind", "status", "hours", "expected"),
    [
        ("group_meeting", "present", None, [("group-meeting", "0.5")]),
        ("all_member_meeting", "late", None, [("late-or-left-early", "-1.0")]),
        # an exchange counts when late too, and lateness at it is not deducted
        ("exchange", "late", None, [("exchange-or-visit", "2.0")]),
        ("volunteer_service", "present", "2.5", [("volunteer-hours", "2.5")]),
        # absent from volunteer service: no hours, the absence deducted
        ("volunteer_service", "absent", None, [("absent-without-leave", "-2.0")]),
        ("party_lecture", "excused", None, []),
        ("speech", "left_early", None, [("late-or-left-early", "-1.0")]),
    ],
)
def test_the_shipped_regulation_by_hand(
    kind: str, status: str, hours: str | None, expected: list[tuple[str, str]]
) -> None:
    assert given_lines(attendance(kind, status, hours)) == expected


def test_the_shipped_regulation_is_indexed_by_the_field_that_leaves_fewest_rules() -> None:
    index = rule_index(NDE)
    assert index.dispatch["attendance.recorded"].field == "activity_kind"
    assert index.dispatch["attendance.corrected"].field == "activity_kind"  # scored as recorded
    assert index.dispatch["report.submitted"].field == "on_time"
    assert index.dispatch["report.reviewed"].field == "grade"
    assert index.dispatch["pairing.formed"].field is None  # one rule, no condition
    group = index.candidates("attendance.recorded", {"activity_kind": "group_meeting"})
    assert [scorer.rule_id for scorer, _ in group] == [
        "group-meeting",
        "late-or-left-early",
        "absent-without-leave",
    ]
    assert rule_index(NDE) is index  # built once per document


def document_of(rules: list[dict[str, Any]]) -> PublishedVersion:
    raw = {**default_regulation(), "id": "hand", "precision": 1, "rules": rules, "vetoes": []}
    return PublishedVersion(RegulationDocument.model_validate(raw), None, None)


def test_candidates_keep_the_order_of_the_regulation() -> None:
    """Rules indexed under a value and rules with no condition on the field interleave as the
    regulation lists them."""
    version = document_of(
        [
            {"id": "any", "title": "any", "on": "attendance.recorded", "points": "1"},
            {
                "id": "meeting",
                "title": "meeting",
                "on": "attendance.recorded",
                "when": {"activity_kind": "group_meeting"},
                "points": "2",
            },
            {
                "id": "present",
                "title": "present",
                "on": "attendance.recorded",
                "when": {"status": "present"},
                "points": "3",
            },
            {
                "id": "meeting-or-lecture",
                "title": "meeting or lecture",
                "on": "attendance.recorded",
                "when": {"activity_kind": ["party_lecture", "group_meeting"]},
                "points": "4",
            },
        ]
    )
    assert given_lines(attendance("group_meeting", "present"), version) == [
        ("any", "1.0"),
        ("meeting", "2.0"),
        ("present", "3.0"),
        ("meeting-or-lecture", "4.0"),
    ]
    assert given_lines(attendance("party_lecture", "absent"), version) == [
        ("any", "1.0"),
        ("meeting-or-lecture", "4.0"),
    ]


def test_values_compare_as_in_python_and_a_list_in_a_field_equals_nothing() -> None:
    version = document_of(
        [
            {
                "id": "on-time",
                "title": "on time",
                "on": "report.submitted",
                "when": {"on_time": True},
                "points": "1",
            },
            {
                "id": "first",
                "title": "first",
                "on": "report.submitted",
                "when": {"days_late": [0, 1]},
                "points": "2",
            },
            {"id": "any", "title": "any", "on": "report.submitted", "points": "0.5"},
        ]
    )

    def report(**data: Any) -> Input:
        at = datetime(2010, 6, 1, 11, tzinfo=UTC)
        return Input(
            UUID(int=7), "report.submitted", at, at, "b1", "sec", {"member_id": "m1", **data}
        )

    # 1 == True and 1.0 == 1, as `==` has it
    assert given_lines(report(on_time=1, days_late=1.0), version) == [
        ("on-time", "1.0"),
        ("first", "2.0"),
        ("any", "0.5"),
    ]
    assert given_lines(report(on_time="true", days_late="0"), version) == [("any", "0.5")]
    assert given_lines(report(on_time=[True], days_late={"0": 0}), version) == [("any", "0.5")]
    assert given_lines(report(), version) == [("any", "0.5")]


def test_a_correction_is_scored_by_the_rules_of_the_record() -> None:
    recorded = attendance("all_member_meeting", "present", n=1)
    correction = Input(
        UUID(int=2),
        "attendance.corrected",
        recorded.occurred_at,
        recorded.recorded_at,
        "nde-b1",
        "sec",
        {**recorded.data, "status": "absent", "corrects_event_id": str(recorded.event_id)},
    )
    book = RegulationBook.single(RegulationHistory([NDE_VERSION]))
    lines = all_lines([recorded, correction], book, BEIJING)
    assert [(line.rule_id, str(line.points), line.superseded) for line in lines] == [
        ("all-member-meeting", "1.0", True),
        ("absent-without-leave", "-2.0", False),
    ]
