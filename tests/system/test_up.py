"""The README's `up` on this machine: the whole stack under least-privilege credentials, the
plan's scenario loaded and reported, the auditor's CLI against it, and `down` ending every
process `up` started (the stack is the session's, from conftest.py)."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from tests.system.conftest import (
    PARTYCTL,
    SERVICES,
    STACK,
    Stack,
    alive,
    free_port_base,
    token,
)

pytestmark = pytest.mark.timeout(900)


def test_up_brings_the_stack_up_and_the_scenario_audit_check_passes(stack: Stack) -> None:
    assert stack.returncode == 0, stack.output[-4000:]
    out = stack.output
    assert "using it" in out  # PostgreSQL and Redis on localhost answered
    assert "a PostgreSQL role, a Redis ACL user and a signing key for each service" in out
    assert "国防教育学院学生第一党支部 (nde-b1): ranking 2010" in out
    assert "国防教育学院学生第二党支部 (nde-b2): ranking 2010" in out
    assert "pairing suggestions" in out
    assert "Deadlines ahead, as of 2011-04-30" in out
    assert "│ plan   │ total      │ 2,000.00 │" in out  # the plan's budget
    assert "audit check PASSED: chains intact, replay equals live" in out
    assert "60 members" in out


def test_the_services_run_under_their_own_roles(stack: Stack) -> None:
    credentials = json.loads((stack.run_dir / "credentials.json").read_text())
    assert oct((stack.run_dir / "credentials.json").stat().st_mode & 0o777) == "0o600"
    for name in SERVICES:
        assert credentials[name]["database_url"].startswith(f"postgresql://{stack.users}_{name}:")
        environ = Path(f"/proc/{stack.pids[name]}/environ").read_bytes().split(b"\0")
        assert f"PARTY_DATABASE_URL={credentials[name]['database_url']}".encode() in environ
        assert b"PARTY_MIGRATE_ON_START=false" in environ


def test_partyctl_verify_names_the_first_tampered_row(stack: Stack) -> None:
    env = stack.env(token("auditor"))
    clean = subprocess.run([PARTYCTL, "verify"], capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.count("intact") == 4

    async def sql(statement: str, *args: object) -> object:
        conn = await asyncpg.connect(stack.database_url)
        try:
            async with conn.transaction():
                # What someone holding the superuser password could do: bypass the trigger.
                await conn.execute("SET LOCAL session_replication_role = replica")
                return await conn.fetchval(statement, *args)
        finally:
            await conn.close()

    position = asyncio.run(
        sql("SELECT min(position) FROM roster.events WHERE type = 'member.enrolled'")
    )
    name = asyncio.run(sql("SELECT data->>'name' FROM roster.events WHERE position = $1", position))
    rename = (
        "UPDATE roster.events SET data = jsonb_set(data, '{name}', to_jsonb($1::text)) "
        "WHERE position = $2"
    )
    asyncio.run(sql(rename, "篡改者", position))
    try:
        tampered = subprocess.run([PARTYCTL, "verify"], capture_output=True, text=True, env=env)
    finally:
        asyncio.run(sql(rename, name, position))
    assert tampered.returncode == 1
    assert f"broken at position {position}" in tampered.stdout
    assert "the row was changed" in tampered.stdout
    restored = subprocess.run([PARTYCTL, "verify"], capture_output=True, text=True, env=env)
    assert restored.returncode == 0


def test_partyctl_ledger_totals_equal_the_scoring_api(stack: Stack) -> None:
    auditor = token("auditor")
    headers = {"Authorization": f"Bearer {auditor}"}
    table = httpx.get(
        f"{stack.urls['scoring']}/v1/branches/nde-b1/periods/2010", headers=headers
    ).json()
    picked = table["members"][::7]  # every rank band, the vetoed member included
    assert len(picked) >= 4
    for row in picked:
        out = subprocess.run(
            [PARTYCTL, "ledger", row["member_id"], "--period", "2010", "--csv"],
            capture_output=True,
            text=True,
            env=stack.env(auditor),
        )
        assert out.returncode == 0, out.stderr
        lines = list(csv.DictReader(io.StringIO(out.stdout)))
        total = next(line for line in lines if line["cause"] == "TOTAL")
        assert Decimal(total["running total"]) == Decimal(row["total"])
        counted = [Decimal(line["counted"]) for line in lines if line["cause"] != "TOTAL"]
        if "vetoed" not in total["rule"]:
            score = httpx.get(
                f"{stack.urls['scoring']}/v1/members/{row['member_id']}/score",
                params={"period_id": "2010"},
                headers=headers,
            ).json()[0]
            assert Decimal(score["base"]) + sum(counted) == Decimal(row["total"])


def test_partyctl_says_clearly_what_is_wrong(stack: Stack) -> None:
    member = subprocess.run(
        [PARTYCTL, "replay", "scoring"],
        capture_output=True,
        text=True,
        env=stack.env(token("member")),
    )
    assert member.returncode == 2
    assert "the token lacks the role" in member.stderr
    env = {**stack.env(token("auditor")), "PARTY_SCORING_URL": "http://127.0.0.1:9"}
    down = subprocess.run([PARTYCTL, "replay", "scoring"], capture_output=True, text=True, env=env)
    assert down.returncode == 2
    assert "scoring is not answering at http://127.0.0.1:9" in down.stderr
    replay = subprocess.run(
        [PARTYCTL, "replay", "scoring", "--compare"],
        capture_output=True,
        text=True,
        env=stack.env(token("auditor")),
    )
    assert replay.returncode == 0
    assert "replay equals live" in replay.stdout


def test_down_stops_every_process_up_started(stack: Stack) -> None:
    assert all(alive(pid) for pid in stack.pids.values())
    stopped = stack.stack("down")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in stack.pids.values())
    assert not (stack.run_dir / "stack.json").exists()
    for url in stack.urls.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2)
    assert stack.stack("status").returncode == 3


@pytest.fixture
def open_run_dir() -> Iterator[Path]:
    """A run folder the postgres user can reach (as root the private PostgreSQL runs as it)."""
    path = Path(tempfile.mkdtemp(prefix="party-up-"))
    path.chmod(0o755)
    try:
        yield path / "run"
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_up_starts_private_servers_when_none_answer_and_down_removes_them(
    open_run_dir: Path,
) -> None:
    run_dir = open_run_dir
    pg_port, redis_port, base = free_port_base(), free_port_base(), free_port_base()

    def stack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(STACK), "--run-dir", str(run_dir), *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    started = stack(
        "up",
        "--no-scenario",
        "--database-url",
        f"postgresql://postgres@127.0.0.1:{pg_port}/party",
        "--redis-url",
        f"redis://127.0.0.1:{redis_port}/0",
        "--port-base",
        str(base),
    )
    assert (run_dir / "stack.json").exists(), started.stdout + started.stderr
    state = json.loads((run_dir / "stack.json").read_text())
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"nothing answers on port {pg_port}: starting a private PostgreSQL" in started.stdout
        assert f"nothing answers on port {redis_port}: starting a private Redis" in started.stdout
        assert stack("status").returncode == 0
        assert (run_dir / "postgres" / "PG_VERSION").exists()
        # Credentials: in a file only its owner reads; a random token secret of ≥ 32 bytes.
        credentials = run_dir / "credentials.json"
        assert credentials.stat().st_mode & 0o777 == 0o600
        kept = json.loads(credentials.read_text())
        assert len(kept["auth_secret"].encode()) >= 32
        # The private PostgreSQL asks everyone for a password (scram-sha-256, not trust) …
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(asyncpg.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/postgres"))
        admin = kept["postgres_admin"]
        dsn = f"postgresql://postgres:{admin['password']}@127.0.0.1:{pg_port}/postgres"
        assert asyncio.run(_fetch(dsn, "SHOW password_encryption")) == "scram-sha-256"
        # … and the private Redis has no default user left to connect as.
        anonymous = redis.Redis(port=redis_port)
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        anonymous.close()
    finally:
        stopped = stack("down", "--purge")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(alive(pid) for pid in state["pids"].values())
    assert not alive(state["private"]["redis"]["pid"])
    for port in (pg_port, redis_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not (run_dir / "postgres").exists()


async def _fetch(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def test_without_server_binaries_up_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("stack", STACK)
    assert spec is not None
    assert spec.loader is not None
    stack = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "stack", stack)
    spec.loader.exec_module(stack)
    monkeypatch.setattr(stack.shutil, "which", lambda _: None)
    monkeypatch.setattr(stack, "DEBIAN_POSTGRES", Path("/nonexistent"))
    with pytest.raises(stack.StackError, match=r"install the package postgresql"):
        stack._postgres_bindir()
    state = stack.State("postgresql://x", "redis://x", "p", "u")
    with pytest.raises(stack.StackError, match=r"install the package redis-server"):
        stack._start_private_redis(state, Path("/nonexistent"), 1)
