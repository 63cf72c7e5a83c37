"""Running a service's real app (lifespan, PostgreSQL, Redis) in the test process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from runtime.auth import Role, TokenAuthority
from runtime.clock import Clock, utc_now
from runtime.http import create_app
from runtime.service import ServiceContext, ServiceDefinition
from runtime.settings import Settings
from tests.support import records
from tests.support.keys import keys_dir

SECRET = "test-secret-0123456789-0123456789"


@dataclass
class Api:
    client: httpx.AsyncClient
    tokens: TokenAuthority
    app: FastAPI

    @property
    def context(self) -> ServiceContext:
        context: ServiceContext = self.app.state.context
        return context

    def auth(self, role: Role, **scope: Any) -> dict[str, str]:
        token = self.tokens.issue(scope.pop("subject", role), role, **scope)
        return {"Authorization": f"Bearer {token}"}

    async def event_count(self) -> int:
        return int(
            await self.context.pool.fetchval(f'SELECT count(*) FROM "{self.context.schema}".events')
        )


def service_settings(
    database_url: str, schema: str, prefix: str, redis_url: str, **overrides: Any
) -> Settings:
    return Settings(
        database_url=database_url,
        db_schema=schema,
        redis_url=redis_url,
        stream_prefix=prefix,
        relay_poll_seconds=0.1,
        reclaim_idle_ms=500,
        # Witness rounds only when a test asks (runtime.witness.Witness.round) or sets a period:
        # a round in the middle of another test would add events to the logs it counts.
        **{
            "auth_secret": SECRET,
            # A service under test may make keys of its own (a test's own key directory), as on
            # a developer's machine; the production refusals: tests/integration/test_secrets.py.
            "env": "development",
            "keys_dir": str(keys_dir()),
            "gap_grace_seconds": 1.0,
            "checkpoint_seconds": 3600.0,
            **overrides,
        },
    )


class SettableClock:
    """A clock a test can set; None follows the real time."""

    def __init__(self) -> None:
        self.now: datetime | None = None

    def __call__(self) -> datetime:
        return self.now or datetime.now(UTC)


@asynccontextmanager
async def running(
    definition: ServiceDefinition, settings: Settings, clock: Clock = utc_now
) -> AsyncIterator[Api]:
    """The service, reading gaps from the records of the producers in this test process."""
    prefix = settings.stream_prefix
    app = create_app(
        definition,
        settings,
        configure_logs=False,
        clock=clock,
        records=records.records_for(prefix),
        peers=records.peers_for(prefix),
    )
    try:
        async with app.router.lifespan_context(app):
            context: ServiceContext = app.state.context
            records.register(prefix, definition.name, context.store)
            records.register_app(prefix, definition.name, app)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Api(client, TokenAuthority(secret=SECRET), app)
    finally:
        records.unregister(prefix, definition.name)
        records.unregister_app(prefix, definition.name)
        # Only once the service has stopped: its relay and projectors hold locks meanwhile.
        conn = await asyncpg.connect(settings.database_url)
        try:
            await conn.execute(
                f'DROP SCHEMA IF EXISTS "{settings.schema_for(definition.name)}" CASCADE'
            )
        finally:
            await conn.close()
