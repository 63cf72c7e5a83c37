"""Notify's service layer: turning what other services publish into deadline events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from uuid import UUID

from contracts.events import DeadlineMissed
from runtime.commands import Change, CommandContext, Decision, LoadedStream, execute
from runtime.eventstore import EventStore, IdempotencyKey
from runtime.eventstore.schema import quote_schema
from runtime.projection import LocalProjector
from services.notify.domain import deadlines
from services.notify.domain.deadlines import Intent, Meet, MeetKind, Schedule, Withdraw


def deadline_stream(deadline_id: str) -> str:
    return f"deadline-{deadline_id}"


class NotifyService:
    def __init__(
        self, store: EventStore, projector: LocalProjector | None, calendar: deadlines.Calendar
    ) -> None:
        self.store = store
        self.projector = projector
        self.calendar = calendar
        self._s = quote_schema(store.schema)

    async def settled(self) -> None:
        if self.projector is not None:
            head, _ = await self.store.head()
            await self.projector.wait_for(head)

    def context(self, key: str, cause: UUID | None, correlation: UUID | None) -> CommandContext:
        context = CommandContext(
            "notify",
            "system",
            idempotency=IdempotencyKey(f"system:{key}", fingerprint=key),
            causation_id=cause,
        )
        return replace(context, correlation_id=correlation) if correlation else context

    async def apply_intents(
        self,
        intents: Sequence[Intent],
        cause: UUID,
        correlation: UUID | None,
        occurred_at: datetime,
    ) -> None:
        """Carry out what an event means for deadlines; `occurred_at` is the cause's time."""
        for intent in intents:
            if isinstance(intent, deadlines.WithdrawMember):
                await self._withdraw_member(intent, cause, correlation, occurred_at)
            elif isinstance(intent, MeetKind):
                await self._meet_kind(intent, cause, correlation)
            else:
                await self.decide(intent, cause, correlation, occurred_at)

    async def decide(
        self,
        intent: Schedule | Meet | Withdraw,
        cause: UUID | None,
        correlation: UUID | None,
        occurred_at: datetime,
    ) -> None:
        stream = deadline_stream(intent.deadline_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = deadlines.fold(loaded[stream].events)
            return Decision(
                [
                    Change(stream, e, occurred_at, intent.branch_id)
                    for e in deadlines.decide(intent, state, cause)
                ]
            )

        key = f"{cause}:{intent.deadline_id}:{type(intent).__name__}"
        await execute(
            self.store, self.context(key, cause, correlation), [stream], decide, record_no_op=False
        )

    async def _withdraw_member(
        self,
        intent: deadlines.WithdrawMember,
        cause: UUID,
        correlation: UUID | None,
        occurred_at: datetime,
    ) -> None:
        await self.settled()
        rows = await self.store.pool.fetch(
            f"SELECT deadline_id, kind, branch_id FROM {self._s}.deadlines "
            "WHERE member_id = $1 AND status = 'open' AND kind <> 'graduation_transfer' "
            "ORDER BY deadline_id",
            intent.member_id,
        )
        for row in rows:
            await self.decide(
                Withdraw(
                    row["deadline_id"],
                    row["kind"],
                    row["branch_id"],
                    intent.member_id,
                    intent.reason,
                ),
                cause,
                correlation,
                occurred_at,
            )

    async def _meet_kind(self, intent: MeetKind, cause: UUID, correlation: UUID | None) -> None:
        await self.settled()
        rows = await self.store.pool.fetch(
            f"SELECT deadline_id, branch_id FROM {self._s}.deadlines WHERE kind = $1 "
            "AND status = 'open' AND extract(year FROM due_at AT TIME ZONE $2) = $3 "
            "ORDER BY deadline_id",
            intent.kind,
            self.calendar.zone.key,
            intent.year,
        )
        for row in rows:
            await self.decide(
                Meet(row["deadline_id"], intent.kind, row["branch_id"], None, intent.at),
                cause,
                correlation,
                intent.at,
            )

    async def missed(self, deadline_id: str, now: datetime) -> None:
        stream = deadline_stream(deadline_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = deadlines.fold(loaded[stream].events)
            # Missed when it fell due, in the world; noticed (`noticed_at`) now.
            return Decision(
                [
                    Change(stream, e, e.due_at, state.branch_id if state else None)
                    for e in deadlines.decide_missed(state, now)
                    if isinstance(e, DeadlineMissed)
                ]
            )

        await execute(self.store, CommandContext("notify", "system"), [stream], decide)
