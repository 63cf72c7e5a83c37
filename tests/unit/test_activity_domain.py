"""Activities (services/activities/domain/activity.py), given / when / then: scheduling,
rescheduling and cancelling an activity, and the plan's odd/even-week cadence."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import ActivityCancelled, ActivityRescheduled, ActivityScheduled
from contracts.events.activity import Attendees
from services.activities.domain import activity
from services.activities.domain.activity import PlannedMeeting
from tests.support.gwt import then_refused

BEIJING = ZoneInfo("Asia/Shanghai")
BRANCH = "nde-b1"
MEMBERS = frozenset({"m1", "m2", "m3"})

# Friday 14 May 2010, 19:00–20:30 Beijing time (11:00–12:30 UTC).
STARTS = datetime(2010, 5, 14, 19, 0, tzinfo=BEIJING)
ENDS = datetime(2010, 5, 14, 20, 30, tzinfo=BEIJING)


def command(**changes: Any) -> activity.ScheduleActivity:
    fields: dict[str, Any] = {
        "activity_id": "act-1",
        "kind": "all_member_meeting",
        "title": "全体党员大会",
        "branch_id": BRANCH,
        "starts_at": STARTS,
        "ends_at": ENDS,
        "place": "综合楼201",
    }
    return activity.ScheduleActivity.model_validate({**fields, **changes})


def schedule(
    cmd: activity.ScheduleActivity,
    existing: activity.ActivityState | None = None,
    *,
    branch_known: bool = True,
    group_branch: str | None = None,
    attendees_group_branch: str | None = None,
) -> list[Any]:
    return activity.schedule(
        cmd,
        existing,
        branch_known,
        group_branch,
        MEMBERS,
        attendees_group_branch=attendees_group_branch,
    )


def scheduled(**changes: Any) -> activity.ActivityState:
    """Given: the activity's stream holds its scheduling."""
    state = activity.fold(schedule(command(**changes), group_branch=BRANCH))
    assert state is not None
    return state


# -- schedule -------------------------------------------------------------------------------------


def test_a_meeting_is_for_the_whole_branch_unless_it_says_otherwise() -> None:
    assert schedule(command()) == [
        ActivityScheduled(
            activity_id="act-1",
            kind="all_member_meeting",
            title="全体党员大会",
            branch_id=BRANCH,
            group_id=None,
            starts_at=STARTS,
            ends_at=ENDS,
            place="综合楼201",
            attendees=Attendees(scope="branch"),
        )
    ]


def test_a_group_meeting_is_for_its_group() -> None:
    [event] = schedule(command(kind="group_meeting", group_id="nde-b1-g1"), group_branch=BRANCH)
    assert isinstance(event, ActivityScheduled)
    assert event.attendees == Attendees(scope="group", group_id="nde-b1-g1")


def test_named_attendees_of_the_branch_are_the_ones_required() -> None:
    attendees = {"scope": "members", "member_ids": ["m1", "m3"]}
    [event] = schedule(command(kind="party_lecture", attendees=attendees))
    assert isinstance(event, ActivityScheduled)
    assert event.attendees == Attendees(scope="members", member_ids=["m1", "m3"])


def test_volunteer_service_credits_its_hours_and_a_visit_names_its_base() -> None:
    [service] = schedule(command(kind="volunteer_service", volunteer_hours="2.5"))
    [visit] = schedule(command(kind="visit", base="黑铁山抗日武装起义纪念馆"))
    assert isinstance(service, ActivityScheduled)
    assert isinstance(visit, ActivityScheduled)
    assert service.volunteer_hours == Decimal("2.5")
    assert visit.base == "黑铁山抗日武装起义纪念馆"


