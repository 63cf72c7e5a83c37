"""Questions the activities service answers from its read models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg
import orjson

from runtime.eventstore.schema import quote_schema


class ActivitiesQueries:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._s = quote_schema(schema)

    async def activity(self, activity_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.activities WHERE activity_id = $1", activity_id
        )
        if row is None:
            return None
        record = dict(row)
        record["attendees"] = orjson.loads(record["attendees"])
        return record

    async def activities(
        self, branch_id: str, start: datetime | None, end: datetime | None, kind: str | None
    ) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT activity_id, kind, title, group_id, starts_at, ends_at, place, cancelled "
            f"FROM {self._s}.activities WHERE branch_id = $1 "
            "AND ($2::timestamptz IS NULL OR starts_at >= $2) "
            "AND ($3::timestamptz IS NULL OR starts_at < $3) AND ($4::text IS NULL OR kind = $4) "
            "ORDER BY starts_at, activity_id",
            branch_id,
            start,
            end,
            kind,
        )
        return [dict(r) for r in rows]

    async def attendance(self, activity_id: str) -> dict[str, Any]:
        history = await self._pool.fetch(
            f"SELECT member_id, status, excuse, kind, reason, actor_id, recorded_at, event_id "
            f"FROM {self._s}.attendance_log WHERE activity_id = $1 ORDER BY position",
            activity_id,
        )
        current: dict[str, dict[str, Any]] = {}
        for row in history:
            current[row["member_id"]] = {"status": row["status"], "excuse": row["excuse"]}
        return {
            "activity_id": activity_id,
            "current": dict(sorted(current.items())),
            "history": [dict(r) for r in history],
        }

    async def obligation(self, obligation_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.obligations WHERE obligation_id = $1", obligation_id
        )
        return dict(row) if row else None

    async def obligations(
        self,
        *,
        member_id: str | None = None,
        branch_id: str | None = None,
        status: str = "pending",
        as_of: date | None = None,
    ) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._s}.obligations WHERE ($1::text IS NULL OR member_id = $1) "
            "AND ($2::text IS NULL OR branch_id = $2) "
            "AND ($3 = 'all' OR ($3 = 'pending' AND NOT withdrawn AND submitted_at IS NULL) "
            "OR ($3 = 'overdue' AND NOT withdrawn AND submitted_at IS NULL AND due_on < $4)) "
            "ORDER BY due_on, obligation_id",
            member_id,
            branch_id,
            status,
            as_of or date.max,
        )
        return [dict(r) for r in rows]

    async def obligation_ids(self, branch_id: str) -> set[str]:
        rows = await self._pool.fetch(
            f"SELECT obligation_id FROM {self._s}.obligations WHERE branch_id = $1", branch_id
        )
        return {r["obligation_id"] for r in rows}

    async def expenses(self, branch_id: str, year: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT expense_id, line, amount_fen, activity_id, spent_on, description, "
            f"approver_id, override_reason, recorded_by FROM {self._s}.expenses "
            "WHERE branch_id = $1 AND year = $2 ORDER BY spent_on, expense_id",
            branch_id,
            year,
        )
        return [dict(r) for r in rows]
