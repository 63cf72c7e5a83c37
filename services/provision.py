"""Least privilege for each service (DESIGN §6, §9): a PostgreSQL role per service that can
read its own event log and append to it only through the store's functions (which take the
position and the previous hash from the database), never change or delete a row, nor write
the chain head; a Redis ACL user per service that can publish only its own log and families and
only read (as a consumer group) the logs of the services it consumes; and a signing key per
service, beside the credentials, never in PostgreSQL or Redis.

    party provision [--out .run/credentials.json] [--keys-dir .run/keys]  # as the admin

Run after the migrations (the roles get rights on the tables that exist). On request it also
makes a read-only Redis user per outside campus system (`--campus-system NAME`), turns the Redis
`default` user off (`--disable-default-user`) and revokes PUBLIC's CONNECT on the server's other
databases (`--revoke-public-connect`, for a server of its own).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis

from contracts.catalogue import FAMILIES, PRODUCERS, families_of
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
        "-@dangerous",
        # No Lua or functions (they would run any command on any key the user may touch, in one
        # call) and no other database than the URL's (redis-py sends SELECT only for db > 0).
        "-@scripting",
        "-select",
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


#: What a campus system may do on the streams it reads with its own consumer group (the family
#: streams and notify's reminders): read, acknowledge, claim what its consumers left pending.
CAMPUS_GROUP_COMMANDS = (
    "+xreadgroup",
    "+xack",
    "+xgroup|create",
    "+xgroup|createconsumer",
    "+xautoclaim",
    "+xclaim",
    "+xpending",
)
#: What it may do on every stream it reads: plain reads, never a group's state.
CAMPUS_READ_COMMANDS = (
    "+xread",
    "+xrange",
    "+xrevrange",
    "+xlen",
    "+xinfo|stream",
    "+xinfo|groups",
    "+xinfo|consumers",
)
CAMPUS_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


def campus_user(user_prefix: str, name: str) -> str:
    if not CAMPUS_NAME.match(name):
        raise ValueError(
            f"a campus system's name is lower-case letters, digits and '-' (up to 40), not {name!r}"
        )
    return f"{user_prefix}_campus_{name}"


def campus_rules(prefix: str, password: str) -> list[str]:
    """The ACL SETUSER rules of an outside campus system's Redis user: read-only (`%R~`) on the
    public family streams, notify's reminders and the services' log streams; consumer-group
    commands on the family streams and the reminders only. A Redis ACL cannot confine a user to
    one group: it could acknowledge or claim entries of another campus system's group on those
    streams, never a service's (the services read only the log streams, where it has plain
    reads), and it can add, change or delete no entry anywhere."""
    grouped = [f"{prefix}:{family}" for family in FAMILIES] + [f"{prefix}:notifications"]
    logs = [f"{prefix}:log:{producer}" for producer in PRODUCERS]
    return [
        "reset",
        "on",
        f">{password}",
        *CONNECTION_COMMANDS,
        "+ping",
        "-@dangerous",
        "-select",
        *(f"%R~{key}" for key in [*grouped, *logs]),
        *CAMPUS_READ_COMMANDS,
        f"({' '.join(f'~{key}' for key in grouped)} {' '.join(CAMPUS_GROUP_COMMANDS)})",
    ]


async def provision_campus_systems(
    admin_url: str, prefix: str, user_prefix: str, names: Sequence[str]
) -> dict[str, dict[str, str]]:
    """A Redis user per campus system, each with a new random password; return for each its
    user, password and URL (for the credentials file, under `campus_systems`)."""
    client = redis.Redis.from_url(admin_url)
    made = {}
    try:
        for name in names:
            user, password = campus_user(user_prefix, name), secrets.token_urlsafe(24)
            await client.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", user, *campus_rules(prefix, password)
            )
            made[name] = {
                "user": user,
                "password": password,
                "redis_url": _with_user(admin_url, user, password),
            }
    finally:
        await client.aclose()
    return made


async def disable_default_user(
    admin_url: str, admin_user: str, password: str | None = None
) -> dict[str, str] | None:
    """Turn Redis's `default` user off (it has no password and every command). When the
    administrator connects as `default`, an administrator user `admin_user` with every right is
    made first (with `password`, or a random one) and returned with its URL, to be used from
    now on; when it connects as another user, nothing is made and None is returned. Clients
    already authenticated as `default` keep their connection until they reconnect."""
    client = redis.Redis.from_url(admin_url)
    try:
        current = await client.execute_command("ACL", "WHOAMI")  # type: ignore[no-untyped-call]
        made = None
        if (current.decode() if isinstance(current, bytes) else str(current)) == "default":
            password = password or secrets.token_urlsafe(24)
            await client.execute_command(  # type: ignore[no-untyped-call]
                "ACL", "SETUSER", admin_user, "reset", "on", f">{password}", "~*", "&*", "+@all"
            )
            url = _with_user(admin_url, admin_user, password)
            check = redis.Redis.from_url(url)
            try:
                await check.ping()  # the new administrator answers before the old one goes
            finally:
                await check.aclose()
            made = {"user": admin_user, "password": password, "redis_url": url}
        await client.execute_command("ACL", "SETUSER", "default", "off")  # type: ignore[no-untyped-call]
        return made
    finally:
        await client.aclose()


async def provision_database(
    admin_dsn: str,
    definitions: Sequence[ServiceDefinition],
    credentials: Mapping[str, Credentials],
    schema_of: Mapping[str, str],
) -> dict[str, str]:
    """Create or update each service's login role; return the service's database URL.

    A role may connect to this database only (no `TEMPORARY`, no `CREATE`), use its own schema
    only, read its log and append to it only through the store's functions, and write the other
    tables of its schema only as far as the service does (`TABLE_PRIVILEGES`); on the schemas of
    the other services it has nothing. PUBLIC loses `CONNECT` and `TEMPORARY` on this database
    (the service roles and the administrator are who uses it) and `CREATE` on its `public`
    schema. Other databases of the server are not touched: see `revoke_public_connect`."""
    conn = await asyncpg.connect(admin_dsn)
    urls = {}
    try:
        database = await conn.fetchval("SELECT current_database()")
        db = f'"{database}"'
        await conn.execute(f"REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC")
        if await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = 'public'"):
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for definition in definitions:
            c = credentials[definition.name]
            schema = quote_schema(schema_of[definition.name])
            role = f'"{c.user}"'
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", c.user)
            verb = "ALTER" if exists else "CREATE"
            await conn.execute(
                f"{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                f"NOBYPASSRLS PASSWORD '{_literal(c.password)}'"
            )
            await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM {role}")
            await conn.execute(f"GRANT CONNECT ON DATABASE {db} TO {role}")
            for other in definitions:
                other_schema = schema_of[other.name]
                if other.name == definition.name or other_schema == schema_of[definition.name]:
                    continue
                if await conn.fetchval(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1", other_schema
                ):
                    quoted = quote_schema(other_schema)
                    await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {quoted} FROM {role}")
                    await conn.execute(f"REVOKE ALL ON SCHEMA {quoted} FROM {role}")
            await conn.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
            await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            tables = [
                r["table_name"]
                for r in await conn.fetch(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
                    schema_of[definition.name],
                )
            ]
            for table in tables:
                await conn.execute(f'REVOKE ALL ON {schema}."{table}" FROM {role}')
                privileges = TABLE_PRIVILEGES.get(table, READ_MODEL_PRIVILEGES)
                await conn.execute(f'GRANT {privileges} ON {schema}."{table}" TO {role}')
            await conn.execute(
                f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema} FROM PUBLIC, {role}"
            )
            for function in APPEND_FUNCTIONS:
                await conn.execute(f"GRANT EXECUTE ON FUNCTION {schema}.{function} TO {role}")
            urls[definition.name] = _with_user(admin_dsn, c.user, c.password)
    finally:
        await conn.close()
    return urls


async def other_databases_open_to(admin_dsn: str, roles: Sequence[str]) -> dict[str, list[str]]:
    """The other databases of the server each role may still connect to (through PUBLIC's
    `CONNECT`, which PostgreSQL grants on every database unless someone revoked it)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        return {
            role: [
                row["datname"]
                for row in await conn.fetch(
                    "SELECT datname FROM pg_database WHERE datallowconn "
                    "AND datname <> current_database() "
                    "AND has_database_privilege($1, datname, 'CONNECT') ORDER BY datname",
                    role,
                )
            ]
            for role in roles
        }
    finally:
        await conn.close()


