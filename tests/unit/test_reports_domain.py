"""Reports (services/activities/domain/reports.py), given / when / then: obligations planned from
the members and the cadence, submissions on time or late by the university's calendar, reviews
and re-reviews, withdrawals."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.envelope import EventPayload
from contracts.events import ReportRequired, ReportReviewed, ReportSubmitted, ReportWithdrawn
from runtime.business_time import BusinessCalendar
from services.activities.domain import reports
from services.activities.domain.reports import Cadence, Reporter, ReviewReport
from tests.support.gwt import event_id, recorded, then_refused

BEIJING = ZoneInfo("Asia/Shanghai")
BRANCH = "nde-b1"


def _no_clock() -> datetime:
    raise AssertionError("the domain needs no clock")


#: What the service uses to turn an instant into the university's date (`local_day`).
CALENDAR = BusinessCalendar(_no_clock, BEIJING)

# Situation reports every four weeks from Monday 10 May 2010.
EVERY_FOUR_WEEKS = Cadence(every_weeks=4, starts_on=date(2010, 5, 10))


def reporter(
    member_id: str = "m1",
    *,
    enrolled_on: date = date(2010, 5, 4),
    transferred_on: date | None = None,
    has_space: bool = False,
    probation_started_on: date | None = None,
    probationary_until: date | None = None,
) -> Reporter:
    return Reporter(
        member_id=member_id,
        enrolled_on=enrolled_on,
        transferred_on=transferred_on,
        has_space=has_space,
        probationary_until=probationary_until,
        probation_started_on=probation_started_on,
    )


def situation(member: str, due: date, week: str) -> ReportRequired:
    return ReportRequired(
        obligation_id=f"situation-{member}-{due.isoformat()}",
        member_id=member,
        kind="situation",
        branch_id=BRANCH,
        due_on=due,
        period_label=week,
    )


def thought(member: str, label: str, due: date) -> ReportRequired:
    return ReportRequired(
        obligation_id=f"thought-{member}-{label}",
        member_id=member,
        kind="thought",
        branch_id=BRANCH,
        due_on=due,
        period_label=label,
    )


# -- plan -----------------------------------------------------------------------------------------


def test_members_with_a_responsibility_space_report_at_the_cadence() -> None:
    planned = reports.plan(
        BRANCH,
        [reporter("m2"), reporter("m1", has_space=True)],
        EVERY_FOUR_WEEKS,
        date(2010, 6, 30),
    )
    # 10 May (ISO week 19), + 4 weeks = 7 June (week 23); 5 July is after 30 June.
    assert planned == [
        situation("m1", date(2010, 5, 10), "2010-W19"),
        situation("m1", date(2010, 6, 7), "2010-W23"),
    ]


def test_without_a_cadence_there_are_no_situation_reports() -> None:
    assert reports.plan(BRANCH, [reporter(has_space=True)], None, date(2010, 12, 31)) == []


def test_a_member_reports_only_while_in_the_branch() -> None:
    joined_late = reporter("m1", has_space=True, enrolled_on=date(2010, 5, 20))
    left = reporter("m2", has_space=True, transferred_on=date(2010, 6, 7))
    assert reports.plan(BRANCH, [joined_late, left], EVERY_FOUR_WEEKS, date(2010, 6, 30)) == [
        situation("m1", date(2010, 6, 7), "2010-W23"),  # enrolled after 10 May
        situation("m2", date(2010, 5, 10), "2010-W19"),  # gone on 7 June itself
    ]


def test_a_probationary_member_writes_a_thought_report_each_quarter() -> None:
    admitted = reporter(probation_started_on=date(2010, 4, 20))
    assert reports.plan(BRANCH, [admitted], None, date(2011, 4, 30)) == [
        thought("m1", "2010-Q2", date(2010, 6, 30)),
        thought("m1", "2010-Q3", date(2010, 9, 30)),
        thought("m1", "2010-Q4", date(2010, 12, 31)),
        thought("m1", "2011-Q1", date(2011, 3, 31)),
        # 2011-Q2 falls due on 30 June 2011, after 30 April
    ]


def test_a_converted_member_owes_no_thought_report_falling_due_after_conversion() -> None:
    converted = reporter(
        probation_started_on=date(2010, 4, 20), probationary_until=date(2010, 11, 15)
    )
    assert [r.period_label for r in reports.plan(BRANCH, [converted], None, date(2011, 4, 30))] == [
        "2010-Q2",
        "2010-Q3",
    ]
    on_the_day = reporter(
        probation_started_on=date(2010, 4, 20), probationary_until=date(2010, 9, 30)
    )
    # full from 30 September: the 2010-Q3 report due that day is no longer owed
    assert [
        r.period_label for r in reports.plan(BRANCH, [on_the_day], None, date(2011, 4, 30))
    ] == ["2010-Q2"]


def test_quarters_end_on_the_last_day_of_march_june_september_and_december() -> None:
    assert list(reports.quarter_ends(date(2010, 11, 15), date(2011, 6, 30))) == [
        ("2010-Q4", date(2010, 12, 31)),
        ("2011-Q1", date(2011, 3, 31)),
        ("2011-Q2", date(2011, 6, 30)),
    ]


reporters = st.lists(
    st.builds(
        reporter,
        st.sampled_from(["m1", "m2", "m3", "m4"]),
        enrolled_on=st.dates(date(2010, 1, 1), date(2011, 6, 30)),
        transferred_on=st.none() | st.dates(date(2010, 1, 1), date(2012, 6, 30)),
        has_space=st.booleans(),
        probation_started_on=st.none() | st.dates(date(2009, 6, 1), date(2011, 6, 30)),
        probationary_until=st.none() | st.dates(date(2010, 1, 1), date(2012, 6, 30)),
    ),
    max_size=4,
    unique_by=lambda r: r.member_id,
)


@settings(max_examples=150, deadline=None)
@given(
    members=reporters,
    cadence=st.none()
    | st.builds(Cadence, st.integers(1, 26), st.dates(date(2010, 1, 1), date(2011, 1, 1))),
    first=st.dates(date(2010, 1, 1), date(2012, 6, 30)),
    second=st.dates(date(2010, 1, 1), date(2012, 6, 30)),
)
def test_planning_again_gives_the_same_ids_and_planning_further_only_adds(
    members: list[Reporter], cadence: Cadence | None, first: date, second: date
) -> None:
    earlier, later = sorted((first, second))
    once = reports.plan(BRANCH, members, cadence, earlier)
    assert reports.plan(BRANCH, list(reversed(members)), cadence, earlier) == once
    ids = [r.obligation_id for r in once]
    assert len(set(ids)) == len(ids)
    further = reports.plan(BRANCH, members, cadence, later)
    assert [r for r in further if r.due_on <= earlier] == once
    assert all(r.due_on <= later for r in further)


def test_a_conversion_on_the_quarters_last_day_withdraws_that_quarters_thought_report() -> None:
    # given: a probationary member's thought reports planned through 2010, before the
    # conversion was known
    admitted = reporter(probation_started_on=date(2010, 1, 10), enrolled_on=date(2010, 1, 15))
    owed = reports.plan(BRANCH, [admitted], None, date(2010, 12, 31))
    assert [(r.obligation_id, r.due_on) for r in owed] == [
        ("thought-m1-2010-Q1", date(2010, 3, 31)),
        ("thought-m1-2010-Q2", date(2010, 6, 30)),
        ("thought-m1-2010-Q3", date(2010, 9, 30)),
        ("thought-m1-2010-Q4", date(2010, 12, 31)),
    ]
    # when: converted on 30 September 2010, the last day of Q3
    pending = [(r.obligation_id, r.due_on) for r in owed]
    withdrawn = reports.no_longer_owed(pending, date(2010, 9, 30))
    # then: Q3 (due that very day) and Q4 are withdrawn, as the planner would not plan them
    assert withdrawn == ["thought-m1-2010-Q3", "thought-m1-2010-Q4"]
    converted = replace(admitted, probationary_until=date(2010, 9, 30))
    assert [
        r.obligation_id for r in reports.plan(BRANCH, [converted], None, date(2010, 12, 31))
    ] == [
        "thought-m1-2010-Q1",
        "thought-m1-2010-Q2",
    ]
    # converted the day after: Q3 was owed, only Q4 goes
    assert reports.no_longer_owed(pending, date(2010, 10, 1)) == ["thought-m1-2010-Q4"]


def test_a_transfer_on_a_due_date_withdraws_what_falls_due_that_day() -> None:
    # given: situation reports on 10 May, 7 June and 5 July 2010; when: transferred out 7 June
    pending = [
        ("situation-m1-2010-07-05", date(2010, 7, 5)),
        ("situation-m1-2010-05-10", date(2010, 5, 10)),
        ("situation-m1-2010-06-07", date(2010, 6, 7)),
    ]
    # then: the one due that day and the later one, in id order
    assert reports.no_longer_owed(pending, date(2010, 6, 7)) == [
        "situation-m1-2010-06-07",
        "situation-m1-2010-07-05",
    ]


@settings(max_examples=200, deadline=None)
@given(members=reporters, ended_on=st.dates(date(2010, 1, 1), date(2012, 6, 30)))
def test_what_a_conversion_or_a_transfer_withdraws_is_what_the_planner_would_not_plan(
    members: list[Reporter], ended_on: date
) -> None:
    through = date(2012, 6, 30)
    for member in members:
        before = replace(member, probationary_until=None, transferred_on=None)
        planned = reports.plan(BRANCH, [before], EVERY_FOUR_WEEKS, through)
        pending = [(r.obligation_id, r.due_on) for r in planned]
        # converted on `ended_on`: the thought reports the planner keeps are those not withdrawn
        thoughts = [(o, d) for o, d in pending if o.startswith("thought-")]
        converted = replace(before, probationary_until=ended_on)
        assert sorted(
            r.obligation_id
            for r in reports.plan(BRANCH, [converted], EVERY_FOUR_WEEKS, through)
            if r.kind == "thought"
        ) == sorted({o for o, _ in thoughts} - set(reports.no_longer_owed(thoughts, ended_on)))
        # transferred out on `ended_on`: every report
        left = replace(before, transferred_on=ended_on)
        assert sorted(
            r.obligation_id for r in reports.plan(BRANCH, [left], EVERY_FOUR_WEEKS, through)
        ) == sorted({o for o, _ in pending} - set(reports.no_longer_owed(pending, ended_on)))


# -- submit ---------------------------------------------------------------------------------------

# A thought report due Wednesday 30 June 2010.
REQUIRED = thought("m1", "2010-Q2", date(2010, 6, 30))


def submit(at: datetime, *log: EventPayload) -> list[EventPayload]:
    """When: handed in at `at`, dated by the university's calendar as the service does."""
    state = reports.fold(recorded(*(log or (REQUIRED,))))
    return reports.submit(state, REQUIRED.obligation_id, at, CALENDAR.day_of(at))


