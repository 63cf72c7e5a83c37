"""What scoring answers: ledgers, branch tables, summaries — as of any business time and as
known at any record time — what-if runs under another regulation, and the replay check."""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo

import asyncpg

from runtime.directory import MemberRecord
from services.scoring.archive import Archive, score_key, score_row
from services.scoring.domain.assessment import Participant, TableRow, compute_period, grade_table
from services.scoring.domain.engine import (
    ZERO,
    Adjustment,
    Input,
    LedgerEntry,
    Line,
    LineFold,
    MemberPeriod,
    all_lines,
    clamp,
    member_period,
)
from services.scoring.domain.regulation import (
    Governing,
    PublishedVersion,
    RegulationBook,
    RegulationDocument,
    RegulationHistory,
    rule_title,
)
from services.scoring.handlers import BranchInputs, Moment, ScoringService, compute_branch
from services.scoring.offload import DEFAULT_SECONDS, DEFAULT_WORKERS, Offloader, RowColumns

ADJUSTMENT_TITLE = "人工调整 / manual adjustment"
CLOSING_TITLES = {
    "ceiling": "封顶 / the ceiling of the regulation",
    "floor": "保底 / the floor of the regulation",
    "veto": "一票否决 / veto",
}


@functools.cache
def _scale(precision: int) -> Any:
    """Half up, as RegulationDocument.scaled rounds totals (a ledger must end at its total)."""
    quantum = Decimal(1).scaleb(-precision)
    return lambda value: Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)


def entry_view(entry: LedgerEntry, precision: int) -> dict[str, Any]:
    """One ledger line: a rule's, an adjustment's, or the closing line of a clamped total."""
    scale = _scale(precision)
    common = {
        "kind": entry.kind,
        "points": scale(entry.points),
        "counted": scale(entry.counted),
        "capped": entry.capped,
        "running_total": scale(entry.running_total),
    }
    if entry.line is not None:
        line = entry.line
        return {
            "cause_event_id": line.cause.event_id,
            "cause_type": line.cause.type,
            "cause_occurred_at": line.cause.occurred_at,
            "cause_recorded_at": line.cause.recorded_at,
            "actor_id": line.cause.actor_id,
            "rule_id": line.rule_id,
            "rule_title": line.rule_title,
            "regulation_id": line.regulation_id,
            "regulation_version": line.regulation_version,
            **common,
        }
    if entry.adjustment is not None:
        a = entry.adjustment
        return {
            "cause_event_id": a.event_id,
            "cause_type": "score.adjusted",
            "cause_occurred_at": a.occurred_at,
            "cause_recorded_at": a.recorded_at,
            "actor_id": a.approved_by,
            "rule_id": "adjustment",
            "rule_title": ADJUSTMENT_TITLE,
            "adjustment_id": a.adjustment_id,
            "reason": a.reason,
            "requested_by": a.requested_by,
            "approved_by": a.approved_by,
            "requested_event_id": a.requested_event_id,
            **common,
        }
    return {
        "rule_id": entry.kind,
        "rule_title": CLOSING_TITLES[entry.kind],
        "vetoed_by": list(entry.vetoed_by),
        **common,
    }


def period_view(result: MemberPeriod) -> dict[str, Any]:
    scale = _scale(result.precision)
    return {
        "period_id": result.period_id,
        "branch_id": result.branch_id,
        "regulation_id": result.regulation_id,
        "regulation_version": result.regulation_version,
        "base": scale(result.base),
        "total": scale(result.total),
        "by_rule": {
            rule: {"raw": scale(result.raw_by_rule[rule]), "counted": scale(counted)}
            for rule, counted in sorted(result.by_rule.items())
        },
        "adjustments": [
            {
                "adjustment_id": a.adjustment_id,
                "points": scale(a.points),
                "reason": a.reason,
                "requested_by": a.requested_by,
                "approved_by": a.approved_by,
                "effective_at": a.occurred_at,
            }
            for a in result.adjustment_list
        ],
        "vetoed_by": result.vetoed_by,
        "ledger": [entry_view(entry, result.precision) for entry in result.entries],
    }


