"""The roster service as the runtime runs it."""

from runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="roster",
    title="Roster service",
    description="Organisation units, members and their four category dimensions (分类管理), "
    "responsibility spaces and agreements, pairings and group links.",
)
