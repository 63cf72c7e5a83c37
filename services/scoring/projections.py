"""Scoring's projections: the archive and live scores from the consumed streams, and read
models of its own log (regulations, adjustments, closed assessments)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from contracts.envelope import Family
from contracts.events import (
    AdjustmentRequested,
    AssessmentClosed,
    AssessmentReopened,
    RegulationAdopted,
    RegulationPublished,
    ScoreAdjusted,
)
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.eventstore.schema import quote_schema
from services.scoring.archive import Archive
from services.scoring.handlers import ScoringService

#: The families scoring reads its inputs from.
INPUT_FAMILIES: tuple[Family, ...] = ("member", "activity", "attendance", "report")


class ScoringInputs:
    """Consumer projection: keep every input, then re-score the members it concerns."""

    name = "scoring_inputs"

    def __init__(
        self, service: ScoringService, archive: Archive, event_types: frozenset[str]
    ) -> None:
        self._service = service
        self._archive = archive
        self.event_types = event_types

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        fresh = await self._archive.record(conn, events)
        unplaced = {m for i in fresh if i.branch_id is None for m in i.members()}
        branch_of = await self._service.branches_of(unplaced) if unplaced else {}
        await self._service.live.apply(conn, fresh, branch_of)


class ScoringReadModels:
    """Local projection of scoring's own log."""

    name = "scoring_read_models"
    event_types = frozenset(
        {
            "regulation.published",
            "regulation.adopted",
            "score.adjustment_requested",
            "score.adjusted",
            "assessment.closed",
            "assessment.reopened",
        }
    )

    def __init__(self, schema: str) -> None:
        self._s = quote_schema(schema)

    async def reset(self, conn: Connection) -> None:
        await conn.execute(
            f"TRUNCATE {self._s}.regulations, {self._s}.adoptions, {self._s}.adjustments, "
            f"{self._s}.assessments"
        )

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        s = self._s
        for event in events:
            p = event.payload
            match p:
                case RegulationPublished():
                    await conn.execute(
                        f"INSERT INTO {s}.regulations (regulation_id, version, effective_from, "
                        "document, event_id, recorded_at, owner_unit_id) VALUES ($1, $2, $3, "
                        "$4::jsonb, $5, $6, $7) ON CONFLICT DO NOTHING",
                        p.regulation_id,
                        p.version,
                        p.effective_from,
                        orjson.dumps(p.document).decode(),
                        event.event_id,
                        event.recorded_at,
                        p.owner_unit_id,
                    )
                case RegulationAdopted():
                    await conn.execute(
                        f"INSERT INTO {s}.adoptions (event_id, unit_id, regulation_id, "
                        "effective_from, decided_on, position, recorded_at) VALUES ($1, $2, $3, "
                        "$4, $5, $6, $7) ON CONFLICT DO NOTHING",
                        event.event_id,
                        p.unit_id,
                        p.regulation_id,
                        p.effective_from,
                        p.decided_on,
                        event.position,
                        event.recorded_at,
                    )
                case AdjustmentRequested():
                    await conn.execute(
                        f"INSERT INTO {s}.adjustments (adjustment_id, member_id, branch_id, "
                        "period_id, points, reason, requested_by, requested_at, effective_on, "
                        "requested_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                        "ON CONFLICT DO NOTHING",
                        p.adjustment_id,
                        p.member_id,
                        p.branch_id,
                        p.period_id,
                        p.points,
                        p.reason,
                        p.requested_by,
                        event.recorded_at,
                        p.effective_on,
                        event.event_id,
                    )
                case ScoreAdjusted():
                    # `occurred_at` is the effective date (as_of); `recorded_at` the approval's
                    # record time (known_at).
                    await conn.execute(
                        f"UPDATE {s}.adjustments SET approved_by = $2, event_id = $3, "
                        "occurred_at = $4, recorded_at = $5 WHERE adjustment_id = $1",
                        p.adjustment_id,
                        p.approved_by,
                        event.event_id,
                        event.occurred_at,
                        event.recorded_at,
                    )
                case AssessmentClosed():
                    results = [r.model_dump(mode="json") for r in p.results]
                    await conn.execute(
                        f"INSERT INTO {s}.assessments (branch_id, period_id, revision, closed_at, "
                        "recorded_at, results) VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
                        p.branch_id,
                        p.period_id,
                        p.revision,
                        p.closed_at,
                        event.recorded_at,
                        orjson.dumps(
                            {"results": results, "excellent": p.excellent, "lagging": p.lagging}
                        ).decode(),
                    )
                case AssessmentReopened():
                    await conn.execute(
                        f"UPDATE {s}.assessments SET reopened_at = $4, reopen_reason = $5 "
                        "WHERE branch_id = $1 AND period_id = $2 AND revision = $3",
                        p.branch_id,
                        p.period_id,
                        p.revision,
                        event.recorded_at,
                        p.reason,
                    )
