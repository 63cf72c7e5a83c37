"""The roster service as the runtime runs it."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.logs import get_logger
from runtime.personal import PersonalVault, load_master_key
from runtime.service import ServiceContext, ServiceDefinition
from services.roster.api import router
from services.roster.domain.policy import RosterPolicy
from services.roster.handlers import RosterService
from services.roster.policies import PerformanceFromAssessments
from services.roster.projections import RosterReadModels
from services.roster.queries import RosterQueries

log = get_logger("roster")

SHARE = r"^[0-9]{1,6}/[1-9][0-9]{0,5}$"  # a fraction such as 4/5


class RosterSettings(BaseSettings):
    """The roster's own settings (prefix `PARTY_ROSTER_`), documented in README.md."""

    model_config = SettingsConfigDict(env_prefix="PARTY_ROSTER_", extra="ignore")

    probation_months: int = Field(12, ge=1, description="length of a probation")
    extension_min_months: int = Field(6, ge=1, description="shortest extension of a probation")
    extension_max_months: int = Field(12, ge=1, description="longest extension of a probation")
    academic_year_starts: str = Field(
        "09-01", pattern=r"^\d{2}-\d{2}$", description="MM-DD the academic year begins"
    )
    election_candidate_margin: str = Field(
        "1/5", pattern=SHARE, description="差额选举: this share more candidates than seats"
    )
    election_quorum: str = Field(
        "4/5", pattern=SHARE, description="an election needs more than this share present"
    )
    election_majority: str = Field(
        "1/2", pattern=SHARE, description="elected with more than this share of those present"
    )
    vote_quorum: str = Field(
        "1/2", pattern=SHARE, description="a vote on a probation: more than this share present"
    )
    vote_majority: str = Field(
        "1/2", pattern=SHARE, description="… and more than this share of the entitled voting yes"
    )
    retention_days: int = Field(
        1826,
        ge=0,
        le=36500,
        description="a member who left may be erased this many days after the transfer",
    )

    def policy(self) -> RosterPolicy:
        month, day = (int(part) for part in self.academic_year_starts.split("-"))
        return RosterPolicy(
            probation_months=self.probation_months,
            extension_min_months=self.extension_min_months,
            extension_max_months=self.extension_max_months,
            academic_year_starts=(month, day),
            election_candidate_margin=Fraction(self.election_candidate_margin),
            election_quorum=_share(self.election_quorum),
            election_majority=_share(self.election_majority),
            vote_quorum=_share(self.vote_quorum),
            vote_majority=_share(self.vote_majority),
            retention_days=self.retention_days,
        )


def _share(text: str) -> Fraction:
    share = Fraction(text)
    if not 0 <= share < 1:
        raise ValueError(f"a quorum or majority is a share below 1, not {text}")
    return share


def vault(context: ServiceContext) -> PersonalVault:
    """The keys of the people the roster records (one vault per running service)."""
    if "personal_vault" not in context.extras:
        master = load_master_key(
            Path(context.settings.keys_dir), create=context.settings.create_missing_key
        )
        context.extras["personal_vault"] = PersonalVault(context.pool, context.schema, master)
    found: PersonalVault = context.extras["personal_vault"]
    return found


async def _open_the_vault(context: ServiceContext) -> None:
    """Refuse to start with a personal-data key that does not fit the kept keys; index the
    student numbers claimed before they were indexed (runtime.personal)."""
    await vault(context).check()
    indexed = await vault(context).index_plain_claims("student_number")
    if indexed:
        log.info("student numbers indexed", claims=indexed)


def _setup(context: ServiceContext) -> None:
    policy = RosterSettings().policy()
    context.extras["roster"] = RosterService(
        context.store,
        context.local_projector,
        policy=policy,
        clock=context.clock,
        timezone=context.settings.timezone,
        vault=vault(context),
    )
    context.extras["roster_queries"] = RosterQueries(context.pool, context.schema, policy)


DEFINITION = ServiceDefinition(
    name="roster",
    title="Roster service",
    description="Organisation units, members and their four category dimensions (分类管理), "
    "responsibility spaces and agreements, pairings and group links.",
    migrations_dir=Path(__file__).resolve().parent / "migrations",
    setup=_setup,
    on_start=_open_the_vault,
    local_projections=lambda context: [RosterReadModels(context.schema, vault(context))],
    consumes=("score",),
    projections=lambda context: [PerformanceFromAssessments(context.extras["roster"])],
    routers=[router],
)
