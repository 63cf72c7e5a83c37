"""How a service is put together: its definition, and the context built for it at start.

A service folder declares a `ServiceDefinition` (name, its SQL migrations, the families it
consumes, its projections, its HTTP routers and background tasks); the runtime connects to
PostgreSQL and Redis, applies the migrations, and runs the event store writer, the relay, the
consumer and the HTTP API around it. Nothing here knows any particular service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as redis

from contracts.catalogue import FAMILY_PRODUCER
from contracts.events import SigningKeyRotated
from runtime.auth import TokenAuthority
from runtime.clock import Clock, utc_now
from runtime.consumer import ConsumerOptions, EventConsumer, Projection, Projector
from runtime.consumer.records import HttpRecord, ProducerRecord
from runtime.db import create_pool
from runtime.directory import DIRECTORY_MIGRATIONS, Directory, MemberDirectory
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    EventMetadata,
    EventStore,
    Migration,
    NewEvent,
    StreamAppend,
    load_migrations,
    migrate,
)
from runtime.eventstore.schema import quote_schema
from runtime.logs import get_logger
from runtime.projection import LocalProjection, LocalProjector
from runtime.redis_primary import resolve_redis_url, watch_primary
from runtime.relay import Relay
from runtime.settings import MIN_SECRET_BYTES, PUBLISHED_SECRETS, Settings
from runtime.signing import (
    KeyDirectory,
    KeyRing,
    Signer,
    ensure_keys,
    load_signer,
    private_key_path,
)
from runtime.witness import HttpPeerCheckpoints, PeerCheckpoints, Witness

log = get_logger("service")


def _no_projections(_: ServiceContext) -> Sequence[Projection]:
    return ()


def _no_tasks(_: ServiceContext) -> Sequence[Coroutine[Any, Any, None]]:
    return ()


def _no_local_projections(_: ServiceContext) -> Sequence[LocalProjection]:
    return ()


def _no_setup(_: ServiceContext) -> None:
    return None


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    title: str
    description: str = ""
    migrations_dir: Path | None = None
    #: keeps a copy of the organisation from the `member` stream (runtime.directory)
    uses_directory: bool = False
    #: builds the service's own objects into `context.extras` (its service layer, queries)
    setup: Callable[[ServiceContext], None] = _no_setup
    #: read models folded from the service's own log (runtime.projection)
    local_projections: Callable[[ServiceContext], Sequence[LocalProjection]] = _no_local_projections
    #: families consumed from Redis, and the projections they feed
    consumes: tuple[str, ...] = ()
    projections: Callable[[ServiceContext], Sequence[Projection]] = _no_projections
    routers: Sequence[Any] = ()  # fastapi.APIRouter, mounted under the service's app
    background: Callable[[ServiceContext], Sequence[Coroutine[Any, Any, None]]] = _no_tasks
    #: run once after `setup`, before the projectors catch up or a rebuild folds (a check or
    #: an upgrade of stored data)
    on_start: Callable[[ServiceContext], Coroutine[Any, Any, None]] | None = None

    def migrations(self) -> list[Migration]:
        own = load_migrations(self.name, self.migrations_dir) if self.migrations_dir else []
        directory = (
            load_migrations("directory", DIRECTORY_MIGRATIONS) if self.uses_directory else []
        )
        return [*load_migrations("eventstore", EVENT_STORE_MIGRATIONS), *directory, *own]


@dataclass
class ServiceContext:
    """Everything a running service holds; handlers reach it as `request.app.state.context`."""

    definition: ServiceDefinition
    settings: Settings
    pool: asyncpg.Pool
    redis: redis.Redis
    store: EventStore
    tokens: TokenAuthority
    clock: Clock = utc_now
    relay: Relay | None = None
    local_projector: LocalProjector | None = None
    directory: Directory | None = None
    consumer: EventConsumer | None = None
    projector: Projector | None = None
    keys: KeyDirectory | None = None
    records: dict[str, ProducerRecord] = field(default_factory=dict)
    #: Checkpoints of this log, and the witnessing of every other service's (runtime.witness).
    witness: Witness | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def schema(self) -> str:
        return self.store.schema

    @property
    def keyring(self) -> KeyRing:
        """Every service's public keys, as the key directory has them now."""
        return self.keys.ring() if self.keys is not None else KeyRing()

    @property
    def signer(self) -> Signer | None:
        return self.store.signer


