"""Load the scenario into a running stack and print the branch secretary's report."""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from rich.console import Console

from runtime.service import token_authority
from runtime.settings import Settings
from services.scenario import people
from services.scenario.load import Clients, LoadFailed, load
from services.scenario.report import AuditCheck, report


def tokens_for(scenario: people.Scenario, secret: str | None = None) -> dict[str, str]:
    """The people who act in the scenario, with tokens signed with the stack's secret (the one
    `make up` generated and gave the services; PARTY_AUTH_SECRET when none is given)."""
    authority = token_authority(Settings(auth_secret=secret) if secret else Settings())
    ttl = timedelta(hours=2)
    tokens = {
        "admin": authority.issue("scenario-loader", "university_admin", ttl=ttl),
        "auditor": authority.issue("scenario-auditor", "auditor", ttl=ttl),
    }
    for branch_id in people.BRANCHES:
        full = [p for p in scenario.of_branch(branch_id) if p.standing == "full"]
        secretary, *others = full[:3]
        tokens[secretary.member_id] = authority.issue(
            secretary.member_id,
            "branch_secretary",
            branches=[branch_id],
            member_id=secretary.member_id,
            ttl=ttl,
        )
        for member in others:
            tokens[member.member_id] = authority.issue(
                member.member_id,
                "committee_member",
                branches=[branch_id],
                member_id=member.member_id,
                ttl=ttl,
            )
    return tokens


def run_scenario(
    urls: dict[str, str], console: Console | None = None, *, secret: str | None = None
) -> int:
    """Load, report; 0 when the audit check passes. `secret` signs the loader's tokens."""
    # Wide enough for the tables when the output goes to a file or a CI log.
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    scenario = people.build()
    clients = Clients(urls, tokens_for(scenario, secret))
    started = time.perf_counter()
    try:
        counts, timings = load(clients, scenario)
        check: AuditCheck = report(clients, console, counts, timings, time.perf_counter() - started)
    except LoadFailed as error:
        console.print(f"[red]the scenario did not load:[/red] {error}")
        return 1
    return 0 if check.passed else 1
