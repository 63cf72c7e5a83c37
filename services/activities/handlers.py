"""The activities service layer: load, decide (domain), append; then wait for the read models."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from contracts.envelope import EventPayload
from contracts.events import ReportCadenceSet
from runtime.business_time import BusinessCalendar
from runtime.clock import Clock
from runtime.commands import (
    Change,
    CommandContext,
    Decision,
    LoadedStream,
    Prepare,
    StreamCache,
    execute,
    load,
)
from runtime.decider import CommandRefused
from runtime.directory import Directory, MemberRecord, Unit
from runtime.eventstore import AppendResult, EventStore, IdempotencyKey
from runtime.projection import LocalProjector
from services.activities.domain import activity, attendance, budget, reports
from services.activities.domain.activity import ActivityState

#: How far ahead report obligations may be planned (`through`), in years from today.
PLANNING_YEARS = 2


def add_years(day: date, years: int) -> date:
    """The same day `years` later (28 February for a 29 February that has none)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def activity_stream(activity_id: str) -> str:
    return f"activity-{activity_id}"


def attendance_stream(activity_id: str) -> str:
    return f"attendance-{activity_id}"


def report_stream(obligation_id: str) -> str:
    return f"report-{obligation_id}"


def cadence_stream(branch_id: str) -> str:
    return f"report-cadence-{branch_id}"


def recorded(loaded: LoadedStream) -> list[tuple[UUID, EventPayload]]:
    return [(r.event_id, e) for r, e in zip(loaded.recorded, loaded.events, strict=True)]


@dataclass(frozen=True)
class SemesterPlan:
    scheduled: list[str]
    already_planned: list[str]
    skipped_days: list[date]


