"""What scoring answers: ledgers, branch tables, summaries — as of any business time and as
known at any record time — what-if runs under another regulation, and the replay check."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from services.scoring.archive import Archive, score_key, score_row
from services.scoring.domain.assessment import TableRow, compute_period
from services.scoring.domain.engine import Input, MemberPeriod, all_lines
from services.scoring.domain.regulation import (
    PublishedVersion,
    RegulationDocument,
    RegulationHistory,
)
from services.scoring.handlers import ScoringService


def period_view(result: MemberPeriod) -> dict[str, Any]:
    return {
        "period_id": result.period_id,
        "branch_id": result.branch_id,
        "regulation_version": result.regulation_version,
        "base": result.base,
        "total": result.total,
        "by_rule": {
            rule: {"raw": result.raw_by_rule[rule], "counted": counted}
            for rule, counted in sorted(result.by_rule.items())
        },
        "adjustments": [
            {
                "adjustment_id": a.adjustment_id,
                "points": a.points,
                "reason": a.reason,
                "requested_by": a.requested_by,
                "approved_by": a.approved_by,
            }
            for a in result.adjustment_list
        ],
        "vetoed_by": result.vetoed_by,
        "ledger": [
            {
                "cause_event_id": entry.line.cause.event_id,
                "cause_type": entry.line.cause.type,
                "cause_occurred_at": entry.line.cause.occurred_at,
                "cause_recorded_at": entry.line.cause.recorded_at,
                "actor_id": entry.line.cause.actor_id,
                "rule_id": entry.line.rule_id,
                "rule_title": entry.line.rule_title,
                "regulation_id": entry.line.regulation_id,
                "regulation_version": entry.line.regulation_version,
                "points": entry.line.points,
                "counted": entry.counted,
                "capped": entry.capped,
                "running_total": entry.running_total,
            }
            for entry in result.entries
        ],
    }


def row_view(row: TableRow) -> dict[str, Any]:
    return {
        "member_id": row.member_id,
        "total": row.total,
        "rank": row.rank,
        "grade": row.grade,
        "classification": row.classification,
        "probationary": row.probationary,
    }


@dataclass(frozen=True)
class ReplayReport:
    inputs: int
    members: int
    rows: int
    live_checksum: str
    replay_checksum: str
    first_difference: dict[str, Any] | None

    @property
    def equal(self) -> bool:
        return self.first_difference is None and self.live_checksum == self.replay_checksum


class ScoringQueries:
    def __init__(self, service: ScoringService, archive: Archive) -> None:
        self.service = service
        self.archive = archive

    async def member(
        self,
        member_id: str,
        *,
        as_of: date | None,
        known_at: datetime | None,
        period_id: str | None,
    ) -> list[dict[str, Any]]:
        moment = self.service.end_of(as_of) if as_of else None
        results = await self.service.member_periods(member_id, as_of=moment, known_at=known_at)
        return [
            period_view(r)
            for p, r in sorted(results.items())
            if period_id is None or p == period_id
        ]

    async def branch(
        self, branch_id: str, period_id: str, *, as_of: date | None, known_at: datetime | None
    ) -> dict[str, Any] | None:
        computed = await self.service.branch_result(
            branch_id, period_id, as_of=as_of, known_at=known_at
        )
        if computed is None:
            return None
        result, table, participants = computed
        closes = [
            c
            for c in await self.archive.closes(branch_id, period_id)
            if known_at is None or c["recorded_at"] <= known_at
        ]
        closed = closes[-1] if closes and closes[-1]["reopened_at"] is None else None
        after_close: list[Input] = []
        if closed is not None:
            after_close = await self.archive.recorded_after(
                [p.member_id for p in participants],
                closed["recorded_at"],
                _day_start(self.service, result.period.starts_on),
                _day_start(self.service, result.period.ends_on, next_day=True),
            )
        return {
            "branch_id": branch_id,
            "period_id": period_id,
            "regulation_id": result.governing.id,
            "regulation_version": result.governing.version,
            "as_of": as_of,
            "known_at": known_at,
            "members": [row_view(r) for r in table],
            "closed": {"revision": closed["revision"], "closed_at": closed["closed_at"]}
            if closed
            else None,
            "after_close": [
                {
                    "event_id": i.event_id,
                    "type": i.type,
                    "occurred_at": i.occurred_at,
                    "recorded_at": i.recorded_at,
                    "members": sorted(i.members()),
                }
                for i in after_close
            ],
        }

    async def summary(
        self,
        branch_ids: Sequence[str],
        period_id: str,
        *,
        as_of: date | None,
        known_at: datetime | None,
    ) -> list[dict[str, Any]]:
        history = await self.archive.regulations(known_at)
        rows = []
        for branch_id in branch_ids:
            computed = await self.service.branch_result(
                branch_id, period_id, as_of=as_of, known_at=known_at, history=history
            )
            if computed is None:
                continue
            _, table, _ = computed
            totals = [r.total for r in table]
            rows.append(
                {
                    "branch_id": branch_id,
                    "members": len(table),
                    "average": (sum(totals, Decimal(0)) / len(totals)).quantize(Decimal("0.01"))
                    if totals
                    else None,
                    "highest": max(totals, default=None),
                    "lowest": min(totals, default=None),
                    "grades": _count(r.grade or "ungraded" for r in table),
                    "excellent": [r.member_id for r in table if r.classification == "excellent"],
                    "lagging": [r.member_id for r in table if r.classification == "lagging"],
                }
            )
        return rows

    async def what_if(
        self, period_id: str, branch_ids: Sequence[str], alternative: RegulationDocument
    ) -> dict[str, Any]:
        """Every member of the branches under the live regulation and under the alternative,
        side by side. Nothing is written."""
        live_history = await self.archive.regulations()
        period = live_history.periods().get(period_id) or alternative.period(period_id)
        if period is None:
            raise LookupError(f"no period {period_id}")
        # The alternative governs the whole period, whatever its own effective date says.
        alt_document = alternative.model_copy(
            update={"effective_from": min(alternative.effective_from, period.starts_on)}
        )
        alt_history = RegulationHistory([PublishedVersion(alt_document, None, None)])
        members: list[dict[str, Any]] = []
        changed_grades = 0
        for branch_id in branch_ids:
            old = await self.service.branch_result(branch_id, period_id, history=live_history)
            new = await self.service.branch_result(branch_id, period_id, history=alt_history)
            if old is None or new is None:
                continue
            old_rows = {r.member_id: r for r in old[1]}
            new_rows = {r.member_id: r for r in new[1]}
            for member_id in sorted(old_rows):
                before, after = old_rows[member_id], new_rows[member_id]
                old_result = old[0].members.get(member_id)
                new_result = new[0].members.get(member_id)
                rules = _rule_differences(old_result, new_result)
                members.append(
                    {
                        "member_id": member_id,
                        "branch_id": branch_id,
                        "old_total": before.total,
                        "new_total": after.total,
                        "delta": after.total - before.total,
                        "old_rank": before.rank,
                        "new_rank": after.rank,
                        "old_grade": before.grade,
                        "new_grade": after.grade,
                        "rules": rules,
                    }
                )
                changed_grades += before.grade != after.grade
        governing = live_history.in_force(period.ends_on)
        return {
            "period_id": period_id,
            "live_regulation_version": governing.document.version if governing else None,
            "alternative": {"id": alternative.id, "version": alternative.version},
            "members": members,
            "grades_changed": changed_grades,
        }

    async def replay(self) -> ReplayReport:
        """Fold the whole archive again, apart from the live tables, and compare."""
        history = await self.archive.regulations()
        inputs: list[Input] = []
        async for page in self.archive.all_inputs():
            inputs.extend(page)
        adjustments = await self.archive.adjustments()
        lines = all_lines(inputs, history, self.service.zone)
        replayed: dict[tuple[str, str], tuple[str, ...]] = {}
        live_rows = await self.archive.live_scores()
        branches = {(r["member_id"], r["period_id"]): r["branch_id"] for r in live_rows}
        for period_id in history.periods():
            result = compute_period(
                period_id, history, inputs, adjustments, self.service.zone, lines=lines
            )
            if result is None:
                continue
            for member_id, member_result in result.members.items():
                branch = member_result.branch_id or branches.get((member_id, period_id))
                row = score_row(member_result)
                replayed[(member_id, period_id)] = score_key((*row[:2], branch, *row[3:]))
        live = {(r["member_id"], r["period_id"]): score_key(tuple(r.values())) for r in live_rows}
        first = None
        for key in sorted(set(live) | set(replayed)):
            if live.get(key) != replayed.get(key):
                first = {
                    "member_id": key[0],
                    "period_id": key[1],
                    "live": live.get(key),
                    "replay": replayed.get(key),
                }
                break
        return ReplayReport(
            len(inputs),
            len({k[0] for k in replayed}),
            len(replayed),
            _checksum(live),
            _checksum(replayed),
            first,
        )


def _checksum(rows: Mapping[tuple[str, str], tuple[str, ...]]) -> str:
    digest = hashlib.sha256()
    for key in sorted(rows):
        digest.update("\x1f".join(rows[key]).encode() + b"\n")
    return digest.hexdigest()


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _rule_differences(old: MemberPeriod | None, new: MemberPeriod | None) -> dict[str, Any]:
    before = old.by_rule if old else {}
    after = new.by_rule if new else {}
    return {
        rule: {"old": before.get(rule, Decimal(0)), "new": after.get(rule, Decimal(0))}
        for rule in sorted(set(before) | set(after))
        if before.get(rule, Decimal(0)) != after.get(rule, Decimal(0))
    }


def _day_start(service: ScoringService, day: date, next_day: bool = False) -> datetime:
    moment = datetime.combine(day, time(0), service.zone)
    return moment + timedelta(days=1) if next_day else moment
