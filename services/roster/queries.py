"""Questions the roster answers from its read models, as of any date."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from runtime.eventstore.schema import quote_schema
from services.roster.domain.care import BranchPairs, Candidate, Pair, Suggestion, suggest_pairs
from services.roster.domain.categories import (
    DIMENSIONS,
    Categories,
    CategoryEntry,
    categories_as_of,
)
from services.roster.domain.policy import RosterPolicy


@dataclass(frozen=True)
class Scope:
    """Where a unit or member sits, for authorisation: its branch and school."""

    kind: str
    branch_id: str | None
    school_id: str | None


@dataclass(frozen=True)
class ArchiveRow:
    member_id: str
    student_number: str
    name: str
    branch_id: str
    group_id: str | None
    class_name: str | None
    company: str | None
    dormitory: str | None
    categories: Categories


@dataclass(frozen=True)
class Archive:
    as_of: date
    rows: list[ArchiveRow]
    counts: dict[str, dict[str, int]]  # dimension → value → members
    groups: list[dict[str, Any]]  # each combination of the four dimensions with its count
    by_party_group: dict[str, int]


class RosterQueries:
    def __init__(self, pool: asyncpg.Pool, schema: str, policy: RosterPolicy) -> None:
        self._pool = pool
        self._s = quote_schema(schema)
        self.policy = policy

    # -- scopes -------------------------------------------------------------------------------

    async def unit_scope(self, unit_id: str) -> Scope | None:
        row = await self._pool.fetchrow(
            f"SELECT kind, branch_id, school_id FROM {self._s}.units WHERE unit_id = $1", unit_id
        )
        return Scope(row["kind"], row["branch_id"], row["school_id"]) if row else None

    async def member_scope(self, member_id: str) -> Scope | None:
        row = await self._pool.fetchrow(
            f"SELECT branch_id, school_id FROM {self._s}.members WHERE member_id = $1", member_id
        )
        return Scope("member", row["branch_id"], row["school_id"]) if row else None

    async def group_branch(self, group_id: str) -> str | None:
        scope = await self.unit_scope(group_id)
        return scope.branch_id if scope and scope.kind == "group" else None

    # -- units ----------------------------------------------------------------------------------

    async def unit(self, unit_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.units WHERE unit_id = $1", unit_id
        )
        return dict(row) if row else None

    async def units(self, parent_id: str | None, kind: str | None) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._s}.units WHERE ($1::text IS NULL OR parent_id = $1) "
            "AND ($2::text IS NULL OR kind = $2) ORDER BY unit_id",
            parent_id,
            kind,
        )
        return [dict(r) for r in rows]

    async def committee(self, branch_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.committees WHERE branch_id = $1 ORDER BY position DESC "
            "LIMIT 1",
            branch_id,
        )
        return dict(row) if row else None

    async def elections(self, branch_id: str) -> list[dict[str, Any]]:
        """Every election (each round) of the branch with its result, and the committee that
        followed the round completing it."""
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._s}.elections WHERE branch_id = $1 ORDER BY held_on, position",
            branch_id,
        )
        committees = {
            r["election_id"]: dict(r)
            for r in await self._pool.fetch(
                f"SELECT election_id, secretary_id, member_ids, term_starts_on, term_ends_on, "
                f"elected_on FROM {self._s}.committees WHERE branch_id = $1 "
                "AND election_id IS NOT NULL",
                branch_id,
            )
        }
        elections = []
        for row in rows:
            record = {k: v for k, v in dict(row).items() if k != "position"}
            record["tally"] = json.loads(row["tally"])
            committee = committees.get(row["election_id"])
            if committee is not None:
                committee.pop("election_id")
            record["committee"] = committee
            elections.append(record)
        return elections

    async def links(self, group_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._s}.group_links WHERE group_id = $1 ORDER BY link_id", group_id
        )
        return [dict(r) for r in rows]

    # -- members --------------------------------------------------------------------------------

    async def member(self, member_id: str, as_of: date) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.members WHERE member_id = $1", member_id
        )
        if row is None:
            return None
        record = dict(row)
        entries = await self._category_entries([member_id])
        record["categories"] = categories_as_of(
            entries.get(member_id, []), as_of, row["expected_graduation"], self.policy
        ).__dict__
        record["category_history"] = [
            dict(r)
            for r in await self._pool.fetch(
                f"SELECT dimension, value, effective_on, source, reason FROM "
                f"{self._s}.member_categories WHERE member_id = $1 ORDER BY effective_on, "
                "position",
                member_id,
            )
        ]
        record["agreements"] = [
            dict(r)
            for r in await self._pool.fetch(
                f"SELECT agreement_id, academic_year, signed_on, expires_on "
                f"FROM {self._s}.agreements WHERE member_id = $1 ORDER BY signed_on",
                member_id,
            )
        ]
        record["plaques"] = [
            dict(r)
            for r in await self._pool.fetch(
                f"SELECT plaque_id, kind, dormitory, bed, issued_on, withdrawn_on, reason FROM "
                f"{self._s}.plaques WHERE member_id = $1 ORDER BY issued_on, plaque_id",
                member_id,
            )
        ]
        record["active_on_as_of"] = row["enrolled_on"] <= as_of and (
            row["transferred_on"] is None or as_of < row["transferred_on"]
        )
        record["guides"] = await self._member_guides(member_id, as_of)
        return record

    async def _member_guides(self, member_id: str, as_of: date) -> list[dict[str, Any]]:
        """The guides of a member on a day: appointed to them, or to their Party group then."""
        placement = (await self._group_as_of([member_id], as_of)).get(member_id)
        group_id = placement["group_id"] if placement else None
        rows = await self._pool.fetch(
            f"SELECT a.guide_id, g.name, g.kind, g.organisation, a.appointment_id, a.group_id, "
            "a.term_starts_on, a.term_ends_on, a.ended_on, "
            "CASE WHEN $1 = ANY(a.member_ids) THEN 'member' ELSE 'group' END AS appointed_to "
            f"FROM {self._s}.guide_appointments a JOIN {self._s}.guides g USING (guide_id) "
            "WHERE a.term_starts_on <= $2 AND $2 <= a.term_ends_on "
            "AND (a.ended_on IS NULL OR $2 < a.ended_on) "
            "AND ($1 = ANY(a.member_ids) OR (a.group_id IS NOT NULL AND a.group_id = $3)) "
            "ORDER BY a.term_starts_on, a.guide_id, a.appointment_id",
            member_id,
            as_of,
            group_id,
        )
        return [dict(r) for r in rows]

    async def branch_member_ids(self, branch_id: str) -> list[str]:
        """Every member the branch has had, transferred out or not (the roll of its meetings)."""
        rows = await self._pool.fetch(
            f"SELECT member_id FROM {self._s}.members WHERE branch_id = $1 ORDER BY member_id",
            branch_id,
        )
        return [r["member_id"] for r in rows]

    async def members(self, branch_id: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT member_id, name, group_id, class_name, company, standing, enrolled_on, "
            f"transferred_on FROM {self._s}.members WHERE branch_id = $1 "
            "AND ($2::text IS NULL OR member_id > $2) ORDER BY member_id LIMIT $3",
            branch_id,
            after,
            limit,
        )
        return [dict(r) for r in rows]

    async def _category_entries(self, member_ids: Sequence[str]) -> dict[str, list[CategoryEntry]]:
        rows = await self._pool.fetch(
            f"SELECT member_id, dimension, value, effective_on, position FROM "
            f"{self._s}.member_categories WHERE member_id = ANY($1::text[])",
            list(member_ids),
        )
        entries: dict[str, list[CategoryEntry]] = {}
        for r in rows:
            entries.setdefault(r["member_id"], []).append(
                CategoryEntry(r["dimension"], r["value"], r["effective_on"], r["position"])
            )
        return entries

    async def _group_as_of(self, member_ids: Sequence[str], as_of: date) -> dict[str, Any]:
        rows = await self._pool.fetch(
            f"SELECT DISTINCT ON (member_id) member_id, group_id, class_name, company, dormitory "
            f"FROM {self._s}.member_placements WHERE member_id = ANY($1::text[]) "
            "AND effective_on <= $2 ORDER BY member_id, effective_on DESC, position DESC",
            list(member_ids),
            as_of,
        )
        return {r["member_id"]: r for r in rows}

    async def archive(self, unit_id: str | None, as_of: date, wanted: dict[str, str]) -> Archive:
        """Members of a branch, a school or (unit None) the university on a date, classified."""
        rows = await self._pool.fetch(
            f"SELECT m.member_id, m.student_number, m.name, m.branch_id, m.expected_graduation "
            f"FROM {self._s}.members m WHERE ($1::text IS NULL OR m.branch_id = $1 "
            "OR m.school_id = $1) AND m.enrolled_on <= $2 "
            "AND (m.transferred_on IS NULL OR m.transferred_on > $2) "
            "ORDER BY m.branch_id, m.member_id",
            unit_id,
            as_of,
        )
        ids = [r["member_id"] for r in rows]
        entries = await self._category_entries(ids)
        placements = await self._group_as_of(ids, as_of)
        archive_rows = []
        for r in rows:
            categories = categories_as_of(
                entries.get(r["member_id"], []), as_of, r["expected_graduation"], self.policy
            )
            if not categories.matches(wanted):
                continue
            place = placements.get(r["member_id"])
            archive_rows.append(
                ArchiveRow(
                    r["member_id"],
                    r["student_number"],
                    r["name"],
                    r["branch_id"],
                    place["group_id"] if place else None,
                    place["class_name"] if place else None,
                    place["company"] if place else None,
                    place["dormitory"] if place else None,
                    categories,
                )
            )
        counts = {
            d: dict(Counter(row.categories.get(d) or "unknown" for row in archive_rows))
            for d in DIMENSIONS
        }
        combos = Counter(tuple(row.categories.get(d) for d in DIMENSIONS) for row in archive_rows)
        groups = [
            dict(zip(DIMENSIONS, combo, strict=True), count=count)
            for combo, count in sorted(combos.items(), key=lambda kv: str(kv[0]))
        ]
        by_group = dict(Counter(row.group_id or "(none)" for row in archive_rows))
        return Archive(as_of, archive_rows, counts, groups, by_group)

    async def without_agreement(self, branch_id: str, as_of: date) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT m.member_id, m.name, m.group_id FROM {self._s}.members m "
            "WHERE m.branch_id = $1 AND m.enrolled_on <= $2 "
            "AND (m.transferred_on IS NULL OR m.transferred_on > $2) AND NOT EXISTS ("
            f"SELECT 1 FROM {self._s}.agreements a WHERE a.member_id = m.member_id "
            "AND a.signed_on <= $2 AND $2 < a.expires_on) ORDER BY m.member_id",
            branch_id,
            as_of,
        )
        return [dict(r) for r in rows]

    # -- guides ---------------------------------------------------------------------------------

    async def guide(self, guide_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.guides WHERE guide_id = $1", guide_id
        )
        if row is None:
            return None
        record = dict(row)
        record["appointments"] = [
            dict(r)
            for r in await self._pool.fetch(
                f"SELECT * FROM {self._s}.guide_appointments WHERE guide_id = $1 "
                "ORDER BY term_starts_on, appointment_id",
                guide_id,
            )
        ]
        return record

    async def guide_appointment(self, guide_id: str, appointment_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            f"SELECT * FROM {self._s}.guide_appointments WHERE guide_id = $1 "
            "AND appointment_id = $2",
            guide_id,
            appointment_id,
        )
        return dict(row) if row else None

    async def branch_guides(self, branch_id: str, as_of: date | None) -> list[dict[str, Any]]:
        """The branch's appointments of guides, with the guide; with `as_of`, those in force
        that day only."""
        rows = await self._pool.fetch(
            f"SELECT a.guide_id, g.name, g.kind, g.organisation, g.phone, a.appointment_id, "
            "a.member_ids, a.group_id, a.term_starts_on, a.term_ends_on, a.ended_on, "
            f"a.end_reason FROM {self._s}.guide_appointments a "
            f"JOIN {self._s}.guides g USING (guide_id) WHERE a.branch_id = $1 "
            "AND ($2::date IS NULL OR (a.term_starts_on <= $2 AND $2 <= a.term_ends_on "
            "AND (a.ended_on IS NULL OR $2 < a.ended_on))) "
            "ORDER BY a.term_starts_on, a.guide_id, a.appointment_id",
            branch_id,
            as_of,
        )
        return [dict(r) for r in rows]

    # -- care -----------------------------------------------------------------------------------

    async def pairings(self, branch_id: str, active_only: bool) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            f"SELECT * FROM {self._s}.pairings WHERE branch_id = $1 "
            "AND (NOT $2 OR ended_on IS NULL) ORDER BY formed_on, pairing_id",
            branch_id,
            active_only,
        )
        return [dict(r) for r in rows]

    async def suggestions(self, branch_id: str, as_of: date) -> list[Suggestion]:
        archive = await self.archive(branch_id, as_of, {})
        candidates = [
            Candidate(
                row.member_id,
                row.name,
                row.categories.performance or "neither",
                row.categories.standing or "",
            )
            for row in archive.rows
            if row.branch_id == branch_id
        ]
        active = {
            r["pairing_id"]: Pair(r["pairing_id"], r["mentor_id"], r["mentee_id"], r["formed_on"])
            for r in await self.pairings(branch_id, active_only=True)
        }
        return suggest_pairs(candidates, BranchPairs(active))
