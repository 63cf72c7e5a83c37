"""The peer's figures on this machine, in the same run: the Python `eventsourcing` library
(pinned in the optional `bench` dependency group: `pip install -e ".[bench]"`) with its
PostgreSQL persistence (psycopg 3), on a database of its own that is dropped afterwards.

    .venv/bin/python -m tests.bench.peer [--quick]

What it measures, each for a bounded time (much shorter with --quick), one client in-process,
as its documentation writes an application:

* commands: `repository.get` of an aggregate, one command method triggering one event, `save`
  (rotating over 1,000 aggregates, so that each holds only a few events);
* batch append: a new aggregate and 99 more events, saved at once (a sheet of 100 lines);
* aggregate read: `repository.get` of an aggregate of 1,000 events (a ledger of 1,000 lines);
* subscription: `ApplicationSubscription` from the start of the application sequence, each
  notification turned back into a domain event, until it has read everything recorded.

Commands and batches run twice, with the library's defaults and with its PostgreSQL functions
(POSTGRES_ENABLE_DB_FUNCTIONS); the peer's figure is the better of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.projection import ApplicationSubscription

from tests.bench.harness import ADMIN_URL, percentile

Say = Callable[[str], None]


@dataclass(frozen=True)
class PeerPlan:
    command_seconds: float = 8.0
    aggregates: int = 1000
    batch_seconds: float = 8.0
    batch: int = 100
    read_events: int = 1000
    read_seconds: float = 5.0


QUICK_PEER = PeerPlan(command_seconds=1.5, aggregates=200, batch_seconds=1.5, read_seconds=1.0)


@dataclass(frozen=True)
class PeerFigures:
    version: str
    command_rate: float  # commands/s, the better configuration
    command_p50: float  # seconds
    command_p99: float
    command_rate_default: float
    command_rate_db_functions: float
    batch_rate: float  # events/s, the better configuration
    batch_rate_default: float
    batch_rate_db_functions: float
    batch: int
    read_events: int
    read_p50: float  # seconds, one repository.get
    read_p99: float
    read_rate: float  # events/s folded by repository.get
    subscription_rate: float  # events/s
    subscription_events: int


class Sheet(Aggregate):
    """An activity's attendance sheet: one event per line, like the project's."""

    @event("Opened")
    def __init__(self, activity_id: str) -> None:
        self.activity_id = activity_id
        self.present = 0

    @event("LineRecorded")
    def record(
        self,
        member_id: str,
        status: str,
        activity_kind: str,
        branch_id: str,
        group_id: str,
        activity_date: str,
        note: str,
    ) -> None:
        if status == "present":
            self.present += 1


def line(n: int) -> dict[str, str]:
    """The fields of an attendance line (the project's payload, less its nulls)."""
    return {
        "member_id": f"m-load-{n % 100:03d}",
        "status": "present",
        "activity_kind": "all_member_meeting",
        "branch_id": "bsch-load",
        "group_id": "bsch-load-g1",
        "activity_date": "2026-05-01",
        "note": "支部大会 第一党小组 国防教育学院",
    }


class Attendance(Application[uuid.UUID]):
    """The peer's application, with its defaults (tables attendance_events …)."""


class AttendanceWithFunctions(Application[uuid.UUID]):
    """The same, configured with the library's PostgreSQL functions (tables of its own)."""


def environment(database: str, db_functions: bool) -> dict[str, str]:
    url = urlsplit(ADMIN_URL)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": database,
        "POSTGRES_HOST": url.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_PASSWORD": url.password or "",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y" if db_functions else "n",
        "CREATE_TABLE": "y",
    }


def commands(app: Application[uuid.UUID], plan: PeerPlan) -> tuple[float, list[float]]:
    """get + one command + save, one client, rotating over `plan.aggregates` aggregates."""
    ids = []
    for start in range(0, plan.aggregates, 100):
        sheets = [Sheet(f"c-{n}") for n in range(start, min(plan.aggregates, start + 100))]
        app.save(*sheets)
        ids += [s.id for s in sheets]
    fields = line(1)
    latencies: list[float] = []
    end = time.perf_counter() + plan.command_seconds
    started = time.perf_counter()
    while (sent := time.perf_counter()) < end:
        sheet: Sheet = app.repository.get(ids[len(latencies) % len(ids)])
        sheet.record(**fields)
        app.save(sheet)
        latencies.append(time.perf_counter() - sent)
    return len(latencies) / (time.perf_counter() - started), latencies


