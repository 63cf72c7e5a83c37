"""The activities service's read models: a fold of its own log into tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from contracts.catalogue import CATALOGUE
from contracts.events import (
    ActivityCancelled,
    ActivityRescheduled,
    ActivityScheduled,
    AttendanceCorrected,
    AttendanceRecorded,
    BudgetPlanned,
    ExpenseRecorded,
    ReportCadenceSet,
    ReportRequired,
    ReportReviewed,
    ReportSubmitted,
    ReportWithdrawn,
)
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema

TABLES = (
    "activities",
    "attendance_log",
    "report_cadences",
    "obligations",
    "budget_lines",
    "expenses",
)


class ActivitiesReadModels:
    name = "activities_read_models"
    event_types = CATALOGUE.types_of("activity", "attendance", "report")

    def __init__(self, schema: str) -> None:
        self._s = quote_schema(schema)

    async def reset(self, conn: Connection) -> None:
        await conn.execute(f"TRUNCATE {', '.join(f'{self._s}.{t}' for t in TABLES)}")

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        # Runs of inserts of one kind (activities scheduled, a sheet's lines, obligations
        # planned) go in one `executemany`; everything else in log order, one at a time.
        run: list[IncomingEvent] = []
        for event in events:
            kind = _insert_kind(event)
            if run and (kind is None or kind != _insert_kind(run[0])):
                await self._insert(conn, run)
                run = []
            if kind is None:
                await self._apply_one(conn, event)
            else:
                run.append(event)
        if run:
            await self._insert(conn, run)

    async def _insert(self, conn: Connection, run: Sequence[IncomingEvent]) -> None:
        s = self._s
        if len(run) == 1:
            await self._apply_one(conn, run[0])
            return
        kind = _insert_kind(run[0])
        if kind == "activity":
            await conn.executemany(
                f"INSERT INTO {s}.activities VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                "$9::jsonb, $10, $11, $12, $13, $14, false, NULL)",
                [_activity_row(e.payload) for e in run if isinstance(e.payload, ActivityScheduled)],
            )
        elif kind == "attendance":
            await conn.executemany(
                f"INSERT INTO {s}.attendance_log VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [_attendance_row(e) for e in run],
            )
        else:
            await conn.executemany(
                f"INSERT INTO {s}.obligations (obligation_id, member_id, kind, branch_id, "
                "due_on, period_label) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (p.obligation_id, p.member_id, p.kind, p.branch_id, p.due_on, p.period_label)
                    for e in run
                    if isinstance(p := e.payload, ReportRequired)
                ],
            )

    async def _apply_one(self, conn: Connection, event: IncomingEvent) -> None:
        s, p = self._s, event.payload
        match p:
            case ActivityScheduled():
                await conn.execute(
                    f"INSERT INTO {s}.activities VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                    "$9::jsonb, $10, $11, $12, $13, $14, false, NULL)",
                    *_activity_row(p),
                )
            case ActivityRescheduled():
                await conn.execute(
                    f"UPDATE {s}.activities SET starts_at = $2, ends_at = $3, place = $4 "
                    "WHERE activity_id = $1",
                    p.activity_id,
                    p.starts_at,
                    p.ends_at,
                    p.place,
                )
            case ActivityCancelled():
                await conn.execute(
                    f"UPDATE {s}.activities SET cancelled = true, cancel_reason = $2 "
                    "WHERE activity_id = $1",
                    p.activity_id,
                    p.reason,
                )
            case AttendanceRecorded() | AttendanceCorrected():
                await conn.execute(
                    f"INSERT INTO {s}.attendance_log VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                    "$9, $10)",
                    *_attendance_row(event),
                )
            case ReportCadenceSet():
                await conn.execute(
                    f"INSERT INTO {s}.report_cadences VALUES ($1, $2, $3) ON CONFLICT (branch_id) "
                    "DO UPDATE SET every_weeks = EXCLUDED.every_weeks, "
                    "starts_on = EXCLUDED.starts_on",
                    p.branch_id,
                    p.every_weeks,
                    p.starts_on,
                )
            case ReportRequired():
                await conn.execute(
                    f"INSERT INTO {s}.obligations (obligation_id, member_id, kind, branch_id, "
                    "due_on, period_label) VALUES ($1, $2, $3, $4, $5, $6)",
                    p.obligation_id,
                    p.member_id,
                    p.kind,
                    p.branch_id,
                    p.due_on,
                    p.period_label,
                )
            case ReportWithdrawn():
                await conn.execute(
                    f"UPDATE {s}.obligations SET withdrawn = true, withdraw_reason = $2 "
                    "WHERE obligation_id = $1",
                    p.obligation_id,
                    p.reason,
                )
            case ReportSubmitted():
                await conn.execute(
                    f"UPDATE {s}.obligations SET submitted_at = $2, on_time = $3, days_late = $4 "
                    "WHERE obligation_id = $1",
                    p.obligation_id,
                    p.submitted_at,
                    p.on_time,
                    p.days_late,
                )
            case ReportReviewed():
                await conn.execute(
                    f"UPDATE {s}.obligations SET grade = $2, reviewer_id = $3, reviews = $4 "
                    "WHERE obligation_id = $1",
                    p.obligation_id,
                    p.grade,
                    p.reviewer_id,
                    p.review_number,
                )
            case BudgetPlanned():
                await conn.execute(
                    f"DELETE FROM {s}.budget_lines WHERE budget_id = $1", p.budget_id
                )
                await conn.executemany(
                    f"INSERT INTO {s}.budget_lines VALUES ($1, $2, $3, $4, $5)",
                    [
                        (p.budget_id, p.branch_id, p.year, line.line, line.amount_fen)
                        for line in p.lines
                    ],
                )
            case ExpenseRecorded():
                await conn.execute(
                    f"INSERT INTO {s}.expenses VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                    "$11, $12)",
                    p.expense_id,
                    p.budget_id,
                    p.branch_id,
                    p.year,
                    p.line,
                    p.amount_fen,
                    p.activity_id,
                    p.spent_on,
                    p.description,
                    p.override.approver_id if p.override else None,
                    p.override.reason if p.override else None,
                    event.envelope.actor.id,
                )


def _insert_kind(event: IncomingEvent) -> str | None:
    """Which run of plain inserts an event belongs to (None: applied on its own)."""
    match event.payload:
        case ActivityScheduled():
            return "activity"
        case AttendanceRecorded() | AttendanceCorrected():
            return "attendance"
        case ReportRequired():
            return "obligation"
    return None


def _activity_row(p: ActivityScheduled) -> tuple[Any, ...]:
    return (
        p.activity_id,
        p.kind,
        p.title,
        p.branch_id,
        p.group_id,
        p.starts_at,
        p.ends_at,
        p.place,
        orjson.dumps(p.attendees.model_dump(mode="json")).decode(),
        p.partner,
        p.base,
        p.volunteer_hours,
        p.planned_cost_fen,
        p.budget_line,
    )


def _attendance_row(event: IncomingEvent) -> tuple[Any, ...]:
    p = event.payload
    assert isinstance(p, AttendanceRecorded | AttendanceCorrected)
    corrected = isinstance(p, AttendanceCorrected)
    return (
        event.position,
        event.event_id,
        p.activity_id,
        p.member_id,
        p.status,
        p.excuse,
        "corrected" if corrected else "recorded",
        p.reason if isinstance(p, AttendanceCorrected) else None,
        event.envelope.actor.id,
        event.recorded_at,
    )
