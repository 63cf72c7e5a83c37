"""The activities service as the runtime runs it."""

from runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="activities",
    title="Activities service",
    description="Meetings and outings of every kind, attendance, report obligations and "
    "submissions, and branch budgets.",
)
