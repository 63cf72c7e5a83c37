"""Notify's projections.

* `DeadlinesFromEvents` (consumer): what the other services publish becomes deadline events
  in notify's own log.
* `DeadlineBoard` (local, from notify's own log): the deadlines, and the reminder deliveries
  planned for each. Delivery states come from the log too (`reminder.sent`, `reminder.failed`),
  so a rebuild ends where it started and sends nothing that was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from contracts.catalogue import CATALOGUE
from contracts.envelope import Family
from contracts.events import (
    DeadlineMet,
    DeadlineMissed,
    DeadlineScheduled,
    DeadlineWithdrawn,
    ReminderFailed,
    ReminderSent,
    ReminderSkipped,
)
from contracts.events.deadline import Channel
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema
from services.notify.domain.config import NotifyConfig, Role
from services.notify.domain.deadlines import Calendar, Intent, Meet, Schedule, Withdraw, derive
from services.notify.domain.reminders import DeadlineView, delivery_id, plan
from services.notify.handlers import NotifyService

SOURCE_FAMILIES: tuple[Family, ...] = ("member", "activity", "attendance", "report", "score")


#: Events after which the recipients of a branch's deadlines may have changed: the members
#: (only meetings are sent to every member of a branch or group) or the secretary and school.
MEMBER_CHANGES = frozenset({"member.enrolled", "member.moved", "member.transferred_out"})
OFFICE_CHANGES = frozenset({"branch.committee_elected", "org.unit_registered"})


class DeadlinesFromEvents:
    name = "deadlines_from_events"
    event_types = CATALOGUE.types_of(*SOURCE_FAMILIES)

    def __init__(self, service: NotifyService, board: DeadlineBoard) -> None:
        self._service = service
        self._board = board

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        members_changed: set[str] = set()
        offices_changed: set[str] = set()
        met: set[str] = set()  # a sheet of 100 lines meets its meeting once, not 100 times
        for event in events:
            intents = derive(
                event.payload,
                event.occurred_at,
                event.branch_id,
                event.position,
                self._service.calendar,
            )
            intents = _unmet(intents, met)
            if intents:
                await self._service.apply_intents(
                    intents, event.event_id, event.envelope.correlation_id, event.occurred_at
                )
            if event.branch_id and event.type in MEMBER_CHANGES:
                members_changed.add(event.branch_id)
            if event.branch_id and event.type in OFFICE_CHANGES:
                offices_changed.add(event.branch_id)
        members_changed -= offices_changed
        if members_changed or offices_changed:
            # Plan open deadlines anew for their new recipients.
            await self._service.settled()
            async with self._service.store.pool.acquire() as own, own.transaction():
                await self._board.replan(own, sorted(offices_changed))
                await self._board.replan(own, sorted(members_changed), kinds=["meeting"])


class ErasedRecipients:
    """A member erased (个人信息保护法) is no longer anyone's recipient: their preferences and
    e-mail address go with their personal data (they left years before; nothing is due)."""

    name = "erased_recipients"
    event_types = frozenset({"member.erased"})

    def __init__(self, schema: str) -> None:
        self._s = quote_schema(schema)

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        erased = [str(getattr(e.payload, "member_id", "")) for e in events]
        await conn.execute(
            f"DELETE FROM {self._s}.recipients WHERE recipient_id = ANY($1::text[])", erased
        )


def _unmet(intents: Sequence[Intent], met: set[str]) -> list[Intent]:
    """The intents less a Meet of a deadline already met earlier in the batch (and not
    scheduled again since): it would decide nothing."""
    kept: list[Intent] = []
    for intent in intents:
        if isinstance(intent, Meet):
            if intent.deadline_id in met:
                continue
            met.add(intent.deadline_id)
        elif isinstance(intent, Schedule | Withdraw):
            met.discard(intent.deadline_id)
        kept.append(intent)
    return kept


#: A delivery that ends keeps no scheduling state, so that the live row and the row folded
#: again from the log are the same (`party rebuild`).
CONCLUDED = "lease_until = NULL, claimed_by = NULL, next_attempt_at = send_at"


@dataclass(frozen=True)
class Conclusion:
    delivery_id: UUID
    status: str
    at: datetime | None
    attempts: int
    error: str | None


def concluded(event: ReminderSent | ReminderFailed | ReminderSkipped) -> Conclusion:
    """How a reminder event leaves its delivery (the fold and the scheduler both use it)."""
    delivery = delivery_id(event.deadline_id, event.recipient_id, event.channel, event.lead_seconds)
    match event:
        case ReminderSent():
            return Conclusion(delivery, "sent", event.sent_at, event.attempts, None)
        case ReminderFailed():
            return Conclusion(delivery, "dead", event.failed_at, event.attempts, event.reason)
        case ReminderSkipped():
            return Conclusion(delivery, "skipped", None, 1, event.reason)


class DeadlineBoard:
    name = "deadline_board"
    event_types = frozenset(
        {
            "deadline.scheduled",
            "deadline.met",
            "deadline.missed",
            "deadline.withdrawn",
            "reminder.sent",
            "reminder.failed",
            "reminder.skipped",
        }
    )

    def __init__(self, schema: str, config: NotifyConfig, zone: ZoneInfo) -> None:
        self._s = quote_schema(schema)
        self._schema = schema
        self._config = config
        self._calendar = Calendar(config, zone)

    async def reset(self, conn: Connection) -> None:
        await conn.execute(f"TRUNCATE {self._s}.deadlines, {self._s}.deliveries")

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        s = self._s
        planned_any = False
        for event in events:
            p = event.payload
            match p:
                case DeadlineScheduled():
                    await conn.execute(
                        f"INSERT INTO {s}.deadlines (deadline_id, kind, title, branch_id, "
                        "member_id, group_id, due_at, revision) VALUES ($1, $2, $3, $4, $5, $6, "
                        "$7, $8) ON CONFLICT (deadline_id) DO UPDATE SET due_at = EXCLUDED.due_at, "
                        "revision = EXCLUDED.revision, title = EXCLUDED.title",
                        p.deadline_id,
                        p.kind,
                        p.title,
                        p.branch_id,
                        p.member_id,
                        p.group_id,
                        p.due_at,
                        p.revision,
                    )
                    await self._plan(
                        conn,
                        DeadlineView(
                            p.deadline_id, p.kind, p.title, p.branch_id, p.member_id, p.due_at
                        ),
                        p.group_id,
                    )
                    planned_any = True
                case DeadlineMet() | DeadlineWithdrawn():
                    status = "met" if isinstance(p, DeadlineMet) else "withdrawn"
                    await conn.execute(
                        f"INSERT INTO {s}.deadlines (deadline_id, kind, title, branch_id, "
                        "member_id, status, met_at, reason) "
                        "VALUES ($1, $2, $2, $3, $4, $5, $6, $7) "
                        "ON CONFLICT (deadline_id) DO UPDATE SET status = EXCLUDED.status, "
                        "met_at = EXCLUDED.met_at, reason = EXCLUDED.reason",
                        p.deadline_id,
                        p.kind,
                        p.branch_id,
                        p.member_id,
                        status,
                        p.met_at if isinstance(p, DeadlineMet) else None,
                        p.reason if isinstance(p, DeadlineWithdrawn) else None,
                    )
                    # What was not sent is forgotten rather than kept as cancelled: who would
                    # have been reminded depends on the roster as it was, which a rebuild
                    # cannot see; what was sent, failed or skipped stays, from its event.
                    await conn.execute(
                        f"DELETE FROM {s}.deliveries WHERE deadline_id = $1 AND status = 'pending'",
                        p.deadline_id,
                    )
                case DeadlineMissed():
                    await conn.execute(
                        f"UPDATE {s}.deadlines SET missed_at = $2 WHERE deadline_id = $1",
                        p.deadline_id,
                        p.noticed_at,
                    )
                case ReminderSent() | ReminderFailed() | ReminderSkipped():
                    # An upsert: the delivery may have been concluded after its deadline closed
                    # (a scheduler racing the closing), when a fold has already let it go.
                    outcome = concluded(p)
                    await conn.execute(
                        f"INSERT INTO {s}.deliveries (delivery_id, deadline_id, recipient_id, "
                        "role, channel, lead_seconds, send_at, next_attempt_at, status, sent_at, "
                        "attempts, last_error) SELECT $1, $6, $7, coalesce($8, 'member'), $9, "
                        "$10::integer, due_at - $10::integer * interval '1 second', "
                        "due_at - $10::integer * interval '1 second', $2, $3, $4, $5 "
                        f"FROM {s}.deadlines WHERE deadline_id = $6 "
                        "ON CONFLICT (delivery_id) DO UPDATE SET status = EXCLUDED.status, "
                        "sent_at = EXCLUDED.sent_at, attempts = EXCLUDED.attempts, "
                        "last_error = EXCLUDED.last_error, lease_until = NULL, "
                        "claimed_by = NULL, next_attempt_at = deliveries.send_at",
                        outcome.delivery_id,
                        outcome.status,
                        outcome.at,
                        outcome.attempts,
                        outcome.error,
                        p.deadline_id,
                        p.recipient_id,
                        p.role,
                        p.channel,
                        p.lead_seconds,
                    )
        if planned_any:
            await conn.execute("SELECT pg_notify($1, '')", f"{self._schema}_deliveries")

    async def replan(
        self, conn: Connection, branch_ids: Sequence[str], kinds: Sequence[str] | None = None
    ) -> None:
        if not branch_ids:
            return
        rows = await conn.fetch(
            f"SELECT deadline_id, kind, title, branch_id, member_id, group_id, due_at FROM "
            f"{self._s}.deadlines WHERE branch_id = ANY($1::text[]) AND status = 'open' "
            "AND due_at IS NOT NULL AND ($2::text[] IS NULL OR kind = ANY($2::text[])) "
            "ORDER BY deadline_id",
            list(branch_ids),
            list(kinds) if kinds is not None else None,
        )
        for row in rows:
            await self._plan(
                conn,
                DeadlineView(
                    row["deadline_id"],
                    row["kind"],
                    row["title"],
                    row["branch_id"],
                    row["member_id"],
                    row["due_at"],
                ),
                row["group_id"],
            )
        if rows:
            await conn.execute("SELECT pg_notify($1, '')", f"{self._schema}_deliveries")

    async def _plan(self, conn: Connection, deadline: DeadlineView, group_id: str | None) -> None:
        recipients = await self._recipients(conn, deadline, group_id)
        preferences = {
            r["recipient_id"]: list(r["channels"])
            for r in await conn.fetch(
                f"SELECT recipient_id, channels FROM {self._s}.recipients "
                "WHERE recipient_id = ANY($1::text[])",
                [r for ids in recipients.values() for r in ids],
            )
        }

        def channels_of(recipient: str) -> Sequence[Channel]:
            return preferences.get(recipient) or self._config.default_channels

        planned = plan(deadline, recipients, channels_of, self._config)
        ids = [p.delivery_id for p in planned]
        # Pending deliveries follow the deadline and the roster as it is now (the recipient's
        # role too: the secretary may be the member); sent ones stay sent; obsolete ones go.
        await conn.execute(
            f"DELETE FROM {self._s}.deliveries WHERE deadline_id = $1 "
            "AND status = 'pending' AND NOT (delivery_id = ANY($2::uuid[]))",
            deadline.deadline_id,
            ids,
        )
        await conn.executemany(
            f"INSERT INTO {self._s}.deliveries (delivery_id, deadline_id, recipient_id, role, "
            "channel, lead_seconds, send_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, "
            "$7) ON CONFLICT (delivery_id) DO UPDATE SET send_at = EXCLUDED.send_at, "
            "next_attempt_at = EXCLUDED.next_attempt_at, role = EXCLUDED.role "
            "WHERE deliveries.status = 'pending' AND (deliveries.send_at <> EXCLUDED.send_at "
            "OR deliveries.role <> EXCLUDED.role)",
            [
                (
                    p.delivery_id,
                    p.deadline_id,
                    p.recipient_id,
                    p.role,
                    p.channel,
                    p.lead_seconds,
                    p.send_at,
                )
                for p in planned
            ],
        )

    async def _recipients(
        self, conn: Connection, deadline: DeadlineView, group_id: str | None
    ) -> dict[Role, list[str]]:
        s = self._s
        recipients: dict[Role, list[str]] = {"member": [], "secretary": [], "school_office": []}
        if deadline.member_id:
            recipients["member"] = [deadline.member_id]
        elif deadline.kind == "meeting" and deadline.branch_id:
            day = self._calendar.day(deadline.due_at)
            recipients["member"] = await self._attendees(conn, deadline.branch_id, group_id, day)
        if deadline.branch_id:
            secretary = await conn.fetchval(
                f"SELECT secretary_id FROM {s}.directory_committees WHERE branch_id = $1",
                deadline.branch_id,
            )
            if secretary:
                recipients["secretary"] = [secretary]
            school = await conn.fetchval(
                f"SELECT parent_id FROM {s}.directory_units WHERE unit_id = $1 AND kind = 'branch'",
                deadline.branch_id,
            )
            if school:
                recipients["school_office"] = [self._config.school_office(school)]
        return recipients

    async def _attendees(
        self, conn: Connection, branch_id: str, group_id: str | None, day: date
    ) -> list[str]:
        rows = await conn.fetch(
            f"SELECT member_id, group_id FROM {self._s}.directory_members WHERE branch_id = $1 "
            "AND enrolled_on <= $2 AND (transferred_on IS NULL OR transferred_on > $2) "
            "ORDER BY member_id",
            branch_id,
            day,
        )
        return [r["member_id"] for r in rows if group_id is None or r["group_id"] == group_id]
