"""The notify service as the runtime runs it."""

from __future__ import annotations

import os
import socket
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.service import ServiceContext, ServiceDefinition
from services.notify.api import router
from services.notify.channels import Channel, EmailChannel, StreamChannel, WebhookChannel
from services.notify.domain.config import NotifyConfig
from services.notify.domain.deadlines import Calendar
from services.notify.handlers import NotifyService
from services.notify.projections import (
    SOURCE_FAMILIES,
    DeadlineBoard,
    DeadlinesFromEvents,
    ErasedRecipients,
)
from services.notify.queries import NotifyQueries
from services.notify.scheduler import ReminderScheduler

DEFAULT_CONFIG = Path(__file__).resolve().parent / "notify.yaml"


class NotifySettings(BaseSettings):
    """Notify's own settings (prefix `PARTY_NOTIFY_`), documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="PARTY_NOTIFY_", extra="ignore")

    config: str = Field(str(DEFAULT_CONFIG), description="the reminders configuration (YAML)")
    webhook_url: str | None = Field(None, description="where webhooks go (overrides the file)")
    webhook_secret: str | None = Field(None, description="HMAC-SHA256 key of the webhooks")
    smtp_host: str | None = Field(None, description="mail server (overrides the file)")
    smtp_port: int | None = Field(None, description="mail server port")
    scheduler: bool = Field(True, description="run the reminder scheduler in this process")


def load_config(settings: NotifySettings) -> NotifyConfig:
    raw = yaml.safe_load(Path(settings.config).read_text(encoding="utf-8"))
    if settings.webhook_url or settings.webhook_secret:
        raw["webhook"] = {
            **raw.get("webhook", {}),
            **({"url": settings.webhook_url} if settings.webhook_url else {}),
            **({"secret": settings.webhook_secret} if settings.webhook_secret else {}),
        }
    if settings.smtp_host or settings.smtp_port:
        raw["email"] = {
            **raw.get("email", {}),
            **({"host": settings.smtp_host} if settings.smtp_host else {}),
            **({"port": settings.smtp_port} if settings.smtp_port else {}),
        }
    return NotifyConfig.model_validate(raw)


def _setup(context: ServiceContext) -> None:
    settings = NotifySettings()
    config = load_config(settings)
    zone = ZoneInfo(context.settings.timezone)
    service = NotifyService(context.store, context.local_projector, Calendar(config, zone))
    channels: dict[str, Channel] = {
        "stream": StreamChannel(context.redis, context.settings.stream_prefix),
        "webhook": WebhookChannel(config),
        "email": EmailChannel(config),
    }
    replica = f"{socket.gethostname()}-{os.getpid()}-{id(context) % 10000}"
    context.extras.update(
        notify=service,
        notify_config=config,
        notify_settings=settings,
        notify_queries=NotifyQueries(context.pool, context.schema),
        notify_scheduler=ReminderScheduler(
            service,
            channels,
            config,
            context.clock,
            replica,
        ),
    )


def _background(context: ServiceContext) -> Sequence[Coroutine[Any, Any, None]]:
    settings: NotifySettings = context.extras["notify_settings"]
    return [context.extras["notify_scheduler"].run()] if settings.scheduler else []


DEFINITION = ServiceDefinition(
    name="notify",
    title="Notify service",
    description="Review deadlines and reminders delivered exactly once.",
    migrations_dir=Path(__file__).resolve().parent / "migrations",
    uses_directory=True,
    setup=_setup,
    local_projections=lambda context: [
        context.extras.setdefault(
            "notify_board",
            DeadlineBoard(
                context.schema, load_config(NotifySettings()), ZoneInfo(context.settings.timezone)
            ),
        )
    ],
    consumes=SOURCE_FAMILIES,
    projections=lambda context: [
        DeadlinesFromEvents(context.extras["notify"], context.extras["notify_board"]),
        ErasedRecipients(context.schema),
    ],
    routers=[router],
    background=_background,
)
