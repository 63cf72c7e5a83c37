#!/usr/bin/env python3
"""The whole stack on one machine: `up`, `status`, `down`.

    python3 deploy/local/stack.py up        # or: make up
    python3 deploy/local/stack.py status
    python3 deploy/local/stack.py down      # or: make down  (--purge also drops the data)

`up` creates the virtual environment if needed, uses PostgreSQL and Redis on localhost when they
answer (otherwise starts private ones from the installed server binaries, data under `.run/`),
applies the migrations, gives each service its own PostgreSQL role and Redis ACL user, starts the
four services with those credentials, waits until each is ready, then loads the plan's scenario
and prints what a branch secretary would want to see. Everything it starts is written to
`.run/stack.json`, so `down` stops exactly that and nothing else.

Secrets go to `.run/credentials.json` (mode 0600), never to `stack.json`: the services' roles
and users, the token secret (random, `secrets.token_urlsafe(48)`, unless PARTY_AUTH_SECRET is
set), and for private servers the PostgreSQL superuser's password (the cluster is initialised
with scram-sha-256) and the Redis administrator's (the `default` user is off).

Only the standard library is imported at the top: this file must run before the virtual
environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
STAMP = VENV / ".installed"
SERVICES = ("roster", "activities", "scoring", "notify")
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")  # where Debian keeps pg_ctl off the PATH
#: Debian/Ubuntu packages that provide the server binaries.
PACKAGES = {"postgres": "postgresql (or postgresql-15)", "redis": "redis-server"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        _ensure_environment()
        return up(args)
    if args.command == "down" and args.purge:
        _ensure_environment(install=False)
    if args.command == "down":
        return down(args)
    return status(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stack", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir", type=Path, default=Path(os.environ.get("PARTY_RUN_DIR", ROOT / ".run"))
    )
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", help="bring up the stack and load the scenario")
    start.add_argument(
        "--database-url",
        default=os.environ.get("PARTY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/party"),
        help="as an administrator; the services get their own roles",
    )
    start.add_argument(
        "--redis-url", default=os.environ.get("PARTY_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    start.add_argument("--stream-prefix", default=os.environ.get("PARTY_STREAM_PREFIX", "party"))
    start.add_argument("--user-prefix", default="party", help="names of the roles and ACL users")
    start.add_argument("--port-base", type=int, default=8101, help="roster's port; then +1 each")
    start.add_argument("--no-scenario", action="store_true", help="start, but load nothing")
    start.add_argument("--ready-timeout", type=float, default=90.0)
    stop = commands.add_parser("down", help="stop everything `up` started")
    stop.add_argument(
        "--purge",
        action="store_true",
        help="also drop the database, the roles, the ACL users and the streams `up` created",
    )
    commands.add_parser("status", help="what is running")
    return parser


# -- the virtual environment ----------------------------------------------------------------------


def _ensure_environment(*, install: bool = True) -> None:
    """Install into .venv when needed, then continue inside it (re-executing this script)."""
    inputs = [ROOT / "pyproject.toml", ROOT / "constraints.txt"]
    fresh = STAMP.exists() and all(STAMP.stat().st_mtime >= p.stat().st_mtime for p in inputs)
    if install and not fresh:
        if not (VENV / "bin" / "python").exists():
            _say(f"creating the virtual environment {VENV}")
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        _say("installing the project and its pinned dependencies")
        subprocess.run(
            [
                str(VENV / "bin/python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-c",
                str(ROOT / "constraints.txt"),
                "-e",
                f"{ROOT}[dev]",
            ],
            check=True,
        )
        STAMP.touch()
    if Path(sys.prefix).resolve() != VENV.resolve() and (VENV / "bin/python").exists():
        os.execv(str(VENV / "bin/python"), [str(VENV / "bin/python"), __file__, *sys.argv[1:]])


# -- what `up` started ----------------------------------------------------------------------------


@dataclass
class State:
    database_url: str
    redis_url: str
    stream_prefix: str
    user_prefix: str
    urls: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    private: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_database: bool = False

    @classmethod
    def load(cls, run_dir: Path) -> State | None:
        path = run_dir / "stack.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "stack.json").write_text(json.dumps(asdict(self), indent=2))


def up(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.resolve()
    previous = State.load(run_dir)
    if previous and any(_alive(pid) for pid in previous.pids.values()):
        _say(f"already up ({run_dir / 'stack.json'}); `down` first")
        return 1
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    state = State(args.database_url, args.redis_url, args.stream_prefix, args.user_prefix)
    started = time.perf_counter()
    kept = _load_secrets(run_dir)
    secret = os.environ.get("PARTY_AUTH_SECRET") or kept.get("auth_secret")
    kept["auth_secret"] = secret or secrets.token_urlsafe(48)
    _save_secrets(run_dir, kept)
    try:
        _servers(state, run_dir, kept)
        state.save(run_dir)
        credentials = _provision(state, run_dir, kept)
        _start_services(state, credentials, args.port_base, logs, kept["auth_secret"])
        state.save(run_dir)
        _wait_ready(state, logs, args.ready_timeout)
    except (StackError, subprocess.CalledProcessError, OSError) as error:
        _say(f"up failed: {error}")
        state.save(run_dir)
        _stop(state)
        return 1
    _say(f"the four services are up in {time.perf_counter() - started:.1f} s; logs in {logs}")
    for name, url in state.urls.items():
        _say(f"  {name:<11} {url}  (pid {state.pids[name]})")
    if args.no_scenario:
        return 0
    from services.scenario.run import run_scenario

    return run_scenario(state.urls, secret=kept["auth_secret"])


class StackError(Exception):
    pass


# -- PostgreSQL and Redis -------------------------------------------------------------------------


def _load_secrets(run_dir: Path) -> dict[str, Any]:
    """What the credentials file of an earlier `up` holds (the private servers' passwords, the
    token secret), or nothing."""
    path = run_dir / "credentials.json"
    try:
        found = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        found = {}
    return found if isinstance(found, dict) else {}


def _save_secrets(run_dir: Path, values: dict[str, Any]) -> None:
    """Into the credentials file (mode 0600, replaced whole), keeping what else it holds."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "credentials.json"
    merged = {**_load_secrets(run_dir), **values}
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(merged, indent=2))
    os.replace(temporary, path)


