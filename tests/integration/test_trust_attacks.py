"""The attacks of issue 13, scripted against the real services, PostgreSQL and Redis: each is
refused or detected, with what an operator sees, and no score changes.

A branch with one member, m1, who did two hours of volunteer service on 5 June 2010: under the
university's nde-2010 (base 60, volunteer hours × 1) her 2010 total is 60 + 2 = 62.0. Every
attack below tries to change that number, or to make scoring miss something, and fails.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio as redis

from contracts.canonical import envelope_hash
from runtime.eventstore import EventMetadata, EventStore, StreamAppend, verify_chain
from runtime.relay import watermark_key
from runtime.service import record_key_rotation
from runtime.signing import (
    Signer,
    ensure_keys,
    load_keyring,
    load_signer,
    private_key_path,
    rotate_key,
)
from services.activities.service import DEFINITION as ACTIVITIES
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services
from tests.support.tally import attendance_event
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)


@dataclass
class Campus:
    apis: dict[str, Api]
    prefix: str
    redis: redis.Redis

    @property
    def auditor(self) -> dict[str, str]:
        return self.apis["roster"].auth("auditor")

    async def post(self, service: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        api = self.apis[service]
        response = await api.client.post(path, json=body, headers=api.auth("university_admin"))
        assert response.status_code < 400, response.text
        return response.json()  # type: ignore[no-any-return]

    async def total(self, member: str = "m1") -> str:
        api = self.apis["scoring"]
        response = await api.client.get(
            f"/v1/members/{member}/score", params={"period_id": "2010"}, headers=self.auditor
        )
        assert response.status_code == 200, response.text
        periods = response.json()
        return str(periods[0]["total"]) if periods else "60.0"

    async def dead_letters(self, service: str) -> list[dict[str, str]]:
        response = await self.apis[service].client.get(
            "/v1/audit/dead-letters", params={"limit": 100}, headers=self.auditor
        )
        return [letter["fields"] for letter in response.json()]

    async def applied_everything(self, consumer: str, producer: str) -> bool:
        """The consumer's cursor on the producer has reached the producer's head."""
        head, _ = await self.apis[producer].context.store.head()
        context = self.apis[consumer].context
        cursor = await context.pool.fetchval(
            f'SELECT position FROM "{context.schema}".producer_cursors WHERE source = $1',
            producer,
        )
        return (cursor or 0) == head

    async def settled(self) -> None:
        for consumer, producer in (("scoring", "roster"), ("scoring", "activities")):
            await wait_until(
                lambda c=consumer, p=producer: self.applied_everything(c, p),
                within=40,
                what=f"{consumer} to apply all of {producer}'s log",
            )

    async def metric(self, of: str, name: str, **labels: str) -> float:
        """The sum of a metric's series that carry these labels."""
        text = (await self.apis[of].client.get("/metrics")).text
        total = 0.0
        for found in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.MULTILINE):
            series = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
            if all(series.get(k) == v for k, v in labels.items()):
                total += float(found.group(2))
        return total

    async def last_entry(self, stream: str, event_type: str) -> dict[bytes, bytes]:
        for _, fields in reversed(await self.redis.xrange(stream)):
            if fields[b"type"] == event_type.encode():
                return dict(fields)
        raise AssertionError(f"no {event_type} on {stream}")


async def volunteer_day(c: Campus) -> None:
    roster = RosterClient(c.apis["roster"])
    await roster.organisation()
    await roster.enrol("m1")
    await c.settled()
    await c.post(
        "activities",
        "/v1/activities",
        {
            "activity_id": "v1",
            "kind": "volunteer_service",
            "title": "社区志愿服务",
            "branch_id": "nde-b1",
            "starts_at": "2010-06-05T08:00:00+08:00",
            "place": "凯瑞园社区",
            "volunteer_hours": "2",
        },
    )
    await c.post(
        "activities",
        "/v1/activities/v1/attendance",
        {"lines": [{"member_id": "m1", "status": "present"}]},
    )
    await c.settled()


