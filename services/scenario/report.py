"""What a branch secretary wants to see at the end of the plan's year, read from the services'
HTTP APIs: rankings with grades, excellent and lagging members with pairing suggestions, the
deadlines ahead, the budget, and an audit check (chains, replay, what-if)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from services.scenario.load import Clients
from services.scenario.people import BRANCHES

SCHOOL = "nde"
PERIOD = "2010"
#: The scenario ends on the last day of April 2011; "now" for the report.
AS_OF_DAY = "2011-04-30"
AS_OF = "2011-04-30T12:00:00+08:00"
GRADES_ZH = {"excellent": "优秀", "qualified": "合格", "basic": "基本合格", "unqualified": "不合格"}
SERVICES = ("roster", "activities", "scoring", "notify")


@dataclass
class AuditCheck:
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    replay: dict[str, Any] = field(default_factory=dict)
    grades_changed: int = 0
    members_compared: int = 0

    @property
    def chains_intact(self) -> bool:
        return len(self.chains) == len(SERVICES) and all(c["intact"] for c in self.chains.values())

    @property
    def passed(self) -> bool:
        return self.chains_intact and bool(self.replay.get("equal"))


def report(
    clients: Clients,
    console: Console,
    counts: dict[str, int],
    timings: dict[str, float],
    elapsed: float,
) -> AuditCheck:
    names = _names(clients)
    console.rule(f"国防教育学院 School of National Defence Education — assessment {PERIOD}")
    for branch_id, title in BRANCHES.items():
        _ranking(clients, console, branch_id, title, names)
        _lists(clients, console, branch_id, names)
    _deadlines(clients, console, names)
    _budget(clients, console)
    check = _audit(clients, console)
    _timings(console, counts, timings, elapsed)
    verdict = "[green]PASSED[/green]" if check.passed else "[red]FAILED[/red]"
    console.print(
        f"audit check {verdict}: chains {'intact' if check.chains_intact else 'BROKEN'}, "
        f"replay {'equals' if check.replay.get('equal') else 'DIFFERS FROM'} live, "
        f"what-if: {check.grades_changed} of {check.members_compared} members change grade"
    )
    return check


def _names(clients: Clients) -> dict[str, str]:
    names: dict[str, str] = {}
    for branch_id in BRANCHES:
        for member in clients.get("roster", f"/v1/branches/{branch_id}/members", limit=500):
            names[member["member_id"]] = member["name"]
    return names


def _ranking(
    clients: Clients, console: Console, branch_id: str, title: str, names: dict[str, str]
) -> None:
    table_data = clients.get("scoring", f"/v1/branches/{branch_id}/periods/{PERIOD}")
    closed = table_data.get("closed") or {}
    console.print(
        f"[bold]{title}[/bold] ({branch_id}): ranking {PERIOD}, regulation "
        f"{table_data['regulation_id']} v{table_data['regulation_version']}"
        + (f", closed {closed['closed_at'][:10]}" if closed else ", open")
    )
    table = Table()
    for column, justify in (
        ("rank", "right"),
        ("member", "left"),
        ("name", "left"),
        ("total", "right"),
        ("grade", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in table_data["members"]:
        grade = row["grade"]
        shown = f"{GRADES_ZH[grade]} {grade}" if grade else "预备党员 (probationary, not graded)"
        table.add_row(
            str(row["rank"]),
            row["member_id"],
            names.get(row["member_id"], "?"),
            f"{Decimal(row['total']):.1f}",
            shown,
        )
    console.print(table)
    tally = Counter(row["grade"] or "probationary" for row in table_data["members"])
    console.print("  " + ", ".join(f"{grade}: {n}" for grade, n in sorted(tally.items())))


def _lists(clients: Clients, console: Console, branch_id: str, names: dict[str, str]) -> None:
    rows = clients.get("scoring", f"/v1/branches/{branch_id}/periods/{PERIOD}")["members"]
    excellent = [r["member_id"] for r in rows if r["classification"] == "excellent"]
    lagging = [r["member_id"] for r in rows if r["classification"] == "lagging"]
    console.print(
        f"[bold]{branch_id}[/bold] excellent (优秀): "
        + "、".join(f"{names.get(m, m)}" for m in excellent)
    )
    console.print(
        f"[bold]{branch_id}[/bold] lagging (后进): "
        + ("、".join(f"{names.get(m, m)}" for m in lagging) or "none")
    )
    suggestions = clients.get(
        "roster", f"/v1/branches/{branch_id}/pairing-suggestions", as_of=AS_OF_DAY
    )
    pairs = [
        f"{names.get(s['mentor_id'], s['mentor_id'])} → {names.get(s['mentee_id'], s['mentee_id'])}"
        for s in suggestions
    ]
    console.print(
        f"[bold]{branch_id}[/bold] pairing suggestions (结对建议, as of {AS_OF_DAY}): "
        + ("; ".join(pairs) or "every lagging member already has a mentor")
    )
    console.print()


def _deadlines(clients: Clients, console: Console, names: dict[str, str]) -> None:
    table = Table(title=f"Deadlines ahead, as of {AS_OF_DAY}", title_justify="left")
    for column in ("due", "what", "branch", "who"):
        table.add_column(column)
    upcoming = clients.get(
        "notify", f"/v1/schools/{SCHOOL}/deadlines", status="upcoming", as_of=AS_OF
    )
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for deadline in upcoming:
        if deadline["kind"] == "meeting":
            continue
        key = (deadline["due_at"][:10], deadline["title"], deadline["branch_id"] or "")
        grouped.setdefault(key, []).append(deadline["member_id"] or "")
    for (due, title, branch), members in sorted(grouped.items())[:12]:
        who = [names.get(m, m) for m in members if m]
        shown = (
            "、".join(who[:4]) + (f" and {len(who) - 4} more" if len(who) > 4 else "")
            if who
            else "the branch"
        )
        table.add_row(due, title, branch, shown)
    console.print(table)


def _budget(clients: Clients, console: Console) -> None:
    table = Table(title=f"Budget {PERIOD} (CNY)", title_justify="left")
    for column in ("branch", "line", "planned", "spent", "remaining"):
        table.add_column(column, justify="left" if column in ("branch", "line") else "right")
    planned = spent = 0
    for branch_id in BRANCHES:
        statement = clients.get("activities", f"/v1/branches/{branch_id}/budgets/{PERIOD}")
        for line in statement["lines"]:
            table.add_row(
                branch_id,
                line["line"],
                _cny(line["planned_fen"]),
                _cny(line["spent_fen"]),
                _cny(line["remaining_fen"]),
            )
        planned += statement["planned_fen"]
        spent += statement["spent_fen"]
    table.add_row("plan", "total", _cny(planned), _cny(spent), _cny(planned - spent))
    console.print(table)


def _audit(clients: Clients, console: Console) -> AuditCheck:
    check = AuditCheck()
    table = Table(title="Audit check", title_justify="left")
    for column in ("check", "result"):
        table.add_column(column)
    for service in SERVICES:
        chain = clients.get(service, "/v1/audit/verify", who="auditor")
        check.chains[service] = chain
        table.add_row(
            f"hash chain of {service}",
            f"intact, {chain['events_checked']} events"
            if chain["intact"]
            else f"BROKEN at position {chain['first_broken_position']}: {chain['reason']}",
        )
    check.replay = clients.post_read("scoring", "/v1/replay", {}, who="auditor")
    table.add_row(
        "scoring replayed from its archive",
        ("equals live" if check.replay["equal"] else "DIFFERS from live")
        + f" ({check.replay['inputs']} inputs, {check.replay['members']} members, "
        f"checksum {check.replay['replay_checksum'][:12]})",
    )
    versions = clients.get("scoring", "/v1/regulations", who="auditor", regulation_id="nde-2010")
    latest = max(v["version"] for v in versions)
    whatif = clients.post_read(
        "scoring",
        "/v1/what-if",
        {
            "period_id": PERIOD,
            "school_id": SCHOOL,
            "regulation_id": "nde-2010",
            "regulation_version": latest,
        },
        who="auditor",
    )
    check.grades_changed = int(whatif["grades_changed"])
    check.members_compared = len(whatif["members"])
    changed = [m for m in whatif["members"] if m["old_grade"] != m["new_grade"]]
    moved = Decimal(sum(abs(Decimal(m["delta"])) for m in whatif["members"]))
    table.add_row(
        f"what-if: December {PERIOD} under the revision v{latest}",
        f"{check.grades_changed} of {check.members_compared} members change grade; "
        f"{moved} points moved in all"
        + "".join(
            f"\n  {m['member_id']}: {m['old_grade']} → {m['new_grade']} "
            f"({Decimal(m['old_total']):.1f} → {Decimal(m['new_total']):.1f})"
            for m in changed[:8]
        ),
    )
    console.print(table)
    return check


def _timings(
    console: Console, counts: dict[str, int], timings: dict[str, float], elapsed: float
) -> None:
    table = Table(title="Timings", title_justify="left")
    table.add_column("phase")
    table.add_column("seconds", justify="right")
    for name, seconds in timings.items():
        table.add_row(name, f"{seconds:.1f}")
    table.add_row("scenario loaded, in all", f"{elapsed:.1f}")
    console.print(table)
    console.print("loaded: " + ", ".join(f"{n} {what}" for what, n in counts.items()))


def _cny(fen: int) -> str:
    return f"{Decimal(fen) / 100:,.2f}"