def _with_login(url: str, user: str, password: str) -> str:
    from urllib.parse import quote, urlunsplit

    parts = urlsplit(url)
    netloc = f"{quote(user)}:{quote(password)}@{parts.hostname or '127.0.0.1'}"
    netloc += f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _admin_urls(state: State, kept: dict[str, Any]) -> tuple[str, str]:
    """The administrator's PostgreSQL and Redis URLs: as given, or with the private servers'
    passwords from the credentials file."""
    database_url, redis_url = state.database_url, state.redis_url
    postgres = kept.get("postgres_admin") if "postgres" in state.private else None
    if postgres:
        database_url = _with_login(database_url, postgres["user"], postgres["password"])
    redis_admin = kept.get("redis_admin") if "redis" in state.private else None
    if redis_admin:
        redis_url = _with_login(redis_url, redis_admin["user"], redis_admin["password"])
    return database_url, redis_url


def _servers(state: State, run_dir: Path, kept: dict[str, Any]) -> None:
    pg = urlsplit(state.database_url)
    pg_port = pg.port or 5432
    if _answers(pg.hostname or "127.0.0.1", pg_port):
        _say(f"PostgreSQL answers on port {pg_port}: using it")
    else:
        _start_private_postgres(state, run_dir, pg_port, kept)
    rd = urlsplit(state.redis_url)
    rd_port = rd.port or 6379
    if _answers(rd.hostname or "127.0.0.1", rd_port):
        _say(f"Redis answers on port {rd_port}: using it")
    else:
        _start_private_redis(state, run_dir, rd_port, kept)


