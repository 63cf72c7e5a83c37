"""`partyctl` against the real roster, activities and scoring services (PostgreSQL, Redis),
each served over HTTP by uvicorn on a free loopback port in the test process, the way the
auditor's command line meets them on a campus.

The world, entered through the HTTP APIs (and partly through partyctl itself): the School of
Physics (物理学院) writes its own regulation `phys-2012` (one decimal; base 80, floor 0, ceiling
85; +2 for an all-member meeting attended, −3 for an absence; a serious warning or worse is a
veto; excellent ≥ 84 for at most half of the graded, qualified ≥ 80, basic ≥ 60) and adopts it
from 1 September 2012; its branch phys-b1 elects its committee in two rounds, meets three times,
asks for and approves (four eyes) a dated adjustment, and has a guide. The revision v2 (ceiling
90, an absence −5) takes effect only in 2013, so it changes nothing live.

         M1 12 Sep   M2 26 Sep   M3 10 Oct   other                         total
    a    P           P           P           80 + 6 = 86 → ceiling        85.0
    b    P           A           P           80 + 1 = 81, +1.5 on 20 Oct  82.5
    c    P           P           A                                        81.0
    d    A           A           P                                        76.0
    e    P           P           P           86 → ceiling                 85.0
    f    P           —           —           serious warning 1 Nov: veto   0.0

Under v2: a, e 86.0; b 80.5; c 79.0 (qualified → basic, the one grade that changes); d 72.0.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import pytest_asyncio
import redis.asyncio as redis
import uvicorn
from fastapi import FastAPI
from openpyxl import load_workbook
from rich.console import Console

from services import auditor
from services.activities.service import DEFINITION as ACTIVITIES
from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.roster import RosterClient
from tests.support.stack import services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(300)
#: The tests that read the world run on the loop that serves it.
on_the_world = pytest.mark.asyncio(loop_scope="module")

PERIOD = "2012-autumn"

PHYS_V1 = """\
id: phys-2012
version: 1
title:
  zh: 物理学院学生党员量化考核办法
  en: "School of Physics: quantified assessment"
effective_from: 2012-09-01
periods:
  - {id: 2012-autumn, starts_on: 2012-09-01, ends_on: 2013-01-31}
base: "80"
floor: "0"
ceiling: "85"
precision: 1
rules:
  - id: meeting
    title: 出席全体党员大会
    on: attendance.recorded
    when: {activity_kind: all_member_meeting, status: present}
    points: "2"
  - id: absent
    title: 无故缺席
    on: attendance.recorded
    when: {status: absent}
    points: "-3"
vetoes:
  - id: discipline
    title: 严重警告以上处分
    on: member.disciplined
    when: {measure: [serious_warning, probation_within_party, expulsion]}
grades:
  - {grade: excellent, min: "84", max_share: "1/2"}
  - {grade: qualified, min: "80"}
  - {grade: basic, min: "60"}
  - {grade: unqualified}