def submitted(at: datetime, days_late: int) -> ReportSubmitted:
    return ReportSubmitted(
        obligation_id=REQUIRED.obligation_id,
        member_id="m1",
        kind="thought",
        branch_id=BRANCH,
        due_on=date(2010, 6, 30),
        submitted_at=at,
        on_time=days_late == 0,
        days_late=days_late,
    )


def test_a_report_handed_in_late_in_the_evening_of_its_due_date_is_on_time() -> None:
    # 30 June 23:30 Beijing = 30 June 15:30 UTC → on the due date, on time
    at = datetime(2010, 6, 30, 23, 30, tzinfo=BEIJING)
    assert at == datetime(2010, 6, 30, 15, 30, tzinfo=UTC)
    assert submit(at) == [submitted(at, 0)]


def test_just_after_midnight_in_beijing_is_a_day_late_though_utc_is_still_the_due_date() -> None:
    # 1 July 00:30 Beijing = 30 June 16:30 UTC → the next day in the university: 1 day late
    at = datetime(2010, 6, 30, 16, 30, tzinfo=UTC)
    assert at.date() == date(2010, 6, 30)
    assert submit(at) == [submitted(at, 1)]


def test_days_late_count_from_the_due_date() -> None:
    # due 2010-06-30, submitted 2010-07-02 00:30+08:00 → 2 days late
    at = datetime(2010, 7, 2, 0, 30, tzinfo=BEIJING)
    assert submit(at) == [submitted(at, 2)]


