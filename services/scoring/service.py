"""The scoring service as the runtime runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.catalogue import CATALOGUE
from runtime.logs import get_logger
from runtime.service import ServiceContext, ServiceDefinition
from services.scoring.api import router
from services.scoring.archive import Archive
from services.scoring.handlers import ScoringService, system_context
from services.scoring.offload import DEFAULT_SECONDS, DEFAULT_WORKERS, Offloader
from services.scoring.projections import INPUT_FAMILIES, ScoringInputs, ScoringReadModels
from services.scoring.queries import ScoringQueries
from services.scoring.regulation_file import DEFAULT_REGULATION, load_regulation

log = get_logger("scoring")


class ScoringSettings(BaseSettings):
    """Scoring's own settings (prefix `PARTY_SCORING_`), documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="PARTY_SCORING_", extra="ignore")

    regulation_id: str = Field(
        "nde-2010",
        description="the university's regulation: what a school or branch follows until it "
        "adopts another (any published id can be adopted without a restart)",
    )
    default_regulation: str = Field(
        str(DEFAULT_REGULATION),
        description="a YAML file published at first start when no version exists ('' for none)",
    )
    compute_workers: int = Field(
        DEFAULT_WORKERS,
        ge=1,
        le=64,
        description="what-if and replay runs computing at once (each in a process of its own); "
        "one more gets 503",
    )
    compute_seconds: float = Field(
        DEFAULT_SECONDS,
        gt=0,
        description="a what-if or replay computing longer is stopped (a what-if gets 422, a "
        "replay 503)",
    )


def _setup(context: ServiceContext) -> None:
    assert context.directory is not None
    settings = ScoringSettings()
    archive = Archive(context.pool, context.schema, settings.regulation_id)
    service = ScoringService(
        context.store,
        archive,
        context.directory,
        context.local_projector,
        clock=context.clock,
        timezone=context.settings.timezone,
    )
    context.extras.update(
        scoring=service,
        scoring_archive=archive,
        scoring_queries=ScoringQueries(
            service, archive, Offloader(settings.compute_workers, settings.compute_seconds)
        ),
        scoring_settings=settings,
    )


async def _publish_default(context: ServiceContext) -> None:
    settings: ScoringSettings = context.extras["scoring_settings"]
    service: ScoringService = context.extras["scoring"]
    if not settings.default_regulation:
        return
    if (await service.archive.regulations(settings.regulation_id)).latest() is not None:
        return
    text = await asyncio.to_thread(Path(settings.default_regulation).read_text, encoding="utf-8")
    raw = load_regulation(text)
    if raw.get("id") != settings.regulation_id:
        log.warning(
            "the default regulation file is not the university's regulation; not published",
            default=raw.get("id"),
            in_use=settings.regulation_id,
        )
        return
    await service.publish_regulation(
        raw, system_context(f"default-regulation:{raw.get('id')}:{raw.get('version')}")
    )
    log.info("default regulation published", regulation=raw.get("id"), version=raw.get("version"))


async def _warm_offload(context: ServiceContext) -> None:
    """Start the forkserver of what-if and replay runs now, not in the first one's time."""
    queries: ScoringQueries = context.extras["scoring_queries"]
    try:
        await asyncio.to_thread(queries.offload.warm)
    except Exception as error:  # the first run tries again, and says what fails
        log.warning("the process pool of what-if and replay did not start", error=str(error))


def _background(context: ServiceContext) -> Sequence[Coroutine[Any, Any, None]]:
    return [_publish_default(context), _warm_offload(context)]


DEFINITION = ServiceDefinition(
    name="scoring",
    title="Scoring service",
    description="The regulation as versioned data and the quantified-assessment projections "
    "(量化管理): ledgers, rankings, period close, replay and what-if.",
    migrations_dir=Path(__file__).resolve().parent / "migrations",
    uses_directory=True,
    setup=_setup,
    local_projections=lambda context: [ScoringReadModels(context.schema)],
    consumes=INPUT_FAMILIES,
    projections=lambda context: [
        ScoringInputs(
            context.extras["scoring"],
            context.extras["scoring_archive"],
            CATALOGUE.types_of(*INPUT_FAMILIES),
        ),
    ],
    routers=[router],
    background=_background,
)