@pytest.mark.parametrize(
    ("changes", "facts", "rule", "field"),
    [
        ({}, {"branch_known": False}, "branch_unknown", "branch_id"),
        ({"kind": "group_meeting"}, {}, "group_required", "group_id"),
        (
            {"kind": "group_meeting", "group_id": "nde-b2-g1"},
            {"group_branch": "nde-b2"},
            "group_not_in_branch",
            "group_id",
        ),
        (
            {"kind": "group_meeting", "group_id": "no-such-group"},
            {"group_branch": None},
            "group_not_in_branch",
            "group_id",
        ),
        ({"kind": "exchange"}, {}, "partner_required", "partner"),
        ({"kind": "visit"}, {}, "base_required", "base"),
        ({"kind": "volunteer_service"}, {}, "hours_required", "volunteer_hours"),
        (
            {"kind": "volunteer_service", "volunteer_hours": "0"},
            {},
            "hours_required",
            "volunteer_hours",
        ),
        ({"ends_at": STARTS}, {}, "ends_before_start", "ends_at"),
        ({"ends_at": STARTS - timedelta(minutes=1)}, {}, "ends_before_start", "ends_at"),
        (
            {
                "kind": "group_meeting",
                "group_id": "nde-b1-g1",
                "attendees": {"scope": "group", "group_id": "nde-b1-g2"},
            },
            {"group_branch": BRANCH},
            "attendees_group",
            "attendees.group_id",
        ),
        (
            {"attendees": {"scope": "members", "member_ids": ["m1", "nde-b2-m00"]}},
            {},
            "attendee_not_in_branch",
            "attendees.member_ids",
        ),
    ],
)
def test_an_activity_that_cannot_be_held_as_described_is_refused(
    changes: dict[str, Any], facts: dict[str, Any], rule: str, field: str
) -> None:
    then_refused(lambda: schedule(command(**changes), **facts), rule, field)


def test_a_lecture_of_no_group_may_be_for_a_group_of_its_branch() -> None:
    # given: group nde-b1-g2 belongs to nde-b1; when: a party lecture for that group alone
    lecture = command(kind="party_lecture", attendees={"scope": "group", "group_id": "nde-b1-g2"})
    [event] = schedule(lecture, attendees_group_branch=BRANCH)
    # then: scheduled for the group, the activity itself of no group
    assert isinstance(event, ActivityScheduled)
    assert (event.group_id, event.attendees) == (
        None,
        Attendees(scope="group", group_id="nde-b1-g2"),
    )


@pytest.mark.parametrize(
    "attendees_group_branch", ["nde-b2", None], ids=["other-branch", "no-such-group"]
)
def test_an_activity_of_no_group_for_a_group_of_another_branch_is_refused(
    attendees_group_branch: str | None,
) -> None:
    lecture = command(kind="party_lecture", attendees={"scope": "group", "group_id": "nde-b2-g1"})
    refused = then_refused(
        lambda: schedule(lecture, attendees_group_branch=attendees_group_branch),
        "attendees_group_not_in_branch",
        "attendees.group_id",
    )
    assert refused.message == "Party group nde-b2-g1 is not a group of branch nde-b1"


def test_an_activity_is_scheduled_once() -> None:
    existing = scheduled()
    then_refused(lambda: schedule(command(), existing), "activity_exists", "activity_id")


# -- reschedule -----------------------------------------------------------------------------------


def test_rescheduling_keeps_the_duration_and_the_place() -> None:
    given = scheduled()
    # 19:00–20:30 on the 14th moved to 19:30 on the 15th → ends 21:00, still 90 minutes.
    moved = datetime(2010, 5, 15, 19, 30, tzinfo=BEIJING)
    events = activity.reschedule(
        activity.RescheduleActivity(starts_at=moved, reason="教室被占用"), given, "act-1"
    )
    assert events == [
        ActivityRescheduled(
            activity_id="act-1",
            kind="all_member_meeting",
            branch_id=BRANCH,
            group_id=None,
            previous_starts_at=STARTS,
            starts_at=moved,
            ends_at=datetime(2010, 5, 15, 21, 0, tzinfo=BEIJING),
            place="综合楼201",
            reason="教室被占用",
            title="全体党员大会",  # the scheduled title, for notify's reminder
        )
    ]
    after = activity.evolve(given, events[0])
    assert after is not None
    assert (after.starts_at, after.ends_at, after.place) == (
        moved,
        datetime(2010, 5, 15, 21, 0, tzinfo=BEIJING),
        "综合楼201",
    )


def test_moving_only_the_place_is_a_reschedule() -> None:
    [event] = activity.reschedule(
        activity.RescheduleActivity(starts_at=STARTS, place="图书馆报告厅"), scheduled(), "act-1"
    )
    assert isinstance(event, ActivityRescheduled)
    assert (event.starts_at, event.ends_at, event.place) == (STARTS, ENDS, "图书馆报告厅")


def test_rescheduling_to_the_same_time_and_place_is_refused() -> None:
    # 19:00 Beijing is 11:00 UTC: the same instant, written in another zone.
    same = datetime(2010, 5, 14, 11, 0, tzinfo=UTC)
    then_refused(
        lambda: activity.reschedule(
            activity.RescheduleActivity(starts_at=same, place="综合楼201"), scheduled(), "act-1"
        ),
        "nothing_changes",
    )