def row_view(row: TableRow, document: RegulationDocument) -> dict[str, Any]:
    return {
        "member_id": row.member_id,
        "total": document.scaled(row.total),
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
    def __init__(
        self, service: ScoringService, archive: Archive, offload: Offloader | None = None
    ) -> None:
        self.service = service
        self.archive = archive
        self.offload = offload or Offloader(DEFAULT_WORKERS, DEFAULT_SECONDS)

    async def member(
        self,
        member_id: str,
        *,
        as_of: Moment | None,
        known_at: datetime | None,
        period_id: str | None,
    ) -> list[dict[str, Any]]:
        """The member's periods from their stored lines (of that period only, when named)."""
        moment = self.service.instant(as_of)
        book = await self.archive.book(known_at)
        rows = await self.archive.lines_of([member_id], period_id, as_of=moment, known_at=known_at)
        adjustments = await self.archive.adjustments(
            [member_id], as_of=moment, known_at=known_at, period_id=period_id
        )
        results = member_results(member_id, rows, adjustments, book)
        return [
            period_view(r)
            for p, r in sorted(results.items())
            if period_id is None or p == period_id
        ]

    async def tables(
        self,
        branch_ids: Sequence[str],
        period_id: str,
        *,
        as_of: Moment | None,
        known_at: datetime | None,
        book: RegulationBook,
    ) -> dict[str, BranchTable]:
        """The branches' tables for the period from the stored lines, each under the regulation
        its branch follows: the period's lines of their participants summed by rule in the
        database, then the arithmetic of the engine (caps, base, adjustments, floor and
        ceiling, vetoes) and the ranking. Three queries whatever the number of branches."""
        governing = {b: g for b in branch_ids if (g := book.governing(b, period_id)) is not None}
        if not governing:
            return {}
        day = self.service.day(as_of) if as_of is not None else None
        moment = self.service.instant(as_of)
        participants: dict[str, list[Participant]] = {b: [] for b in governing}
        for row in await self.archive.directory_members(list(governing)):
            branch = row["branch_id"]
            ends_on = governing[branch].period.ends_on
            on = min(ends_on, day) if day else ends_on
            # MemberRecord's own rules of participation, on the directory's columns
            record = cast(MemberRecord, _Standing(*row[2:]))
            if MemberRecord.active_on(record, on):
                on_probation = MemberRecord.standing_on(record, on) == "probationary"
                participants[branch].append(Participant(row["member_id"], branch, on_probation))
        members = [p.member_id for found in participants.values() for p in found]
        adjustments = await self.archive.adjustments(
            members, as_of=moment, known_at=known_at, period_id=period_id
        )
        adjusted: dict[str, Decimal] = {}
        for adjustment in adjustments:
            adjusted[adjustment.member_id] = (
                adjusted.get(adjustment.member_id, ZERO) + adjustment.points
            )
        # One query per governing version (its caps clamp the sums in the database).
        by_version: dict[int, list[str]] = defaultdict(list)
        for branch, found in participants.items():
            by_version[id(governing[branch].document)].extend(p.member_id for p in found)
        sums: dict[str, Row] = {}
        for branch in {id(g.document): b for b, g in governing.items()}.values():
            document = governing[branch].document
            caps = {rule.id: rule.cap for rule in document.rules}
            for row in await self.archive.member_sums(
                by_version[id(document)], period_id, caps, as_of=moment, known_at=known_at
            ):
                sums[row["member_id"]] = row
        result = {}
        for branch, found in participants.items():
            document = governing[branch].document
            base = document.scaled(document.base)
            totals = {}
            for p in found:
                summed = sums.get(p.member_id)
                points = adjusted.get(p.member_id)
                if summed is None and points is None:  # nothing in the period: the base
                    totals[p.member_id] = base
                elif summed is not None and summed["vetoed"]:
                    totals[p.member_id] = document.scaled(document.floor)
                else:
                    counted = summed["counted"] if summed is not None else None
                    total = base + (counted or ZERO) + (points or ZERO)
                    totals[p.member_id] = document.scaled(
                        clamp(total, document.floor, document.ceiling)
                    )
            probationary = {p.member_id for p in found if p.probationary}
            result[branch] = BranchTable(
                grade_table(totals, probationary, document), found, governing[branch]
            )
        return result

    async def branch(
        self, branch_id: str, period_id: str, *, as_of: Moment | None, known_at: datetime | None
    ) -> dict[str, Any] | None:
        book = await self.archive.book(known_at)
        computed = (
            await self.tables([branch_id], period_id, as_of=as_of, known_at=known_at, book=book)
        ).get(branch_id)
        if computed is None:
            return None
        table, participants, governing = computed
        period = governing.period
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
                _day_start(self.service, period.starts_on),
                _day_start(self.service, period.ends_on, next_day=True),
            )
        return {
            "branch_id": branch_id,
            "period_id": period_id,
            "starts_on": period.starts_on,
            "ends_on": period.ends_on,
            "regulation_id": governing.document.id,
            "regulation_version": governing.document.version,
            "regulation_title": governing.document.title_text(),
            "regulation_source": book.source_of(branch_id, period.ends_on),
            "as_of": as_of,
            "known_at": known_at,
            "members": [row_view(r, governing.document) for r in table],
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
        as_of: Moment | None,
        known_at: datetime | None,
    ) -> list[dict[str, Any]]:
        """Each branch under its own regulation, and which."""
        book = await self.archive.book(known_at)
        tables = await self.tables(branch_ids, period_id, as_of=as_of, known_at=known_at, book=book)
        rows = []
        for branch_id in branch_ids:
            if branch_id not in tables:
                continue
            table, _, governing = tables[branch_id]
            document = governing.document
            totals = [r.total for r in table]
            rows.append(
                {
                    "branch_id": branch_id,
                    "regulation_id": document.id,
                    "regulation_version": document.version,
                    "regulation_title": document.title_text(),
                    "members": len(table),
                    "average": document.scaled(sum(totals, Decimal(0)) / len(totals))
                    if totals
                    else None,
                    "highest": document.scaled(max(totals)) if totals else None,
                    "lowest": document.scaled(min(totals)) if totals else None,
                    "grades": _count(r.grade or "ungraded" for r in table),
                    "excellent": [r.member_id for r in table if r.classification == "excellent"],
                    "lagging": [r.member_id for r in table if r.classification == "lagging"],
                }
            )
        return rows

    async def what_if(
        self, period_id: str, branch_ids: Sequence[str], alternative: RegulationDocument
    ) -> dict[str, Any]:
        """Every member of the branches under the regulation each follows and under the
        alternative, side by side. Nothing is written. The database is read here; the
        computation runs off the event loop, in a process with a time limit (offload)."""
        live_book = await self.archive.book()
        period = alternative.period(period_id)
        if period is None:
            raise LookupError(f"no period {period_id} in regulation {alternative.id}")
        # The alternative governs the whole period, whatever its own effective date says.
        alt_document = alternative.model_copy(
            update={"effective_from": min(alternative.effective_from, period.starts_on)}
        )
        alt_book = RegulationBook.single(
            RegulationHistory([PublishedVersion(alt_document, None, None)])
        )
        job = WhatIfJob(period_id, alternative.id, alternative.version, live_book, alt_book)

        async def branches() -> AsyncIterator[list[tuple[BranchInputs, BranchInputs]]]:
            # Each branch sent as it is read, computed there while the next one is read.
            for branch_id in branch_ids:
                old = await self.service.branch_inputs(branch_id, period_id, book=live_book)
                governing = alt_book.governing(branch_id, period_id)
                if old is None or governing is None:
                    continue
                if governing.period.ends_on == old.governing.period.ends_on:
                    # The same participants, inputs and adjustments: read (and sent) once.
                    new = BranchInputs(
                        branch_id,
                        period_id,
                        governing,
                        old.participants,
                        old.inputs,
                        old.adjustments,
                    )
                else:
                    found = await self.service.branch_inputs(branch_id, period_id, book=alt_book)
                    if found is None:
                        continue
                    new = found
                yield [(old, new)]

        return await self.offload.stream(compute_what_if_pages, branches(), job, self.service.zone)

    async def replay(self) -> ReplayReport:
        """Fold the whole archive again, apart from the live tables, and compare. The archive
        is read here; the fold runs off the event loop (offload)."""
        book = await self.archive.book()

        async def archive() -> AsyncIterator[Any]:
            # The inputs a page at a time, folded there as they come; then what else it needs.
            async for rows in self.archive.all_input_rows():
                yield RowColumns(rows)
            yield (await self.archive.adjustments(), await self.archive.live_scores())

        return await self.offload.stream(compute_replay_pages, archive(), book, self.service.zone)


