"""The published ledger: every line the arithmetic gives becomes a `score.awarded` or
`score.deducted` event on the member's ledger stream (`ledger-{member}`), naming its cause, rule,
regulation version and period. A line that no longer counts — its cause was corrected, or a
revised regulation re-scored it — is reversed by an event of the opposite sign that cites it.

Ledger events have ids derived from what they say (the line's cause, rule, version, member), so
writing the same line twice — a redelivered input, a crash between writing and acknowledging —
is recognised and skipped: each line and each reversal is published once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid5

from contracts.events import ScoreAwarded, ScoreDeducted
from runtime.eventstore import EventMetadata, EventStore, NewEvent, StreamAppend

LEDGER_NAMESPACE = UUID("6b1c9f0e-5a3d-4f6e-9c2b-7d8e1f0a2b3c")

Key = tuple[str, str, str, int, str]


def ledger_stream(member_id: str) -> str:
    return f"ledger-{member_id}"


@dataclass(frozen=True)
class StoredLine:
    """A line as scoring keeps it (the `lines` table)."""

    cause_event_id: UUID
    rule_id: str
    regulation_id: str
    regulation_version: int
    member_id: str
    branch_id: str | None
    period_id: str
    points: Decimal
    veto: bool
    superseded: bool
    cause_type: str
    cause_occurred_at: datetime
    #: What the member's ledger shows of the cause besides (kept so that reads need not load it)
    cause_recorded_at: datetime | None = None
    actor_id: str | None = None

    @property
    def key(self) -> Key:
        return (
            str(self.cause_event_id),
            self.rule_id,
            self.regulation_id,
            self.regulation_version,
            self.member_id,
        )

    @property
    def line_event_id(self) -> UUID:
        return uuid5(LEDGER_NAMESPACE, "line|" + "|".join(map(str, self.key)))

    @property
    def reversal_event_id(self) -> UUID:
        return uuid5(LEDGER_NAMESPACE, f"reversal|{self.line_event_id}")


def _event(
    line: StoredLine, points: Decimal, reverses: UUID | None, branch_fallback: str
) -> ScoreAwarded | ScoreDeducted:
    kind = ScoreAwarded if points > 0 else ScoreDeducted
    return kind(
        member_id=line.member_id,
        branch_id=line.branch_id or branch_fallback,
        period_id=line.period_id,
        points=points,
        rule_id=line.rule_id,
        regulation_id=line.regulation_id,
        regulation_version=line.regulation_version,
        cause_event_id=line.cause_event_id,
        cause_type=line.cause_type,
        cause_occurred_at=line.cause_occurred_at,
        reverses_event_id=reverses,
    )


def changes(
    new: Sequence[StoredLine], gone: Sequence[StoredLine], branch_of: dict[str, str]
) -> list[tuple[str, NewEvent, datetime]]:
    """The ledger events for lines that appeared (and those born superseded, with their
    reversal) and for lines that stopped counting."""
    out: list[tuple[str, NewEvent, datetime]] = []

    def add(line: StoredLine, event: ScoreAwarded | ScoreDeducted, event_id: UUID) -> None:
        out.append(
            (
                ledger_stream(line.member_id),
                NewEvent.from_payload(
                    event,
                    occurred_at=line.cause_occurred_at,
                    branch_id=event.branch_id,
                    event_id=event_id,
                ),
                line.cause_occurred_at,
            )
        )

    for line in gone:
        if line.veto:
            continue
        fallback = branch_of.get(line.member_id, "unknown")
        add(line, _event(line, -line.points, line.line_event_id, fallback), line.reversal_event_id)
    for line in sorted(new, key=lambda each: (each.cause_occurred_at, each.key)):
        if line.veto:
            continue
        fallback = branch_of.get(line.member_id, "unknown")
        add(line, _event(line, line.points, None, fallback), line.line_event_id)
        if line.superseded:
            add(
                line,
                _event(line, -line.points, line.line_event_id, fallback),
                line.reversal_event_id,
            )
    return out


async def publish(
    store: EventStore, events: Sequence[tuple[str, NewEvent, datetime]], causation: UUID | None
) -> int:
    """Append what is not on the ledger yet; return how many events were appended."""
    if not events:
        return 0
    existing = await store.existing_event_ids([e.event_id for _, e, _ in events])
    by_stream: dict[str, list[NewEvent]] = {}
    for stream, event, _ in events:
        if event.event_id not in existing:
            by_stream.setdefault(stream, []).append(event)
    if not by_stream:
        return 0
    await store.append(
        *(StreamAppend(stream, batch) for stream, batch in by_stream.items()),
        metadata=EventMetadata("scoring", "system", causation_id=causation),
    )
    return sum(len(batch) for batch in by_stream.values())
