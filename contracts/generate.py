"""Generate the published documents of the event contracts from the models.

    python -m contracts.generate           # (re)write contracts/schemas and contracts/asyncapi.json
    python -m contracts.generate --check   # exit 1 and list the files that are stale

The files are committed: outside campus systems read them, and a test fails when the models and
the files disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contracts.catalogue import CATALOGUE, FAMILIES, EventSpec
from contracts.envelope import Envelope
from contracts.wire import ENTRY_FIELDS, MAX_ENTRY_BYTES, SIGNATURE_FIELDS

ROOT = Path(__file__).resolve().parent
SCHEMA_DIR = ROOT / "schemas"
ASYNCAPI_FILE = ROOT / "asyncapi.json"
SCHEMA_BASE_URI = "https://party-members.example.edu/contracts/schemas/"

Document = dict[str, Any]


def event_schema_name(spec: EventSpec) -> str:
    return f"events/{spec.event_type}.v{spec.schema_version}.schema.json"


def _envelope_schema() -> Document:
    schema = Envelope.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_BASE_URI + "envelope.schema.json"
    schema["title"] = "Envelope"
    return schema


def _event_schema(spec: EventSpec) -> Document:
    """The whole envelope of one type: `type` and `schema_version` fixed, `data` typed."""
    envelope = _envelope_schema()
    data = spec.model.model_json_schema(mode="serialization")
    defs: dict[str, Any] = {**envelope.pop("$defs", {}), **data.pop("$defs", {})}
    properties = dict(envelope["properties"])
    properties["type"] = {"const": spec.event_type, "type": "string"}
    properties["schema_version"] = {"const": spec.schema_version, "type": "integer"}
    properties["data"] = data
    envelope["properties"] = properties
    envelope["$id"] = SCHEMA_BASE_URI + event_schema_name(spec)
    envelope["title"] = spec.event_type
    envelope["description"] = (spec.model.__doc__ or spec.event_type).strip()
    envelope["x-family"] = spec.family
    if defs:
        envelope["$defs"] = defs
    return envelope


def _entry_schema() -> Document:
    properties: Document = {name: {"type": "string"} for name in ENTRY_FIELDS}
    properties["event_id"]["format"] = "uuid"
    properties["schema_version"]["pattern"] = "^[1-9][0-9]*$"
    properties["position"]["pattern"] = "^[1-9][0-9]*$"
    properties["envelope"]["contentMediaType"] = "application/json"
    properties["envelope"]["contentSchema"] = {"$ref": "envelope.schema.json"}
    properties["signature"] = {
        "type": "string",
        "contentEncoding": "base64",
        "description": "On the last event of each commit: the producer's Ed25519 signature "
        "over `party-log-v1\\n{source}\\n{position}\\n{hash}`",
    }
    properties["key_id"] = {
        "type": "string",
        "pattern": "^[0-9a-f]{16}$",
        "description": "The id of the producer's key that made the signature",
    }
    assert set(SIGNATURE_FIELDS) <= set(properties)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_BASE_URI + "stream-entry.schema.json",
        "title": "Redis Stream entry",
        "description": (
            "The flat string fields of one entry on a family stream or a service's log "
            "stream. Entries larger than "
            f"{MAX_ENTRY_BYTES} bytes are refused by consumers."
        ),
        "type": "object",
        "properties": properties,
        "required": list(ENTRY_FIELDS),
        "additionalProperties": False,
    }


def _catalogue_index() -> Document:
    return {
        "families": {
            family: {
                "stream": f"{{prefix}}:{family}",
                "types": {
                    spec.event_type: {
                        "schema_version": spec.schema_version,
                        "schema": event_schema_name(spec),
                    }
                    for spec in CATALOGUE.specs
                    if spec.family == family
                },
            }
            for family in FAMILIES
        }
    }


def _asyncapi() -> Document:
    channels: Document = {}
    operations: Document = {}
    messages: Document = {}
    for family in FAMILIES:
        refs = {}
        for spec in CATALOGUE.specs:
            if spec.family != family:
                continue
            key = spec.event_type.replace(".", "_")
            messages[key] = {
                "name": spec.event_type,
                "title": spec.event_type,
                "summary": (spec.model.__doc__ or "").strip().split("\n\n")[0] or None,
                "contentType": "application/json",
                "payload": {"$ref": f"./schemas/{event_schema_name(spec)}"},
            }
            refs[key] = {"$ref": f"#/components/messages/{key}"}
        channels[family] = {
            "address": f"party:{family}",
            "description": (
                f"Redis Stream of the `{family}` family (prefix configurable). Each entry is "
                "described by schemas/stream-entry.schema.json; its `envelope` field holds the "
                "message below as JSON."
            ),
            "messages": refs,
        }
        operations[f"receive_{family}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{family}"},
        }
    for message in messages.values():
        if message["summary"] is None:
            del message["summary"]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Student Party-member management events",
            "version": "1.0.0",
            "description": (
                "Events every service publishes on Redis Streams; see contracts/README.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:6379", "protocol": "redis"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[Path, str]:
    """Every generated file and its exact content."""
    documents: dict[Path, Document] = {
        SCHEMA_DIR / "envelope.schema.json": _envelope_schema(),
        SCHEMA_DIR / "stream-entry.schema.json": _entry_schema(),
        SCHEMA_DIR / "catalogue.json": _catalogue_index(),
        ASYNCAPI_FILE: _asyncapi(),
    }
    for spec in CATALOGUE.specs:
        documents[SCHEMA_DIR / event_schema_name(spec)] = _event_schema(spec)
    return {
        path: json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        for path, doc in documents.items()
    }


def _earlier_version(path: Path) -> bool:
    """A schema of an earlier version of a type still in the catalogue: kept as published (the
    logs hold events of it, and campus systems read them), never rewritten."""
    name = path.name.removesuffix(".schema.json")
    event_type, _, version = name.rpartition(".v")
    current = {spec.event_type: spec.schema_version for spec in CATALOGUE.specs}
    return (
        path.parent == SCHEMA_DIR / "events"
        and version.isdigit()
        and int(version) < current.get(event_type, 0)
    )


def _unwanted(rendered: dict[Path, str]) -> set[Path]:
    existing = set(SCHEMA_DIR.rglob("*.json")) if SCHEMA_DIR.exists() else set()
    return {p for p in existing - set(rendered) if not _earlier_version(p)}


def stale_files(rendered: dict[Path, str] | None = None) -> list[str]:
    """Files that differ from the models, are missing, or should no longer exist."""
    rendered = rendered if rendered is not None else render()
    stale = [
        str(path.relative_to(ROOT.parent))
        for path, text in rendered.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    stale += [str(p.relative_to(ROOT.parent)) for p in sorted(_unwanted(rendered))]
    return stale


def write(rendered: dict[Path, str] | None = None) -> list[str]:
    rendered = rendered if rendered is not None else render()
    changed = stale_files(rendered)
    for path in _unwanted(rendered):
        path.unlink()
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for name in stale:
            print(f"stale: {name}")
        if stale:
            print("run `python -m contracts.generate` and commit the result", file=sys.stderr)
        return 1 if stale else 0
    for name in write():
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
