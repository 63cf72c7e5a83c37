"""Scoring's deciders (services/scoring/domain/adjustment.py, period.py, publishing.py), given /
when / then: four-eyes adjustments dated in an open period, closing and reopening a branch's
period, publishing versions of a regulation a school owns, adopting a regulation from a date.

No I/O: the facts the service layer looks up (the committee, the member's branch, the period
of the effective date, whether it is closed) are given by hand."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from contracts.envelope import EventPayload
from contracts.events import (
    AdjustmentRequested,
    AssessmentClosed,
    AssessmentReopened,
    RegulationAdopted,
    RegulationPublished,
    ScoreAdjusted,
)
from contracts.events.score import AssessmentResult
from services.scoring.domain import adjustment, period, publishing
from services.scoring.domain.adjustment import (
    AdjustmentState,
    ApproveAdjustment,
    BranchFacts,
    RequestAdjustment,
)
from services.scoring.domain.assessment import TableRow
from services.scoring.domain.publishing import Adopt, AdoptionFacts, Publication, Publish
from services.scoring.domain.regulation import Period, RegulationDocument
from tests.support.gwt import event_id, recorded, then_refused

BRANCH = "nde-b1"
YEAR_2010 = Period(id="2010", starts_on=date(2010, 5, 1), ends_on=date(2010, 12, 31))


def document(**changes: Any) -> RegulationDocument:
    """A small regulation; `changes` replace its fields."""
    raw: dict[str, Any] = {
        "id": "nde-2010",
        "version": 1,
        "title": {"zh": "国防教育学院学生党员管理规定", "en": "NDE regulation"},
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
        "grades": [
            {"grade": "excellent", "min": "90", "max_share": "1/3"},
            {"grade": "qualified", "min": "80"},
            {"grade": "unqualified"},
        ],
        "classification": {"excellent": "excellent", "unqualified": "lagging"},
    }
    raw.update(changes)
    return RegulationDocument.model_validate(raw)


# -- adjustments ----------------------------------------------------------------------------------


def facts(
    *,
    committee: Sequence[str] = ("m1", "m2"),
    member_branch: str | None = BRANCH,
    found: Period | None = YEAR_2010,
    closed: bool = False,
    precision: int = 1,
) -> BranchFacts:
    return BranchFacts(
        committee=frozenset(committee),
        member_branch=member_branch,
        period=found,
        period_closed=closed,
        precision=precision,
        regulation_id="nde-2010",
    )


def ask(**changes: Any) -> RequestAdjustment:
    fields: dict[str, Any] = {
        "adjustment_id": "adj-1",
        "member_id": "m3",
        "branch_id": BRANCH,
        "points": Decimal("2"),
        "reason": "抗洪表彰",
        "effective_on": date(2010, 10, 15),
    }
    fields.update(changes)
    return RequestAdjustment(**fields)


def adjustment_stream(*events: EventPayload) -> AdjustmentState | None:
    """The adjustment's stream folded as the service folds it, each event with its id."""
    state = adjustment.initial_state()
    for eid, event in recorded(*events):
        state = adjustment.evolve(state, event, eid)
    return state


def requested(by: str = "m1", **changes: Any) -> AdjustmentRequested:
    fields: dict[str, Any] = {
        "adjustment_id": "adj-1",
        "member_id": "m3",
        "branch_id": BRANCH,
        "period_id": "2010",
        "points": Decimal("2"),
        "reason": "抗洪表彰",
        "requested_by": by,
        "effective_on": date(2010, 10, 15),
    }
    fields.update(changes)
    return AdjustmentRequested(**fields)


def test_a_committee_member_asks_for_an_adjustment_in_the_period_of_its_day() -> None:
    events = adjustment.decide_request(ask(), None, facts(), "m1")
    assert events == [
        AdjustmentRequested(
            adjustment_id="adj-1",
            member_id="m3",
            branch_id=BRANCH,
            period_id="2010",  # the period that contains 15 October 2010
            points=Decimal("2"),
            reason="抗洪表彰",
            requested_by="m1",
            effective_on=date(2010, 10, 15),
        )
    ]