classification: {excellent: excellent, basic: lagging, unqualified: lagging}
"""

PHYS_V2 = (
    PHYS_V1.replace("version: 1", "version: 2")
    .replace("effective_from: 2012-09-01", "effective_from: 2013-02-01")
    .replace('ceiling: "85"', 'ceiling: "90"')
    .replace('points: "-3"', 'points: "-5"')
)

#: member, total, rank, grade — worked out by hand above
TABLE = {
    "a": ("85.0", "1", "excellent"),
    "e": ("85.0", "1", "excellent"),
    "b": ("82.5", "3", "qualified"),
    "c": ("81.0", "4", "qualified"),
    "d": ("76.0", "5", "basic"),
    "f": ("0.0", "6", "unqualified"),
}


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the test process's signals stay pytest's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app (its lifespan already running) over HTTP on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the port is ours from here: no race for a free one
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: _started(server, task), within=20, what=f"uvicorn on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)
        sock.close()


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # it failed to start: say why
        raise AssertionError("uvicorn stopped before it started")
    return server.started


@dataclass
class World:
    apis: dict[str, Api]
    urls: dict[str, str]
    files: Path
    before_adjustment: datetime | None = None

    def token(self, role: str, **scope: Any) -> str:
        return self.apis["roster"].tokens.issue(scope.pop("subject", role), role, **scope)

    @property
    def auditor(self) -> str:
        return self.token("auditor")

    @property
    def school_admin(self) -> str:
        return self.token("school_admin", schools=["phys"], subject="phys-office")

    def header(self, role: str, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **scope)}"}

    async def post(
        self, service: str, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = await self.apis[service].client.post(
            path, json=body, headers=headers or self.header("university_admin", subject="office")
        )
        assert response.status_code < 400, f"{path}: {response.status_code} {response.text}"
        return response.json()  # type: ignore[no-any-return]

    async def get(self, service: str, path: str, **params: Any) -> Any:
        response = await self.apis[service].client.get(
            path, params=params, headers=self.header("auditor")
        )
        assert response.status_code == 200, f"{path}: {response.text}"
        return response.json()

    async def applied_by_scoring(self) -> None:
        scoring = self.apis["scoring"].context

        async def caught_up() -> bool:
            heads = 0
            for name in ("roster", "activities"):
                heads += (await self.apis[name].context.store.head())[0]
            applied = await scoring.pool.fetchval(f'SELECT count(*) FROM "{scoring.schema}".inbox')
            return int(applied) >= heads

        await wait_until(caught_up, within=60, what="scoring to apply the roster and activities")


async def _cli(world: World, token: str, *argv: str) -> int:
    """partyctl in a thread (it blocks on HTTP) while this loop serves the services."""
    with pytest.MonkeyPatch.context() as env:
        for name, url in world.urls.items():
            env.setenv(f"PARTY_{name.upper()}_URL", url)
        return await asyncio.to_thread(auditor.main, ["--token", token, *argv])


async def enter_the_term(w: World) -> None:
    r = RosterClient(w.apis["roster"])
    await r.post(
        "/v1/units",
        {"unit_id": "phys", "kind": "school", "name": "物理学院", "established_on": "2012-08-01"},
    )
    await r.post(
        "/v1/units",
        {
            "unit_id": "phys-b1",
            "kind": "branch",
            "name": "物理学院学生第一党支部",
            "parent_id": "phys",
            "branch_kind": "student",
            "established_on": "2012-08-01",
        },
    )
    await r.post(
        "/v1/units",
        {
            "unit_id": "phys-b1-g1",
            "kind": "group",
            "name": "第一党小组",
            "parent_id": "phys-b1",
            "established_on": "2012-08-01",
        },
    )
    for n, member in enumerate("abcdef"):
        await r.enrol(
            member,
            "phys-b1",
            number=f"2012300{n}",
            name=f"物理{member}",
            enrolled_on="2012-09-01",
            expected_graduation="2015-07-01",
        )
    everyone = list("abcdef")
    # The committee in two rounds: c and d tie for the third seat, c wins the second round.
    await r.post(
        "/v1/branches/phys-b1/elections",
        {
            "election_id": "el-2012",
            "held_on": "2012-09-05",
            "seats": 3,
            "candidates": ["a", "b", "c", "d"],
            "present": everyone,
            "ballots_cast": 6,
            "tally": {"a": 5, "b": 5, "c": 4, "d": 4},
        },
    )
    await r.post(
        "/v1/branches/phys-b1/elections",
        {
            "election_id": "el-2012-2",
            "round_of": "el-2012",
            "held_on": "2012-09-08",
            "candidates": ["c", "d"],
            "present": everyone,
            "ballots_cast": 6,
            "tally": {"c": 4, "d": 2},
            "secretary_id": "a",
        },
    )
    await r.post(
        "/v1/guides",
        {
            "guide_id": "g-li",
            "name": "李教授",
            "kind": "faculty",
            "organisation": "物理学院",
            "phone": "0533-2781234",
            "registered_on": "2012-09-01",
        },
    )
    for appointment in (
        {
            "appointment_id": "ga-group",
            "group_id": "phys-b1-g1",
            "term_starts_on": "2012-09-10",
            "term_ends_on": "2013-07-31",
        },
        {
            "appointment_id": "ga-d",
            "member_ids": ["d"],
            "term_starts_on": "2012-10-01",
            "term_ends_on": "2012-12-31",
        },
    ):
        await r.post("/v1/guides/g-li/appointments", {"branch_id": "phys-b1", **appointment})
    await r.post(
        "/v1/guides/g-li/appointments/ga-group/end", {"ended_on": "2013-01-15", "reason": "调任"}
    )
    await r.post(
        "/v1/members/f/discipline",
        {"measure": "serious_warning", "decided_on": "2012-11-01", "reason": "考试作弊"},
    )
    await w.applied_by_scoring()  # scoring knows the school, the branch and the committee

    # The school's regulation, published and adopted through partyctl with a school admin's token.
    v1 = w.files / "phys-2012.yaml"
    v1.write_text(PHYS_V1, encoding="utf-8")
    publish = ["regulation", "publish", str(v1), "--published-on", "2012-08-25"]
    assert await _cli(w, w.school_admin, *publish) == 0
    adopt = ["regulation", "adopt", "phys", "phys-2012", "--from", "2012-09-01"]
    assert await _cli(w, w.school_admin, *adopt, "--decided-on", "2012-08-30") == 0

    meetings = {"M1": "2012-09-12", "M2": "2012-09-26", "M3": "2012-10-10"}
    for activity_id, day in meetings.items():
        await w.post(
            "activities",
            "/v1/activities",
            {
                "activity_id": activity_id,
                "kind": "all_member_meeting",
                "title": f"全体党员大会 {activity_id}",
                "branch_id": "phys-b1",
                "starts_at": f"{day}T19:00:00+08:00",
                "place": "物理楼 101",
            },
        )
    sheets = {
        "M1": {"a": "present", "b": "present", "c": "present", "d": "absent", "e": "present"}
        | {"f": "present"},
        "M2": {"a": "present", "b": "absent", "c": "present", "d": "absent", "e": "present"},
        "M3": {"a": "present", "b": "present", "c": "absent", "d": "present", "e": "present"},
    }
    for activity_id, lines in sheets.items():
        await w.post(
            "activities",
            f"/v1/activities/{activity_id}/attendance",
            {"lines": [{"member_id": m, "status": s} for m, s in lines.items()]},
        )
    await w.applied_by_scoring()
    w.before_adjustment = datetime.now(UTC)
    await asyncio.sleep(0.01)
    # Four eyes: the secretary a asks, the committee member c approves.
    await w.post(
        "scoring",
        "/v1/branches/phys-b1/adjustments",
        {
            "adjustment_id": "adj-b",
            "member_id": "b",
            "points": "1.5",
            "reason": "抗洪表彰",
            "effective_on": "2012-10-20",
        },
        w.header("branch_secretary", branches=["phys-b1"], member_id="a", subject="a"),
    )
    await w.post(
        "scoring",
        "/v1/branches/phys-b1/adjustments/adj-b/approval",
        {},
        w.header("committee_member", branches=["phys-b1"], member_id="c", subject="c"),
    )
    v2 = w.files / "phys-2012-v2.yaml"
    v2.write_text(PHYS_V2, encoding="utf-8")
    publish = ["regulation", "publish", str(v2), "--published-on", "2013-01-20"]
    assert await _cli(w, w.school_admin, *publish) == 0


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
            made = World(apis, urls, tmp_path_factory.mktemp("partyctl"))
            await enter_the_term(made)
            yield made
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """partyctl's tables to the captured stdout, wide enough that no cell wraps."""
    monkeypatch.setattr(auditor, "console", Console(width=400, force_terminal=False))
    monkeypatch.delenv("PARTY_TIMEZONE", raising=False)