def batches(app: Application[uuid.UUID], plan: PeerPlan) -> float:
    """A new aggregate with plan.batch events in all, saved at once, one client."""
    done = 0
    end = time.perf_counter() + plan.batch_seconds
    started = time.perf_counter()
    while time.perf_counter() < end:
        sheet = Sheet(f"b-{done}")
        for n in range(plan.batch - 1):
            sheet.record(**line(n))
        app.save(sheet)
        done += plan.batch
    return done / (time.perf_counter() - started)


def reads(app: Application[uuid.UUID], plan: PeerPlan) -> list[float]:
    """repository.get of an aggregate of plan.read_events events, again and again."""
    sheet = Sheet("ledger")
    for n in range(plan.read_events - 1):
        sheet.record(**line(n))
    app.save(sheet)
    latencies: list[float] = []
    end = time.perf_counter() + plan.read_seconds
    while (sent := time.perf_counter()) < end or len(latencies) < 5:
        got: Sheet = app.repository.get(sheet.id)
        latencies.append(time.perf_counter() - sent)
        assert got.version == plan.read_events
    return latencies


def subscription(app: Application[uuid.UUID]) -> tuple[float, int]:
    """Read the whole application sequence through a subscription, as a projection would."""
    last = app.recorder.max_notification_id() or 0
    read = 0
    started = time.perf_counter()
    with ApplicationSubscription(app, gt=0) as events:
        for _, tracking in events:
            read += 1
            if tracking.notification_id >= last:
                break
    return read / (time.perf_counter() - started), read


def run(database: str, plan: PeerPlan, say: Say) -> PeerFigures:
    """Everything, in one thread (the library is synchronous)."""
    rates: dict[bool, tuple[float, list[float], float]] = {}
    apps: dict[bool, Application[Any]] = {}
    try:
        for functions in (False, True):
            kind: type[Application[Any]] = AttendanceWithFunctions if functions else Attendance
            app = apps[functions] = kind(env=environment(database, functions))
            rate, latencies = commands(app, plan)
            batch = batches(app, plan)
            label = "with its DB functions" if functions else "defaults"
            say(
                f"    peer ({label}): {rate:,.0f} commands/s "
                f"(p50 {percentile(latencies, 0.5) * 1000:.2f} ms), "
                f"batches of {plan.batch}: {batch:,.0f} events/s"
            )
            rates[functions] = (rate, latencies, batch)
        best = max(rates, key=lambda functions: rates[functions][0])
        app = apps[best]
        read = reads(app, plan)
        read_p50 = percentile(read, 0.5)
        say(
            f"    peer: repository.get of {plan.read_events:,} events: p50 "
            f"{read_p50 * 1000:.2f} ms, p99 {percentile(read, 0.99) * 1000:.2f} ms"
        )
        sub_rate, sub_events = subscription(app)
        say(f"    peer: subscription {sub_rate:,.0f} events/s ({sub_events:,} events)")
    finally:
        for each in apps.values():
            each.close()
    rate, latencies, _ = rates[best]
    return PeerFigures(
        version=version("eventsourcing"),
        command_rate=rate,
        command_p50=percentile(latencies, 0.5),
        command_p99=percentile(latencies, 0.99),
        command_rate_default=rates[False][0],
        command_rate_db_functions=rates[True][0],
        batch_rate=max(rates[False][2], rates[True][2]),
        batch_rate_default=rates[False][2],
        batch_rate_db_functions=rates[True][2],
        batch=plan.batch,
        read_events=plan.read_events,
        read_p50=read_p50,
        read_p99=percentile(read, 0.99),
        read_rate=plan.read_events / read_p50,
        subscription_rate=sub_rate,
        subscription_events=sub_events,
    )


async def measure(plan: PeerPlan = PeerPlan(), say: Say = print) -> PeerFigures:
    """The peer's figures on a private database, dropped afterwards even on failure."""
    database = f"party_bench_peer_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        return await asyncio.to_thread(run, database, plan, say)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="every size shrunk: a smoke run")
    args = parser.parse_args()
    print(asyncio.run(measure(QUICK_PEER if args.quick else PeerPlan())))


if __name__ == "__main__":
    main()
