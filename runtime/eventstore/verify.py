"""Verify a service's hash chain from the rows as they are stored (DESIGN §2.7)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import orjson

from contracts.canonical import GENESIS_HASH
from runtime.eventstore.schema import quote_schema
from runtime.eventstore.store import SELECT_EVENTS, row_to_event


@dataclass(frozen=True)
class ChainReport:
    schema: str
    events_checked: int
    head_position: int
    first_broken_position: int | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.first_broken_position is None


async def verify_chain(pool: asyncpg.Pool, schema: str, *, page: int = 5000) -> ChainReport:
    """Recompute every hash in position order; report the first position that does not hold.

    An edited row fails its own hash; a deleted row leaves a gap in positions and breaks the
    link of the next one; an inserted row breaks the link after it; a truncated tail no longer
    reaches the recorded chain head.
    """
    s = quote_schema(schema)
    checked = 0
    expected_position = 1
    expected_prev = GENESIS_HASH
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        head = await conn.fetchrow(f"SELECT position, hash FROM {s}.chain_head")
        assert head is not None
        after = 0
        while True:
            rows = await conn.fetch(
                f"SELECT {SELECT_EVENTS} FROM {s}.events WHERE position > $1 "
                "ORDER BY position LIMIT $2",
                after,
                page,
            )
            for row in rows:
                position = row["position"]
                if position != expected_position:
                    return _broken(
                        schema,
                        checked,
                        head,
                        expected_position,
                        f"position {expected_position} is missing",
                    )
                try:
                    event = row_to_event(row)
                    computed = event.computed_hash()
                except (orjson.JSONDecodeError, TypeError, ValueError) as error:
                    return _broken(schema, checked, head, position, f"unreadable row: {error}")
                if event.prev_hash != expected_prev:
                    return _broken(
                        schema,
                        checked,
                        head,
                        position,
                        f"prev_hash does not link to position {position - 1}",
                    )
                if computed != event.hash:
                    return _broken(
                        schema,
                        checked,
                        head,
                        position,
                        "content does not match its hash (the row was changed)",
                    )
                checked += 1
                expected_position += 1
                expected_prev = event.hash
            if len(rows) < page:
                break
            after = rows[-1]["position"]
        if head["position"] != checked or head["hash"] != expected_prev:
            return _broken(
                schema,
                checked,
                head,
                checked + 1,
                f"the log ends at position {checked} but its head records "
                f"position {head['position']}",
            )
    return ChainReport(schema, checked, head["position"])


def _broken(
    schema: str, checked: int, head: asyncpg.Record, position: int, reason: str
) -> ChainReport:
    return ChainReport(schema, checked, head["position"], position, reason)
