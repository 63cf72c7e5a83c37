"""The activities service as the runtime runs it."""

from __future__ import annotations

from pathlib import Path

from runtime.service import ServiceContext, ServiceDefinition
from services.activities.api import router
from services.activities.handlers import ActivitiesService
from services.activities.policies import ObligationsFollowMembership
from services.activities.projections import ActivitiesReadModels
from services.activities.queries import ActivitiesQueries


def _setup(context: ServiceContext) -> None:
    assert context.directory is not None
    context.extras["activities"] = ActivitiesService(
        context.store,
        context.local_projector,
        context.directory,
        clock=context.clock,
        timezone=context.settings.timezone,
    )
    context.extras["activities_queries"] = ActivitiesQueries(context.pool, context.schema)


DEFINITION = ServiceDefinition(
    name="activities",
    title="Activities service",
    description="Meetings and outings of every kind, attendance, report obligations and "
    "submissions, and branch budgets.",
    migrations_dir=Path(__file__).resolve().parent / "migrations",
    uses_directory=True,
    setup=_setup,
    local_projections=lambda context: [ActivitiesReadModels(context.schema)],
    projections=lambda context: [
        ObligationsFollowMembership(context.extras["activities"], context.schema)
    ],
    routers=[router],
)
