"""A stack brought up by the README's `up` (least-privilege credentials, the plan's scenario),
shared by the system tests of this folder. It gets its own database, stream prefix, role names
and ports, so it never touches a developer's `make up` or another test run.

`test_up.py::test_down_stops_every_process_up_started` stops it: files run in name order, and
every other file here sorts before `test_up.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest

from runtime.auth import Role, TokenAuthority
from services.provision import unprovision
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.py"


SERVICES = ("roster", "activities", "scoring", "notify")
PARTYCTL = str(Path(sys.executable).parent / "partyctl")


@dataclass
class Stack:
    run_dir: Path
    database_url: str
    prefix: str
    users: str
    output: str
    returncode: int
    urls: dict[str, str]
    pids: dict[str, int]

    def env(self, token: str | None = None) -> dict[str, str]:
        env = {**os.environ, **{f"PARTY_{n.upper()}_URL": u for n, u in self.urls.items()}}
        if token:
            env["PARTY_TOKEN"] = token
        return env

    def stack(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(STACK), "--run-dir", str(self.run_dir), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


def free_port_base() -> int:
    """Four consecutive free ports."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base > 65000:
            continue
        if all(free(base + n) for n in range(4)):
            return base
    raise RuntimeError("no four free ports")


def free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


#: The token secret `up` generated for the session's stack (from its credentials file).
_STACK_SECRET: list[str] = []


def stack_secret() -> str:
    """The secret the stack's services verify tokens with (`up` makes a random one)."""
    assert _STACK_SECRET, "the stack fixture has not brought the stack up"
    return _STACK_SECRET[0]


def token(role: Role) -> str:
    return TokenAuthority(secret=stack_secret()).issue(f"test-{role}", role)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tag = uuid4().hex[:6]
    run_dir = tmp_path_factory.mktemp("run")
    database_url = f"postgresql://postgres@127.0.0.1:5432/up_{tag}"
    prefix, users = f"up{tag}", f"up{tag}"
    started = subprocess.run(
        [
            sys.executable,
            str(STACK),
            "--run-dir",
            str(run_dir),
            "up",
            "--database-url",
            database_url,
            "--redis-url",
            REDIS_URL,
            "--stream-prefix",
            prefix,
            "--user-prefix",
            users,
            "--port-base",
            str(free_port_base()),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "160"},
    )
    state = json.loads((run_dir / "stack.json").read_text())
    credentials = run_dir / "credentials.json"
    if credentials.exists():
        _STACK_SECRET[:] = [json.loads(credentials.read_text())["auth_secret"]]
    try:
        yield Stack(
            run_dir,
            database_url,
            prefix,
            users,
            started.stdout + started.stderr,
            started.returncode,
            state["urls"],
            state["pids"],
        )
    finally:
        for pid in state["pids"].values():  # whatever a failed test left running
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
        asyncio.run(unprovision(database_url, REDIS_URL, prefix, users, drop_database=True))
