"""The regulation book (services/scoring/domain/regulation.py) and the ledger arithmetic
(services/scoring/domain/engine.py), given / when / then: which regulation a branch follows on
a day, which version and period govern it, the precision every number is kept to, and a
member's ledger that always ends at the total. No I/O.

The units: school `nde` with branches `nde-b1` and `nde-b2`; school `hist` with `hist-b1`.
The university's regulation `uni`; the school's `nde-own`; a branch's `b1-own`."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.domain.engine import (
    Adjustment,
    Input,
    Line,
    MemberPeriod,
    lines_of,
    member_period,
    placed_lines,
    rule_points,
)
from services.scoring.domain.regulation import (
    Adoption,
    PublishedVersion,
    RegulationBook,
    RegulationDocument,
    RegulationHistory,
    validate,
)
from services.scoring.queries import period_view
from tests.support.gwt import event_id

BEIJING = ZoneInfo("Asia/Shanghai")
PARENTS = {"nde-b1": "nde", "nde-b2": "nde", "hist-b1": "hist"}


def document(rid: str = "uni", version: int = 1, **changes: Any) -> RegulationDocument:
    raw: dict[str, Any] = {
        "id": rid,
        "version": version,
        "title": rid,
        "effective_from": "2010-05-01",
        "periods": [{"id": "2010", "starts_on": "2010-05-01", "ends_on": "2010-12-31"}],
        "base": "60",
        "floor": "0",
        "ceiling": "100",
        "precision": 1,
        "rules": [
            {
                "id": "present",
                "title": "出席",
                "on": "attendance.recorded",
                "when": {"status": "present"},
                "points": "1",
            }
        ],
        "grades": [{"grade": "qualified", "min": "60"}, {"grade": "unqualified"}],
    }
    raw.update(changes)
    return RegulationDocument.model_validate(raw)


def at(day: str, hour: int = 0) -> datetime:
    """A Beijing wall-clock hour of a day, as an instant."""
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), BEIJING) + timedelta(
        hours=hour
    )


def version(doc: RegulationDocument, recorded: str = "2010-04-25") -> PublishedVersion:
    return PublishedVersion(doc, event_id(doc.version), at(recorded))


def history(*versions: PublishedVersion) -> RegulationHistory:
    return RegulationHistory(versions)


def book(
    *adoptions: Adoption, histories: dict[str, RegulationHistory] | None = None
) -> RegulationBook:
    return RegulationBook(
        histories
        or {
            "uni": history(version(document("uni"))),
            "nde-own": history(version(document("nde-own"))),
            "b1-own": history(version(document("b1-own"))),
        },
        adoptions,
        "uni",
        PARENTS,
    )


def adoption(unit: str, rid: str, day: str, order: int, recorded: str | None = None) -> Adoption:
    return Adoption(unit, rid, date.fromisoformat(day), at(recorded or day), order)


D = date.fromisoformat


# -- which regulation a branch follows ------------------------------------------------------------


def test_a_branch_follows_its_own_over_its_schools_over_the_universitys() -> None:
    b = book(
        adoption("nde", "nde-own", "2010-05-01", 1),
        adoption("nde-b1", "b1-own", "2010-05-01", 2),
    )
    day = D("2010-06-01")
    assert (b.regulation_of("nde-b1", day), b.source_of("nde-b1", day)) == ("b1-own", "own")
    assert (b.regulation_of("nde-b2", day), b.source_of("nde-b2", day)) == ("nde-own", "school")
    assert (b.regulation_of("hist-b1", day), b.source_of("hist-b1", day)) == ("uni", "university")
    # the school itself follows its own choice; an unknown branch and no branch the default
    assert (b.regulation_of("nde", day), b.source_of("nde", day)) == ("nde-own", "own")
    assert b.regulation_of("other-b9", day) == "uni"
    assert b.regulation_of(None, day) == "uni"


def test_before_an_adoption_the_earlier_choice_holds() -> None:
    b = book(
        adoption("nde", "nde-own", "2010-09-01", 1),
        adoption("nde-b1", "b1-own", "2010-11-01", 2),
    )
    # b1: university until 31 Aug, the school's from 1 Sep, its own from 1 Nov
    assert [
        (b.regulation_of("nde-b1", D(day)), b.source_of("nde-b1", D(day)))
        for day in ("2010-08-31", "2010-09-01", "2010-10-31", "2010-11-01")
    ] == [
        ("uni", "university"),
        ("nde-own", "school"),
        ("nde-own", "school"),
        ("b1-own", "own"),
    ]


def test_a_later_adoption_replaces_an_earlier_one_from_its_date() -> None:
    b = book(
        adoption("nde", "nde-own", "2010-05-01", 1),
        adoption("nde", "uni", "2010-10-01", 2),  # back to the university's
    )
    assert b.regulation_of("nde-b2", D("2010-09-30")) == "nde-own"
    assert b.regulation_of("nde-b2", D("2010-10-01")) == "uni"
    # an explicit adoption of the university's regulation is still the school's choice
    assert b.source_of("nde-b2", D("2010-10-01")) == "school"


def test_of_two_adoptions_from_one_day_the_later_in_the_log_wins_in_any_input_order() -> None:
    first = adoption("nde-b1", "b1-own", "2010-09-01", 7)
    second = adoption("nde-b1", "nde-own", "2010-09-01", 9)
    for given_order in ([first, second], [second, first]):
        b = book(*given_order)
        assert b.regulation_of("nde-b1", D("2010-09-01")) == "nde-own"
        assert b.regulation_of("nde-b1", D("2010-08-31")) == "uni"


def test_known_at_hides_adoptions_and_versions_recorded_later() -> None:
    v1 = version(document("nde-own", 1), recorded="2010-04-25")
    # v2 (absence costs more) published on 20 January 2011, effective from 1 October 2010
    v2 = version(document("nde-own", 2, effective_from="2010-10-01"), recorded="2011-01-20")
    b = book(
        adoption("nde", "nde-own", "2010-05-01", 1, recorded="2010-04-30"),
        adoption("nde-b1", "b1-own", "2010-05-01", 2, recorded="2011-01-10"),
        histories={
            "uni": history(version(document("uni"))),
            "nde-own": history(v1, v2),
            "b1-own": history(version(document("b1-own"), recorded="2011-01-05")),
        },
    )
    day = D("2010-12-01")
    assert b.regulation_of("nde-b1", day) == "b1-own"
    assert b.in_force("nde-b2", day) == v2

    then = b.known_at(at("2011-01-01"))
    assert then.regulation_of("nde-b1", day) == "nde-own"  # the branch's adoption came later
    assert then.in_force("nde-b2", day) == v1  # v2 was not yet recorded
    assert [a.unit_id for a in then.adoptions] == ["nde"]
    assert then.history("b1-own").versions == []
    # before anything was adopted, the university's
    assert b.known_at(at("2010-04-29")).regulation_of("nde-b1", day) == "uni"
    # None is now
    assert b.known_at(None) is b


def test_an_event_counts_under_the_version_in_force_on_its_day() -> None:
    v1 = version(document("uni", 1))
    v2 = version(document("uni", 2, effective_from="2010-10-01"))
    b = book(histories={"uni": history(v2, v1)})
    assert b.in_force("nde-b1", D("2010-09-30")) == v1
    assert b.in_force("nde-b1", D("2010-10-01")) == v2
    assert b.in_force("nde-b1", D("2010-04-30")) is None  # before the first version


def test_placed_is_none_on_a_day_in_no_period() -> None:
    b = book()
    assert b.placed("nde-b1", D("2011-01-01")) is None  # after the only period, in force
    assert b.placed("nde-b1", D("2010-04-30")) is None  # before any version takes effect
    placed = b.placed("nde-b1", D("2010-12-31"))
    assert placed is not None
    found_version, found_period = placed
    assert (found_version.document.id, found_period.id) == ("uni", "2010")


def test_a_branch_switching_mid_period_is_governed_by_what_it_follows_on_the_last_day() -> None:
    """nde-b1 follows the university's `uni` (base 60, present +1) until 31 August and its own
    `b1-own` (base 70, present +2 capped at 3) from 1 September. Both define period 2010.

    What it does: the period is governed by the regulation the branch follows on the period's
    last day (b1-own: base, floor, ceiling, caps, grades), while each event keeps the lines of
    the regulation its day falls under (a June meeting: uni's +1; an October meeting: b1-own's
    +2). A cap of the governing regulation applies to its own rule ids only."""
    own = document(
        "b1-own",
        base="70",
        rules=[
            {
                "id": "present-own",
                "title": "出席",
                "on": "attendance.recorded",
                "when": {"status": "present"},
                "points": "2",
                "cap": "3",
            }
        ],
    )
    b = book(
        adoption("nde-b1", "b1-own", "2010-09-01", 1),
        histories={"uni": history(version(document("uni"))), "b1-own": history(version(own))},
    )
    governing = b.governing("nde-b1", "2010")
    assert governing is not None
    assert (governing.document.id, governing.period.ends_on) == ("b1-own", D("2010-12-31"))
    other = b.governing("nde-b2", "2010")
    assert other is not None
    assert other.document.id == "uni"

    june = attended("2010-06-10", 1)
    october = attended("2010-10-14", 2)
    november = attended("2010-11-11", 3)
    lines = [line for i in (june, october, november) for line in placed_lines(i, b, BEIJING)]
    assert [(line.regulation_id, line.rule_id, line.points) for line in lines] == [
        ("uni", "present", Decimal("1.0")),
        ("b1-own", "present-own", Decimal("2.0")),
        ("b1-own", "present-own", Decimal("2.0")),
    ]
    result = member_period("m1", governing.period, governing.document, lines, (), (), "nde-b1")
    # 70 (b1-own's base) + 1 (uni's line, no cap in b1-own) + min(2 + 2, 3) = 74.0
    assert result.total == Decimal("74.0")
    assert [e.running_total for e in result.entries] == [
        Decimal("71.0"),
        Decimal("73.0"),
        Decimal("74.0"),
    ]
    assert result.entries[-1].capped
    assert result.entries[-1].counted == Decimal("1.0")


def test_a_period_the_regulation_followed_on_its_last_day_does_not_define_governs_nothing() -> None:
    """A branch that leaves `uni` (period 2010) for `b1-own` (period 2010-autumn, from 1
    September) on 1 September has no `2010` any more: nothing governs it, so no table for it;
    `2010-autumn` is governed by b1-own."""
    own = document(
        "b1-own",
        effective_from="2010-09-01",
        periods=[{"id": "2010-autumn", "starts_on": "2010-09-01", "ends_on": "2011-01-31"}],
    )
    b = book(
        adoption("nde-b1", "b1-own", "2010-09-01", 1),
        histories={"uni": history(version(document("uni"))), "b1-own": history(version(own))},
    )
    assert b.governing("nde-b1", "2010") is None
    autumn = b.governing("nde-b1", "2010-autumn")
    assert autumn is not None
    assert autumn.document.id == "b1-own"
    assert b.governing("nde-b2", "2010-autumn") is None
    assert b.period_ids() == ["2010", "2010-autumn"]


# -- precision ------------------------------------------------------------------------------------


def test_numbers_finer_than_the_precision_are_errors_naming_where() -> None:
    doc = document(
        precision=1,
        base="60.5",  # fine at one decimal
        rules=[
            {
                "id": "x",
                "title": "x",
                "on": "attendance.recorded",
                "when": {"status": "present"},
                "points": "0.75",
                "cap": "2.25",
            },
            {
                "id": "y",
                "title": "y",
                "on": "attendance.recorded",
                "when": {"status": "absent"},
                "points": "-1.50",  # 1.5 at one decimal: fine
                "cap": "3.0",
            },
        ],
        grades=[{"grade": "qualified", "min": "59.99"}, {"grade": "unqualified"}],
    )
    errors = {e.field: e.reason for e in validate(doc)}
    assert set(errors) == {"rules[x].points", "rules[x].cap", "grades[qualified].min"}
    assert errors["rules[x].cap"] == "2.25 has more decimal places than the precision (1)"


def test_at_precision_zero_a_half_point_is_an_error() -> None:
    errors = validate(document(precision=0, base="60.5", floor="0.0"))
    assert [e.field for e in errors] == ["base"]


def test_scaled_keeps_one_scale_and_rounds_half_up() -> None:
    one = document(precision=1)
    assert [str(one.scaled(Decimal(v))) for v in ("60", "91.50", "2.25", "-2.25", "0")] == [
        "60.0",
        "91.5",
        "2.3",
        "-2.3",  # half up is away from zero
        "0.0",
    ]
    assert str(document(precision=0).scaled(Decimal("91.5"))) == "92"
    assert str(document(precision=2).scaled(Decimal("60"))) == "60.00"
    assert one.quantum == Decimal("0.1")


VOLUNTEER = {
    "id": "volunteer",
    "title": "志愿服务",
    "on": "attendance.recorded",
    "when": {"activity_kind": "volunteer_service"},
    "points_per": {"field": "volunteer_hours", "factor": "1"},
}


@pytest.mark.parametrize(
    ("hours", "factor", "precision", "points"),
    [
        ("2.25", "1", 1, "2.3"),  # 2.25 × 1 = 2.25 → 2.3 (half up)
        ("2.24", "1", 1, "2.2"),  # 2.24 → 2.2
        ("1.5", "0.5", 1, "0.8"),  # 0.75 → 0.8
        ("3", "2", 1, "6.0"),  # 6 → 6.0
        ("2.5", "1", 0, "3"),  # 2.5 → 3
        ("1.25", "0.5", 2, "0.63"),  # 0.625 → 0.63
    ],
)
def test_points_per_are_rounded_half_up_to_the_precision(
    hours: str, factor: str, precision: int, points: str
) -> None:
    doc = document(
        precision=precision,
        rules=[{**VOLUNTEER, "points_per": {"field": "volunteer_hours", "factor": factor}}],
    )
    data = {"member_id": "m1", "activity_kind": "volunteer_service", "volunteer_hours": hours}
    assert str(rule_points(doc.rules[0], data, doc)) == points
    # and a ledger line carries it (float hours as JSON decodes them give the same)
    [line] = lines_of(
        Input(
            event_id(1),
            "attendance.recorded",
            at("2010-06-01"),
            at("2010-06-01"),
            "nde-b1",
            "x",
            {**data, "volunteer_hours": float(hours)},
        ),
        version(doc),
        doc.periods[0],
    )
    assert str(line.points) == points


def test_fixed_points_take_the_scale_of_the_regulation() -> None:
    doc = document(precision=1)
    assert str(rule_points(doc.rules[0], {"status": "present"}, doc)) == "1.0"


# -- the ledger -----------------------------------------------------------------------------------


def attended(day: str, n: int, member: str = "m1", status: str = "present") -> Input:
    return Input(
        event_id(n),
        "attendance.recorded",
        at(day, 19),
        at(day, 21),
        "nde-b1",
        "m1",
        {"member_id": member, "status": status, "activity_kind": "all_member_meeting"},
    )


def line(
    day: str, n: int, points: str, rule: str = "present", doc: RegulationDocument | None = None
) -> Line:
    """A rule's line as `lines_of` makes it: its points at the regulation's scale."""
    d = doc or document()
    worth = d.scaled(Decimal(points))
    return Line("m1", "nde-b1", "2010", rule, rule, d.id, d.version, worth, attended(day, n))


def adjusted(day: str, n: int, points: str) -> Adjustment:
    return Adjustment(
        f"adj-{n}",
        "m1",
        "nde-b1",
        "2010",
        Decimal(points),
        "表彰",
        "m1",
        "m2",
        at(day),
        at("2011-01-10"),
        event_id(n),
        event_id(n + 100),
    )


def period_of(
    doc: RegulationDocument,
    lines: Sequence[Line],
    adjustments: Sequence[Adjustment] = (),
    vetoes: Sequence[str] = (),
) -> MemberPeriod:
    return member_period("m1", doc.periods[0], doc, lines, adjustments, vetoes, "nde-b1")


def ledger(result: MemberPeriod) -> list[tuple[str, str, str]]:
    return [(e.kind, str(e.counted), str(e.running_total)) for e in result.entries]


def test_a_total_cut_by_the_ceiling_ends_with_a_ceiling_line() -> None:
    doc = document(base="95")
    result = period_of(doc, [line("2010-06-10", 1, "3"), line("2010-07-01", 2, "3")])
    # 95 + 3 + 3 = 101 → the ceiling, 100.0: a last line of −1
    assert ledger(result) == [
        ("rule", "3.0", "98.0"),
        ("rule", "3.0", "101.0"),
        ("ceiling", "-1.0", "100.0"),
    ]
    assert str(result.total) == "100.0"
    assert result.entries[-1].running_total == result.total
    assert result.rule_lines == 2


def test_a_total_cut_by_the_floor_ends_with_a_floor_line() -> None:
    doc = document(base="5")
    result = period_of(doc, [line("2010-06-10", 1, "-3"), line("2010-07-01", 2, "-3")])
    # 5 − 3 − 3 = −1 → the floor, 0.0: a last line of +1
    assert ledger(result) == [
        ("rule", "-3.0", "2.0"),
        ("rule", "-3.0", "-1.0"),
        ("floor", "1.0", "0.0"),
    ]
    assert result.total == result.entries[-1].running_total == Decimal("0.0")


def test_a_veto_ends_the_ledger_at_the_floor() -> None:
    doc = document(floor="10")
    result = period_of(doc, [line("2010-06-10", 1, "2")], vetoes=["discipline", "discipline"])
    # 60 + 2 = 62, vetoed: the floor 10.0, a last line of −52
    assert ledger(result) == [("rule", "2.0", "62.0"), ("veto", "-52.0", "10.0")]
    assert result.entries[-1].vetoed_by == ("discipline",)
    assert result.vetoed_by == ["discipline"]
    assert result.total == Decimal("10.0")
    assert result.rule_lines == 1


def test_a_veto_with_nothing_else_is_one_line() -> None:
    result = period_of(document(), [], vetoes=["discipline"])
    assert ledger(result) == [("veto", "-60.0", "0.0")]
    assert result.rule_lines == 0


def test_an_adjustment_is_a_ledger_line_in_business_time_order() -> None:
    doc = document()
    lines = [line("2010-11-11", 3, "1"), line("2010-06-10", 1, "1")]
    result = period_of(doc, lines, [adjusted("2010-10-15", 2, "2.5")])
    # 10 Jun +1 → 61; 15 Oct adjustment +2.5 → 63.5; 11 Nov +1 → 64.5
    assert ledger(result) == [
        ("rule", "1.0", "61.0"),
        ("adjustment", "2.5", "63.5"),
        ("rule", "1.0", "64.5"),
    ]
    assert result.entries[1].adjustment is not None
    assert result.entries[1].adjustment.adjustment_id == "adj-2"
    assert result.total == Decimal("64.5")
    assert result.adjustments == Decimal("2.5")
    assert result.rule_lines == 2  # the adjustment is not a rule line


def test_an_adjustment_on_the_day_of_a_line_comes_after_the_days_lines_of_that_instant() -> None:
    # the line at 00:00 and the adjustment at 00:00 the same day: lines sort by event id and
    # rule, an adjustment's rule key sorts after every rule id
    midnight = replace(attended("2010-06-10", 5), occurred_at=at("2010-06-10"))
    same = replace(line("2010-06-10", 5, "1"), cause=midnight)
    result = period_of(document(), [same], [adjusted("2010-06-10", 5, "-1")])
    assert [e.kind for e in result.entries] == ["rule", "adjustment"]


def test_caps_count_in_business_time_order_and_mark_the_capped_line() -> None:
    doc = document(
        rules=[
            {
                "id": "present",
                "title": "出席",
                "on": "attendance.recorded",
                "when": {"status": "present"},
                "points": "2",
                "cap": "3",
            }
        ]
    )
    result = period_of(
        doc,
        [line("2010-07-01", 2, "2"), line("2010-06-10", 1, "2"), line("2010-08-01", 3, "2")],
    )
    # +2 → 62; +2, only 1 more under the cap of 3 → 63; +2, nothing more → 63
    # (a capped line's `counted` takes the cap's own exponent, "0" for "0.0": equal as numbers,
    # and the ledger view shows it at the regulation's scale)
    assert [(e.points, e.counted, e.capped, e.running_total) for e in result.entries] == [
        (Decimal("2.0"), Decimal("2.0"), False, Decimal("62.0")),
        (Decimal("2.0"), Decimal("1.0"), True, Decimal("63.0")),
        (Decimal("2.0"), Decimal("0.0"), True, Decimal("63.0")),
    ]
    assert result.by_rule == {"present": Decimal("3")}
    assert result.raw_by_rule == {"present": Decimal("6")}
    assert result.total == Decimal("63.0")
    assert result.rule_lines == 3  # capped lines are rule lines too


def test_a_superseded_line_counts_no_more() -> None:
    original = line("2010-06-10", 1, "-2", rule="absent")
    superseded = replace(original, superseded=True)
    result = period_of(document(), [superseded, line("2010-06-10", 2, "1")])
    assert ledger(result) == [("rule", "1.0", "61.0")]
    assert result.total == Decimal("61.0")


def test_the_rule_lines_exclude_adjustments_and_the_closing_line() -> None:
    doc = document(base="98")
    result = period_of(
        doc,
        [line("2010-06-10", 1, "1"), line("2010-07-01", 2, "1")],
        [adjusted("2010-06-20", 3, "1")],
    )
    # 98 + 1 + 1 (adjustment) + 1 = 101 → the ceiling
    assert [e.kind for e in result.entries] == ["rule", "adjustment", "rule", "ceiling"]
    assert result.rule_lines == 2


def test_the_ledger_ends_at_the_total_when_a_finer_regulation_gave_lines_earlier() -> None:
    """nde-b1 followed `uni` (precision 2: +0.25 a meeting) until 31 August and `b1-own`
    (precision 1) from 1 September, which governs the period: the total is kept at one decimal,
    and so is every running total, so that the ledger still ends at the total."""
    uni = document(
        "uni",
        precision=2,
        rules=[{"id": "q", "title": "q", "on": "attendance.recorded", "points": "0.25"}],
    )
    own = document("b1-own", precision=1)
    result = period_of(own, [line("2010-06-10", 1, "0.25", rule="q", doc=uni)])
    # 60.0 + 0.25 = 60.25 → 60.3 (half up), the total and the last running total
    assert result.total == Decimal("60.3")
    assert [(e.kind, e.counted, e.running_total) for e in result.entries] == [
        ("rule", Decimal("0.25"), Decimal("60.3"))
    ]
    view = period_view(result)
    assert view["total"] == view["ledger"][-1]["running_total"] == Decimal("60.3")
    assert str(view["ledger"][-1]["points"]) == "0.3"  # shown at the period's scale

    # two of them: 60.0 + 0.25 + 0.25 = 60.5; the first running total shows 60.3
    two = period_of(
        own,
        [line("2010-06-10", 1, "0.25", rule="q", doc=uni), line("2010-06-24", 2, "0.25", "q", uni)],
    )
    assert [e.running_total for e in two.entries] == [Decimal("60.3"), Decimal("60.5")]
    assert two.total == Decimal("60.5")


def test_an_adjustment_of_a_finer_regulation_under_whole_points_ends_at_the_total() -> None:
    """A +2.5 adjustment approved under a one-decimal regulation; the branch then adopts one of
    whole points for the period: 60 + 2.5 = 62.5 → 63 (half up), and the ledger says 63 too
    (the view used to round half to even: 62)."""
    whole = document("b1-own", precision=0)
    result = period_of(whole, [], [adjusted("2010-10-15", 1, "2.5")])
    assert result.total == Decimal("63")
    view = period_view(result)
    assert [str(e["running_total"]) for e in view["ledger"]] == ["63"]
    assert str(view["total"]) == "63"


def test_a_clamped_total_of_finer_lines_closes_from_the_running_total_shown() -> None:
    uni = document(
        "uni",
        precision=2,
        rules=[{"id": "q", "title": "q", "on": "attendance.recorded", "points": "40.25"}],
    )
    own = document("b1-own", precision=1)
    result = period_of(own, [line("2010-06-10", 1, "40.25", rule="q", doc=uni)])
    # 60.0 + 40.25 = 100.25, shown 100.3; the ceiling 100.0: a last line of −0.3
    assert [(e.kind, e.points, e.running_total) for e in result.entries] == [
        ("rule", Decimal("40.25"), Decimal("100.3")),
        ("ceiling", Decimal("-0.3"), Decimal("100.0")),
    ]


# -- properties -----------------------------------------------------------------------------------

DAYS = [date(2010, 5, 1) + timedelta(days=n) for n in range(245)]  # the period 2010

points_at = st.integers(min_value=-80, max_value=80).map(lambda n: Decimal(n).scaleb(-1))


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[RegulationDocument, list[Line], list[Adjustment], list[str]]:
    floor = draw(st.integers(min_value=0, max_value=40))
    ceiling = draw(st.integers(min_value=60, max_value=100))
    base = draw(st.integers(min_value=floor, max_value=ceiling))
    rule_ids = ["a", "b", "c"]
    caps = {r: draw(st.none() | st.integers(min_value=1, max_value=10)) for r in rule_ids}
    doc = document(
        base=str(base),
        floor=str(floor),
        ceiling=str(ceiling),
        rules=[
            {
                "id": r,
                "title": r,
                "on": "attendance.recorded",
                "points": "1",
                **({"cap": str(caps[r])} if caps[r] is not None else {}),
            }
            for r in rule_ids
        ],
    )
    count = draw(st.integers(min_value=0, max_value=25))
    lines = []
    for n in range(count):
        day = draw(st.sampled_from(DAYS)).isoformat()
        rule = draw(st.sampled_from(rule_ids))
        lines.append(line(day, n + 1, str(draw(points_at)), rule=rule, doc=doc))
    adjustments = [
        adjusted(draw(st.sampled_from(DAYS)).isoformat(), 1000 + n, str(p))
        for n, p in enumerate(draw(st.lists(points_at.filter(bool), max_size=5)))
    ]
    vetoes = draw(st.lists(st.just("discipline"), max_size=1))
    return doc, lines, adjustments, vetoes


@settings(max_examples=300, deadline=None)
@given(ledgers(), st.randoms(use_true_random=False))
def test_the_ledger_ends_at_the_total_whatever_the_order_of_the_inputs(
    drawn: tuple[RegulationDocument, list[Line], list[Adjustment], list[str]],
    shuffler: random.Random,
) -> None:
    doc, lines, adjustments, vetoes = drawn
    result = period_of(doc, lines, adjustments, vetoes)
    if result.entries:
        assert result.entries[-1].running_total == result.total
    else:
        assert result.total == doc.scaled(doc.base)
    assert doc.floor <= result.total <= doc.ceiling
    assert result.total == doc.scaled(result.total)  # one scale
    assert result.rule_lines == len(lines)
    # every running total is the one before plus what the line counted
    running = result.base
    for entry in result.entries:
        running += entry.counted
        assert entry.running_total == running

    shuffled_lines, shuffled_adjustments = list(lines), list(adjustments)
    shuffler.shuffle(shuffled_lines)
    shuffler.shuffle(shuffled_adjustments)
    again = period_of(doc, shuffled_lines, shuffled_adjustments, vetoes)
    assert again.total == result.total
    assert again.entries == result.entries
    assert (again.by_rule, again.raw_by_rule) == (result.by_rule, result.raw_by_rule)
