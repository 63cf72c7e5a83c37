"""Least privilege for each service (DESIGN §6, §9): a PostgreSQL role per service that can
read its own event log and append to it only through the store's functions (which take the
position and the previous hash from the database), never change or delete a row, nor write
the chain head; a Redis ACL user per service that can publish only its own log and families and
only read (as a consumer group) the logs of the services it consumes; and a signing key per
service, beside the credentials, never in PostgreSQL or Redis.

    party provision [--out .run/credentials.json] [--keys-dir .run/keys]  # as the admin

Run after the migrations (the roles get rights on the tables that exist).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis

from contracts.catalogue import families_of
from runtime.eventstore.schema import quote_schema
from runtime.service import ServiceDefinition, producers_of

#: The event families each service publishes (and nobody else), with the audit family every
#: service writes its own of.
PRODUCES: dict[str, tuple[str, ...]] = {
    name: families_of(name) for name in ("roster", "activities", "scoring", "notify")
}

#: Commands a consumer needs on a stream it reads: never XADD, XDEL, XTRIM or DEL.
CONSUMER_COMMANDS = (
    "+xreadgroup",
    "+xack",
    "+xautoclaim",
    "+xclaim",
    "+xpending",
    "+xgroup|create",
    "+xgroup|delconsumer",
    "+xinfo|groups",
    "+xinfo|consumers",
    "+xinfo|stream",
    "+xlen",
    "+xrange",
    "+xrevrange",
)
CONNECTION_COMMANDS = (
    "+@connection",
    "+info",
    "+client|setname",
    "+client|id",
    "+client|getname",
)


@dataclass(frozen=True)
class Credentials:
    service: str
    user: str
    password: str


def consumed(definition: ServiceDefinition) -> tuple[str, ...]:
    """The producers whose log streams the service reads."""
    return tuple(producers_of(definition))


def redis_rules(definition: ServiceDefinition, prefix: str, password: str) -> list[str]:
    """The ACL SETUSER rules of a service's Redis user."""
    name = definition.name
    own = [f"~{prefix}:{family}" for family in PRODUCES[name]]
    own += [f"~{prefix}:log:{name}", f"~{prefix}:relay:{name}", f"~{prefix}:deadletter:{name}"]
    if name == "notify":
        own += [f"~{prefix}:notifications", f"~{prefix}:notified:*"]
    rules = [
        "reset",
        "on",
        f">{password}",
        *CONNECTION_COMMANDS,
        "+ping",
        *own,
        "+@read",
        "+@write",
        "+@stream",
        "+@transaction",
        "+@scripting",
        "-@dangerous",
    ]
    reads = consumed(definition)
    if reads:
        keys = " ".join(f"~{prefix}:log:{producer}" for producer in reads)
        rules.append(f"({keys} {' '.join(CONSUMER_COMMANDS)})")
    return rules


async def provision_redis(
    admin_url: str,
    prefix: str,
    definitions: Sequence[ServiceDefinition],
    credentials: Mapping[str, Credentials],
) -> dict[str, str]:
    """Create or replace each service's ACL user; return the service's Redis URL."""
    client = redis.Redis.from_url(admin_url)
    urls = {}
    try:
        for definition in definitions:
            c = credentials[definition.name]
            await client.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", c.user, *redis_rules(definition, prefix, c.password)
            )
            urls[definition.name] = _with_user(admin_url, c.user, c.password)
    finally:
        await client.aclose()
    return urls