def test_extending_a_meeting_that_keeps_its_start_is_a_reschedule() -> None:
    later_end = datetime(2010, 5, 14, 21, 0, tzinfo=BEIJING)  # 19:00–21:00 instead of 20:30
    [event] = activity.reschedule(
        activity.RescheduleActivity(starts_at=STARTS, ends_at=later_end), scheduled(), "act-1"
    )
    assert isinstance(event, ActivityRescheduled)
    assert event.ends_at == later_end


def test_a_reschedule_carries_the_title_it_was_scheduled_with_every_time() -> None:
    # given: 全体党员大会 scheduled for the 14th, moved once to the 15th
    given = scheduled()
    [first] = activity.reschedule(
        activity.RescheduleActivity(starts_at=STARTS + timedelta(days=1)), given, "act-1"
    )
    moved_once = activity.evolve(given, first)
    # when: moved again, to the 16th
    [second] = activity.reschedule(
        activity.RescheduleActivity(starts_at=STARTS + timedelta(days=2)), moved_once, "act-1"
    )
    # then: both reschedules name it, so notify's reminder keeps its title
    assert isinstance(first, ActivityRescheduled)
    assert isinstance(second, ActivityRescheduled)
    assert (first.title, second.title) == ("全体党员大会", "全体党员大会")
    assert second.previous_starts_at == STARTS + timedelta(days=1)


def test_a_reschedule_that_ends_before_it_starts_is_refused() -> None:
    moved = datetime(2010, 5, 15, 19, 0, tzinfo=BEIJING)
    then_refused(
        lambda: activity.reschedule(
            activity.RescheduleActivity(starts_at=moved, ends_at=moved), scheduled(), "act-1"
        ),
        "ends_before_start",
        "ends_at",
    )


def test_an_unknown_or_cancelled_activity_cannot_be_rescheduled() -> None:
    moved = activity.RescheduleActivity(starts_at=STARTS + timedelta(days=1))
    then_refused(lambda: activity.reschedule(moved, None, "act-x"), "activity_unknown")
    given = scheduled()
    [cancellation] = activity.cancel(activity.CancelActivity(reason="台风"), given, "act-1")
    cancelled = activity.evolve(given, cancellation)
    then_refused(lambda: activity.reschedule(moved, cancelled, "act-1"), "activity_cancelled")


# -- cancel ---------------------------------------------------------------------------------------


def test_cancelling_says_why_and_happens_once() -> None:
    given = scheduled(kind="group_meeting", group_id="nde-b1-g2")
    events = activity.cancel(activity.CancelActivity(reason="期中考试周"), given, "act-1")
    assert events == [
        ActivityCancelled(
            activity_id="act-1",
            kind="group_meeting",
            branch_id=BRANCH,
            group_id="nde-b1-g2",
            reason="期中考试周",
        )
    ]
    after = activity.evolve(given, events[0])
    assert after is not None
    assert after.cancelled
    then_refused(
        lambda: activity.cancel(activity.CancelActivity(reason="again"), after, "act-1"),
        "activity_cancelled",
    )
    then_refused(
        lambda: activity.cancel(activity.CancelActivity(reason="x"), None, "act-x"),
        "activity_unknown",
    )


# -- the odd/even-week cadence --------------------------------------------------------------------


def semester(**changes: Any) -> activity.PlanSemester:
    fields: dict[str, Any] = {
        "semester_id": "2010-autumn",
        "starts_on": date(2010, 9, 1),  # a Wednesday; week 1 is Mon 30 Aug – Sun 5 Sep
        "weeks": 6,
        "weekday": 5,  # Friday
        "at": time(19, 0),
        "duration_minutes": 90,
        "place": "综合楼201",
        "group_place": "宿舍楼活动室",
        "holidays": [date(2010, 10, 1)],  # National Day, the Friday of week 5
    }
    return activity.PlanSemester.model_validate({**fields, **changes})


def test_odd_weeks_meet_as_a_whole_even_weeks_in_groups_and_holidays_are_skipped() -> None:
    meetings, skipped = activity.plan_semester(semester(), BRANCH, ["g1", "g2"])
    base = "nde-b1-2010-autumn"
    assert meetings == [
        PlannedMeeting(f"{base}-w01-all", "all_member_meeting", 1, date(2010, 9, 3), None),
        PlannedMeeting(f"{base}-w02-g1", "group_meeting", 2, date(2010, 9, 10), "g1"),
        PlannedMeeting(f"{base}-w02-g2", "group_meeting", 2, date(2010, 9, 10), "g2"),
        PlannedMeeting(f"{base}-w03-all", "all_member_meeting", 3, date(2010, 9, 17), None),
        PlannedMeeting(f"{base}-w04-g1", "group_meeting", 4, date(2010, 9, 24), "g1"),
        PlannedMeeting(f"{base}-w04-g2", "group_meeting", 4, date(2010, 9, 24), "g2"),
        # week 5 (Friday 1 October) is National Day
        PlannedMeeting(f"{base}-w06-g1", "group_meeting", 6, date(2010, 10, 8), "g1"),
        PlannedMeeting(f"{base}-w06-g2", "group_meeting", 6, date(2010, 10, 8), "g2"),
    ]
    assert skipped == [date(2010, 10, 1)]


