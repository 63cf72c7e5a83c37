"""Questions notify answers: deadlines of a member, a branch or a school; the delivery log of a
deadline; dead letters; a branch's calendar."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from runtime.eventstore.schema import quote_schema

STATUS_FILTER = {
    "upcoming": "d.status = 'open' AND d.due_at >= $2",
    "overdue": "d.status = 'open' AND d.due_at < $2 AND d.kind <> 'meeting'",
    "all": "$2::timestamptz IS NOT NULL",
}


class NotifyQueries:
    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._s = quote_schema(schema)

    async def deadlines(
        self,
        *,
        status: str,
        now: datetime,
        member_id: str | None = None,
        branch_ids: list[str] | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT d.deadline_id, d.kind, d.title, d.branch_id, d.member_id, d.due_at, "
            f"d.revision, d.status, d.met_at, d.missed_at, d.reason FROM {self._s}.deadlines d "
            f"WHERE {STATUS_FILTER[status]} AND ($1::text IS NULL OR d.member_id = $1) "
            "AND ($3::text[] IS NULL OR d.branch_id = ANY($3)) "
            "ORDER BY d.due_at NULLS LAST, d.deadline_id LIMIT $4",
            member_id,
            now,
            branch_ids,
            limit,
        )
        return [dict(r) for r in rows]

    async def deadline(self, deadline_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.deadlines WHERE deadline_id = $1", deadline_id
        )
        if row is None:
            return None
        deliveries = await self._pool.fetch(
            f"SELECT delivery_id, recipient_id, role, channel, lead_seconds, send_at, status, "
            f"attempts, last_error, sent_at FROM {self._s}.deliveries WHERE deadline_id = $1 "
            "ORDER BY send_at, recipient_id, channel",
            deadline_id,
        )
        return {**dict(row), "deliveries": [dict(d) for d in deliveries]}

    async def dead_letters(self, branch_ids: list[str] | None, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT l.delivery_id, l.deadline_id, d.branch_id, l.recipient_id, l.channel, "
            f"l.lead_seconds, l.attempts, l.last_error FROM {self._s}.deliveries l "
            f"JOIN {self._s}.deadlines d USING (deadline_id) WHERE l.status = 'dead' "
            "AND ($1::text[] IS NULL OR d.branch_id = ANY($1)) ORDER BY l.send_at DESC LIMIT $2",
            branch_ids,
            limit,
        )
        return [dict(r) for r in rows]

    async def set_channels(
        self, recipient_id: str, channels: list[str], email: str | None, by: str, now: datetime
    ) -> None:
        await self._pool.execute(
            f"INSERT INTO {self._s}.recipients VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (recipient_id) DO UPDATE SET channels = EXCLUDED.channels, "
            "email = EXCLUDED.email, updated_by = EXCLUDED.updated_by, "
            "updated_at = EXCLUDED.updated_at",
            recipient_id,
            channels,
            email,
            by,
            now,
        )

    async def recipient(self, recipient_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.recipients WHERE recipient_id = $1", recipient_id
        )
        return dict(row) if row else None
