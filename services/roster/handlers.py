"""The roster's service layer: each command loads the streams it reads, lets the domain decide,
and appends (runtime.commands); then waits until the read models show the change."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, time
from typing import Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from contracts.envelope import EventPayload
from runtime.clock import Clock
from runtime.commands import (
    Change,
    CommandContext,
    Decision,
    LoadedStream,
    execute,
)
from runtime.eventstore import AppendResult, EventStore, IdempotencyKey, UniqueClaim
from runtime.personal import PersonalVault, SubjectKey
from runtime.projection import LocalProjector
from services.roster.domain import care, election, guide, member, organisation
from services.roster.domain.policy import RosterPolicy
from services.roster.domain.voting import BranchRoll
from services.roster.personal import seal, unseal


def unit_stream(unit_id: str) -> str:
    return f"unit-{unit_id}"


def member_stream(member_id: str) -> str:
    return f"member-{member_id}"


def pairings_stream(branch_id: str) -> str:
    return f"pairings-{branch_id}"


def guide_stream(guide_id: str) -> str:
    return f"guide-{guide_id}"


def member_id_of(result: AppendResult) -> str:
    """The id of the member a (possibly replayed) enrolment created."""
    stream = next(s for s in result.stream_versions if s.startswith("member-"))
    return stream.removeprefix("member-")


def subject_of(stream_id: str) -> str | None:
    """The person whose personal data a stream's events carry (a member's, a guide's)."""
    for prefix in ("member-", "guide-"):
        if stream_id.startswith(prefix):
            return stream_id.removeprefix(prefix)
    return None


