"""Personal data, without I/O: sealing under a person's key, and the deciders of an erasure
(个人信息保护法) — only a person who left, only after the retention period, only once."""

from __future__ import annotations

import secrets
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import (
    GuideAppointed,
    GuideErased,
    GuideRegistered,
    MemberEnrolled,
    MemberErased,
    MemberTransferredOut,
)
from runtime.personal import ERASED, SubjectKey, erased_key, is_sealed
from services.roster.domain import guide, member
from services.roster.domain.policy import RosterPolicy
from services.roster.personal import seal, unseal
from tests.support.gwt import then_refused

POLICY = RosterPolicy(retention_days=1826)
TODAY = date(2026, 12, 1)


def key(subject: str = "m-1") -> SubjectKey:
    return SubjectKey(subject, secrets.token_hex(8), secrets.token_bytes(32))


@given(st.text(min_size=1, max_size=200))
def test_a_sealed_value_reads_back_only_with_its_key_field_and_person(value: str) -> None:
    mine = key()
    sealed = mine.seal("name", value)
    assert is_sealed(sealed)
    assert mine.unseal("name", sealed) == value
    # Moved to another field, or read with another person's key, it reads as nothing.
    assert mine.unseal("dormitory", sealed) == ERASED
    assert SubjectKey("m-2", mine.key_id, mine.key).unseal("name", sealed) == ERASED
    assert key().unseal("name", sealed) == ERASED
    # Once the key is destroyed, nothing of theirs can be read again.
    assert SubjectKey("m-1", mine.key_id, None).unseal("name", sealed) == ERASED


def test_sealing_twice_differs_and_plain_values_of_before_read_as_they_are() -> None:
    mine = key()
    assert mine.seal("bed", "1") != mine.seal("bed", "1")  # a fresh nonce each time
    assert mine.unseal("bed", "1") == "1"  # recorded before sealing (schema version 1)
    with pytest.raises(ValueError, match="erased"):
        erased_key("m-1").seal("bed", "1")


def enrolment(member_id: str = "m-1", number: str = "20080001") -> member.EnrolMember:
    return member.EnrolMember(
        member_id=member_id,
        branch_id="b1",
        student_number=number,
        name="王小明",
        dormitory="7-519",
        bed="3",
        standing="full",
        joined_on=date(2009, 6, 1),
        expected_graduation=date(2012, 7, 1),
        enrolled_on=date(2010, 5, 4),
    )


def test_an_enrolment_is_sealed_field_by_field_and_unsealed_whole() -> None:
    [event] = member.enrol(enrolment(), None, "student", None, POLICY)
    assert isinstance(event, MemberEnrolled)
    mine = key()
    sealed = seal(event, mine)
    assert isinstance(sealed, MemberEnrolled)
    for field in ("student_number", "name", "dormitory", "bed"):
        assert is_sealed(getattr(sealed, field)), field
    assert (sealed.member_id, sealed.branch_id, sealed.class_name) == ("m-1", "b1", None)
    # The sealed event is valid as recorded (its published schema allows pd1:…).
    assert MemberEnrolled.model_validate_json(sealed.model_dump_json()) == sealed
    assert unseal(sealed, mine) == event
    gone = unseal(sealed, erased_key("m-1"))
    assert isinstance(gone, MemberEnrolled)
    assert (gone.name, gone.student_number, gone.bed) == (ERASED, ERASED, ERASED)


def left_on(day: date) -> member.MemberState:
    [enrolled] = member.enrol(enrolment(), None, "student", None, POLICY)
    transferred = MemberTransferredOut(
        member_id="m-1", destination="某部", transferred_on=day, reason="graduation"
    )
    state = member.fold([enrolled, transferred])
    assert state is not None
    return state


def erase(on: date) -> member.EraseMember:
    return member.EraseMember(erased_on=on, reason="保存期满")