async def provision_database(
    admin_dsn: str,
    definitions: Sequence[ServiceDefinition],
    credentials: Mapping[str, Credentials],
    schema_of: Mapping[str, str],
) -> dict[str, str]:
    """Create or update each service's login role; return the service's database URL."""
    conn = await asyncpg.connect(admin_dsn)
    urls = {}
    try:
        database = await conn.fetchval("SELECT current_database()")
        for definition in definitions:
            c = credentials[definition.name]
            schema = quote_schema(schema_of[definition.name])
            role = f'"{c.user}"'
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", c.user)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(f"{verb} ROLE {role} LOGIN PASSWORD '{_literal(c.password)}'")
            await conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
            await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            tables = [
                r["table_name"]
                for r in await conn.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                    schema_of[definition.name],
                )
            ]
            for table in tables:
                if table in APPEND_ONLY_TABLES:
                    # The log and its head: read; appends only through the functions below.
                    await conn.execute(f"REVOKE ALL ON {schema}.{table} FROM {role}")
                    await conn.execute(f"GRANT SELECT ON {schema}.{table} TO {role}")
                else:
                    await conn.execute(
                        f'GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {schema}."{table}" '
                        f"TO {role}"
                    )
            await conn.execute(
                f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC, {role}"
            )
            for function in APPEND_FUNCTIONS:
                await conn.execute(f"GRANT EXECUTE ON FUNCTION {schema}.{function} TO {role}")
            urls[definition.name] = _with_user(admin_dsn, c.user, c.password)
    finally:
        await conn.close()
    return urls


#: Tables a service's role reads but never writes: its log and the head of its chain.
APPEND_ONLY_TABLES = frozenset({"events", "chain_head"})
#: How the role appends instead (runtime/eventstore/sql/0003_signed_log.sql).
APPEND_FUNCTIONS = (
    "lock_chain_head()",
    "append_log(bigint[], uuid[], text[], integer[], text[], integer[], text[], "
    "timestamptz[], timestamptz[], text[], text[], uuid[], uuid[], jsonb[], text[], text[], "
    "text[], text[])",
)


def new_credentials(
    definitions: Sequence[ServiceDefinition],
    user_prefix: str = "party",
    passwords: Mapping[str, str] | None = None,
) -> dict[str, Credentials]:
    """A user per service; random passwords unless given (from a secret store, say)."""
    given = passwords or {}
    return {
        d.name: Credentials(
            d.name, f"{user_prefix}_{d.name}", given.get(d.name) or secrets.token_urlsafe(18)
        )
        for d in definitions
    }


def passwords_from_environment(names: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """`PARTY_PASSWORD_ROSTER` … for each service: where compose and Kubernetes put secrets."""
    variables = {name: f"PARTY_PASSWORD_{name.upper()}" for name in names}
    missing = [v for v in variables.values() if not environ.get(v)]
    if missing:
        raise ValueError(f"--passwords-from-env: set {', '.join(missing)}")
    return {name: environ[v] for name, v in variables.items()}


def _with_user(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user)}:{quote(password)}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _literal(text: str) -> str:
    return text.replace("'", "''")


async def unprovision(
    admin_dsn: str,
    admin_redis_url: str,
    prefix: str,
    user_prefix: str,
    *,
    services: Sequence[str] = tuple(PRODUCES),
    drop_database: bool = False,
    drop_schemas: Sequence[str] = (),
) -> None:
    """Undo `provision` and delete the streams; if asked, drop the whole database or only the
    services' schemas. For `down --purge` and for tests."""
    users = [f"{user_prefix}_{name}" for name in services]
    base, _, database = admin_dsn.rpartition("/")
    database = database.split("?")[0]
    if drop_database:
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                database,
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
            for user in users:
                await admin.execute(f'DROP ROLE IF EXISTS "{user}"')
        finally:
            await admin.close()
    else:
        conn = await asyncpg.connect(admin_dsn)
        try:
            for schema in drop_schemas:
                await conn.execute(f"DROP SCHEMA IF EXISTS {quote_schema(schema)} CASCADE")
            for user in users:
                if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user):
                    await conn.execute(f'DROP OWNED BY "{user}"')
                    await conn.execute(f'DROP ROLE "{user}"')
        finally:
            await conn.close()
    client = redis.Redis.from_url(admin_redis_url)
    try:
        for user in users:
            await client.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()
