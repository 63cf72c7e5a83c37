"""Scoring's tables in PostgreSQL: the archive of inputs, the live scores, and the read models of
its own log (regulations, adjustments, closed assessments)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema
from services.scoring.domain.engine import MEMBER_FIELDS, Adjustment, Input, MemberPeriod
from services.scoring.domain.regulation import (
    Adoption,
    PublishedVersion,
    RegulationBook,
    RegulationDocument,
    RegulationHistory,
)


def _input(row: asyncpg.Record) -> Input:
    return Input(
        row["event_id"],
        row["type"],
        row["occurred_at"],
        row["recorded_at"],
        row["branch_id"],
        row["actor_id"],
        orjson.loads(row["data"]),
    )


_INPUT_COLUMNS = "event_id, type, occurred_at, recorded_at, branch_id, actor_id, data::text AS data"


class Archive:
    def __init__(self, pool: asyncpg.Pool, schema: str, default_regulation_id: str) -> None:
        self.pool = pool
        self._s = quote_schema(schema)
        #: The university's regulation: what a unit follows when neither it nor its school
        #: adopted one.
        self.default_regulation_id = default_regulation_id
        #: Published documents, parsed once (a published version never changes).
        self._documents: dict[tuple[Any, str], RegulationDocument] = {}

    # -- inputs -------------------------------------------------------------------------------

    async def record(self, conn: Connection, events: Sequence[IncomingEvent]) -> list[Input]:
        """Keep the events; return those not kept before, as inputs."""
        rows = []
        for event in events:
            data = event.envelope.data
            named = sorted({str(data[f]) for f in MEMBER_FIELDS if data.get(f)})
            input_ = Input(
                event.event_id,
                event.type,
                event.occurred_at,
                event.recorded_at,
                event.branch_id,
                event.envelope.actor.id,
                data,
            )
            rows.append(
                (
                    event.event_id,
                    event.type,
                    event.occurred_at,
                    event.recorded_at,
                    event.branch_id,
                    event.envelope.actor.id,
                    orjson.dumps(data).decode(),
                    named,
                    event.source,
                    event.position,
                    input_.supersedes,
                )
            )
        inserted = await conn.fetch(
            f"INSERT INTO {self._s}.inputs (event_id, type, occurred_at, recorded_at, branch_id, "
            "actor_id, data, members, source, position, supersedes) "
            "SELECT e, t, o, r, b, a, d, m::text[], s, p, x FROM unnest("
            "$1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], "
            "$6::text[], $7::jsonb[], $8::text[], $9::text[], $10::bigint[], $11::uuid[]) "
            "AS u(e, t, o, r, b, a, d, m, s, p, x) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            *_columns(rows),
        )
        fresh = {r["event_id"] for r in inserted}
        return [
            Input(
                e.event_id,
                e.type,
                e.occurred_at,
                e.recorded_at,
                e.branch_id,
                e.envelope.actor.id,
                e.envelope.data,
            )
            for e in events
            if e.event_id in fresh
        ]

    async def inputs_since(self, start: datetime, conn: Connection | None = None) -> list[Input]:
        rows = await (conn or self.pool).fetch(
            f"SELECT {_INPUT_COLUMNS} FROM {self._s}.inputs WHERE occurred_at >= $1 "
            "ORDER BY occurred_at, event_id",
            start,
        )
        return [_input(r) for r in rows]

    async def inputs_of(
        self,
        members: Iterable[str],
        *,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
        conn: Connection | None = None,
    ) -> list[Input]:
        rows = await (conn or self.pool).fetch(
            f"SELECT {_INPUT_COLUMNS} FROM {self._s}.inputs WHERE members && $1::text[] "
            "AND ($2::timestamptz IS NULL OR occurred_at <= $2) "
            "AND ($3::timestamptz IS NULL OR recorded_at <= $3) ORDER BY occurred_at, event_id",
            sorted(set(members)),
            as_of,
            known_at,
        )
        return [_input(r) for r in rows]

    async def all_inputs(self, page: int = 20000) -> AsyncIterator[list[Input]]:
        async for rows in self.all_input_rows(page):
            yield [_input(r) for r in rows]

    async def all_input_rows(self, page: int = 20000) -> AsyncIterator[list[asyncpg.Record]]:
        """Every input as the database gives it (data as JSON text), a page at a time."""
        after = None
        while True:
            rows = await self.pool.fetch(
                f"SELECT {_INPUT_COLUMNS} FROM {self._s}.inputs "
                "WHERE $1::uuid IS NULL OR event_id > $1 ORDER BY event_id LIMIT $2",
                after,
                page,
            )
            if not rows:
                return
            yield rows
            after = rows[-1]["event_id"]

    async def members_with_inputs_since(self, since: datetime) -> list[str]:
        rows = await self.pool.fetch(
            f"SELECT DISTINCT unnest(members) AS member FROM {self._s}.inputs "
            "WHERE occurred_at >= $1 ORDER BY 1",
            since,
        )
        return [r["member"] for r in rows]

    async def input_count(self) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {self._s}.inputs"))

    # -- regulations and adjustments --------------------------------------------------------------

    async def book(
        self, known_at: datetime | None = None, conn: Connection | None = None
    ) -> RegulationBook:
        """Every regulation and every adoption (as known at `known_at`), and each branch's
        school, from which a branch's regulation on a day follows."""
        db = conn or self.pool
        rows = await db.fetch(
            f"SELECT regulation_id, document::text AS document, event_id, recorded_at "
            f"FROM {self._s}.regulations WHERE $1::timestamptz IS NULL OR recorded_at <= $1 "
            "ORDER BY regulation_id, version",
            known_at,
        )
        versions: dict[str, list[PublishedVersion]] = {}
        for r in rows:
            versions.setdefault(r["regulation_id"], []).append(
                PublishedVersion(
                    self._document(r["event_id"], r["document"]), r["event_id"], r["recorded_at"]
                )
            )
        adoptions = await db.fetch(
            f"SELECT unit_id, regulation_id, effective_from, recorded_at, position "
            f"FROM {self._s}.adoptions WHERE $1::timestamptz IS NULL OR recorded_at <= $1",
            known_at,
        )
        parents = await db.fetch(
            f"SELECT unit_id, parent_id FROM {self._s}.directory_units WHERE kind = 'branch'"
        )
        return RegulationBook(
            {rid: RegulationHistory(items) for rid, items in versions.items()},
            (
                Adoption(
                    a["unit_id"],
                    a["regulation_id"],
                    a["effective_from"],
                    a["recorded_at"],
                    a["position"],
                )
                for a in adoptions
            ),
            self.default_regulation_id,
            {p["unit_id"]: p["parent_id"] for p in parents},
        )

    def _document(self, event_id: Any, text: str) -> RegulationDocument:
        key = (event_id, text)
        document = self._documents.get(key)
        if document is None:
            if len(self._documents) > 1000:
                self._documents.clear()
            document = self._documents[key] = RegulationDocument.model_validate_json(text)
        return document

    async def regulations(
        self, regulation_id: str | None = None, known_at: datetime | None = None
    ) -> RegulationHistory:
        """The versions of one regulation (the university's default when none is named)."""
        book = await self.book(known_at)
        return book.history(regulation_id or self.default_regulation_id)

    async def owner_of(self, regulation_id: str) -> str | None:
        owner: str | None = await self.pool.fetchval(
            f"SELECT owner_unit_id FROM {self._s}.regulations WHERE regulation_id = $1 "
            "ORDER BY version LIMIT 1",
            regulation_id,
        )
        return owner

    async def adjustments(
        self,
        members: Iterable[str] | None = None,
        *,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
        conn: Connection | None = None,
        period_id: str | None = None,
    ) -> list[Adjustment]:
        rows = await (conn or self.pool).fetch(
            f"SELECT * FROM {self._s}.adjustments WHERE approved_by IS NOT NULL "
            "AND ($1::text[] IS NULL OR member_id = ANY($1)) "
            "AND ($2::timestamptz IS NULL OR occurred_at <= $2) "
            "AND ($3::timestamptz IS NULL OR recorded_at <= $3) "
            "AND ($4::text IS NULL OR period_id = $4)",
            sorted(set(members)) if members is not None else None,
            as_of,
            known_at,
            period_id,
        )
        return [
            Adjustment(
                r["adjustment_id"],
                r["member_id"],
                r["branch_id"],
                r["period_id"],
                r["points"],
                r["reason"],
                r["requested_by"],
                r["approved_by"],
                r["occurred_at"],
                r["recorded_at"],
                r["event_id"],
                r["requested_event_id"],
            )
            for r in rows
        ]

    async def adjustment(self, adjustment_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self._s}.adjustments WHERE adjustment_id = $1", adjustment_id
        )
        return dict(row) if row else None

    # -- live scores ----------------------------------------------------------------------------

    async def live_scores(
        self, *, period_id: str | None = None, branch_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT member_id, period_id, branch_id, total, by_rule::text AS by_rule, "
            f"adjustments, vetoed_by, lines, regulation_version, regulation_id "
            f"FROM {self._s}.member_scores "
            "WHERE ($1::text IS NULL OR period_id = $1) "
            "AND ($2::text[] IS NULL OR branch_id = ANY($2)) ORDER BY member_id, period_id",
            period_id,
            list(branch_ids) if branch_ids is not None else None,
        )
        return [{**dict(r), "by_rule": orjson.loads(r["by_rule"])} for r in rows]

    # -- closed assessments ---------------------------------------------------------------------

    async def closes(self, branch_id: str, period_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            f"SELECT revision, closed_at, recorded_at, results::text AS results, reopened_at, "
            f"reopen_reason FROM {self._s}.assessments WHERE branch_id = $1 AND period_id = $2 "
            "ORDER BY revision",
            branch_id,
            period_id,
        )
        return [{**dict(r), "results": orjson.loads(r["results"])} for r in rows]

    async def recorded_after(
        self, members: Sequence[str], since: datetime, start: datetime, end: datetime
    ) -> list[Input]:
        # The period's inputs first (by business time, then record time): never the members'
        # inputs of every year.
        rows = await self.pool.fetch(
            f"WITH period AS MATERIALIZED (SELECT * FROM {self._s}.inputs "
            "WHERE occurred_at >= $3 AND occurred_at < $4 AND recorded_at > $2) "
            f"SELECT {_INPUT_COLUMNS} FROM period WHERE members && $1::text[] "
            "ORDER BY occurred_at, event_id",
            list(members),
            since,
            start,
            end,
        )
        return [_input(r) for r in rows]

    # -- the stored lines, on both time axes (reads) ----------------------------------------------

    async def lines_of(
        self,
        members: Sequence[str],
        period_id: str | None,
        *,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
    ) -> list[asyncpg.Record]:
        """The members' lines in the period (every period when None) as they stood at the cut:
        caused by what had occurred by `as_of` and been recorded by `known_at`, as the
        regulations and adoptions known at `known_at` gave them; `counts` is false for a line
        whose cause something in the cut superseded (vetoes always count)."""
        query, args = _lines_query(self._s, LEDGER_COLUMNS, members, period_id, as_of, known_at)
        return await self.pool.fetch(query + " ORDER BY member_id, period_id", *args)

    async def member_sums(
        self,
        members: Sequence[str],
        period_id: str,
        caps: Mapping[str, Decimal | None],
        *,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
    ) -> list[asyncpg.Record]:
        """lines_of summed in the database, one row per member with anything in the period
        (a line, even superseded; a veto): `counted`, the sum over rules of each rule's sum of
        the lines that count clamped to ±its cap (`caps`, of the governing version; a rule
        without one is not clamped), NULL when no line counts; `vetoed`."""
        query, args = _lines_query(
            self._s, "member_id, rule_id, veto, points", members, period_id, as_of, known_at
        )
        ids, limits = f"${len(args) + 1}", f"${len(args) + 2}"
        return await self.pool.fetch(
            f"WITH r AS (SELECT member_id, rule_id, bool_or(veto) AS veto, "
            "sum(points) FILTER (WHERE counts AND NOT veto) AS points "
            f"FROM ({query}) AS l GROUP BY member_id, rule_id) "
            # (greatest and least ignore a NULL: a rule with no line that counts is left out)
            "SELECT r.member_id, bool_or(r.veto) AS vetoed, sum(CASE WHEN r.points IS NULL "
            "THEN NULL WHEN c.cap IS NULL THEN r.points "
            "ELSE least(greatest(r.points, -c.cap), c.cap) END) AS counted "
            f"FROM r LEFT JOIN unnest({ids}::text[], {limits}::numeric[]) AS c(rule_id, cap) "
            "USING (rule_id) GROUP BY r.member_id",
            *args,
            list(caps),
            list(caps.values()),
        )

    async def directory_members(self, branch_ids: Sequence[str]) -> list[asyncpg.Record]:
        """The branches' members in the directory, from its columns (what participation needs:
        enrolment, transfer, standing and conversion), every branch in one round trip."""
        return await self.pool.fetch(
            "SELECT member_id, branch_id, standing, enrolled_on, transferred_on, "
            "(record->>'converted_on')::date AS converted_on "
            f"FROM {self._s}.directory_members WHERE branch_id = ANY($1::text[]) "
            "ORDER BY branch_id, member_id",
            list(branch_ids),
        )


