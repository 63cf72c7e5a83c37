"""`partyctl`: the auditor's command line, over the services' HTTP APIs.

    partyctl verify                                  # every service's hash chain
    partyctl ledger m20081004 [--period 2010] [--as-of 2010-12-01] [--known-at …]
                                                     [--csv | --xlsx FILE]
    partyctl replay scoring --compare                # rebuild from the archive, compare with live
    partyctl whatif --period 2010 --regulation revised.yaml [--branch nde-b1]
    partyctl export archives [--unit nde] [--as-of 2010-12-31] --out archives.xlsx

The token comes from `--token`, `--token-file` or `PARTY_TOKEN` (an auditor's, or a university
admin's). Service addresses default to one machine: `PARTY_ROSTER_URL` … `PARTY_NOTIFY_URL`
override them.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from runtime.settings import DEFAULT_PORTS
from services.scoring.regulation_file import RegulationFileError, load_regulation

SERVICES = ("roster", "activities", "scoring", "notify")
console = Console(width=None if sys.stdout.isatty() else 160)


class Failure(Exception):
    """Something the auditor must be told in words; the exit code is 2."""


def service_url(name: str) -> str:
    return os.environ.get(f"PARTY_{name.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[name]}")


class Api:
    def __init__(self, token: str, timeout: float = 120.0) -> None:
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"})

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = service_url(service) + path
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.ConnectError:
            raise Failure(
                f"{service} is not answering at {service_url(service)}: is the stack up? (make up)"
            ) from None
        except httpx.TimeoutException:
            raise Failure(f"{service} did not answer in time ({url})") from None
        if response.status_code == 401:
            raise Failure(f"{service} refused the token: {_detail(response)}")
        if response.status_code == 403:
            raise Failure(f"the token lacks the role for this: {_detail(response)}")
        if response.status_code == 503:
            raise Failure(f"{service} is up but a dependency is down: {_detail(response)}")
        if response.status_code >= 400:
            raise Failure(f"{service} answered {response.status_code}: {_detail(response)}")
        return response


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    errors = body.get("errors") or []
    extra = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
    return " — ".join(p for p in (body.get("detail") or body.get("title"), extra) if p)


def verify(api: Api, _: argparse.Namespace) -> int:
    table = Table(title="Hash chains")
    for column in ("service", "events checked", "head", "result"):
        table.add_column(column)
    broken = 0
    for service in SERVICES:
        report = api.call(service, "GET", "/v1/audit/verify").json()
        if report["intact"]:
            result = "[green]intact[/green]"
        else:
            broken += 1
            result = (
                f"[red]broken at position {report['first_broken_position']}[/red]: "
                f"{report['reason']}"
            )
        table.add_row(service, str(report["events_checked"]), str(report["head_position"]), result)
    console.print(table)
    return 1 if broken else 0


LEDGER_COLUMNS = (
    "period",
    "occurred",
    "cause",
    "actor",
    "rule",
    "version",
    "points",
    "counted",
    "capped",
    "running total",
)


def ledger_rows(periods: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for period in periods:
        for line in period["ledger"]:
            rows.append(
                [
                    period["period_id"],
                    line["cause_occurred_at"][:16],
                    line["cause_type"],
                    line["actor_id"],
                    line["rule_id"],
                    str(line["regulation_version"]),
                    line["points"],
                    line["counted"],
                    "yes" if line["capped"] else "",
                    line["running_total"],
                ]
            )
        for adjustment in period["adjustments"]:
            rows.append(
                [
                    period["period_id"],
                    "",
                    "score.adjusted",
                    adjustment["approved_by"],
                    f"manual: {adjustment['reason']}",
                    "",
                    adjustment["points"],
                    adjustment["points"],
                    "",
                    "",
                ]
            )
        rows.append(
            [
                period["period_id"],
                "",
                "TOTAL",
                "",
                "vetoed: " + ", ".join(period["vetoed_by"]) if period["vetoed_by"] else "",
                "",
                "",
                "",
                "",
                period["total"],
            ]
        )
    return rows


def ledger(api: Api, args: argparse.Namespace) -> int:
    params = {
        k: v
        for k, v in (("period_id", args.period), ("as_of", args.as_of), ("known_at", args.known_at))
        if v
    }
    periods = api.call("scoring", "GET", f"/v1/members/{args.member}/score", params=params).json()
    rows = ledger_rows(periods)
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(LEDGER_COLUMNS)
        writer.writerows(rows)
        return 0
    if args.xlsx:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = f"ledger {args.member}"[:31]
        sheet.append(list(LEDGER_COLUMNS))
        for row in rows:
            sheet.append(row)
        book.save(args.xlsx)
        console.print(f"ledger of {args.member} written to {args.xlsx} ({len(rows)} rows)")
        return 0
    table = Table(title=f"Ledger of {args.member}")
    for column in LEDGER_COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0


def replay(api: Api, args: argparse.Namespace) -> int:
    if args.service != "scoring":
        raise Failure("only scoring has projections to replay from an archive")
    report = api.call("scoring", "POST", "/v1/replay").json()
    console.print(f"replayed {report['inputs']:,} inputs into {report['rows']:,} member-periods")
    if args.compare:
        console.print(f"live checksum   {report['live_checksum']}")
        console.print(f"replay checksum {report['replay_checksum']}")
    if report["equal"]:
        console.print("[green]replay equals live[/green]")
        return 0
    console.print(f"[red]replay differs from live[/red]: {report['first_difference']}")
    return 1


def whatif(api: Api, args: argparse.Namespace) -> int:
    try:
        draft = load_regulation(Path(args.regulation).read_text(encoding="utf-8"))
    except (OSError, RegulationFileError) as error:
        raise Failure(f"cannot read {args.regulation}: {error}") from None
    body: dict[str, Any] = {"period_id": args.period, "draft": _jsonable(draft)}
    if args.branch:
        body["branch_id"] = args.branch
    diff = api.call("scoring", "POST", "/v1/what-if", json=body).json()
    table = Table(
        title=f"What if period {args.period} were scored under "
        f"{diff['alternative']['id']} v{diff['alternative']['version']}"
    )
    for column in (
        "member",
        "branch",
        "old total",
        "new total",
        "delta",
        "old rank",
        "new rank",
        "old grade",
        "new grade",
        "rules that differ",
    ):
        table.add_column(column)
    for m in diff["members"]:
        rules = ", ".join(f"{r} {v['old']}→{v['new']}" for r, v in m["rules"].items())
        table.add_row(
            m["member_id"],
            m["branch_id"],
            str(m["old_total"]),
            str(m["new_total"]),
            str(m["delta"]),
            str(m["old_rank"]),
            str(m["new_rank"]),
            str(m["old_grade"]),
            str(m["new_grade"]),
            rules,
        )
    console.print(table)
    console.print(f"{diff['grades_changed']} member(s) would change grade")
    return 0


def export(api: Api, args: argparse.Namespace) -> int:
    if args.what != "archives":
        raise Failure("partyctl export knows: archives")
    params = {
        "format": "xlsx",
        **({"unit_id": args.unit} if args.unit else {}),
        **({"as_of": args.as_of} if args.as_of else {}),
    }
    response = api.call("roster", "GET", "/v1/archives", params=params)
    Path(args.out).write_bytes(response.content)
    console.print(f"classified archives written to {args.out}")
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if args.token_file:
        return Path(args.token_file).read_text().strip()
    if os.environ.get("PARTY_TOKEN"):
        return os.environ["PARTY_TOKEN"]
    raise Failure(
        "no token: pass --token or --token-file, or set PARTY_TOKEN "
        "(for development: party token --role auditor)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="partyctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--token")
    parser.add_argument("--token-file")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="verify every service's hash chain")
    led = commands.add_parser("ledger", help="a member's score ledger")
    led.add_argument("member")
    led.add_argument("--period")
    led.add_argument("--as-of")
    led.add_argument("--known-at")
    out = led.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true")
    out.add_argument("--xlsx", metavar="FILE")
    rep = commands.add_parser("replay", help="rebuild scoring from its archive")
    rep.add_argument("service", choices=["scoring"])
    rep.add_argument("--compare", action="store_true")
    wif = commands.add_parser("whatif", help="a period under another regulation")
    wif.add_argument("--period", required=True)
    wif.add_argument("--regulation", required=True, help="a regulation file (YAML)")
    wif.add_argument("--branch")
    exp = commands.add_parser("export", help="export the classified archives")
    exp.add_argument("what", choices=["archives"])
    exp.add_argument("--unit", help="a branch or school (default: the university)")
    exp.add_argument("--as-of")
    exp.add_argument("--out", default="archives.xlsx")
    args = parser.parse_args(argv)
    handlers = {
        "verify": verify,
        "ledger": ledger,
        "replay": replay,
        "whatif": whatif,
        "export": export,
    }
    try:
        return handlers[args.command](Api(_token(args)), args)
    except Failure as failure:
        Console(stderr=True).print(f"[red]partyctl:[/red] {failure}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
