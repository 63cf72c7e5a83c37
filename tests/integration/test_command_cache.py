"""`StreamCache` and `execute_batch` (runtime.commands) against the real PostgreSQL, with
hypothesis: a decision made through a cache sees exactly what a fresh read shows, even with
other replicas (caches of their own, or none) appending to the same streams, and small caches
that forget streams; a batch decides and appends as the same commands run one after the other
through `execute` would have, idempotency keys and refusals included.

Every command of these tests reads one or two streams, records what it saw, and appends 0..3
events to the streams it read. Its events carry what it saw (in `reason`) and have ids derived
from its name and what it saw: two runs in which the same command saw the same thing write the
same events, so the logs of two schemas can be compared event by event."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4, uuid5

import asyncpg
import pytest
from hypothesis import HealthCheck, event, example, given, note, settings
from hypothesis import strategies as st

from contracts.events.deadline import DeadlineWithdrawn
from runtime.commands import (
    BatchCommand,
    Change,
    CommandContext,
    Decide,
    Decision,
    LoadedStream,
    StreamCache,
    execute,
    execute_batch,
    load_many,
    typed,
)
from runtime.decider import CommandRefused
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    AppendResult,
    ConcurrencyConflict,
    EventStore,
    IdempotencyKey,
    IdempotencyKeyReused,
    load_migrations,
    migrate,
)
from tests.support.keys import signer

WHEN = datetime(2024, 3, 1, 9, tzinfo=UTC)
NAMESPACE = UUID("6f1c2d4e-8a9b-4c3d-9e2f-0a1b2c3d4e5f")
STREAMS = ("deadline-a", "deadline-b", "deadline-c")
BATCH_STREAMS = ("deadline-a", "deadline-b", "deadline-c", "deadline-d")
KEYS = ("k0", "k1", "k2")
#: Cache sizes, in events: the tiny ones forget streams (and never hold one longer than them).
CACHE_SIZES = st.sampled_from([1, 2, 3, 5, 50_000])
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- the commands --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """One command: the streams it reads and how many events it appends to each of them."""

    tag: str
    reads: tuple[str, ...]
    appends: tuple[int, ...]
    key: str | None = None
    fingerprint: str = ""
    record_no_op: bool = True
    refuse: bool = False

    def context(self) -> CommandContext:
        return CommandContext(
            "notify",
            "system",
            idempotency=IdempotencyKey(self.key, self.fingerprint) if self.key else None,
            correlation_id=uuid5(NAMESPACE, f"correlation/{self.tag}"),
        )


@dataclasses.dataclass(frozen=True)
class Seen:
    """What one decision of a command saw: the ids of each stream's events, in order."""

    tag: str
    streams: Mapping[str, tuple[UUID, ...]]


def check_consistent(stream_id: str, stream: LoadedStream) -> None:
    """A loaded stream is whole: versions 1..n of its own events, each parsed."""
    assert stream.stream_id == stream_id
    assert stream.version == len(stream.recorded) == len(stream.events)
    assert [e.stream_version for e in stream.recorded] == list(range(1, stream.version + 1))
    assert all(e.stream_id == stream_id for e in stream.recorded)
    assert stream.events == [typed(e) for e in stream.recorded]


def decider(plan: Plan, seen: list[Seen]) -> Decide:
    def decide(loaded: Mapping[str, LoadedStream]) -> Decision:
        assert set(loaded) == set(plan.reads)
        for stream_id, stream in loaded.items():
            check_consistent(stream_id, stream)
        view = {s: tuple(e.event_id for e in loaded[s].recorded) for s in plan.reads}
        seen.append(Seen(plan.tag, view))
        if plan.refuse:
            raise CommandRefused("test_refusal", f"{plan.tag} refuses")
        digest = hashlib.sha256(repr(sorted(view.items())).encode()).hexdigest()[:16]
        changes = [
            Change(
                stream_id,
                DeadlineWithdrawn(
                    deadline_id=plan.tag,
                    kind="meeting",
                    branch_id=None,
                    member_id=None,
                    reason=f"{stream_id}@{len(view[stream_id])} saw {digest}",
                    cause_event_id=view[stream_id][-1] if view[stream_id] else None,
                ),
                WHEN,
                None,
                event_id=uuid5(NAMESPACE, f"{plan.tag}/{stream_id}/{j}/{digest}"),
            )
            for stream_id, count in zip(plan.reads, plan.appends, strict=True)
            for j in range(count)
        ]
        return Decision(changes)

    return decide


