"""Delivering reminders: when they fall due, once each, across replicas and restarts.

A replica claims due deliveries with `FOR UPDATE SKIP LOCKED` and a lease; another replica can
take a delivery over only when its lease has run out (its replica died mid-delivery). The
channel is told the delivery id, so a repeat after such a takeover is recognised: the Redis
stream channel adds an entry for a delivery id at most once, webhooks and e-mails carry it for
the receiver. Each delivery is recorded in notify's log as `reminder.sent` (or `reminder.failed`
once retries are exhausted), which is what a rebuild reads: a replay sends nothing.

The loop sleeps until the next delivery falls due (or until new ones are planned: NOTIFY), never
polling faster than that; the clock is injected so tests can move time.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid5

import asyncpg

from contracts.events import ReminderFailed, ReminderSent, ReminderSkipped
from runtime.clock import Clock, wait_at_most
from runtime.eventstore import EventMetadata, EventStore, NewEvent, StreamAppend
from runtime.eventstore.schema import quote_schema
from runtime.logs import get_logger
from services.notify.channels import Attempt, Channel, Outcome, Outgoing
from services.notify.domain.config import NotifyConfig, duration
from services.notify.domain.reminders import DeadlineView, render
from services.notify.handlers import NotifyService, deadline_stream
from services.notify.projections import CONCLUDED, concluded

log = get_logger("notify.scheduler")

#: Even when no wake-up comes (a notification lost in an outage), look again this often.
MAX_SLEEP_SECONDS = 30.0
#: Deliveries claimed at a time: small, so replicas share the work and a crash strands little.
CLAIM_BATCH = 10


class ReminderScheduler:
    def __init__(
        self,
        service: NotifyService,
        channels: dict[str, Channel],
        config: NotifyConfig,
        clock: Clock,
        replica: str,
    ) -> None:
        self.service = service
        self.store: EventStore = service.store
        self.pool: asyncpg.Pool = service.store.pool
        self._s = quote_schema(service.store.schema)
        self.channels = channels
        self.config = config
        self.clock = clock
        self.replica = replica
        self._wake = asyncio.Event()

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        listener = None
        try:
            while True:
                try:
                    if listener is None:
                        listener = await self.pool.acquire()
                        await listener.add_listener(f"{self.store.schema}_deliveries", self._poke)
                    await self.run_due()
                    await wait_at_most(self._wake, await self._sleep_seconds())
                    self._wake.clear()
                    if listener.is_closed():  # the database went away: no wake-ups would come
                        raise asyncpg.InterfaceError("scheduler's listening connection lost")
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a database or Redis outage: try again shortly
                    log.warning("scheduler interrupted; retrying", error=repr(error))
                    if listener is not None:
                        with contextlib.suppress(Exception):
                            await self.pool.release(listener)
                        listener = None
                    await asyncio.sleep(1.0)
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(f"{self.store.schema}_deliveries", self._poke)
                with contextlib.suppress(Exception):
                    await self.pool.release(listener)

    def _poke(self, *_: object) -> None:
        self._wake.set()

    async def _sleep_seconds(self) -> float:
        now = self.clock()
        next_due = await self.pool.fetchval(
            f"SELECT min(t) FROM (SELECT min(next_attempt_at) AS t FROM {self._s}.deliveries "
            "WHERE status = 'pending' UNION ALL SELECT min(lease_until) FROM "
            f"{self._s}.deliveries WHERE status = 'delivering' UNION ALL SELECT min(due_at) "
            f"FROM {self._s}.deadlines WHERE status = 'open' AND missed_at IS NULL "
            "AND kind <> 'meeting') AS due"
        )
        if next_due is None:
            return MAX_SLEEP_SECONDS
        seconds: float = (next_due - now).total_seconds()
        return min(MAX_SLEEP_SECONDS, max(0.05, seconds))

    # -- one round --------------------------------------------------------------------------------

    async def run_due(self) -> int:
        """Deliver everything due now; mark deadlines that passed unmet. Returns deliveries."""
        now = self.clock()
        await self._mark_missed(now)
        delivered = 0
        while True:
            claimed = await self._claim(now)
            if not claimed:
                return delivered
            for row in claimed:
                delivered += await self._deliver(row, now)

    async def _mark_missed(self, now: datetime) -> None:
        rows = await self.pool.fetch(
            f"SELECT deadline_id FROM {self._s}.deadlines WHERE status = 'open' "
            "AND missed_at IS NULL AND due_at < $1 AND kind <> 'meeting' ORDER BY due_at LIMIT 500",
            now,
        )
        for row in rows:
            await self.service.missed(row["deadline_id"], now)
        if rows:
            await self.service.settled()

    async def _claim(self, now: datetime) -> list[asyncpg.Record]:
        lease = now + timedelta(seconds=self.config.lease_seconds)
        async with self.pool.acquire() as conn, conn.transaction():
            return await conn.fetch(
                f"UPDATE {self._s}.deliveries d SET status = 'delivering', lease_until = $2, "
                "claimed_by = $3, attempts = d.attempts + 1 FROM (SELECT delivery_id FROM "
                f"{self._s}.deliveries WHERE (status = 'pending' AND next_attempt_at <= $1) "
                "OR (status = 'delivering' AND lease_until < $1) ORDER BY next_attempt_at "
                "LIMIT $4 FOR UPDATE SKIP LOCKED) due WHERE d.delivery_id = due.delivery_id "
                "RETURNING d.*",
                now,
                lease,
                self.replica,
                CLAIM_BATCH,
            )

    async def _deliver(self, row: asyncpg.Record, now: datetime) -> int:
        deadline = await self.pool.fetchrow(
            f"SELECT * FROM {self._s}.deadlines WHERE deadline_id = $1", row["deadline_id"]
        )
        if deadline is None or deadline["status"] != "open" or deadline["due_at"] is None:
            await self._cancel(row)
            return 0
        view = DeadlineView(
            deadline["deadline_id"],
            deadline["kind"],
            deadline["title"],
            deadline["branch_id"],
            deadline["member_id"],
            deadline["due_at"],
        )
        stale = now - row["send_at"] > duration(self.config.stale_after)
        # "Due in 1 h" after the due time (a meeting entered once it had begun) misleads.
        overtaken = row["lead_seconds"] >= 0 and view.due_at <= now
        if (stale or overtaken) and row["attempts"] <= 1:
            await self._conclude(
                row,
                view,
                ReminderSkipped(
                    **_reminder_of(row, view),
                    skipped_at=self.clock(),
                    reason="too late to be useful" if stale else "the due time has passed",
                ),
            )
            return 0
        email = await self.pool.fetchval(
            f"SELECT email FROM {self._s}.recipients WHERE recipient_id = $1", row["recipient_id"]
        )
        outgoing = Outgoing(
            row["delivery_id"],
            view,
            row["recipient_id"],
            row["lead_seconds"],
            render(view, row["lead_seconds"], self.service.calendar.zone),
            email,
        )
        channel = self.channels.get(row["channel"])
        attempt = (
            await channel.send(outgoing)
            if channel is not None
            else Attempt(Outcome.FAILED, f"channel {row['channel']} is not available")
        )
        if attempt.outcome is Outcome.DELIVERED:
            await self._conclude(
                row,
                view,
                ReminderSent(
                    **_reminder_of(row, view),
                    sent_at=self.clock(),
                    attempts=row["attempts"],
                ),
            )
            return 1
        if attempt.outcome is Outcome.RETRY and row["attempts"] < self.config.retry.attempts:
            backoff = min(
                self.config.retry.max_backoff_seconds,
                self.config.retry.backoff_seconds * 2 ** (row["attempts"] - 1),
            )
            await self.pool.execute(
                f"UPDATE {self._s}.deliveries SET status = 'pending', lease_until = NULL, "
                "next_attempt_at = $2, last_error = $3 WHERE delivery_id = $1 AND claimed_by = $4",
                row["delivery_id"],
                now + timedelta(seconds=backoff),
                attempt.detail,
                self.replica,
            )
            log.info(
                "reminder will be retried",
                delivery=str(row["delivery_id"]),
                attempt=row["attempts"],
                error=attempt.detail,
            )
            return 0
        await self._conclude(
            row,
            view,
            ReminderFailed(
                **_reminder_of(row, view),
                failed_at=self.clock(),
                attempts=row["attempts"],
                reason=(attempt.detail or "failed")[:200],
            ),
        )
        log.warning(
            "reminder dead-lettered", delivery=str(row["delivery_id"]), error=attempt.detail
        )
        return 0

    async def _conclude(
        self,
        row: asyncpg.Record,
        view: DeadlineView,
        event: ReminderSent | ReminderFailed | ReminderSkipped,
    ) -> None:
        """Record how the delivery ended (one event per delivery, even when a replica that took
        it over records it again: the id is derived from the delivery's), and leave the row as
        folding that event leaves it."""
        event_id = uuid5(row["delivery_id"], event.event_type)
        if not await self.store.existing_event_ids([event_id]):
            await self.store.append(
                StreamAppend(
                    deadline_stream(view.deadline_id),
                    [
                        NewEvent.from_payload(
                            event,
                            occurred_at=self.clock(),
                            branch_id=view.branch_id,
                            event_id=event_id,
                        )
                    ],
                ),
                metadata=EventMetadata("notify", "system"),
            )
        outcome = concluded(event)
        await self.pool.execute(
            f"UPDATE {self._s}.deliveries SET status = $2, sent_at = $3, attempts = $4, "
            f"last_error = $5, {CONCLUDED} WHERE delivery_id = $1",
            outcome.delivery_id,
            outcome.status,
            outcome.at,
            outcome.attempts,
            outcome.error,
        )

    async def _cancel(self, row: asyncpg.Record) -> None:
        """The deadline closed while the delivery waited: as the fold of its closing leaves it."""
        await self.pool.execute(
            f"DELETE FROM {self._s}.deliveries WHERE delivery_id = $1 AND claimed_by = $2",
            row["delivery_id"],
            self.replica,
        )


def _reminder_of(row: asyncpg.Record, view: DeadlineView) -> dict[str, Any]:
    """What every reminder event says of its delivery: the deadline, the recipient and how."""
    return {
        "deadline_id": view.deadline_id,
        "kind": view.kind,
        "branch_id": view.branch_id,
        "member_id": view.member_id,
        "recipient_id": row["recipient_id"],
        "channel": row["channel"],
        "lead_seconds": row["lead_seconds"],
        "role": row["role"],
    }
