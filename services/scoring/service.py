"""The scoring service as the runtime runs it."""

from runtime.service import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="scoring",
    title="Scoring service",
    description="The regulation as versioned data and the quantified-assessment projections "
    "(量化管理): ledgers, rankings, period close, replay and what-if.",
)