@st.composite
def plan_lists(
    draw: st.DrawFn,
    prefix: str,
    streams: Sequence[str],
    min_size: int,
    max_size: int,
    *,
    keys: Sequence[str] = (),
    refusals: bool = False,
    other_fingerprints: bool = False,
) -> list[Plan]:
    plans = []
    for i in range(draw(st.integers(min_size, max_size))):
        reads = tuple(draw(st.lists(st.sampled_from(streams), min_size=1, max_size=2, unique=True)))
        no_op = draw(st.integers(0, 3)) == 0
        appends = tuple(0 if no_op else draw(st.integers(0, 3)) for _ in reads)
        key = draw(st.sampled_from((None, *keys))) if keys else None
        fingerprint = f"fp-{key}"
        if other_fingerprints and key is not None and draw(st.integers(0, 5)) == 0:
            fingerprint = f"other-{key}"
        plans.append(
            Plan(
                f"{prefix}{i}",
                reads,
                appends,
                key=key,
                fingerprint=fingerprint,
                record_no_op=draw(st.booleans()),
                refuse=refusals and draw(st.integers(0, 5)) == 0,
            )
        )
    return plans


# -- the stores ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fresh_store(pool: asyncpg.Pool) -> AsyncIterator[EventStore]:
    """A migrated event-store schema of its own, dropped afterwards."""
    schema = f"t_{uuid4().hex[:12]}"
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
    store = EventStore(pool, schema, signer=signer("notify"), source="notify")
    try:
        yield store
    finally:
        await store.close()
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.asynccontextmanager
async def replica(pool: asyncpg.Pool, store: EventStore) -> AsyncIterator[EventStore]:
    """The same log through another pool, as another process of the service sees it."""
    other = EventStore(pool, store.schema, signer=signer("notify"), source="notify")
    try:
        yield other
    finally:
        await other.close()


@pytest.fixture
async def second_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


def cache_of(size: int | None) -> StreamCache | None:
    return StreamCache(max_events=size) if size is not None else None


Row = tuple[Any, ...]


async def streams_of(store: EventStore) -> dict[str, list[Row]]:
    """Every stream of the log, event by event (what two schemas can have in common)."""
    streams: dict[str, list[Row]] = {}
    for e in await store.read_all(limit=100_000):
        streams.setdefault(e.stream_id, []).append(
            (
                e.stream_version,
                e.event_id,
                e.type,
                e.data,
                e.actor_id,
                e.actor_role,
                e.correlation_id,
                e.causation_id,
            )
        )
    return streams


async def log_ids(store: EventStore) -> list[UUID]:
    return [e.event_id for e in await store.read_all(limit=100_000)]


async def check_positions(store: EventStore, results: Sequence[AppendResult]) -> None:
    """Each result's positions hold its events (within one log)."""
    log = {e.position: e.event_id for e in await store.read_all(limit=100_000)}
    for result in results:
        if result.first_position is None:
            assert result.last_position is None
            assert result.event_ids == []
            continue
        assert result.last_position is not None
        span = range(result.first_position, result.last_position + 1)
        assert [log[p] for p in span] == result.event_ids


def outcome(result: AppendResult) -> Row:
    """What two logs' results of the same command have in common (positions differ when the
    commands of a batch are written in another order than one after the other)."""
    return (
        result.stream_versions,
        result.event_ids,
        result.replayed,
        result.first_position is None,
    )


