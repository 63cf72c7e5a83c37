"""The four services as real processes (`party serve NAME`), for tests that kill them, and a
client that sends commands the way a careful caller does: same idempotency key until an answer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from runtime.auth import Role, TokenAuthority
from tests.support.apps import SECRET
from tests.support.keys import keys_dir
from tests.support.servers import free_port

PARTY = str(Path(sys.executable).parent / "party")
NAMES = ("roster", "activities", "scoring", "notify")


@dataclass
class ServiceProcesses:
    database_url: str
    redis_url: str
    prefix: str
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        for each in NAMES:  # every port is known before the first starts: peers read records
            self.ports.setdefault(each, free_port())
        port = self.ports[name]
        env = {
            **os.environ,
            "PARTY_DATABASE_URL": self.database_url,
            "PARTY_REDIS_URL": self.redis_url,
            "PARTY_STREAM_PREFIX": self.prefix,
            "PARTY_HTTP_PORT": str(port),
            "PARTY_AUTH_SECRET": SECRET,
            "PARTY_ENV": "development",  # a service may make the keys it needs, as in `make run`
            "PARTY_RELAY_POLL_SECONDS": "0.2",
            "PARTY_RECLAIM_IDLE_MS": "1000",
            "PARTY_LOG_FORMAT": "json",
            "PARTY_KEYS_DIR": str(keys_dir()),
            "PARTY_SERVICE_URLS": json.dumps({each: self.url(each) for each in NAMES}),
            **self.extra_env,
        }
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - kept by the process
        self.processes[name] = subprocess.Popen(
            [PARTY, "serve", name], env=env, stdout=log, stderr=subprocess.STDOUT
        )

    def start_all(self, names: Iterable[str] = NAMES) -> None:
        for name in names:
            self.start(name)
        try:
            for name in names:
                self.wait_ready(name)
        except BaseException:
            self.stop_all()  # none of them may outlive a failed start
            raise

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        process.send_signal(sig)
        process.wait(timeout=30)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def wait_ready(self, name: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log_tail(name)}")
            try:
                if httpx.get(f"{self.url(name)}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{name} not ready in {within} s:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        text = (self.log_dir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def bearer(role: Role, **scope: Any) -> dict[str, str]:
    token = TokenAuthority(secret=SECRET).issue(scope.pop("subject", role), role, **scope)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Outcome:
    key: str
    status: int
    body: Any
    retries: int
    saw_503: bool


class CarefulClient:
    """Sends a command until it gets an answer, with the same idempotency key each time: a
    connection refused (the service is down) or a 503 (its database is) means try again."""

    def __init__(self, urls: dict[str, str], within: float = 90.0) -> None:
        self.urls = urls
        self.within = within
        self.admin = bearer("university_admin", subject="fault-loader")
        self.http = httpx.AsyncClient(timeout=10)
        self.unexpected: list[tuple[str, int, str]] = []  # 5xx other than 503

    async def command(
        self, service: str, path: str, body: Any, key: str, as_: dict[str, str] | None = None
    ) -> Outcome:
        deadline = time.monotonic() + self.within
        retries, saw_503 = 0, False
        while True:
            try:
                response = await self.http.post(
                    self.urls[service] + path,
                    json=body,
                    headers={**(as_ or self.admin), "Idempotency-Key": key},
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 503:
                saw_503 = True
                assert response.headers.get("retry-after"), "a 503 must say when to retry"
            elif response is not None:
                if response.status_code >= 500:
                    self.unexpected.append((path, response.status_code, response.text))
                return Outcome(key, response.status_code, response.json(), retries, saw_503)
            retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} {path} got no answer in {self.within} s")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.http.aclose()