def test_a_member_who_left_is_erased_from_the_end_of_the_retention_period() -> None:
    # Left on 2010-07-01; 1826 days later (2012-02-29 between) is 2015-07-01.
    state = left_on(date(2010, 7, 1))
    then_refused(
        lambda: member.erase(erase(date(2015, 6, 30)), state, "m-1", POLICY, TODAY),
        "retention_not_over",
        "erased_on",
    )
    assert member.erase(erase(date(2015, 7, 1)), state, "m-1", POLICY, TODAY) == [
        MemberErased(member_id="m-1", erased_on=date(2015, 7, 1), reason="保存期满")
    ]


def test_no_erasure_of_a_member_still_there_unknown_already_erased_or_in_the_future() -> None:
    [enrolled] = member.enrol(enrolment(), None, "student", None, POLICY)
    present = member.fold([enrolled])
    then_refused(
        lambda: member.erase(erase(date(2026, 1, 1)), present, "m-1", POLICY, TODAY),
        "member_not_transferred",
    )
    then_refused(
        lambda: member.erase(erase(date(2026, 1, 1)), None, "m-1", POLICY, TODAY),
        "member_unknown",
    )
    state = left_on(date(2010, 7, 1))
    then_refused(
        lambda: member.erase(erase(date(2026, 12, 2)), state, "m-1", POLICY, TODAY),
        "erased_in_future",
        "erased_on",
    )
    erased = member.evolve(state, MemberErased(member_id="m-1", erased_on=TODAY, reason="x"))
    then_refused(lambda: member.erase(erase(TODAY), erased, "m-1", POLICY, TODAY), "member_erased")
    # … nor anything else: an erased member's record is closed.
    then_refused(
        lambda: member.transfer_out(
            member.TransferOut(destination="x", transferred_on=TODAY), erased, "m-1"
        ),
        "member_transferred_out",
    )


def test_an_id_that_holds_the_student_number_is_refused() -> None:
    refused = then_refused(
        lambda: member.enrol(enrolment("m20080001"), None, "student", None, POLICY),
        "member_id_holds_student_number",
        "member_id",
    )
    assert refused.invalid  # 422: no state of the world makes it acceptable
    assert member.enrol(enrolment("m-7f3a"), None, "student", None, POLICY)


def test_a_guide_is_erased_after_the_retention_period_after_the_last_appointment() -> None:
    registered = GuideRegistered(
        guide_id="g-1",
        name="司马连长",
        kind="army_officer",
        organisation="某部",
        phone="0533-2781234",
        registered_on=date(2010, 5, 15),
    )
    appointed = GuideAppointed(
        appointment_id="ap-1",
        guide_id="g-1",
        branch_id="b1",
        member_ids=["m-1"],
        group_id=None,
        term_starts_on=date(2010, 6, 1),
        term_ends_on=date(2011, 5, 31),
    )
    state = guide.fold([registered, appointed])
    command = guide.EraseGuide(erased_on=date(2016, 5, 29), reason="期满")
    # 2011-05-31 + 1826 days (2012-02-29 and 2016-02-29 between) = 2016-05-30.
    then_refused(
        lambda: guide.erase(command, state, "g-1", 1826, TODAY), "retention_not_over", "erased_on"
    )
    on_time = command.model_copy(update={"erased_on": date(2016, 5, 30)})
    assert guide.erase(on_time, state, "g-1", 1826, TODAY) == [
        GuideErased(guide_id="g-1", erased_on=date(2016, 5, 30), reason="期满")
    ]
    # Never appointed: counted from the registration (2010-05-15 + 1826 = 2015-05-15).
    alone = guide.fold([registered])
    early = command.model_copy(update={"erased_on": date(2015, 5, 14)})
    then_refused(
        lambda: guide.erase(early, alone, "g-1", 1826, TODAY), "retention_not_over", "erased_on"
    )
    erased = guide.evolve(alone, GuideErased(guide_id="g-1", erased_on=TODAY, reason="x"))
    then_refused(lambda: guide.erase(command, erased, "g-1", 1826, TODAY), "guide_erased")