def producers_of(definition: ServiceDefinition) -> list[str]:
    """The services whose logs this one consumes (the producers of its families)."""
    families = [*definition.consumes, *(["member"] if definition.uses_directory else [])]
    return list(
        dict.fromkeys(
            FAMILY_PRODUCER[f]
            for f in families
            if FAMILY_PRODUCER.get(f) not in (None, definition.name)
        )
    )


def service_signer(settings: Settings, service: str) -> Signer:
    """This service's signing key, from the key directory (created there if allowed)."""
    keys_dir = Path(settings.keys_dir)
    if settings.create_missing_key:
        ensure_keys(keys_dir, [service])
    return load_signer(private_key_path(keys_dir, service), service)


def token_authority(settings: Settings) -> TokenAuthority:
    return TokenAuthority(
        secret=settings.auth_secret.get_secret_value(),
        public_key=settings.auth_public_key,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        max_lifetime=timedelta(hours=settings.token_max_lifetime_hours),
    )


class UnsafeSettings(Exception):
    """Settings a service refuses to start with outside development (`PARTY_ENV`)."""


def check_safe_to_start(settings: Settings) -> None:
    """Outside development, no published or short token secret opens a service, and a service
    signs only with the key a deployment provisioned for it."""
    if settings.env == "development":
        return
    refusals = []
    secret = settings.auth_secret.get_secret_value()
    if settings.auth_public_key is None:  # with a public key, the secret verifies nothing
        if secret in PUBLISHED_SECRETS:
            refusals.append(
                "PARTY_AUTH_SECRET is a secret published in the repository (the development "
                "default or an example): set a random one "
                "(`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        elif len(secret.encode()) < MIN_SECRET_BYTES:
            refusals.append(
                f"PARTY_AUTH_SECRET is {len(secret.encode())} bytes long: it needs at least "
                f"{MIN_SECRET_BYTES}"
            )
    if settings.create_missing_key:
        refusals.append(
            "PARTY_CREATE_MISSING_KEY is true: a deployment provisions each service's signing "
            "key (`party provision`, `party keys init`) and sets it to false"
        )
    if refusals:
        raise UnsafeSettings(
            f"refusing to start with PARTY_ENV={settings.env}: {'; '.join(refusals)} "
            "(or set PARTY_ENV=development on a developer's machine)"
        )


async def ensure_database(dsn: str) -> bool:
    """Create the database named in the DSN when it does not exist yet (first start); say
    whether it was created."""
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        base, _, name = dsn.rpartition("/")
        name = name.split("?")[0]
        admin = await asyncpg.connect(f"{base}/postgres")
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            log.info("database created", database=name)
            return True
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            # Another service started at the same moment created it (two CREATE DATABASE
            # racing end in a unique violation on the catalogue, not a duplicate error).
            return False
        finally:
            await admin.close()
    await conn.close()
    return False


async def connect_database(settings: Settings, *, attempts: int = 30) -> asyncpg.Pool:
    """A pool, waiting for PostgreSQL to answer (a service may start before its database)."""
    for attempt in range(1, attempts + 1):
        try:
            await ensure_database(settings.database_url)
            return await create_pool(  # reset on release only as far as needed
                settings.database_url,
                min_size=1,
                max_size=settings.db_pool_size,
                command_timeout=60,
            )
        except (OSError, asyncpg.CannotConnectNowError) as error:
            if attempt == attempts:
                raise
            log.warning("database not reachable yet", attempt=attempt, error=repr(error))
            await asyncio.sleep(1.0)
    raise AssertionError("unreachable")


async def migrate_service(
    pool: asyncpg.Pool, definition: ServiceDefinition, schema: str
) -> list[str]:
    async with pool.acquire() as conn:
        return await migrate(conn, schema, definition.migrations())


async def start_service(
    definition: ServiceDefinition,
    settings: Settings,
    *,
    clock: Clock = utc_now,
    run_background: bool = True,
    records: dict[str, ProducerRecord] | None = None,
    peers: Callable[[ServiceContext], PeerCheckpoints] | None = None,
) -> ServiceContext:
    check_safe_to_start(settings)
    pool = await connect_database(settings)
    schema = settings.schema_for(definition.name)
    applied = await migrate_service(pool, definition, schema) if settings.migrate_on_start else []
    if applied:
        log.info("migrations applied", service=definition.name, schema=schema, applied=applied)
    redis_url = await resolve_redis_url(
        settings.redis_url, settings.redis_sentinels, settings.redis_sentinel_master
    )
    redis_client = redis.Redis.from_url(redis_url)
    signer = service_signer(settings, definition.name)
    keys = KeyDirectory(Path(settings.keys_dir))
    store = EventStore(
        pool,
        schema,
        clock=clock,
        max_batch=settings.append_batch_max,
        signer=signer,
        source=definition.name,
        keyring=keys.ring,
    )
    context = ServiceContext(
        definition=definition,
        settings=settings,
        pool=pool,
        redis=redis_client,
        store=store,
        tokens=token_authority(settings),
        clock=clock,
        keys=keys,
    )
    await record_key_rotation(store, signer)
    producers = producers_of(definition)
    context.records = (
        dict(records)
        if records is not None
        else {
            producer: HttpRecord(producer, settings.url_for(producer), signer)
            for producer in producers
        }
    )
    context.witness = Witness(
        service=definition.name,
        store=store,
        signer=signer,
        keyring=lambda: context.keyring,
        peers=peers(context)
        if peers is not None
        else HttpPeerCheckpoints(definition.name, signer, settings.url_for),
        period=settings.checkpoint_seconds,
        clock=clock,
    )
    context.relay = Relay(
        store=store,
        redis_client=redis_client,
        source=definition.name,
        prefix=settings.stream_prefix,
        maxlen=settings.stream_maxlen,
        batch_size=settings.relay_batch_size,
        poll_seconds=settings.relay_poll_seconds,
        clock=clock,
    )
    local = definition.local_projections(context)
    if local:
        context.local_projector = LocalProjector(
            store,
            local,
            name=f"{definition.name}_read_models",
            source=definition.name,
            poll_seconds=settings.relay_poll_seconds,
            attempts=settings.projection_attempts,
        )
    if definition.uses_directory:
        context.directory = Directory(pool, schema)
    definition.setup(context)
    if definition.on_start is not None:
        await definition.on_start(context)
    projections = list(definition.projections(context))
    # The directory is committed before the projections that read it act.
    eager = [MemberDirectory(schema)] if definition.uses_directory else []
    if projections or eager:
        context.projector = Projector(
            pool,
            schema,
            projections,
            eager,
            service=definition.name,
            attempts=settings.projection_attempts,
        )
    if producers and context.projector is not None:
        context.consumer = EventConsumer(
            service=definition.name,
            redis_url=redis_url,
            redis_client=redis_client,
            prefix=settings.stream_prefix,
            producers=producers,
            handler=context.projector.apply,
            consumer_name=settings.consumer_name_for(definition.name),
            keyring=lambda: context.keyring,
            records=context.records,
            cursors=context.projector.cursors,
            applied=context.projector.applied_hashes,
            options=ConsumerOptions(
                batch_size=settings.consumer_batch_size,
                block_ms=settings.consumer_block_ms,
                reclaim_idle_ms=settings.reclaim_idle_ms,
                max_deliveries=settings.max_deliveries,
                gap_grace_seconds=settings.gap_grace_seconds,
            ),
            clock=clock,
        )
    if run_background:
        context._tasks.append(asyncio.create_task(context.relay.run(), name="relay"))
        if context.local_projector is not None:
            await context.local_projector.catch_up_fully()
            context._tasks.append(
                asyncio.create_task(context.local_projector.run(), name="local-projector")
            )
        if context.consumer is not None:
            await context.consumer.start()
        if settings.redis_sentinels:
            watch = watch_primary(
                redis_url, settings.redis_sentinels, settings.redis_sentinel_master
            )
            context._tasks.append(asyncio.create_task(watch, name="redis-primary-watch"))
        context._tasks.append(asyncio.create_task(context.witness.run(), name="witness"))
        for coroutine in definition.background(context):
            context._tasks.append(asyncio.create_task(coroutine))
    log.info("service started", service=definition.name, schema=schema)
    return context


async def stop_service(context: ServiceContext) -> None:
    if context.consumer is not None:
        await context.consumer.stop()
    for task in context._tasks:
        task.cancel()
    if context._tasks:
        done, stuck = await asyncio.wait(context._tasks, timeout=10)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error(
                    "background task had failed", task=task.get_name(), error=repr(task.exception())
                )
        for task in stuck:
            log.error("background task did not stop", task=task.get_name())
    await context.store.close()
    if context.witness is not None:
        await context.witness.close()
    for record in context.records.values():
        close = getattr(record, "close", None)
        if close is not None:
            await close()
    await context.redis.aclose()
    await context.pool.close()
    log.info("service stopped", service=context.definition.name)


async def record_key_rotation(store: EventStore, signer: Signer) -> None:
    """When the service signs with another key than its log last did, say so in the log
    (`signing_key.rotated`, in a commit the new key signs): from there the old one is retired."""
    row = await store.pool.fetchrow(
        f"SELECT key_id FROM {quote_schema(store.schema)}.events WHERE signature IS NOT NULL "
        "ORDER BY position DESC LIMIT 1"
    )
    if row is None or row["key_id"] == signer.key_id:
        return
    event = SigningKeyRotated(
        service=signer.service,
        key_id=signer.key_id,
        previous_key_id=row["key_id"],
        public_key=signer.public_key_b64,
    )
    await store.append(
        StreamAppend(
            f"signing-keys-{signer.service}",
            [NewEvent.from_payload(event, occurred_at=utc_now(), branch_id=None)],
        ),
        metadata=EventMetadata(signer.service, "system"),
    )
    log.warning(
        "signing key rotated", service=signer.service, previous=row["key_id"], key=signer.key_id
    )


#: Tables that are not read models: the log and the machinery around it.
INFRASTRUCTURE_TABLES = frozenset(
    {
        "events",
        "producer_cursors",
        "schema_migrations",
        "projection_checkpoints",
        "chain_head",
        "idempotency_keys",
        "unique_claims",
        "personal_keys",
        "relay_progress",
        "inbox",
        "log_frontier",
        "log_checkpoints",
        "failed_events",  # compared apart: who failed, not when (RebuildReport.skipped)
    }
)


@dataclass(frozen=True)
class RebuildReport:
    service: str
    events_read: int
    tables: tuple[str, ...]
    differing: tuple[str, ...]
    #: A few rows of each differing table as they were (`-`) and as they came out (`+`).
    examples: tuple[str, ...] = ()
    #: The events the read models went without (runtime.failures), after the rebuild; a
    #: different set than before is a difference ("failed_events").
    skipped: tuple[str, ...] = ()

    @property
    def equal(self) -> bool:
        return not self.differing


async def rebuild_read_models(
    definition: ServiceDefinition, settings: Settings, pool: asyncpg.Pool
) -> RebuildReport:
    """Fold the service's own log again into its read models (in one transaction, as queries
    expect) and say whether they came out as they were. A replay without side effects: no
    event is written and nothing is published. Run it when the service is quiet: what is
    appended meanwhile would show as a difference."""
    schema = settings.schema_for(definition.name)
    store = EventStore(pool, schema)
    context = ServiceContext(
        definition=definition,
        settings=settings,
        pool=pool,
        redis=redis.Redis.from_url(settings.redis_url),  # never used: nothing is published
        store=store,
        tokens=token_authority(settings),
    )
    # The roster, say, refuses a personal-data key that does not fit before anything is folded.
    if definition.on_start is not None:
        await definition.on_start(context)
    projector = LocalProjector(
        store,
        definition.local_projections(context),
        name=f"{definition.name}_read_models",
        source=definition.name,
        attempts=settings.projection_attempts,
    )
    before = await _dump_read_models(pool, schema)
    async with pool.acquire() as conn:
        skipped_before = await projector.failures.skipped_ids(conn)
    read = await projector.rebuild()
    after = await _dump_read_models(pool, schema)
    async with pool.acquire() as conn:
        skipped_after = await projector.failures.skipped_ids(conn)
    differing = tuple(
        t for t in sorted(before.keys() | after.keys()) if before.get(t) != after.get(t)
    )
    examples: list[str] = []
    for table in differing:
        was, now = set(before.get(table, ())), set(after.get(table, ()))
        examples += [f"{table} - {row}" for row in sorted(was - now)[:3]]
        examples += [f"{table} + {row}" for row in sorted(now - was)[:3]]
    if skipped_before != skipped_after:
        differing = (*differing, "failed_events")
        gone, new = skipped_before - skipped_after, skipped_after - skipped_before
        examples += [f"failed_events - {e}" for e in sorted(map(str, gone))]
        examples += [f"failed_events + {e}" for e in sorted(map(str, new))]
    return RebuildReport(
        definition.name,
        read,
        tuple(sorted(before)),
        differing,
        tuple(examples),
        tuple(sorted(map(str, skipped_after))),
    )


async def _dump_read_models(pool: asyncpg.Pool, schema: str) -> dict[str, list[str]]:
    quoted = quote_schema(schema)
    tables = [
        row["table_name"]
        for row in await pool.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
            schema,
        )
        if row["table_name"] not in INFRASTRUCTURE_TABLES
    ]
    return {
        table: sorted(
            repr(tuple(row)) for row in await pool.fetch(f'SELECT * FROM {quoted}."{table}"')
        )
        for table in tables
    }
