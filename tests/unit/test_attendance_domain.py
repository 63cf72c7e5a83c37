"""Attendance (services/activities/domain/attendance.py), given / when / then: a whole sheet is
recorded or refused as one, naming the line at fault; a correction supersedes the record it
names and keeps it in the log."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from contracts.envelope import EventPayload
from contracts.events import (
    ActivityCancelled,
    ActivityScheduled,
    AttendanceCorrected,
    AttendanceRecorded,
)
from contracts.events.activity import Attendees
from services.activities.domain import activity, attendance
from services.activities.domain.attendance import CorrectAttendance, RecordSheet, Roll, SheetLine
from tests.support.gwt import event_id, recorded, then_refused

BEIJING = ZoneInfo("Asia/Shanghai")
BRANCH = "nde-b1"
GROUP = "nde-b1-g1"

# The group meeting of Friday 14 May 2010 at 19:00 Beijing time.
STARTS = datetime(2010, 5, 14, 19, 0, tzinfo=BEIJING)
DAY = date(2010, 5, 14)
LATER = STARTS + timedelta(hours=2)

# Group 1 is m00…m19; the branch has g2's m20…m29 too.
GROUP_MEMBERS = frozenset(f"m{n:02d}" for n in range(20))
BRANCH_MEMBERS = GROUP_MEMBERS | {f"m{n:02d}" for n in range(20, 30)}
ROLL = Roll(required=GROUP_MEMBERS, in_branch=BRANCH_MEMBERS)


def scheduling(**changes: Any) -> ActivityScheduled:
    fields: dict[str, Any] = {
        "activity_id": "act-g1",
        "kind": "group_meeting",
        "title": "第2周党小组会",
        "branch_id": BRANCH,
        "group_id": GROUP,
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(minutes=90),
        "place": "宿舍楼活动室",
        "attendees": Attendees(scope="group", group_id=GROUP),
    }
    return ActivityScheduled(**{**fields, **changes})


def given_activity(*events: EventPayload) -> activity.ActivityState | None:
    return activity.fold(list(events) or [scheduling()])


def sheet(*lines: tuple[str, str] | tuple[str, str, str]) -> RecordSheet:
    return RecordSheet(
        lines=[
            SheetLine(member_id=line[0], status=line[1], excuse=line[2] if len(line) == 3 else None)
            for line in lines
        ]
    )


def record(
    command: RecordSheet,
    state: activity.ActivityState | None = None,
    records: dict[str, attendance.Record] | None = None,
    *,
    now: datetime = LATER,
) -> list[EventPayload]:
    return attendance.record_sheet(
        command,
        given_activity() if state is None else state,
        "act-g1",
        records or {},
        ROLL,
        DAY,
        now,
    )


def line(member: str, status: str, excuse: str | None = None, **changes: Any) -> AttendanceRecorded:
    fields: dict[str, Any] = {
        "activity_id": "act-g1",
        "member_id": member,
        "status": status,
        "excuse": excuse,
        "activity_kind": "group_meeting",
        "branch_id": BRANCH,
        "group_id": GROUP,
        "activity_date": DAY,
        "volunteer_hours": None,
    }
    return AttendanceRecorded(**{**fields, **changes})


# -- record a sheet -------------------------------------------------------------------------------


def test_a_sheet_records_every_line_with_the_activity_it_belongs_to() -> None:
    events = record(sheet(("m00", "present"), ("m01", "late"), ("m02", "excused", "病假")))
    assert events == [line("m00", "present"), line("m01", "late"), line("m02", "excused", "病假")]


def test_attendance_is_taken_once_the_activity_has_begun() -> None:
    assert record(sheet(("m00", "present")), now=STARTS) == [line("m00", "present")]
    then_refused(
        lambda: record(sheet(("m00", "present")), now=STARTS - timedelta(seconds=1)),
        "activity_in_future",
    )


def test_the_day_of_the_record_is_the_activitys_local_day() -> None:
    # 00:30 Beijing on 15 May is still 14 May in UTC; the service passes the local day.
    late_night = given_activity(
        scheduling(starts_at=datetime(2010, 5, 15, 0, 30, tzinfo=BEIJING), ends_at=None)
    )
    [event] = attendance.record_sheet(
        sheet(("m00", "present")),
        late_night,
        "act-g1",
        {},
        ROLL,
        date(2010, 5, 15),
        datetime(2010, 5, 15, 2, 0, tzinfo=BEIJING),
    )
    assert isinstance(event, AttendanceRecorded)
    assert event.activity_date == date(2010, 5, 15)


@pytest.mark.parametrize(
    ("status", "excuse", "hours"),
    [
        ("present", None, Decimal("3")),
        ("late", None, Decimal("3")),
        ("left_early", None, Decimal("3")),
        ("excused", "实习", None),
        ("absent", None, None),
    ],
)
def test_volunteer_hours_are_credited_only_to_those_who_took_part(
    status: str, excuse: str | None, hours: Decimal | None
) -> None:
    service = given_activity(
        scheduling(
            kind="volunteer_service",
            group_id=None,
            attendees=Attendees(scope="branch"),
            volunteer_hours=Decimal("3"),
        )
    )
    whole_branch = Roll(required=BRANCH_MEMBERS, in_branch=BRANCH_MEMBERS)
    [event] = attendance.record_sheet(
        sheet(("m25", status, excuse) if excuse else ("m25", status)),
        service,
        "act-g1",
        {},
        whole_branch,
        DAY,
        LATER,
    )
    assert isinstance(event, AttendanceRecorded)
    assert (event.activity_kind, event.volunteer_hours) == ("volunteer_service", hours)


def test_there_is_no_attendance_at_an_unknown_or_cancelled_activity() -> None:
    cancelled = given_activity(
        scheduling(),
        ActivityCancelled(
            activity_id="act-g1",
            kind="group_meeting",
            branch_id=BRANCH,
            group_id=GROUP,
            reason="暴雨",
        ),
    )
    then_refused(lambda: record(sheet(("m00", "present")), cancelled), "activity_cancelled")
    then_refused(
        lambda: attendance.record_sheet(
            sheet(("m00", "present")), None, "act-x", {}, ROLL, DAY, LATER
        ),
        "activity_unknown",
    )


def test_a_member_outside_the_branch_is_refused_naming_the_line() -> None:
    then_refused(
        lambda: record(sheet(("m00", "present"), ("nde-b2-m00", "present"))),
        "member_not_in_branch",
        "lines[1].member_id",
    )


def test_a_member_of_another_group_was_not_required_at_a_group_meeting() -> None:
    then_refused(
        lambda: record(sheet(("m00", "present"), ("m01", "present"), ("m25", "present"))),
        "member_not_required",
        "lines[2].member_id",
    )


def test_a_member_twice_on_a_long_sheet_is_refused_at_the_second_line() -> None:
    lines: list[tuple[str, str]] = [(f"m{n:02d}", "present") for n in range(17)]
    lines.append(("m03", "late"))  # line 17 (the 18th) repeats line 3
    then_refused(lambda: record(sheet(*lines)), "member_twice", "lines[17].member_id")


def test_a_member_already_recorded_is_corrected_not_recorded_again() -> None:
    records = attendance.fold(recorded(line("m00", "absent")))
    then_refused(
        lambda: record(sheet(("m01", "present"), ("m00", "present")), records=records),
        "attendance_already_recorded",
        "lines[1].member_id",
    )


@pytest.mark.parametrize(
    "bad",
    [("m01", "excused"), ("m01", "absent", "睡过头")],
    ids=["excused-without-reason", "reason-without-excused"],
)
def test_only_an_excused_absence_gives_a_reason(
    bad: tuple[str, str] | tuple[str, str, str],
) -> None:
    then_refused(lambda: record(sheet(("m00", "present"), bad)), "excuse_rule", "lines[1].excuse")


# -- correct --------------------------------------------------------------------------------------


def correction(member: str, status: str, excuse: str | None = None) -> CorrectAttendance:
    return CorrectAttendance(
        member_id=member, status=status, excuse=excuse, reason="迟到十分钟，误记为缺席"
    )


def correct(
    command: CorrectAttendance,
    records: dict[str, attendance.Record],
    state: activity.ActivityState | None = None,
    roll: Roll = ROLL,
) -> list[EventPayload]:
    return attendance.correct(
        command, given_activity() if state is None else state, "act-g1", records, roll, DAY, LATER
    )


def test_a_correction_names_the_record_it_supersedes_and_keeps_it() -> None:
    # given: m00 recorded absent (event 1), m01 present (event 2)
    log = recorded(line("m00", "absent"), line("m01", "present"))
    events = correct(correction("m00", "late"), attendance.fold(log))
    assert events == [
        AttendanceCorrected(
            activity_id="act-g1",
            member_id="m00",
            status="late",
            excuse=None,
            activity_kind="group_meeting",
            branch_id=BRANCH,
            group_id=GROUP,
            activity_date=DAY,
            volunteer_hours=None,
            corrects_event_id=event_id(1),
            previous_status="absent",
            reason="迟到十分钟，误记为缺席",
        )
    ]
    # then: the correction (event 3) is the current record; the original stays in the log
    after = attendance.fold([*log, (event_id(3), events[0])])
    assert after == {
        "m00": attendance.Record("late", event_id(3)),
        "m01": attendance.Record("present", event_id(2)),
    }
    # and a second correction supersedes the first, not the original
    [again] = correct(correction("m00", "excused", "校运会裁判"), after)
    assert isinstance(again, AttendanceCorrected)
    assert (again.corrects_event_id, again.previous_status) == (event_id(3), "late")


def test_a_member_who_left_the_branch_since_can_still_be_corrected() -> None:
    records = attendance.fold(recorded(line("m00", "absent")))
    without_m00 = Roll(ROLL.required - {"m00"}, ROLL.in_branch - {"m00"})
    [event] = correct(correction("m00", "present"), records, roll=without_m00)
    assert isinstance(event, AttendanceCorrected)
    assert event.status == "present"


def test_only_what_is_recorded_can_be_corrected() -> None:
    records = attendance.fold(recorded(line("m00", "absent")))
    then_refused(
        lambda: correct(correction("m01", "late"), records), "nothing_to_correct", "member_id"
    )
    then_refused(
        lambda: correct(correction("m00", "absent"), records),
        "correction_changes_nothing",
        "status",
    )


def test_no_correction_at_a_cancelled_activity() -> None:
    cancelled = given_activity(
        scheduling(),
        ActivityCancelled(
            activity_id="act-g1",
            kind="group_meeting",
            branch_id=BRANCH,
            group_id=GROUP,
            reason="暴雨",
        ),
    )
    records = attendance.fold(recorded(line("m00", "absent")))
    then_refused(
        lambda: correct(correction("m00", "present"), records, cancelled), "activity_cancelled"
    )


def test_a_correction_to_excused_without_a_reason_names_the_excuse_field() -> None:
    records = attendance.fold(recorded(line("m00", "absent")))
    then_refused(lambda: correct(correction("m00", "excused"), records), "excuse_rule", "excuse")
