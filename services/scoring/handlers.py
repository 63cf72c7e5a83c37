"""Scoring's service layer: re-scoring members as inputs arrive, publishing regulations,
four-eyes adjustments, closing and reopening periods."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from contracts.errors import FieldError
from contracts.events import (
    AdjustmentRequested,
    AssessmentClosed,
    AssessmentReopened,
    RegulationPublished,
    ScoreAdjusted,
)
from contracts.events.score import AssessmentResult
from runtime.clock import Clock
from runtime.commands import Change, CommandContext, Decision, LoadedStream, execute
from runtime.db import Connection
from runtime.decider import CommandRefused
from runtime.directory import Directory, MemberRecord
from runtime.eventstore import AppendResult, EventStore, IdempotencyKey
from runtime.projection import LocalProjector
from services.scoring.archive import Archive
from services.scoring.domain.assessment import (
    Participant,
    PeriodResult,
    TableRow,
    branch_table,
    compute_period,
)
from services.scoring.domain.engine import MemberPeriod, all_lines
from services.scoring.domain.regulation import Period, RegulationHistory, parse_document
from services.scoring.live import LiveScores


class RegulationInvalid(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))


def regulation_stream(regulation_id: str) -> str:
    return f"regulation-{regulation_id}"


def assessment_stream(branch_id: str, period_id: str) -> str:
    return f"assessment-{branch_id}-{period_id}"


def adjustment_stream(adjustment_id: str) -> str:
    return f"adjustment-{adjustment_id}"


class ScoringService:
    def __init__(
        self,
        store: EventStore,
        archive: Archive,
        directory: Directory,
        projector: LocalProjector | None,
        *,
        clock: Clock,
        timezone: str,
    ) -> None:
        self.store = store
        self.archive = archive
        self.directory = directory
        self.projector = projector
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self.live = LiveScores(store, archive, store.schema, self.zone)

    def end_of(self, day: date) -> datetime:
        return datetime.combine(day + timedelta(days=1), time(0), self.zone) - timedelta(
            microseconds=1
        )

    async def settled(self) -> None:
        """Wait until the read models of scoring's own log include everything recorded."""
        if self.projector is not None:
            head, _ = await self.store.head()
            await self.projector.wait_for(head)

    # -- computing --------------------------------------------------------------------------

    async def member_periods(
        self,
        member_id: str,
        *,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
        conn: Connection | None = None,
        history: RegulationHistory | None = None,
    ) -> dict[str, MemberPeriod]:
        """The member's result in every period they have something in."""
        history = history or await self.archive.regulations(known_at, conn=conn)
        inputs = await self.archive.inputs_of(
            [member_id], as_of=as_of, known_at=known_at, conn=conn
        )
        adjustments = await self.archive.adjustments(
            [member_id], as_of=as_of, known_at=known_at, conn=conn
        )
        lines = all_lines(inputs, history, self.zone)
        results = {}
        for period_id in history.periods():
            result = compute_period(period_id, history, inputs, adjustments, self.zone, lines=lines)
            if result is not None and member_id in result.members:
                results[period_id] = result.members[member_id]
        return results

    async def branches_of(self, members: Iterable[str]) -> dict[str, str]:
        """Each member's branch, for ledger lines whose cause named none."""
        return {m: r.branch_id for m, r in (await self.directory.members(members)).items()}

    async def refresh(self, members: Iterable[str]) -> None:
        async with self.archive.pool.acquire() as conn, conn.transaction():
            await self.live.refresh(conn, members)

    # -- regulations -------------------------------------------------------------------------

    async def publish_regulation(
        self, raw: Mapping[str, Any], context: CommandContext
    ) -> AppendResult:
        document, errors = parse_document(raw)
        if errors or document is None:
            raise RegulationInvalid(errors)
        if document.id != self.archive.regulation_id:
            raise CommandRefused(
                "regulation_not_in_use",
                f"this university scores under regulation {self.archive.regulation_id}; "
                f"{document.id} is not it",
                field="id",
            )
        stream = regulation_stream(document.id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            versions = [
                e.version for e in loaded[stream].events if isinstance(e, RegulationPublished)
            ]
            expected = max(versions, default=0) + 1
            if document.version != expected:
                raise CommandRefused(
                    "regulation_version",
                    f"the next version of {document.id} is {expected}, not {document.version}",
                    field="version",
                )
            event = RegulationPublished(
                regulation_id=document.id,
                version=document.version,
                title=document.title_text()[:200],
                effective_from=document.effective_from,
                document=document.model_dump(mode="json"),
            )
            return Decision([Change(stream, event, self.clock(), None)])

        result = await execute(self.store, context, [stream], decide)
        await self.settled()
        if not result.replayed:
            # Re-score what the new version governs: everything that occurred since it applies.
            since = datetime.combine(document.effective_from, time(0), self.zone)
            members = await self.archive.members_with_inputs_since(since)
            await self.live.rescore_since(
                since, result.event_ids[0], await self.branches_of(members)
            )
        return result

    # -- adjustments -------------------------------------------------------------------------

    async def _committee_member(self, branch_id: str, member_id: str | None, field: str) -> None:
        committee = await self.directory.committee(branch_id)
        if committee is None or member_id is None or member_id not in committee.member_ids:
            raise CommandRefused(
                "not_on_committee",
                f"{member_id or 'this caller'} is not on the committee of branch {branch_id}",
                field=field,
            )

    async def request_adjustment(
        self,
        branch_id: str,
        adjustment_id: str,
        member_id: str,
        period_id: str,
        points: Decimal,
        reason: str,
        requester: str | None,
        context: CommandContext,
    ) -> AppendResult:
        await self._committee_member(branch_id, requester, "requested_by")
        member = await self.directory.member(member_id)
        if member is None or member.branch_id != branch_id:
            raise CommandRefused(
                "member_not_in_branch",
                f"member {member_id} is not a member of branch {branch_id}",
                field="member_id",
            )
        history = await self.archive.regulations()
        if period_id not in history.periods():
            raise CommandRefused(
                "period_unknown", f"the regulation has no period {period_id}", field="period_id"
            )
        stream = adjustment_stream(adjustment_id)
        assert requester is not None

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            if loaded[stream].exists:
                raise CommandRefused(
                    "adjustment_exists",
                    f"adjustment {adjustment_id} exists already",
                    field="adjustment_id",
                )
            event = AdjustmentRequested(
                adjustment_id=adjustment_id,
                member_id=member_id,
                branch_id=branch_id,
                period_id=period_id,
                points=points,
                reason=reason,
                requested_by=requester,
            )
            return Decision([Change(stream, event, self.clock(), branch_id)])

        result = await execute(self.store, context, [stream], decide)
        await self.settled()
        return result

    async def approve_adjustment(
        self, branch_id: str, adjustment_id: str, approver: str | None, context: CommandContext
    ) -> AppendResult:
        await self._committee_member(branch_id, approver, "approved_by")
        stream = adjustment_stream(adjustment_id)
        assert approver is not None

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            requested = next(
                (e for e in loaded[stream].events if isinstance(e, AdjustmentRequested)), None
            )
            if requested is None or requested.branch_id != branch_id:
                raise CommandRefused(
                    "adjustment_unknown", f"branch {branch_id} has no adjustment {adjustment_id}"
                )
            if any(isinstance(e, ScoreAdjusted) for e in loaded[stream].events):
                raise CommandRefused(
                    "adjustment_approved", f"adjustment {adjustment_id} is approved already"
                )
            if requested.requested_by == approver:
                raise CommandRefused(
                    "four_eyes",
                    f"{approver} asked for adjustment {adjustment_id} and "
                    "cannot approve it too; another committee member must",
                    field="approved_by",
                )
            event = ScoreAdjusted(
                adjustment_id=adjustment_id,
                member_id=requested.member_id,
                branch_id=branch_id,
                period_id=requested.period_id,
                points=requested.points,
                reason=requested.reason,
                requested_by=requested.requested_by,
                approved_by=approver,
            )
            return Decision([Change(stream, event, self.clock(), branch_id)])

        result = await execute(self.store, context, [stream], decide)
        await self.settled()
        adjusted = await self.archive.adjustment(adjustment_id)
        if adjusted is not None:
            await self.refresh([adjusted["member_id"]])
        return result

    # -- periods ------------------------------------------------------------------------------

    async def participants(
        self, branch_id: str, period: Period, as_of: date | None = None
    ) -> list[Participant]:
        """Who is assessed: the branch's members on the period's last day (or the day asked),
        probationary if they were so on that day."""
        day = min(period.ends_on, as_of) if as_of else period.ends_on
        members: list[MemberRecord] = await self.directory.members_of(branch_id, day)
        return [
            Participant(m.member_id, branch_id, m.standing_on(day) == "probationary")
            for m in members
        ]

    async def branch_result(
        self,
        branch_id: str,
        period_id: str,
        *,
        as_of: date | None = None,
        known_at: datetime | None = None,
        history: RegulationHistory | None = None,
    ) -> tuple[PeriodResult, list[TableRow], list[Participant]] | None:
        history = history or await self.archive.regulations(known_at)
        period = history.periods().get(period_id)
        if period is None:
            return None
        participants = await self.participants(branch_id, period, as_of)
        moment = self.end_of(as_of) if as_of else None
        members = [p.member_id for p in participants]
        inputs = await self.archive.inputs_of(members, as_of=moment, known_at=known_at)
        adjustments = await self.archive.adjustments(members, as_of=moment, known_at=known_at)
        result = compute_period(period_id, history, inputs, adjustments, self.zone, participants)
        if result is None:
            return None
        return result, branch_table(result, branch_id, participants), participants

    async def close_period(
        self,
        branch_id: str,
        period_id: str,
        context: CommandContext,
        closed_on: date | None = None,
    ) -> AppendResult:
        stream = assessment_stream(branch_id, period_id)
        closed_at = self.clock()
        if closed_on is not None:
            if closed_on > closed_at.astimezone(self.zone).date():
                raise CommandRefused(
                    "closed_in_future",
                    "a period cannot be closed on a day that has not come",
                    field="closed_on",
                )
            closed_at = min(closed_at, self.end_of(closed_on))
        computed = await self.branch_result(branch_id, period_id)
        if computed is None:
            raise CommandRefused("period_unknown", f"the regulation has no period {period_id}")
        result, table, _ = computed

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            closes = [e for e in loaded[stream].events if isinstance(e, AssessmentClosed)]
            reopens = [e for e in loaded[stream].events if isinstance(e, AssessmentReopened)]
            if len(closes) > len(reopens):
                raise CommandRefused(
                    "period_closed",
                    f"period {period_id} of branch {branch_id} is closed "
                    f"(revision {len(closes)}); reopen it first",
                )
            event = AssessmentClosed(
                branch_id=branch_id,
                period_id=period_id,
                regulation_id=result.governing.id,
                regulation_version=result.governing.version,
                closed_at=closed_at,
                revision=len(closes) + 1,
                results=[
                    AssessmentResult(
                        member_id=r.member_id, total=r.total, rank=r.rank, grade=r.grade
                    )
                    for r in table
                ],
                excellent=[r.member_id for r in table if r.classification == "excellent"],
                lagging=[r.member_id for r in table if r.classification == "lagging"],
            )
            return Decision([Change(stream, event, closed_at, branch_id)])

        closed = await execute(self.store, context, [stream], decide)
        await self.settled()
        return closed

    async def reopen_period(
        self, branch_id: str, period_id: str, reason: str, context: CommandContext
    ) -> AppendResult:
        stream = assessment_stream(branch_id, period_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            closes = [e for e in loaded[stream].events if isinstance(e, AssessmentClosed)]
            reopens = [e for e in loaded[stream].events if isinstance(e, AssessmentReopened)]
            if len(closes) == len(reopens):
                raise CommandRefused(
                    "period_open", f"period {period_id} of branch {branch_id} is not closed"
                )
            event = AssessmentReopened(
                branch_id=branch_id, period_id=period_id, revision=len(closes), reason=reason
            )
            return Decision([Change(stream, event, self.clock(), branch_id)])

        reopened = await execute(self.store, context, [stream], decide)
        await self.settled()
        return reopened


def system_context(key: str) -> CommandContext:
    return CommandContext(
        "scoring", "system", idempotency=IdempotencyKey(f"system:{key}", fingerprint=key)
    )