async def check_cache(cache: StreamCache | None, store: EventStore) -> None:
    """What a cache holds of a stream is what the log holds, as far as it goes."""
    if cache is None:
        return
    for stream_id in BATCH_STREAMS:
        held = cache.get(stream_id)
        if held is not None:
            check_consistent(stream_id, held)
            assert held.recorded == (await store.read_stream(stream_id))[: held.version]


# -- 1. the cache under other writers ------------------------------------------------------


@st.composite
def interleavings(draw: st.DrawFn) -> list[tuple[int, Plan]]:
    """Commands, each run by one of three replicas: two with caches, one without."""
    plans = draw(plan_lists("c", STREAMS, 1, 16))
    return [(draw(st.integers(0, 2)), plan) for plan in plans]


@HYPOTHESIS
@given(steps=interleavings(), sizes=st.tuples(CACHE_SIZES, CACHE_SIZES))
async def test_decisions_through_caches_see_what_a_fresh_read_shows(
    pool: asyncpg.Pool,
    second_pool: asyncpg.Pool,
    steps: list[tuple[int, Plan]],
    sizes: tuple[int, int],
) -> None:
    """One command at a time, by replicas taking turns: every decision sees exactly the
    streams `load_many` reads at that moment, and the log ends as one cache-less process
    running the same commands writes it (the same events, versions and positions)."""
    note(f"steps: {steps}, cache sizes: {sizes}")
    async with (
        fresh_store(pool) as one,
        replica(second_pool, one) as two,
        fresh_store(pool) as reference,
    ):
        caches = [cache_of(sizes[0]), cache_of(sizes[1]), None]
        stores = [one, two, one]
        seen: list[Seen] = []
        seen_alone: list[Seen] = []
        for replica_index, plan in steps:
            store, cache = stores[replica_index], caches[replica_index]
            fresh_reads: list[dict[str, LoadedStream]] = []

            async def prepare(
                loaded: Mapping[str, LoadedStream], plan: Plan = plan, reads: Any = fresh_reads
            ) -> None:
                fresh = await load_many(one, plan.reads)
                reads.append(fresh)
                assert dict(loaded) == fresh

            result = await execute(
                store, plan.context(), plan.reads, decider(plan, seen), prepare=prepare, cache=cache
            )
            alone = await execute(reference, plan.context(), plan.reads, decider(plan, seen_alone))
            assert len(fresh_reads) == 1  # no conflict: nobody else wrote meanwhile
            assert dataclasses.replace(result, recorded_at=alone.recorded_at) == alone
            for c in caches:
                await check_cache(c, one)
        assert seen == seen_alone
        assert await streams_of(one) == await streams_of(reference)
        assert await log_ids(one) == await log_ids(reference)