#: A row as the database gives it (or as a test writes it).
Row = asyncpg.Record | Mapping[str, Any]


class _Standing(NamedTuple):
    """What MemberRecord.active_on and standing_on read of a member (archive.directory_members)."""

    standing: str
    enrolled_on: date
    transferred_on: date | None
    converted_on: date | None


class BranchTable(NamedTuple):
    """A branch's period from the stored lines: its table, who took part, what governs."""

    table: list[TableRow]
    participants: list[Participant]
    governing: Governing


def member_results(
    member_id: str,
    rows: Sequence[Row],
    adjustments: Sequence[Adjustment],
    book: RegulationBook,
) -> dict[str, MemberPeriod]:
    """The member's result in every period they have something in, from their stored lines
    (archive.lines_of) and adjustments: compute_period's choice of branch and governing
    version, then member_period of the engine for the total and the ledger."""
    titles: dict[tuple[str, int], dict[str, str]] = {}

    def title(regulation_id: str, version: int, rule_id: str) -> str:
        if (regulation_id, version) not in titles:
            found = book.history(regulation_id).version(version)
            titles[(regulation_id, version)] = (
                {rule.id: rule_title(rule) for rule in found.document.rules} if found else {}
            )
        return titles[(regulation_id, version)].get(rule_id, rule_id)

    lines: dict[str, list[Line]] = defaultdict(list)
    vetoes: dict[str, list[str]] = defaultdict(list)
    branches: dict[str, set[str]] = defaultdict(set)
    present: set[str] = set()
    for row in rows:
        period_id = row["period_id"]
        present.add(period_id)
        if row["branch_id"]:
            branches[period_id].add(row["branch_id"])
        if row["veto"]:
            vetoes[period_id].append(row["rule_id"].removeprefix("veto:"))
            continue
        cause = Input(
            row["cause_event_id"],
            row["cause_type"],
            row["cause_occurred_at"],
            row["cause_recorded_at"],
            row["branch_id"],
            row["actor_id"],
            {},
        )
        lines[period_id].append(
            Line(
                member_id,
                row["branch_id"],
                period_id,
                row["rule_id"],
                title(row["regulation_id"], row["regulation_version"], row["rule_id"]),
                row["regulation_id"],
                row["regulation_version"],
                row["points"],
                cause,
                not row["counts"],
            )
        )
    adjusted: dict[str, list[Adjustment]] = defaultdict(list)
    for adjustment in adjustments:
        present.add(adjustment.period_id)
        adjusted[adjustment.period_id].append(adjustment)
        branches[adjustment.period_id].add(adjustment.branch_id)
    results = {}
    for period_id in book.period_ids():
        if period_id not in present:
            continue
        branch = max(branches[period_id]) if branches[period_id] else None
        governing = book.governing(branch, period_id)
        if governing is None:
            continue
        results[period_id] = member_period(
            member_id,
            governing.period,
            governing.document,
            lines.get(period_id, ()),
            adjusted.get(period_id, ()),
            vetoes.get(period_id, ()),
            branch,
        )
    return results