@pytest.fixture
async def campus(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[Campus]:
    definitions = [ROSTER, ACTIVITIES, SCORING, NOTIFY]
    async with services(
        definitions, database_url, stream_prefix, REDIS_URL, stream_maxlen=1000
    ) as apis:
        made = Campus(apis, stream_prefix, redis_client)
        await volunteer_day(made)
        assert await made.total() == "62.0"  # 60 + 2 hours × 1
        yield made


def forged(fields: dict[bytes, bytes], change: dict[str, Any], rehash: bool) -> dict[bytes, bytes]:
    """A copy of an entry with its event id and data changed; its hash left alone, zeroed or
    recomputed (a forger who read contracts/canonical.py)."""
    envelope = json.loads(fields[b"envelope"])
    envelope["event_id"] = str(uuid4())
    envelope["data"] = {**envelope["data"], **change}
    envelope["hash"] = "0" * 64
    if rehash:
        envelope["hash"] = envelope_hash({k: v for k, v in envelope.items() if k != "hash"})
    out = dict(fields)
    out[b"event_id"] = envelope["event_id"].encode()
    out[b"envelope"] = json.dumps(envelope, ensure_ascii=False).encode()
    out.pop(b"signature", None)
    out.pop(b"key_id", None)
    return out


async def test_forged_entries_are_refused_with_the_reason_and_count_nowhere(campus: Campus) -> None:
    c = campus
    log = f"{c.prefix}:log:activities"
    genuine = await c.last_entry(log, "attendance.recorded")
    head, head_hash = await c.apis["activities"].context.store.head()
    ten_hours = {"volunteer_hours": "10"}
    # 1. The copy with a zeroed hash (the attack that went through before).
    await c.redis.xadd(log, forged(genuine, ten_hours, rehash=False))
    # 2. A forger who recomputes the hash and chains it onto the head: no signature.
    chained = forged(genuine, ten_hours, rehash=False)
    envelope = json.loads(chained[b"envelope"])
    envelope["prev_hash"] = head_hash
    envelope["hash"] = envelope_hash({k: v for k, v in envelope.items() if k != "hash"})
    chained[b"envelope"] = json.dumps(envelope, ensure_ascii=False).encode()
    chained[b"position"] = str(head + 1).encode()
    await c.redis.xadd(log, chained)
    # 3. The same, signed — with a key of the forger's own.
    theirs = Signer.generate("activities")
    signed = dict(chained)
    signed[b"event_id"] = str(uuid4()).encode()
    envelope["event_id"] = signed[b"event_id"].decode()
    envelope["hash"] = envelope_hash({k: v for k, v in envelope.items() if k != "hash"})
    signed[b"envelope"] = json.dumps(envelope, ensure_ascii=False).encode()
    signed[b"signature"] = theirs.sign(head + 1, envelope["hash"]).encode()
    signed[b"key_id"] = theirs.key_id.encode()
    await c.redis.xadd(log, signed)
    # 4. An attendance line on the roster's log (with the roster's Redis user it could be).
    await c.redis.xadd(f"{c.prefix}:log:roster", {**genuine, b"source": b"roster"})

    async def all_refused() -> bool:
        return len(await c.dead_letters("scoring")) >= 4

    await wait_until(all_refused, within=30, what="scoring to refuse the four forgeries")
    reasons = sorted(letter["dead_letter.reason"] for letter in await c.dead_letters("scoring"))
    assert any("does not hash to the hash it claims" in r for r in reasons), reasons
    assert sum("activities's record has no position" in r for r in reasons) == 2, reasons
    assert any("attendance event, which roster does not produce" in r for r in reasons), reasons
    assert await c.total() == "62.0"  # nothing counted
    assert (
        await c.metric(
            "scoring", "party_entries_refused_total", service="scoring", producer="activities"
        )
        >= 3
    )

    # Notify saw the same entries and believed none of them either.
    async def notify_refused() -> bool:
        return len(await c.dead_letters("notify")) >= 4

    await wait_until(notify_refused, within=30, what="notify to refuse them too")


async def test_a_consumer_stopped_past_maxlen_catches_up_with_every_event_once(
    campus: Campus,
) -> None:
    c = campus
    scoring = c.apis["scoring"].context
    assert scoring.consumer is not None
    await scoring.consumer.stop()
    # 1,500 attendance lines while scoring is away; the streams keep about 1,000 entries.
    for sheet in range(15):
        activity = f"w{sheet}"
        await c.post(
            "activities",
            "/v1/activities",
            {
                "activity_id": activity,
                "kind": "all_member_meeting",
                "title": "全体党员大会",
                "branch_id": "nde-b1",
                "starts_at": f"2010-07-{sheet + 1:02d}T19:00:00+08:00",
                "place": "301",
            },
        )
        await c.post(
            "activities",
            f"/v1/activities/{activity}/attendance",
            {"lines": [{"member_id": "m1", "status": "present"}]},
        )
    store = c.apis["activities"].context.store
    # ... and more, straight into the log, to push the stream past its length.
    for batch in range(14):
        await store.append(
            StreamAppend(
                f"attendance-bulk-{batch}",
                [attendance_event(f"bulk-{batch}", f"x{n}", "present") for n in range(100)],
            ),
            metadata=EventMetadata("secretary-b1", "branch_secretary"),
        )
    await asyncio.sleep(1.0)
    first = await c.redis.xrange(f"{c.prefix}:log:activities", count=1)
    assert int(first[0][1][b"position"]) > 1, "the stream was not trimmed"
    await scoring.consumer.start()
    await wait_until(
        lambda: c.applied_everything("scoring", "activities"),
        within=90,
        what="scoring to catch up past the trimmed entries",
    )
    head, _ = await store.head()
    applied = await scoring.pool.fetchval(
        f'SELECT count(*) FROM "{scoring.schema}".inbox WHERE source = $1', "activities"
    )
    assert applied == head  # every event of activities' log, once
    assert (
        await c.metric(
            "scoring", "party_gap_events_filled_total", service="scoring", producer="activities"
        )
        > 0
    )
    # 60 + 2 (volunteer) + 10 (all-member meetings, capped at 10 of the 15) = 72
    assert await c.total() == "72.0"
    replay = await c.post("scoring", "/v1/replay", {})
    assert replay["equal"] is True


async def test_entries_taken_from_the_group_by_another_reader_are_read_from_the_record(
    campus: Campus,
) -> None:
    c = campus
    log = f"{c.prefix}:log:activities"
    scoring = c.apis["scoring"].context
    assert scoring.consumer is not None
    await scoring.consumer.stop()
    await c.post(
        "activities",
        "/v1/activities",
        {
            "activity_id": "v2",
            "kind": "volunteer_service",
            "title": "敬老院志愿服务",
            "branch_id": "nde-b1",
            "starts_at": "2010-06-12T08:00:00+08:00",
            "place": "敬老院",
            "volunteer_hours": "3",
        },
    )
    await c.post(
        "activities",
        "/v1/activities/v2/attendance",
        {"lines": [{"member_id": "m1", "status": "present"}]},
    )
    await asyncio.sleep(0.5)
    # A thief reads scoring's group and acknowledges everything new.
    taken: Any = await c.redis.xreadgroup("scoring", "thief", {log: ">"}, count=1000)
    ids = [entry_id for _, entries in taken for entry_id, _ in entries]
    assert ids, "nothing to steal"
    await c.redis.xack(log, "scoring", *ids)
    await scoring.consumer.start()
    # 60 + 2 + 3 hours = 65: the stolen entries came from activities' own record.
    await wait_until(lambda: _total_is(c, "65.0"), within=40, what="the stolen hours to count")
    assert await c.applied_everything("scoring", "activities")


async def _total_is(c: Campus, expected: str) -> bool:
    return await c.total() == expected


async def test_a_watermark_set_ahead_of_the_log_is_an_alarm_and_is_repaired(
    campus: Campus,
) -> None:
    c = campus
    await c.redis.set(watermark_key(c.prefix, "activities"), 10**9)
    await c.post(
        "activities",
        "/v1/activities",
        {
            "activity_id": "v3",
            "kind": "volunteer_service",
            "title": "义务植树",
            "branch_id": "nde-b1",
            "starts_at": "2010-06-19T08:00:00+08:00",
            "place": "马鞍山",
            "volunteer_hours": "1",
        },
    )
    await c.post(
        "activities",
        "/v1/activities/v3/attendance",
        {"lines": [{"member_id": "m1", "status": "present"}]},
    )
    await wait_until(lambda: _total_is(c, "63.0"), within=30, what="the hour to be published")
    repairs = await c.metric(
        "activities", "party_relay_watermark_repairs_total", service="activities"
    )
    assert repairs >= 1  # the alarm an operator sees (deploy/alerts/party.rules.yaml)


async def test_an_event_appended_without_the_key_fails_verify_and_counts_nowhere(
    campus: Campus,
) -> None:
    """What the roster's own role can still do (call the append function with a chain it
    computed itself): the row is not signed. Direct INSERTs and head updates are refused to the
    role altogether (test_provision)."""
    c = campus
    roster = c.apis["roster"].context
    head, head_hash = await roster.store.head()
    member = await roster.store.read_stream("member-m1")
    base = member[-1]
    document = {
        **base.canonical_document(),
        "event_id": str(uuid4()),
        "type": "member.disciplined",
        "schema_version": 1,
        "stream_version": base.stream_version + 1,
        "data": {
            "member_id": "m1",
            "measure": "warning",
            "decided_on": "2010-11-20",
            "reason": "伪造",
        },
        "prev_hash": head_hash,
    }
    forged_hash = envelope_hash(document)
    await roster.pool.execute(
        f'SELECT "{roster.schema}".append_log(ARRAY[$1::bigint], ARRAY[$2::uuid], ARRAY[$3], '
        "ARRAY[$4::integer], ARRAY[$5], ARRAY[1], ARRAY[$6], ARRAY[$7::timestamptz], "
        "ARRAY[$8::timestamptz], ARRAY[$13], ARRAY[$14], "
        "ARRAY[$9::uuid], ARRAY[$15::uuid], ARRAY[$10::jsonb], ARRAY[$11], ARRAY[$12], "
        "ARRAY[NULL::text], ARRAY[NULL::text])",
        head + 1,
        document["event_id"],
        base.stream_id,
        document["stream_version"],
        "member.disciplined",
        base.branch_id,
        base.occurred_at,
        base.recorded_at,
        base.correlation_id,
        json.dumps(document["data"], ensure_ascii=False),
        forged_hash,
        head_hash,
        base.actor_id,
        base.actor_role,
        base.causation_id,
    )
    report = await verify_chain(roster.pool, roster.schema, keyring=roster.keyring, source="roster")
    assert not report.intact
    assert report.first_broken_position == head + 1
    assert "not covered by any signature" in (report.reason or "")
    response = await c.apis["roster"].client.get("/v1/audit/verify", headers=c.auditor)
    assert response.json()["intact"] is False
    assert response.json()["first_broken_position"] == head + 1
    # The relay publishes what the log holds; scoring does not believe it.
    await wait_until(
        lambda: _refused(c, "scoring", f"holds position {head + 1} unsigned"),
        within=30,
        what="scoring to refuse the unsigned event",
    )
    assert await c.total() == "62.0"  # no veto
    # And the service signs nothing over it: its next command waits for an operator.
    response = await c.apis["roster"].client.post(
        "/v1/members/m1/moves",
        json={"dormitory": "9-101", "effective_on": "2010-09-01"},
        headers=c.apis["roster"].auth("university_admin"),
    )
    assert response.status_code == 503, response.text
    assert response.json()["type"] == "/problems/log-tampered"
    assert "not signed by roster" in response.json()["detail"]
    report = await verify_chain(roster.pool, roster.schema, keyring=roster.keyring, source="roster")
    assert report.first_broken_position == head + 1


async def _refused(c: Campus, service: str, reason: str) -> bool:
    return any(reason in letter["dead_letter.reason"] for letter in await c.dead_letters(service))


async def test_a_rewritten_and_rehashed_row_fails_verify_at_its_position(campus: Campus) -> None:
    c = campus
    activities = c.apis["activities"].context
    s = f'"{activities.schema}"'
    events = await activities.store.read_all()
    target = next(e for e in events if e.type == "attendance.recorded")
    async with activities.pool.acquire() as conn, conn.transaction():
        await conn.execute(f"ALTER TABLE {s}.events DISABLE TRIGGER USER")
        prev = target.prev_hash
        for event in events:
            if event.position < target.position:
                continue
            data = event.data
            if event.position == target.position:
                data = {**data, "volunteer_hours": "10"}
            document = {**event.canonical_document(), "data": data, "prev_hash": prev}
            new_hash = envelope_hash(document)
            await conn.execute(
                f"UPDATE {s}.events SET data = $2::jsonb, hash = $3, prev_hash = $4 "
                "WHERE position = $1",
                event.position,
                json.dumps(data, ensure_ascii=False),
                new_hash,
                prev,
            )
            prev = new_hash
        await conn.execute(f"UPDATE {s}.chain_head SET hash = $1", prev)
        await conn.execute(f"ALTER TABLE {s}.events ENABLE TRIGGER USER")
    report = await verify_chain(
        activities.pool, activities.schema, keyring=activities.keyring, source="activities"
    )
    assert not report.intact
    # The signatures were made over the old hashes: the first one after the rewrite fails,
    # and the stretch it covered starts right after the last signature that still holds.
    assert report.first_broken_position is not None
    assert report.first_broken_position <= target.position
    assert "not covered by a valid signature" in (report.reason or "")
    assert await c.total() == "62.0"


async def test_a_key_rotated_mid_run_verifies_old_and_new_events(
    pool: Any, schema: str, tmp_path: Path
) -> None:
    ensure_keys(tmp_path, ["activities"])
    old = load_signer(private_key_path(tmp_path, "activities"), "activities")
    store = EventStore(pool, schema, signer=old, source="activities")
    metadata = EventMetadata("secretary-b1", "branch_secretary")
    await store.append(
        StreamAppend("a-1", [attendance_event("a1", "m1", "present")]), metadata=metadata
    )
    await store.close()
    rotate_key(tmp_path, "activities")
    new = load_signer(private_key_path(tmp_path, "activities"), "activities")
    ring = load_keyring(tmp_path)
    rotated = EventStore(pool, schema, signer=new, source="activities", keyring=lambda: ring)
    await record_key_rotation(rotated, new)
    await rotated.append(
        StreamAppend("a-2", [attendance_event("a2", "m1", "present")]), metadata=metadata
    )
    await rotated.close()
    report = await verify_chain(pool, schema, keyring=ring, source="activities")
    assert report.intact, report
    assert report.signed_through == report.events_checked == 3  # old, rotation, new
    # The old key, used again after the rotation (a replica not yet restarted, or a stolen
    # key), verifies nothing.
    stale = EventStore(pool, schema, signer=old, source="activities", keyring=lambda: ring)
    await stale.append(
        StreamAppend("a-3", [attendance_event("a3", "m1", "present")]), metadata=metadata
    )
    await stale.close()
    report = await verify_chain(pool, schema, keyring=ring, source="activities")
    assert not report.intact
    assert report.first_broken_position == 4
    assert f"but key {new.key_id} is in force" in (report.reason or "")