@HYPOTHESIS
@given(
    lanes=st.tuples(
        plan_lists("a", STREAMS, 1, 8),
        plan_lists("b", STREAMS, 1, 8),
        plan_lists("c", STREAMS, 0, 4),
    ),
    sizes=st.tuples(CACHE_SIZES, CACHE_SIZES),
)
async def test_concurrent_replicas_with_caches_decide_on_the_streams_as_they_are(
    pool: asyncpg.Pool,
    second_pool: asyncpg.Pool,
    lanes: tuple[list[Plan], list[Plan], list[Plan]],
    sizes: tuple[int, int],
) -> None:
    """Two replicas with caches and a cache-less writer at once, on the same few streams: what
    a decision sees through the cache is never other than the log (a prefix of a read made right
    after it); every decision whose append succeeded saw the streams exactly as they were when
    it was written; and the log is what one cache-less process gives running the commands that
    succeeded, one after the other, in the order they were written."""
    async with (
        fresh_store(pool) as one,
        replica(second_pool, one) as two,
        fresh_store(pool) as reference,
    ):
        caches = [cache_of(sizes[0]), cache_of(sizes[1]), None]
        seen: list[Seen] = []
        outcomes: dict[str, AppendResult | ConcurrencyConflict] = {}

        async def run(store: EventStore, cache: StreamCache | None, plans: list[Plan]) -> None:
            for plan in plans:

                async def prepare(loaded: Mapping[str, LoadedStream], plan: Plan = plan) -> None:
                    fresh = await load_many(one, plan.reads)
                    for stream_id in plan.reads:
                        then, now = loaded[stream_id], fresh[stream_id]
                        assert now.version >= then.version
                        assert now.recorded[: then.version] == then.recorded
                        assert now.events[: then.version] == then.events

                try:
                    outcomes[plan.tag] = await execute(
                        store,
                        plan.context(),
                        plan.reads,
                        decider(plan, seen),
                        prepare=prepare,
                        cache=cache,
                    )
                except ConcurrencyConflict as conflict:  # retried RETRIES times, in vain
                    outcomes[plan.tag] = conflict

        await asyncio.gather(
            run(one, caches[0], lanes[0]), run(two, caches[1], lanes[1]), run(one, None, lanes[2])
        )
        note(f"lanes: {lanes}, cache sizes: {sizes}")
        retried = len(seen) - len(outcomes)
        event("decisions retried after a conflict" if retried else "no conflict")
        if any(isinstance(r, ConcurrencyConflict) for r in outcomes.values()):
            event("a command gave up after its retries")
        final = {s: [e.event_id for e in await one.read_stream(s)] for s in STREAMS}
        plans = {plan.tag: plan for lane in lanes for plan in lane}
        last_seen = {s.tag: s for s in seen}  # the decision of the attempt that was written
        written = 0
        for tag, result in outcomes.items():
            if isinstance(result, ConcurrencyConflict):
                continue
            plan, view = plans[tag], last_seen[tag].streams
            ids = iter(result.event_ids)
            for stream_id, count in zip(plan.reads, plan.appends, strict=True):
                version = len(view[stream_id])
                assert final[stream_id][:version] == list(view[stream_id])
                assert result.stream_versions[stream_id] == version + count
                mine = [next(ids) for _ in range(count)]
                assert final[stream_id][version : version + count] == mine
                written += count
        assert sum(len(ids) for ids in final.values()) == written
        for c in caches:
            await check_cache(c, one)

        # The same commands, one after the other, in the order of the log.
        in_order = sorted(
            (r.first_position, tag)
            for tag, r in outcomes.items()
            if isinstance(r, AppendResult) and r.first_position is not None
        )
        for _, tag in in_order:
            result = await execute(
                reference, plans[tag].context(), plans[tag].reads, decider(plans[tag], [])
            )
            original = outcomes[tag]
            assert isinstance(original, AppendResult)
            assert result.event_ids == original.event_ids
        assert await streams_of(one) == await streams_of(reference)
        assert await log_ids(one) == await log_ids(reference)


async def test_the_cache_reads_only_what_is_new_and_rereads_what_it_forgot(
    pool: asyncpg.Pool,
) -> None:
    """Not vacuous: the cache is asked for the versions it holds; a forgotten stream (or one
    larger than the cache) is read from the start."""
    asked: list[dict[str, int]] = []

    class Watched(EventStore):
        async def read_for_command(self, stream_ids: Any, key: Any, after: Any = None) -> Any:
            asked.append(dict(zip(stream_ids, after or [0] * len(stream_ids), strict=True)))
            return await super().read_for_command(stream_ids, key, after)

    async with fresh_store(pool) as plain:
        store = Watched(pool, plain.schema, signer=signer("notify"), source="notify")
        try:
            cache = StreamCache(max_events=4)
            for i, (reads, appends) in enumerate(
                [
                    (("deadline-a",), (2,)),  # a from 0 (kept at 0); a: 2
                    (("deadline-a",), (1,)),  # a after 0; a: 3
                    (("deadline-b",), (1,)),  # b from 0; b: 1
                    (("deadline-a", "deadline-b"), (0, 1)),  # after 2 and 0; b: 2
                    (("deadline-a", "deadline-b"), (2, 0)),  # after 3, 1: 5 events, a forgotten
                    (("deadline-a", "deadline-b"), (0, 0)),  # a from 0: 5 events, not kept
                    (("deadline-a", "deadline-b"), (0, 0)),  # a from 0 again, b after 2
                ]
            ):
                plan = Plan(f"w{i}", reads, appends)
                await execute(store, plan.context(), reads, decider(plan, []), cache=cache)
        finally:
            await store.close()
    assert asked == [
        {"deadline-a": 0},
        {"deadline-a": 0},
        {"deadline-b": 0},
        {"deadline-a": 2, "deadline-b": 0},
        {"deadline-a": 3, "deadline-b": 1},
        {"deadline-a": 0, "deadline-b": 2},
        {"deadline-a": 0, "deadline-b": 2},
    ]