def test_a_report_handed_in_early_is_on_time() -> None:
    at = datetime(2010, 6, 1, 9, 0, tzinfo=BEIJING)
    assert submit(at) == [submitted(at, 0)]


def test_a_report_is_submitted_once() -> None:
    first = datetime(2010, 6, 29, 20, 0, tzinfo=BEIJING)
    then_refused(
        lambda: submit(first + timedelta(days=1), REQUIRED, submitted(first, 0)),
        "report_submitted",
    )


def test_nothing_can_be_submitted_to_an_unknown_or_withdrawn_obligation() -> None:
    at = datetime(2010, 6, 29, 20, 0, tzinfo=BEIJING)
    then_refused(
        lambda: reports.submit(None, "thought-m9-2010-Q2", at, date(2010, 6, 29)),
        "obligation_unknown",
    )
    [withdrawal] = reports.withdraw(reports.fold(recorded(REQUIRED)), "converted")
    then_refused(lambda: submit(at, REQUIRED, withdrawal), "obligation_withdrawn")


# -- review ---------------------------------------------------------------------------------------

HANDED_IN = datetime(2010, 7, 1, 0, 30, tzinfo=BEIJING)  # one day late


def review(
    grade: str, at: datetime, *log: EventPayload, reviewer: str = "sec-b1"
) -> list[EventPayload]:
    state = reports.fold(recorded(*log))
    return reports.review(ReviewReport(grade=grade), state, REQUIRED.obligation_id, reviewer, at)


