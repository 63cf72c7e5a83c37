"""Publishing regulations and adopting them: deciders for the `regulation-{id}` stream (its
versions) and the `adoption-{unit}` stream (which regulation a school or branch follows).

A university runs many schools, and each writes its own 《学生党员管理规定》: several regulation
ids and their versions live side by side. A school admin publishes the school's own regulation
(the school owns it from its first version on); the university admin publishes the
university's and may publish any. A school, or a branch overriding its school, adopts one from
a date; what has been closed stays closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from contracts.envelope import EventPayload
from contracts.events import RegulationAdopted, RegulationPublished
from runtime.decider import CommandRefused
from services.scoring.domain.regulation import RegulationDocument


def regulation_stream(regulation_id: str) -> str:
    return f"regulation-{regulation_id}"


def adoption_stream(unit_id: str) -> str:
    return f"adoption-{unit_id}"


# -- publishing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    """What is known of one regulation id: its versions and who owns it."""

    versions: tuple[int, ...] = ()
    owner_unit_id: str | None = None


def initial_publication() -> Publication:
    return Publication()


def evolve_publication(state: Publication, event: EventPayload) -> Publication:
    if isinstance(event, RegulationPublished):
        owner = state.owner_unit_id if state.versions else event.owner_unit_id
        return Publication((*state.versions, event.version), owner)
    return state


@dataclass(frozen=True)
class Publish:
    document: RegulationDocument
    published_on: date
    #: The school a school admin publishes for; None when the university admin publishes.
    publisher_school: str | None


def decide_publish(command: Publish, state: Publication) -> Sequence[EventPayload]:
    document = command.document
    expected = max(state.versions, default=0) + 1
    if (
        state.versions
        and command.publisher_school is not None
        and state.owner_unit_id != command.publisher_school
    ):
        owner = f"school {state.owner_unit_id}" if state.owner_unit_id else "the university"
        raise CommandRefused(
            "regulation_owned",
            f"regulation {document.id} belongs to {owner}; only its own office or the "
            "university may publish a version of it",
            field="id",
        )
    if document.version != expected:
        raise CommandRefused(
            "regulation_version",
            f"the next version of {document.id} is {expected}, not {document.version}",
            field="version",
        )
    return [
        RegulationPublished(
            regulation_id=document.id,
            version=document.version,
            title=document.title_text()[:200],
            effective_from=document.effective_from,
            document=document.model_dump(mode="json"),
            owner_unit_id=state.owner_unit_id if state.versions else command.publisher_school,
            published_on=command.published_on,
        )
    ]


# -- adopting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adopt:
    unit_id: str
    regulation_id: str
    effective_from: date
    decided_on: date
    reason: str | None = None


@dataclass(frozen=True)
class AdoptionFacts:
    """What the service looked up: the unit's kind (None: not known), the `effective_from` of
    each published version of the regulation, the regulation the unit follows on the new
    date, and the closed periods of the branches concerned that the change would re-score."""

    unit_kind: str | None
    version_dates: Sequence[date]
    following_then: str
    closed_after: Sequence[tuple[str, str]] = field(default_factory=tuple)


def decide_adoption(command: Adopt, facts: AdoptionFacts) -> Sequence[EventPayload]:
    if facts.unit_kind not in ("school", "branch"):
        raise CommandRefused(
            "unit_not_school_or_branch",
            f"{command.unit_id} is not a known school or branch; only they adopt a regulation",
            field="unit_id",
        )
    if not facts.version_dates:
        raise CommandRefused(
            "regulation_unknown",
            f"no version of regulation {command.regulation_id} is published",
            field="regulation_id",
        )
    if min(facts.version_dates) > command.effective_from:
        raise CommandRefused(
            "regulation_not_in_force",
            f"regulation {command.regulation_id} takes effect on "
            f"{min(facts.version_dates).isoformat()}, after {command.effective_from.isoformat()}",
            field="effective_from",
        )
    if facts.following_then == command.regulation_id:
        raise CommandRefused(
            "nothing_changes",
            f"{command.unit_id} follows {command.regulation_id} on "
            f"{command.effective_from.isoformat()} already",
        )
    if facts.closed_after:
        branch, period = facts.closed_after[0]
        raise CommandRefused(
            "period_closed",
            f"period {period} of branch {branch} is closed and would be re-scored from "
            f"{command.effective_from.isoformat()}; reopen it first",
            field="effective_from",
        )
    return [
        RegulationAdopted(
            unit_id=command.unit_id,
            unit_kind="school" if facts.unit_kind == "school" else "branch",
            regulation_id=command.regulation_id,
            effective_from=command.effective_from,
            decided_on=command.decided_on,
            reason=command.reason,
        )
    ]
