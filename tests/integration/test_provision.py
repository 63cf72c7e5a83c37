"""Least privilege: each service's PostgreSQL role and Redis user can do its job and no more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest
import redis.asyncio as redis
from redis.exceptions import NoPermissionError

from runtime.eventstore import EventMetadata, EventStore, NewEvent, StreamAppend, migrate
from services.provision import new_credentials, provision_database, provision_redis
from services.registry import SERVICES
from tests.conftest import REDIS_URL
from tests.support.keys import signer


@pytest.fixture
async def provisioned(
    pool: asyncpg.Pool, database_url: str, stream_prefix: str
) -> AsyncIterator[tuple[dict[str, str], dict[str, str], dict[str, str]]]:
    definitions = list(SERVICES.values())
    tag = uuid4().hex[:6]
    schemas = {d.name: f"t_{tag}_{d.name}" for d in definitions}
    async with pool.acquire() as conn:
        for definition in definitions:
            await migrate(conn, schemas[definition.name], definition.migrations())
    credentials = new_credentials(definitions, f"t{tag}")
    databases = await provision_database(database_url, definitions, credentials, schemas)
    redises = await provision_redis(REDIS_URL, stream_prefix, definitions, credentials)
    try:
        yield databases, redises, schemas
    finally:
        admin = redis.Redis.from_url(REDIS_URL)
        for c in credentials.values():
            await admin.acl_deluser(c.user)
        await admin.aclose()
        async with pool.acquire() as conn:
            for schema in schemas.values():
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            for c in credentials.values():
                await conn.execute(f'DROP OWNED BY "{c.user}"')
                await conn.execute(f'DROP ROLE "{c.user}"')


async def test_the_roster_role_appends_but_cannot_change_an_event_row(
    provisioned: tuple[dict[str, str], dict[str, str], dict[str, str]],
) -> None:
    databases, _, schemas = provisioned
    pool = await asyncpg.create_pool(databases["roster"], min_size=1, max_size=2)
    assert pool is not None
    store = EventStore(pool, schemas["roster"], signer=signer("roster"), source="roster")
    try:
        await store.append(
            StreamAppend("s", [NewEvent("member.moved", {"n": 1}, datetime.now(UTC))]),
            metadata=EventMetadata("sec", "branch_secretary"),
        )
        assert len(await store.read_stream("s")) == 1
        s = f'"{schemas["roster"]}"'
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await pool.execute(f"UPDATE {s}.events SET type = 'x.y'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await pool.execute(f"DELETE FROM {s}.events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await pool.execute(f'SELECT count(*) FROM "{schemas["scoring"]}".events')
        # Only through the store's rules: no row inserted beside them, no head moved.
        [row] = await pool.fetch(f"SELECT * FROM {s}.events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await pool.execute(
                f"INSERT INTO {s}.events SELECT * FROM {s}.events"  # any row at all
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await pool.execute(f"UPDATE {s}.chain_head SET position = 7")
        with pytest.raises(asyncpg.CheckViolationError, match="does not extend the log"):
            await pool.execute(
                f"SELECT {s}.append_log(ARRAY[5]::bigint[], ARRAY[gen_random_uuid()], "
                "ARRAY['s'], ARRAY[2], ARRAY['member.moved'], ARRAY[1], ARRAY[NULL::text], "
                "ARRAY[now()], ARRAY[now()], ARRAY['x'], ARRAY['system'], "
                "ARRAY[gen_random_uuid()], ARRAY[NULL::uuid], ARRAY['{}'::jsonb], "
                f"ARRAY[repeat('a', 64)], ARRAY['{row['hash']}'], ARRAY[NULL::text], "
                "ARRAY[NULL::text])"
            )
    finally:
        await store.close()
        await pool.close()


async def test_the_roster_redis_user_cannot_publish_scores(
    provisioned: tuple[dict[str, str], dict[str, str], dict[str, str]],
    stream_prefix: str,
    redis_client: redis.Redis,
) -> None:
    _, redises, _ = provisioned
    roster = redis.Redis.from_url(redises["roster"])
    scoring = redis.Redis.from_url(redises["scoring"])
    try:
        await roster.xadd(f"{stream_prefix}:member", {"type": "member.moved"})
        await roster.xadd(f"{stream_prefix}:log:roster", {"type": "member.moved"})
        with pytest.raises(NoPermissionError):
            await roster.xadd(f"{stream_prefix}:score", {"type": "score.awarded"})
        with pytest.raises(NoPermissionError):
            await roster.xadd(f"{stream_prefix}:log:scoring", {"type": "score.awarded"})
        # Roster reads scoring's log as a consumer (the performance categories) …
        log = f"{stream_prefix}:log:scoring"
        await scoring.xadd(log, {"type": "assessment.closed"})
        await roster.xgroup_create(log, "roster", id="0")
        read = await roster.xreadgroup("roster", "r1", {log: ">"})
        assert len(read[0][1]) == 1
        # … but cannot delete from it, nor touch another service's keys.
        with pytest.raises(NoPermissionError):
            await roster.delete(log)
        with pytest.raises(NoPermissionError):
            await roster.set(f"{stream_prefix}:relay:scoring", 0)
        with pytest.raises(NoPermissionError):
            await scoring.xadd(f"{stream_prefix}:member", {"type": "member.enrolled"})
        with pytest.raises(NoPermissionError):
            await scoring.xadd(f"{stream_prefix}:log:roster", {"type": "member.enrolled"})
    finally:
        await roster.aclose()
        await scoring.aclose()


def test_passwords_come_from_the_environment_when_asked() -> None:
    from services.provision import passwords_from_environment

    environ = {f"PARTY_PASSWORD_{n.upper()}": f"pw-{n}" for n in SERVICES}
    passwords = passwords_from_environment(list(SERVICES), environ)
    credentials = new_credentials(list(SERVICES.values()), "party", passwords)
    assert credentials["scoring"].password == "pw-scoring"
    assert credentials["scoring"].user == "party_scoring"
    del environ["PARTY_PASSWORD_NOTIFY"]
    with pytest.raises(ValueError, match="set PARTY_PASSWORD_NOTIFY"):
        passwords_from_environment(list(SERVICES), environ)