async def run(
    world: World, capsys: pytest.CaptureFixture[str], *argv: str, token: str | None = None
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await _cli(world, token or world.auditor, *argv)
    out, err = capsys.readouterr()
    return code, out, err


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- the ledger ---------------------------------------------------------------------------------


@on_the_world
async def test_the_ledger_csv_ends_at_the_total_with_the_adjustment_as_a_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    [score] = await world.get("scoring", "/v1/members/b/score", period_id=PERIOD)
    assert score["total"] == "82.5"
    code, out, err = await run(world, capsys, "ledger", "b", "--period", PERIOD, "--csv")
    assert code == 0, err
    lines = rows_of(out)
    body, total = lines[:-1], lines[-1]
    assert total["cause"] == "TOTAL"
    assert total["running total"] == score["total"] == body[-1]["running total"]
    assert Decimal(score["base"]) + sum(Decimal(line["counted"]) for line in body) == Decimal(
        score["total"]
    )
    # the adjustment is one ledger line, in business-time order, and nothing after it
    assert [(line["kind"], line["rule"].split(" ")[0]) for line in body] == [
        ("rule", "meeting"),
        ("rule", "absent"),
        ("rule", "meeting"),
        ("adjustment", "adjustment"),
    ]
    adjustment = body[-1]
    assert adjustment["cause"] == "score.adjusted"
    assert adjustment["actor"] == "c"  # who approved it
    assert "adj-b" in adjustment["rule"]
    assert "asked by a" in adjustment["rule"]
    assert adjustment["occurred"] == "2012-10-20T00:00:00+08:00"
    assert [line["points"] for line in body] == ["2.0", "-3.0", "2.0", "1.5"]  # as they came
    assert [line["running total"] for line in body] == ["82.0", "79.0", "81.0", "82.5"]
    assert {line["regulation"] for line in body[:3]} == {"phys-2012 v1"}
    assert body[0]["occurred"] == "2012-09-12T19:00:00+08:00"
    assert total["rule"] == "base 80.0"


@on_the_world
async def test_closing_lines_of_the_ceiling_and_of_a_veto(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(world, capsys, "ledger", "a", "--period", PERIOD, "--csv")
    assert code == 0, err
    *body, total = rows_of(out)
    closing = body[-1]
    assert (closing["kind"], closing["rule"], closing["occurred"], closing["cause"]) == (
        "ceiling",
        "ceiling",
        "",
        "",
    )
    assert (closing["counted"], closing["running total"]) == ("-1.0", "85.0")
    assert closing["regulation"] == "phys-2012 v1"
    assert total["running total"] == "85.0"

    code, out, err = await run(world, capsys, "ledger", "f", "--period", PERIOD, "--csv")
    assert code == 0, err
    *body, total = rows_of(out)
    assert [(line["kind"], line["points"], line["running total"]) for line in body] == [
        ("rule", "2.0", "82.0"),
        ("veto", "-82.0", "0.0"),
    ]
    assert body[-1]["rule"] == "veto: vetoed by discipline"
    assert "vetoed: discipline" in total["rule"]
    assert total["running total"] == "0.0"

    # the table form says the same, in the university's time, to the minute
    code, out, err = await run(world, capsys, "ledger", "b", "--period", PERIOD)
    assert code == 0, err
    assert "2012-09-12 19:00" in out
    assert "phys-2012 v1" in out
    assert "TOTAL" in out
    assert "82.5" in out


@on_the_world
async def test_the_ledger_workbook_has_numbers_and_real_times(
    world: World, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "ledger-b.xlsx"
    code, out, err = await run(
        world, capsys, "ledger", "b", "--period", PERIOD, "--xlsx", str(path)
    )
    assert code == 0, err
    assert "written to" in out
    sheet = load_workbook(path).active
    assert sheet is not None
    rows = list(sheet.iter_rows())
    header = [cell.value for cell in rows[0]]
    assert header[:4] == ["period", "kind", "occurred (Asia/Shanghai)", "recorded (Asia/Shanghai)"]
    column = {name: n for n, name in enumerate(header)}
    data = rows[1:]
    assert [row[column["kind"]].value for row in data] == [
        "rule",
        "rule",
        "rule",
        "adjustment",
        "total",
    ]
    for row in data[:-1]:
        for name in ("points", "counted", "running total"):
            cell = row[column[name]]
            assert isinstance(cell.value, int | float), (name, cell.value)
            assert cell.number_format == "0.0"
        occurred = row[column["occurred (Asia/Shanghai)"]]
        recorded = row[column["recorded (Asia/Shanghai)"]]
        assert isinstance(occurred.value, datetime)
        assert isinstance(recorded.value, datetime)
        assert occurred.is_date
        assert recorded.is_date
    first, adjustment, total = data[0], data[3], data[4]
    assert first[column["occurred (Asia/Shanghai)"]].value == datetime(2012, 9, 12, 19, 0)
    assert adjustment[column["occurred (Asia/Shanghai)"]].value == datetime(2012, 10, 20, 0, 0)
    assert adjustment[column["points"]].value == 1.5
    assert [row[column["running total"]].value for row in data] == [82.0, 79.0, 81.0, 82.5, 82.5]
    assert total[column["running total"]].number_format == "0.0"
    assert total[column["points"]].value is None
    assert total[column["occurred (Asia/Shanghai)"]].value is None
    # recorded today, in the university's wall-clock time
    typed_in = first[column["recorded (Asia/Shanghai)"]].value
    assert isinstance(typed_in, datetime)
    assert abs(typed_in - datetime.now(auditor.university_zone()).replace(tzinfo=None)).days < 1


@on_the_world
async def test_party_timezone_overrides_the_zone_of_the_times(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARTY_TIMEZONE", "UTC")
    code, out, err = await run(world, capsys, "ledger", "b", "--period", PERIOD, "--csv")
    assert code == 0, err
    assert rows_of(out)[0]["occurred"] == "2012-09-12T11:00:00+00:00"
    monkeypatch.setenv("PARTY_TIMEZONE", "Mars/Olympus")
    code, out, err = await run(world, capsys, "ledger", "b", "--period", PERIOD, "--csv")
    assert code == 2
    assert "PARTY_TIMEZONE='Mars/Olympus' is not a time zone" in err


# -- the branch's table and its regulation ------------------------------------------------------


@on_the_world
async def test_the_table_names_its_regulation_and_when(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(world, capsys, "table", "phys-b1", "--period", PERIOD, "--csv")
    assert code == 0, err
    rows = rows_of(out)
    assert {r["member"]: (r["total"], r["rank"], r["grade"]) for r in rows} == TABLE
    assert {r["regulation"] for r in rows} == {"phys-2012 v1"}
    assert {r["member"]: r["name"] for r in rows}["a"] == "物理a"

    code, out, err = await run(
        world, capsys, "table", "phys-b1", "--period", PERIOD, "--as-of", "2012-12-31"
    )
    assert code == 0, err
    title = out.splitlines()[0]
    assert "物理学院学生第一党支部 (phys-b1): ranking 2012-autumn" in title
    assert "regulation phys-2012 v1" in title
    assert "物理学院学生党员量化考核办法" in title
    assert "its school's adoption" in title
    assert "as of 2012-12-31" in title
    assert "优秀 excellent" in out

    # What the screen showed before the adjustment was asked for: b at 81.0 (a '+' offset too).
    assert world.before_adjustment is not None
    before = world.before_adjustment.astimezone(auditor.university_zone()).isoformat()
    assert "+08:00" in before
    code, out, err = await run(
        world, capsys, "table", "phys-b1", "--period", PERIOD, "--known-at", before, "--csv"
    )
    assert code == 0, err
    assert {r["member"]: r["total"] for r in rows_of(out)}["b"] == "81.0"
    code, out, err = await run(
        world, capsys, "table", "phys-b1", "--period", PERIOD, "--known-at", before
    )
    assert code == 0, err
    assert f"known at {before}" in out.splitlines()[0]

    # A period nobody defines: exit 2 with what scoring said.
    code, out, err = await run(world, capsys, "table", "phys-b1", "--period", "1999")
    assert code == 2
    assert "period 1999 is not known" in err


@on_the_world
async def test_regulations_and_which_one_a_unit_follows(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(world, capsys, "regulations")
    assert code == 0, err
    listed = [line for line in out.splitlines() if "phys-2012" in line or "nde-2010" in line]
    assert any("nde-2010" in line and "university" in line and "yes" in line for line in listed)
    phys = [line.split("│")[1:9] for line in listed if "phys-2012" in line]
    assert [[cell.strip() for cell in row] for row in phys] == [
        [
            "phys-2012",
            "1",
            "物理学院学生党员量化考核办法 / School of Physics: quantified assessment",
            "2012-09-01",
            PERIOD,
            "1",
            "phys",
            "",
        ],
        [
            "phys-2012",
            "2",
            "物理学院学生党员量化考核办法 / School of Physics: quantified assessment",
            "2013-02-01",
            PERIOD,
            "1",
            "phys",
            "",
        ],
    ]

    code, out, err = await run(
        world, capsys, "regulation", "of", "phys-b1", "--as-of", "2012-10-01"
    )
    assert code == 0, err
    assert (
        "phys-b1 follows phys-2012 v1 on 2012-10-01; source: school "
        "(its school's adoption: phys adopted phys-2012 from 2012-09-01)" in out
    )
    code, out, err = await run(world, capsys, "regulation", "of", "phys", "--as-of", "2013-03-01")
    assert code == 0, err
    assert "phys follows phys-2012 v2 on 2013-03-01; source: own" in out
    code, out, err = await run(
        world, capsys, "regulation", "of", "phys-b1", "--as-of", "2012-08-01"
    )
    assert code == 0, err
    assert "source: university (the university's default)" in out
    assert "follows nde-2010 v1" in out

    # Publishing takes an admin's token, and the same version twice is refused by name.
    v1 = world.files / "phys-2012.yaml"
    code, out, err = await run(world, capsys, "regulation", "publish", str(v1))
    assert code == 2
    assert "the token lacks the role" in err
    code, out, err = await run(
        world, capsys, "regulation", "publish", str(v1), token=world.school_admin
    )
    assert code == 2
    assert "scoring answered 409" in err
    broken = world.files / "broken.yaml"
    broken.write_text("id: [unclosed\n", encoding="utf-8")
    code, out, err = await run(
        world, capsys, "regulation", "publish", str(broken), token=world.school_admin
    )
    assert code == 2
    assert f"{broken} is not a regulation: not valid YAML" in err


# -- what-if ------------------------------------------------------------------------------------


@on_the_world
async def test_whatif_under_a_published_version_and_under_a_draft(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    published = ["--regulation-id", "phys-2012", "--version", "2"]
    for scope in (["--branch", "phys-b1"], ["--school", "phys"]):
        code, out, err = await run(world, capsys, "whatif", "--period", PERIOD, *published, *scope)
        assert code == 0, err
        assert "were scored under phys-2012 v2" in out
        [c] = [line for line in out.splitlines() if line.startswith("│ c ")]
        cells = [cell.strip() for cell in c.split("│")[1:-1]]
        assert cells[:9] == ["c", "phys-b1", "81.0", "79.0", "-2.0", "4", "4", "qualified", "basic"]
        assert "absent -3.0→-5.0" in cells[9]
        assert "live: phys-b1 under phys-2012 v1" in out
        assert "1 member(s) would change grade" in out

    code, out, err = await run(
        world,
        capsys,
        "whatif",
        "--period",
        PERIOD,
        "--regulation",
        str(world.files / "phys-2012-v2.yaml"),
        "--branch",
        "phys-b1",
    )
    assert code == 0, err
    assert "1 member(s) would change grade" in out


@pytest.mark.parametrize(
    ("argv", "sentence"),
    [
        (
            ["--regulation", "draft.yaml", "--regulation-id", "phys-2012", "--version", "2"],
            "give either --regulation FILE (a draft) or --regulation-id ID --version N",
        ),
        ([], "name the regulation to compare with"),
        (["--regulation-id", "phys-2012"], "--regulation-id phys-2012 needs --version N"),
        (
            ["--version", "2", "--branch", "phys-b1", "--school", "phys"],
            "give --branch or --school, not both",
        ),
    ],
)
def test_whatif_with_a_bad_combination_of_options_says_so(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    sentence: str,
) -> None:
    monkeypatch.delenv("PARTY_TOKEN", raising=False)
    code = auditor.main(["whatif", "--period", PERIOD, *argv])  # before any token or service
    assert code == 2
    assert sentence in capsys.readouterr().err


def test_a_date_that_is_not_one_is_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        auditor.main(["regulation", "adopt", "phys", "phys-2012", "--from", "1 September"])
    assert exited.value.code == 2
    assert "'1 September' is not a date: write it as YYYY-MM-DD" in capsys.readouterr().err


# -- roster: elections and guides ---------------------------------------------------------------


@on_the_world
async def test_elections_round_by_round(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await run(world, capsys, "elections", "phys-b1")
    assert code == 0, err
    table = {
        cells[0]: cells
        for line in out.splitlines()
        if line.startswith("│ el-")
        for cells in [[cell.strip() for cell in line.split("│")[1:-1]]]
    }
    first, second = table["el-2012"], table["el-2012-2"]
    assert first[1:9] == [
        "2012-09-05",
        "1",
        "3",
        "6 / 6",
        "6",
        "a 5, b 5, c 4, d 4",
        "a, b",
        "c, d (for 1 seat(s): a further round)",
    ]
    assert (first[9], first[10]) == ("0", "")
    assert second[1:9] == ["2012-09-08", "2 (of el-2012)", "1", "6 / 6", "6", "c 4, d 2", "c", ""]
    assert second[10].startswith("secretary a: a, b, c (2012-09-08 – ")

    code, out, err = await run(world, capsys, "elections", "nowhere")
    assert code == 2
    assert "roster answered 404" in err


@on_the_world
async def test_guides_of_the_branch(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await run(world, capsys, "guides", "phys-b1")
    assert code == 0, err
    assert "0533-2781234" not in out  # a guide's phone is personal data: not on the screen
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in out.splitlines()
        if line.startswith("│ g-li")
    ]
    assert rows == [
        [
            "g-li",
            "李教授",
            "faculty",
            "物理学院",
            "ga-group",
            "group phys-b1-g1",
            "2012-09-10 – 2013-07-31",
            "2013-01-15: 调任",
        ],
        ["g-li", "李教授", "faculty", "物理学院", "ga-d", "d", "2012-10-01 – 2012-12-31", ""],
    ]
    code, out, err = await run(world, capsys, "guides", "phys-b1", "--as-of", "2013-02-01")
    assert code == 0, err
    assert "has no guide in force on 2013-02-01" in out
