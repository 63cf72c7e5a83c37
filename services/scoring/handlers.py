"""Scoring's service layer: re-scoring members as inputs arrive, publishing and adopting
regulations, four-eyes adjustments, closing and reopening periods. The rules live in the
domain's deciders (services/scoring/domain/); this layer looks up the facts they need, runs
them (runtime.commands) and waits until scoring's own read models include the result."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from contracts.errors import FieldError
from runtime.business_time import BusinessCalendar
from runtime.clock import Clock
from runtime.commands import Change, CommandContext, Decision, LoadedStream, execute, load
from runtime.consumer.projector import lock_projections
from runtime.db import Connection
from runtime.decider import CommandRefused
from runtime.directory import Directory, MemberRecord
from runtime.eventstore import AppendResult, EventStore, IdempotencyKey
from runtime.projection import LocalProjector
from services.scoring.archive import Archive
from services.scoring.domain import adjustment, period, publishing
from services.scoring.domain.assessment import (
    Participant,
    PeriodResult,
    TableRow,
    branch_table,
    compute_period,
)
from services.scoring.domain.engine import Adjustment, Input, MemberPeriod, all_lines
from services.scoring.domain.regulation import Governing, RegulationBook, parse_document
from services.scoring.live import LiveScores

#: A branch's period computed: every result, the branch's table, who took part, what governs.
BranchResult = tuple[PeriodResult, list[TableRow], list[Participant], Governing]


@dataclass(frozen=True)
class BranchInputs:
    """Everything a branch's period is computed from, read from the database."""

    branch_id: str
    period_id: str
    governing: Governing
    participants: list[Participant]
    inputs: list[Input]
    adjustments: list[Adjustment]


def compute_branch(loaded: BranchInputs, book: RegulationBook, zone: ZoneInfo) -> BranchResult:
    """The branch's period from its inputs: pure, no I/O."""
    result = compute_period(
        loaded.period_id, book, loaded.inputs, loaded.adjustments, zone, loaded.participants
    )
    table = branch_table(result, loaded.branch_id, loaded.participants)
    return result, table, loaded.participants, loaded.governing


class RegulationInvalid(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors))


