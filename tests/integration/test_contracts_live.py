"""What an outside campus system sees: entries on the streams validate against the committed
schemas, and the documented plain-redis-py subscriber receives them."""

from __future__ import annotations

import ast
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import redis.asyncio as redis

from contracts import CATALOGUE
from contracts.generate import SCHEMA_DIR, event_schema_name
from runtime.eventstore import EventMetadata, EventStore, NewEvent, StreamAppend
from runtime.relay import Relay
from tests.conftest import REDIS_URL
from tests.support.examples import EXAMPLES

EXAMPLE = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "subscriber.py"
WHEN = datetime(2010, 5, 4, 8, tzinfo=UTC)


async def publish_examples(store: EventStore, client: redis.Redis, prefix: str) -> None:
    for n, (event_type, data) in enumerate(EXAMPLES.items()):
        await store.append(
            StreamAppend(
                f"stream-{n}",
                [
                    NewEvent(
                        event_type,
                        data,
                        WHEN,
                        branch_id="nde-b1",
                        schema_version=CATALOGUE.spec(event_type).schema_version,
                    )
                ],
            ),
            metadata=EventMetadata("secretary-b1", "branch_secretary"),
        )
    relay = Relay(store=store, redis_client=client, source="roster", prefix=prefix)
    while await relay.publish_once():
        pass


async def test_every_published_entry_validates_against_the_committed_schemas(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await publish_examples(store, redis_client, stream_prefix)
    entry_schema = json.loads((SCHEMA_DIR / "stream-entry.schema.json").read_text())
    seen = set()
    for family in ("member", "activity", "attendance", "report", "score", "deadline", "audit"):
        for _, fields in await redis_client.xrange(f"{stream_prefix}:{family}"):
            flat = {k.decode(): v.decode() for k, v in fields.items()}
            jsonschema.validate(flat, entry_schema, cls=jsonschema.Draft202012Validator)
            envelope = json.loads(flat["envelope"])
            spec = CATALOGUE.spec(flat["type"])
            assert spec.family == family
            schema = json.loads((SCHEMA_DIR / event_schema_name(spec)).read_text())
            jsonschema.validate(envelope, schema, cls=jsonschema.Draft202012Validator)
            seen.add(flat["type"])
    assert seen == set(EXAMPLES)


def test_the_example_subscriber_imports_nothing_from_the_project() -> None:
    tree = ast.parse(EXAMPLE.read_text())
    imported = {
        (node.module or "").split(".")[0]
        if isinstance(node, ast.ImportFrom)
        else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "argparse", "json", "sys", "redis"}


async def test_the_example_subscriber_receives_the_events(
    store: EventStore, redis_client: redis.Redis, stream_prefix: str
) -> None:
    await publish_examples(store, redis_client, stream_prefix)
    member_types = [t for t in EXAMPLES if CATALOGUE.family_of(t) == "member"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--redis-url",
        REDIS_URL,
        "--prefix",
        stream_prefix,
        "--family",
        "member",
        "--group",
        "student-affairs",
        "--consumer",
        "test-1",
        "--stop-after",
        str(len(member_types)),
        "--idle-timeout",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert sorted(line["type"] for line in lines) == sorted(member_types)
    enrolled = next(line for line in lines if line["type"] == "member.enrolled")
    assert enrolled["data"]["name"] == "王小明"
    assert enrolled["branch_id"] == "nde-b1"
    # It acknowledged what it read: nothing is left pending for its group.
    pending = await redis_client.xpending(f"{stream_prefix}:member", "student-affairs")
    assert pending["pending"] == 0
