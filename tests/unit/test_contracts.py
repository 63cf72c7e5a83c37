"""The event contracts: strict validation, upcasting, wire entries, canonical hashing, and the
generated documents kept in step with the models."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar
from uuid import uuid4

import jsonschema
import pytest
from pydantic import Field

from contracts import CATALOGUE, Catalogue, ContractViolation, Upcaster
from contracts.canonical import GENESIS_HASH, envelope_hash, format_instant
from contracts.envelope import EventPayload, Family
from contracts.generate import SCHEMA_DIR, event_schema_name
from contracts.wire import MAX_ENTRY_BYTES, decode_entry, encode_entry
from tests.support.examples import EXAMPLES


def envelope_for(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    document = {
        "event_id": str(uuid4()),
        "type": event_type,
        "schema_version": CATALOGUE.spec(event_type).schema_version,
        "stream_id": "stream-1",
        "stream_version": 1,
        "branch_id": "nde-b1",
        "occurred_at": format_instant(datetime(2010, 5, 12, 11, tzinfo=UTC)),
        "recorded_at": format_instant(datetime(2010, 5, 12, 12, tzinfo=UTC)),
        "actor": {"id": "secretary-b1", "role": "branch_secretary"},
        "correlation_id": str(uuid4()),
        "causation_id": None,
        "data": data,
        "prev_hash": GENESIS_HASH,
    }
    document["hash"] = envelope_hash(document)
    return document


def test_every_catalogue_type_has_an_example_that_validates() -> None:
    assert set(EXAMPLES) == {spec.event_type for spec in CATALOGUE.specs}
    for event_type, data in EXAMPLES.items():
        payload = CATALOGUE.parse_data(event_type, 1, json.dumps(data))
        # What a producer writes is what a consumer reads back, field for field.
        written = payload.model_dump(mode="json")
        assert CATALOGUE.parse_data(event_type, 1, json.dumps(written)) == payload, event_type
        assert written.keys() == data.keys()


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_published_schema_accepts_the_example_and_rejects_an_unknown_field(event_type: str) -> None:
    spec = CATALOGUE.spec(event_type)
    schema = json.loads((SCHEMA_DIR / event_schema_name(spec)).read_text())
    envelope = envelope_for(event_type, EXAMPLES[event_type])
    jsonschema.validate(envelope, schema, cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**envelope, "data": {**envelope["data"], "surprise": 1}},
            schema,
            cls=jsonschema.Draft202012Validator,
        )


def _violation(event_type: str, **changes: Any) -> ContractViolation:
    data = {**EXAMPLES[event_type], **changes}
    with pytest.raises(ContractViolation) as caught:
        CATALOGUE.parse_data(event_type, 1, json.dumps(data))
    return caught.value


def test_unknown_field_is_refused_by_name() -> None:
    error = _violation("attendance.recorded", mood="happy")
    assert [(e.field, e.reason) for e in error.errors] == [
        ("data.mood", "Extra inputs are not permitted")
    ]


def test_wrong_types_are_refused_not_coerced() -> None:
    error = _violation("report.submitted", days_late="2", on_time="false")
    fields = {e.field for e in error.errors}
    assert fields == {"data.days_late", "data.on_time"}


def test_points_must_be_exact_decimals() -> None:
    error = _violation("score.awarded", points=1.5)
    assert error.errors[0].field == "data.points"
    assert "exact decimal" in error.errors[0].reason
    error = _violation("score.awarded", points="1.505")
    assert "two decimal places" in error.errors[0].reason
    assert (
        CATALOGUE.parse_data(
            "score.awarded", 1, json.dumps({**EXAMPLES["score.awarded"], "points": "-2.50"})
        ).model_dump(mode="json")["points"]
        == "-2.50"
    )


def test_naive_timestamps_and_bad_enums_are_refused() -> None:
    error = _violation("report.submitted", submitted_at="2010-07-02T10:00:00")
    assert error.errors[0].field == "data.submitted_at"
    error = _violation("attendance.recorded", status="asleep")
    assert error.errors[0].field == "data.status"


def test_cross_field_rules_name_their_field() -> None:
    error = _violation("attendance.recorded", status="absent")  # example carries an excuse
    assert error.errors[0].field == "data.excuse"
    error = _violation("org.unit_registered", kind="school", parent_id="nde", branch_kind=None)
    assert error.errors[0].field == "data.parent_id"
    error = _violation("member.category_changed", dimension="cadre", value="excellent")
    assert error.errors[0].field == "data.value"


def test_unknown_type_and_version_are_refused() -> None:
    with pytest.raises(ContractViolation, match=r"unknown event type 'member\.levitated'"):
        CATALOGUE.parse_data("member.levitated", 1, "{}")
    with pytest.raises(ContractViolation, match="schema_version 3 is not known"):
        CATALOGUE.parse_data("member.moved", 3, json.dumps(EXAMPLES["member.moved"]))


# -- upcasting: the worked example -------------------------------------------------------------


class VisitRecordedV2(EventPayload):
    """Version 2 of an example type: v1 had one `hours` integer; v2 records exact volunteer
    hours as a decimal string and names the base visited, which v1 did not know."""

    event_type: ClassVar[str] = "example.visit_recorded"
    family: ClassVar[Family] = "activity"
    schema_version: ClassVar[int] = 2

    member_id: str
    hours: str = Field(pattern=r"^\d+(\.\d+)?$")
    base: str | None


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"member_id": data["member_id"], "hours": str(data["hours"]), "base": None}


def test_upcaster_turns_an_old_event_into_the_current_shape() -> None:
    catalogue = Catalogue([VisitRecordedV2], [Upcaster("example.visit_recorded", 1, _v1_to_v2)])
    old = json.dumps({"member_id": "m-1", "hours": 3})
    current = catalogue.parse_data("example.visit_recorded", 1, old)
    assert isinstance(current, VisitRecordedV2)
    assert (current.hours, current.base) == ("3", None)
    latest = catalogue.parse_data(
        "example.visit_recorded", 2, json.dumps({"member_id": "m-1", "hours": "2.5", "base": "x"})
    )
    assert isinstance(latest, VisitRecordedV2)
    assert latest.hours == "2.5"
    # A v2 event is read as it is (above); a v1-shaped payload claiming v2 is refused.
    with pytest.raises(ContractViolation):
        catalogue.parse_data("example.visit_recorded", 2, old)


def test_a_version_bump_without_its_upcaster_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="no upcaster from version 1"):
        Catalogue([VisitRecordedV2])


# -- wire entries ------------------------------------------------------------------------------


def _entry(**overrides: Any) -> dict[bytes, bytes]:
    envelope = envelope_for("member.moved", EXAMPLES["member.moved"])
    fields = encode_entry(
        event_type="member.moved",
        event_id=envelope["event_id"],
        branch_id="nde-b1",
        schema_version=1,
        source="roster",
        position=7,
        envelope=json.dumps(envelope).encode(),
    )
    fields.update(overrides)
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}


def test_entry_round_trip() -> None:
    entry = decode_entry(_entry())
    assert (entry.type, entry.position, entry.branch_id, entry.source) == (
        "member.moved",
        7,
        "nde-b1",
        "roster",
    )
    assert decode_entry(_entry(branch_id="")).branch_id is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({b"event_id": b"not-a-uuid"}, "event_id: not a UUID"),
        ({b"type": b"\xff\xfe"}, "type: not UTF-8"),
        ({b"position": b"seven"}, "not an integer"),
        ({b"envelope": b"x" * (MAX_ENTRY_BYTES + 1)}, "limit is"),
    ],
)
def test_malformed_entries_say_why(fields: dict[bytes, bytes], reason: str) -> None:
    entry = _entry()
    entry.update(fields)
    with pytest.raises(ContractViolation, match=reason):
        decode_entry(entry)


def test_missing_field_is_named() -> None:
    entry = _entry()
    del entry[b"source"]
    with pytest.raises(ContractViolation, match="source: missing"):
        decode_entry(entry)


# -- canonical bytes ---------------------------------------------------------------------------


def test_canonical_hash_is_reproducible_with_the_standard_library() -> None:
    """What contracts/README.md tells an outside verifier to do gives the same hash."""
    envelope = envelope_for("org.unit_registered", EXAMPLES["org.unit_registered"])
    body = dict(envelope)
    claimed = body.pop("hash")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == claimed
    envelope_obj, payload = CATALOGUE.parse_envelope(json.dumps(envelope, ensure_ascii=False))
    assert envelope_obj.hash == claimed
    assert payload.model_dump(mode="json")["name"] == "国防教育学院学生第一党支部"


def test_instants_have_one_textual_form() -> None:
    shanghai = timezone(timedelta(hours=8))
    moment = datetime(2010, 5, 12, 19, 0, tzinfo=shanghai)
    assert format_instant(moment) == "2010-05-12T11:00:00.000000+00:00"
    with pytest.raises(ValueError, match="offset"):
        format_instant(datetime(2010, 5, 12, 19, 0))


# -- generated documents -----------------------------------------------------------------------


def test_generated_documents_match_the_code() -> None:
    """JSON Schema, AsyncAPI and OpenAPI files are regenerated and compared with the commit."""
    from services.documents import stale_documents

    stale = stale_documents()
    assert not stale, f"run `party contracts` and commit: {stale}"