@dataclass(frozen=True)
class WhatIfJob:
    period_id: str
    alternative_id: str
    alternative_version: int
    live_book: RegulationBook
    alt_book: RegulationBook


def compute_what_if_pages(feed: Iterable[Any], job: WhatIfJob, zone: ZoneInfo) -> dict[str, Any]:
    """compute_what_if of the branches as they are read: pages of (old, new) inputs."""
    return compute_what_if(job, (pair for page in feed for pair in page), zone)


def compute_what_if(
    job: WhatIfJob, branches: Iterable[tuple[BranchInputs, BranchInputs]], zone: ZoneInfo
) -> dict[str, Any]:
    """The what-if from what was read: pure, run in a process of its own."""
    members: list[dict[str, Any]] = []
    changed_grades = 0
    live_versions: dict[str, dict[str, Any]] = {}
    for old_inputs, new_inputs in branches:
        branch_id = old_inputs.branch_id
        old = compute_branch(old_inputs, job.live_book, zone)
        new = compute_branch(new_inputs, job.alt_book, zone)
        old_doc, new_doc = old[3].document, new[3].document
        live_versions[branch_id] = {"id": old_doc.id, "version": old_doc.version}
        old_rows = {r.member_id: r for r in old[1]}
        new_rows = {r.member_id: r for r in new[1]}
        for member_id in sorted(old_rows):
            before, after = old_rows[member_id], new_rows[member_id]
            rules = _rule_differences(
                old[0].members.get(member_id), new[0].members.get(member_id), new_doc
            )
            members.append(
                {
                    "member_id": member_id,
                    "branch_id": branch_id,
                    "old_total": old_doc.scaled(before.total),
                    "new_total": new_doc.scaled(after.total),
                    "delta": new_doc.scaled(after.total - before.total),
                    "old_rank": before.rank,
                    "new_rank": after.rank,
                    "old_grade": before.grade,
                    "new_grade": after.grade,
                    "rules": rules,
                }
            )
            changed_grades += before.grade != after.grade
    live_ids = {v["version"] for v in live_versions.values()}
    return {
        "period_id": job.period_id,
        "live_regulation_version": live_ids.pop() if len(live_ids) == 1 else None,
        "live_regulations": live_versions,
        "alternative": {"id": job.alternative_id, "version": job.alternative_version},
        "members": members,
        "grades_changed": changed_grades,
    }


