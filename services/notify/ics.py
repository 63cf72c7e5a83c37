"""A branch's deadlines as an iCalendar feed (RFC 5545), for secretaries' calendar apps."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> list[str]:
    """Lines longer than 75 octets continue on the next line after a space."""
    parts: list[str] = []
    current = b""
    for char in line:
        piece = char.encode()
        if len(current) + len(piece) > (75 if not parts else 74):
            parts.append(current.decode())
            current = b""
        current += piece
    parts.append(current.decode())
    return [parts[0], *(" " + p for p in parts[1:])]


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(branch_id: str, name: str, deadlines: Iterable[dict[str, Any]], now: datetime) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//party-members//notify//ZH",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{_escape(name)}",
    ]
    for deadline in deadlines:
        if deadline["due_at"] is None:
            continue
        due = deadline["due_at"]
        length = timedelta(hours=1) if deadline["kind"] == "meeting" else timedelta(minutes=30)
        status = {"open": "CONFIRMED", "met": "CONFIRMED", "withdrawn": "CANCELLED"}[
            deadline["status"]
        ]
        summary = deadline["title"] + ("（已完成 done）" if deadline["status"] == "met" else "")
        lines += [
            "BEGIN:VEVENT",
            f"UID:{deadline['deadline_id']}@{branch_id}.party-members",
            f"DTSTAMP:{_stamp(now)}",
            f"DTSTART:{_stamp(due)}",
            f"DTEND:{_stamp(due + length)}",
            f"SUMMARY:{_escape(summary)}",
            f"CATEGORIES:{deadline['kind'].upper()}",
            f"STATUS:{status}",
            f"SEQUENCE:{deadline['revision']}",
        ]
        if deadline.get("member_id"):
            lines.append(f"DESCRIPTION:{_escape('member ' + deadline['member_id'])}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(folded for line in lines for folded in _fold(line)) + "\r\n"
