"""The range of dates and instants every input lies in (contracts.ranges, issue 14): the bounds
themselves, what each service's OpenAPI document says of every date and time it accepts, the
regulation documents, and notify's deadlines, which never overflow on a date from the log
(an `expected_graduation` of 9999-12-31 once stopped notify for every branch)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from contracts.events import ActivityScheduled, MemberEnrolled, ProbationExtended, UnitRegistered
from contracts.events.activity import Attendees
from contracts.ranges import (
    BoundedDate,
    BoundedInstant,
    OutOfRange,
    check_date,
    check_instant,
    date_in_range,
    instant_in_range,
)
from runtime.http.app import create_app
from runtime.http.moments import parse_instant, parse_moment
from services.notify.domain import deadlines
from services.notify.domain.config import NotifyConfig
from services.notify.domain.reminders import DeadlineView, plan
from services.registry import SERVICES
from services.scoring.domain.regulation import parse_document

BEIJING = ZoneInfo("Asia/Shanghai")


# -- the bounds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "inside"),
    [
        (date(1900, 1, 1), True),
        (date(2199, 12, 31), True),
        (date(2010, 5, 4), True),
        (date(1899, 12, 31), False),
        (date(2200, 1, 1), False),
        (date.min, False),
        (date.max, False),
    ],
)
def test_dates_from_1900_to_2199(day: date, inside: bool) -> None:
    assert date_in_range(day) is inside
    if inside:
        assert check_date(day) == day
    else:
        with pytest.raises(OutOfRange, match="from 1900-01-01 to 2199-12-31"):
            check_date(day)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (datetime(1900, 1, 1, tzinfo=UTC), True),
        (datetime(2199, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), True),
        (datetime(2199, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=14))), True),
        (datetime(2200, 1, 1, tzinfo=UTC), False),
        (datetime(2199, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-1))), False),
        (datetime(1900, 1, 1, 7, 59, tzinfo=timezone(timedelta(hours=8))), False),
        # Too far for Python to shift to UTC: out of range, not an OverflowError.
        (datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))), False),
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), False),
        (datetime(9999, 12, 31, 23, 30, tzinfo=UTC), False),
        (datetime(1, 1, 1, tzinfo=UTC), False),
    ],
)
def test_instants_on_those_days_in_utc(moment: datetime, inside: bool) -> None:
    assert instant_in_range(moment) is inside
    if not inside:
        with pytest.raises(OutOfRange, match="1900-01-01T00:00:00Z up to"):
            check_instant(moment)


class Command(BaseModel):
    day: BoundedDate
    at: BoundedInstant | None = None
    holidays: list[BoundedDate] = []


def test_a_command_outside_the_range_is_refused_naming_each_field() -> None:
    with pytest.raises(ValidationError) as refused:
        Command.model_validate(
            {"day": "0001-01-01", "at": "9999-12-31T23:30:00-05:00", "holidays": ["9999-12-31"]}
        )
    assert {tuple(e["loc"]) for e in refused.value.errors()} == {
        ("day",),
        ("at",),
        ("holidays", 0),
    }
    assert Command.model_validate({"day": "2199-12-31", "at": "1900-01-01T00:00:00Z"})


@pytest.mark.parametrize(
    "text", ["9999-12-31", "0001-01-01", "1899-12-31T23:59:59Z", "9999-12-31T23:59:59-05:00"]
)
def test_query_moments_outside_the_range_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_moment(text)
    if "T" in text:
        with pytest.raises(ValueError, match="must be"):
            parse_instant(text)


# -- the OpenAPI documents ------------------------------------------------------------------------


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _dated(
    document: dict[str, Any], schema: dict[str, Any], where: str, seen: frozenset[str] = frozenset()
) -> Iterator[tuple[str, dict[str, Any]]]:
    ref = schema.get("$ref")
    if ref in seen:
        return
    seen = seen | {ref} if ref else seen
    schema = _resolve(document, schema)
    if schema.get("format") in ("date", "date-time"):
        yield where, schema
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, ()):
            yield from _dated(document, option, where, seen)
    for name, sub in schema.get("properties", {}).items():
        yield from _dated(document, sub, f"{where}.{name}", seen)
    if isinstance(schema.get("items"), dict):
        yield from _dated(document, schema["items"], f"{where}[]", seen)


@pytest.mark.parametrize("definition", SERVICES.values(), ids=list(SERVICES))
def test_every_date_and_time_an_api_accepts_says_its_range(definition: Any) -> None:
    document = create_app(definition, configure_logs=False).openapi()
    assert "1900-01-01 to 2199-12-31" in document["info"]["description"]
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            for parameter in operation.get("parameters", []):
                where = f"{method} {path} {parameter['in']}.{parameter['name']}"
                found += list(_dated(document, parameter["schema"], where))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                found += list(_dated(document, body["schema"], f"{method} {path} body"))
    assert found  # every service takes dates (at least `known_at` of its audit log)
    for where, schema in found:
        if schema["format"] == "date":
            assert (schema.get("formatMinimum"), schema.get("formatMaximum")) == (
                "1900-01-01",
                "2199-12-31",
            ), where
        else:
            assert (schema.get("formatMinimum"), schema.get("formatExclusiveMaximum")) == (
                "1900-01-01T00:00:00Z",
                "2200-01-01T00:00:00Z",
            ), where


# -- regulations ----------------------------------------------------------------------------------


def test_a_regulation_with_days_outside_the_range_names_them() -> None:
    raw = {
        "id": "far",
        "version": 1,
        "title": "远期",
        "effective_from": "9999-01-01",
        "periods": [{"id": "p", "starts_on": "0001-01-01", "ends_on": "9999-12-31"}],
        "base": "60",
        "floor": "0",
        "ceiling": "100",
        "rules": [{"id": "r", "title": "出席", "on": "attendance.recorded", "points": "1"}],
        "grades": [{"grade": "qualified"}],
    }
    _, errors = parse_document(raw)
    assert {e.field for e in errors if "must be a date" in e.reason} == {
        "effective_from",
        "periods[p].starts_on",
        "periods[p].ends_on",
    }


# -- notify: deadlines from any date a log may hold -----------------------------------------------

CONFIG = NotifyConfig(
    leads={"graduation_transfer": ["30d", "7d"], "meeting": ["1d", "1h"]},
    recipients={"graduation_transfer": ["member", "secretary"], "meeting": ["member"]},
    calendar={"midterm_review": "10-31", "year_end_assessment": "12-31"},
    agreement_due="03-31",
    agreement_grace_days=30,
    conversion_application_days=30,
    lapsed_after_months=3,
    due_time="18:00",
)
CALENDAR = deadlines.Calendar(CONFIG, BEIJING)
ANY_DAY = st.dates(min_value=date.min, max_value=date.max)
ANY_INSTANT = st.datetimes(min_value=datetime.min, max_value=datetime.max).map(
    lambda moment: moment.replace(tzinfo=UTC)
)


def _schedules_in_range(intents: list[Any]) -> None:
    for intent in intents:
        if isinstance(intent, deadlines.Schedule):
            assert instant_in_range(intent.due_at), intent


@given(
    enrolled=ANY_DAY,
    graduation=ANY_DAY,
    probation_ends=st.dates(min_value=date(1, 1, 2)),
    occurred=ANY_INSTANT,
)
@example(
    enrolled=date(9999, 11, 30),
    graduation=date(9999, 12, 31),
    probation_ends=date(1, 1, 5),
    occurred=datetime(9999, 12, 31, 23, 30, tzinfo=UTC),
)
def test_an_enrolment_with_any_dates_sets_deadlines_only_within_the_range(
    enrolled: date, graduation: date, probation_ends: date, occurred: datetime
) -> None:
    enrolment = MemberEnrolled(
        member_id="m1",
        student_number="20100001",
        name="党员",
        branch_id="b1",
        group_id=None,
        class_name=None,
        company=None,
        dormitory=None,
        bed=None,
        standing="probationary",
        joined_on=None,
        probation_started_on=date.min,
        probation_ends_on=probation_ends,
        cadre_post=None,
        expected_graduation=graduation,
        enrolled_on=enrolled,
    )
    intents = deadlines.derive(enrolment, occurred, "b1", 1, CALENDAR)
    _schedules_in_range(intents)
    if date_in_range(enrolled) and date(1900, 1, 1) < enrolled < date(2199, 6, 1):
        assert any(i.deadline_id == "lapsed-m1" for i in intents)
    assert any(i.deadline_id == "graduation-m1" for i in intents) == date_in_range(graduation)


@given(starts=ANY_INSTANT, occurred=ANY_INSTANT, new_end=ANY_DAY)
@example(
    starts=datetime(9999, 12, 31, 23, 30, tzinfo=UTC),
    occurred=datetime(1, 1, 1, tzinfo=UTC),
    new_end=date(1, 1, 1),
)
def test_meetings_branches_and_extensions_at_the_calendars_edges_never_overflow(
    starts: datetime, occurred: datetime, new_end: date
) -> None:
    meeting = ActivityScheduled(
        activity_id="a1",
        kind="democratic_appraisal",
        title="民主评议",
        branch_id="b1",
        group_id=None,
        starts_at=starts,
        ends_at=None,
        place="301",
        attendees=Attendees(scope="branch"),
    )
    branch = UnitRegistered(
        unit_id="b1", kind="branch", name="支部", parent_id="s1", branch_kind="student"
    )
    extension = ProbationExtended(
        member_id="m1",
        previous_end_on=date(2011, 4, 20),
        new_end_on=new_end,
        months=6,
        decided_on=date(2011, 4, 21),
        reason="表现",
    )
    for payload in (meeting, branch, extension):
        _schedules_in_range(deadlines.derive(payload, occurred, "b1", 1, CALENDAR))


def test_a_deadline_due_at_the_end_of_the_calendar_plans_no_escalation_it_cannot_date() -> None:
    """A `deadline.scheduled` recorded before the bound, due 9999-12-31, is in notify's log: its
    reminders before it are planned, the escalations after it (which Python cannot date) not."""
    config = CONFIG.model_copy(
        update={
            "escalation": CONFIG.escalation.model_copy(update={"kinds": ["graduation_transfer"]})
        }
    )
    due = datetime(9999, 12, 31, 10, tzinfo=UTC)
    view = DeadlineView(
        f"graduation-{uuid4().hex[:4]}", "graduation_transfer", "毕业", "b1", "m1", due
    )
    planned = plan(view, {"member": ["m1"], "secretary": ["m2"]}, lambda _: ["stream"], config)
    assert planned
    assert all(p.lead_seconds > 0 for p in planned)
