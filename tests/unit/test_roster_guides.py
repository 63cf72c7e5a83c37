"""Party-member guides (党员引路人), decided by the pure domain: given the guide's stream and
the members and group it names, when a registration, appointment or end, then the events or the
refusal. And a guide's name and phone never reach a log line."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest
import structlog
from pydantic import ValidationError

from contracts.envelope import EventPayload
from contracts.events import (
    ActivityScheduled,
    GuideAppointed,
    GuideAppointmentEnded,
    GuideRegistered,
    MemberEnrolled,
    MemberTransferredOut,
    UnitRegistered,
)
from runtime.decider import CommandRefused
from runtime.logs import redact_personal_data
from services.activities.domain.activity import ScheduleActivity, schedule
from services.roster.domain import guide, member, organisation

TODAY = date(2026, 3, 1)

REGISTERED = GuideRegistered(
    guide_id="g1",
    name="赵连长",
    kind="army_officer",
    organisation="济南军区某部",
    phone="0533-2780000",
    registered_on=date(2010, 5, 20),
)


def enrolled(member_id: str, branch_id: str = "b1") -> MemberEnrolled:
    return MemberEnrolled(
        member_id=member_id,
        student_number="sn" + member_id.replace("-", ""),
        name="王",
        branch_id=branch_id,
        group_id=f"{branch_id}-g1",
        class_name=None,
        company=None,
        dormitory=None,
        bed=None,
        standing="full",
        joined_on=date(2008, 6, 1),
        probation_started_on=None,
        probation_ends_on=None,
        cadre_post=None,
        expected_graduation=date(2012, 7, 1),
        enrolled_on=date(2009, 9, 1),
    )


MEMBERS = {
    "m1": member.fold([enrolled("m1")]),
    "m2": member.fold([enrolled("m2")]),
    "m-b2": member.fold([enrolled("m-b2", "b2")]),
    "m-gone": member.fold(
        [
            enrolled("m-gone"),
            MemberTransferredOut(
                member_id="m-gone",
                destination="某部队党委",
                transferred_on=date(2010, 6, 1),
                reason="graduation",
            ),
        ]
    ),
}
GROUPS = {
    "b1-g1": organisation.fold(
        [UnitRegistered(unit_id="b1-g1", kind="group", name="一组", parent_id="b1")]
    ),
    "b2-g1": organisation.fold(
        [UnitRegistered(unit_id="b2-g1", kind="group", name="一组", parent_id="b2")]
    ),
}


def appointment(**fields: Any) -> guide.AppointGuide:
    body: dict[str, Any] = {
        "appointment_id": "a1",
        "branch_id": "b1",
        "member_ids": ["m1", "m2"],
        "term_starts_on": date(2010, 6, 1),
        "term_ends_on": date(2011, 5, 31),
    }
    body.update(fields)
    return guide.AppointGuide(**body)


def when_appointed(cmd: guide.AppointGuide, given: Sequence[EventPayload]) -> list[EventPayload]:
    group = GROUPS.get(cmd.group_id) if cmd.group_id else None
    members = {m: MEMBERS.get(m) for m in cmd.member_ids}
    return guide.appoint(cmd, guide.fold(list(given)), "g1", members, group, TODAY)


def then_refused(call: Any, rule: str, field: str | None) -> None:
    with pytest.raises(CommandRefused) as refused:
        call()
    assert (refused.value.rule, refused.value.field) == (rule, field), refused.value.message


def test_a_guide_is_registered_once_and_not_ahead_of_time() -> None:
    cmd = guide.RegisterGuide(
        guide_id="g1",
        name="赵连长",
        kind="army_officer",
        organisation="济南军区某部",
        phone="0533-2780000",
        registered_on=date(2010, 5, 20),
    )
    assert guide.register(cmd, None, TODAY) == [REGISTERED]
    then_refused(
        lambda: guide.register(cmd, guide.fold([REGISTERED]), TODAY), "guide_exists", "guide_id"
    )
    later = cmd.model_copy(update={"registered_on": date(2026, 3, 2)})
    then_refused(
        lambda: guide.register(later, None, TODAY), "registered_in_future", "registered_on"
    )
    with pytest.raises(ValidationError, match="kind"):
        guide.RegisterGuide(**{**cmd.model_dump(), "kind": "celebrity"})


def test_appointed_to_members_of_the_branch_for_a_term() -> None:
    [event] = when_appointed(appointment(), [REGISTERED])
    assert event == GuideAppointed(
        appointment_id="a1",
        guide_id="g1",
        branch_id="b1",
        member_ids=["m1", "m2"],
        group_id=None,
        term_starts_on=date(2010, 6, 1),
        term_ends_on=date(2011, 5, 31),
    )
    [to_group] = when_appointed(appointment(member_ids=[], group_id="b1-g1"), [REGISTERED])
    assert isinstance(to_group, GuideAppointed)
    assert to_group.group_id == "b1-g1"


@pytest.mark.parametrize(
    ("fields", "rule", "field"),
    [
        ({"member_ids": ["m1", "m-b2"]}, "appointee_not_in_branch", "member_ids"),
        ({"member_ids": ["m-gone"]}, "appointee_not_in_branch", "member_ids"),  # gone 2010-06-01
        ({"member_ids": ["nobody"]}, "appointee_not_in_branch", "member_ids"),
        ({"member_ids": [], "group_id": "b2-g1"}, "group_not_in_branch", "group_id"),
        ({"member_ids": [], "group_id": "b9-g9"}, "group_not_in_branch", "group_id"),
        ({"term_ends_on": date(2010, 6, 1)}, "appointment_term", "term_ends_on"),
        (
            {"term_starts_on": date(2010, 5, 19)},
            "appointment_before_registration",
            "term_starts_on",
        ),
        (
            {"term_starts_on": date(2026, 3, 2), "term_ends_on": date(2027, 3, 1)},
            "appointment_in_future",
            "term_starts_on",
        ),
    ],
)
def test_appointment_rules(fields: dict[str, Any], rule: str, field: str) -> None:
    then_refused(lambda: when_appointed(appointment(**fields), [REGISTERED]), rule, field)


def test_no_appointment_of_an_unknown_guide_nor_twice() -> None:
    then_refused(lambda: when_appointed(appointment(), []), "guide_unknown", None)
    given = [REGISTERED, *when_appointed(appointment(), [REGISTERED])]
    then_refused(
        lambda: when_appointed(appointment(), given), "appointment_exists", "appointment_id"
    )


def test_overlapping_terms_for_the_same_member_are_refused_until_the_first_ends() -> None:
    given = [REGISTERED, *when_appointed(appointment(), [REGISTERED])]
    # a1 runs 2010-06-01 – 2011-05-31; a2 for m2 from 2011-01-01 overlaps it
    overlapping = appointment(
        appointment_id="a2",
        member_ids=["m2"],
        term_starts_on=date(2011, 1, 1),
        term_ends_on=date(2011, 12, 31),
    )
    then_refused(
        lambda: when_appointed(overlapping, given), "appointment_overlaps", "term_starts_on"
    )
    # once a1 has ended on 2011-01-01 (its last day 2010-12-31), a2 may begin that day
    ended = guide.end_appointment(
        guide.EndAppointment(ended_on=date(2011, 1, 1), reason="调任外地"),
        guide.fold(given),
        "g1",
        "a1",
        TODAY,
    )
    assert ended == [
        GuideAppointmentEnded(
            appointment_id="a1",
            guide_id="g1",
            branch_id="b1",
            ended_on=date(2011, 1, 1),
            reason="调任外地",
        )
    ]
    [a2] = when_appointed(overlapping, [*given, *ended])
    assert isinstance(a2, GuideAppointed)


@pytest.mark.parametrize(
    ("ended_on", "appointment_id", "rule", "field"),
    [
        (date(2010, 5, 31), "a1", "ended_on_too_early", "ended_on"),
        (date(2011, 6, 1), "a1", "term_over", "ended_on"),
        (date(2026, 3, 2), "a1", "ended_in_future", "ended_on"),
        (date(2010, 9, 1), "a9", "appointment_unknown", None),
    ],
)
def test_ending_an_appointment(
    ended_on: date, appointment_id: str, rule: str, field: str | None
) -> None:
    state = guide.fold([REGISTERED, *when_appointed(appointment(), [REGISTERED])])
    cmd = guide.EndAppointment(ended_on=ended_on, reason="x")
    then_refused(
        lambda: guide.end_appointment(cmd, state, "g1", appointment_id, TODAY), rule, field
    )


def test_an_appointment_ends_once() -> None:
    given: list[EventPayload] = [REGISTERED, *when_appointed(appointment(), [REGISTERED])]
    cmd = guide.EndAppointment(ended_on=date(2010, 9, 1), reason="x")
    given += guide.end_appointment(cmd, guide.fold(given), "g1", "a1", TODAY)
    then_refused(
        lambda: guide.end_appointment(cmd, guide.fold(given), "g1", "a1", TODAY),
        "appointment_ended",
        None,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"member_ids": ["m1"], "group_id": "b1-g1"},  # both
        {"member_ids": []},  # neither
        {"member_ids": ["m1", "m1"]},
    ],
)
def test_an_appointment_names_members_or_a_group(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="member_ids"):
        appointment(**fields)


def test_a_guides_name_and_phone_never_reach_the_logs() -> None:
    out = io.StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[redact_personal_data, structlog.processors.JSONRenderer()],
    )
    data = REGISTERED.model_dump(mode="json")
    log.info("guide registered", **data)
    log.info("guide event", data=data, events=[{"data": data}])
    text = out.getvalue()
    assert "赵连长" not in text
    assert "0533-2780000" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert (first["name"], first["phone"], first["organisation"]) == (
        "[redacted]",
        "[redacted]",
        "济南军区某部",
    )
    assert second["data"]["name"] == "[redacted]"
    assert second["events"][0]["data"]["phone"] == "[redacted]"


def test_an_activity_names_its_guide_and_the_event_carries_it() -> None:
    command = ScheduleActivity(
        activity_id="act-1",
        kind="visit",
        title="瞻仰黑铁山抗日武装起义纪念馆",
        branch_id="b1",
        starts_at=datetime(2010, 7, 1, 8, tzinfo=UTC),
        place="黑铁山",
        base="黑铁山抗日武装起义纪念馆",
        guide_id="g1",
    )
    [scheduled] = schedule(command, None, True, None, frozenset())
    assert isinstance(scheduled, ActivityScheduled)
    assert scheduled.guide_id == "g1"
    without = command.model_copy(update={"guide_id": None})
    [plain] = schedule(without, None, True, None, frozenset())
    assert plain.model_dump()["guide_id"] is None
