"""Fold throughput of scoring: live consumption (batches through the inbox, re-scoring and the
published ledger), replay from the archive set against PostgreSQL's ordered keyset read of the
same rows in the same run, and a what-if of a whole university's year.

    .venv/bin/python -m tests.bench.bench_scoring [--events 1000000] [--live 50000]
        [--what-if 1000000] [--profile-replay FILE [--profile-inputs 200000]]

Creates a private database, generates attendance inputs for 3,000 members in 60 branches under
the shipped 2010 regulation, and prints a table. Everything is real PostgreSQL (fsync on).

* keyset read: `SELECT <the archive's input columns> FROM inputs WHERE position > $1 ORDER BY
  position LIMIT 10000` over the whole archive, each row decoded by the driver (nothing else),
  the better of two passes, on an index on position the benchmark makes for it;
* replay: ScoringQueries.replay() as the service runs it (the archive read into inputs, the
  fold in a process of its own, the comparison with the live scores), its rate the archive's
  inputs per second, and its ratio to the keyset read;
* what-if: a university's year (100 branches of 50 members, 1,000,000 inputs: meetings,
  activities, reports and reviews, corrections) under a draft of the shipped regulation,
  computed by compute_what_if through the Offloader (pickled to a process of its own, computed,
  answered), and the arithmetic alone in this process;
* --profile-replay: compute_replay of synthetic inputs under cProfile, summarised to FILE.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import uvloop
from asyncpg.pgproto import pgproto

from contracts.catalogue import CATALOGUE
from contracts.envelope import Actor, Envelope
from contracts.events import AttendanceRecorded
from runtime.commands import CommandContext
from runtime.consumer import IncomingEvent, Projector
from runtime.directory import Directory
from runtime.eventstore import EventStore, migrate
from runtime.projection import LocalProjector
from runtime.signing import Signer
from services.scoring.archive import Archive
from services.scoring.domain.assessment import Participant
from services.scoring.domain.engine import Input
from services.scoring.domain.regulation import (
    PublishedVersion,
    RegulationBook,
    RegulationDocument,
    RegulationHistory,
    parse_document,
)
from services.scoring.handlers import BranchInputs, ScoringService
from services.scoring.offload import Offloader
from services.scoring.projections import INPUT_FAMILIES, ScoringInputs, ScoringReadModels
from services.scoring.queries import (
    ScoringQueries,
    WhatIfJob,
    compute_replay,
    compute_what_if,
    compute_what_if_pages,
)
from services.scoring.regulation_file import default_regulation
from services.scoring.service import DEFINITION as SCORING

ADMIN_URL = os.environ.get("PARTY_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
KINDS = ["all_member_meeting", "group_meeting", "party_lecture", "volunteer_service", "visit"]
STATUSES = ["present"] * 8 + ["late", "absent", "excused"]
HASH = "0" * 64


def attendance(n: int, members: int) -> tuple[AttendanceRecorded, datetime, str]:
    rng = random.Random(n)
    member = rng.randrange(members)
    branch = f"b{member % 60:02d}"
    kind = rng.choice(KINDS)
    status = rng.choice(STATUSES)
    day = date(2010, 5, 1) + timedelta(days=rng.randrange(240))
    payload = AttendanceRecorded(
        activity_id=f"a{n // 40}",
        member_id=f"m{member:05d}",
        status=status,
        excuse="病假" if status == "excused" else None,
        activity_kind=kind,
        branch_id=branch,
        group_id=None,
        activity_date=day,
        volunteer_hours=None
        if kind != "volunteer_service" or status != "present"
        else rng.choice(["1", "2", "2.5", "4"]),
    )
    return payload, datetime(day.year, day.month, day.day, 11, tzinfo=UTC), branch


def incoming(n: int, members: int) -> IncomingEvent:
    payload, occurred, branch = attendance(n, members)
    envelope = Envelope(
        event_id=uuid.UUID(int=n + 1),
        type=payload.event_type,
        schema_version=1,
        stream_id=f"attendance-{n // 40}",
        stream_version=n % 40 + 1,
        branch_id=branch,
        occurred_at=occurred,
        recorded_at=occurred,
        actor=Actor(id="sec", role="branch_secretary"),
        correlation_id=uuid.UUID(int=n + 1),
        causation_id=None,
        data=payload.model_dump(mode="json"),
        hash=HASH,
        prev_hash=HASH,
    )
    return IncomingEvent(envelope, payload, "activities", n + 1)


@dataclass(frozen=True)
class ScoringFigures:
    live_events: int
    live_rate: float  # events/s
    ledger_events: int
    replay_inputs: int
    replay_rows: int
    replay_rate: float  # events/s
    #: PostgreSQL's ordered keyset read of the same archive rows, in the same run (rows/s).
    keyset_rate: float = 0.0
    #: The archive read alone as the replay does it (rows decoded into inputs), rows/s.
    archive_rate: float = 0.0
    what_if: WhatIfFigures | None = None

    @property
    def replay_ratio(self) -> float:
        """The replay's rate as a share of the keyset read's."""
        return self.replay_rate / self.keyset_rate if self.keyset_rate else 0.0


async def measure(
    events: int = 1_000_000,
    live: int = 50_000,
    members: int = 3000,
    admin_url: str = ADMIN_URL,
    say: Callable[[str], None] = print,
    what_if: int | None = None,
) -> ScoringFigures:
    """Live consumption of `live` inputs and replay of `events` archived inputs, on a private
    database that is dropped afterwards, with the keyset read of the same rows; then a what-if
    of `what_if` inputs (as many as `events` when None, none when 0)."""
    database = f"party_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{database}"')
    pool = await asyncpg.create_pool(admin_url.rsplit("/", 1)[0] + f"/{database}", max_size=10)
    assert pool is not None
    try:
        schema = "scoring"
        async with pool.acquire() as conn:
            await migrate(conn, schema, SCORING.migrations())
        # Signed, as the service's log is: a signature per commit of the ledger.
        store = EventStore(pool, schema, signer=Signer.generate("scoring"), source="scoring")
        regulation = default_regulation()
        archive = Archive(pool, schema, regulation["id"])
        projector = LocalProjector(
            store, [ScoringReadModels(schema)], name="read", source="scoring"
        )
        service = ScoringService(
            store,
            archive,
            Directory(pool, schema),
            projector,
            clock=lambda: datetime(2010, 4, 30, tzinfo=UTC),
            timezone="Asia/Shanghai",
        )
        await service.publish_regulation(regulation, CommandContext("bench", "university_admin"))
        consumer = Projector(
            pool, schema, [ScoringInputs(service, archive, CATALOGUE.types_of(*INPUT_FAMILIES))]
        )

        inputs = [incoming(n, members) for n in range(live)]
        started = time.perf_counter()
        for start in range(0, len(inputs), 1000):
            await consumer.apply(inputs[start : start + 1000])
        live_elapsed = time.perf_counter() - started
        ledger = await pool.fetchval(f"SELECT count(*) FROM {schema}.events")
        say(
            f"    live consumption: {live / live_elapsed:,.0f} events/s "
            f"({live:,} inputs, {ledger:,} ledger events written)"
        )

        # The rest of the archive, bulk-loaded, for the replay.
        batch: list[tuple[object, ...]] = []
        for n in range(live, events):
            payload, occurred, branch = attendance(n, members)
            batch.append(
                (
                    uuid.UUID(int=n + 1),
                    payload.event_type,
                    occurred,
                    occurred,
                    branch,
                    "sec",
                    orjson.dumps(payload.model_dump(mode="json")).decode(),
                    [payload.member_id],
                    "activities",
                    n + 1,
                    None,
                )
            )
            if len(batch) == 50_000:
                await pool.copy_records_to_table("inputs", schema_name=schema, records=batch)
                batch.clear()
        if batch:
            await pool.copy_records_to_table("inputs", schema_name=schema, records=batch)
        keyset_rate = await keyset_read(pool, schema, say)
        archive_rate = await archive_read(archive, say)
        # The time limit of a replay in the service (PARTY_SCORING_COMPUTE_SECONDS, 60 s by
        # default) is a guard, not part of the figure: a slow machine still gets one.
        queries = ScoringQueries(service, archive, Offloader(1, 600.0))
        queries.offload.warm()
        started = time.perf_counter()
        report = await queries.replay()
        replay_elapsed = time.perf_counter() - started
        say(
            f"    replay: {report.inputs / replay_elapsed:,.0f} events/s "
            f"({report.inputs:,} inputs, {report.rows:,} member-periods, "
            f"{'equal to the live scores' if report.equal else 'the bulk never scored live'}), "
            f"{report.inputs / replay_elapsed / keyset_rate:.2f}× the keyset read"
        )
        await store.close()
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
        await admin.close()
    year = (
        await measure_what_if(events if what_if is None else what_if, say) if what_if != 0 else None
    )
    return ScoringFigures(
        live_events=live,
        live_rate=live / live_elapsed,
        ledger_events=ledger,
        replay_inputs=report.inputs,
        replay_rows=report.rows,
        replay_rate=report.inputs / replay_elapsed,
        keyset_rate=keyset_rate,
        archive_rate=archive_rate,
        what_if=year,
    )


#: What the archive reads of an input (services/scoring/archive.py, _INPUT_COLUMNS).
INPUT_COLUMNS = "event_id, type, occurred_at, recorded_at, branch_id, actor_id, data::text AS data"


async def keyset_read(pool: asyncpg.Pool, schema: str, say: Callable[[str], None]) -> float:
    """The archive's rows read in position order, pages of 10,000, each row decoded by the
    driver and nothing more: the better of two passes (the first also warms the cache)."""
    await pool.execute(
        f"CREATE INDEX IF NOT EXISTS bench_inputs_position ON {schema}.inputs (position)"
    )
    await pool.execute(f"VACUUM ANALYZE {schema}.inputs")
    best = 0.0
    async with pool.acquire() as conn:
        query = await conn.prepare(
            f"SELECT position, {INPUT_COLUMNS} FROM {schema}.inputs "
            "WHERE position > $1 ORDER BY position LIMIT 10000"
        )
        for _ in range(2):
            read, after = 0, 0
            started = time.perf_counter()
            while batch := await query.fetch(after):
                read += len(batch)
                after = batch[-1]["position"]
            best = max(best, read / (time.perf_counter() - started))
    say(f"    keyset read of the archive: {best:,.0f} rows/s ({read:,} rows, pages of 10,000)")
    return best


async def archive_read(archive: Archive, say: Callable[[str], None]) -> float:
    """The archive read alone as the replay does it: every row decoded into an input."""
    started = time.perf_counter()
    read = 0
    async for page in archive.all_inputs():
        read += len(page)
    rate = read / (time.perf_counter() - started)
    say(f"    the archive read into inputs (Archive.all_inputs): {rate:,.0f} rows/s")
    return rate


def profile_replay(path: str, inputs: int, members: int = 3000) -> float:
    """compute_replay (the fold of the replay, as its process runs it) of `inputs` synthetic
    attendance inputs under cProfile; the summary goes to `path`. Returns the seconds."""
    regulation = RegulationDocument.model_validate(default_regulation())
    book = RegulationBook.single(RegulationHistory([PublishedVersion(regulation, None, None)]))
    found = []
    for n in range(inputs):
        payload, occurred, branch = attendance(n, members)
        found.append(
            Input(
                pgproto.UUID(uuid.UUID(int=n + 1).bytes),
                payload.event_type,
                occurred,
                occurred,
                branch,
                "sec",
                orjson.loads(orjson.dumps(payload.model_dump(mode="json"))),
            )
        )
    zone = ZoneInfo("Asia/Shanghai")
    started = time.perf_counter()
    compute_replay(book, found, [], [], zone)
    plain = time.perf_counter() - started
    profiler = cProfile.Profile()
    profiler.enable()
    report = compute_replay(book, found, [], [], zone)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)
    with open(path, "w") as file:
        file.write(
            f"compute_replay of {inputs:,} synthetic attendance inputs "
            f"(bench_scoring.attendance, {members:,} members, {report.rows:,} member-periods)\n"
            f"without the profiler: {plain:.2f} s, {inputs / plain:,.0f} inputs/s\n"
            f"    .venv/bin/python -m tests.bench.bench_scoring --profile-replay {path} "
            f"--profile-inputs {inputs}\n\n" + out.getvalue()
        )
    return plain


# -- a whole university's year, for the what-if ----------------------------------------------------

UNIVERSITY_BRANCHES = 100
BRANCH_MEMBERS = 50
YEAR_START = date(2010, 5, 1)  # the 2010 period of the shipped regulation: May to December
YEAR_DAYS = 245
REVIEW_GRADES = ["excellent", "good", "good", "pass", "pass", "fail"]
#: Of every 100 inputs of a member's year: attendance at meetings and activities, reports and
#: their reviews, the rest (agreements, pairings, plaques, discipline) rare.
MIX = ["attendance"] * 70 + ["submitted"] * 14 + ["reviewed"] * 12 + ["corrected"] * 2
MIX += ["agreement", "pairing"]


def university_year(
    inputs: int = 1_000_000,
    branches: int = UNIVERSITY_BRANCHES,
    members: int = BRANCH_MEMBERS,
) -> dict[str, list[Input]]:
    """`inputs` archived inputs of a university's year, by branch: `branches` branches of
    `members` members, each with meetings, activities (volunteer hours), situation and thought
    reports and their reviews, corrections of attendance and re-reviews, agreements and
    pairings. Event ids are the driver's UUIDs, as the archive gives them."""
    rng = random.Random(2010)
    by_branch: dict[str, list[Input]] = {}
    per_member = max(1, inputs // (branches * members))
    made = 0
    for b in range(branches):
        branch = f"u{b:03d}"
        found: list[Input] = []
        for m in range(members):
            member = f"{branch}-m{m:02d}"
            last_attendance: Input | None = None
            last_review: Input | None = None
            for k in range(per_member if made + per_member <= inputs else inputs - made):
                n = made + k
                day = YEAR_START + timedelta(days=rng.randrange(YEAR_DAYS))
                at = datetime(day.year, day.month, day.day, 11, tzinfo=UTC)
                kind = rng.choice(MIX)
                data: dict[str, object]
                if kind == "corrected" and last_attendance is None:
                    kind = "attendance"
                if kind == "reviewed" and last_review is None and rng.random() < 0.1:
                    kind = "submitted"
                if kind in ("attendance", "corrected"):
                    activity = rng.choice(KINDS)
                    status = rng.choice(STATUSES)
                    data = {
                        "activity_id": f"{branch}-a{n // 40}",
                        "member_id": member,
                        "status": status,
                        "excuse": "病假" if status == "excused" else None,
                        "activity_kind": activity,
                        "branch_id": branch,
                        "group_id": None,
                        "activity_date": day.isoformat(),
                        "volunteer_hours": rng.choice(["1", "2", "2.5", "4"])
                        if activity == "volunteer_service" and status == "present"
                        else None,
                    }
                    type_ = "attendance.recorded"
                    if kind == "corrected":
                        assert last_attendance is not None
                        type_ = "attendance.corrected"
                        data["corrects_event_id"] = str(last_attendance.event_id)
                        data["previous_status"] = last_attendance.data["status"]
                        data["reason"] = "登记有误"
                elif kind == "submitted":
                    on_time = rng.random() < 0.85
                    type_ = "report.submitted"
                    data = {
                        "obligation_id": f"{member}-o{n}",
                        "member_id": member,
                        "kind": rng.choice(["situation", "situation", "thought"]),
                        "branch_id": branch,
                        "due_on": day.isoformat(),
                        "submitted_at": at.isoformat(),
                        "on_time": on_time,
                        "days_late": 0 if on_time else rng.randrange(1, 10),
                    }
                elif kind == "reviewed":
                    type_ = "report.reviewed"
                    again = last_review is not None and rng.random() < 0.1
                    data = {
                        "obligation_id": f"{member}-o{n}",
                        "member_id": member,
                        "kind": rng.choice(["situation", "thought"]),
                        "branch_id": branch,
                        "grade": rng.choice(REVIEW_GRADES),
                        "reviewer_id": f"{branch}-m00",
                        "reviewed_at": at.isoformat(),
                        "on_time": True,
                        "review_number": 2 if again else 1,
                        "supersedes_event_id": str(last_review.event_id)
                        if again and last_review is not None
                        else None,
                    }
                elif kind == "agreement":
                    type_ = "responsibility.agreement_signed"
                    data = {
                        "agreement_id": f"{member}-g{n}",
                        "member_id": member,
                        "academic_year": "2010-2011",
                        "signed_on": day.isoformat(),
                        "expires_on": "2011-07-31",
                    }
                else:
                    type_ = "pairing.formed"
                    data = {
                        "pairing_id": f"{member}-p{n}",
                        "mentor_id": member,
                        "mentee_id": f"{branch}-m{(m + 1) % members:02d}",
                        "formed_on": day.isoformat(),
                    }
                input_ = Input(
                    pgproto.UUID(uuid.UUID(int=n + 1).bytes), type_, at, at, branch, "sec", data
                )
                if type_ == "attendance.recorded":
                    last_attendance = input_
                elif type_ == "report.reviewed":
                    last_review = input_
                found.append(input_)
            made += per_member
        by_branch[branch] = sorted(found, key=lambda i: (i.occurred_at, str(i.event_id)))
    return by_branch


def alternative_regulation() -> RegulationDocument:
    """The draft a what-if tries: the shipped regulation with meetings worth more, a higher
    volunteer cap and a new rule for reports reviewed good."""
    raw = default_regulation()
    rules = []
    for rule in raw["rules"]:
        rule = dict(rule)
        if rule["id"] in ("all-member-meeting", "group-meeting"):
            rule["points"] = "2"
        if rule["id"] == "volunteer-hours":
            rule["cap"] = "16"
        rules.append(rule)
    rules.append(
        {
            "id": "report-graded-good",
            "title": {"zh": "汇报评为良好", "en": "Report reviewed good"},
            "on": "report.reviewed",
            "when": {"grade": "good"},
            "points": "0.5",
            "cap": "3",
        }
    )
    document, errors = parse_document({**raw, "version": 2, "rules": rules})
    assert not errors, errors
    assert document is not None
    return document


@dataclass(frozen=True)
class WhatIfFigures:
    inputs: int
    members: int
    branches: int
    seconds: float  # through the offloader: sent to a process of its own, computed, answered
    compute_seconds: float  # compute_what_if alone, in this process


async def measure_what_if(inputs: int, say: Callable[[str], None] = print) -> WhatIfFigures:
    """A what-if of a whole university's year under the alternative regulation: the inputs as
    queries.what_if reads them (BranchInputs of each branch, old and new sharing them), sent
    a branch at a time to compute_what_if off the event loop (Offloader.stream, as the service
    runs it; the database reads are not in the figure) and, for the arithmetic alone, computed
    in this process."""
    regulation = RegulationDocument.model_validate(default_regulation())
    live_book = RegulationBook.single(
        RegulationHistory([PublishedVersion(regulation, uuid.UUID(int=0), None)])
    )
    alternative = alternative_regulation()
    period = alternative.period("2010")
    assert period is not None
    alt_book = RegulationBook.single(RegulationHistory([PublishedVersion(alternative, None, None)]))
    year = university_year(inputs)
    branches: list[tuple[BranchInputs, BranchInputs]] = []
    for branch_id, found in year.items():
        old_governing = live_book.governing(branch_id, "2010")
        new_governing = alt_book.governing(branch_id, "2010")
        assert old_governing is not None
        assert new_governing is not None
        participants = [
            Participant(f"{branch_id}-m{m:02d}", branch_id, m % 10 == 9)
            for m in range(BRANCH_MEMBERS)
        ]
        old = BranchInputs(branch_id, "2010", old_governing, participants, found, [])
        new = BranchInputs(branch_id, "2010", new_governing, participants, found, [])
        branches.append((old, new))
    total = sum(len(found) for found in year.values())
    job = WhatIfJob("2010", alternative.id, alternative.version, live_book, alt_book)
    zone = ZoneInfo("Asia/Shanghai")
    offload = Offloader(1, 600.0)
    offload.warm()

    async def pages() -> AsyncIterator[list[tuple[BranchInputs, BranchInputs]]]:
        for pair in branches:  # as queries.what_if sends them: a branch as it is read
            yield [pair]

    started = time.perf_counter()
    result = await offload.stream(compute_what_if_pages, pages(), job, zone)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    again = compute_what_if(job, branches, zone)
    compute_seconds = time.perf_counter() - started
    assert again == result, "the what-if computed apart differs from the one computed here"
    say(
        f"    what-if of {total:,} inputs ({len(result['members']):,} members in "
        f"{len(branches)} branches, {result['grades_changed']:,} grades changed): "
        f"{seconds:.2f} s off the loop, {compute_seconds:.2f} s of arithmetic"
    )
    return WhatIfFigures(total, len(result["members"]), len(branches), seconds, compute_seconds)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000, help="inputs replayed")
    parser.add_argument("--live", type=int, default=50_000, help="inputs consumed live")
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument(
        "--what-if", type=int, default=None, help="inputs of the what-if (default: --events)"
    )
    parser.add_argument("--profile-replay", metavar="FILE", help="profile the fold, then stop")
    parser.add_argument("--profile-inputs", type=int, default=200_000)
    args = parser.parse_args()
    if args.profile_replay:
        seconds = profile_replay(args.profile_replay, args.profile_inputs, args.members)
        print(f"{args.profile_inputs / seconds:,.0f} inputs/s; profile in {args.profile_replay}")
        return
    print(
        f"scoring benchmark: {args.live:,} live, {args.events:,} replayed, "
        f"{args.members:,} members; {platform.node()}, {os.cpu_count()} cores",
        flush=True,
    )
    figures = await measure(args.events, args.live, args.members, what_if=args.what_if)
    rows = [
        (
            "live consumption (batches of 1,000: archive, re-score, ledger)",
            f"{figures.live_rate:,.0f} events/s ({figures.ledger_events:,} ledger events written)",
        ),
        (
            f"replay from the archive ({figures.replay_inputs:,} inputs, "
            f"{figures.replay_rows:,} member-periods)",
            f"{figures.replay_rate:,.0f} events/s, {figures.replay_ratio:.2f}× the keyset read",
        ),
        (
            "PostgreSQL's ordered keyset read of the same rows (pages of 10,000)",
            f"{figures.keyset_rate:,.0f} rows/s",
        ),
        (
            "the archive read into inputs (part of the replay)",
            f"{figures.archive_rate:,.0f} rows/s",
        ),
    ]
    if figures.what_if is not None:
        year = figures.what_if
        rows.append(
            (
                f"what-if of a university's year ({year.inputs:,} inputs, {year.members:,} "
                f"members, {year.branches} branches), off the event loop",
                f"{year.seconds:.2f} s ({year.seconds / 10:.2f}× the 10 s target; "
                f"{year.inputs / year.seconds:,.0f} inputs/s, "
                f"{year.inputs / year.seconds / figures.keyset_rate:.2f}× the keyset read); "
                f"arithmetic alone {year.compute_seconds:.2f} s",
            )
        )
    print()
    print("| figure | measured |")
    print("|---|---|")
    for figure, value in rows:
        print(f"| {figure} | {value} |")


if __name__ == "__main__":
    uvloop.run(main())