class ActivitiesService:
    def __init__(
        self,
        store: EventStore,
        projector: LocalProjector | None,
        directory: Directory,
        *,
        clock: Clock,
        timezone: str,
    ) -> None:
        self.store = store
        self.projector = projector
        self.directory = directory
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self.calendar = BusinessCalendar(clock, self.zone)
        #: The streams commands read lately (an activity's attendance grows sheet by sheet:
        #: read once, then only what is new; runtime.commands.StreamCache).
        self._streams = StreamCache()

    def today(self) -> date:
        return self.calendar.today()

    def at(self, day: date) -> datetime:
        return self.calendar.start_of(day)

    def local_day(self, moment: datetime) -> date:
        return self.calendar.day_of(moment)

    async def _run(
        self,
        context: CommandContext,
        streams: Sequence[str],
        decide: Callable[[Mapping[str, LoadedStream]], Decision],
        primary: str | None = None,
        prepare: Prepare | None = None,
    ) -> AppendResult:
        result = await execute(
            self.store,
            context,
            streams,
            decide,
            primary=primary,
            prepare=prepare,
            cache=self._streams,
        )
        if self.projector is not None:
            await self.projector.wait_for(result.last_position)
        return result

    # -- activities -----------------------------------------------------------------------

    async def _schedule_checks(
        self, command: activity.ScheduleActivity, units: Mapping[str, Unit] | None = None
    ) -> tuple[bool, str | None, frozenset[str], str | None]:
        """Whether the branch is known, the branch of the activity's group, which of the named
        attendees are the branch's members on the day, and the branch of the attendees' group
        (None: no such group). Only what the decision needs is read: the units named, in one
        round trip, and the named attendees (none for a meeting of the whole branch)."""
        attending = command.attendees.group_id if command.attendees else None
        named = command.attendees.member_ids if command.attendees else []
        wanted = [command.branch_id, *(u for u in (command.group_id, attending) if u)]
        if units is None:
            units = await self.directory.units_by_id(wanted)
        branch = units.get(command.branch_id)
        group = units.get(command.group_id) if command.group_id else None
        attending_group = units.get(attending) if attending else None
        members: frozenset[str] = frozenset()
        if named:
            day = self.local_day(command.starts_at)
            members = await self.directory.active_member_ids(command.branch_id, day, named)
        return (
            branch is not None and branch.kind == "branch",
            group.parent_id if group is not None and group.kind == "group" else None,
            members,
            attending_group.parent_id
            if attending_group is not None and attending_group.kind == "group"
            else None,
        )

    async def schedule(
        self,
        command: activity.ScheduleActivity,
        context: CommandContext,
        units: Mapping[str, Unit] | None = None,
    ) -> AppendResult:
        """`units`: the directory's units the command names, when the caller has read them
        (Directory.units_by_id; one that is absent there is not known)."""
        own = activity_stream(command.activity_id)
        branch_known, group_branch, members, attendees_branch = await self._schedule_checks(
            command, units
        )

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = activity.schedule(
                command,
                activity.fold(loaded[own].events),
                branch_known,
                group_branch,
                members,
                attendees_group_branch=attendees_branch,
            )
            return Decision([Change(own, e, command.starts_at, command.branch_id) for e in events])

        return await self._run(context, [own], decide)

    async def reschedule(
        self,
        activity_id: str,
        command: activity.RescheduleActivity,
        context: CommandContext,
        branch_id: str,
    ) -> AppendResult:
        own = activity_stream(activity_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = activity.reschedule(command, activity.fold(loaded[own].events), activity_id)
            # An activity's events happen when the activity does: the new time is its time.
            return Decision([Change(own, e, command.starts_at, branch_id) for e in events])

        return await self._run(context, [own], decide)

    async def cancel(
        self,
        activity_id: str,
        command: activity.CancelActivity,
        context: CommandContext,
        branch_id: str,
    ) -> AppendResult:
        own = activity_stream(activity_id)
        cancelled_at = self.calendar.past_instant(
            command.cancelled_at, "cancelled_at", "a cancellation"
        )

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = activity.cancel(command, activity.fold(loaded[own].events), activity_id)
            return Decision([Change(own, e, cancelled_at, branch_id) for e in events])

        return await self._run(context, [own], decide)

    async def plan_semester(
        self, branch_id: str, command: activity.PlanSemester, context: CommandContext
    ) -> tuple[SemesterPlan, AppendResult]:
        groups = [g.unit_id for g in await self.directory.groups_of(branch_id)]
        meetings, skipped = activity.plan_semester(command, branch_id, groups)
        commands = [activity.meeting_command(m, command, branch_id, self.zone) for m in meetings]
        streams = [activity_stream(c.activity_id) for c in commands]
        fresh: list[str] = []

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            fresh.clear()
            changes = []
            for meeting in commands:
                stream = activity_stream(meeting.activity_id)
                if loaded[stream].exists:
                    continue
                # The groups are the branch's own, and planned meetings name no one by name.
                group_branch = branch_id if meeting.group_id else None
                for event in activity.schedule(meeting, None, True, group_branch, frozenset()):
                    changes.append(Change(stream, event, meeting.starts_at, branch_id))
                fresh.append(meeting.activity_id)
            return Decision(changes)

        result = await self._run(context, streams, decide)
        already = [c.activity_id for c in commands if c.activity_id not in fresh]
        return SemesterPlan(fresh, already, skipped), result

    # -- attendance -----------------------------------------------------------------------

    async def _roll(self, state: ActivityState, day: date) -> attendance.Roll:
        if state.attendees.scope != "group":
            # Who is in the branch on the day, from the directory's columns: the members'
            # records (their groups over time) are read only for a group's meeting.
            ids = await self.directory.active_member_ids(state.branch_id, day)
            if state.attendees.scope == "members":
                return attendance.Roll(frozenset(state.attendees.member_ids) & ids, ids)
            return attendance.Roll(ids, ids)
        in_branch = await self.directory.members_of(state.branch_id, day)
        ids = frozenset(m.member_id for m in in_branch)
        required = frozenset(
            m.member_id for m in in_branch if m.group_on(day) == state.attendees.group_id
        )
        return attendance.Roll(required, ids)

    async def _attendance(
        self,
        activity_id: str,
        context: CommandContext,
        decide_events: Callable[
            [ActivityState | None, dict[str, attendance.Record], attendance.Roll, date],
            list[EventPayload],
        ],
    ) -> AppendResult:
        own, schedule = attendance_stream(activity_id), activity_stream(activity_id)
        # Who must attend depends on the day: the roll is read from the directory for the
        # activity as the same read of its stream has it (the append is guarded by that
        # stream's version too, so a reschedule meanwhile makes the command read again).
        roll_of: dict[str, tuple[attendance.Roll, date]] = {}

        async def prepare(loaded: Mapping[str, LoadedStream]) -> None:
            current = activity.fold(loaded[schedule].events)
            day = self.local_day(current.starts_at) if current else self.today()
            roll = (
                await self._roll(current, day)
                if current
                else attendance.Roll(frozenset(), frozenset())
            )
            roll_of["roll"] = (roll, day)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = activity.fold(loaded[schedule].events)
            roll, day = roll_of["roll"]
            events = decide_events(state, attendance.fold(recorded(loaded[own])), roll, day)
            occurred = state.starts_at if state else self.clock()
            return Decision(
                [Change(own, e, occurred, state.branch_id if state else None) for e in events]
            )

        return await self._run(context, [own, schedule], decide, primary=own, prepare=prepare)

    async def record_sheet(
        self, activity_id: str, command: attendance.RecordSheet, context: CommandContext
    ) -> AppendResult:
        now = self.clock()
        return await self._attendance(
            activity_id,
            context,
            lambda state, records, roll, day: attendance.record_sheet(
                command, state, activity_id, records, roll, day, now
            ),
        )

    async def correct(
        self, activity_id: str, command: attendance.CorrectAttendance, context: CommandContext
    ) -> AppendResult:
        now = self.clock()
        return await self._attendance(
            activity_id,
            context,
            lambda state, records, roll, day: attendance.correct(
                command, state, activity_id, records, roll, day, now
            ),
        )

    # -- reports --------------------------------------------------------------------------

    async def set_cadence(
        self, branch_id: str, command: reports.SetCadence, context: CommandContext
    ) -> AppendResult:
        own = cadence_stream(branch_id)
        if await self.directory.unit(branch_id) is None:
            raise CommandRefused("branch_unknown", f"branch {branch_id} is not known")

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            event = ReportCadenceSet(
                branch_id=branch_id, every_weeks=command.every_weeks, starts_on=command.starts_on
            )
            return Decision([Change(own, event, self.at(command.starts_on), branch_id)])

        return await self._run(context, [own], decide)

    async def plan_obligations(
        self, branch_id: str, through: date, context: CommandContext, existing: set[str]
    ) -> tuple[list[str], AppendResult | None]:
        horizon = add_years(self.today(), PLANNING_YEARS)
        if through > horizon:
            # Obligations are planned a term or a year ahead; decades of them for every member
            # in one command is a mistake, and a burden on every consumer.
            raise CommandRefused(
                "through_too_far",
                f"obligations are planned at most {PLANNING_YEARS} years ahead (until "
                f"{horizon.isoformat()}), not until {through.isoformat()}",
                field="through",
                invalid=True,
            )
        cadence_events = await _typed(self.store, cadence_stream(branch_id))
        cadence = None
        for event in cadence_events:
            if isinstance(event, ReportCadenceSet):
                cadence = reports.Cadence(event.every_weeks, event.starts_on)
        reporters = [_reporter(m) for m in await self.directory.members_of(branch_id)]
        planned = [
            o
            for o in reports.plan(branch_id, reporters, cadence, through)
            if o.obligation_id not in existing
        ]
        if not planned:
            return [], None
        streams = [report_stream(o.obligation_id) for o in planned]

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            return Decision(
                [
                    Change(report_stream(o.obligation_id), o, self.at(o.due_on), branch_id)
                    for o in planned
                    if not loaded[report_stream(o.obligation_id)].exists
                ]
            )

        result = await self._run(context, streams, decide)
        return [o.obligation_id for o in planned], result

    async def _obligation(
        self,
        obligation_id: str,
        context: CommandContext,
        occurred_at: datetime,
        decide_events: Callable[[reports.Obligation | None], list[EventPayload]],
    ) -> AppendResult:
        own = report_stream(obligation_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = reports.fold(recorded(loaded[own]))
            return Decision(
                [
                    Change(own, e, occurred_at, state.branch_id if state else None)
                    for e in decide_events(state)
                ]
            )

        return await self._run(context, [own], decide)

    async def submit(
        self, obligation_id: str, command: reports.SubmitReport, context: CommandContext
    ) -> AppendResult:
        submitted_at = self.calendar.past_instant(
            command.submitted_at, "submitted_at", "a report's submission"
        )
        return await self._obligation(
            obligation_id,
            context,
            submitted_at,
            lambda s: reports.submit(s, obligation_id, submitted_at, self.local_day(submitted_at)),
        )

    async def review(
        self, obligation_id: str, command: reports.ReviewReport, context: CommandContext
    ) -> AppendResult:
        reviewed_at = self.calendar.past_instant(
            command.reviewed_at, "reviewed_at", "a report's review"
        )
        return await self._obligation(
            obligation_id,
            context,
            reviewed_at,
            lambda s: reports.review(command, s, obligation_id, context.actor_id, reviewed_at),
        )

    async def withdraw(
        self, obligation_id: str, reason: str, since: date, context: CommandContext
    ) -> AppendResult:
        """Withdraw an obligation that no longer stands since `since` (the conversion or the
        transfer that ended it: its business date is the withdrawal's)."""
        return await self._obligation(
            obligation_id, context, self.at(since), lambda s: reports.withdraw(s, reason)
        )

    # -- budget ---------------------------------------------------------------------------

    async def plan_budget(
        self, branch_id: str, year: int, command: budget.PlanBudget, context: CommandContext
    ) -> AppendResult:
        own = budget.budget_id(branch_id, year)
        if await self.directory.unit(branch_id) is None:
            raise CommandRefused("branch_unknown", f"branch {branch_id} is not known")
        planned_on = self.calendar.past_day(command.planned_on, "planned_on", "a budget's plan")

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = budget.plan(command, budget.fold(own, loaded[own].events), branch_id, year)
            return Decision([Change(own, e, self.at(planned_on), branch_id) for e in events])

        return await self._run(context, [own], decide)

    async def record_expense(
        self, branch_id: str, year: int, command: budget.RecordExpense, context: CommandContext
    ) -> AppendResult:
        own = budget.budget_id(branch_id, year)
        self.calendar.past_day(command.spent_on, "spent_on", "an expense")
        streams = [own]
        if command.activity_id:
            streams.append(activity_stream(command.activity_id))

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            activity_branch = None
            if command.activity_id:
                state = activity.fold(loaded[activity_stream(command.activity_id)].events)
                activity_branch = state.branch_id if state else None
            events = budget.record_expense(
                command,
                budget.fold(own, loaded[own].events),
                branch_id,
                year,
                context.actor_id,
                activity_branch,
            )
            return Decision([Change(own, e, self.at(command.spent_on), branch_id) for e in events])

        return await self._run(context, streams, decide, primary=own)

    async def budget(self, branch_id: str, year: int) -> budget.Budget:
        own = budget.budget_id(branch_id, year)
        return budget.fold(own, await _typed(self.store, own))


async def _typed(store: EventStore, stream_id: str) -> list[EventPayload]:
    return (await load(store, stream_id)).events


def _reporter(member: MemberRecord) -> reports.Reporter:
    return reports.Reporter(
        member_id=member.member_id,
        enrolled_on=member.enrolled_on,
        transferred_on=member.transferred_on,
        has_space=member.space is not None,
        probationary_until=member.converted_on,
        probation_started_on=member.probation_started_on,
    )


def system_context(key: str, causation: UUID, correlation: UUID) -> CommandContext:
    """Commands the service runs by itself when another service publishes: keyed, so that a
    redelivered cause runs them once."""
    return CommandContext(
        actor_id="activities",
        actor_role="system",
        idempotency=IdempotencyKey(f"system:{key}", fingerprint=key),
        causation_id=causation,
        correlation_id=correlation,
    )