# -- 2. a batch against one command after the other ----------------------------------------


async def run_each(
    store: EventStore, plans: Sequence[Plan], seen: list[Seen]
) -> list[AppendResult]:
    return [
        await execute(
            store, plan.context(), plan.reads, decider(plan, seen), record_no_op=plan.record_no_op
        )
        for plan in plans
    ]


def batch_of(plans: Sequence[Plan], seen: list[Seen]) -> list[BatchCommand]:
    return [
        BatchCommand(plan.context(), plan.reads, decider(plan, seen), plan.record_no_op)
        for plan in plans
    ]


@HYPOTHESIS
@given(
    before=plan_lists("p", BATCH_STREAMS, 0, 4, keys=KEYS[:1]),
    batch=plan_lists("b", BATCH_STREAMS, 1, 10, keys=KEYS),
    cache_size=st.none() | CACHE_SIZES,
)
@example(  # a key repeated in an earlier wave (test_a_key_repeated_in_a_later_wave_...)
    before=[],
    batch=[
        Plan("b0", ("deadline-a",), (1,)),
        Plan("b1", ("deadline-a",), (1,), key="k1", fingerprint="fp-k1"),
        Plan("b2", ("deadline-b",), (1,), key="k1", fingerprint="fp-k1"),
    ],
    cache_size=None,
)
async def test_a_batch_decides_as_one_command_after_the_other(
    pool: asyncpg.Pool, before: list[Plan], batch: list[Plan], cache_size: int | None
) -> None:
    """Overlapping streams, no-ops recorded and not, idempotency keys used before the batch
    and repeated within it: the same results, events and idempotency results as `execute`
    one command at a time; and the batch again appends nothing and returns the first results."""
    note(f"before: {before}\nbatch: {batch}\ncache size: {cache_size}")
    async with fresh_store(pool) as batched, fresh_store(pool) as sequential:
        cache = cache_of(cache_size)
        await run_each(batched, before, [])
        await run_each(sequential, before, [])

        one_by_one = await run_each(sequential, batch, [])
        together = await execute_batch(batched, batch_of(batch, []), cache)
        assert len(together) == len(batch)
        await check_positions(sequential, one_by_one)
        await check_positions(batched, together)
        assert [outcome(r) for r in together] == [outcome(r) for r in one_by_one]
        assert await streams_of(batched) == await streams_of(sequential)
        await check_cache(cache, batched)

        # Again, the commands with a key: their first results, and nothing new.
        keyed = [plan for plan in batch if plan.key is not None]
        length = len(await log_ids(batched))
        again = await execute_batch(batched, batch_of(keyed, []), cache)
        again_one_by_one = await run_each(sequential, keyed, [])
        assert [outcome(r) for r in again] == [outcome(r) for r in again_one_by_one]
        assert len(await log_ids(batched)) == length
        firsts = {plan.tag: r for plan, r in zip(batch, together, strict=True)}
        for plan, result in zip(keyed, again, strict=True):
            assert plan.key is not None
            recorded = await batched.find_result(plan.key)
            if plan.record_no_op or any(plan.appends) or recorded is not None:
                assert recorded is not None
                assert result == recorded[1]
            if plan.record_no_op or any(plan.appends):
                assert result == dataclasses.replace(firsts[plan.tag], replayed=True)
        assert await streams_of(batched) == await streams_of(sequential)