@pytest.mark.parametrize("requester", ["m9", None])
def test_only_a_committee_member_asks(requester: str | None) -> None:
    refused = then_refused(
        lambda: adjustment.decide_request(ask(), None, facts(), requester),
        "not_on_committee",
        "requested_by",
    )
    assert not refused.invalid


def test_an_adjustment_is_asked_for_once() -> None:
    state = adjustment_stream(requested())
    then_refused(
        lambda: adjustment.decide_request(ask(), state, facts(), "m1"),
        "adjustment_exists",
        "adjustment_id",
    )


def test_zero_points_change_nothing() -> None:
    then_refused(
        lambda: adjustment.decide_request(ask(points=Decimal("0")), None, facts(), "m1"),
        "adjustment_zero",
        "points",
    )


@pytest.mark.parametrize(
    ("points", "precision"),
    [("1.25", 1), ("0.5", 0), ("-0.05", 1)],
)
def test_points_finer_than_the_regulation_keeps_them_are_invalid(
    points: str, precision: int
) -> None:
    refused = then_refused(
        lambda: adjustment.decide_request(
            ask(points=Decimal(points)), None, facts(precision=precision), "m1"
        ),
        "points_precision",
        "points",
    )
    assert refused.invalid  # 422: no state of things makes 1.25 a one-decimal number


@pytest.mark.parametrize(("points", "precision"), [("1.50", 1), ("2.0", 0), ("-0.25", 2)])
def test_trailing_zeros_are_not_finer(points: str, precision: int) -> None:
    # 1.50 is 1.5 at one decimal; 2.0 is 2 at none
    [event] = adjustment.decide_request(
        ask(points=Decimal(points)), None, facts(precision=precision), "m1"
    )
    assert isinstance(event, AdjustmentRequested)
    assert event.points == Decimal(points)


def test_the_member_must_belong_to_the_branch() -> None:
    refused = then_refused(
        lambda: adjustment.decide_request(ask(), None, facts(member_branch="nde-b2"), "m1"),
        "member_not_in_branch",
        "member_id",
    )
    assert not refused.invalid
    then_refused(
        lambda: adjustment.decide_request(ask(), None, facts(member_branch=None), "m1"),
        "member_not_in_branch",
        "member_id",
    )


def test_effective_on_outside_every_period_is_invalid() -> None:
    refused = then_refused(
        lambda: adjustment.decide_request(
            ask(effective_on=date(2010, 3, 1)), None, facts(found=None), "m1"
        ),
        "effective_on_outside_periods",
        "effective_on",
    )
    assert refused.invalid
    assert "2010-03-01" in refused.message


def test_effective_on_in_a_closed_period_is_invalid() -> None:
    refused = then_refused(
        lambda: adjustment.decide_request(ask(), None, facts(closed=True), "m1"),
        "effective_on_in_closed_period",
        "effective_on",
    )
    assert refused.invalid


def test_a_period_given_must_be_the_period_of_effective_on() -> None:
    refused = then_refused(
        lambda: adjustment.decide_request(ask(period_id="2011-h1"), None, facts(), "m1"),
        "period_mismatch",
        "period_id",
    )
    assert refused.invalid
    # the same period, named, is accepted
    [event] = adjustment.decide_request(ask(period_id="2010"), None, facts(), "m1")
    assert isinstance(event, AdjustmentRequested)
    assert event.period_id == "2010"


def test_refusals_come_in_the_order_a_user_can_fix_them() -> None:
    # not on the committee wins over everything else that is wrong
    then_refused(
        lambda: adjustment.decide_request(ask(points=Decimal("0")), None, facts(found=None), "m9"),
        "not_on_committee",
        "requested_by",
    )
    # zero points before the period
    then_refused(
        lambda: adjustment.decide_request(ask(points=Decimal("0")), None, facts(found=None), "m1"),
        "adjustment_zero",
        "points",
    )


