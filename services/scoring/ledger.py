"""The published ledger: every line the arithmetic gives becomes a `score.awarded` or
`score.deducted` event on the member's ledger stream (`ledger-{member}`), naming its cause, rule,
regulation version and period. A line that no longer counts — its cause was corrected, or a
revised regulation re-scored it — is reversed by an event of the opposite sign that cites it.

The writer reconciles: it compares the lines the inputs give now with the lines already
published and appends only the difference, so running it again, or for a redelivered input,
appends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from contracts.events import ScoreAwarded, ScoreDeducted
from runtime.commands import Change, Decision, LoadedStream

Key = tuple[str, str, str, int, str]


def ledger_stream(member_id: str) -> str:
    return f"ledger-{member_id}"


@dataclass(frozen=True)
class Published:
    event_id: UUID
    key: Key
    points: Decimal
    line: ScoreAwarded | ScoreDeducted


def _key(event: ScoreAwarded | ScoreDeducted) -> Key:
    return (
        str(event.cause_event_id),
        event.rule_id,
        event.regulation_id,
        event.regulation_version,
        event.member_id,
    )


def published(loaded: LoadedStream) -> tuple[dict[Key, Published], set[Key]]:
    """The lines in force on the stream (not reversed) by key, and every key ever published."""
    lines: dict[UUID, Published] = {}
    reversed_ids: set[UUID] = set()
    for recorded, event in zip(loaded.recorded, loaded.events, strict=True):
        if not isinstance(event, ScoreAwarded | ScoreDeducted):
            continue
        if event.reverses_event_id is not None:
            reversed_ids.add(event.reverses_event_id)
        else:
            lines[recorded.event_id] = Published(
                recorded.event_id, _key(event), event.points, event
            )
    in_force = {p.key: p for p in lines.values() if p.event_id not in reversed_ids}
    return in_force, {p.key for p in lines.values()}


def _line_event(line: DesiredLine) -> ScoreAwarded | ScoreDeducted:
    kind = ScoreAwarded if line.points > 0 else ScoreDeducted
    return kind(
        member_id=line.member_id,
        branch_id=line.branch_id,
        period_id=line.period_id,
        points=line.points,
        rule_id=line.rule_id,
        regulation_id=line.regulation_id,
        regulation_version=line.regulation_version,
        cause_event_id=line.cause_event_id,
        cause_type=line.cause_type,
        cause_occurred_at=line.cause_occurred_at,
    )


def _reversal(of: ScoreAwarded | ScoreDeducted, of_id: UUID) -> ScoreAwarded | ScoreDeducted:
    points = -of.points
    kind = ScoreAwarded if points > 0 else ScoreDeducted
    return kind(**{**of.model_dump(), "points": points, "reverses_event_id": of_id})


@dataclass(frozen=True)
class DesiredLine:
    member_id: str
    branch_id: str
    period_id: str
    rule_id: str
    regulation_id: str
    regulation_version: int
    points: Decimal
    cause_event_id: UUID
    cause_type: str
    cause_occurred_at: datetime
    superseded: bool

    @property
    def key(self) -> Key:
        return (
            str(self.cause_event_id),
            self.rule_id,
            self.regulation_id,
            self.regulation_version,
            self.member_id,
        )


def reconcile(
    stream: str, loaded: LoadedStream, desired: Sequence[DesiredLine], now: datetime
) -> Decision:
    """Reversals of what no longer counts first, then the lines that are missing."""
    in_force, ever = published(loaded)
    reversals: list[Change] = []
    additions: list[Change] = []

    def reverse(current: Published) -> None:
        reversals.append(
            Change(
                stream,
                _reversal(current.line, current.event_id),
                now,
                current.line.branch_id,
                uuid4(),
            )
        )

    wanted = {line.key: line for line in desired}
    for key, published_line in sorted(in_force.items()):
        wanted_line = wanted.get(key)
        if (
            wanted_line is None
            or wanted_line.superseded
            or wanted_line.points != published_line.points
        ):
            reverse(published_line)
    for line in sorted(desired, key=lambda d: (d.cause_occurred_at, d.key)):
        current = in_force.get(line.key)
        still = current is not None and current.points == line.points
        if line.superseded:
            if line.key not in ever:  # it never made it to the ledger: show it, and its end
                event_id, event = uuid4(), _line_event(line)
                additions.append(Change(stream, event, now, line.branch_id, event_id))
                additions.append(
                    Change(stream, _reversal(event, event_id), now, line.branch_id, uuid4())
                )
        elif not still:
            additions.append(Change(stream, _line_event(line), now, line.branch_id, uuid4()))
    return Decision([*reversals, *additions])
