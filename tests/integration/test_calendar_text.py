"""The branch's iCalendar feed with hostile titles (issue 14), against the real notify service on
PostgreSQL and Redis: control characters and a bare carriage return in a meeting's title and a
branch's name reach no line of the feed, no event can be forged by a line break, and the feed
parses back with the icalendar library to the title as RFC 5545 text can hold it."""

from __future__ import annotations

import re

import icalendar

from contracts.events import UnitRegistered
from tests.integration import test_notify
from tests.integration.test_notify import World, local, meeting, organise
from tests.support.producer import at

#: The world of tests/integration/test_notify.py: notify fed by stand-in producers.
world = test_notify.world

HOSTILE_TITLE = "组会\rEND:VEVENT\r\nBEGIN:VEVENT\x07\x1b[31m\x0bSUMMARY:forged\x7f\u2028done"
#: What RFC 5545 text can hold of it: line breaks one newline, control characters gone.
CLEAN_TITLE = "组会\nEND:VEVENT\nBEGIN:VEVENT[31mSUMMARY:forged\ndone"
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


async def test_control_characters_and_bare_carriage_returns_never_reach_the_feed(
    world: World,
) -> None:
    await organise(world, 2)
    hostile = meeting("a1", local("2010-05-12", 19)).model_copy(update={"title": HOSTILE_TITLE})
    await world.emit(world.activities, hostile, at("2010-05-06", 10))
    await world.settle()
    response = await world.api.client.get("/v1/branches/nde-b1/calendar.ics", headers=world.admin)
    assert response.status_code == 200, response.text
    raw = response.content.decode("utf-8")
    lines = raw.split("\r\n")
    assert lines[-1] == ""  # every line ends with CRLF …
    for line in lines:
        assert "\r" not in line, repr(line)  # … and no bare CR
        assert "\n" not in line, repr(line)  # … or LF
        assert not _CONTROLS.search(line), repr(line)
    assert "\u2028" not in raw
    assert sum(line == "BEGIN:VEVENT" for line in lines) == len(
        [line for line in lines if line == "END:VEVENT"]
    )

    parsed = icalendar.Calendar.from_ical(response.content)
    events = {str(e["UID"]): e for e in parsed.walk("VEVENT")}
    assert not [e for e in events.values() if str(e["SUMMARY"]) == "forged"]
    meeting_event = events["meeting-a1@nde-b1.party-members"]
    assert str(meeting_event["SUMMARY"]) == CLEAN_TITLE
    assert meeting_event.decoded("DTSTART") == local("2010-05-12", 19)


async def test_a_branch_name_with_control_characters_is_a_clean_calendar_name(
    world: World,
) -> None:
    await organise(world, 2)
    await world.emit(
        world.roster,
        UnitRegistered(
            unit_id="nde-b2",
            kind="branch",
            name="学生第二\r党支部\x1b",
            parent_id="nde",
            branch_kind="student",
        ),
        at("2010-05-01", 10),
        "nde-b2",
    )
    await world.settle()
    response = await world.api.client.get("/v1/branches/nde-b2/calendar.ics", headers=world.admin)
    assert response.status_code == 200, response.text
    assert not _CONTROLS.search(response.text.replace("\r\n", ""))
    parsed = icalendar.Calendar.from_ical(response.content)
    # An X- property is not unescaped by the parser: its line holds the escaped newline.
    assert str(parsed["X-WR-CALNAME"]) == "学生第二\\n党支部"
    assert "X-WR-CALNAME:学生第二\\n党支部\r\n" in response.text
