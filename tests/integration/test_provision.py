"""Least privilege: each service's PostgreSQL role and Redis user can do its job and no more."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg
import pytest
import redis.asyncio as redis
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError

from runtime.eventstore import EventMetadata, EventStore, NewEvent, StreamAppend, migrate
from services.provision import (
    READ_MODEL_PRIVILEGES,
    TABLE_PRIVILEGES,
    campus_user,
    disable_default_user,
    new_credentials,
    other_databases_open_to,
    provision_campus_systems,
    provision_database,
    provision_redis,
    revoke_public_connect,
)
from services.registry import SERVICES
from tests.conftest import ADMIN_URL, REDIS_URL
from tests.support.keys import signer
from tests.support.servers import private_redis


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


async def test_a_role_connects_to_its_database_only_and_makes_no_temporary_tables(
    provisioned: tuple[dict[str, str], dict[str, str], dict[str, str]], database_url: str
) -> None:
    databases, _, _ = provisioned
    roster = await asyncpg.connect(databases["roster"])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await roster.execute("CREATE TEMP TABLE scratch (n int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await roster.execute("CREATE TABLE public.scratch (n int)")
    finally:
        await roster.close()
    # Another database of the server: PUBLIC may connect to it until someone revokes that (the
    # DBA on a shared server; `--revoke-public-connect` on a server of the system's own).
    other = f"other_{uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{other}"')
    try:
        user = urlsplit(databases["roster"]).username
        assert user is not None
        opened = await other_databases_open_to(database_url, [user])
        assert other in opened[user]
        assert await revoke_public_connect(database_url, [other]) == [other]
        assert other not in (await other_databases_open_to(database_url, [user]))[user]
        elsewhere = databases["roster"].rsplit("/", 1)[0] + f"/{other}"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="CONNECT privilege"):
            await asyncpg.connect(elsewhere)
    finally:
        await admin.execute(f'DROP DATABASE "{other}" WITH (FORCE)')
        await admin.close()


async def test_a_role_writes_nothing_of_other_services_and_only_what_its_service_writes(
    provisioned: tuple[dict[str, str], dict[str, str], dict[str, str]], pool: asyncpg.Pool
) -> None:
    databases, _, schemas = provisioned
    writes = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
    for service, url in databases.items():
        role = urlsplit(url).username
        for other, schema in schemas.items():
            tables = [
                r["table_name"]
                for r in await pool.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                    schema,
                )
            ]
            assert tables
            for table in tables:
                granted = {
                    privilege
                    for privilege in ("SELECT", *writes)
                    if await pool.fetchval(
                        "SELECT has_table_privilege($1, $2, $3)",
                        role,
                        f'"{schema}"."{table}"',
                        privilege,
                    )
                }
                if other != service:
                    assert not granted, f"{role} has {granted} on {schema}.{table}"
                    continue
                expected = TABLE_PRIVILEGES.get(table, READ_MODEL_PRIVILEGES)
                assert granted == set(expected.split(", ")), f"{role} on {table}: {granted}"
            usage = await pool.fetchval(
                "SELECT has_schema_privilege($1, $2, 'USAGE')", role, schema
            )
            assert usage == (other == service)
    # What the machinery around the log is given: the migrations are read only, the keys and
    # claims only added to, the log only appended to through its functions.
    assert TABLE_PRIVILEGES["schema_migrations"] == "SELECT"
    assert TABLE_PRIVILEGES["idempotency_keys"] == "SELECT, INSERT"
    assert TABLE_PRIVILEGES["events"] == "SELECT"


async def test_a_service_user_runs_no_script_and_selects_no_other_database(
    provisioned: tuple[dict[str, str], dict[str, str], dict[str, str]], stream_prefix: str
) -> None:
    _, redises, _ = provisioned
    for service in ("roster", "notify"):
        client = redis.Redis.from_url(redises[service])
        try:
            assert await client.ping()
            with pytest.raises(NoPermissionError):
                await client.eval("return 1", 0)
            with pytest.raises(NoPermissionError):
                await client.execute_command("SCRIPT", "LOAD", "return 1")  # type: ignore[no-untyped-call]
            with pytest.raises(NoPermissionError):
                await client.execute_command("FUNCTION", "LIST")  # type: ignore[no-untyped-call]
            with pytest.raises(NoPermissionError):
                await client.execute_command("SELECT", "1")  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
        other_db = redis.Redis.from_url(redises[service].rsplit("/", 1)[0] + "/1")
        try:
            with pytest.raises((NoPermissionError, ConnectionError)):
                await other_db.ping()
        finally:
            await other_db.aclose()


async def test_notify_delivers_to_the_stream_once_without_scripts(
    provisioned: tuple[dict[str, str], dict[str, str], dict[str, str]],
    stream_prefix: str,
    redis_client: redis.Redis,
) -> None:
    from services.notify.channels import StreamChannel, notification_stream

    _, redises, _ = provisioned
    client = redis.Redis.from_url(redises["notify"])
    try:
        channel = StreamChannel(client, stream_prefix)
        outgoing = _outgoing()
        first, again = await channel.send(outgoing), await channel.send(outgoing)
        assert (first.detail, again.detail) == ("added", "already on the stream")
        assert await redis_client.xlen(notification_stream(stream_prefix)) == 1
    finally:
        await client.aclose()


def _outgoing() -> Any:
    from datetime import timedelta

    from services.notify.channels import Outgoing
    from services.notify.domain.reminders import DeadlineView, Message

    due = datetime.now(UTC) + timedelta(days=1)
    deadline = DeadlineView("d-1", "thought_report", "report", "b1", "m1", due)
    return Outgoing(uuid4(), deadline, "m1", 3600, Message("subject", "body"), None)


@pytest.fixture
async def campus(
    redis_client: redis.Redis, stream_prefix: str
) -> AsyncIterator[dict[str, dict[str, str]]]:
    made = await provision_campus_systems(REDIS_URL, stream_prefix, f"t{uuid4().hex[:6]}", ["sis"])
    try:
        yield made
    finally:
        for entry in made.values():
            await redis_client.acl_deluser(entry["user"])


async def test_a_campus_system_reads_and_acknowledges_in_its_group_and_writes_nothing(
    campus: dict[str, dict[str, str]], stream_prefix: str, redis_client: redis.Redis
) -> None:
    family, log = f"{stream_prefix}:member", f"{stream_prefix}:log:roster"
    await redis_client.xadd(family, {"type": "member.enrolled"})
    await redis_client.xadd(log, {"type": "member.enrolled"})
    await redis_client.xgroup_create(log, "roster-consumer", id="0")  # a service's group
    client = redis.Redis.from_url(campus["sis"]["redis_url"])
    try:
        assert campus["sis"]["user"].endswith("_campus_sis")
        await client.xgroup_create(family, "sis", id="0")
        read: Any = await client.xreadgroup("sis", "sis-1", {family: ">"})
        [[_, [(entry_id, _)]]] = read
        assert await client.xack(family, "sis", entry_id) == 1
        assert (await client.xpending(family, "sis"))["pending"] == 0
        assert len(await client.xrange(log)) == 1  # the log streams: plain reads
        assert len(await client.xread({log: "0"})) == 1
        for refused in (
            client.xadd(family, {"type": "member.enrolled"}),
            client.xdel(family, entry_id),
            client.xtrim(family, maxlen=0),
            client.delete(family),
            client.xadd(log, {"type": "member.enrolled"}),
            client.xreadgroup("roster-consumer", "thief", {log: ">"}),  # a service's group
            client.xack(log, "roster-consumer", entry_id),
            client.set(f"{stream_prefix}:relay:roster", 0),
            client.eval("return 1", 0),
            client.execute_command("SELECT", "1"),  # type: ignore[no-untyped-call]
            client.execute_command("FLUSHALL"),  # type: ignore[no-untyped-call]
        ):
            with pytest.raises(NoPermissionError):
                await refused
    finally:
        await client.aclose()


def test_campus_system_names_are_checked() -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        campus_user("party", "Student Affairs; DROP")
    assert campus_user("party", "student-affairs") == "party_campus_student-affairs"


async def test_the_default_user_is_off_in_a_private_redis(tmp_path: Path) -> None:
    with private_redis(tmp_path) as url:
        made = await disable_default_user(url, "party_admin")
        assert made is not None
        assert made["user"] == "party_admin"
        anonymous = redis.Redis.from_url(url)
        admin = redis.Redis.from_url(made["redis_url"])
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.ping()
            assert await admin.ping()
            assert await admin.acl_whoami() == "party_admin"
            # Again, as the administrator: nothing new is made, the default user stays off.
            assert await disable_default_user(made["redis_url"], "party_admin") is None
            default: Any = await admin.acl_getuser("default")
            assert "off" in default["flags"]
        finally:
            await anonymous.aclose()
            await admin.aclose()