def compute_replay_pages(feed: Iterable[Any], book: RegulationBook, zone: ZoneInfo) -> ReplayReport:
    """The replay in its process, as the archive is read: pages of inputs (folded as they
    come), then the adjustments and the live scores."""
    fold = LineFold(book, zone)
    adjustments: Sequence[Adjustment] = ()
    live_rows: Sequence[Mapping[str, Any]] = ()
    for item in feed:
        if isinstance(item, list):
            fold.add(item)
        else:
            adjustments, live_rows = item
    return compute_replay(book, fold.inputs, adjustments, live_rows, zone, lines=fold.lines())


def compute_replay(
    book: RegulationBook,
    inputs: Sequence[Input],
    adjustments: Sequence[Adjustment],
    live_rows: Sequence[Mapping[str, Any]],
    zone: ZoneInfo,
    lines: Sequence[Line] | None = None,
) -> ReplayReport:
    """The replay from what was read: pure, run in a process of its own."""
    lines = all_lines(inputs, book, zone) if lines is None else lines
    # Given the lines, compute_period reads the inputs for their vetoes only, and keeps the
    # lines of its period: each period is given those alone.
    vetoing = [i for i in inputs if i.type in book.veto_types]
    by_period: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        by_period[line.period_id].append(line)
    replayed: dict[tuple[str, str], tuple[str, ...]] = {}
    branches = {(r["member_id"], r["period_id"]): r["branch_id"] for r in live_rows}
    for period_id in book.period_ids():
        result = compute_period(
            period_id, book, vetoing, adjustments, zone, lines=by_period[period_id]
        )
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


def _rule_differences(
    old: MemberPeriod | None, new: MemberPeriod | None, document: RegulationDocument
) -> dict[str, Any]:
    before = old.by_rule if old else {}
    after = new.by_rule if new else {}
    zero = Decimal(0)
    return {
        rule: {
            "old": document.scaled(before.get(rule, zero)),
            "new": document.scaled(after.get(rule, zero)),
        }
        for rule in sorted(set(before) | set(after))
        if before.get(rule, zero) != after.get(rule, zero)
    }


def _day_start(service: ScoringService, day: date, next_day: bool = False) -> datetime:
    moment = datetime.combine(day, time(0), service.zone)
    return moment + timedelta(days=1) if next_day else moment
