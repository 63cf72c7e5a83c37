"""The roster's read models: a fold of its own log into tables (runtime.projection)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from contracts.catalogue import CATALOGUE
from contracts.events import (
    AgreementSigned,
    CategoryChanged,
    CommitteeElected,
    ElectionHeld,
    GroupLinkEstablished,
    GuideAppointed,
    GuideAppointmentEnded,
    GuideErased,
    GuideRegistered,
    MemberConverted,
    MemberEnrolled,
    MemberErased,
    MemberMoved,
    MemberTransferredOut,
    PairingEnded,
    PairingFormed,
    PlaqueIssued,
    PlaqueWithdrawn,
    ProbationExtended,
    SpaceAssigned,
    UnitRegistered,
)
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema
from runtime.personal import ERASED, PersonalVault, erased_key
from services.roster.personal import (
    GUIDE_COLUMNS,
    PERSONAL_COLUMNS,
    subject_of_payload,
    unseal,
)

TABLES = (
    "units",
    "committees",
    "members",
    "member_categories",
    "member_placements",
    "agreements",
    "plaques",
    "pairings",
    "group_links",
    "elections",
    "guides",
    "guide_appointments",
)


class RosterReadModels:
    """The read models hold personal data readable (the roster's views show it); they are
    folded from events whose personal fields are sealed, unsealed here with each person's key —
    a person erased reads as erased, and `member.erased` blanks what was folded before, so a
    rebuild after an erasure equals the live tables."""

    name = "roster_read_models"
    event_types = CATALOGUE.types_of("member")

    def __init__(self, schema: str, vault: PersonalVault) -> None:
        self._s = quote_schema(schema)
        self._vault = vault

    async def reset(self, conn: Connection) -> None:
        await conn.execute(f"TRUNCATE {', '.join(f'{self._s}.{t}' for t in TABLES)}")

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        subjects = [s for e in events if (s := subject_of_payload(e.payload))]
        keys = await self._vault.keys(subjects, conn=conn)
        for event in events:
            subject = subject_of_payload(event.payload)
            if subject is not None:
                key = keys.get(subject) or erased_key(subject)
                event = replace(event, payload=unseal(event.payload, key))
            await self._apply_one(conn, event)

    async def _blank(
        self, conn: Connection, columns: dict[str, tuple[str, ...]], key: str, subject: str
    ) -> None:
        for table, names in columns.items():
            sets = ", ".join(
                f"{name} = CASE WHEN {name} IS NULL THEN NULL ELSE $2 END" for name in names
            )
            await conn.execute(
                f"UPDATE {self._s}.{table} SET {sets} WHERE {key} = $1", subject, ERASED
            )

    async def _shred(self, conn: Connection, subject: str, stream_id: str) -> None:
        """The erasure takes effect where it is folded, in the same transaction: the person's
        key is destroyed and their unique claims (a student number's keyed hash) released. Both
        are idempotent, so a rebuild folding the erasure again changes nothing."""
        await self._vault.erase(subject, conn)
        await conn.execute(f"DELETE FROM {self._s}.unique_claims WHERE stream_id = $1", stream_id)

    async def _apply_one(self, conn: Connection, event: IncomingEvent) -> None:
        s, p, position = self._s, event.payload, event.position
        match p:
            case UnitRegistered():
                parent = await conn.fetchrow(
                    f"SELECT school_id, branch_id FROM {s}.units WHERE unit_id = $1", p.parent_id
                )
                school = (
                    p.unit_id if p.kind == "school" else (parent["school_id"] if parent else None)
                )
                branch = {
                    "branch": p.unit_id,
                    "group": parent["branch_id"] if parent else None,
                }.get(p.kind)
                await conn.execute(
                    f"INSERT INTO {s}.units VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    p.unit_id,
                    p.kind,
                    p.name,
                    p.parent_id,
                    p.branch_kind,
                    school,
                    branch,
                )
            case CommitteeElected():
                await conn.execute(
                    f"INSERT INTO {s}.committees (branch_id, position, secretary_id, member_ids, "
                    "term_starts_on, term_ends_on, elected_on, election_id) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    p.branch_id,
                    position,
                    p.secretary_id,
                    p.member_ids,
                    p.term_starts_on,
                    p.term_ends_on,
                    p.elected_on,
                    p.election_id,
                )
            case ElectionHeld():
                await conn.execute(
                    f"INSERT INTO {s}.elections VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                    "$11, $12, $13, $14, $15::jsonb, $16, $17, $18, $19, $20, $21, $22)",
                    p.branch_id,
                    p.election_id,
                    position,
                    p.held_on,
                    p.round,
                    p.round_of,
                    p.seats,
                    p.candidates,
                    p.entitled,
                    p.entitled_ids,
                    p.present_entitled,
                    p.present_entitled_ids,
                    p.present_not_entitled,
                    p.ballots_cast,
                    json.dumps(p.tally),
                    p.elected,
                    p.tied,
                    p.seats_for_next_round,
                    p.empty_seats,
                    p.quorum,
                    p.margin,
                    p.majority,
                )
            case GuideRegistered():
                await conn.execute(
                    f"INSERT INTO {s}.guides VALUES ($1, $2, $3, $4, $5, $6)",
                    p.guide_id,
                    p.name,
                    p.kind,
                    p.organisation,
                    p.phone,
                    p.registered_on,
                )
            case GuideAppointed():
                await conn.execute(
                    f"INSERT INTO {s}.guide_appointments VALUES ($1, $2, $3, $4, $5, $6, $7, "
                    "NULL, NULL)",
                    p.guide_id,
                    p.appointment_id,
                    p.branch_id,
                    p.member_ids,
                    p.group_id,
                    p.term_starts_on,
                    p.term_ends_on,
                )
            case GuideAppointmentEnded():
                await conn.execute(
                    f"UPDATE {s}.guide_appointments SET ended_on = $3, end_reason = $4 "
                    "WHERE guide_id = $1 AND appointment_id = $2",
                    p.guide_id,
                    p.appointment_id,
                    p.ended_on,
                    p.reason,
                )
            case GroupLinkEstablished():
                await conn.execute(
                    f"INSERT INTO {s}.group_links SELECT $1, $2, u.branch_id, $3, $4, $5 "
                    f"FROM (SELECT $2::text AS unit_id) g LEFT JOIN {s}.units u USING (unit_id)",
                    p.link_id,
                    p.group_id,
                    p.target_kind,
                    p.target,
                    p.established_on,
                )
            case MemberEnrolled():
                await conn.execute(
                    f"INSERT INTO {s}.members (member_id, student_number, name, branch_id, "
                    "school_id, group_id, class_name, company, dormitory, bed, standing, "
                    "cadre_post, joined_on, probation_started_on, probation_ends_on, "
                    "expected_graduation, enrolled_on) "
                    f"SELECT $1, $2, $3, $4, (SELECT school_id FROM {s}.units WHERE unit_id = $4),"
                    " $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16",
                    p.member_id,
                    p.student_number,
                    p.name,
                    p.branch_id,
                    p.group_id,
                    p.class_name,
                    p.company,
                    p.dormitory,
                    p.bed,
                    p.standing,
                    p.cadre_post,
                    p.joined_on,
                    p.probation_started_on,
                    p.probation_ends_on,
                    p.expected_graduation,
                    p.enrolled_on,
                )
                await conn.executemany(
                    f"INSERT INTO {s}.member_categories VALUES ($1, $2, $3, $4, $5, 'enrolment', "
                    "NULL)",
                    [
                        (p.member_id, position, "standing", p.standing, p.enrolled_on),
                        (
                            p.member_id,
                            position,
                            "cadre",
                            "cadre" if p.cadre_post else "non_cadre",
                            p.enrolled_on,
                        ),
                        (p.member_id, position, "performance", "neither", p.enrolled_on),
                    ],
                )
                await self._placement(
                    conn,
                    p.member_id,
                    position,
                    p.group_id,
                    p.class_name,
                    p.company,
                    p.dormitory,
                    p.bed,
                    p.enrolled_on,
                )
            case CategoryChanged():
                await conn.execute(
                    f"INSERT INTO {s}.member_categories VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    p.member_id,
                    position,
                    p.dimension,
                    p.value,
                    p.effective_on,
                    p.source,
                    p.reason,
                )
                if p.dimension == "standing":
                    await conn.execute(
                        f"UPDATE {s}.members SET standing = $2 WHERE member_id = $1",
                        p.member_id,
                        p.value,
                    )
            case MemberConverted():
                await conn.execute(
                    f"UPDATE {s}.members SET standing = 'full', joined_on = $2 "
                    "WHERE member_id = $1",
                    p.member_id,
                    p.converted_on,
                )
            case ProbationExtended():
                await conn.execute(
                    f"UPDATE {s}.members SET probation_ends_on = $2, probation_extended = true "
                    "WHERE member_id = $1",
                    p.member_id,
                    p.new_end_on,
                )
            case MemberMoved():
                await conn.execute(
                    f"UPDATE {s}.members SET group_id = $2, class_name = $3, company = $4, "
                    "dormitory = $5, bed = $6 WHERE member_id = $1",
                    p.member_id,
                    p.group_id,
                    p.class_name,
                    p.company,
                    p.dormitory,
                    p.bed,
                )
                await self._placement(
                    conn,
                    p.member_id,
                    position,
                    p.group_id,
                    p.class_name,
                    p.company,
                    p.dormitory,
                    p.bed,
                    p.effective_on,
                )
            case MemberTransferredOut():
                await conn.execute(
                    f"UPDATE {s}.members SET transferred_on = $2, destination = $3 "
                    "WHERE member_id = $1",
                    p.member_id,
                    p.transferred_on,
                    p.destination,
                )
            case SpaceAssigned():
                await conn.execute(
                    f"UPDATE {s}.members SET space_dormitory = $2, space_class = $3, "
                    "space_company = $4, space_post_scope = $5 WHERE member_id = $1",
                    p.member_id,
                    p.dormitory,
                    p.class_name,
                    p.company,
                    p.post_scope,
                )
            case AgreementSigned():
                await conn.execute(
                    f"INSERT INTO {s}.agreements VALUES ($1, $2, $3, $4, $5)",
                    p.agreement_id,
                    p.member_id,
                    p.academic_year,
                    p.signed_on,
                    p.expires_on,
                )
            case PlaqueIssued():
                await conn.execute(
                    f"INSERT INTO {s}.plaques VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)",
                    p.plaque_id,
                    p.member_id,
                    p.kind,
                    p.dormitory,
                    p.bed,
                    p.issued_on,
                )
            case PlaqueWithdrawn():
                await conn.execute(
                    f"UPDATE {s}.plaques SET withdrawn_on = $2, reason = $3 WHERE plaque_id = $1",
                    p.plaque_id,
                    p.withdrawn_on,
                    p.reason,
                )
            case PairingFormed():
                await conn.execute(
                    f"INSERT INTO {s}.pairings VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
                    p.pairing_id,
                    event.branch_id,
                    p.mentor_id,
                    p.mentee_id,
                    p.formed_on,
                )
            case PairingEnded():
                await conn.execute(
                    f"UPDATE {s}.pairings SET ended_on = $2, reason = $3 WHERE pairing_id = $1",
                    p.pairing_id,
                    p.ended_on,
                    p.reason,
                )
            case MemberErased():
                await conn.execute(
                    f"UPDATE {s}.members SET erased_on = $2 WHERE member_id = $1",
                    p.member_id,
                    p.erased_on,
                )
                await self._blank(conn, PERSONAL_COLUMNS, "member_id", p.member_id)
                await self._shred(conn, p.member_id, f"member-{p.member_id}")
            case GuideErased():
                await conn.execute(
                    f"UPDATE {s}.guides SET erased_on = $2 WHERE guide_id = $1",
                    p.guide_id,
                    p.erased_on,
                )
                await self._blank(conn, GUIDE_COLUMNS, "guide_id", p.guide_id)
                await self._shred(conn, p.guide_id, f"guide-{p.guide_id}")

    async def _placement(
        self, conn: Connection, member_id: str, position: int, *values: object
    ) -> None:
        await conn.execute(
            f"INSERT INTO {self._s}.member_placements VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            member_id,
            position,
            *values,
        )
