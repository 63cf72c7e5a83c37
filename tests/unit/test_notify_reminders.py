"""Notify's reminder plan (services/notify/domain/reminders.py), given / when / then: one
reminder per (deadline, recipient, channel, lead), before the due time at each configured lead
and after it for escalation; and the words of a reminder in Chinese and English."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import uuid5
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events.deadline import Channel
from services.notify.domain import reminders
from services.notify.domain.config import NotifyConfig, Role
from services.notify.domain.reminders import DELIVERY_NAMESPACE, DeadlineView, Planned

BEIJING = ZoneInfo("Asia/Shanghai")
DAY = 86400

# As services/notify/notify.yaml ships it (the parts the plan reads).
CONFIG = NotifyConfig(
    leads={
        "report_due": ["7d", "1d"],
        "meeting": ["1d", "1h"],
        "conversion_application": ["7d", "1d"],
        "lapsed_membership": ["0d"],
    },
    recipients={
        "report_due": ["member"],
        "meeting": ["member"],
        "conversion_application": ["member", "secretary"],
        "lapsed_membership": ["secretary"],
        "midterm_review": ["secretary"],
    },
    escalation={
        "secretary": "1d",
        "school_office": "7d",
        "kinds": ["report_due", "conversion_application"],
    },
)

# A thought report due Wednesday 30 June 2010 at 18:00 Beijing time.
DUE = datetime(2010, 6, 30, 18, 0, tzinfo=BEIJING)
REPORT = DeadlineView("report-thought-m1-2010-Q2", "report_due", "思想汇报", "nde-b1", "m1", DUE)
PEOPLE: dict[Role, list[str]] = {
    "member": ["m1"],
    "secretary": ["sec-b1"],
    "school_office": ["office-nde"],
}


def stream_only(_: str) -> Sequence[Channel]:
    return ["stream"]


def plan(
    deadline: DeadlineView,
    recipients: dict[Role, list[str]] = PEOPLE,
    channels_of: Callable[[str], Sequence[Channel]] = stream_only,
) -> list[Planned]:
    return reminders.plan(deadline, recipients, channels_of, CONFIG)


def test_a_report_is_reminded_before_and_escalated_after_its_due_time() -> None:
    assert plan(REPORT) == [
        # 7 days and 1 day before 30 June 18:00, to the member
        Planned(
            REPORT.deadline_id,
            "m1",
            "member",
            "stream",
            7 * DAY,
            datetime(2010, 6, 23, 18, 0, tzinfo=BEIJING),
        ),
        Planned(
            REPORT.deadline_id,
            "m1",
            "member",
            "stream",
            DAY,
            datetime(2010, 6, 29, 18, 0, tzinfo=BEIJING),
        ),
        # overdue: a day after to the secretary, a week after to the school office
        Planned(
            REPORT.deadline_id,
            "sec-b1",
            "secretary",
            "stream",
            -DAY,
            datetime(2010, 7, 1, 18, 0, tzinfo=BEIJING),
        ),
        Planned(
            REPORT.deadline_id,
            "office-nde",
            "school_office",
            "stream",
            -7 * DAY,
            datetime(2010, 7, 7, 18, 0, tzinfo=BEIJING),
        ),
    ]


def test_each_channel_a_recipient_chose_gets_its_own_reminder() -> None:
    def channels(recipient: str) -> Sequence[Channel]:
        return ["stream", "email"] if recipient == "m1" else ["webhook"]

    planned = plan(REPORT, channels_of=channels)
    assert sorted((p.recipient_id, p.channel, p.lead_seconds) for p in planned) == [
        ("m1", "email", DAY),
        ("m1", "email", 7 * DAY),
        ("m1", "stream", DAY),
        ("m1", "stream", 7 * DAY),
        ("office-nde", "webhook", -7 * DAY),
        ("sec-b1", "webhook", -DAY),
    ]


def test_every_member_is_reminded_of_a_meeting_a_day_and_an_hour_before_and_never_chased() -> None:
    starts = datetime(2010, 5, 14, 19, 0, tzinfo=BEIJING)
    meeting = DeadlineView("meeting-act-1", "meeting", "第2周党小组会", "nde-b1", None, starts)
    planned = plan(meeting, {"member": ["m1", "m2"], "secretary": ["sec-b1"]})
    assert [(p.recipient_id, p.lead_seconds, p.send_at) for p in planned] == [
        ("m1", DAY, datetime(2010, 5, 13, 19, 0, tzinfo=BEIJING)),
        ("m2", DAY, datetime(2010, 5, 13, 19, 0, tzinfo=BEIJING)),
        ("m1", 3600, datetime(2010, 5, 14, 18, 0, tzinfo=BEIJING)),
        ("m2", 3600, datetime(2010, 5, 14, 18, 0, tzinfo=BEIJING)),
    ]


def test_a_warning_on_the_day_goes_at_the_due_time() -> None:
    lapse = DeadlineView(
        "lapsed-m1", "lapsed_membership", "长期未参加组织生活", "nde-b1", "m1", DUE
    )
    assert [(p.recipient_id, p.lead_seconds, p.send_at) for p in plan(lapse)] == [
        ("sec-b1", 0, DUE)
    ]


def test_a_secretary_who_is_also_the_member_is_reminded_once_per_lead() -> None:
    due = DeadlineView(
        "conversion-application-sec-b1",
        "conversion_application",
        "转正申请",
        "nde-b1",
        "sec-b1",
        DUE,
    )
    planned = plan(due, {"member": ["sec-b1"], "secretary": ["sec-b1"]})
    # leads 7d and 1d once each, the overdue chase a day after once
    assert [(p.recipient_id, p.lead_seconds) for p in planned] == [
        ("sec-b1", 7 * DAY),
        ("sec-b1", DAY),
        ("sec-b1", -DAY),
    ]


def test_nobody_to_remind_plans_nothing() -> None:
    review = DeadlineView(
        "midterm_review-nde-b1-2010", "midterm_review", "中期考核", "nde-b1", None, DUE
    )
    assert plan(review, {"member": [], "secretary": []}) == []  # no secretary elected yet
    assert plan(review) == []  # configured recipients, but no lead times for the kind


def test_a_delivery_id_names_the_deadline_recipient_channel_and_lead() -> None:
    [first, *_] = plan(REPORT)
    expected = uuid5(DELIVERY_NAMESPACE, "report-thought-m1-2010-Q2|m1|stream|604800")
    assert first.key == "report-thought-m1-2010-Q2|m1|stream|604800"
    assert first.delivery_id == expected
    assert reminders.delivery_id(REPORT.deadline_id, "m1", "stream", 7 * DAY) == expected
    assert reminders.delivery_id(REPORT.deadline_id, "m1", "email", 7 * DAY) != expected


def test_a_moved_deadline_keeps_its_deliveries_and_moves_when_they_are_sent() -> None:
    moved = replace(REPORT, due_at=DUE + timedelta(days=2))
    before, after = plan(REPORT), plan(moved)
    assert [p.delivery_id for p in after] == [p.delivery_id for p in before]
    assert [p.send_at - q.send_at for p, q in zip(after, before, strict=True)] == [
        timedelta(days=2)
    ] * 4


@settings(max_examples=100, deadline=None)
@given(
    members=st.lists(st.sampled_from(["m1", "m2", "m3", "sec-b1"]), max_size=4),
    channels=st.lists(st.sampled_from(["stream", "webhook", "email"]), min_size=1, unique=True),
)
def test_every_reminder_is_planned_once_in_the_order_it_is_sent(
    members: list[str], channels: list[Channel]
) -> None:
    recipients: dict[Role, list[str]] = {"member": members, "secretary": ["sec-b1"]}
    planned = plan(REPORT, recipients, lambda _: channels)
    assert len({p.delivery_id for p in planned}) == len(planned)
    assert planned == sorted(planned, key=lambda p: (p.send_at, p.key))
    assert all(p.send_at == DUE - timedelta(seconds=p.lead_seconds) for p in planned)
    assert (
        plan(
            REPORT,
            {"member": list(reversed(members)), "secretary": ["sec-b1"]},
            lambda _: list(reversed(channels)),
        )
        == planned
    )


# -- the words ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lead_seconds", "zh", "en"),
    [
        (7 * DAY, "还有7天到期", "due in 7 days"),
        (DAY, "还有1天到期", "due in 1 day"),
        (2 * 3600, "还有2小时", "due in 2 hours"),
        (3600, "还有1小时", "due in 1 hour"),
        (0, "今天到期", "due now"),
        (-DAY, "已逾期1天", "overdue by 1 day"),
        (-7 * DAY, "已逾期7天", "overdue by 7 days"),
        (-3 * 3600, "已逾期3小时", "overdue by 3 h"),
        # a lead of 30m (the config accepts minutes) is worded in minutes, in both languages
        (30 * 60, "还有30分钟", "due in 30 minutes"),
        (60, "还有1分钟", "due in 1 minute"),
        (-30 * 60, "已逾期30分钟", "overdue by 30 min"),
    ],
)
def test_a_reminder_says_how_long_is_left_in_chinese_and_english(
    lead_seconds: int, zh: str, en: str
) -> None:
    message = reminders.render(REPORT, lead_seconds, BEIJING)
    assert zh in message.subject
    assert en in message.subject
    assert f"{zh}。" in message.body
    assert f"This is {en}." in message.body


def test_a_reminder_gives_the_due_time_in_the_universitys_zone_and_names_the_member() -> None:
    message = reminders.render(REPORT, DAY, BEIJING)
    assert message.subject == "【提醒】思想汇报（还有1天到期） / Reminder: due in 1 day"
    assert "截止时间：2010-06-30 18:00（Asia/Shanghai）" in message.body
    assert "Due: 2010-06-30 18:00 (Asia/Shanghai)" in message.body
    assert "请按时完成。" in message.body
    assert message.body.endswith("（党员 / member: m1）")


def test_an_escalation_asks_the_secretary_to_follow_it_up() -> None:
    message = reminders.render(REPORT, -DAY, BEIJING)
    assert message.subject.startswith("【逾期】")
    assert "/ Overdue: overdue by 1 day" in message.subject
    assert "请支部书记督促办理" in message.body
    assert "the branch secretary is asked to follow it up" in message.body


def test_a_branchs_deadline_names_no_member() -> None:
    review = DeadlineView(
        "year_end_assessment-nde-b1-2010",
        "year_end_assessment",
        "年终量化考核",
        "nde-b1",
        None,
        DUE,
    )
    assert "member:" not in reminders.render(review, 3 * DAY, BEIJING).body


@pytest.mark.parametrize("lead_seconds", [1800, -1800], ids=["30m-before", "30m-after"])
def test_a_reminder_half_an_hour_away_does_not_say_due_now(lead_seconds: int) -> None:
    subject = reminders.render(REPORT, lead_seconds, BEIJING).subject
    assert "due now" not in subject
    assert "0 h" not in subject
    assert "30" in subject