def test_another_committee_member_approves_with_the_date_and_the_request_cited() -> None:
    state = adjustment_stream(requested(by="m1"))  # the request is event 1
    events = adjustment.decide_approval(ApproveAdjustment("adj-1", BRANCH), state, facts(), "m2")
    assert events == [
        ScoreAdjusted(
            adjustment_id="adj-1",
            member_id="m3",
            branch_id=BRANCH,
            period_id="2010",
            points=Decimal("2"),
            reason="抗洪表彰",
            requested_by="m1",
            approved_by="m2",
            effective_on=date(2010, 10, 15),
            requested_event_id=event_id(1),
        )
    ]


def test_four_eyes_the_one_who_asked_does_not_approve() -> None:
    state = adjustment_stream(requested(by="m1"))
    then_refused(
        lambda: adjustment.decide_approval(
            ApproveAdjustment("adj-1", BRANCH), state, facts(), "m1"
        ),
        "four_eyes",
        "approved_by",
    )


def test_only_a_committee_member_approves() -> None:
    state = adjustment_stream(requested(by="m1"))
    then_refused(
        lambda: adjustment.decide_approval(
            ApproveAdjustment("adj-1", BRANCH), state, facts(), "m9"
        ),
        "not_on_committee",
        "approved_by",
    )


def test_an_adjustment_is_approved_once() -> None:
    first = adjustment_stream(requested(by="m1"))
    [approval] = adjustment.decide_approval(
        ApproveAdjustment("adj-1", BRANCH), first, facts(), "m2"
    )
    state = adjustment_stream(requested(by="m1"), approval)
    assert state is not None
    assert state.approved
    then_refused(
        lambda: adjustment.decide_approval(
            ApproveAdjustment("adj-1", BRANCH), state, facts(committee=("m1", "m2", "m4")), "m4"
        ),
        "adjustment_approved",
    )


def test_an_unknown_adjustment_or_one_of_another_branch_is_not_approved() -> None:
    then_refused(
        lambda: adjustment.decide_approval(ApproveAdjustment("adj-9", BRANCH), None, facts(), "m2"),
        "adjustment_unknown",
    )
    state = adjustment_stream(requested(by="m1"))
    then_refused(
        lambda: adjustment.decide_approval(
            ApproveAdjustment("adj-1", "nde-b2"), state, facts(), "m2"
        ),
        "adjustment_unknown",
    )


def test_a_period_closed_after_the_request_stops_the_approval() -> None:
    state = adjustment_stream(requested(by="m1"))
    refused = then_refused(
        lambda: adjustment.decide_approval(
            ApproveAdjustment("adj-1", BRANCH), state, facts(closed=True), "m2"
        ),
        "period_closed",
    )
    assert not refused.invalid  # 409: reopening the period makes it possible


def test_a_request_recorded_before_adjustments_were_dated_still_folds() -> None:
    state = adjustment_stream(requested(effective_on=None))
    [approval] = adjustment.decide_approval(
        ApproveAdjustment("adj-1", BRANCH), state, facts(), "m2"
    )
    assert isinstance(approval, ScoreAdjusted)
    assert approval.effective_on is None
    assert approval.requested_event_id == event_id(1)


# -- closing and reopening a period ---------------------------------------------------------------

CLOSED_AT = datetime(2010, 12, 31, 15, 59, 59, tzinfo=UTC)


def row(member: str, total: str, rank: int, grade: str | None, classification: str) -> TableRow:
    return TableRow(member, Decimal(total), rank, grade, classification, grade is None)


TABLE = [
    row("m1", "91.50", 1, "excellent", "excellent"),
    row("m2", "84", 2, "qualified", "neither"),
    row("p1", "70.0", 3, None, "neither"),
    row("m3", "55", 4, "unqualified", "lagging"),
]


def period_stream(*events: EventPayload) -> period.PeriodState:
    state = period.initial_state()
    for event in events:
        state = period.evolve(state, event)
    return state


def close(state: period.PeriodState, precision: int = 1) -> AssessmentClosed:
    [event] = period.decide_close(
        period.ClosePeriod(BRANCH, "2010", CLOSED_AT),
        state,
        period.Results(document(precision=precision), YEAR_2010, TABLE),
    )
    assert isinstance(event, AssessmentClosed)
    return event