@HYPOTHESIS
@given(
    before=plan_lists("p", BATCH_STREAMS, 0, 3, keys=KEYS[:1]),
    batch=plan_lists("b", BATCH_STREAMS, 1, 8, keys=KEYS, refusals=True, other_fingerprints=True),
    cache_size=st.none() | CACHE_SIZES,
)
@example(  # test_a_refusal_leaves_what_one_command_after_the_other_leaves
    before=[],
    batch=[Plan("b0", ("deadline-a",), (1,)), Plan("b1", ("deadline-b",), (1,), refuse=True)],
    cache_size=None,
)
async def test_a_batch_refuses_as_one_command_after_the_other(
    pool: asyncpg.Pool, before: list[Plan], batch: list[Plan], cache_size: int | None
) -> None:
    """With refusals (CommandRefused from a decision) and keys reused for other commands
    (IdempotencyKeyReused): the batch raises what one command after the other raises first,
    having written what they wrote before it, and nothing else."""
    note(f"before: {before}\nbatch: {batch}\ncache size: {cache_size}")
    async with fresh_store(pool) as batched, fresh_store(pool) as sequential:
        await run_each(batched, before, [])
        await run_each(sequential, before, [])

        one_by_one: list[AppendResult] = []
        first_error: Exception | None = None
        for plan in batch:
            try:
                one_by_one += await run_each(sequential, [plan], [])
            except (CommandRefused, IdempotencyKeyReused) as error:
                first_error = error
                break
        batch_error: Exception | None = None
        together: list[AppendResult] = []
        try:
            together = await execute_batch(batched, batch_of(batch, []), cache_of(cache_size))
        except (CommandRefused, IdempotencyKeyReused) as error:
            batch_error = error
        assert repr(batch_error) == repr(first_error)
        if first_error is None:
            assert [outcome(r) for r in together] == [outcome(r) for r in one_by_one]
        assert await streams_of(batched) == await streams_of(sequential)


# -- a batch meeting another writer --------------------------------------------------------


def waves_of(plans: Sequence[Plan]) -> list[int]:
    """The wave of each command, as execute_batch documents it: after the last command before
    it that reads one of its streams or uses its key, and never before the command before it."""
    waves: list[int] = []
    last: dict[str, int] = {}
    for plan in plans:
        touches = [*plan.reads, *([f"key:{plan.key}"] if plan.key is not None else [])]
        wave = max(1 + max((last.get(t, -1) for t in touches), default=-1), *waves[-1:], 0)
        waves.append(wave)
        last.update(dict.fromkeys(touches, wave))
    return waves


