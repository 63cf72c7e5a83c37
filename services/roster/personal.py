"""Which fields of the roster's events are a person's personal data, sealed under that person's
own key before they are recorded (runtime.personal): a member's name, student number,
dormitory and bed; a guide's name and phone."""

from __future__ import annotations

from contracts.envelope import EventPayload
from contracts.events import (
    GuideRegistered,
    MemberEnrolled,
    MemberMoved,
    PlaqueIssued,
    SpaceAssigned,
)
from runtime.personal import SubjectKey, is_sealed

#: The personal fields of each event type that has any.
PERSONAL_FIELDS: dict[type[EventPayload], tuple[str, ...]] = {
    MemberEnrolled: ("student_number", "name", "dormitory", "bed"),
    MemberMoved: ("dormitory", "bed"),
    SpaceAssigned: ("dormitory",),
    PlaqueIssued: ("dormitory", "bed"),
    GuideRegistered: ("name", "phone"),
}

#: The columns of the roster's read models that hold a member's personal data, by table: what
#: an erasure blanks (and what a rebuild after it reads as erased).
PERSONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("student_number", "name", "dormitory", "bed", "space_dormitory"),
    "member_placements": ("dormitory", "bed"),
    "plaques": ("dormitory", "bed"),
}
GUIDE_COLUMNS: dict[str, tuple[str, ...]] = {"guides": ("name", "phone")}


def _fields(payload: EventPayload) -> tuple[str, ...]:
    return PERSONAL_FIELDS.get(type(payload), ())


def seal(payload: EventPayload, key: SubjectKey) -> EventPayload:
    """The event with its personal fields sealed under the person's key."""
    update = {
        name: key.seal(name, value)
        for name in _fields(payload)
        if isinstance(value := getattr(payload, name), str) and not is_sealed(value)
    }
    return payload.model_copy(update=update) if update else payload


def unseal(payload: EventPayload, key: SubjectKey) -> EventPayload:
    """The event with its personal fields readable again (or erased, when the key is gone)."""
    update = {
        name: key.unseal(name, value)
        for name in _fields(payload)
        if isinstance(value := getattr(payload, name), str) and is_sealed(value)
    }
    return payload.model_copy(update=update) if update else payload


def subject_of_payload(payload: EventPayload) -> str | None:
    """Whose personal data the event carries."""
    if not _fields(payload):
        return None
    subject = getattr(payload, "member_id", None) or getattr(payload, "guide_id", None)
    return str(subject) if subject else None