def test_closing_publishes_the_table_at_the_regulation_scale() -> None:
    event = close(period_stream())
    assert (event.revision, event.regulation_id, event.regulation_version) == (1, "nde-2010", 1)
    assert event.closed_at == CLOSED_AT
    # precision 1: 91.50 → 91.5, 84 → 84.0, 70.0 stays, 55 → 55.0 (one scale, as shown)
    assert event.results == [
        AssessmentResult(member_id="m1", total=Decimal("91.5"), rank=1, grade="excellent"),
        AssessmentResult(member_id="m2", total=Decimal("84.0"), rank=2, grade="qualified"),
        AssessmentResult(member_id="p1", total=Decimal("70.0"), rank=3, grade=None),
        AssessmentResult(member_id="m3", total=Decimal("55.0"), rank=4, grade="unqualified"),
    ]
    assert [str(r.total) for r in event.results] == ["91.5", "84.0", "70.0", "55.0"]
    assert (event.excellent, event.lagging) == (["m1"], ["m3"])
    assert (event.period_starts_on, event.period_ends_on) == (date(2010, 5, 1), date(2010, 12, 31))


def test_closing_at_precision_zero_shows_whole_points() -> None:
    # 91.50 → 92 (half up), 84 → 84, 70.0 → 70, 55 → 55
    event = close(period_stream(), precision=0)
    assert [str(r.total) for r in event.results] == ["92", "84", "70", "55"]


def test_a_closed_period_is_not_closed_again() -> None:
    first = close(period_stream())
    then_refused(lambda: close(period_stream(first)), "period_closed")


def test_reopening_names_the_revision_and_the_next_close_is_the_next_revision() -> None:
    first = close(period_stream())
    events = period.decide_reopen(period.ReopenPeriod(BRANCH, "2010", "补录"), period_stream(first))
    assert events == [
        AssessmentReopened(branch_id=BRANCH, period_id="2010", revision=1, reason="补录")
    ]
    [reopened] = events
    second = close(period_stream(first, reopened))
    assert second.revision == 2
    [again] = period.decide_reopen(
        period.ReopenPeriod(BRANCH, "2010", "再次补录"), period_stream(first, reopened, second)
    )
    assert isinstance(again, AssessmentReopened)
    assert again.revision == 2


def test_an_open_period_is_not_reopened() -> None:
    then_refused(
        lambda: period.decide_reopen(period.ReopenPeriod(BRANCH, "2010", "?"), period_stream()),
        "period_open",
    )
    first = close(period_stream())
    [reopened] = period.decide_reopen(
        period.ReopenPeriod(BRANCH, "2010", "补录"), period_stream(first)
    )
    then_refused(
        lambda: period.decide_reopen(
            period.ReopenPeriod(BRANCH, "2010", "?"), period_stream(first, reopened)
        ),
        "period_open",
    )


# -- publishing -----------------------------------------------------------------------------------


def publication(*events: RegulationPublished) -> Publication:
    state = publishing.initial_publication()
    for event in events:
        state = publishing.evolve_publication(state, event)
    return state


def publish(
    state: Publication, version: int = 1, school: str | None = None, rid: str = "hist-2012"
) -> RegulationPublished:
    [event] = publishing.decide_publish(
        Publish(document(id=rid, version=version), date(2012, 8, 20), school), state
    )
    assert isinstance(event, RegulationPublished)
    return event


def test_a_school_admin_publishes_the_first_version_and_the_school_owns_it() -> None:
    event = publish(publication(), school="hist")
    assert (event.regulation_id, event.version, event.owner_unit_id) == ("hist-2012", 1, "hist")
    assert event.published_on == date(2012, 8, 20)
    assert event.effective_from == date(2010, 5, 1)
    assert event.title == "国防教育学院学生党员管理规定 / NDE regulation"
    assert event.document["precision"] == 1
    assert publication(event) == Publication((1,), "hist")


def test_versions_follow_one_another() -> None:
    first = publish(publication(), school="hist")
    then_refused(
        lambda: publish(publication(), version=2, school="hist"), "regulation_version", "version"
    )
    then_refused(
        lambda: publish(publication(first), version=1, school="hist"),
        "regulation_version",
        "version",
    )
    then_refused(
        lambda: publish(publication(first), version=3, school="hist"),
        "regulation_version",
        "version",
    )
    second = publish(publication(first), version=2, school="hist")
    assert second.version == 2
    assert second.owner_unit_id == "hist"


