"""The HTTP entrypoint of every service: FastAPI with the shared plumbing.

FastAPI (not FastStream's ASGI helper) because each service has a real command and query API
whose OpenAPI document is generated and committed; the FastStream broker of the consumer runs in
the same process and event loop, started and stopped by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from contracts.ranges import DATE_RANGE_TEXT, INSTANT_RANGE_TEXT
from runtime.clock import Clock, utc_now
from runtime.consumer.records import ProducerRecord
from runtime.failures import observe as observe_failed_events
from runtime.http.audit import audit_router
from runtime.http.middleware import (
    BodyLimitMiddleware,
    ErrorBoundaryMiddleware,
    NulGuardMiddleware,
    ObserveMiddleware,
)
from runtime.http.problems import install_problem_handlers
from runtime.logs import configure_logging
from runtime.service import ServiceContext, ServiceDefinition, start_service, stop_service
from runtime.settings import Settings
from runtime.witness import PeerCheckpoints

#: Said in every OpenAPI document (and as `formatMinimum`/`formatMaximum` on each field).
RANGE_NOTE = (
    f"Every date accepted lies from {DATE_RANGE_TEXT}, and every instant from "
    f"{INSTANT_RANGE_TEXT} (contracts.ranges); a value outside gets 422 naming the field."
)


def create_app(
    definition: ServiceDefinition,
    settings: Settings | None = None,
    *,
    run_background: bool = True,
    configure_logs: bool = True,
    context_hook: Callable[[ServiceContext], Awaitable[None]] | None = None,
    clock: Clock = utc_now,
    records: dict[str, ProducerRecord] | None = None,
    peers: Callable[[ServiceContext], PeerCheckpoints] | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if configure_logs:
            configure_logging(settings.log_level, settings.log_format)
        context = await start_service(
            definition,
            settings,
            run_background=run_background,
            clock=clock,
            records=records,
            peers=peers,
        )
        app.state.context = context
        app.state.tokens = context.tokens
        if context_hook is not None:
            await context_hook(context)
        try:
            yield
        finally:
            await stop_service(context)

    app = FastAPI(
        title=definition.title,
        description=f"{definition.description}\n\n{RANGE_NOTE}".strip(),
        version="1.0.0",
        lifespan=lifespan,
        openapi_url="/openapi.json",
    )
    app.state.definition = definition
    install_problem_handlers(app)
    app.add_middleware(ErrorBoundaryMiddleware)
    app.add_middleware(NulGuardMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Outermost of ours (the last added), as the `@app.middleware("http")` it replaces was.
    app.add_middleware(ObserveMiddleware, service=definition.name)

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": definition.name}

    @app.get(
        "/ready",
        tags=["operations"],
        summary="Readiness: PostgreSQL and Redis answer",
        responses={503: {"description": "a dependency is unavailable"}},
    )
    async def ready(request: Request) -> JSONResponse:
        context: ServiceContext | None = getattr(request.app.state, "context", None)
        checks: dict[str, Any] = {}
        if context is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            async with asyncio.timeout(2.0):
                await context.pool.fetchval("SELECT 1")
            checks["postgres"] = "ok"
        except Exception as error:
            checks["postgres"] = type(error).__name__
        try:
            async with asyncio.timeout(2.0):
                await context.redis.ping()
            checks["redis"] = "ok"
        except Exception as error:
            checks["redis"] = type(error).__name__
        ok = all(value == "ok" for value in checks.values())
        body = {
            "status": "ready" if ok else "unavailable",
            "checks": checks,
            "relay_leader": bool(context.relay and context.relay.is_leader),
        }
        return JSONResponse(
            body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"}
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        context: ServiceContext | None = getattr(request.app.state, "context", None)
        if context is not None:  # what every replica recorded, not only this one
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0), context.pool.acquire() as conn:
                    await observe_failed_events(conn, context.schema, definition.name)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(audit_router)
    for router in definition.routers:
        app.include_router(router)
    return app