#: What a ledger entry shows of a stored line.
LEDGER_COLUMNS = (
    "member_id, period_id, cause_event_id, rule_id, regulation_id, regulation_version, "
    "branch_id, points, veto, cause_type, cause_occurred_at, cause_recorded_at, actor_id"
)


def _lines_query(
    s: str,
    columns: str,
    members: Sequence[str],
    period_id: str | None,
    as_of: datetime | None,
    known_at: datetime | None,
) -> tuple[str, list[Any]]:
    """The stored lines of the members in a period, cut on both axes, with `counts`.

    Live (no cut): the current lines, `counts` = not superseded. With a cut: the current lines
    known by `known_at` and, with `known_at`, the retired lines that were the lines then; a
    line counts unless an input in the cut supersedes it. Every part is an index range of
    (member, period): nothing of other periods is read."""
    args: list[Any] = [sorted(set(members)), period_id]
    # (the period spelt out, not `$2 IS NULL OR …`: a generic plan must still use its index)
    where = "member_id = ANY($1::text[]) AND " + (
        "$2::text IS NULL" if period_id is None else "period_id = $2::text"
    )
    if as_of is None and known_at is None:
        return f"SELECT {columns}, NOT superseded AS counts FROM {s}.lines WHERE {where}", args
    args += [as_of, known_at]
    cut = (
        f"{where} AND ($3::timestamptz IS NULL OR cause_occurred_at <= $3) "
        "AND ($4::timestamptz IS NULL OR (cause_recorded_at <= $4 "
        "AND (known_from IS NULL OR known_from <= $4)))"
    )
    union = (
        f"SELECT {columns}, superseded AS gone, cause_event_id AS cause FROM {s}.lines WHERE {cut}"
    )
    if known_at is not None:
        union += (
            f" UNION ALL SELECT {columns}, superseded AS gone, cause_event_id AS cause "
            f"FROM {s}.retired_lines WHERE {cut} AND known_until > $4"
        )
    # Only a line something in the archive supersedes can be superseded in the cut: the
    # inputs are looked up (by the index of what they supersede) for those lines alone.
    counted = (
        "CASE WHEN c.veto OR NOT c.gone THEN true ELSE NOT EXISTS (SELECT 1 FROM "
        f"{s}.inputs AS x WHERE x.supersedes = c.cause "
        "AND ($3::timestamptz IS NULL OR x.occurred_at <= $3) "
        "AND ($4::timestamptz IS NULL OR x.recorded_at <= $4)) END"
    )
    names = ", ".join(f"c.{c.strip()}" for c in columns.split(","))
    return f"SELECT {names}, {counted} AS counts FROM ({union}) AS c", args


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows turned into columns, for unnest(): the text[] of member names stays an array."""
    columns: list[list[Any]] = [[] for _ in range(11)]
    for row in rows:
        for index, value in enumerate(row):
            columns[index].append(value)
    # unnest of a text[][] flattens it: members go as their text form and are cast back
    columns[7] = ["{" + ",".join(f'"{m}"' for m in members) + "}" for members in columns[7]]
    return columns


def score_row(result: MemberPeriod) -> tuple[Any, ...]:
    return (
        result.member_id,
        result.period_id,
        result.branch_id,
        result.total,
        orjson.dumps({k: str(v) for k, v in sorted(result.by_rule.items())}).decode(),
        result.adjustments,
        result.vetoed_by,
        result.rule_lines,
        result.regulation_version,
        result.regulation_id,
    )


def score_key(row: Sequence[Any]) -> tuple[str, ...]:
    """A row of the live view in a canonical textual form, for comparison and checksums."""
    member, period, branch, total, by_rule, adjustments, vetoed, lines, version, regulation = row
    rules = orjson.loads(by_rule) if isinstance(by_rule, str) else by_rule
    return (
        member,
        period,
        branch or "",
        plain(total),
        orjson.dumps({k: plain(v) for k, v in sorted(rules.items())}).decode(),
        plain(adjustments),
        ",".join(vetoed),
        str(lines),
        str(version),
        str(regulation),
    )


def plain(value: object) -> str:
    """A number's one textual form: 90, 92.5 (not 9E+1, not 92.50)."""
    return format(Decimal(str(value)).normalize(), "f")
