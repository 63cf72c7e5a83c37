"""`partyctl`: the auditor's and the admins' command line, over the services' HTTP APIs.

    partyctl verify [--checkpoints FILE]             # every hash chain, with its witnesses
    partyctl checkpoints export --out FILE           # every checkpoint, for keeping offline
    partyctl ledger m-8aea84b3ed37 [--period 2010] [--as-of 2010-12-01] [--known-at …]
                                                     [--csv | --xlsx FILE]
    partyctl table nde-b1 --period 2010 [--as-of …] [--known-at …] [--csv]
    partyctl replay scoring --compare                # rebuild from the archive, compare with live
    partyctl whatif --period 2010 --regulation revised.yaml [--branch nde-b1 | --school nde]
    partyctl whatif --period 2010 --regulation-id nde-2010 --version 2 [--branch | --school]
    partyctl regulations [--known-at …]              # every regulation and version
    partyctl regulation publish hist-2012.yaml [--published-on 2012-08-25]
    partyctl regulation adopt hist hist-2012 --from 2012-09-01 [--decided-on …] [--reason …]
    partyctl regulation of hist-b1 [--as-of 2012-10-01] [--known-at …]
    partyctl elections nde-b1                        # each round: tally, elected, tied, empty
    partyctl guides nde-b1 [--as-of 2010-10-01]      # the branch's guides (党员引路人)
    partyctl export archives [--unit nde] [--as-of 2010-12-31] --out archives.xlsx

The token comes from `--token`, `--token-file` or `PARTY_TOKEN` (an auditor's or a university
admin's; publishing and adopting a regulation take a university or a school admin's). Service
addresses default to one machine: `PARTY_ROSTER_URL` … `PARTY_NOTIFY_URL` override them. Times
are shown in the university's time zone, Asia/Shanghai unless `PARTY_TIMEZONE` says otherwise.

Exit codes: 0 all is well, 1 a check failed (a broken chain, a replay that differs, a ledger that
does not add up), 2 with a sentence when it cannot do the job.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runtime.settings import DEFAULT_PORTS
from runtime.spreadsheets import safe_rows, set_cell
from runtime.witness import FILE_FORMAT, load_checkpoint_file
from services.scoring.regulation_file import (
    RegulationFileError,
    load_regulation,
    read_regulation_file,
)

SERVICES = ("roster", "activities", "scoring", "notify")
DEFAULT_TIMEZONE = "Asia/Shanghai"
GRADES_ZH = {"excellent": "优秀", "qualified": "合格", "basic": "基本合格", "unqualified": "不合格"}
SOURCES = {
    "own": "its own adoption",
    "school": "its school's adoption",
    "university": "the university's default",
}

#: Where everything but errors goes; tests may replace it.
console = Console(width=None if sys.stdout.isatty() else 160)


class Failure(Exception):
    """Something the auditor must be told in words; the exit code is 2."""


def service_url(name: str) -> str:
    return os.environ.get(f"PARTY_{name.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[name]}")


def university_zone() -> ZoneInfo:
    name = os.environ.get("PARTY_TIMEZONE") or DEFAULT_TIMEZONE
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Failure(
            f"PARTY_TIMEZONE={name!r} is not a time zone (such as Asia/Shanghai)"
        ) from None


class Api:
    def __init__(
        self, token: str, timeout: float = 120.0, client: httpx.Client | None = None
    ) -> None:
        self._owned = client is None
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"}

    def close(self) -> None:
        if self._owned:
            self._client.close()

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = service_url(service) + path
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = self._client.request(method, url, headers=headers, **kwargs)
        except httpx.ConnectError:
            raise Failure(
                f"{service} is not answering at {service_url(service)}: is the stack up? (make up)"
            ) from None
        except httpx.TimeoutException:
            raise Failure(f"{service} did not answer in time ({url})") from None
        except (httpx.TransportError, httpx.InvalidURL) as error:
            raise Failure(f"cannot reach {service} at {service_url(service)}: {error}") from None
        if response.status_code == 401:
            raise Failure(f"{service} refused the token: {_detail(response)}")
        if response.status_code == 403:
            raise Failure(f"the token lacks the role for this: {_detail(response)}")
        if response.status_code == 503:
            raise Failure(f"{service} is up but a dependency is down: {_detail(response)}")
        if response.status_code >= 400:
            raise Failure(f"{service} answered {response.status_code}: {_detail(response)}")
        return response

    def json(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(service, method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise Failure(
                f"{service} answered {method} {path} with something that is not JSON "
                f"(is {service_url(service)} really the {service} service?)"
            ) from None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if not isinstance(body, dict):
        return response.text[:200]
    errors = body.get("errors") or []
    extra = "; ".join(f"{e.get('field')}: {e.get('reason')}" for e in errors)
    rule = f"refused by the rule {body['rule']}" if body.get("rule") else ""
    return " — ".join(p for p in (body.get("detail") or body.get("title"), rule, extra) if p)


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _cell(value: Any) -> str:
    """A value as a table cell: data is shown as it is, never read as rich markup."""
    return escape(_text(value))


def _print_table(table: Table, rows: Iterable[Iterable[Any]]) -> None:
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console.print(table)


# -- verify -------------------------------------------------------------------------------------


def verify(api: Api, args: argparse.Namespace) -> int:
    """Every service's chain and signatures, compared with what the other services witnessed
    of it and, with `--checkpoints`, with an exported file."""
    exported: dict[str, list[dict[str, Any]]] = {}
    if getattr(args, "checkpoints", None):
        try:
            entries = load_checkpoint_file(Path(args.checkpoints))
        except ValueError as error:
            raise Failure(str(error)) from None
        for entry in entries:
            exported.setdefault(entry.checkpoint.service, []).append(entry.to_json())
    table = Table(title="Hash chains and their witnesses")
    for column in ("service", "events checked", "head", "result", "witnesses"):
        table.add_column(column)
    if exported:
        table.add_column("exported file")
    broken = 0
    sentences: list[str] = []
    for service in SERVICES:
        report = api.json(service, "GET", "/v1/audit/verify")
        if report["intact"]:
            result = "[green]intact[/green]"
        else:
            broken += 1
            result = f"[red]broken at position {report['first_broken_position']}[/red]"
            sentences.append(f"{service}: {report['reason']}")
        witnessed = report.get("witnesses") or {}
        cells = [_witness_cell(witnessed, sentences, service, "witnesses")]
        if exported:
            found = _check_file(api, service, exported.get(service, []), Path(args.checkpoints))
            if not found["agrees"] and report["intact"]:
                broken += 1  # (a broken log is counted once)
            cells.append(_witness_cell(found, sentences, service, "the exported file"))
        table.add_row(
            service, str(report["events_checked"]), str(report["head_position"]), result, *cells
        )
    console.print(table)
    for sentence in dict.fromkeys(sentences):
        console.print(escape(sentence), soft_wrap=True, highlight=False)
    return 1 if broken else 0


#: Checkpoints sent in one request (the service refuses more).
CHECKPOINTS_PER_REQUEST = 1000


def _check_file(
    api: Api, service: str, entries: list[dict[str, Any]], path: Path
) -> dict[str, Any]:
    """The service's log compared with the file's checkpoints of it, a request per chunk."""
    combined: dict[str, Any] = {
        "witnesses": [],
        "unreachable": [],
        "checkpoints_checked": 0,
        "agreed_through": 0,
        "agrees": True,
        "first_disagreement": None,
    }
    for start in range(0, len(entries), CHECKPOINTS_PER_REQUEST):
        chunk = entries[start : start + CHECKPOINTS_PER_REQUEST]
        found = api.json(
            service,
            "POST",
            "/v1/audit/verify/checkpoints",
            json={"source": f"the exported file {path.name}", "checkpoints": chunk},
        )
        combined["witnesses"] = sorted({*combined["witnesses"], *found["witnesses"]})
        combined["checkpoints_checked"] += found["checkpoints_checked"]
        combined["agreed_through"] = max(combined["agreed_through"], found["agreed_through"])
        if not found["agrees"]:
            combined["agrees"] = False
            now, before = found["first_disagreement"], combined["first_disagreement"]
            if before is None or (now["position"] or 0) < (before["position"] or 0):
                combined["first_disagreement"] = now
    return combined


def _witness_cell(found: dict[str, Any], sentences: list[str], service: str, what: str) -> str:
    if not found:
        return ""
    silent = found.get("unreachable") or []
    unanswered = f"; [yellow]not answering: {escape(', '.join(silent))}[/yellow]" if silent else ""
    if found["agrees"]:
        checked = found["checkpoints_checked"]
        if not checked:
            return f"no checkpoint yet{unanswered}"
        return (
            f"[green]agree[/green]: {checked} checkpoints of {len(found['witnesses'])} "
            f"({escape(', '.join(found['witnesses']))}), through size {found['agreed_through']}"
            f"{unanswered}"
        )
    disagreement = found["first_disagreement"]
    sentences.append(f"{service} against {what}: {disagreement['reason']}")
    where = (
        f"at position {disagreement['position']}"
        if disagreement["position"] is not None
        else "(a checkpoint that is not the service's)"
    )
    return f"[red]disagree {where}[/red] ({escape(disagreement['kind'])}){unanswered}"


def checkpoints_export(api: Api, args: argparse.Namespace) -> int:
    """Every service's checkpoint of its log as it is now, and every checkpoint each one
    witnessed of the others, in one file an auditor keeps where no service can reach."""
    entries: list[dict[str, Any]] = []
    latest: dict[str, int] = {}
    witnessed: Counter[str] = Counter()
    for service in SERVICES:
        answer = api.json(service, "GET", "/v1/audit/checkpoint", params={"fresh": "true"})
        checkpoint = answer["checkpoint"]
        latest[service] = checkpoint["tree_size"]
        entries.append(
            {
                "witness": service,
                "recorded_at": checkpoint["at"],
                "position": None,
                "consistent_with_size": None,
                "checkpoint": checkpoint,
            }
        )
    for witness in SERVICES:
        after = 0
        while True:
            page = api.json(
                witness, "GET", "/v1/audit/witnessed", params={"after": after, "limit": 10000}
            )
            entries += page["checkpoints"]
            witnessed.update(item["checkpoint"]["service"] for item in page["checkpoints"])
            if page.get("next_after") is None:
                break
            after = int(page["next_after"])
    document = {
        "format": FILE_FORMAT,
        "exported_at": datetime.now(university_zone()).isoformat(timespec="seconds"),
        "checkpoints": entries,
    }
    try:
        Path(args.out).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    except OSError as error:
        raise Failure(f"cannot write {args.out}: {error}") from None
    table = Table(title=escape(f"Checkpoints exported to {args.out}"))
    for column in ("service", "its log now", "checkpoints of it witnessed by the others"):
        table.add_column(column)
    _print_table(table, ([s, f"size {latest[s]}", witnessed[s]] for s in SERVICES))
    console.print(
        "keep the file where no service can write; "
        f"partyctl verify --checkpoints {escape(args.out)} compares every log with it"
    )
    return 0


# -- ledger -------------------------------------------------------------------------------------

LEDGER_COLUMNS = (
    "period",
    "kind",
    "occurred",
    "recorded",
    "cause",
    "actor",
    "rule",
    "regulation",
    "points",
    "counted",
    "capped",
    "running total",
)
#: The columns holding an instant, and those holding points (numbers in a workbook).
TIME_COLUMNS = ("occurred", "recorded")
POINT_COLUMNS = ("points", "counted", "running total")


@dataclass(frozen=True)
class LedgerLine:
    """One line of a member's ledger as partyctl shows it: points exactly as scoring sent them
    (strings at the regulation's precision), instants as instants."""

    period: str
    kind: str
    occurred: datetime | None
    recorded: datetime | None
    cause: str
    actor: str
    rule: str
    regulation: str
    points: str
    counted: str
    capped: bool
    running_total: str


def _instant(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise Failure(f"scoring sent {value!r} where an instant belongs") from None


def _regulation(regulation_id: Any, version: Any) -> str:
    if not regulation_id:
        return ""
    return f"{regulation_id} v{version}" if version is not None else str(regulation_id)


def ledger_lines(periods: list[dict[str, Any]]) -> list[LedgerLine]:
    """Every ledger line of every period, then the period's TOTAL line. Adjustments are ledger
    lines of their own (kind "adjustment"), and a total set by the ceiling, the floor or a veto
    ends with a closing line (no cause), so the last running total is the period's total."""
    lines = []
    for period in periods:
        period_id = _text(period.get("period_id"))
        governing = _regulation(period.get("regulation_id"), period.get("regulation_version"))
        for entry in period.get("ledger") or []:
            kind = entry.get("kind") or ("rule" if entry.get("cause_type") else "")
            if kind == "adjustment":
                reason = _text(entry.get("reason"))
                asked = entry.get("requested_by")
                rule = f"adjustment {_text(entry.get('adjustment_id'))}".strip()
                if reason or asked:
                    rule += (
                        " ("
                        + "; ".join(p for p in (reason, f"asked by {asked}" if asked else "") if p)
                        + ")"
                    )
                actor = _text(entry.get("approved_by") or entry.get("actor_id"))
                regulation = ""
            elif kind == "rule":
                rule = _text(entry.get("rule_id"))
                actor = _text(entry.get("actor_id"))
                regulation = (
                    _regulation(entry.get("regulation_id"), entry.get("regulation_version"))
                    or governing
                )
            else:  # the closing line of a clamped or vetoed total
                rule = _text(entry.get("rule_id") or kind)
                if entry.get("vetoed_by"):
                    rule += ": vetoed by " + ", ".join(entry["vetoed_by"])
                actor = ""
                regulation = governing
            lines.append(
                LedgerLine(
                    period=period_id,
                    kind=kind,
                    occurred=_instant(entry.get("cause_occurred_at")),
                    recorded=_instant(entry.get("cause_recorded_at")),
                    cause=_text(entry.get("cause_type")),
                    actor=actor,
                    rule=rule,
                    regulation=regulation,
                    points=_text(entry.get("points")),
                    counted=_text(entry.get("counted")),
                    capped=bool(entry.get("capped")),
                    running_total=_text(entry.get("running_total")),
                )
            )
        summary = f"base {period['base']}" if period.get("base") is not None else ""
        if period.get("vetoed_by"):
            summary = "; ".join(
                p for p in (summary, "vetoed: " + ", ".join(period["vetoed_by"])) if p
            )
        lines.append(
            LedgerLine(
                period=period_id,
                kind="total",
                occurred=None,
                recorded=None,
                cause="TOTAL",
                actor="",
                rule=summary,
                regulation=governing,
                points="",
                counted="",
                capped=False,
                running_total=_text(period.get("total")),
            )
        )
    return lines


def _shown_time(moment: datetime | None, zone: ZoneInfo, compact: bool) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(zone) if moment.tzinfo is not None else moment
    return local.strftime("%Y-%m-%d %H:%M") if compact else local.isoformat()


def ledger_rows(
    periods: list[dict[str, Any]], zone: ZoneInfo | None = None, *, compact: bool = False
) -> list[list[str]]:
    """The ledger as text rows under LEDGER_COLUMNS (a table or CSV): points as scoring sent
    them, instants in the university's time zone (ISO 8601 with the offset, or `compact`ly
    to the minute)."""
    zone = zone or university_zone()
    return [
        [
            line.period,
            line.kind,
            _shown_time(line.occurred, zone, compact),
            _shown_time(line.recorded, zone, compact),
            line.cause,
            line.actor,
            line.rule,
            line.regulation,
            line.points,
            line.counted,
            "yes" if line.capped else "",
            line.running_total,
        ]
        for line in ledger_lines(periods)
    ]


def ledger_discrepancies(periods: list[dict[str, Any]]) -> list[str]:
    """Periods whose last running total is not their total (scoring promises it is)."""
    wrong = []
    for period in periods:
        entries = period.get("ledger") or []
        expected = entries[-1].get("running_total") if entries else period.get("base")
        if expected is None or period.get("total") is None:
            continue
        try:
            differs = Decimal(str(expected)) != Decimal(str(period["total"]))
        except InvalidOperation:
            differs = True
        if differs:
            where = "the last running total" if entries else "the base (no ledger lines)"
            wrong.append(
                f"period {period.get('period_id')}: {where} is {expected}, "
                f"the total {period['total']}"
            )
    return wrong


def _scale(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def number_format(text: str) -> str:
    """Excel's number format for points kept at the scale of `text` ("94.0" → "0.0")."""
    scale = _scale(text)
    return "0." + "0" * scale if scale else "0"


def _write_ledger_xlsx(path: str, member: str, lines: list[LedgerLine], zone: ZoneInfo) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = f"ledger {member}"[:31]
    header = [f"{c} ({zone.key})" if c in TIME_COLUMNS else c for c in LEDGER_COLUMNS]
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for line in lines:
        values: dict[str, Any] = {
            "period": line.period,
            "kind": line.kind,
            "occurred": line.occurred,
            "recorded": line.recorded,
            "cause": line.cause,
            "actor": line.actor,
            "rule": line.rule,
            "regulation": line.regulation,
            "points": line.points,
            "counted": line.counted,
            "capped": "yes" if line.capped else "",
            "running total": line.running_total,
        }
        row = sheet.max_row + 1
        for number, name in enumerate(LEDGER_COLUMNS, start=1):
            value = values[name]
            cell = sheet.cell(row=row, column=number)
            if name in TIME_COLUMNS:
                if value is not None:
                    # Excel has no time zones: the wall-clock time in the university's zone.
                    local = value.astimezone(zone) if value.tzinfo is not None else value
                    cell.value = local.replace(tzinfo=None)
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
            elif name in POINT_COLUMNS:
                if value != "":
                    try:
                        cell.value = float(Decimal(value))
                    except InvalidOperation:
                        raise Failure(f"scoring sent {value!r} where points belong") from None
                    cell.number_format = number_format(value)
            else:
                set_cell(cell, value)  # text, never a formula: titles and ids come from others
    for letter, width in zip(
        "ABCDEFGHIJKL", (12, 11, 20, 20, 24, 14, 30, 16, 9, 9, 7, 13), strict=True
    ):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A2"
    book.save(path)


def ledger(api: Api, args: argparse.Namespace) -> int:
    zone = university_zone()
    params = _params(period_id=args.period, as_of=args.as_of, known_at=args.known_at)
    periods = api.json("scoring", "GET", f"/v1/members/{args.member}/score", params=params)
    if args.period and not periods:
        raise Failure(f"member {args.member} has no score in period {args.period}")
    wrong = ledger_discrepancies(periods)
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(LEDGER_COLUMNS)
        writer.writerows(safe_rows(ledger_rows(periods, zone)))
    elif args.xlsx:
        lines = ledger_lines(periods)
        try:
            _write_ledger_xlsx(args.xlsx, args.member, lines, zone)
        except OSError as error:
            raise Failure(f"cannot write {args.xlsx}: {error}") from None
        console.print(
            f"ledger of {escape(args.member)} written to {escape(args.xlsx)} "
            f"({len(lines)} rows, times in {zone.key})"
        )
    else:
        rows = ledger_rows(periods, zone, compact=True)
        shown_periods = sorted({row[0] for row in rows})
        one_period = len(shown_periods) == 1
        title = f"Ledger of {args.member}" + "".join(
            f", {label} {value}"
            for label, value in (
                ("period", shown_periods[0] if one_period else None),
                ("as of", args.as_of),
                ("known at", args.known_at),
            )
            if value
        )
        table = Table(title=escape(title), caption=f"times in {zone.key}")
        columns = LEDGER_COLUMNS[1:] if one_period else LEDGER_COLUMNS
        for column in columns:
            table.add_column(
                column,
                justify="right" if column in POINT_COLUMNS else "left",
                no_wrap=column not in ("rule", "actor"),
                overflow="fold",
            )
        _print_table(table, (row[1:] if one_period else row for row in rows))
    for sentence in wrong:
        _error(f"the ledger does not add up: {sentence}")
    return 1 if wrong else 0


# -- a branch's table ---------------------------------------------------------------------------


def _member_names(api: Api, branch: str) -> dict[str, str]:
    names: dict[str, str] = {}
    after: str | None = None
    while True:
        page = api.json(
            "roster",
            "GET",
            f"/v1/branches/{branch}/members",
            params=_params(after=after, limit=500),
        )
        for member in page:
            names[member["member_id"]] = member.get("name") or ""
        if len(page) < 500:
            return names
        after = page[-1]["member_id"]


def _grade_shown(row: dict[str, Any]) -> str:
    grade = row.get("grade")
    if grade:
        return f"{GRADES_ZH[grade]} {grade}" if grade in GRADES_ZH else str(grade)
    return "预备党员 (probationary, not graded)" if row.get("probationary") else "not graded"


TABLE_COLUMNS = (
    "rank",
    "member",
    "name",
    "total",
    "grade",
    "classification",
    "probationary",
    "regulation",
)


def table(api: Api, args: argparse.Namespace) -> int:
    params = _params(as_of=args.as_of, known_at=args.known_at)
    data = api.json(
        "scoring", "GET", f"/v1/branches/{args.branch}/periods/{args.period}", params=params
    )
    names = _member_names(api, args.branch)
    regulation = _regulation(data.get("regulation_id"), data.get("regulation_version"))
    rows = [
        [
            _text(row.get("rank")),
            row["member_id"],
            names.get(row["member_id"], ""),
            _text(row.get("total")),
            row.get("grade") or "",
            _text(row.get("classification")),
            "yes" if row.get("probationary") else "",
            regulation,
        ]
        for row in data["members"]
    ]
    if args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(TABLE_COLUMNS)
        writer.writerows(safe_rows(rows))
        return 0
    unit = api.json("roster", "GET", f"/v1/units/{args.branch}")
    closed = data.get("closed")
    source = data.get("regulation_source")
    title = (
        f"{unit.get('name') or args.branch} ({args.branch}): ranking {args.period} "
        f"({data.get('starts_on')} – {data.get('ends_on')}), regulation {regulation} "
        f"《{data.get('regulation_title') or ''}》"
        + (f" ({SOURCES.get(source, source)})" if source else "")
        + f", as of {args.as_of or 'today'}"
        + (f", known at {args.known_at}" if args.known_at else "")
        + (
            f", closed {_text(closed.get('closed_at'))[:10]} (revision {closed.get('revision')})"
            if closed
            else ", open"
        )
    )
    console.print(escape(title), soft_wrap=True)
    shown = Table()
    for column, justify in (
        ("rank", "right"),
        ("member", "left"),
        ("name", "left"),
        ("total", "right"),
        ("grade", "left"),
        ("classification", "left"),
    ):
        shown.add_column(column, justify=justify)  # type: ignore[arg-type]
    _print_table(
        shown,
        (
            [
                _text(row.get("rank")),
                row["member_id"],
                names.get(row["member_id"], ""),
                _text(row.get("total")),
                _grade_shown(row),
                _text(row.get("classification")),
            ]
            for row in data["members"]
        ),
    )
    tally = Counter(
        row.get("grade") or ("probationary" if row.get("probationary") else "ungraded")
        for row in data["members"]
    )
    console.print("  " + ", ".join(f"{grade}: {n}" for grade, n in sorted(tally.items())))
    after = data.get("after_close") or []
    if after:
        console.print(
            f"  {len(after)} event(s) recorded after the close: "
            + escape(", ".join(f"{e['type']} ({', '.join(e['members'])})" for e in after[:10]))
            + (" …" if len(after) > 10 else "")
        )
    return 0


# -- replay and what-if -------------------------------------------------------------------------


def replay(api: Api, args: argparse.Namespace) -> int:
    if args.service != "scoring":
        raise Failure("only scoring has projections to replay from an archive")
    report = api.json("scoring", "POST", "/v1/replay")
    console.print(f"replayed {report['inputs']:,} inputs into {report['rows']:,} member-periods")
    if args.compare:
        console.print(f"live checksum   {report['live_checksum']}")
        console.print(f"replay checksum {report['replay_checksum']}")
    if report["equal"]:
        console.print("[green]replay equals live[/green]")
        return 0
    console.print(
        f"[red]replay differs from live[/red]: {escape(_text(report['first_difference']))}"
    )
    return 1


def _check_whatif(args: argparse.Namespace) -> None:
    published = args.regulation_id is not None or args.version is not None
    if args.regulation and published:
        raise Failure(
            "give either --regulation FILE (a draft) or --regulation-id ID --version N "
            "(a published version), not both"
        )
    if not args.regulation and not published:
        raise Failure(
            "name the regulation to compare with: --regulation FILE (a draft) or "
            "--regulation-id ID --version N (a published version)"
        )
    if args.regulation_id is not None and args.version is None:
        raise Failure(f"--regulation-id {args.regulation_id} needs --version N: which version?")
    if args.branch and args.school:
        raise Failure(
            "give --branch or --school, not both (neither: every branch of the university)"
        )


def whatif(api: Api, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"period_id": args.period}
    if args.regulation:
        try:
            draft = load_regulation(read_regulation_file(Path(args.regulation)))
        except (OSError, RegulationFileError) as error:
            raise Failure(f"cannot read {args.regulation}: {error}") from None
        body["draft"] = _jsonable(draft)
    else:
        body["regulation_version"] = args.version
        if args.regulation_id:
            body["regulation_id"] = args.regulation_id
    if args.branch:
        body["branch_id"] = args.branch
    if args.school:
        body["school_id"] = args.school
    diff = api.json("scoring", "POST", "/v1/what-if", json=body)
    scope = (
        f"branch {args.branch}"
        if args.branch
        else f"school {args.school}"
        if args.school
        else "the university"
    )
    alternative = diff["alternative"]
    table = Table(
        title=escape(
            f"What if period {args.period} of {scope} were scored under "
            f"{alternative['id']} v{alternative['version']}"
        )
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
    _print_table(
        table,
        (
            [
                m["member_id"],
                m["branch_id"],
                m["old_total"],
                m["new_total"],
                m["delta"],
                m["old_rank"],
                m["new_rank"],
                m["old_grade"],
                m["new_grade"],
                ", ".join(f"{r} {v['old']}→{v['new']}" for r, v in m["rules"].items()),
            ]
            for m in diff["members"]
        ),
    )
    live = diff.get("live_regulations") or {}
    if live:
        console.print(
            "live: "
            + escape(
                ", ".join(
                    f"{branch} under {_regulation(v.get('id'), v.get('version'))}"
                    for branch, v in sorted(live.items())
                )
            ),
            soft_wrap=True,
        )
    console.print(f"{diff['grades_changed']} member(s) would change grade")
    return 0


# -- regulations --------------------------------------------------------------------------------


def regulations(api: Api, args: argparse.Namespace) -> int:
    versions = api.json(
        "scoring",
        "GET",
        "/v1/regulations",
        params=_params(known_at=args.known_at, regulation_id=args.id),
    )
    if not versions:
        console.print(f"no regulation {args.id} is published" if args.id else "none published")
        return 0
    table = Table(title="Regulations" + (f" known at {args.known_at}" if args.known_at else ""))
    for column in (
        "id",
        "version",
        "title",
        "effective from",
        "periods",
        "precision",
        "owner",
        "default",
        "recorded",
    ):
        table.add_column(column)
    zone = university_zone()
    _print_table(
        table,
        (
            [
                v["id"],
                v["version"],
                v.get("title"),
                v.get("effective_from"),
                ", ".join(p["id"] for p in v.get("periods") or []),
                v.get("precision"),
                v.get("owner_unit_id") or "university",
                "yes" if v.get("default") else "",
                _shown_time(_instant(v.get("recorded_at")), zone, compact=True),
            ]
            for v in sorted(versions, key=lambda v: (v["id"], v["version"]))
        ),
    )
    return 0


def regulation_publish(api: Api, args: argparse.Namespace) -> int:
    try:
        text = read_regulation_file(Path(args.file))
        raw = text.encode("utf-8")
        document = load_regulation(text)
    except OSError as error:
        raise Failure(f"cannot read {args.file}: {error}") from None
    except RegulationFileError as error:
        raise Failure(f"{args.file} is not a regulation: {error}") from None
    result = api.json(
        "scoring",
        "POST",
        "/v1/regulations",
        content=raw,
        headers={"Content-Type": "application/yaml"},
        params=_params(published_on=args.published_on),
    )
    what = f"{document.get('id')} v{document.get('version')}"
    title = document.get("title")
    if isinstance(title, dict):
        title = " / ".join(str(t) for t in (title.get("zh"), title.get("en")) if t)
    when = args.published_on or "today"
    if result.get("replayed"):
        console.print(f"{escape(what)} was already published with this request: nothing changed")
    else:
        console.print(
            f"published {escape(what)} ({escape(_text(title))}) on {when}, "
            f"effective from {document.get('effective_from')}"
        )
    return 0


def regulation_adopt(api: Api, args: argparse.Namespace) -> int:
    body = _params(
        regulation_id=args.regulation_id,
        effective_from=args.effective_from,
        decided_on=args.decided_on,
        reason=args.reason,
    )
    api.json("scoring", "POST", f"/v1/units/{args.unit}/regulation", json=body)
    console.print(
        escape(
            f"{args.unit} follows {args.regulation_id} from {args.effective_from}"
            + (f" (decided on {args.decided_on})" if args.decided_on else "")
        )
    )
    return 0


def regulation_of(api: Api, args: argparse.Namespace) -> int:
    data = api.json(
        "scoring",
        "GET",
        f"/v1/units/{args.unit}/regulation",
        params=_params(as_of=args.as_of, known_at=args.known_at),
    )
    day = _text(data.get("as_of"))[:10]
    source = _text(data.get("source"))
    adoptions = data.get("adoptions") or []
    if source == "own":
        candidates = [a for a in adoptions if a["unit_id"] == args.unit]
    elif source == "school":
        candidates = [a for a in adoptions if a["unit_id"] != args.unit]
    else:
        candidates = []
    in_effect = [a for a in candidates if _text(a.get("from")) <= day]
    why = SOURCES.get(source, source)
    if in_effect:
        chosen = max(in_effect, key=lambda a: _text(a.get("from")))
        why += f": {chosen['unit_id']} adopted {chosen['regulation_id']} from {chosen['from']}"
    version = data.get("regulation_version")
    shown = (
        _regulation(data["regulation_id"], version)
        if version is not None
        else f"{data['regulation_id']} (no version in force that day)"
    )
    console.print(
        escape(f"{args.unit} follows {shown} on {day}; source: {source} ({why})"), soft_wrap=True
    )
    if adoptions:
        table = Table(title="Adoptions")
        for column in ("unit", "regulation", "from"):
            table.add_column(column)
        _print_table(table, ([a["unit_id"], a["regulation_id"], a["from"]] for a in adoptions))
    return 0


# -- roster: elections and guides ---------------------------------------------------------------


def elections(api: Api, args: argparse.Namespace) -> int:
    held = api.json("roster", "GET", f"/v1/branches/{args.branch}/elections")
    if not held:
        console.print(f"no election of branch {escape(args.branch)} is recorded")
        return 0
    table = Table(title=escape(f"Elections of {args.branch}"))
    for column in (
        "election",
        "held on",
        "round",
        "seats",
        "entitled / present",
        "ballots",
        "tally",
        "elected",
        "tied",
        "empty seats",
        "committee",
    ):
        table.add_column(column)
    rows = []
    for e in held:
        present = f"{e.get('entitled')} / {e.get('present_entitled')}"
        if e.get("present_not_entitled"):
            present += f" (+{len(e['present_not_entitled'])} without a vote)"
        tally = sorted((e.get("tally") or {}).items(), key=lambda item: (-item[1], item[0]))
        tied = ", ".join(e.get("tied") or [])
        if tied and e.get("seats_for_next_round"):
            tied += f" (for {e['seats_for_next_round']} seat(s): a further round)"
        committee = e.get("committee")
        rows.append(
            [
                e["election_id"],
                e.get("held_on"),
                f"{e.get('round')}" + (f" (of {e['round_of']})" if e.get("round_of") else ""),
                e.get("seats"),
                present,
                e.get("ballots_cast"),
                ", ".join(f"{c} {n}" for c, n in tally),
                ", ".join(e.get("elected") or []),
                tied,
                e.get("empty_seats"),
                f"secretary {committee.get('secretary_id')}: "
                f"{', '.join(committee.get('member_ids') or [])} "
                f"({committee.get('term_starts_on')} – {committee.get('term_ends_on')})"
                if committee
                else "",
            ]
        )
    _print_table(table, rows)
    return 0


def guides(api: Api, args: argparse.Namespace) -> int:
    appointments = api.json(
        "roster", "GET", f"/v1/branches/{args.branch}/guides", params=_params(as_of=args.as_of)
    )
    if not appointments:
        console.print(
            f"branch {escape(args.branch)} has no guide"
            + (f" in force on {args.as_of}" if args.as_of else "")
        )
        return 0
    table = Table(
        title=escape(
            f"Guides (党员引路人) of {args.branch}" + (f" on {args.as_of}" if args.as_of else "")
        )
    )
    for column in (
        "guide",
        "name",
        "kind",
        "organisation",
        "appointment",
        "guides",
        "term",
        "ended",
    ):
        table.add_column(column)
    _print_table(
        table,
        (
            [
                a["guide_id"],
                a.get("name"),
                a.get("kind"),
                a.get("organisation"),
                a.get("appointment_id"),
                f"group {a['group_id']}"
                if a.get("group_id")
                else ", ".join(a.get("member_ids") or []),
                f"{a.get('term_starts_on')} – {a.get('term_ends_on')}",
                f"{a['ended_on']}: {a.get('end_reason') or ''}".rstrip(": ")
                if a.get("ended_on")
                else "",
            ]
            for a in appointments
        ),
    )
    return 0


# -- export -------------------------------------------------------------------------------------


def export(api: Api, args: argparse.Namespace) -> int:
    if args.what != "archives":
        raise Failure("partyctl export knows: archives")
    params = {"format": "xlsx", **_params(unit_id=args.unit, as_of=args.as_of)}
    response = api.call("roster", "GET", "/v1/archives", params=params)
    try:
        Path(args.out).write_bytes(response.content)
    except OSError as error:
        raise Failure(f"cannot write {args.out}: {error}") from None
    console.print(f"classified archives written to {escape(args.out)}")
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
        try:
            return Path(args.token_file).read_text().strip()
        except OSError as error:
            raise Failure(f"cannot read the token file {args.token_file}: {error}") from None
    if os.environ.get("PARTY_TOKEN"):
        return os.environ["PARTY_TOKEN"]
    raise Failure(
        "no token: pass --token or --token-file, or set PARTY_TOKEN "
        "(for development: party token --role auditor)"
    )


def _day(text: str) -> str:
    """An argument that must be a calendar date (YYYY-MM-DD)."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: write it as YYYY-MM-DD, such as 2010-09-01"
        ) from None


def _error(sentence: str) -> None:
    Console(stderr=True, width=200).print(
        f"[red]partyctl:[/red] {escape(sentence)}", soft_wrap=True, highlight=False
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="partyctl", description=__doc__.split("\n\n")[0])
    parser.add_argument("--token")
    parser.add_argument("--token-file")
    commands = parser.add_subparsers(dest="command", required=True)
    ver = commands.add_parser(
        "verify", help="verify every service's hash chain, signatures and witnessed checkpoints"
    )
    ver.add_argument(
        "--checkpoints", metavar="FILE", help="also compare every log with an exported file"
    )
    cps = commands.add_parser("checkpoints", help="the services' signed checkpoints")
    cps_actions = cps.add_subparsers(dest="action", required=True)
    cpx = cps_actions.add_parser("export", help="every checkpoint, as one file to keep offline")
    cpx.add_argument("--out", default="checkpoints.json")
    led = commands.add_parser("ledger", help="a member's score ledger, line by line")
    led.add_argument("member")
    led.add_argument("--period")
    led.add_argument("--as-of", help="business time: a date or an instant with its offset")
    led.add_argument("--known-at", help="record time: an instant with its offset (Z, +08:00)")
    out = led.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true")
    out.add_argument("--xlsx", metavar="FILE")
    tab = commands.add_parser("table", help="a branch's ranking with grades and its regulation")
    tab.add_argument("branch")
    tab.add_argument("--period", required=True)
    tab.add_argument("--as-of", help="business time: a date or an instant with its offset")
    tab.add_argument("--known-at", help="record time: an instant with its offset (Z, +08:00)")
    tab.add_argument("--csv", action="store_true")
    rep = commands.add_parser("replay", help="rebuild scoring from its archive")
    rep.add_argument("service", choices=["scoring"])
    rep.add_argument("--compare", action="store_true")
    wif = commands.add_parser("whatif", help="a period under another regulation")
    wif.add_argument("--period", required=True)
    wif.add_argument("--regulation", metavar="FILE", help="a draft regulation file (YAML)")
    wif.add_argument("--regulation-id", metavar="ID", help="a published regulation …")
    wif.add_argument(
        "--version", type=int, metavar="N", help="… in this version (alone: of the one followed)"
    )
    wif.add_argument("--branch")
    wif.add_argument("--school")
    regs = commands.add_parser("regulations", help="every regulation and version")
    regs.add_argument("--id", help="one regulation")
    regs.add_argument("--known-at", help="as recorded by this instant (Z or +08:00)")
    reg = commands.add_parser("regulation", help="publish, adopt, or ask which one a unit follows")
    actions = reg.add_subparsers(dest="action", required=True)
    pub = actions.add_parser("publish", help="publish a regulation version from its YAML file")
    pub.add_argument("file")
    pub.add_argument("--published-on", type=_day, help="the day it was published (default today)")
    ado = actions.add_parser("adopt", help="a school or a branch adopts a regulation from a date")
    ado.add_argument("unit")
    ado.add_argument("regulation_id")
    ado.add_argument("--from", dest="effective_from", type=_day, required=True)
    ado.add_argument("--decided-on", type=_day)
    ado.add_argument("--reason")
    rof = actions.add_parser("of", help="which regulation a school or branch follows, and why")
    rof.add_argument("unit")
    rof.add_argument("--as-of", help="a date or an instant with its offset (default today)")
    rof.add_argument("--known-at", help="as recorded by this instant (Z or +08:00)")
    ele = commands.add_parser("elections", help="a branch's elections, round by round")
    ele.add_argument("branch")
    gui = commands.add_parser("guides", help="a branch's guides (党员引路人)")
    gui.add_argument("branch")
    gui.add_argument("--as-of", type=_day, help="only the appointments in force that day")
    exp = commands.add_parser("export", help="export the classified archives")
    exp.add_argument("what", choices=["archives"])
    exp.add_argument("--unit", help="a branch or school (default: the university)")
    exp.add_argument("--as-of")
    exp.add_argument("--out", default="archives.xlsx")
    return parser


HANDLERS = {
    "verify": verify,
    "ledger": ledger,
    "table": table,
    "replay": replay,
    "whatif": whatif,
    "regulations": regulations,
    "regulation publish": regulation_publish,
    "regulation adopt": regulation_adopt,
    "regulation of": regulation_of,
    "elections": elections,
    "guides": guides,
    "export": export,
    "checkpoints export": checkpoints_export,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    name = args.command + (
        f" {args.action}" if args.command in ("regulation", "checkpoints") else ""
    )
    try:
        if args.command == "whatif":
            _check_whatif(args)
        api = Api(_token(args))
        try:
            return HANDLERS[name](api, args)
        finally:
            api.close()
    except Failure as failure:
        _error(str(failure))
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