class RosterService:
    def __init__(
        self,
        store: EventStore,
        projector: LocalProjector | None,
        *,
        policy: RosterPolicy,
        clock: Clock,
        timezone: str,
        vault: PersonalVault,
    ) -> None:
        self.store = store
        self.projector = projector
        self.policy = policy
        self.clock = clock
        self.zone = ZoneInfo(timezone)
        self.vault = vault

    def today(self) -> date:
        return self.clock().astimezone(self.zone).date()

    def at(self, day: date) -> datetime:
        """A business date as the instant it began in the university's time zone."""
        return datetime.combine(day, time(0), self.zone)

    async def _run(
        self,
        context: CommandContext,
        streams: Sequence[str],
        decide: Callable[[Mapping[str, LoadedStream]], Decision],
        primary: str | None = None,
    ) -> AppendResult:
        """Run a command with personal data sealed: the domain decides on plain values (the
        streams it reads are unsealed first), and what it decides is sealed under each
        person's own key before it is appended."""
        subjects = [s for s in map(subject_of, streams) if s is not None]
        keys = await self.vault.keys(subjects, create=True)

        def sealed_decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            plain = {
                stream_id: _unsealed(stream, keys.get(subject_of(stream_id) or ""))
                for stream_id, stream in loaded.items()
            }
            decision = decide(plain)
            return Decision(
                [
                    replace(change, payload=seal(change.payload, keys[subject]))
                    if (subject := subject_of(change.stream_id)) in keys
                    else change
                    for change in decision.changes
                ],
                {
                    stream_id: [self._claim(claim) for claim in claims]
                    for stream_id, claims in decision.claims.items()
                },
            )

        result = await execute(self.store, context, streams, sealed_decide, primary=primary)
        if self.projector is not None:
            await self.projector.wait_for(result.last_position)
        return result

    def _claim(self, claim: UniqueClaim) -> UniqueClaim:
        """A unique value is claimed by its keyed hash: uniqueness without the value."""
        return UniqueClaim(claim.scope, self.vault.blind_index(claim.scope, claim.value))

    def _changes(
        self, stream: str, events: Sequence[EventPayload], day: date, branch_id: str | None
    ) -> Decision:
        return Decision([Change(stream, e, self.at(day), branch_id) for e in events])

    @staticmethod
    def _roll(
        branch_id: str, loaded: Mapping[str, LoadedStream], member_ids: Sequence[str]
    ) -> BranchRoll:
        """The branch's members as folded from the streams just read (the decision is guarded
        by their versions: a member changed meanwhile makes it decide again)."""
        states = {m: member.fold(loaded[member_stream(m)].events) for m in member_ids}
        return BranchRoll(branch_id, {m: s for m, s in states.items() if s is not None})

    # -- organisation ---------------------------------------------------------------------

    async def register_unit(
        self, command: organisation.RegisterUnit, context: CommandContext
    ) -> AppendResult:
        own = unit_stream(command.unit_id)
        parent = unit_stream(command.parent_id) if command.parent_id else None

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            parent_state = organisation.fold(loaded[parent].events) if parent else None
            events = organisation.register(
                command, organisation.fold(loaded[own].events), parent_state
            )
            branch = {"branch": command.unit_id, "group": command.parent_id}.get(command.kind)
            return self._changes(own, events, command.established_on or self.today(), branch)

        return await self._run(context, [own, *([parent] if parent else [])], decide)

    async def elect_committee(
        self, branch_id: str, command: organisation.ElectCommittee, context: CommandContext
    ) -> AppendResult:
        own = unit_stream(branch_id)
        members = {m: member_stream(m) for m in command.member_ids}

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            states = {m: member.fold(loaded[s].events) for m, s in members.items()}
            events = organisation.elect_committee(
                command, organisation.fold(loaded[own].events), states, self.policy
            )
            return self._changes(own, events, command.elected_on, branch_id)

        return await self._run(context, [own, *members.values()], decide)

    async def hold_election(
        self,
        branch_id: str,
        command: election.HoldElection,
        context: CommandContext,
        roll: Sequence[str],
    ) -> AppendResult:
        """`roll`: every member the branch has had (the read model's list); the electorate is
        computed from their streams as of the day of the meeting."""
        own = unit_stream(branch_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = election.hold_election(
                command,
                organisation.fold(loaded[own].events),
                election.fold(loaded[own].events),
                self._roll(branch_id, loaded, roll),
                self.today(),
                self.policy,
            )
            return self._changes(own, events, command.held_on, branch_id)

        return await self._run(
            context, [own, *(member_stream(m) for m in roll)], decide, primary=own
        )

    async def link_group(
        self,
        group_id: str,
        branch_id: str | None,
        command: organisation.LinkGroup,
        context: CommandContext,
    ) -> AppendResult:
        own = unit_stream(group_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = organisation.link_group(command, organisation.fold(loaded[own].events))
            return self._changes(own, events, command.established_on, branch_id)

        return await self._run(context, [own], decide)

    # -- members --------------------------------------------------------------------------

    async def enrol(self, command: member.EnrolMember, context: CommandContext) -> AppendResult:
        own = member_stream(command.member_id)
        branch = unit_stream(command.branch_id)
        group = unit_stream(command.group_id) if command.group_id else None

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            branch_state = organisation.fold(loaded[branch].events)
            group_state = organisation.fold(loaded[group].events) if group else None
            events = member.enrol(
                command,
                member.fold(loaded[own].events),
                branch_state.branch_kind
                if branch_state and branch_state.kind == "branch"
                else None,
                group_state.parent_id if group_state and group_state.kind == "group" else None,
                self.policy,
            )
            decision = self._changes(own, events, command.enrolled_on, command.branch_id)
            claim = UniqueClaim("student_number", command.student_number)
            return Decision(decision.changes, {own: [claim]})

        return await self._run(
            context, [own, branch, *([group] if group else [])], decide, primary=own
        )

    async def _member_command(
        self,
        member_id: str,
        context: CommandContext,
        decide_events: Callable[[member.MemberState | None], list[EventPayload]],
        day: Callable[[], date],
        extra_streams: Sequence[str] = (),
    ) -> AppendResult:
        own = member_stream(member_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = member.fold(loaded[own].events)
            events = decide_events(state)
            return self._changes(own, events, day(), state.branch_id if state else None)

        return await self._run(context, [own, *extra_streams], decide, primary=own)

    async def move(
        self,
        member_id: str,
        command: member.MoveMember,
        context: CommandContext,
        group_branch: Callable[[str], str | None],
    ) -> AppendResult:
        new_group = command.group_id if "group_id" in command.model_fields_set else None
        extra = [unit_stream(new_group)] if new_group else []
        branch_of_group = group_branch(new_group) if new_group else None
        return await self._member_command(
            member_id,
            context,
            lambda state: member.move(command, state, member_id, branch_of_group),
            lambda: command.effective_on,
            extra,
        )

    async def transfer_out(
        self, member_id: str, command: member.TransferOut, context: CommandContext
    ) -> AppendResult:
        return await self._member_command(
            member_id,
            context,
            lambda s: member.transfer_out(command, s, member_id),
            lambda: command.transferred_on,
        )

    async def erase_member(
        self, member_id: str, command: member.EraseMember, context: CommandContext
    ) -> AppendResult:
        """Record the erasure; folding it destroys the member's key (RosterReadModels)."""
        return await self._member_command(
            member_id,
            context,
            lambda s: member.erase(command, s, member_id, self.policy, self.today()),
            lambda: command.erased_on,
        )

    async def change_category(
        self,
        member_id: str,
        command: member.ChangeCategory,
        context: CommandContext,
        source: Literal["branch", "assessment", "calendar"] = "branch",
    ) -> AppendResult:
        return await self._member_command(
            member_id,
            context,
            lambda s: member.change_category(command, s, member_id, source),
            lambda: command.effective_on,
        )

    async def _probation_outcome(
        self,
        member_id: str,
        context: CommandContext,
        decide_events: Callable[[member.MemberState | None, BranchRoll | None], list[EventPayload]],
        day: date,
        roll: Sequence[str],
    ) -> AppendResult:
        """A conversion or extension; with a vote, `roll` names every member the branch has had
        and the decision reads their streams too."""
        own = member_stream(member_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = member.fold(loaded[own].events)
            branch_id = state.branch_id if state else None
            branch_roll = self._roll(branch_id, loaded, roll) if branch_id and roll else None
            return self._changes(own, decide_events(state, branch_roll), day, branch_id)

        streams = [own, *(member_stream(m) for m in roll)]
        return await self._run(context, streams, decide, primary=own)

    async def convert(
        self,
        member_id: str,
        command: member.ConvertMember,
        context: CommandContext,
        roll: Sequence[str] = (),
    ) -> AppendResult:
        return await self._probation_outcome(
            member_id,
            context,
            lambda s, r: member.convert(command, s, member_id, self.today(), r, self.policy),
            command.decided_on,
            roll if command.vote else (),
        )

    async def extend_probation(
        self,
        member_id: str,
        command: member.ExtendProbation,
        context: CommandContext,
        roll: Sequence[str] = (),
    ) -> AppendResult:
        return await self._probation_outcome(
            member_id,
            context,
            lambda s, r: member.extend_probation(
                command, s, member_id, self.today(), self.policy, r
            ),
            command.decided_on,
            roll if command.vote else (),
        )

    async def assign_space(
        self, member_id: str, command: member.AssignSpace, context: CommandContext
    ) -> AppendResult:
        return await self._member_command(
            member_id,
            context,
            lambda s: member.assign_space(command, s, member_id),
            lambda: command.effective_on,
        )

    async def sign_agreement(
        self, member_id: str, command: member.SignAgreement, context: CommandContext
    ) -> AppendResult:
        return await self._member_command(
            member_id,
            context,
            lambda s: member.sign_agreement(command, s, member_id),
            lambda: command.signed_on,
        )

    async def issue_plaque(
        self, member_id: str, command: member.IssuePlaque, context: CommandContext
    ) -> AppendResult:
        return await self._member_command(
            member_id,
            context,
            lambda s: member.issue_plaque(command, s, member_id),
            lambda: command.issued_on,
        )

    async def discipline(
        self, member_id: str, command: member.Discipline, context: CommandContext
    ) -> AppendResult:
        return await self._member_command(
            member_id,
            context,
            lambda s: member.discipline(command, s, member_id, self.today()),
            lambda: command.decided_on,
        )

    async def withdraw_plaque(
        self,
        member_id: str,
        plaque_id: str,
        command: member.WithdrawPlaque,
        context: CommandContext,
    ) -> AppendResult:
        return await self._member_command(
            member_id,
            context,
            lambda s: member.withdraw_plaque(command, s, member_id, plaque_id),
            lambda: command.withdrawn_on,
        )

    # -- care -----------------------------------------------------------------------------

    async def form_pair(
        self, branch_id: str, command: care.FormPair, context: CommandContext
    ) -> AppendResult:
        own = pairings_stream(branch_id)
        mentor, mentee = member_stream(command.mentor_id), member_stream(command.mentee_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = care.form_pair(
                command,
                care.fold(loaded[own].events),
                branch_id,
                member.fold(loaded[mentor].events),
                member.fold(loaded[mentee].events),
            )
            return self._changes(own, events, command.formed_on, branch_id)

        return await self._run(context, [own, mentor, mentee], decide)

    async def end_pair(
        self, branch_id: str, pairing_id: str, command: care.EndPair, context: CommandContext
    ) -> AppendResult:
        own = pairings_stream(branch_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = care.end_pair(command, care.fold(loaded[own].events), pairing_id)
            return self._changes(own, events, command.ended_on, branch_id)

        return await self._run(context, [own], decide)

    # -- guides ---------------------------------------------------------------------------

    async def register_guide(
        self, command: guide.RegisterGuide, context: CommandContext
    ) -> AppendResult:
        own = guide_stream(command.guide_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = guide.register(command, guide.fold(loaded[own].events), self.today())
            return self._changes(own, events, command.registered_on, None)

        return await self._run(context, [own], decide)

    async def appoint_guide(
        self, guide_id: str, command: guide.AppointGuide, context: CommandContext
    ) -> AppendResult:
        own = guide_stream(guide_id)
        members = {m: member_stream(m) for m in command.member_ids}
        group = unit_stream(command.group_id) if command.group_id else None

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            events = guide.appoint(
                command,
                guide.fold(loaded[own].events),
                guide_id,
                {m: member.fold(loaded[s].events) for m, s in members.items()},
                organisation.fold(loaded[group].events) if group else None,
                self.today(),
            )
            return self._changes(own, events, command.term_starts_on, command.branch_id)

        streams = [own, *members.values(), *([group] if group else [])]
        return await self._run(context, streams, decide, primary=own)

    async def end_guide_appointment(
        self,
        guide_id: str,
        appointment_id: str,
        command: guide.EndAppointment,
        context: CommandContext,
    ) -> AppendResult:
        own = guide_stream(guide_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = guide.fold(loaded[own].events)
            events = guide.end_appointment(command, state, guide_id, appointment_id, self.today())
            branch_id = state.appointments[appointment_id].branch_id if state else None
            return self._changes(own, events, command.ended_on, branch_id)

        return await self._run(context, [own], decide)

    async def erase_guide(
        self, guide_id: str, command: guide.EraseGuide, context: CommandContext
    ) -> AppendResult:
        own = guide_stream(guide_id)

        def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
            state = guide.fold(loaded[own].events)
            events = guide.erase(command, state, guide_id, self.policy.retention_days, self.today())
            return self._changes(own, events, command.erased_on, None)

        return await self._run(context, [own], decide)


def system_context(key: str, causation: UUID, correlation: UUID) -> CommandContext:
    """Commands the roster runs by itself (performance taken from a closed assessment): keyed,
    so that a redelivered cause runs them once."""
    return CommandContext(
        actor_id="roster",
        actor_role="system",
        idempotency=IdempotencyKey(f"system:{key}", fingerprint=key),
        causation_id=causation,
        correlation_id=correlation,
    )


def _unsealed(stream: LoadedStream, key: SubjectKey | None) -> LoadedStream:
    if key is None or not stream.events:
        return stream
    return replace(stream, events=[unseal(e, key) for e in stream.events])
