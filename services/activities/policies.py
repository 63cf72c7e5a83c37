"""What the activities service does on its own when the roster publishes: a member converted
to full membership owes no more thought reports, and a member transferred out owes nothing
that falls due on or after the day they left; their pending obligations are withdrawn (by the
planner's own rule, `reports.owed_until`: one due on the very day is not owed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from contracts.events import MemberConverted, MemberTransferredOut
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema
from services.activities.domain import reports
from services.activities.handlers import ActivitiesService, system_context


class ObligationsFollowMembership:
    name = "obligations_follow_membership"
    event_types = frozenset({"member.converted", "member.transferred_out"})

    def __init__(self, service: ActivitiesService, schema: str) -> None:
        self._service = service
        self._s = quote_schema(schema)

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        if self._service.projector is not None:
            head, _ = await self._service.store.head()
            await self._service.projector.wait_for(head)
        for event in events:
            p = event.payload
            if isinstance(p, MemberConverted):
                await self._withdraw(
                    conn,
                    event,
                    p.member_id,
                    p.converted_on,
                    "thought",
                    f"converted to full member on {p.converted_on.isoformat()}",
                )
            elif isinstance(p, MemberTransferredOut):
                await self._withdraw(
                    conn,
                    event,
                    p.member_id,
                    p.transferred_on,
                    None,
                    f"transferred out on {p.transferred_on.isoformat()}",
                )

    async def _withdraw(
        self,
        conn: Connection,
        event: IncomingEvent,
        member_id: str,
        since: date,
        kind: str | None,
        reason: str,
    ) -> None:
        rows = await conn.fetch(
            f"SELECT obligation_id, due_on FROM {self._s}.obligations WHERE member_id = $1 "
            "AND ($2::text IS NULL OR kind = $2) AND NOT withdrawn AND submitted_at IS NULL",
            member_id,
            kind,
        )
        pending = [(row["obligation_id"], row["due_on"]) for row in rows]
        for obligation_id in reports.no_longer_owed(pending, since):
            context = system_context(
                f"withdraw:{event.event_id}:{obligation_id}",
                event.event_id,
                event.envelope.correlation_id,
            )
            await self._service.withdraw(obligation_id, reason, since, context)
