"""The notify service as the runtime runs it."""

from runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="notify",
    title="Notify service",
    description="Review deadlines and reminders delivered exactly once.",
)
