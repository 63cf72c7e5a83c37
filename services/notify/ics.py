"""A branch's deadlines as an iCalendar feed (RFC 5545), for secretaries' calendar apps.

The feed is built by the `icalendar` library (escaping, folding, line ends), and every text is
cleaned first: RFC 5545 TEXT holds no control characters but the tab, and a bare carriage
return, a form feed or an escape sequence typed into a title would otherwise reach the calendar
app as they are. Line breaks of any kind become one escaped newline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar

#: CRLF, a bare CR, and the Unicode line and paragraph separators: each one line break.
_LINE_BREAKS = re.compile("\r\n|[\r\u2028\u2029\x85]")
#: C0 controls but the tab and the line feed, DEL and the C1 controls.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """Text as RFC 5545 allows it: line breaks as \\n (the library escapes them), no other
    control character."""
    return _CONTROLS.sub("", _LINE_BREAKS.sub("\n", text))


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def calendar(branch_id: str, name: str, deadlines: Iterable[dict[str, Any]], now: datetime) -> str:
    feed = icalendar.Calendar()
    feed.add("version", "2.0")
    feed.add("prodid", "-//party-members//notify//ZH")
    feed.add("calscale", "GREGORIAN")
    feed.add("method", "PUBLISH")
    feed.add("x-wr-calname", icalendar.vText(clean_text(name)))  # escaped as text
    for deadline in deadlines:
        if deadline["due_at"] is None:
            continue
        due = deadline["due_at"]
        length = timedelta(hours=1) if deadline["kind"] == "meeting" else timedelta(minutes=30)
        status = {"open": "CONFIRMED", "met": "CONFIRMED", "withdrawn": "CANCELLED"}[
            deadline["status"]
        ]
        summary = deadline["title"] + ("（已完成 done）" if deadline["status"] == "met" else "")
        event = icalendar.Event()
        event.add("uid", f"{deadline['deadline_id']}@{branch_id}.party-members")
        event.add("dtstamp", _utc(now))
        event.add("dtstart", _utc(due))
        event.add("dtend", _utc(due + length))
        event.add("summary", clean_text(summary))
        event.add("categories", [deadline["kind"].upper()])
        event.add("status", status)
        event.add("sequence", int(deadline["revision"]))
        if deadline.get("member_id"):
            event.add("description", clean_text("member " + deadline["member_id"]))
        feed.add_component(event)
    text: str = feed.to_ical().decode("utf-8")
    return text
