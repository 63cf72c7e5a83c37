"""Junk on every stream the four services consume (malformed, oversized, wrongly typed, of an
unknown type): every consuming service dead-letters each entry with a reason and goes on
consuming what comes after."""

from __future__ import annotations

import json
from collections import Counter
from uuid import uuid4

import redis.asyncio as redis

from contracts.wire import MAX_ENTRY_BYTES
from runtime.service import producers_of
from services.registry import SERVICES
from tests.conftest import REDIS_URL
from tests.support.roster import RosterClient
from tests.support.stack import services, wait_for_members
from tests.support.waiting import wait_until

#: A real event type of each family, to dress junk up as.
TYPE_OF = {
    "member": "member.enrolled",
    "activity": "activity.scheduled",
    "attendance": "attendance.recorded",
    "report": "report.required",
    "score": "score.awarded",
    "deadline": "deadline.scheduled",
}


def junk(good: dict[bytes, bytes], family: str) -> list[tuple[str, dict[bytes, bytes]]]:
    """Four bad entries made from a good one, with the start of the reason each must get."""
    envelope = json.loads(good[b"envelope"])
    kind = TYPE_OF[family]
    wrongly_typed = {
        **envelope,
        "event_id": str(uuid4()),
        "type": kind,
        "data": {**envelope["data"], "member_id": 42},
    }
    return [
        ("malformed stream entry", {b"\xff": b"\x80 not even text"}),
        (
            "unknown event type",
            {**good, b"type": f"{family}.teleported".encode(), b"event_id": str(uuid4()).encode()},
        ),
        (
            "",  # a validation error naming the field (which field depends on the type)
            {
                **good,
                b"type": kind.encode(),
                b"event_id": wrongly_typed["event_id"].encode(),
                b"envelope": json.dumps(wrongly_typed).encode(),
            },
        ),
        (
            "oversized stream entry",
            {**good, b"envelope": b"{" + b" " * MAX_ENTRY_BYTES + b"}"},
        ),
    ]


#: A family each producer's log carries, to dress junk up as.
FAMILY_OF = {"roster": "member", "activities": "attendance", "scoring": "score"}


async def test_junk_on_every_stream_is_dead_lettered_and_consuming_goes_on(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> None:
    definitions = list(SERVICES.values())
    async with services(definitions, database_url, stream_prefix, REDIS_URL) as apis:
        roster = RosterClient(apis["roster"])
        await roster.organisation()
        await roster.enrol("m-before")
        for name in ("activities", "scoring", "notify"):
            await wait_for_members(apis[name], "m-before")
        good = (await redis_client.xrange(f"{stream_prefix}:log:roster", count=1))[0][1]
        consumed_logs = {p for d in definitions for p in producers_of(d)}
        assert consumed_logs == {"roster", "activities", "scoring"}
        for producer in sorted(consumed_logs):
            for _, fields in junk(good, FAMILY_OF[producer]):
                await redis_client.xadd(f"{stream_prefix}:log:{producer}", fields)

        # Consuming goes on: a member enrolled after the junk reaches every consumer.
        await roster.enrol("m-after")
        for name in ("activities", "scoring", "notify"):
            await wait_for_members(apis[name], "m-after")

        auditor = apis["roster"].auth("auditor")
        for definition in definitions:
            producers = producers_of(definition)
            if not producers:
                continue
            api = apis[definition.name]

            async def letters(api=api) -> list[dict[str, str]]:
                response = await api.client.get(
                    "/v1/audit/dead-letters", params={"limit": 100}, headers=auditor
                )
                return [letter["fields"] for letter in response.json()]

            async def all_parked(api=api, producers=producers) -> bool:
                return len(await letters(api)) == 4 * len(producers)

            await wait_until(all_parked, within=30, what=f"{definition.name}'s dead letters")
            parked = await letters(api)
            assert Counter(p["dead_letter.stream"] for p in parked) == {
                f"{stream_prefix}:log:{producer}": 4 for producer in producers
            }, definition.name
            reasons = [p["dead_letter.reason"] for p in parked]
            assert all(reasons), definition.name
            assert sum(r.startswith("malformed stream entry") for r in reasons) == len(producers)
            assert sum(r.startswith("unknown event type") for r in reasons) == len(producers)
            assert sum(r.startswith("oversized stream entry") for r in reasons) == len(producers)
            assert sum("member_id" in r for r in reasons) >= len(producers)  # the wrongly typed
