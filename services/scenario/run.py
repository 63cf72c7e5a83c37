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


def tokens_for(scenario: people.Scenario) -> dict[str, str]:
    """The people who act in the scenario, with development tokens (the stack's secret)."""
    authority = token_authority(Settings())
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


def run_scenario(urls: dict[str, str], console: Console | None = None) -> int:
    """Load, report; 0 when the audit check passes."""
    # Wide enough for the tables when the output goes to a file or a CI log.
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    scenario = people.build()
    clients = Clients(urls, tokens_for(scenario))
    started = time.perf_counter()
    try:
        counts, timings = load(clients, scenario)
        check: AuditCheck = report(clients, console, counts, timings, time.perf_counter() - started)
    except LoadFailed as error:
        console.print(f"[red]the scenario did not load:[/red] {error}")
        return 1
    return 0 if check.passed else 1