async def revoke_public_connect(
    admin_dsn: str, databases: Sequence[str] | None = None
) -> list[str]:
    """Revoke PUBLIC's `CONNECT` and `TEMPORARY` on the other databases of the server (all of
    them unless named): right for a server of the system's own (the private one `make up`
    starts), the DBA's decision on a shared one, where other users may rely on PUBLIC's."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        if databases is None:
            databases = [
                row["datname"]
                for row in await conn.fetch(
                    "SELECT datname FROM pg_database WHERE datallowconn "
                    "AND datname <> current_database() ORDER BY datname"
                )
            ]
        for name in databases:
            quoted = name.replace('"', '""')
            await conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{quoted}" FROM PUBLIC')
        return list(databases)
    finally:
        await conn.close()


#: Tables a service's role reads but never writes: its log and the head of its chain.
APPEND_ONLY_TABLES = frozenset({"events", "chain_head"})
#: What the role may do on the tables of the machinery around its log (runtime/): only what
#: the service does there. The log and its head are read (appends go through the functions
#: below); the migrations are the administrator's; idempotency keys, unique claims, the inbox
#: and the signed checkpoints are only added to; cursors and progress are moved.
TABLE_PRIVILEGES: dict[str, str] = {
    **dict.fromkeys(APPEND_ONLY_TABLES, "SELECT"),
    "schema_migrations": "SELECT",
    "idempotency_keys": "SELECT, INSERT",
    # … a claim is released when its person is erased (runtime/personal.py) …
    "unique_claims": "SELECT, INSERT, DELETE",
    # … and a person's data key is made, and destroyed by the erasure (never emptied at once).
    "personal_keys": "SELECT, INSERT, UPDATE",
    "inbox": "SELECT, INSERT",
    "log_checkpoints": "SELECT, INSERT",
    "log_frontier": "SELECT, INSERT, UPDATE",
    "relay_progress": "SELECT, INSERT, UPDATE",
    "producer_cursors": "SELECT, INSERT, UPDATE",
    "projection_checkpoints": "SELECT, INSERT, UPDATE",
    # … and the events a projection could not apply, until they apply (runtime/failures.py).
    "failed_events": "SELECT, INSERT, UPDATE, DELETE",
}
#: A read model (every other table of the service's schema) is the service's to fold, and to
#: empty for a rebuild.
READ_MODEL_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE"
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
    """Undo `provision` (the services' roles and users, the campus systems' users) and delete
    the streams; if asked, drop the whole database or only the
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
        listed = await client.execute_command("ACL", "USERS")  # type: ignore[no-untyped-call]
        campus = [
            name
            for name in (u.decode() if isinstance(u, bytes) else str(u) for u in listed)
            if name.startswith(f"{user_prefix}_campus_")
        ]
        for user in [*users, *campus]:
            await client.execute_command("ACL", "DELUSER", user)  # type: ignore[no-untyped-call]
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()