class Interfering(EventStore):
    """A log in which another writer appends right after the `at`-th read of streams."""

    def __init__(self, *args: Any, at: int, interfere: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at, self.interfere, self.reads = at, interfere, 0

    async def _after_read(self) -> None:
        self.reads += 1
        if self.reads == self.at:
            await self.interfere()

    async def read_streams(self, stream_ids: Sequence[str]) -> Any:
        streams = await super().read_streams(stream_ids)
        await self._after_read()
        return streams

    async def read_streams_after(self, after: Mapping[str, int]) -> Any:
        streams = await super().read_streams_after(after)
        await self._after_read()
        return streams


@HYPOTHESIS
@given(
    batch=plan_lists("b", STREAMS, 1, 8),
    foreign=plan_lists("f", STREAMS, 1, 1),
    at=st.integers(1, 4),
    cache_size=st.none() | CACHE_SIZES,
)
async def test_a_batch_meeting_another_writer_decides_again_after_it(
    pool: asyncpg.Pool,
    batch: list[Plan],
    foreign: list[Plan],
    at: int,
    cache_size: int | None,
) -> None:
    """Another writer appends between a wave's read and its appends: the commands it got in
    the way of run again (through `execute`), so the log is as if it had written just before
    that wave: the waves before it, it, then the rest, one command after the other."""
    # The reads counted are the waves' (a retry after the conflict reads through
    # `read_for_command`): the `at`-th is wave `at - 1`'s, if there is one.
    note(f"batch: {batch}\nforeign: {foreign}, after read {at}, cache size: {cache_size}")
    waves = waves_of(batch)
    async with fresh_store(pool) as plain, fresh_store(pool) as sequential:
        interloper = foreign[0]
        interfered: list[AppendResult] = []

        async def interfere() -> None:
            interfered.extend(await run_each(plain, [interloper], []))

        store = Interfering(
            pool,
            plain.schema,
            signer=signer("notify"),
            source="notify",
            at=at,
            interfere=interfere,
        )
        try:
            together = await execute_batch(store, batch_of(batch, []), cache_of(cache_size))
        finally:
            await store.close()
        if interfered:  # the at-th read was a wave's
            event(
                "the other writer got in the way"
                if any(
                    set(p.reads) & set(interloper.reads)
                    for p, w in zip(batch, waves, strict=True)
                    if w == at - 1
                )
                else "the other writer wrote beside the wave"
            )
            # Of the wave it got in the way of, a no-op not recorded guards nothing: it stands
            # as decided, before the other writer.
            cut = at - 1
            early = [
                plan
                for plan, wave in zip(batch, waves, strict=True)
                if wave < cut or (wave == cut and not plan.record_no_op and not any(plan.appends))
            ]
            late = [plan for plan in batch if plan not in early]
            results = {
                p.tag: r for p, r in zip(early, await run_each(sequential, early, []), strict=True)
            }
            alone = await run_each(sequential, [interloper], [])
            results |= {
                p.tag: r for p, r in zip(late, await run_each(sequential, late, []), strict=True)
            }
            assert outcome(alone[0]) == outcome(interfered[0])
            one_by_one = [results[plan.tag] for plan in batch]
        else:
            one_by_one = await run_each(sequential, batch, [])
        assert [outcome(r) for r in together] == [outcome(r) for r in one_by_one]
        assert await streams_of(plain) == await streams_of(sequential)


# -- what the properties found, each on its own -------------------------------------------


async def both_ways(
    pool: asyncpg.Pool, plans: list[Plan]
) -> tuple[list[Row], list[Row], dict[str, list[Row]], dict[str, list[Row]]]:
    """The outcomes and streams of one command after the other, and of the batch."""
    async with fresh_store(pool) as batched, fresh_store(pool) as sequential:
        one_by_one = await run_each(sequential, plans, [])
        together = await execute_batch(batched, batch_of(plans, []))
        return (
            [outcome(r) for r in one_by_one],
            [outcome(r) for r in together],
            await streams_of(sequential),
            await streams_of(batched),
        )


def tags(streams: Mapping[str, list[Row]]) -> dict[str, list[str]]:
    """Which command wrote each event of each stream."""
    return {s: [row[3]["deadline_id"] for row in rows] for s, rows in streams.items()}


async def test_a_key_repeated_in_a_later_wave_replays_the_command_before_it(
    pool: asyncpg.Pool,
) -> None:
    """b1 and b2 share a key; b1 comes first, so one after the other b1 is decided and b2
    replays its result. In the batch b1 waits for b0 (same stream: wave 1) while b2 runs in
    wave 0: b2 is decided and written, and b1 replays b2's result."""
    plans = [
        Plan("b0", ("deadline-a",), (1,)),
        Plan("b1", ("deadline-a",), (1,), key="k", fingerprint="f"),
        Plan("b2", ("deadline-b",), (1,), key="k", fingerprint="f"),
    ]
    one_by_one, together, sequential, batched = await both_ways(pool, plans)
    assert tags(sequential) == {"deadline-a": ["b0", "b1"]}
    assert tags(batched) == tags(sequential)  # actual: {"deadline-a": ["b0"], "deadline-b": ["b2"]}
    assert together == one_by_one


async def test_a_key_repeated_in_the_same_wave_is_not_decided_again(pool: asyncpg.Pool) -> None:
    """b0 and b1 share a key and run in the same wave (other streams): one after the other,
    b1 returns b0's result without deciding; the batch decides b1 all the same, so a no-op that
    is not recorded returns its own result instead of b0's."""
    plans = [
        Plan("b0", ("deadline-a",), (1,), key="k", fingerprint="f"),
        Plan("b1", ("deadline-b",), (0,), key="k", fingerprint="f", record_no_op=False),
    ]
    one_by_one, together, _, _ = await both_ways(pool, plans)
    assert one_by_one[1] == (one_by_one[0][0], one_by_one[0][1], True, False)
    assert together == one_by_one  # actual: b1 -> ({"deadline-b": 0}, [], False, True)


async def test_a_key_repeated_in_the_same_wave_cannot_refuse_the_batch(
    pool: asyncpg.Pool,
) -> None:
    """As above, with b1 refusing: one after the other b1 is never decided (it replays b0's
    result) and b0 is written; the batch decides b1, raises its refusal and writes nothing."""
    plans = [
        Plan("b0", ("deadline-a",), (1,), key="k", fingerprint="f"),
        Plan("b1", ("deadline-b",), (1,), key="k", fingerprint="f", refuse=True),
    ]
    async with fresh_store(pool) as batched, fresh_store(pool) as sequential:
        one_by_one = await run_each(sequential, plans, [])
        assert one_by_one[1] == dataclasses.replace(one_by_one[0], replayed=True)
        together = await execute_batch(batched, batch_of(plans, []))  # raises CommandRefused
        assert [outcome(r) for r in together] == [outcome(r) for r in one_by_one]


@pytest.mark.parametrize(
    ("plans", "expected"),
    [
        pytest.param(
            [Plan("b0", ("deadline-a",), (1,)), Plan("b1", ("deadline-b",), (1,), refuse=True)],
            {"deadline-a": ["b0"]},  # actual: {} (b0, of b1's wave, is not written)
            id="an-earlier-command-of-the-same-wave-is-lost",
        ),
        pytest.param(
            [
                Plan("b0", ("deadline-a",), (1,)),
                Plan("b1", ("deadline-a",), (1,), refuse=True),
                Plan("b2", ("deadline-b",), (1,)),
            ],
            {"deadline-a": ["b0"]},  # actual: b2 (after b1, but of wave 0) is written too
            id="a-later-command-of-an-earlier-wave-is-written",
        ),
    ],
)
async def test_a_refusal_leaves_what_one_command_after_the_other_leaves(
    pool: asyncpg.Pool, plans: list[Plan], expected: dict[str, list[str]]
) -> None:
    """The docstring: 'An exception from a decision ... is raised after the waves before it
    were written (as one at a time would have)'. One at a time writes the commands before the
    refusal and none after it; the batch writes by waves instead."""
    async with fresh_store(pool) as batched, fresh_store(pool) as sequential:
        with pytest.raises(CommandRefused):
            await run_each(sequential, plans, [])
        assert tags(await streams_of(sequential)) == expected
        with pytest.raises(CommandRefused):
            await execute_batch(batched, batch_of(plans, []))
        assert tags(await streams_of(batched)) == expected


async def test_a_batch_raises_the_first_refusal_in_command_order(pool: asyncpg.Pool) -> None:
    """b1 (wave 1) and b2 (wave 0) refuse: one after the other b1's refusal is raised; the
    batch raises b2's, decided first."""
    plans = [
        Plan("b0", ("deadline-a",), (1,)),
        Plan("b1", ("deadline-a",), (1,), refuse=True),
        Plan("b2", ("deadline-b",), (1,), refuse=True),
    ]
    async with fresh_store(pool) as batched:
        with pytest.raises(CommandRefused, match="b1 refuses"):  # actual: "b2 refuses"
            await execute_batch(batched, batch_of(plans, []))
