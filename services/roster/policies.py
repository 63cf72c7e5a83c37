"""What the roster does on its own when other services publish: the performance dimension
follows the scoring service's closed assessments (excellent / lagging / neither)."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from contracts.events import AssessmentClosed
from runtime.consumer import IncomingEvent
from runtime.db import Connection
from runtime.decider import CommandRefused
from runtime.logs import get_logger
from services.roster.domain.member import ChangeCategory
from services.roster.handlers import RosterService, system_context

log = get_logger("roster.policies")


class PerformanceFromAssessments:
    name = "performance_from_assessments"
    event_types = frozenset({"assessment.closed"})

    def __init__(self, service: RosterService) -> None:
        self._service = service

    async def apply(self, conn: Connection, events: Sequence[IncomingEvent]) -> None:
        for event in events:
            assessment = event.payload
            assert isinstance(assessment, AssessmentClosed)
            verdicts = dict.fromkeys(assessment.excellent, "excellent")
            verdicts.update(dict.fromkeys(assessment.lagging, "lagging"))
            closed_on = assessment.closed_at.astimezone(ZoneInfo(self._service.zone.key)).date()
            for result in assessment.results:
                value = verdicts.get(result.member_id, "neither")
                command = ChangeCategory(
                    dimension="performance",
                    value=value,
                    effective_on=closed_on,
                    reason=f"assessment {assessment.period_id} of branch {assessment.branch_id} "
                    f"closed (regulation {assessment.regulation_id} "
                    f"v{assessment.regulation_version}, revision {assessment.revision})",
                )
                context = system_context(
                    f"assessment:{event.event_id}:{result.member_id}",
                    causation=event.event_id,
                    correlation=event.envelope.correlation_id,
                )
                try:
                    await self._service.change_category(
                        result.member_id, command, context, source="assessment"
                    )
                except CommandRefused as refusal:
                    # Not on this roster, transferred out, or already so: nothing to record.
                    log.info(
                        "assessment verdict not recorded",
                        member_id=result.member_id,
                        rule=refusal.rule,
                    )