def test_another_schools_admin_does_not_publish_a_schools_regulation() -> None:
    first = publish(publication(), school="hist")
    refused = then_refused(
        lambda: publish(publication(first), version=2, school="nde"), "regulation_owned", "id"
    )
    assert "school hist" in refused.message
    # ownership is checked before the version: a wrong version number is not the point
    then_refused(
        lambda: publish(publication(first), version=7, school="nde"), "regulation_owned", "id"
    )


def test_the_university_admin_publishes_any_and_the_owner_stays() -> None:
    first = publish(publication(), school="hist")
    second = publish(publication(first), version=2, school=None)
    assert second.owner_unit_id == "hist"  # the school still owns it
    assert publication(first, second) == Publication((1, 2), "hist")
    # and the school publishes version 3 after the university's version 2
    third = publish(publication(first, second), version=3, school="hist")
    assert third.owner_unit_id == "hist"


def test_a_school_admin_does_not_publish_the_universitys_regulation() -> None:
    university = publish(publication(), school=None, rid="nde-2010")
    assert university.owner_unit_id is None
    refused = then_refused(
        lambda: publish(publication(university), version=2, school="hist", rid="nde-2010"),
        "regulation_owned",
        "id",
    )
    assert "the university" in refused.message
    # the university publishes its next version
    assert publish(publication(university), version=2, rid="nde-2010").owner_unit_id is None


# -- adopting -------------------------------------------------------------------------------------


def adopt(
    unit_kind: str | None = "school",
    version_dates: Sequence[date] = (date(2012, 9, 1),),
    following_then: str = "nde-2010",
    closed_after: Sequence[tuple[str, str]] = (),
    effective_from: date = date(2012, 9, 1),
) -> Sequence[EventPayload]:
    return publishing.decide_adoption(
        Adopt("hist", "hist-2012", effective_from, date(2012, 8, 25), "学院办法"),
        AdoptionFacts(unit_kind, version_dates, following_then, closed_after),
    )


def test_a_school_adopts_a_regulation_from_a_date() -> None:
    assert adopt() == [
        RegulationAdopted(
            unit_id="hist",
            unit_kind="school",
            regulation_id="hist-2012",
            effective_from=date(2012, 9, 1),
            decided_on=date(2012, 8, 25),
            reason="学院办法",
        )
    ]
    [event] = adopt(unit_kind="branch")
    assert isinstance(event, RegulationAdopted)
    assert event.unit_kind == "branch"


@pytest.mark.parametrize("kind", [None, "group", "university"])
def test_only_a_known_school_or_branch_adopts(kind: str | None) -> None:
    then_refused(lambda: adopt(unit_kind=kind), "unit_not_school_or_branch", "unit_id")


def test_a_regulation_not_published_is_not_adopted() -> None:
    then_refused(lambda: adopt(version_dates=()), "regulation_unknown", "regulation_id")


def test_a_regulation_is_not_adopted_before_its_first_version_takes_effect() -> None:
    # the first version takes effect on 1 September; a later version's date does not matter
    refused = then_refused(
        lambda: adopt(
            version_dates=(date(2013, 2, 1), date(2012, 9, 1)), effective_from=date(2012, 8, 31)
        ),
        "regulation_not_in_force",
        "effective_from",
    )
    assert "2012-09-01" in refused.message
    # on the day itself it is in force
    assert len(adopt(version_dates=(date(2013, 2, 1), date(2012, 9, 1)))) == 1


def test_adopting_what_the_unit_follows_then_changes_nothing() -> None:
    then_refused(lambda: adopt(following_then="hist-2012"), "nothing_changes")


def test_a_closed_period_that_would_be_rescored_stops_the_adoption() -> None:
    refused = then_refused(
        lambda: adopt(closed_after=[("hist-b1", "2012-autumn"), ("hist-b2", "2012-autumn")]),
        "period_closed",
        "effective_from",
    )
    assert "hist-b1" in refused.message
    assert "2012-autumn" in refused.message
    assert not refused.invalid