#: A moment to look back from: a business day (all of it) or an instant.
Moment = date | datetime


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
        self.calendar = BusinessCalendar(clock, self.zone)
        self.live = LiveScores(store, archive, store.schema, self.zone)

    def end_of(self, day: date) -> datetime:
        return self.calendar.end_of(day)

    def instant(self, moment: Moment | None) -> datetime | None:
        """`as_of` as an instant: a day means the whole of it."""
        if moment is None or isinstance(moment, datetime):
            return moment
        return self.calendar.end_of(moment)

    def day(self, moment: Moment) -> date:
        return self.calendar.day_of(moment) if isinstance(moment, datetime) else moment

    async def settled(self) -> None:
        """Wait until the read models of scoring's own log include everything recorded."""
        if self.projector is not None:
            head, _ = await self.store.head()
            await self.projector.wait_for(head)

    async def _run(
        self, context: CommandContext, streams: list[str], decide: Any, primary: str | None = None
    ) -> AppendResult:
        result = await execute(self.store, context, streams, decide, primary=primary)
        await self.settled()
        return result

    # -- computing --------------------------------------------------------------------------

    async def member_periods(
        self,
        member_id: str,
        *,
        as_of: datetime | None = None,
        known_at: datetime | None = None,
        conn: Connection | None = None,
        book: RegulationBook | None = None,
    ) -> dict[str, MemberPeriod]:
        """The member's result in every period they have something in."""
        book = book or await self.archive.book(known_at, conn=conn)
        inputs = await self.archive.inputs_of(
            [member_id], as_of=as_of, known_at=known_at, conn=conn
        )
        adjustments = await self.archive.adjustments(
            [member_id], as_of=as_of, known_at=known_at, conn=conn
        )
        lines = all_lines(inputs, book, self.zone)
        results = {}
        for period_id in book.period_ids():
            result = compute_period(period_id, book, inputs, adjustments, self.zone, lines=lines)
            if member_id in result.members:
                results[period_id] = result.members[member_id]
        return results

    async def branches_of(self, members: Iterable[str]) -> dict[str, str]:
        """Each member's branch, for ledger lines whose cause named none."""
        return {m: r.branch_id for m, r in (await self.directory.members(members)).items()}

    async def refresh(self, members: Iterable[str]) -> None:
        async with self.archive.pool.acquire() as conn, conn.transaction():
            await lock_projections(conn, self.store.schema)
            await self.live.refresh(conn, members)

    async def governing(
        self, branch_id: str, period_id: str, known_at: datetime | None = None
    ) -> Governing | None:
        return (await self.archive.book(known_at)).governing(branch_id, period_id)

    async def is_closed(self, branch_id: str, period_id: str) -> bool:
        closes = await self.archive.closes(branch_id, period_id)
        return bool(closes) and closes[-1]["reopened_at"] is None

    # -- regulations -------------------------------------------------------------------------

    async def publish_regulation(
        self,
        raw: Mapping[str, Any],
        context: CommandContext,
        *,
        publisher_school: str | None = None,
        published_on: date | None = None,
    ) -> AppendResult:
        """Publish a version of any regulation id: no restart, no setting. A school admin
        publishes for their school (`publisher_school`)."""
        document, errors = parse_document(raw)
        if errors or document is None:
            raise RegulationInvalid(errors)
        day = self.calendar.past_day(published_on, "published_on", "a publication")
        stream = publishing.regulation_stream(document.id)
        command = publishing.Publish(document, day, publisher_school)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = publishing.initial_publication()
            for event in loaded[stream].events:
                state = publishing.evolve_publication(state, event)
            events = publishing.decide_publish(command, state)
            return Decision([Change(stream, e, self.calendar.start_of(day), None) for e in events])

        result = await self._run(context, [stream], decide)
        if not result.replayed:
            await self._rescore(document.effective_from, result)
        return result

    async def _rescore(self, since: date, result: AppendResult) -> None:
        """Re-score what a new version or a new adoption governs: what occurred since."""
        moment = self.calendar.start_of(since)
        members = await self.archive.members_with_inputs_since(moment)
        await self.live.rescore_since(moment, result.event_ids[0], await self.branches_of(members))

    async def adopt_regulation(
        self,
        unit_id: str,
        regulation_id: str,
        effective_from: date,
        context: CommandContext,
        *,
        decided_on: date | None = None,
        reason: str | None = None,
    ) -> AppendResult:
        """A school, or a branch overriding its school, follows a regulation from a date."""
        day = self.calendar.past_day(decided_on, "decided_on", "an adoption")
        unit = await self.directory.unit(unit_id)
        book = await self.archive.book()
        # The branches whose scores the adoption can change: a school's, except those that
        # follow their own adoption on that day (and so on every later day: the school's
        # choice never reaches them); a branch itself.
        branches = (
            [
                u.unit_id
                for u in await self.directory.units("branch")
                if u.parent_id == unit_id and book.source_of(u.unit_id, effective_from) != "own"
            ]
            if unit is not None and unit.kind == "school"
            else [unit_id]
        )
        closed_after = []
        for branch in branches:
            for period_id in book.period_ids():
                governing = book.governing(branch, period_id)
                if (
                    governing is not None
                    and governing.period.ends_on >= effective_from
                    and await self.is_closed(branch, period_id)
                ):
                    closed_after.append((branch, period_id))
        facts = publishing.AdoptionFacts(
            unit_kind=unit.kind if unit is not None else None,
            version_dates=[v.document.effective_from for v in book.history(regulation_id).versions],
            following_then=book.regulation_of(unit_id, effective_from),
            closed_after=closed_after,
        )
        command = publishing.Adopt(unit_id, regulation_id, effective_from, day, reason)
        stream = publishing.adoption_stream(unit_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = publishing.decide_adoption(command, facts)
            return Decision([Change(stream, e, self.calendar.start_of(day), None) for e in events])

        result = await self._run(context, [stream], decide)
        if not result.replayed:
            await self._rescore(effective_from, result)
        return result

    # -- adjustments -------------------------------------------------------------------------

    async def _branch_facts(
        self, branch_id: str, member_id: str | None, day: date, period_id: str | None = None
    ) -> adjustment.BranchFacts:
        committee = await self.directory.committee(branch_id)
        member = await self.directory.member(member_id) if member_id else None
        book = await self.archive.book()
        if period_id is None:
            placement = book.placed(branch_id, day)
            period_id = placement[1].id if placement is not None else None
        governing = book.governing(branch_id, period_id) if period_id is not None else None
        found = governing.period if governing is not None else None
        if found is not None and not found.starts_on <= day <= found.ends_on:
            found = None
        document = governing.document if governing is not None else None
        return adjustment.BranchFacts(
            committee=frozenset(committee.member_ids) if committee else frozenset(),
            member_branch=member.branch_id if member is not None else None,
            period=found,
            period_closed=found is not None and await self.is_closed(branch_id, found.id),
            precision=document.precision if document is not None else 2,
            regulation_id=book.regulation_of(branch_id, day),
        )

    async def request_adjustment(
        self,
        command: adjustment.RequestAdjustment,
        requester: str | None,
        context: CommandContext,
    ) -> AppendResult:
        if command.effective_on > self.calendar.today():
            raise CommandRefused(
                "effective_on_in_future",
                "an adjustment cannot take effect on a day that has not come",
                field="effective_on",
                invalid=True,
            )
        facts = await self._branch_facts(command.branch_id, command.member_id, command.effective_on)
        stream = adjustment.adjustment_stream(command.adjustment_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = _adjustment_state(loaded[stream])
            events = adjustment.decide_request(command, state, facts, requester)
            occurred = self.calendar.start_of(command.effective_on)
            return Decision([Change(stream, e, occurred, command.branch_id) for e in events])

        return await self._run(context, [stream], decide)

    async def approve_adjustment(
        self, branch_id: str, adjustment_id: str, approver: str | None, context: CommandContext
    ) -> AppendResult:
        stream = adjustment.adjustment_stream(adjustment_id)
        current = _adjustment_state(await load(self.store, stream))
        requested = current.requested if current is not None else None
        day = (
            requested.effective_on
            if requested is not None and requested.effective_on is not None
            else self.calendar.today()
        )
        facts = await self._branch_facts(
            branch_id,
            requested.member_id if requested else None,
            day,
            requested.period_id if requested else None,
        )
        command = adjustment.ApproveAdjustment(adjustment_id, branch_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = _adjustment_state(loaded[stream])
            events = adjustment.decide_approval(command, state, facts, approver)
            return Decision(
                [Change(stream, e, self.calendar.start_of(day), branch_id) for e in events]
            )

        result = await self._run(context, [stream], decide)
        adjusted = await self.archive.adjustment(adjustment_id)
        if adjusted is not None:
            await self.refresh([adjusted["member_id"]])
        return result

    # -- periods ------------------------------------------------------------------------------

    async def participants(
        self, branch_id: str, ends_on: date, as_of: date | None = None
    ) -> list[Participant]:
        """Who is assessed: the branch's members on the period's last day (or the day asked),
        probationary if they were so on that day."""
        day = min(ends_on, as_of) if as_of else ends_on
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
        as_of: Moment | None = None,
        known_at: datetime | None = None,
        book: RegulationBook | None = None,
    ) -> BranchResult | None:
        """The branch's period under the regulation it follows, or None when no regulation it
        follows has that period."""
        book = book or await self.archive.book(known_at)
        loaded = await self.branch_inputs(
            branch_id, period_id, as_of=as_of, known_at=known_at, book=book
        )
        return compute_branch(loaded, book, self.zone) if loaded is not None else None

    async def branch_inputs(
        self,
        branch_id: str,
        period_id: str,
        *,
        as_of: Moment | None = None,
        known_at: datetime | None = None,
        book: RegulationBook,
    ) -> BranchInputs | None:
        """What a branch's period is computed from (the database reads of branch_result); the
        computation itself is compute_branch, pure, so that it can run elsewhere."""
        governing = book.governing(branch_id, period_id)
        if governing is None:
            return None
        day = self.day(as_of) if as_of is not None else None
        participants = await self.participants(branch_id, governing.period.ends_on, day)
        moment = self.instant(as_of)
        members = [p.member_id for p in participants]
        inputs = await self.archive.inputs_of(members, as_of=moment, known_at=known_at)
        adjustments = await self.archive.adjustments(members, as_of=moment, known_at=known_at)
        return BranchInputs(branch_id, period_id, governing, participants, inputs, adjustments)

    async def close_period(
        self,
        branch_id: str,
        period_id: str,
        context: CommandContext,
        closed_on: date | None = None,
    ) -> AppendResult:
        stream = period.assessment_stream(branch_id, period_id)
        closed_at = self.clock()
        if closed_on is not None:
            self.calendar.past_day(closed_on, "closed_on", "a close")
            closed_at = min(closed_at, self.end_of(closed_on))
        computed = await self.branch_result(branch_id, period_id)
        if computed is None:
            raise CommandRefused(
                "period_unknown",
                f"no regulation branch {branch_id} follows has a period {period_id}",
            )
        _, table, _, governing = computed
        command = period.ClosePeriod(branch_id, period_id, closed_at)
        results = period.Results(governing.document, governing.period, table)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = _period_state(loaded[stream])
            events = period.decide_close(command, state, results)
            return Decision([Change(stream, e, closed_at, branch_id) for e in events])

        return await self._run(context, [stream], decide)

    async def reopen_period(
        self,
        branch_id: str,
        period_id: str,
        reason: str,
        context: CommandContext,
        reopened_on: date | None = None,
    ) -> AppendResult:
        stream = period.assessment_stream(branch_id, period_id)
        day = self.calendar.past_day(reopened_on, "reopened_on", "a reopening")
        occurred = self.clock() if reopened_on is None else self.calendar.start_of(day)
        command = period.ReopenPeriod(branch_id, period_id, reason)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = period.decide_reopen(command, _period_state(loaded[stream]))
            return Decision([Change(stream, e, occurred, branch_id) for e in events])

        return await self._run(context, [stream], decide)


def _adjustment_state(loaded: LoadedStream) -> adjustment.AdjustmentState | None:
    state = adjustment.initial_state()
    for record, event in zip(loaded.recorded, loaded.events, strict=True):
        state = adjustment.evolve(state, event, record.event_id)
    return state


def _period_state(loaded: LoadedStream) -> period.PeriodState:
    state = period.initial_state()
    for event in loaded.events:
        state = period.evolve(state, event)
    return state


def system_context(key: str) -> CommandContext:
    return CommandContext(
        "scoring", "system", idempotency=IdempotencyKey(f"system:{key}", fingerprint=key)
    )
