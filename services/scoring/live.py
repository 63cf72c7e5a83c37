"""The live view, kept current incrementally.

Each input's lines are computed once, when it arrives (under the version in force on its day),
and kept; a member's period result is then an aggregate of their lines, not a re-fold of their
whole history. Supersession is decided by the set: an input is superseded when any input in the
archive names it, whichever arrived first. A published revision recomputes the lines of what it
governs. The replay check (queries.replay) folds everything from scratch with the pure engine
and must find exactly the same rows.

Lines are kept on both time axes, so that reads aggregate them instead of folding inputs again
(queries.py): each names its cause's business time and record time, and `known_from` says from
which record time it is its cause's line. The lines of an input are a function of the input and
of the regulations and adoptions known: where a version or an adoption recorded after the input
changes them, the lines known before it are kept in `retired_lines` up to that record time
(`epochs`), and `known_at` reads what was known then.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg

from runtime.consumer.projector import lock_projections
from runtime.db import Connection
from runtime.eventstore import EventStore
from runtime.eventstore.schema import quote_schema
from services.scoring.archive import Archive
from services.scoring.domain.engine import (
    ZERO,
    Adjustment,
    Input,
    clamp,
    placed_lines,
    vetoes_for,
)
from services.scoring.domain.regulation import RegulationBook
from services.scoring.ledger import StoredLine, changes, publish

LINE_COLUMNS = (
    "cause_event_id",
    "rule_id",
    "regulation_id",
    "regulation_version",
    "member_id",
    "branch_id",
    "period_id",
    "points",
    "veto",
    "superseded",
    "cause_type",
    "cause_occurred_at",
)
#: The columns a line is stored with (LINE_COLUMNS, then what its ledger entry shows).
STORED_COLUMNS = (*LINE_COLUMNS, "cause_recorded_at", "actor_id")


def compute_lines(
    inputs: Iterable[Input], book: RegulationBook, zone: ZoneInfo, superseded: set[UUID]
) -> list[StoredLine]:
    """The lines (and veto marks) of these inputs; the same as the pure engine gives."""
    result = []
    for input_ in inputs:
        gone = input_.event_id in superseded
        for line in placed_lines(input_, book, zone):
            result.append(
                StoredLine(
                    input_.event_id,
                    line.rule_id,
                    line.regulation_id,
                    line.regulation_version,
                    line.member_id,
                    line.branch_id,
                    line.period_id,
                    line.points,
                    False,
                    gone,
                    input_.type,
                    input_.occurred_at,
                    input_.recorded_at,
                    input_.actor_id,
                )
            )
        for member, veto, governing in vetoes_for(input_, book, zone):
            result.append(
                StoredLine(
                    input_.event_id,
                    f"veto:{veto.id}",
                    governing.document.id,
                    governing.document.version,
                    member,
                    input_.branch_id,
                    governing.period.id,
                    ZERO,
                    True,
                    False,
                    input_.type,
                    input_.occurred_at,
                    input_.recorded_at,
                    input_.actor_id,
                )
            )
    return result


def change_times(book: RegulationBook) -> list[datetime]:
    """The record times at which what the book says changed: every version, every adoption."""
    times = {v.recorded_at for h in book.histories.values() for v in h.versions}
    times |= {a.recorded_at for a in book.adoptions}
    return sorted(t for t in times if t is not None)


#: An input's lines over record time: (lines, known from, known until), None being open.
Epoch = tuple[list[StoredLine], datetime | None, datetime | None]


def _same(a: Sequence[StoredLine], b: Sequence[StoredLine]) -> bool:
    def form(lines: Sequence[StoredLine]) -> list[tuple[Any, ...]]:
        return sorted((x.key, x.points, x.veto, x.period_id, x.branch_id) for x in lines)

    return form(a) == form(b)


def epochs(
    inputs: Iterable[Input], book: RegulationBook, zone: ZoneInfo, superseded: set[UUID]
) -> list[Epoch]:
    """Each input's lines under the book as known at every record time from the input's own on:
    its current lines (the last epoch, known until None) and those a later version or adoption
    replaced. An input recorded after the last change has one epoch, known from None (from its
    own record time): the common case costs what compute_lines costs."""
    times = change_times(book)
    known: dict[int, RegulationBook] = {len(times): book}

    def book_at(count: int) -> RegulationBook:
        """The book as known once the first `count` changes were recorded."""
        if count not in known:
            moment = times[count - 1] if count else datetime.min.replace(tzinfo=UTC)
            known[count] = book.known_at(moment)
        return known[count]

    result: list[Epoch] = []
    for input_ in inputs:
        before = bisect_right(times, input_.recorded_at)
        if before == len(times):
            result.append((compute_lines([input_], book, zone, superseded), None, None))
            continue
        spans: list[tuple[datetime | None, RegulationBook]] = [(None, book_at(before))]
        for count in range(before + 1, len(times) + 1):
            spans.append((times[count - 1], book_at(count)))
        merged: list[tuple[list[StoredLine], datetime | None]] = []
        for start, at in spans:
            lines = compute_lines([input_], at, zone, superseded)
            if merged and _same(merged[-1][0], lines):
                merged[-1] = (lines, merged[-1][1])  # the same lines: the epoch goes on
            else:
                merged.append((lines, start))
        for index, (lines, start) in enumerate(merged):
            until = merged[index + 1][1] if index + 1 < len(merged) else None
            result.append((lines, start, until))
    return result


class LiveScores:
    def __init__(self, store: EventStore, archive: Archive, schema: str, zone: ZoneInfo) -> None:
        self.store = store
        self.archive = archive
        self._schema = schema
        self._s = quote_schema(schema)
        self.zone = zone

    # -- arrival of inputs --------------------------------------------------------------------

    async def apply(
        self, conn: Connection, fresh: Sequence[Input], branch_of: dict[str, str]
    ) -> None:
        """Score inputs that just arrived (inside the consumer's transaction)."""
        if not fresh:
            return
        book = await self.archive.book(conn=conn)
        fresh_ids = [i.event_id for i in fresh]
        born_superseded = {
            r["supersedes"]
            for r in await conn.fetch(
                f"SELECT supersedes FROM {self._s}.inputs WHERE supersedes = ANY($1::uuid[])",
                fresh_ids,
            )
        }
        now_superseded = {i.supersedes for i in fresh if i.supersedes} - set(fresh_ids)
        gone = await self._supersede(conn, now_superseded)
        new = await self._store_epochs(conn, epochs(fresh, book, self.zone, born_superseded))
        members = {line.member_id for line in new} | {line.member_id for line in gone}
        await self.refresh(conn, members, book)
        await publish(self.store, changes(new, gone, branch_of), None)

    async def _supersede(self, conn: Connection, causes: set[UUID]) -> list[StoredLine]:
        if not causes:
            return []
        rows = await conn.fetch(
            f"UPDATE {self._s}.lines SET superseded = true WHERE cause_event_id = ANY($1::uuid[]) "
            f"AND NOT superseded AND NOT veto RETURNING {', '.join(STORED_COLUMNS)}",
            list(causes),
        )
        # The lines of earlier epochs too: a cut of record time looks for the superseding
        # input only where this says there is one (archive._lines_query).
        await conn.execute(
            f"UPDATE {self._s}.retired_lines SET superseded = true "
            "WHERE cause_event_id = ANY($1::uuid[]) AND NOT superseded AND NOT veto",
            list(causes),
        )
        return [_line(r) for r in rows]

    async def _insert_lines(
        self,
        conn: Connection,
        lines: Sequence[StoredLine],
        known_from: Mapping[UUID, datetime | None] | None = None,
    ) -> None:
        """Store current lines (known from their cause's record time, or from `known_from` of
        their cause)."""
        if lines:
            starts = known_from or {}
            await conn.copy_records_to_table(
                "lines",
                schema_name=self._schema,
                columns=(*STORED_COLUMNS, "known_from"),
                records=[
                    (*(getattr(line, c) for c in STORED_COLUMNS), starts.get(line.cause_event_id))
                    for line in lines
                ],
            )

    async def _store_epochs(self, conn: Connection, found: Sequence[Epoch]) -> list[StoredLine]:
        """Store what epochs() found; return the current lines."""
        current: list[StoredLine] = []
        known_from: dict[UUID, datetime | None] = {}
        retired: list[tuple[Any, ...]] = []
        for lines, start, until in found:
            if until is None:
                current.extend(lines)
                for line in lines:
                    known_from[line.cause_event_id] = start
            else:
                retired.extend(
                    (*(getattr(line, c) for c in STORED_COLUMNS), start, until) for line in lines
                )
        await self._insert_lines(conn, current, known_from)
        if retired:
            await conn.copy_records_to_table(
                "retired_lines",
                schema_name=self._schema,
                columns=(*STORED_COLUMNS, "known_from", "known_until"),
                records=retired,
            )
        return current

    # -- a revision -----------------------------------------------------------------------------

    async def rescore_since(
        self, since: datetime, causation: UUID, branch_of: dict[str, str]
    ) -> None:
        """Recompute the lines of every input a newly published version, or a newly adopted
        regulation, may govern."""
        book = await self.archive.book()
        earliest = min(
            (
                p.starts_on
                for p in book.period_starts()
                if datetime.combine(p.ends_on, time(23, 59), self.zone) >= since
            ),
            default=None,
        )
        if earliest is None:
            return
        start = datetime.combine(earliest, time(0), self.zone)
        async with self.archive.pool.acquire() as conn, conn.transaction():
            await lock_projections(conn, self._schema)
            inputs = await self.archive.inputs_since(start, conn=conn)
            ids = [i.event_id for i in inputs]
            superseded = {
                r["supersedes"]
                for r in await conn.fetch(
                    f"SELECT supersedes FROM {self._s}.inputs WHERE supersedes IS NOT NULL"
                )
            }
            old = [
                _line(r)
                for r in await conn.fetch(
                    f"DELETE FROM {self._s}.lines WHERE cause_event_id = ANY($1::uuid[]) "
                    f"RETURNING {', '.join(STORED_COLUMNS)}",
                    ids,
                )
            ]
            await conn.execute(
                f"DELETE FROM {self._s}.retired_lines WHERE cause_event_id = ANY($1::uuid[])", ids
            )
            new = await self._store_epochs(conn, epochs(inputs, book, self.zone, superseded))
            old_keys = {(line.key, line.points) for line in old}
            new_keys = {(line.key, line.points) for line in new}
            gone = [
                line
                for line in old
                if (line.key, line.points) not in new_keys and not line.superseded
            ]
            added = [line for line in new if (line.key, line.points) not in old_keys]
            members = (
                {line.member_id for line in old}
                | {line.member_id for line in new}
                | {a.member_id for a in await self.archive.adjustments(conn=conn)}
            )
            await self.refresh(conn, members, book)
            await publish(self.store, changes(added, gone, branch_of), causation)

    # -- the aggregate ----------------------------------------------------------------------------

    async def refresh(
        self, conn: Connection, members: Iterable[str], book: RegulationBook | None = None
    ) -> None:
        """Recompute the live rows of these members from their lines and adjustments."""
        members = sorted(set(members))
        if not members:
            return
        book = book or await self.archive.book(conn=conn)
        rows = await conn.fetch(
            f"SELECT member_id, period_id, rule_id, veto, max(branch_id) AS branch_id, "
            "sum(points) FILTER (WHERE NOT superseded) AS points, "
            "count(*) FILTER (WHERE NOT superseded) AS active "
            f"FROM {self._s}.lines WHERE member_id = ANY($1::text[]) "
            "GROUP BY member_id, period_id, rule_id, veto",
            members,
        )
        adjustments = await self.archive.adjustments(members, conn=conn)
        results = aggregate(rows, adjustments, book)
        await conn.execute(
            f"DELETE FROM {self._s}.member_scores WHERE member_id = ANY($1)", members
        )
        if results:
            await conn.executemany(
                f"INSERT INTO {self._s}.member_scores (member_id, period_id, branch_id, total, "
                "by_rule, adjustments, vetoed_by, lines, regulation_version, regulation_id) "
                "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)",
                results,
            )


def aggregate(
    rows: Sequence[asyncpg.Record | dict[str, Any]],
    adjustments: Sequence[Adjustment],
    book: RegulationBook,
) -> list[tuple[Any, ...]]:
    """Live rows (as archive.score_row makes them) from line sums and adjustments."""
    import orjson

    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"rules": {}, "vetoes": set(), "lines": 0, "branches": set(), "adjustments": ZERO}
    )
    for row in rows:
        cell = cells[(row["member_id"], row["period_id"])]
        if row["branch_id"]:
            cell["branches"].add(row["branch_id"])
        if row["veto"]:
            cell["vetoes"].add(row["rule_id"].removeprefix("veto:"))
        elif row["active"]:
            cell["rules"][row["rule_id"]] = (Decimal(row["points"]), row["active"])
    for adjustment in adjustments:
        cell = cells[(adjustment.member_id, adjustment.period_id)]
        cell["adjustments"] += adjustment.points
        cell["branches"].add(adjustment.branch_id)
    result = []
    for (member, period_id), cell in sorted(cells.items()):
        branch = max(cell["branches"]) if cell["branches"] else None
        governing = book.governing(branch, period_id)
        if governing is None:
            continue
        document = governing.document
        caps = {rule.id: rule.cap for rule in document.rules}
        by_rule = {}
        for rule_id, (points, _) in sorted(cell["rules"].items()):
            cap = caps.get(rule_id)
            by_rule[rule_id] = points if cap is None else clamp(points, -cap, cap)
        total = clamp(
            document.base + sum(by_rule.values(), ZERO) + cell["adjustments"],
            document.floor,
            document.ceiling,
        )
        if cell["vetoes"]:
            total = document.floor
        result.append(
            (
                member,
                period_id,
                branch,
                document.scaled(total),
                orjson.dumps({k: str(v) for k, v in by_rule.items()}).decode(),
                cell["adjustments"],
                sorted(cell["vetoes"]),
                sum(active for _, active in cell["rules"].values()),
                document.version,
                document.id,
            )
        )
    return result


def _line(row: asyncpg.Record) -> StoredLine:
    return StoredLine(**{c: row[c] for c in STORED_COLUMNS})
