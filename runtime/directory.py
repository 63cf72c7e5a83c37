"""The organisation as the consuming services know it, from the published `member` stream.

Activities, scoring and notify each need to know who belongs where (members, their branch and
group, standing and probation dates, responsibility space, the branch committees). Each keeps
its own copy in its own schema, folded from the `member` family it consumes.

The copy is a function of the set of events, whatever order they arrive in: every event is kept
(`directory_events`), and the row of each member, unit or committee it touches is folded again
from all of that key's events in their source order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from contracts.catalogue import CATALOGUE
from contracts.envelope import EventPayload
from contracts.events import (
    AgreementSigned,
    CategoryChanged,
    CommitteeElected,
    MemberConverted,
    MemberEnrolled,
    MemberMoved,
    MemberTransferredOut,
    ProbationExtended,
    SpaceAssigned,
    UnitRegistered,
)
from runtime.consumer.incoming import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema

DIRECTORY_MIGRATIONS = Path(__file__).resolve().parent / "directory_sql"


@dataclass
class MemberRecord:
    member_id: str
    name: str
    branch_id: str
    group_id: str | None
    standing: str
    enrolled_on: date
    expected_graduation: date
    probation_started_on: date | None = None
    probation_ends_on: date | None = None
    converted_on: date | None = None
    transferred_on: date | None = None
    space: dict[str, Any] | None = None
    agreement_years: list[str] = field(default_factory=list)
    groups: list[tuple[date, str | None]] = field(default_factory=list)  # (from, group)
    categories: dict[str, str] = field(default_factory=dict)

    def active_on(self, day: date) -> bool:
        ended = self.transferred_on is not None and day >= self.transferred_on
        return self.enrolled_on <= day and not ended

    def standing_on(self, day: date) -> str:
        if self.converted_on is not None:
            return "full" if day >= self.converted_on else "probationary"
        return self.standing

    def group_on(self, day: date) -> str | None:
        current = self.groups[0][1] if self.groups else self.group_id
        for since, group in self.groups:
            if since <= day:
                current = group
        return current


def fold_member(events: Iterable[EventPayload]) -> MemberRecord | None:
    record: MemberRecord | None = None
    for event in events:
        if isinstance(event, MemberEnrolled):
            record = MemberRecord(
                member_id=event.member_id,
                name=event.name,
                branch_id=event.branch_id,
                group_id=event.group_id,
                standing=event.standing,
                enrolled_on=event.enrolled_on,
                expected_graduation=event.expected_graduation,
                probation_started_on=event.probation_started_on,
                probation_ends_on=event.probation_ends_on,
                groups=[(event.enrolled_on, event.group_id)],
                categories={
                    "standing": event.standing,
                    "cadre": "cadre" if event.cadre_post else "non_cadre",
                    "performance": "neither",
                },
            )
        elif record is None:
            continue
        elif isinstance(event, MemberMoved):
            record.group_id = event.group_id
            record.groups.append((event.effective_on, event.group_id))
        elif isinstance(event, MemberConverted):
            record.standing, record.converted_on = "full", event.converted_on
        elif isinstance(event, ProbationExtended):
            record.probation_ends_on = event.new_end_on
        elif isinstance(event, MemberTransferredOut):
            record.transferred_on = event.transferred_on
        elif isinstance(event, SpaceAssigned):
            record.space = event.model_dump(mode="json", exclude={"member_id"})
        elif isinstance(event, AgreementSigned):
            record.agreement_years.append(event.academic_year)
        elif isinstance(event, CategoryChanged):
            record.categories[event.dimension] = event.value
    return record


def _member_key(event: EventPayload) -> str | None:
    return getattr(event, "member_id", None)


def _unit_key(event: EventPayload) -> str | None:
    if isinstance(event, UnitRegistered):
        return event.unit_id
    if isinstance(event, CommitteeElected):
        return event.branch_id
    return None


class MemberDirectory:
    """A consumer projection (runtime.consumer.Projection) of the `member` family."""

    name = "member_directory"
    event_types = CATALOGUE.types_of("member")

    def __init__(self, schema: str) -> None:
        self._s = quote_schema(schema)

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        await conn.executemany(
            f"INSERT INTO {self._s}.directory_events (source, position, member_key, unit_key, "
            "type, schema_version, data) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) "
            "ON CONFLICT DO NOTHING",
            [
                (
                    e.source,
                    e.position,
                    _member_key(e.payload),
                    _unit_key(e.payload),
                    e.type,
                    e.envelope.schema_version,
                    orjson.dumps(e.envelope.data).decode(),
                )
                for e in events
            ],
        )
        members = {k for e in events if (k := _member_key(e.payload))}
        units = {k for e in events if (k := _unit_key(e.payload))}
        for member_id in sorted(members):
            await self._refold_member(conn, member_id)
        for unit_id in sorted(units):
            await self._refold_unit(conn, unit_id)

    async def _history(self, conn: Connection, column: str, key: str) -> list[EventPayload]:
        rows = await conn.fetch(
            f"SELECT type, schema_version, data::text AS data FROM {self._s}.directory_events "
            f"WHERE {column} = $1 ORDER BY source, position",
            key,
        )
        return [CATALOGUE.parse_data(r["type"], r["schema_version"], r["data"]) for r in rows]

    async def _refold_member(self, conn: Connection, member_id: str) -> None:
        record = fold_member(await self._history(conn, "member_key", member_id))
        if record is None:
            return  # its enrolment has not arrived yet
        await conn.execute(
            f"INSERT INTO {self._s}.directory_members (member_id, branch_id, group_id, "
            "standing, enrolled_on, transferred_on, record) VALUES ($1, $2, $3, $4, $5, $6, "
            "$7::jsonb) ON CONFLICT (member_id) DO UPDATE SET branch_id = EXCLUDED.branch_id, "
            "group_id = EXCLUDED.group_id, standing = EXCLUDED.standing, "
            "enrolled_on = EXCLUDED.enrolled_on, transferred_on = EXCLUDED.transferred_on, "
            "record = EXCLUDED.record",
            record.member_id,
            record.branch_id,
            record.group_id,
            record.standing,
            record.enrolled_on,
            record.transferred_on,
            orjson.dumps(asdict(record)).decode(),
        )

    async def _refold_unit(self, conn: Connection, unit_id: str) -> None:
        unit: UnitRegistered | None = None
        committee: CommitteeElected | None = None
        for event in await self._history(conn, "unit_key", unit_id):
            if isinstance(event, UnitRegistered):
                unit = event
            elif isinstance(event, CommitteeElected):
                committee = event
        if unit is not None:
            await conn.execute(
                f"INSERT INTO {self._s}.directory_units (unit_id, kind, name, parent_id, "
                "branch_kind) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (unit_id) DO UPDATE SET "
                "kind = EXCLUDED.kind, name = EXCLUDED.name, parent_id = EXCLUDED.parent_id, "
                "branch_kind = EXCLUDED.branch_kind",
                unit.unit_id,
                unit.kind,
                unit.name,
                unit.parent_id,
                unit.branch_kind,
            )
        if committee is not None:
            await conn.execute(
                f"INSERT INTO {self._s}.directory_committees (branch_id, secretary_id, "
                "member_ids, term_starts_on, term_ends_on) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (branch_id) DO UPDATE SET secretary_id = EXCLUDED.secretary_id, "
                "member_ids = EXCLUDED.member_ids, term_starts_on = EXCLUDED.term_starts_on, "
                "term_ends_on = EXCLUDED.term_ends_on",
                committee.branch_id,
                committee.secretary_id,
                committee.member_ids,
                committee.term_starts_on,
                committee.term_ends_on,
            )


def _record(raw: str) -> MemberRecord:
    data = orjson.loads(raw)
    for name in (
        "enrolled_on",
        "expected_graduation",
        "probation_started_on",
        "probation_ends_on",
        "converted_on",
        "transferred_on",
    ):
        if data[name] is not None:
            data[name] = date.fromisoformat(data[name])
    data["groups"] = [(date.fromisoformat(since), group) for since, group in data["groups"]]
    return MemberRecord(**data)


@dataclass(frozen=True)
class Unit:
    unit_id: str
    kind: str
    name: str
    parent_id: str | None
    branch_kind: str | None


@dataclass(frozen=True)
class Committee:
    branch_id: str
    secretary_id: str
    member_ids: tuple[str, ...]
    term_starts_on: date
    term_ends_on: date


class Directory:
    """Questions about the organisation, answered from the directory tables."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self._pool = pool
        self._s = quote_schema(schema)

    async def member(self, member_id: str) -> MemberRecord | None:
        raw = await self._pool.fetchval(
            f"SELECT record::text FROM {self._s}.directory_members WHERE member_id = $1",
            member_id,
        )
        return _record(raw) if raw is not None else None

    async def members(self, member_ids: Iterable[str]) -> dict[str, MemberRecord]:
        rows = await self._pool.fetch(
            f"SELECT member_id, record::text AS record FROM {self._s}.directory_members "
            "WHERE member_id = ANY($1::text[])",
            list(member_ids),
        )
        return {r["member_id"]: _record(r["record"]) for r in rows}

    async def members_of(self, branch_id: str, on: date | None = None) -> list[MemberRecord]:
        """The branch's members (active on the date when one is given), by member id."""
        rows = await self._pool.fetch(
            f"SELECT record::text AS record FROM {self._s}.directory_members "
            "WHERE branch_id = $1 ORDER BY member_id",
            branch_id,
        )
        records = [_record(r["record"]) for r in rows]
        return [r for r in records if on is None or r.active_on(on)]

    async def active_member_ids(
        self, branch_id: str, on: date, among: Iterable[str] | None = None
    ) -> frozenset[str]:
        """The ids of the branch's members active on the date (of `among` only, when given),
        from the table's columns: no member's record is read."""
        rows = await self._pool.fetch(
            f"SELECT member_id FROM {self._s}.directory_members WHERE branch_id = $1 "
            "AND enrolled_on <= $2 AND (transferred_on IS NULL OR transferred_on > $2) "
            "AND ($3::text[] IS NULL OR member_id = ANY($3::text[]))",
            branch_id,
            on,
            list(among) if among is not None else None,
        )
        return frozenset(r["member_id"] for r in rows)

    async def units_by_id(self, unit_ids: Iterable[str]) -> dict[str, Unit]:
        """Several units in one round trip (absent ones are left out)."""
        rows = await self._pool.fetch(
            f"SELECT unit_id, kind, name, parent_id, branch_kind FROM {self._s}.directory_units "
            "WHERE unit_id = ANY($1::text[])",
            list(dict.fromkeys(unit_ids)),
        )
        return {r["unit_id"]: Unit(**dict(r)) for r in rows}

    async def unit(self, unit_id: str) -> Unit | None:
        row = await self._pool.fetchrow(
            f"SELECT unit_id, kind, name, parent_id, branch_kind FROM {self._s}.directory_units "
            "WHERE unit_id = $1",
            unit_id,
        )
        return Unit(**dict(row)) if row else None

    async def units(self, kind: str | None = None) -> list[Unit]:
        rows = await self._pool.fetch(
            f"SELECT unit_id, kind, name, parent_id, branch_kind FROM {self._s}.directory_units "
            "WHERE $1::text IS NULL OR kind = $1 ORDER BY unit_id",
            kind,
        )
        return [Unit(**dict(r)) for r in rows]

    async def groups_of(self, branch_id: str) -> list[Unit]:
        rows = await self._pool.fetch(
            f"SELECT unit_id, kind, name, parent_id, branch_kind FROM {self._s}.directory_units "
            "WHERE kind = 'group' AND parent_id = $1 ORDER BY unit_id",
            branch_id,
        )
        return [Unit(**dict(r)) for r in rows]

    async def school_of(self, branch_id: str) -> str | None:
        unit = await self.unit(branch_id)
        if unit is None:
            return None
        if unit.kind == "group" and unit.parent_id:
            unit = await self.unit(unit.parent_id)
        return unit.parent_id if unit is not None and unit.kind == "branch" else None

    async def committee(self, branch_id: str) -> Committee | None:
        row = await self._pool.fetchrow(
            f"SELECT branch_id, secretary_id, member_ids, term_starts_on, term_ends_on "
            f"FROM {self._s}.directory_committees WHERE branch_id = $1",
            branch_id,
        )
        if row is None:
            return None
        return Committee(
            row["branch_id"],
            row["secretary_id"],
            tuple(row["member_ids"]),
            row["term_starts_on"],
            row["term_ends_on"],
        )
