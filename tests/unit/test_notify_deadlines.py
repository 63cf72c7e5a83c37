"""Notify's deadlines (services/notify/domain/deadlines.py), given / when / then: what each
published event means for deadlines (`derive`), and the deadline's own decider (`decide`,
`decide_missed`) that keeps the latest cause and never reopens what was met or withdrawn."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from contracts.envelope import EventPayload
from contracts.events import (
    ActivityCancelled,
    ActivityRescheduled,
    ActivityScheduled,
    AgreementSigned,
    AssessmentClosed,
    AttendanceCorrected,
    AttendanceRecorded,
    DeadlineMet,
    DeadlineMissed,
    DeadlineScheduled,
    DeadlineWithdrawn,
    MemberConverted,
    MemberEnrolled,
    MemberTransferredOut,
    PlaqueIssued,
    ProbationExtended,
    RegulationPublished,
    ReportRequired,
    ReportSubmitted,
    ReportWithdrawn,
    UnitRegistered,
)
from contracts.events.activity import Attendees
from contracts.events.score import AssessmentResult
from services.notify.domain import deadlines
from services.notify.domain.config import NotifyConfig
from services.notify.domain.deadlines import (
    TITLES,
    Calendar,
    Deadline,
    Meet,
    MeetKind,
    Schedule,
    Withdraw,
    WithdrawMember,
)
from tests.support.gwt import event_id

BEIJING = ZoneInfo("Asia/Shanghai")
BRANCH = "nde-b1"

# As services/notify/notify.yaml ships it (the parts deadlines read).
CONFIG = NotifyConfig(
    leads={"report_due": ["7d", "1d"], "meeting": ["1d", "1h"]},
    recipients={"report_due": ["member"], "meeting": ["member"]},
    calendar={
        "midterm_review": "10-31",
        "year_end_assessment": "12-31",
        "regulation_revision": "04-30",
        "democratic_appraisal": "12-20",
    },
    agreement_due="03-31",
    agreement_grace_days=30,
    conversion_application_days=30,
    lapsed_after_months=3,
    due_time="18:00",
)
CALENDAR = Calendar(CONFIG, BEIJING)
ORDER = 42  # the cause's position in its producer's log


def at_six(day: date) -> datetime:
    """A business date falls due at 18:00 Beijing time (10:00 UTC)."""
    return datetime(day.year, day.month, day.day, 18, 0, tzinfo=BEIJING)


def derive(
    payload: EventPayload, occurred_at: datetime, branch_id: str | None = BRANCH
) -> list[Any]:
    return deadlines.derive(payload, occurred_at, branch_id, ORDER, CALENDAR)


WHEN = datetime(2010, 5, 14, 9, 0, tzinfo=BEIJING)


def test_a_date_falls_due_at_the_configured_time_in_the_universitys_zone() -> None:
    assert CALENDAR.at(date(2010, 6, 30)) == datetime(2010, 6, 30, 10, 0, tzinfo=UTC)
    # 17:00 UTC on 30 June is 01:00 on 1 July in Beijing
    assert CALENDAR.day(datetime(2010, 6, 30, 17, 0, tzinfo=UTC)) == date(2010, 7, 1)


@pytest.mark.parametrize(
    ("day", "months", "then"),
    [
        (date(2010, 5, 14), 3, date(2010, 8, 14)),
        (date(2010, 11, 30), 3, date(2011, 2, 28)),
        (date(2011, 11, 30), 3, date(2012, 2, 29)),
        (date(2010, 10, 31), 2, date(2010, 12, 31)),
        (date(2010, 12, 31), 6, date(2011, 6, 30)),
    ],
)
def test_months_later_keeps_the_day_or_takes_the_month_end(
    day: date, months: int, then: date
) -> None:
    assert deadlines.add_months(day, months) == then


def test_the_academic_year_begins_on_the_first_of_september() -> None:
    assert deadlines.academic_year(date(2010, 8, 31)) == 2009
    assert deadlines.academic_year(date(2010, 9, 1)) == 2010


# -- derive: reports ------------------------------------------------------------------------------


def test_a_required_report_falls_due_at_the_due_time_of_its_date() -> None:
    required = ReportRequired(
        obligation_id="thought-m1-2010-Q3",
        member_id="m1",
        kind="thought",
        branch_id=BRANCH,
        due_on=date(2010, 9, 30),
        period_label="2010-Q3",
    )
    assert derive(required, WHEN) == [
        Schedule(
            "report-thought-m1-2010-Q3",
            "report_due",
            "思想汇报 2010-Q3 / thought report",
            BRANCH,
            "m1",
            at_six(date(2010, 9, 30)),
            ORDER,
        )
    ]


def test_a_submitted_report_meets_its_deadline_when_it_was_handed_in() -> None:
    handed_in = datetime(2010, 9, 29, 21, 0, tzinfo=BEIJING)
    submitted = ReportSubmitted(
        obligation_id="situation-m1-2010-09-27",
        member_id="m1",
        kind="situation",
        branch_id=BRANCH,
        due_on=date(2010, 9, 27),
        submitted_at=handed_in,
        on_time=False,
        days_late=2,
    )
    assert derive(submitted, WHEN) == [
        Meet("report-situation-m1-2010-09-27", "report_due", BRANCH, "m1", handed_in)
    ]


def test_a_withdrawn_report_withdraws_its_deadline() -> None:
    withdrawn = ReportWithdrawn(
        obligation_id="thought-m1-2010-Q4",
        member_id="m1",
        kind="thought",
        branch_id=BRANCH,
        due_on=date(2010, 12, 31),
        reason="converted to full member on 2010-11-15",
    )
    assert derive(withdrawn, WHEN) == [
        Withdraw(
            "report-thought-m1-2010-Q4",
            "report_due",
            BRANCH,
            "m1",
            "converted to full member on 2010-11-15",
        )
    ]


# -- derive: activities and attendance ------------------------------------------------------------

MEETING_AT = datetime(2010, 5, 14, 19, 0, tzinfo=BEIJING)


def scheduling(**changes: Any) -> ActivityScheduled:
    fields: dict[str, Any] = {
        "activity_id": "act-1",
        "kind": "group_meeting",
        "title": "第2周党小组会",
        "branch_id": BRANCH,
        "group_id": "nde-b1-g1",
        "starts_at": MEETING_AT,
        "ends_at": None,
        "place": "宿舍楼活动室",
        "attendees": Attendees(scope="group", group_id="nde-b1-g1"),
    }
    return ActivityScheduled(**{**fields, **changes})


def test_a_scheduled_meeting_is_a_reminder_at_its_start_for_its_group() -> None:
    assert derive(scheduling(), MEETING_AT) == [
        Schedule(
            "meeting-act-1",
            "meeting",
            "第2周党小组会",
            BRANCH,
            None,
            MEETING_AT,
            ORDER,
            group_id="nde-b1-g1",
        )
    ]


def test_scheduling_the_democratic_appraisal_meets_the_years_appraisal_deadline() -> None:
    appraisal_at = datetime(2010, 12, 15, 14, 0, tzinfo=BEIJING)
    event = scheduling(
        kind="democratic_appraisal",
        title="民主评议党员",
        group_id=None,
        attendees=Attendees(scope="branch"),
        starts_at=appraisal_at,
    )
    assert derive(event, appraisal_at) == [
        Schedule("meeting-act-1", "meeting", "民主评议党员", BRANCH, None, appraisal_at, ORDER),
        Meet(
            "democratic_appraisal-nde-b1-2010", "democratic_appraisal", BRANCH, None, appraisal_at
        ),
    ]


def test_a_rescheduled_meeting_moves_its_reminder_and_a_cancelled_one_withdraws_it() -> None:
    moved = MEETING_AT + timedelta(days=1)
    rescheduled = ActivityRescheduled(
        activity_id="act-1",
        kind="group_meeting",
        branch_id=BRANCH,
        group_id="nde-b1-g1",
        previous_starts_at=MEETING_AT,
        starts_at=moved,
        ends_at=None,
        place="宿舍楼活动室",
    )
    # a reschedule recorded before it named the activity: the generic title
    assert derive(rescheduled, moved) == [
        Schedule(
            "meeting-act-1",
            "meeting",
            TITLES["meeting"],
            BRANCH,
            None,
            moved,
            ORDER,
            group_id="nde-b1-g1",
        )
    ]
    cancelled = ActivityCancelled(
        activity_id="act-1",
        kind="group_meeting",
        branch_id=BRANCH,
        group_id="nde-b1-g1",
        reason="期中考试周",
    )
    assert derive(cancelled, WHEN) == [
        Withdraw("meeting-act-1", "meeting", BRANCH, None, "期中考试周")
    ]


def test_a_rescheduled_meeting_keeps_the_title_the_reschedule_names() -> None:
    # given: 第2周党小组会 moved a day on, the reschedule naming it
    moved = MEETING_AT + timedelta(days=1)
    rescheduled = ActivityRescheduled(
        activity_id="act-1",
        kind="group_meeting",
        branch_id=BRANCH,
        group_id="nde-b1-g1",
        previous_starts_at=MEETING_AT,
        starts_at=moved,
        ends_at=None,
        place="宿舍楼活动室",
        title="第2周党小组会",
    )
    # then: its reminder keeps the meeting's own title, not 会议 / meeting
    assert derive(rescheduled, moved) == [
        Schedule(
            "meeting-act-1",
            "meeting",
            "第2周党小组会",
            BRANCH,
            None,
            moved,
            ORDER,
            group_id="nde-b1-g1",
        )
    ]


def attended(status: str, day: date = date(2010, 5, 14), **changes: Any) -> dict[str, Any]:
    return {
        "activity_id": "act-1",
        "member_id": "m1",
        "status": status,
        "excuse": "病假" if status == "excused" else None,
        "activity_kind": "group_meeting",
        "branch_id": BRANCH,
        "group_id": "nde-b1-g1",
        "activity_date": day,
        **changes,
    }


def lapsed(day: date) -> Schedule:
    return Schedule(
        "lapsed-m1",
        "lapsed_membership",
        TITLES["lapsed_membership"],
        BRANCH,
        "m1",
        at_six(day),
        ORDER,
        only_later=True,
    )


@pytest.mark.parametrize("status", ["present", "late", "left_early"])
def test_attendance_meets_the_meeting_and_pushes_the_lapse_warning_three_months_on(
    status: str,
) -> None:
    # organisational life on 14 May 2010 → the warning moves to 14 August 2010, 18:00
    event = AttendanceRecorded(**attended(status))
    assert derive(event, MEETING_AT) == [
        Meet("meeting-act-1", "meeting", BRANCH, None, MEETING_AT),
        lapsed(date(2010, 8, 14)),
    ]


@pytest.mark.parametrize("status", ["absent", "excused"])
def test_an_absence_shows_the_meeting_was_held_but_is_no_organisational_life(status: str) -> None:
    event = AttendanceRecorded(**attended(status))
    assert derive(event, MEETING_AT) == [Meet("meeting-act-1", "meeting", BRANCH, None, MEETING_AT)]


def test_a_correction_to_present_pushes_the_lapse_warning_and_meets_nothing() -> None:
    # organisational life on 30 November 2010 → 28 February 2011 (no 30 February)
    fixed = AttendanceCorrected(
        **attended("present", date(2010, 11, 30)),
        corrects_event_id=event_id(1),
        previous_status="absent",
        reason="误记",
    )
    assert derive(fixed, MEETING_AT) == [lapsed(date(2011, 2, 28))]
    to_absent = AttendanceCorrected(
        **attended("absent"),
        corrects_event_id=event_id(1),
        previous_status="present",
        reason="误记",
    )
    assert derive(to_absent, MEETING_AT) == []


# -- derive: members ------------------------------------------------------------------------------


def enrolment(**changes: Any) -> MemberEnrolled:
    fields: dict[str, Any] = {
        "member_id": "m1",
        "student_number": "2008301",
        "name": "王小明",
        "branch_id": BRANCH,
        "group_id": "nde-b1-g1",
        "class_name": None,
        "company": None,
        "dormitory": None,
        "bed": None,
        "standing": "probationary",
        "joined_on": None,
        "probation_started_on": date(2010, 4, 20),
        "probation_ends_on": date(2011, 4, 20),
        "cadre_post": None,
        "expected_graduation": date(2012, 7, 1),
        "enrolled_on": date(2010, 5, 4),
    }
    return MemberEnrolled(**{**fields, **changes})


def test_a_probationary_member_enrolled_in_may_has_every_deadline_of_membership() -> None:
    agreement = TITLES["agreement_renewal"]
    assert derive(enrolment(), WHEN) == [
        # probation ends 2011-04-20; the application 30 days before: 2011-03-21
        Schedule(
            "probation-m1",
            "probation_end",
            TITLES["probation_end"],
            BRANCH,
            "m1",
            at_six(date(2011, 4, 20)),
            ORDER,
        ),
        Schedule(
            "conversion-application-m1",
            "conversion_application",
            TITLES["conversion_application"],
            BRANCH,
            "m1",
            at_six(date(2011, 3, 21)),
            ORDER,
        ),
        # academic year 2009-2010: its 31 March passed before 4 May → 30 days after joining
        Schedule(
            "agreement-m1-2009",
            "agreement_renewal",
            f"{agreement} 2009-2010",
            BRANCH,
            "m1",
            at_six(date(2010, 6, 3)),
            ORDER,
        ),
        Schedule(
            "graduation-m1",
            "graduation_transfer",
            TITLES["graduation_transfer"],
            BRANCH,
            "m1",
            at_six(date(2012, 7, 1)),
            ORDER,
        ),
        # 4 May + 3 months = 4 August, only ever pushed back
        Schedule(
            "lapsed-m1",
            "lapsed_membership",
            TITLES["lapsed_membership"],
            BRANCH,
            "m1",
            at_six(date(2010, 8, 4)),
            ORDER,
            only_later=True,
        ),
    ]


def test_a_full_member_enrolled_in_september_signs_by_the_next_31_march() -> None:
    full = enrolment(
        standing="full",
        joined_on=date(2009, 6, 1),
        probation_started_on=None,
        probation_ends_on=None,
        enrolled_on=date(2010, 9, 10),
    )
    intents = derive(full, WHEN)
    assert [i.deadline_id for i in intents] == [
        "agreement-m1-2010",
        "graduation-m1",
        "lapsed-m1",
    ]
    assert intents[0].due_at == at_six(date(2011, 3, 31))
    assert intents[2].due_at == at_six(date(2010, 12, 10))


def test_an_extension_moves_the_end_of_probation_and_the_application() -> None:
    extended = ProbationExtended(
        member_id="m1",
        months=6,
        previous_end_on=date(2011, 4, 20),
        new_end_on=date(2011, 10, 20),
        reason="继续考察",
        decided_on=date(2011, 4, 21),
    )
    # the branch comes from the envelope; 20 October − 30 days = 20 September
    assert derive(extended, WHEN, branch_id=BRANCH) == [
        Schedule(
            "probation-m1",
            "probation_end",
            TITLES["probation_end"],
            BRANCH,
            "m1",
            at_six(date(2011, 10, 20)),
            ORDER,
        ),
        Schedule(
            "conversion-application-m1",
            "conversion_application",
            TITLES["conversion_application"],
            BRANCH,
            "m1",
            at_six(date(2011, 9, 20)),
            ORDER,
        ),
    ]


def test_conversion_meets_the_application_and_the_end_of_probation() -> None:
    converted = MemberConverted(
        member_id="m1",
        converted_on=date(2011, 4, 20),
        probation_ended_on=date(2011, 4, 20),
        decided_on=date(2011, 4, 25),
    )
    decided = datetime(2011, 4, 25, 0, 0, tzinfo=BEIJING)
    assert derive(converted, decided) == [
        Meet("probation-m1", "probation_end", BRANCH, "m1", decided),
        Meet("conversion-application-m1", "conversion_application", BRANCH, "m1", decided),
    ]


def test_signing_the_agreement_meets_this_year_and_sets_next_years() -> None:
    signed = AgreementSigned(
        agreement_id="agr-m1-2010",
        member_id="m1",
        academic_year="2010-2011",
        signed_on=date(2011, 3, 10),
        expires_on=date(2011, 8, 31),
    )
    on = datetime(2011, 3, 10, 0, 0, tzinfo=BEIJING)
    assert derive(signed, on) == [
        Meet("agreement-m1-2010", "agreement_renewal", BRANCH, "m1", on),
        # the academic year 2011-2012 signs by 31 March 2012
        Schedule(
            "agreement-m1-2011",
            "agreement_renewal",
            f"{TITLES['agreement_renewal']} 2011-2012",
            BRANCH,
            "m1",
            at_six(date(2012, 3, 31)),
            ORDER,
        ),
    ]


def test_a_transfer_out_meets_the_graduation_transfer_and_withdraws_the_rest() -> None:
    transferred = MemberTransferredOut(
        member_id="m1",
        destination="某部队",
        transferred_on=date(2012, 6, 25),
        reason="graduation",
    )
    on = datetime(2012, 6, 25, 0, 0, tzinfo=BEIJING)
    assert derive(transferred, on) == [
        Meet("graduation-m1", "graduation_transfer", BRANCH, "m1", on),
        WithdrawMember("m1", "transferred out on 2012-06-25"),
    ]


# -- derive: a branch's calendar, assessments, regulations ----------------------------------------


def branch(unit_id: str = BRANCH, kind: str = "branch") -> UnitRegistered:
    return UnitRegistered(
        unit_id=unit_id,
        kind=kind,
        name="国防教育学院学生第一党支部",
        parent_id="nde",
        branch_kind="student" if kind == "branch" else None,
    )


def test_a_branch_registered_in_may_gets_the_rest_of_this_years_reviews_and_all_of_next() -> None:
    # registered 1 May 2010, 01:00 Beijing (30 April 17:00 UTC): 30 April 2010 has gone
    registered = datetime(2010, 4, 30, 17, 0, tzinfo=UTC)
    intents = derive(branch(), registered, branch_id=None)
    assert [(i.deadline_id, i.due_at) for i in intents] == [
        ("democratic_appraisal-nde-b1-2010", at_six(date(2010, 12, 20))),
        ("midterm_review-nde-b1-2010", at_six(date(2010, 10, 31))),
        ("year_end_assessment-nde-b1-2010", at_six(date(2010, 12, 31))),
        ("democratic_appraisal-nde-b1-2011", at_six(date(2011, 12, 20))),
        ("midterm_review-nde-b1-2011", at_six(date(2011, 10, 31))),
        ("regulation_revision-nde-b1-2011", at_six(date(2011, 4, 30))),
        ("year_end_assessment-nde-b1-2011", at_six(date(2011, 12, 31))),
    ]
    assert intents[0] == Schedule(
        "democratic_appraisal-nde-b1-2010",
        "democratic_appraisal",
        f"{TITLES['democratic_appraisal']} 2010",
        BRANCH,
        None,
        at_six(date(2010, 12, 20)),
        ORDER,
    )


def test_a_group_or_a_school_has_no_review_calendar() -> None:
    assert derive(branch("nde-b1-g1", "group"), WHEN) == []


def closing(
    closed_at: datetime, period: int | None = 2010, branch_id: str = BRANCH
) -> AssessmentClosed:
    """The year-end assessment of `period` (a calendar year, as the 2010 regulation defines it;
    None: a close recorded before the period was carried) closed at `closed_at`."""
    return AssessmentClosed(
        branch_id=branch_id,
        period_id=str(period or 2010),
        regulation_id="nde-2010",
        regulation_version=1,
        closed_at=closed_at,
        revision=1,
        results=[
            AssessmentResult(member_id="m1", total=Decimal("91.5"), rank=1, grade="excellent")
        ],
        period_starts_on=date(period, 1, 1) if period else None,
        period_ends_on=date(period, 12, 31) if period else None,
        excellent=["m1"],
        lagging=[],
    )


def reviews_of(year: int, branch_id: str = BRANCH) -> list[Schedule]:
    """The whole calendar of fixed reviews of a year, as notify.yaml ships it."""
    return [
        Schedule(
            f"{kind}-{branch_id}-{year}",
            kind,
            f"{TITLES[kind]} {year}",
            branch_id,
            None,
            at_six(date(year, month, day)),
            ORDER,
        )
        for kind, month, day in (
            ("democratic_appraisal", 12, 20),
            ("midterm_review", 10, 31),
            ("regulation_revision", 4, 30),
            ("year_end_assessment", 12, 31),
        )
    ]


def test_closing_the_assessment_meets_the_year_end_deadline_and_sets_the_year_after_next() -> None:
    closed = datetime(2010, 12, 31, 16, 0, tzinfo=BEIJING)
    assert derive(closing(closed), closed) == [
        Meet("year_end_assessment-nde-b1-2010", "year_end_assessment", BRANCH, None, closed),
        # registered in 2010, the branch has 2010 and 2011; closing 2010 sets 2012
        *reviews_of(2012),
    ]


def test_the_2010_assessment_closed_in_january_meets_the_2010_deadline() -> None:
    closed = datetime(2011, 1, 5, 10, 0, tzinfo=BEIJING)
    assert derive(closing(closed, period=2010), closed) == [
        Meet("year_end_assessment-nde-b1-2010", "year_end_assessment", BRANCH, None, closed),
        *reviews_of(2012),
    ]


def test_a_close_recorded_without_its_period_meets_the_year_it_was_closed_in() -> None:
    # before period_ends_on was carried: closed on 31 December 2010 → 2010
    closed = datetime(2010, 12, 31, 16, 0, tzinfo=BEIJING)
    [met, *later] = derive(closing(closed, period=None), closed)
    assert met == Meet(
        "year_end_assessment-nde-b1-2010", "year_end_assessment", BRANCH, None, closed
    )
    assert later == reviews_of(2012)


def test_a_close_recorded_very_late_sets_only_the_reviews_still_ahead() -> None:
    # the 2010 close recorded on 1 May 2012 (01:00 Beijing): 30 April 2012 had passed
    recorded_late = datetime(2012, 4, 30, 17, 0, tzinfo=UTC)
    intents = derive(closing(recorded_late, period=2010), recorded_late)
    assert [i.deadline_id for i in intents] == [
        "year_end_assessment-nde-b1-2010",
        "democratic_appraisal-nde-b1-2012",
        "midterm_review-nde-b1-2012",
        "year_end_assessment-nde-b1-2012",
    ]


def test_registration_and_each_years_close_set_every_years_reviews_once() -> None:
    # given: nde-b1 registered on 1 May 2010, and its assessments of 2010 … 2014 closed on
    # each 31 December
    registered = datetime(2010, 5, 1, 9, 0, tzinfo=BEIJING)
    causes = [derive(branch(), registered, branch_id=None)] + [
        derive(closing(at_six(date(y, 12, 31)), y), at_six(date(y, 12, 31)))
        for y in range(2010, 2015)
    ]
    scheduled = [i.deadline_id for intents in causes for i in intents if isinstance(i, Schedule)]
    # then: every review of 2011 … 2016 is set, and none twice; of 2010 what was still ahead
    assert len(scheduled) == len(set(scheduled))
    assert sorted(scheduled) == sorted(
        [i.deadline_id for y in range(2011, 2017) for i in reviews_of(y)]
        + [i.deadline_id for i in reviews_of(2010) if "regulation_revision" not in i.deadline_id]
    )


def test_a_regulation_meets_the_revisions_of_the_year_it_takes_effect() -> None:
    published = RegulationPublished(
        regulation_id="nde-2010",
        version=2,
        title="国防教育学院学生党员管理规定（修订）",
        effective_from=date(2011, 4, 1),
        document={},
    )
    recorded_late = datetime(2012, 1, 9, 10, 0, tzinfo=BEIJING)
    assert derive(published, recorded_late) == [
        MeetKind("regulation_revision", 2011, recorded_late)
    ]


def test_an_event_that_sets_no_deadline_means_nothing_for_deadlines() -> None:
    plaque = PlaqueIssued(
        plaque_id="pl-1",
        member_id="m1",
        kind="dormitory",
        dormitory="8-312",
        bed=None,
        issued_on=date(2010, 5, 20),
    )
    assert derive(plaque, WHEN) == []


# -- decide ---------------------------------------------------------------------------------------

CAUSE = UUID(int=7)
DUE = at_six(date(2010, 6, 30))


def report_due(due_at: datetime = DUE, order: int = ORDER, **changes: Any) -> Schedule:
    fields: dict[str, Any] = {
        "deadline_id": "report-r1",
        "kind": "report_due",
        "title": "思想汇报 2010-Q2 / thought report",
        "branch_id": BRANCH,
        "member_id": "m1",
        "due_at": due_at,
        "order": order,
    }
    return Schedule(**{**fields, **changes})


def scheduled(
    due_at: datetime, revision: int, order: int, cause: UUID = CAUSE
) -> DeadlineScheduled:
    return DeadlineScheduled(
        deadline_id="report-r1",
        kind="report_due",
        branch_id=BRANCH,
        member_id="m1",
        title="思想汇报 2010-Q2 / thought report",
        due_at=due_at,
        revision=revision,
        cause_event_id=cause,
        group_id=None,
        cause_position=order,
    )


MET = DeadlineMet(
    deadline_id="report-r1",
    kind="report_due",
    branch_id=BRANCH,
    member_id="m1",
    met_at=DUE - timedelta(days=1),
    cause_event_id=CAUSE,
)
WITHDRAWN = DeadlineWithdrawn(
    deadline_id="report-r1",
    kind="report_due",
    branch_id=BRANCH,
    member_id="m1",
    reason="converted",
    cause_event_id=CAUSE,
)


def given_deadline(*events: EventPayload) -> Deadline | None:
    return deadlines.fold(list(events))


def test_a_first_intent_schedules_the_deadline_naming_its_cause() -> None:
    assert deadlines.decide(report_due(), None, CAUSE) == [scheduled(DUE, 1, ORDER)]


def test_the_same_cause_again_changes_nothing() -> None:
    state = given_deadline(scheduled(DUE, 1, ORDER))
    assert deadlines.decide(report_due(order=ORDER), state, CAUSE) == []


def test_a_later_cause_naming_the_same_due_time_records_its_order_in_a_new_revision() -> None:
    # given: scheduled for 30 June 18:00 by the cause at position 42
    state = given_deadline(scheduled(DUE, 1, ORDER))
    # when: the cause at position 43 names the same due time
    [again] = deadlines.decide(report_due(order=ORDER + 1), state, UUID(int=8))
    # then: the same due time in revision 2, naming position 43; so a cause older than 43 (42,
    # saying 1 July) arriving afterwards no longer moves it
    assert again == scheduled(DUE, 2, ORDER + 1, UUID(int=8))
    after = given_deadline(scheduled(DUE, 1, ORDER), again)
    assert after is not None
    assert (after.due_at, after.revision, after.order) == (DUE, 2, ORDER + 1)
    assert deadlines.decide(report_due(DUE + timedelta(days=1), order=ORDER), after, CAUSE) == []


def test_a_later_cause_moves_the_deadline_to_a_new_revision() -> None:
    state = given_deadline(scheduled(DUE, 1, 10))
    moved = DUE + timedelta(days=7)
    assert deadlines.decide(report_due(moved, order=20), state, UUID(int=8)) == [
        scheduled(moved, 2, 20, UUID(int=8))
    ]


def test_an_older_cause_arriving_late_does_not_move_the_deadline_back() -> None:
    state = given_deadline(scheduled(DUE, 1, 10), scheduled(DUE + timedelta(days=7), 2, 20))
    assert deadlines.decide(report_due(DUE, order=10), state, CAUSE) == []
    assert deadlines.decide(report_due(DUE - timedelta(days=1), order=15), state, CAUSE) == []


def test_the_lapse_warning_is_only_ever_pushed_back_whatever_order_it_comes_in() -> None:
    warning = report_due(deadline_id="lapsed-m1", kind="lapsed_membership", only_later=True)
    state = given_deadline(scheduled(DUE, 1, 50))
    assert (
        deadlines.decide(replace_due(warning, DUE - timedelta(days=30), order=60), state, CAUSE)
        == []
    )
    [pushed] = deadlines.decide(
        replace_due(warning, DUE + timedelta(days=30), order=5), state, CAUSE
    )
    assert isinstance(pushed, DeadlineScheduled)
    assert (pushed.due_at, pushed.revision) == (DUE + timedelta(days=30), 2)


def replace_due(intent: Schedule, due_at: datetime, order: int) -> Schedule:
    return replace(intent, due_at=due_at, order=order)


def test_meeting_a_deadline_records_when_it_was_met() -> None:
    state = given_deadline(scheduled(DUE, 1, ORDER))
    met_at = DUE - timedelta(days=1)
    intent = Meet("report-r1", "report_due", BRANCH, "m1", met_at)
    assert deadlines.decide(intent, state, CAUSE) == [MET]


def test_withdrawing_a_deadline_says_why() -> None:
    state = given_deadline(scheduled(DUE, 1, ORDER))
    intent = Withdraw("report-r1", "report_due", BRANCH, "m1", "converted")
    assert deadlines.decide(intent, state, CAUSE) == [WITHDRAWN]


@pytest.mark.parametrize("closing_event", [MET, WITHDRAWN], ids=["met", "withdrawn"])
def test_a_met_or_withdrawn_deadline_ignores_every_later_intent(
    closing_event: EventPayload,
) -> None:
    state = given_deadline(scheduled(DUE, 1, 10), closing_event)
    for intent in (
        report_due(DUE + timedelta(days=3), order=99),
        Meet("report-r1", "report_due", BRANCH, "m1", DUE),
        Withdraw("report-r1", "report_due", BRANCH, "m1", "again"),
    ):
        assert deadlines.decide(intent, state, UUID(int=9)) == []


def test_a_deadline_met_before_its_schedule_arrives_stays_met() -> None:
    # the submission was consumed before the obligation that required it
    [met] = deadlines.decide(
        Meet("report-r1", "report_due", BRANCH, "m1", DUE - timedelta(days=1)), None, CAUSE
    )
    state = given_deadline(met)
    assert state is not None
    assert (state.status, state.due_at) == ("met", None)
    assert deadlines.decide(report_due(), state, UUID(int=8)) == []


# -- decide_missed --------------------------------------------------------------------------------


def test_an_open_deadline_past_due_is_missed_once() -> None:
    state = given_deadline(scheduled(DUE, 1, ORDER))
    noticed = DUE + timedelta(minutes=1)
    missed = DeadlineMissed(
        deadline_id="report-r1",
        kind="report_due",
        branch_id=BRANCH,
        member_id="m1",
        due_at=DUE,
        noticed_at=noticed,
    )
    assert deadlines.decide_missed(state, noticed) == [missed]
    assert (
        deadlines.decide_missed(
            given_deadline(scheduled(DUE, 1, ORDER), missed), noticed + timedelta(days=1)
        )
        == []
    )


def test_a_deadline_not_yet_due_met_or_withdrawn_is_not_missed() -> None:
    late = DUE + timedelta(days=1)
    assert (
        deadlines.decide_missed(
            given_deadline(scheduled(DUE, 1, ORDER)), DUE - timedelta(seconds=1)
        )
        == []
    )
    assert deadlines.decide_missed(given_deadline(scheduled(DUE, 1, ORDER), MET), late) == []
    assert deadlines.decide_missed(given_deadline(scheduled(DUE, 1, ORDER), WITHDRAWN), late) == []
    assert deadlines.decide_missed(None, late) == []


def test_a_meeting_is_a_reminder_and_never_missed() -> None:
    meeting = DeadlineScheduled(
        deadline_id="meeting-act-1",
        kind="meeting",
        branch_id=BRANCH,
        member_id=None,
        title="第2周党小组会",
        due_at=MEETING_AT,
        revision=1,
        cause_event_id=CAUSE,
    )
    assert deadlines.decide_missed(given_deadline(meeting), MEETING_AT + timedelta(days=30)) == []


# -- properties: order and duplicates -------------------------------------------------------------

DUES = [DUE + timedelta(days=n) for n in range(4)]


def run(intents: list[Schedule]) -> Deadline | None:
    """Decide each intent in turn against the fold of what was decided before."""
    log: list[EventPayload] = []
    for n, intent in enumerate(intents):
        log += deadlines.decide(intent, deadlines.fold(log), UUID(int=n))
    return deadlines.fold(log)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(DUES), min_size=1, max_size=4, unique=True).flatmap(
        lambda dues: st.permutations(
            [report_due(due, order=10 * (n + 1)) for n, due in enumerate(dues)]
        )
    )
)
def test_shuffled_schedules_with_distinct_due_times_end_at_the_highest_orders(
    intents: list[Schedule],
) -> None:
    state = run(intents)
    assert state is not None
    assert state.due_at == max(intents, key=lambda i: i.order).due_at


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(DUES), min_size=1, max_size=5).flatmap(
        lambda dues: st.permutations(
            [report_due(due, order=10 * (n + 1)) for n, due in enumerate(dues)]
        )
    )
)
# scheduled at 18:00 on the 30th (order 10), moved (order 20) to the 1st, moved back (order 30)
# to the 30th; delivered 10, 30, 20 → the latest cause (30) says the 30th
@example(
    [report_due(DUES[0], order=10), report_due(DUES[0], order=30), report_due(DUES[1], order=20)]
)
def test_shuffled_schedules_end_at_the_due_time_of_the_highest_order(
    intents: list[Schedule],
) -> None:
    state = run(intents)
    assert state is not None
    assert state.due_at == max(intents, key=lambda i: i.order).due_at


@settings(max_examples=200, deadline=None)
@given(st.permutations(DUES), st.lists(st.integers(0, 100), min_size=4, max_size=4))
def test_shuffled_lapse_warnings_end_at_the_latest_whatever_their_order(
    dues: list[datetime], orders: list[int]
) -> None:
    warning = report_due(deadline_id="lapsed-m1", kind="lapsed_membership", only_later=True)
    state = run([replace_due(warning, due, order) for due, order in zip(dues, orders, strict=True)])
    assert state is not None
    assert state.due_at == max(DUES)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(DUES), min_size=1, max_size=4))
def test_a_redelivered_intent_decides_nothing_the_second_time(dues: list[datetime]) -> None:
    log: list[EventPayload] = []
    for n, due in enumerate(dues):
        intent = report_due(due, order=n)
        log += deadlines.decide(intent, deadlines.fold(log), UUID(int=n))
        assert deadlines.decide(intent, deadlines.fold(log), UUID(int=n)) == []
    meet = Meet("report-r1", "report_due", BRANCH, "m1", DUE)
    log += deadlines.decide(meet, deadlines.fold(log), CAUSE)
    assert deadlines.decide(meet, deadlines.fold(log), CAUSE) == []