def _start_private_postgres(
    state: State, run_dir: Path, port: int, kept: dict[str, Any] | None = None
) -> None:
    kept = {} if kept is None else kept
    bindir = _postgres_bindir()
    data = run_dir / "postgres"
    _say(f"nothing answers on port {port}: starting a private PostgreSQL in {data}")
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_owner = ["runuser", "-u", "postgres", "--"]
    data.mkdir(parents=True, exist_ok=True)
    if as_owner:
        shutil.chown(data, "postgres", "postgres")
    if as_owner and subprocess.run([*as_owner, "test", "-w", str(data)]).returncode != 0:
        raise StackError(
            f"as root, the private PostgreSQL runs as the user postgres, who cannot write to "
            f"{data}: use a --run-dir that user can reach"
        )
    if not (data / "PG_VERSION").exists():
        # Every connection, local or TCP, authenticates with a password (scram-sha-256); the
        # superuser's is random, kept in the credentials file before the cluster exists.
        password = secrets.token_urlsafe(24)
        kept["postgres_admin"] = {"user": "postgres", "password": password}
        _save_secrets(run_dir, {"postgres_admin": kept["postgres_admin"]})
        pwfile = run_dir / ".postgres-superuser-password"  # initdb wants `data` empty
        descriptor = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(password + "\n")
        if as_owner:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            subprocess.run(
                [
                    *as_owner,
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        finally:
            pwfile.unlink(missing_ok=True)
    elif not kept.get("postgres_admin"):
        raise StackError(
            f"the private PostgreSQL in {data} has no superuser password in "
            f"{run_dir / 'credentials.json'} (made by an older `up` with trust, or the file was "
            "removed): `down --purge` (make down PURGE=1), then `up` again"
        )
    log = data / "server.log"
    subprocess.run(
        [
            *as_owner,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "start",
            "-o",
            f"-p {port} -c listen_addresses=127.0.0.1 -k {data}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    state.private["postgres"] = {"data": str(data), "bindir": str(bindir), "root": bool(as_owner)}


def _start_private_redis(
    state: State, run_dir: Path, port: int, kept: dict[str, Any] | None = None
) -> None:
    kept = {} if kept is None else kept
    server = shutil.which("redis-server")
    if server is None:
        raise StackError(f"no Redis server found: install the package {PACKAGES['redis']}")
    data = run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    _say(f"nothing answers on port {port}: starting a private Redis in {data}")
    pidfile = data / "redis.pid"
    subprocess.run(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--dir",
            str(data),
            "--logfile",
            str(data / "server.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and _answers("127.0.0.1", port)):
        if time.monotonic() > deadline:
            raise StackError(f"the private Redis did not start: see {data / 'server.log'}")
        time.sleep(0.1)
    state.private["redis"] = {"pid": int(pidfile.read_text()), "port": port}
    # Nothing persists (no RDB, no AOF): at every start an administrator user with a password
    # (kept in the credentials file, the same across `up`s) and the default user off.
    import asyncio

    from services.provision import disable_default_user

    admin = kept.get("redis_admin") or {}
    made = asyncio.run(
        disable_default_user(
            f"redis://127.0.0.1:{port}/0",
            admin.get("user") or f"{state.user_prefix}_admin",
            admin.get("password") or secrets.token_urlsafe(24),
        )
    )
    if made is not None:
        made["redis_url"] = _with_login(state.redis_url, made["user"], made["password"])
        kept["redis_admin"] = made
        _save_secrets(run_dir, {"redis_admin": made})


def _postgres_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(DEBIAN_POSTGRES.glob("*/bin/pg_ctl"))
    if candidates:
        return candidates[-1].parent
    raise StackError(f"no PostgreSQL server found: install the package {PACKAGES['postgres']}")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# -- roles, ACL users and the services ------------------------------------------------------------


def _admin_env(state: State, kept: dict[str, Any]) -> dict[str, str]:
    database_url, redis_url = _admin_urls(state, kept)
    return {
        **os.environ,
        "PARTY_DATABASE_URL": database_url,
        "PARTY_REDIS_URL": redis_url,
        "PARTY_STREAM_PREFIX": state.stream_prefix,
    }


def _provision(state: State, run_dir: Path, kept: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Migrate as the administrator, then give each service its least-privilege credentials."""
    import asyncio

    from runtime.service import ensure_database

    state.created_database = asyncio.run(ensure_database(_admin_urls(state, kept)[0]))
    out = run_dir / "credentials.json"
    own_server = ["--revoke-public-connect"] if "postgres" in state.private else []
    result = subprocess.run(
        [
            str(VENV / "bin/party"),
            "provision",
            "--out",
            str(out),
            "--user-prefix",
            state.user_prefix,
            "--keys-dir",
            str(run_dir / "keys"),
            *own_server,
        ],
        env=_admin_env(state, kept),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"provisioning failed:\n{result.stdout}{result.stderr}")
    _say(
        "migrations applied; a PostgreSQL role, a Redis ACL user and a signing key for each service"
    )
    _say(f"the services' token secret is random, kept in {out} (`party token` reads it there)")
    credentials: dict[str, dict[str, str]] = json.loads(out.read_text())
    return credentials


def _start_services(
    state: State,
    credentials: dict[str, dict[str, str]],
    port_base: int,
    logs: Path,
    auth_secret: str,
) -> None:
    urls = {name: f"http://127.0.0.1:{port_base + n}" for n, name in enumerate(SERVICES)}
    for offset, name in enumerate(SERVICES):
        port = port_base + offset
        env = {
            **os.environ,
            "PARTY_DATABASE_URL": credentials[name]["database_url"],
            "PARTY_REDIS_URL": credentials[name]["redis_url"],
            "PARTY_STREAM_PREFIX": state.stream_prefix,
            "PARTY_MIGRATE_ON_START": "false",
            "PARTY_HTTP_PORT": str(port),
            "PARTY_LOG_FORMAT": "json",
            "PARTY_KEYS_DIR": str(logs.parent / "keys"),
            "PARTY_CREATE_MISSING_KEY": "false",
            "PARTY_SERVICE_URLS": json.dumps(urls),
            "PARTY_AUTH_SECRET": auth_secret,
        }
        with open(logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                [str(VENV / "bin/party"), "serve", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # `down` signals the whole group; Ctrl-C here does not
                cwd=ROOT,
            )
        state.pids[name] = process.pid
        state.urls[name] = f"http://127.0.0.1:{port}"


def _wait_ready(state: State, logs: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(state.urls)
    while waiting:
        for name, url in list(waiting.items()):
            if not _alive(state.pids[name]):
                raise StackError(f"{name} exited while starting:\n{_tail(logs / f'{name}.log')}")
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
                    if response.status == 200:
                        del waiting[name]
            except (urllib.error.URLError, OSError):
                pass
        if waiting and time.monotonic() > deadline:
            raise StackError(f"not ready after {timeout:.0f} s: {', '.join(waiting)}")
        time.sleep(0.2)


# -- down and status ------------------------------------------------------------------------------


def down(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.resolve()
    state = State.load(run_dir)
    if state is None:
        _say("nothing to stop (no .run/stack.json)")
        return 0
    _stop_services(state)
    if args.purge and not state.private:
        _purge(state)
    _stop_servers(state)
    (run_dir / "stack.json").unlink(missing_ok=True)
    if args.purge:
        (run_dir / "credentials.json").unlink(missing_ok=True)
        for private in ("postgres", "redis"):
            shutil.rmtree(run_dir / private, ignore_errors=True)
    return 0


def _stop(state: State) -> None:
    _stop_services(state)
    _stop_servers(state)


def _stop_services(state: State) -> None:
    for pid in state.pids.values():
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for name, pid in state.pids.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _say(f"{name} did not stop in time: killing it")
            os.killpg(pid, signal.SIGKILL)
        _say(f"stopped {name} (pid {pid})")


def _stop_servers(state: State) -> None:
    redis_server = state.private.get("redis")
    if redis_server and _alive(redis_server["pid"]):
        os.kill(redis_server["pid"], signal.SIGTERM)
        _wait_gone(redis_server["pid"])
        _say(f"stopped the private Redis (pid {redis_server['pid']})")
    postgres = state.private.get("postgres")
    if postgres:
        as_owner = ["runuser", "-u", "postgres", "--"] if postgres["root"] else []
        subprocess.run(
            [
                *as_owner,
                f"{postgres['bindir']}/pg_ctl",
                "-D",
                postgres["data"],
                "-m",
                "fast",
                "-w",
                "stop",
            ],
            check=False,
            stdout=subprocess.DEVNULL,
        )
        _say("stopped the private PostgreSQL")


def _purge(state: State) -> None:
    """Drop the data `up` used on shared servers: the database if `up` created it, otherwise the
    services' schemas in it (private servers are deleted with their data)."""
    import asyncio

    from services.provision import unprovision

    asyncio.run(
        unprovision(
            state.database_url,
            state.redis_url,
            state.stream_prefix,
            state.user_prefix,
            drop_database=state.created_database,
            drop_schemas=() if state.created_database else SERVICES,
        )
    )
    _say(
        "dropped the roles, the ACL users, the streams and "
        + ("the database" if state.created_database else "the services' schemas")
    )


def status(args: argparse.Namespace) -> int:
    state = State.load(args.run_dir.resolve())
    if state is None:
        _say("down")
        return 3
    healthy = True
    for name, url in state.urls.items():
        pid = state.pids[name]
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:
                ready = response.status == 200
        except (urllib.error.URLError, OSError):
            ready = False
        healthy &= ready
        _say(
            f"{name:<11} pid {pid:<8} {'running' if _alive(pid) else 'gone':<8} "
            f"{'ready' if ready else 'not ready'}  {url}"
        )
    return 0 if healthy else 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _say(text: str) -> None:
    print(f"[stack] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