def reviewed(grade: str, at: datetime, number: int, supersedes: int | None) -> ReportReviewed:
    return ReportReviewed(
        obligation_id=REQUIRED.obligation_id,
        member_id="m1",
        kind="thought",
        branch_id=BRANCH,
        grade=grade,
        reviewer_id="sec-b1",
        reviewed_at=at,
        on_time=False,
        review_number=number,
        supersedes_event_id=None if supersedes is None else event_id(supersedes),
    )


def test_a_review_grades_the_submission_and_carries_whether_it_was_on_time() -> None:
    at = datetime(2010, 7, 5, 10, 0, tzinfo=BEIJING)
    log = (REQUIRED, submitted(HANDED_IN, 1))
    assert review("good", at, *log) == [reviewed("good", at, 1, None)]


def test_a_re_review_supersedes_the_earlier_one() -> None:
    first_at = datetime(2010, 7, 5, 10, 0, tzinfo=BEIJING)
    again_at = datetime(2010, 7, 9, 10, 0, tzinfo=BEIJING)
    # given: required (event 1), submitted (event 2), reviewed (event 3)
    log = (REQUIRED, submitted(HANDED_IN, 1), reviewed("pass", first_at, 1, None))
    assert review("good", again_at, *log) == [reviewed("good", again_at, 2, supersedes=3)]
    # and a third supersedes the second (event 4)
    log4 = (*log, reviewed("good", again_at, 2, supersedes=3))
    assert review("excellent", again_at, *log4) == [
        reviewed("excellent", again_at, 3, supersedes=4)
    ]


def test_a_report_not_yet_handed_in_cannot_be_reviewed() -> None:
    at = datetime(2010, 7, 5, 10, 0, tzinfo=BEIJING)
    then_refused(lambda: review("good", at, REQUIRED), "report_not_submitted")


def test_a_review_cannot_come_before_the_submission() -> None:
    before = HANDED_IN - timedelta(minutes=1)
    then_refused(
        lambda: review("good", before, REQUIRED, submitted(HANDED_IN, 1)),
        "reviewed_before_submission",
        "reviewed_at",
    )


def test_an_unknown_obligation_cannot_be_reviewed() -> None:
    at = datetime(2010, 7, 5, 10, 0, tzinfo=BEIJING)
    then_refused(lambda: review("good", at), "obligation_unknown")


# -- withdraw -------------------------------------------------------------------------------------


def test_an_open_obligation_is_withdrawn_with_its_reason() -> None:
    state = reports.fold(recorded(REQUIRED))
    assert reports.withdraw(state, "converted to full member on 2010-06-20") == [
        ReportWithdrawn(
            obligation_id=REQUIRED.obligation_id,
            member_id="m1",
            kind="thought",
            branch_id=BRANCH,
            due_on=date(2010, 6, 30),
            reason="converted to full member on 2010-06-20",
        )
    ]


def test_a_submitted_withdrawn_or_unknown_obligation_is_not_withdrawn() -> None:
    handed_in = reports.fold(recorded(REQUIRED, submitted(HANDED_IN, 1)))
    assert reports.withdraw(handed_in, "converted") == []
    [withdrawal] = reports.withdraw(reports.fold(recorded(REQUIRED)), "converted")
    assert reports.withdraw(reports.fold(recorded(REQUIRED, withdrawal)), "again") == []
    assert reports.withdraw(None, "converted") == []