def test_a_meeting_day_before_the_semester_starts_is_left_out_not_reported_as_a_holiday() -> None:
    # Week 1's Monday is 30 August, before the semester starts on Wednesday 1 September.
    meetings, skipped = activity.plan_semester(
        semester(weekday=1, weeks=3, holidays=[]), BRANCH, ["g1"]
    )
    assert [(m.week, m.day, m.kind) for m in meetings] == [
        (2, date(2010, 9, 6), "group_meeting"),
        (3, date(2010, 9, 13), "all_member_meeting"),
    ]
    assert skipped == []


def test_a_planned_meeting_begins_at_local_time_and_lasts_its_duration() -> None:
    plan = semester()
    meetings, _ = activity.plan_semester(plan, BRANCH, ["g1"])
    whole, group = meetings[0], meetings[1]
    cmd = activity.meeting_command(whole, plan, BRANCH, BEIJING)
    # Friday 3 September 2010, 19:00 Beijing = 11:00 UTC; 90 minutes → 20:30.
    assert cmd.starts_at == datetime(2010, 9, 3, 11, 0, tzinfo=UTC)
    assert cmd.ends_at == datetime(2010, 9, 3, 20, 30, tzinfo=BEIJING)
    assert (cmd.title, cmd.place, cmd.group_id) == ("第1周全体党员大会", "综合楼201", None)
    group_cmd = activity.meeting_command(group, plan, BRANCH, BEIJING)
    assert (group_cmd.title, group_cmd.place, group_cmd.group_id) == (
        "第2周党小组会",
        "宿舍楼活动室",
        "g1",
    )
    # As the service does: the group is the branch's own, no one is named.
    [event] = activity.schedule(group_cmd, None, True, BRANCH, frozenset())
    assert isinstance(event, ActivityScheduled)
    assert event.attendees == Attendees(scope="group", group_id="g1")


def test_group_meetings_meet_in_the_main_place_when_no_group_place_is_given() -> None:
    plan = semester(group_place=None)
    meetings, _ = activity.plan_semester(plan, BRANCH, ["g1"])
    assert activity.meeting_command(meetings[1], plan, BRANCH, BEIJING).place == "综合楼201"


@settings(max_examples=200, deadline=None)
@given(
    starts_on=st.dates(min_value=date(2010, 1, 1), max_value=date(2012, 12, 31)),
    weeks=st.integers(1, 30),
    weekday=st.integers(1, 7),
    groups=st.lists(st.sampled_from(["g1", "g2", "g3"]), unique=True, max_size=3),
    holiday_offsets=st.lists(st.integers(0, 30 * 7), max_size=10),
)
def test_planning_a_semester_again_gives_the_same_meetings_on_the_cadence(
    starts_on: date, weeks: int, weekday: int, groups: list[str], holiday_offsets: list[int]
) -> None:
    holidays = sorted({starts_on + timedelta(days=n) for n in holiday_offsets})
    plan = semester(starts_on=starts_on, weeks=weeks, weekday=weekday, holidays=holidays)
    meetings, skipped = activity.plan_semester(plan, BRANCH, groups)
    assert activity.plan_semester(plan, BRANCH, groups) == (meetings, skipped)
    assert len({m.activity_id for m in meetings}) == len(meetings)
    monday = starts_on - timedelta(days=starts_on.weekday())
    for m in meetings:
        assert m.day.isoweekday() == weekday
        assert m.day >= starts_on
        assert m.day not in holidays
        assert (m.day - monday).days // 7 + 1 == m.week
        assert m.kind == ("all_member_meeting" if m.week % 2 else "group_meeting")
        assert (m.group_id is None) == (m.kind == "all_member_meeting")
    for week in {m.week for m in meetings if m.kind == "group_meeting"}:
        assert sorted(m.group_id or "" for m in meetings if m.week == week) == sorted(groups)
    assert all(day in holidays and day.isoweekday() == weekday for day in skipped)
