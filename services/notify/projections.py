"""Notify's projections.

* `DeadlinesFromEvents` (consumer): what the other services publish becomes deadline events
  in notify's own log.
* `DeadlineBoard` (local, from notify's own log): the deadlines, and the reminder deliveries
  planned for each. Delivery states come from the log too (`reminder.sent`, `reminder.failed`),
  so a rebuild ends where it started and sends nothing that was sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

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
from runtime.commands import (
    BatchCommand,
    Change,
    Decision,
    LoadedStream,
    StreamCache,
    execute_batch,
)
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema
from services.notify.domain import deadlines
from services.notify.domain.config import NotifyConfig, Role
from services.notify.domain.deadlines import Calendar, Intent, Meet, Schedule, Withdraw, derive
from services.notify.domain.reminders import DeadlineView, delivery_id, plan
from services.notify.handlers import NotifyService, deadline_stream

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
        #: The deadline streams decided on lately (a member's lapse deadline has a revision
        #: for every sheet that names them: read once, then only what is new).
        self._streams = StreamCache()

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        members_changed: set[str] = set()
        offices_changed: set[str] = set()
        met: set[str] = set()  # a sheet of 100 lines meets its meeting once, not 100 times
        # The deadlines' decisions of the batch are made together (runtime.commands.
        # execute_batch): a round trip or two and one commit for all of them. An intent that
        # reads the board (a member who left, a kind met for a year) first has what came
        # before it decided and projected, as one event at a time would.
        batch: list[BatchCommand] = []
        for event in events:
            intents = derive(
                event.payload,
                event.occurred_at,
                event.branch_id,
                event.position,
                self._service.calendar,
            )
            for intent in _unmet(intents, met):
                if isinstance(intent, Schedule | Meet | Withdraw):
                    batch.append(self._command(intent, event))
                    continue
                await self._flush(batch)
                await self._service.apply_intents(
                    [intent], event.event_id, event.envelope.correlation_id, event.occurred_at
                )
            if event.branch_id and event.type in MEMBER_CHANGES:
                members_changed.add(event.branch_id)
            if event.branch_id and event.type in OFFICE_CHANGES:
                offices_changed.add(event.branch_id)
        await self._flush(batch)
        members_changed -= offices_changed
        if members_changed or offices_changed:
            # Plan open deadlines anew for their new recipients.
            await self._service.settled()
            async with self._service.store.pool.acquire() as own, own.transaction():
                await self._board.replan(own, sorted(offices_changed))
                await self._board.replan(own, sorted(members_changed), kinds=["meeting"])

    def _command(self, intent: Schedule | Meet | Withdraw, event: IncomingEvent) -> BatchCommand:
        """What NotifyService.decide runs for the intent, as a command of a batch (the same
        stream, idempotency key and decision)."""
        stream = deadline_stream(intent.deadline_id)
        cause, occurred_at = event.event_id, event.occurred_at

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = deadlines.fold(loaded[stream].events)
            return Decision(
                [
                    Change(stream, e, occurred_at, intent.branch_id)
                    for e in deadlines.decide(intent, state, cause)
                ]
            )

        key = f"{cause}:{intent.deadline_id}:{type(intent).__name__}"
        context = self._service.context(key, cause, event.envelope.correlation_id)
        return BatchCommand(context, [stream], decide, record_no_op=False)

    async def _flush(self, batch: list[BatchCommand]) -> None:
        if batch:
            await execute_batch(self._service.store, batch, self._streams)
            batch.clear()


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
        # A run of deadlines scheduled is written and planned together: the board's state for
        # the whole run read at once, its rows written with executemany.
        scheduled: list[DeadlineScheduled] = []
        for event in events:
            p = event.payload
            if isinstance(p, DeadlineScheduled):
                scheduled.append(p)
                planned_any = True
                continue
            if scheduled:
                await self._schedule(conn, scheduled)
                scheduled = []
            match p:
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
        if scheduled:
            await self._schedule(conn, scheduled)
        if planned_any:
            await conn.execute("SELECT pg_notify($1, '')", f"{self._schema}_deliveries")

    async def _schedule(self, conn: Connection, scheduled: Sequence[DeadlineScheduled]) -> None:
        await conn.executemany(
            f"INSERT INTO {self._s}.deadlines (deadline_id, kind, title, branch_id, "
            "member_id, group_id, due_at, revision) VALUES ($1, $2, $3, $4, $5, $6, "
            "$7, $8) ON CONFLICT (deadline_id) DO UPDATE SET due_at = EXCLUDED.due_at, "
            "revision = EXCLUDED.revision, title = EXCLUDED.title",
            [
                (
                    p.deadline_id,
                    p.kind,
                    p.title,
                    p.branch_id,
                    p.member_id,
                    p.group_id,
                    p.due_at,
                    p.revision,
                )
                for p in scheduled
            ],
        )
        # Each deadline planned once, as its last event in the run leaves it (planning it at
        # each step on the way ends in the same rows).
        last = {p.deadline_id: p for p in scheduled}
        await self._plan_many(
            conn,
            [
                (DeadlineView(p.deadline_id, p.kind, p.title, p.branch_id, p.member_id, p.due_at),
                 p.group_id)
                for p in last.values()
            ],
        )  # fmt: skip

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
        await self._plan_many(
            conn,
            [
                (
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
                for row in rows
            ],
        )
        if rows:
            await conn.execute("SELECT pg_notify($1, '')", f"{self._schema}_deliveries")

    async def _plan_many(
        self, conn: Connection, deadlines: Sequence[tuple[DeadlineView, str | None]]
    ) -> None:
        """Plan the deliveries of these deadlines (each with its group): who is reminded, by
        which channels, read for all of them at once; their rows written in two statements."""
        if not deadlines:
            return
        recipients = await self._recipients_of(conn, deadlines)
        everyone = sorted({r for each in recipients for ids in each.values() for r in ids})
        preferences = {
            r["recipient_id"]: list(r["channels"])
            for r in await conn.fetch(
                f"SELECT recipient_id, channels FROM {self._s}.recipients "
                "WHERE recipient_id = ANY($1::text[])",
                everyone,
            )
        }

        def channels_of(recipient: str) -> Sequence[Channel]:
            return preferences.get(recipient) or self._config.default_channels

        planned = [
            p
            for (deadline, _), each in zip(deadlines, recipients, strict=True)
            for p in plan(deadline, each, channels_of, self._config)
        ]
        # Pending deliveries follow the deadline and the roster as it is now (the recipient's
        # role too: the secretary may be the member); sent ones stay sent; obsolete ones go.
        # (A delivery's id is derived from its deadline's: no deadline keeps another's.)
        await conn.execute(
            f"DELETE FROM {self._s}.deliveries WHERE deadline_id = ANY($1::text[]) "
            "AND status = 'pending' AND NOT (delivery_id = ANY($2::uuid[]))",
            [deadline.deadline_id for deadline, _ in deadlines],
            [p.delivery_id for p in planned],
        )
        if not planned:
            return
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

    async def _recipients_of(
        self, conn: Connection, deadlines: Sequence[tuple[DeadlineView, str | None]]
    ) -> list[dict[Role, list[str]]]:
        """Each deadline's recipients by role: the member, or a meeting's attendees; the
        branch's secretary; the school's office."""
        s = self._s
        branches = sorted({d.branch_id for d, _ in deadlines if d.branch_id})
        secretaries: dict[str, str] = {}
        schools: dict[str, str] = {}
        members: dict[str, list[asyncpg.Record]] = {}
        if branches:
            for row in await conn.fetch(
                f"SELECT branch_id, secretary_id FROM {s}.directory_committees "
                "WHERE branch_id = ANY($1::text[])",
                branches,
            ):
                if row["secretary_id"]:
                    secretaries[row["branch_id"]] = row["secretary_id"]
            for row in await conn.fetch(
                f"SELECT unit_id, parent_id FROM {s}.directory_units "
                "WHERE unit_id = ANY($1::text[]) AND kind = 'branch'",
                branches,
            ):
                if row["parent_id"]:
                    schools[row["unit_id"]] = row["parent_id"]
        meeting_branches = sorted(
            {
                d.branch_id
                for d, _ in deadlines
                if d.branch_id and not d.member_id and d.kind == "meeting"
            }
        )
        if meeting_branches:
            for row in await conn.fetch(
                f"SELECT member_id, group_id, branch_id, enrolled_on, transferred_on "
                f"FROM {s}.directory_members WHERE branch_id = ANY($1::text[]) "
                "ORDER BY member_id",
                meeting_branches,
            ):
                members.setdefault(row["branch_id"], []).append(row)
        result: list[dict[Role, list[str]]] = []
        for deadline, group_id in deadlines:
            recipients: dict[Role, list[str]] = {"member": [], "secretary": [], "school_office": []}
            if deadline.member_id:
                recipients["member"] = [deadline.member_id]
            elif deadline.kind == "meeting" and deadline.branch_id:
                day = self._calendar.day(deadline.due_at)
                recipients["member"] = [
                    r["member_id"]
                    for r in members.get(deadline.branch_id, ())
                    if r["enrolled_on"] <= day
                    and (r["transferred_on"] is None or r["transferred_on"] > day)
                    and (group_id is None or r["group_id"] == group_id)
                ]
            if deadline.branch_id:
                if deadline.branch_id in secretaries:
                    recipients["secretary"] = [secretaries[deadline.branch_id]]
                if deadline.branch_id in schools:
                    school = schools[deadline.branch_id]
                    recipients["school_office"] = [self._config.school_office(school)]
            result.append(recipients)
        return result
