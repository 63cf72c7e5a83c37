"""What the end-to-end benchmarks share: a lean HTTP client, the four services as processes on a
private database and stream prefix (removed afterwards), and the organisation the load runs in.

Nothing here asserts: a benchmark reports what it saw, including what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import redis.asyncio as redis
import yaml

from tests.support.processes import NAMES, ServiceProcesses, bearer

ADMIN_URL = os.environ.get("PARTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
#: A Redis database of the benchmarks' own (and a stream prefix of their own in it): never the
#: database 0 that `make run` and the stack use, unless PARTY_BENCH_REDIS_URL says so.
REDIS_URL = os.environ.get("PARTY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
NOTIFY_CONFIG = Path(__file__).resolve().parents[2] / "services" / "notify" / "notify.yaml"

SCHOOL = "bsch"
LOAD_BRANCH = "bsch-load"  # 100 members: sheets of 100 lines
READS_BRANCH = "bsch-reads"  # 50 members: the ledger and the branch table
CHINA = timezone(timedelta(hours=8))

#: Which services' logs each consumer applies (every family it reads comes from these).
PRODUCERS: dict[str, tuple[str, ...]] = {
    "activities": ("roster",),
    "scoring": ("roster", "activities"),
    "notify": ("roster", "activities", "scoring"),
    "roster": ("scoring",),
}


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (share in 0..1) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(share * len(ordered)))) - 1]


# -- a lean HTTP client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
KEEP_ALIVE_SECONDS = 4.0


class LeanHttp:
    """Keep-alive HTTP/1.1 over asyncio streams, just enough for these APIs (bodies with
    Content-Length or chunked). httpx costs several times more CPU per request, and on two cores
    every cycle the client spends is taken from the services it measures."""

    def __init__(self, base_url: str, max_connections: int = 64) -> None:
        host, _, port = base_url.removeprefix("http://").rstrip("/").partition(":")
        self._host, self._port = host, int(port)
        self._host_line = f"Host: {host}:{port}\r\n".encode()
        self._idle: list[tuple[Connection, float]] = []  # with when each was last used
        self._slots = asyncio.Semaphore(max_connections)

    async def get(self, path: str, headers: Mapping[str, str]) -> Reply:
        return await self.request("GET", path, None, headers)

    async def post(self, path: str, body: Any, headers: Mapping[str, str]) -> Reply:
        return await self.request("POST", path, orjson.dumps(body), headers)

    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> Reply:
        head = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_line]
        head += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
        if body is not None:
            head.append(b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body))
        message = b"".join(head) + b"\r\n" + (body or b"")
        async with self._slots:
            conn = self._reuse()
            if conn is not None:
                try:
                    return await self._send(conn, message)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # The server closed it meanwhile; every command carries an idempotency
                    # key, so sending it again on a new connection is safe.
                    conn[1].close()
            return await self._send(await self._open(), message)

    def _reuse(self) -> Connection | None:
        # uvicorn closes a keep-alive connection after 5 s without a request: older ones are
        # dropped rather than risked.
        while self._idle:
            conn, used = self._idle.pop()
            if time.monotonic() - used < KEEP_ALIVE_SECONDS:
                return conn
            conn[1].close()
        return None

    async def _send(self, conn: Connection, message: bytes) -> Reply:
        try:
            reply, keep = await _exchange(conn, message)
        except BaseException:
            conn[1].close()
            raise
        if keep:
            self._idle.append((conn, time.monotonic()))
        else:
            conn[1].close()
        return reply

    async def _open(self) -> Connection:
        return await asyncio.open_connection(self._host, self._port)

    async def close(self) -> None:
        while self._idle:
            (_, writer), _ = self._idle.pop()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _exchange(conn: Connection, message: bytes) -> tuple[Reply, bool]:
    reader, writer = conn
    writer.write(message)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    chunked, keep = False, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = value.strip().lower() != b"close"
    if length is not None:
        body = await reader.readexactly(length)
    elif chunked:
        parts = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        body = b"".join(parts)
    else:
        body, keep = await reader.read(), False
    return Reply(status, body), keep


# -- the services on a private database ------------------------------------------------------------


@dataclass
class World:
    """The running services, a client for each, and what the benchmark needs to watch them."""

    stack: ServiceProcesses
    http: dict[str, LeanHttp]
    redis: redis.Redis
    prefix: str
    database: str
    admin: dict[str, str] = field(
        default_factory=lambda: bearer("university_admin", subject="bench")
    )
    auditor: dict[str, str] = field(default_factory=lambda: bearer("auditor"))

    def pid(self, name: str) -> int:
        return self.stack.pid(name)

    def stream(self, family: str) -> str:
        return f"{self.prefix}:{family}"

    async def processes(self) -> dict[str, list[int]]:
        """The processes whose CPU time a phase reports: the services, the PostgreSQL backends
        serving this database, the Redis server (shared with whatever else uses it) and this
        benchmark (the load generator)."""
        conn = await asyncpg.connect(ADMIN_URL)
        try:
            backends = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.database
            )
        finally:
            await conn.close()
        redis_pid = int((await self.redis.info("server"))["process_id"])
        return {
            **{name: [self.pid(name)] for name in NAMES},
            "postgres": [row["pid"] for row in backends],
            "redis": [redis_pid],
            "load generator": [os.getpid()],
        }

    async def trimmed_unread(self) -> dict[tuple[str, str], int]:
        """Entries Redis trimmed (the streams' approximate MAXLEN) before a consumer group had
        read them, by (stream, group): those never reach that consumer."""
        lost: dict[tuple[str, str], int] = {}
        for family in ("member", "activity", "attendance", "report", "score"):
            key = self.stream(family)
            if not await self.redis.exists(key):
                continue
            info = await self.redis.xinfo_stream(key)
            trimmed = info["entries-added"] - info["length"]
            for group in await self.redis.xinfo_groups(key):
                read = group.get("entries-read")
                if read is not None and trimmed > read:
                    lost[(family, group["name"].decode())] = trimmed - read
        return lost

    async def progress(self) -> dict[str, dict[str, int]]:
        """Each service's log head and how many events it has applied from the others."""
        replies = await asyncio.gather(
            *(self.http[name].get("/v1/audit/progress", self.auditor) for name in NAMES)
        )
        return {name: reply.json() for name, reply in zip(NAMES, replies, strict=True)}

    async def behind(self) -> dict[str, int]:
        """How many events each consumer has still to apply."""
        return backlog(await self.progress())

    async def settle(self, within: float, say: Any = print) -> bool:
        """Wait until every consumer has applied what its producers recorded; False when it
        had not after `within` seconds (the benchmark goes on and says so)."""
        deadline = time.monotonic() + within
        while True:
            behind = await self.behind()
            if all(n <= 0 for n in behind.values()):
                return True
            if time.monotonic() > deadline:
                say(f"    (not settled after {within:.0f} s; still to apply: {behind})")
                return False
            await asyncio.sleep(0.5)


def machine_facts() -> str:
    """The host, its cores, CPU model and memory."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    return f"host {platform.node()}, {os.cpu_count()} cores ({model}){memory}"


async def server_facts() -> str:
    """The versions and durability settings the figures depend on."""
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        version, fsync, synchronous = [
            await conn.fetchval(f"SHOW {name}")
            for name in ("server_version", "fsync", "synchronous_commit")
        ]
    finally:
        await conn.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        redis_version = (await client.info("server"))["redis_version"]
    finally:
        await client.aclose()
    return (
        f"PostgreSQL {version} (fsync {fsync}, synchronous_commit {synchronous}), "
        f"Redis {redis_version}"
    )


def backlog(progress: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """How many events each consumer has still to apply, from every service's progress."""
    return {
        name: sum(progress[p]["head_position"] for p in producers) - progress[name]["inbox"]
        for name, producers in PRODUCERS.items()
    }


def bench_notify_config(directory: Path) -> Path:
    """The shipped reminders configuration without meeting reminders.

    Every meeting plans two reminders for each member of its branch, and a meeting that has
    already begun (the benchmark records attendance, so it schedules them in the past) has each
    reminder concluded by a `reminder.skipped` event: 200 events in notify for each activity in
    a branch of 100. In steady use meetings are few; in a benchmark that schedules thousands a
    second it would turn every figure into a measure of that amplification."""
    config = yaml.safe_load(NOTIFY_CONFIG.read_text(encoding="utf-8"))
    config["leads"]["meeting"] = []
    path = directory / "notify-bench.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


@asynccontextmanager
async def world(
    *, meeting_reminders: bool = False, keep_logs: bool = False, say: Any = print
) -> AsyncIterator[World]:
    """The four services on a database and stream prefix of their own, both removed at the end
    even when the benchmark fails."""
    database = f"party_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    log_dir = Path(tempfile.mkdtemp(prefix="party-bench-"))
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{database}"')
    database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    env = {
        # The production defaults, not the fast-reclaim settings of the fault tests: a batch
        # that takes more than a second must not be taken over by the reclaimer.
        "PARTY_RECLAIM_IDLE_MS": "30000",
        "PARTY_RELAY_POLL_SECONDS": "1.0",
    }
    if not meeting_reminders:
        env["PARTY_NOTIFY_CONFIG"] = str(bench_notify_config(log_dir))
    stack = ServiceProcesses(database_url, REDIS_URL, prefix, log_dir, extra_env=env)
    client = redis.Redis.from_url(REDIS_URL)
    http: dict[str, LeanHttp] = {}
    failed = False
    try:
        await asyncio.to_thread(stack.start_all)
        http = {name: LeanHttp(stack.url(name)) for name in NAMES}
        yield World(stack, http, client, prefix, database)
    except BaseException:
        failed = True
        raise
    finally:
        for each in http.values():
            await each.close()
        await asyncio.to_thread(stack.stop_all)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        await client.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        if failed or keep_logs:
            say(f"    service logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)


# -- the organisation and the load -----------------------------------------------------------------


def scoring_year(now: datetime | None = None) -> int:
    """The year whose activities are scored: this one, unless it has barely begun."""
    now = now or datetime.now(UTC)
    return (now - timedelta(days=40)).year


def activity_start(n: int, year: int) -> datetime:
    """A moment that has passed (attendance is taken once an activity has begun), spread over
    the days of the year so far."""
    first = datetime(year, 1, 2, 19, 0, tzinfo=CHINA)
    days = max(1, min(360, (datetime.now(CHINA) - first).days - 1))
    return first + timedelta(days=n % days, minutes=(n // days) % 120)


def schedule_body(activity_id: str, branch_id: str, n: int, year: int) -> dict[str, Any]:
    starts = activity_start(n, year)
    return {
        "activity_id": activity_id,
        "kind": "all_member_meeting",
        "title": f"支部大会 {n}",
        "branch_id": branch_id,
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=1)).isoformat(),
        "place": "301",
    }


def sheet_body(members: Iterable[str]) -> dict[str, Any]:
    return {"lines": [{"member_id": m, "status": "present"} for m in members]}


def members_of(branch_id: str, count: int) -> list[str]:
    short = branch_id.rsplit("-", 1)[-1]
    return [f"m-{short}-{n:03d}" for n in range(count)]


def enrolment(member_id: str, branch_id: str, number: int, year: int) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "branch_id": branch_id,
        "student_number": f"{year}{number:06d}",
        "name": f"党员{number:03d}",
        "group_id": f"{branch_id}-g1",
        "class_name": f"国防{year % 100}01",
        "company": "一连",
        "dormitory": "8-312",
        "bed": "1",
        "standing": "full",
        "joined_on": date(year - 1, 6, 1).isoformat(),
        "enrolled_on": date(year, 1, 1).isoformat(),
        "expected_graduation": date(year + 3, 7, 1).isoformat(),
    }


class CommandFailed(Exception):
    pass


async def command(w: World, service: str, path: str, body: Any, key: str) -> Reply:
    """A command that must succeed (setting up, not measuring)."""
    reply = await w.http[service].post(path, body, {**w.admin, "Idempotency-Key": f"bench:{key}"})
    if reply.status >= 300:
        raise CommandFailed(f"{service} {path}: {reply.status} {reply.body[:300]!r}")
    return reply


async def in_parallel(jobs: Sequence[Any], workers: int) -> None:
    """Await the coroutines of `jobs`, at most `workers` at a time."""
    queue = deque(jobs)

    async def worker() -> None:
        while queue:
            await queue.popleft()

    await asyncio.gather(*(worker() for _ in range(workers)))


async def organisation(w: World, year: int, load_members: int, reads_members: int) -> None:
    """A school with two branches (each one group), their members enrolled at the start of the
    year, and a regulation version with a period for the year, so that attendance is scored."""
    units: list[dict[str, Any]] = [{"unit_id": SCHOOL, "kind": "school", "name": "国防教育学院"}]
    for branch, name in ((LOAD_BRANCH, "学生第一党支部"), (READS_BRANCH, "学生第二党支部")):
        units.append(
            {
                "unit_id": branch,
                "kind": "branch",
                "name": name,
                "parent_id": SCHOOL,
                "branch_kind": "student",
            }
        )
        units.append(
            {"unit_id": f"{branch}-g1", "kind": "group", "name": "第一党小组", "parent_id": branch}
        )
    for unit in units:
        await command(w, "roster", "/v1/units", unit, f"unit-{unit['unit_id']}")
    people = [(m, LOAD_BRANCH) for m in members_of(LOAD_BRANCH, load_members)]
    people += [(m, READS_BRANCH) for m in members_of(READS_BRANCH, reads_members)]
    await in_parallel(
        [
            command(w, "roster", "/v1/members", enrolment(m, b, n, year), f"enrol-{m}")
            for n, (m, b) in enumerate(people)
        ],
        8,
    )
    deadline = time.monotonic() + 60
    while not (versions := (await w.http["scoring"].get("/v1/regulations", w.admin)).json()):
        if time.monotonic() > deadline:
            raise CommandFailed("scoring published no default regulation")
        await asyncio.sleep(0.2)  # the default regulation is published in the background
    latest = versions[-1]
    document = {
        **latest["document"],
        "version": latest["version"] + 1,
        "effective_from": f"{year}-01-01",
        "periods": [{"id": str(year), "starts_on": f"{year}-01-01", "ends_on": f"{year}-12-31"}],
    }
    await command(w, "scoring", "/v1/regulations", document, f"regulation-{year}")


class Activities:
    """Activities scheduled in the load branch and not used yet, handed out so that no
    (activity, member) line is recorded twice and no two commands in flight are likely to
    write the same attendance stream (they would conflict and be retried)."""

    def __init__(self, members: Sequence[str]) -> None:
        self.members = list(members)
        self.fresh: deque[str] = deque()
        self._window: list[str] = []
        self._slices: deque[tuple[str, int]] = deque()
        self._shape = (0, 0, 0)

    def add(self, activity_id: str) -> None:
        self.fresh.append(activity_id)

    def __len__(self) -> int:
        return len(self.fresh)

    def take(
        self, size: int, per_activity: int | None = None, width: int = 1
    ) -> tuple[str, list[str]] | None:
        """`size` members at one activity, or None when no activity is left. Each activity
        gives out `per_activity` lines (default: one sheet); consecutive calls go round
        `width` activities, so that an activity comes back only every `width` calls."""
        per_activity = min(per_activity or size, len(self.members))
        if self._shape != (size, per_activity, width):
            # Another phase: what the last one left half used is dropped, never reused.
            self._shape = (size, per_activity, width)
            self._slices.clear()
        if not self._slices:
            window = [self.fresh.popleft() for _ in range(min(width, len(self.fresh)))]
            if not window:
                return None
            # Member slices in the outer loop: the activities take turns.
            for start in range(0, per_activity - size + 1, size):
                self._slices.extend((activity, start) for activity in window)
        activity, start = self._slices.popleft()
        return activity, self.members[start : start + size]

    def needed(self, commands: int, size: int, per_activity: int) -> int:
        """How many fresh activities `commands` calls of take(size, per_activity) use."""
        return -(-commands * size // min(per_activity, len(self.members)))


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time a process has used, or None when it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def machine_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and in all, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


@asynccontextmanager
async def cpu_use(w: World, sink: Callable[[str], None]) -> AsyncIterator[None]:
    """Measure how many cores each group of processes used meanwhile; hand a line to `sink`."""
    before_groups = await w.processes()
    before = {pid: cpu_seconds(pid) for pids in before_groups.values() for pid in pids}
    busy, total = machine_seconds()
    started = time.monotonic()
    yield
    elapsed = time.monotonic() - started
    groups = await w.processes()
    used = {}
    for name in groups.keys() | before_groups.keys():
        spent = 0.0
        for pid in set(groups.get(name, [])) | set(before_groups.get(name, [])):
            now, then = cpu_seconds(pid), before.get(pid)
            if now is not None:
                spent += now - (then or 0.0)  # a process born meanwhile counts from zero
        used[name] = spent / elapsed
    busy_after, total_after = machine_seconds()
    cores = (total_after - total) / elapsed
    order = [*NAMES, "postgres", "redis", "load generator"]
    machine = (busy_after - busy) / elapsed
    sink(
        ", ".join(f"{name} {used[name]:.2f}" for name in order if name in used)
        + f"; the machine {machine:.2f} of {cores:.0f} cores busy, "
        f"{max(0.0, machine - sum(used.values())):.2f} of them by other processes"
    )


def read_rss(pid: int) -> tuple[int, int]:
    """Resident and peak resident memory of a process, in bytes."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]
