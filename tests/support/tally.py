"""A small real projection for testing the runtime: attendance per member, where a correction
supersedes the record it corrects. Its state is a function of the set of events applied, not of
their order: the effective record of (activity, member) is the one recorded last in the source
log (highest position), whatever order they arrived in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from contracts.events import AttendanceCorrected, AttendanceRecorded
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore import NewEvent, StreamAppend

TALLY_SQL = """
CREATE TABLE IF NOT EXISTS {schema}.attendance_facts (
    event_id    uuid PRIMARY KEY,
    activity_id text NOT NULL,
    member_id   text NOT NULL,
    status      text NOT NULL,
    position    bigint NOT NULL
)
"""


class AttendanceTally:
    name = "attendance_tally"
    event_types = frozenset({"attendance.recorded", "attendance.corrected"})

    def __init__(self, schema: str) -> None:
        self._s = f'"{schema}"'

    async def create(self, conn: Connection) -> None:
        await conn.execute(TALLY_SQL.replace("{schema}", self._s))

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        await conn.executemany(
            f"INSERT INTO {self._s}.attendance_facts VALUES ($1, $2, $3, $4, $5)",
            [_row(e) for e in events],
        )

    async def state(self, conn: Connection) -> dict[tuple[str, str], str]:
        """The effective status of each (activity, member)."""
        rows = await conn.fetch(
            f"SELECT DISTINCT ON (activity_id, member_id) activity_id, member_id, status "
            f"FROM {self._s}.attendance_facts ORDER BY activity_id, member_id, position DESC"
        )
        return {(r["activity_id"], r["member_id"]): r["status"] for r in rows}


def _row(event: IncomingEvent) -> tuple[Any, ...]:
    payload = event.payload
    assert isinstance(payload, AttendanceRecorded | AttendanceCorrected)
    return (event.event_id, payload.activity_id, payload.member_id, payload.status, event.position)


def attendance_event(
    activity: str, member: str, status: str, *, corrects: UUID | None = None
) -> NewEvent:
    common: dict[str, Any] = {
        "activity_id": activity,
        "member_id": member,
        "status": status,
        "excuse": "sick" if status == "excused" else None,
        "activity_kind": "all_member_meeting",
        "branch_id": "b1",
        "group_id": None,
        "activity_date": date(2010, 5, 12),
    }
    payload: AttendanceRecorded | AttendanceCorrected
    if corrects is None:
        payload = AttendanceRecorded(**common)
    else:
        payload = AttendanceCorrected(
            **common, corrects_event_id=corrects, previous_status="absent", reason="typo"
        )
    return NewEvent.from_payload(
        payload, occurred_at=datetime(2010, 5, 12, 19, tzinfo=UTC), branch_id="b1", event_id=uuid4()
    )


def sheet(activity: str, members: int, status: str = "present") -> StreamAppend:
    return StreamAppend(
        f"attendance-{activity}",
        [attendance_event(activity, f"m{i}", status) for i in range(members)],
    )
