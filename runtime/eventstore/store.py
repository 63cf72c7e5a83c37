"""The event store of one service: an append-only, hash-chained log in PostgreSQL.

Writers serialise on the chain head row. That one lock gives three guarantees at once: positions
are assigned in commit order (the relay can never skip an event that commits late), each event's
`prev_hash` is the hash of the event before it, and every check made under the lock (expected
versions, idempotency keys, unique claims) is free of races across processes.

To keep that lock from capping throughput, appends are group-committed: a single writer task per
process takes every append waiting in its queue and commits them in one transaction. Each append
still succeeds or fails on its own (a conflict in one does not affect the others).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from contracts.canonical import envelope_hash
from runtime.clock import Clock, utc_now
from runtime.db import Connection
from runtime.eventstore.models import (
    AppendResult,
    ConcurrencyConflict,
    EventMetadata,
    IdempotencyKey,
    IdempotencyKeyReused,
    LogTampered,
    RecordedEvent,
    StreamAppend,
    UniqueClaim,
    UniqueClaimTaken,
    envelope_document,
)
from runtime.eventstore.schema import quote_schema
from runtime.metrics import EVENTS_APPENDED, LOG_TAMPERED
from runtime.signing import KeyRing, Signer

#: The columns of the log; `signature` and `key_id` are set on the last event of each commit.
EVENT_COLUMNS = (
    "position",
    "event_id",
    "stream_id",
    "stream_version",
    "type",
    "schema_version",
    "branch_id",
    "occurred_at",
    "recorded_at",
    "actor_id",
    "actor_role",
    "correlation_id",
    "causation_id",
    "data",
    "hash",
    "prev_hash",
    "signature",
    "key_id",
)
SELECT_EVENTS = ", ".join(c if c != "data" else "data::text AS data" for c in EVENT_COLUMNS)
#: The same, of the log aliased `e` (in a join).
SELECT_E_EVENTS = ", ".join(
    f"e.{c}" if c != "data" else "e.data::text AS data" for c in EVENT_COLUMNS
)


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which a service's appends announce their last position."""
    return f"{schema}_events"


def row_to_event(row: asyncpg.Record) -> RecordedEvent:
    return RecordedEvent(
        position=row["position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        stream_version=row["stream_version"],
        type=row["type"],
        schema_version=row["schema_version"],
        branch_id=row["branch_id"],
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        actor_id=row["actor_id"],
        actor_role=row["actor_role"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        data=orjson.loads(row["data"]),
        hash=row["hash"],
        prev_hash=row["prev_hash"],
        signature=row["signature"],
        key_id=row["key_id"],
    )


@dataclass(eq=False)
class _PendingAppend:
    appends: tuple[StreamAppend, ...]
    metadata: EventMetadata
    idempotency: IdempotencyKey | None
    future: asyncio.Future[AppendResult] = field(repr=False)


class EventStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        *,
        clock: Clock = utc_now,
        max_batch: int = 500,
        signer: Signer | None = None,
        source: str | None = None,
        keyring: Callable[[], KeyRing] | None = None,
    ) -> None:
        self._pool = pool
        self.schema = schema
        self._s = quote_schema(schema)
        #: The service whose log this is (the name in its signatures).
        self.source = source or (signer.service if signer else schema)
        if signer is not None and signer.service != self.source:
            raise ValueError(f"the signing key is {signer.service}'s, not {self.source}'s")
        self.signer = signer
        self._keyring = keyring
        #: Heads of this log known to be signed by the service (this process wrote them, or
        #: their signature was checked): the next commit may extend them.
        self._trusted_heads: set[tuple[int, str]] = set()
        self._clock = clock
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_PendingAppend] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    # -- writing ------------------------------------------------------------------------------

    async def append(
        self,
        *appends: StreamAppend,
        metadata: EventMetadata,
        idempotency: IdempotencyKey | None = None,
    ) -> AppendResult:
        """Append events to one or more streams atomically.

        Raises ConcurrencyConflict when a stream is not at its expected version,
        UniqueClaimTaken when a claimed value belongs to another stream, and
        IdempotencyKeyReused when the key was used for a different command. With a key that was
        used for the same command, nothing is appended and the first result is returned.
        """
        streams = [a.stream_id for a in appends]
        if len(set(streams)) != len(streams):
            raise ValueError("each stream may appear only once in an append")
        pending = _PendingAppend(
            tuple(appends), metadata, idempotency, asyncio.get_running_loop().create_future()
        )
        self._queue.put_nowait(pending)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name=f"{self.schema}-writer")
        return await pending.future

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while not self._queue.empty():
            _fail(self._queue.get_nowait(), RuntimeError("the event store was closed"))

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [p for p in batch if not p.future.done()]  # callers that gave up
            if not batch:
                continue
            try:
                await self._commit(batch)
            except Exception as error:
                if len(batch) == 1:
                    _fail(batch[0], error)
                    continue
                # Find the one append that broke the batch; the others deserve to succeed.
                for pending in batch:
                    try:
                        await self._commit([pending])
                    except Exception as single_error:
                        _fail(pending, single_error)

    async def _commit(self, batch: list[_PendingAppend]) -> None:
        s = self._s
        outcomes: list[tuple[_PendingAppend, AppendResult | Exception]] = []
        async with self._pool.acquire() as conn, conn.transaction():
            head = await conn.fetchrow(
                f"SELECT head_position AS position, head_hash AS hash, "
                f"head_recorded_at AS recorded_at FROM {s}.lock_chain_head()"
            )
            assert head is not None, "chain_head row missing: run the migrations"
            if self.signer is not None:
                await self._check_head(conn, head["position"], head["hash"])
            # Under the lock, what the checks need in one round trip: the keys seen before,
            # each stream's version, the owners of the values claimed.
            known_keys, versions, owners = await self._under_lock(conn, batch)

            position: int = head["position"]
            prev_hash: str = head["hash"]
            now = self._clock()
            if head["recorded_at"] is not None and now < head["recorded_at"]:
                now = head["recorded_at"]  # recorded_at never goes backwards along the log
            event_rows: list[tuple[Any, ...]] = []
            key_rows: list[tuple[str, str, str, datetime]] = []
            claim_rows: list[tuple[str, str, str, datetime]] = []

            for pending in batch:
                refusal = _check(pending, known_keys, versions, owners)
                if refusal is not None:
                    outcomes.append((pending, refusal))
                    continue
                event_ids: list[UUID] = []
                first = position + 1
                for append in pending.appends:
                    for claim in append.claims:
                        if (claim.scope, claim.value) not in owners:  # else: ours already
                            owners[(claim.scope, claim.value)] = append.stream_id
                            claim_rows.append((claim.scope, claim.value, append.stream_id, now))
                    for event in append.events:
                        position += 1
                        versions[append.stream_id] += 1
                        document = envelope_document(
                            event_id=event.event_id,
                            event_type=event.type,
                            schema_version=event.schema_version,
                            stream_id=append.stream_id,
                            stream_version=versions[append.stream_id],
                            branch_id=event.branch_id,
                            occurred_at=event.occurred_at,
                            recorded_at=now,
                            actor_id=pending.metadata.actor_id,
                            actor_role=pending.metadata.actor_role,
                            correlation_id=pending.metadata.correlation_id,
                            causation_id=pending.metadata.causation_id,
                            data=event.data,
                            prev_hash=prev_hash,
                        )
                        event_hash = envelope_hash(document)
                        event_rows.append(
                            (
                                position,
                                event.event_id,
                                append.stream_id,
                                versions[append.stream_id],
                                event.type,
                                event.schema_version,
                                event.branch_id,
                                event.occurred_at,
                                now,
                                pending.metadata.actor_id,
                                pending.metadata.actor_role,
                                pending.metadata.correlation_id,
                                pending.metadata.causation_id,
                                orjson.dumps(event.data).decode(),
                                event_hash,
                                prev_hash,
                                None,
                                None,
                            )
                        )
                        prev_hash = event_hash
                        event_ids.append(event.event_id)
                appended = position >= first
                result = AppendResult(
                    stream_versions={a.stream_id: versions[a.stream_id] for a in pending.appends},
                    event_ids=event_ids,
                    first_position=first if appended else None,
                    last_position=position if appended else None,
                    recorded_at=now,
                )
                if pending.idempotency:
                    known_keys[pending.idempotency.key] = (
                        pending.idempotency.fingerprint,
                        result.to_json(),
                    )
                    key_rows.append(
                        (
                            pending.idempotency.key,
                            pending.idempotency.fingerprint,
                            result.to_json(),
                            now,
                        )
                    )
                outcomes.append((pending, result))

            if event_rows:
                if self.signer is not None:
                    # One signature per commit: the chain covers every event before it.
                    last = list(event_rows[-1])
                    last[-2] = self.signer.sign(position, prev_hash)
                    last[-1] = self.signer.key_id
                    event_rows[-1] = tuple(last)
                    self._trusted_heads = {(position, prev_hash)}
                await self._write(conn, event_rows, key_rows, claim_rows, position)
            else:
                if key_rows:
                    await conn.executemany(
                        f"INSERT INTO {s}.idempotency_keys (key, fingerprint, result, "
                        "recorded_at) VALUES ($1, $2, $3::jsonb, $4)",
                        key_rows,
                    )
                if claim_rows:
                    await conn.executemany(
                        f"INSERT INTO {s}.unique_claims (scope, value, stream_id, claimed_at) "
                        "VALUES ($1, $2, $3, $4)",
                        claim_rows,
                    )
        # Only now, after COMMIT, does anyone learn the outcome.
        EVENTS_APPENDED.labels(self.schema).inc(len(event_rows))
        for pending, outcome in outcomes:
            if pending.future.done():
                continue
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    async def _write(
        self,
        conn: Connection,
        event_rows: list[tuple[Any, ...]],
        key_rows: list[tuple[str, str, str, datetime]],
        claim_rows: list[tuple[str, str, str, datetime]],
        position: int,
    ) -> None:
        """The commit's events (through `append_log`, which checks that they extend the
        chain), its idempotency keys and claims, and the NOTIFY of its last position: one
        statement, one round trip."""
        s = self._s
        columns = [list(column) for column in zip(*event_rows, strict=True)]
        args: list[Any] = [*columns, notify_channel(self.schema), str(position)]
        parts = []
        if key_rows:
            n = len(args)
            parts.append(
                f"keys AS (INSERT INTO {s}.idempotency_keys (key, fingerprint, result, "
                f"recorded_at) SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::text[], "
                f"${n + 3}::jsonb[], ${n + 4}::timestamptz[]))"
            )
            args += [list(column) for column in zip(*key_rows, strict=True)]
        if claim_rows:
            n = len(args)
            parts.append(
                f"claims AS (INSERT INTO {s}.unique_claims (scope, value, stream_id, "
                f"claimed_at) SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::text[], "
                f"${n + 3}::text[], ${n + 4}::timestamptz[]))"
            )
            args += [list(column) for column in zip(*claim_rows, strict=True)]
        await conn.execute(
            (f"WITH {', '.join(parts)} " if parts else "")
            + f"SELECT {s}.append_log($1::bigint[], $2::uuid[], $3::text[], "
            "$4::integer[], $5::text[], $6::integer[], $7::text[], $8::timestamptz[], "
            "$9::timestamptz[], $10::text[], $11::text[], $12::uuid[], $13::uuid[], "
            "$14::jsonb[], $15::text[], $16::text[], $17::text[], $18::text[]), "
            "pg_notify($19, $20)",
            *args,
        )

    async def _under_lock(
        self, conn: Connection, batch: Sequence[_PendingAppend]
    ) -> tuple[dict[str, tuple[str, str]], dict[str, int], dict[tuple[str, str], str]]:
        """The idempotency keys of the batch seen before (fingerprint, result), the current
        version of each stream it appends to, and the owners of the values it claims."""
        keys = [p.idempotency.key for p in batch if p.idempotency]
        stream_ids = sorted({a.stream_id for p in batch for a in p.appends})
        claims = sorted({(c.scope, c.value) for p in batch for a in p.appends for c in a.claims})
        scopes, values = [c[0] for c in claims], [c[1] for c in claims]
        s = self._s
        rows = await conn.fetch(
            f"SELECT 'k' AS what, key AS a, fingerprint AS b, result::text AS c, NULL::integer "
            f"AS version FROM {s}.idempotency_keys WHERE key = ANY($1::text[]) "
            "UNION ALL "
            f"SELECT 'v', w.id, NULL, NULL, COALESCE((SELECT max(e.stream_version) FROM "
            f"{s}.events e WHERE e.stream_id = w.id), 0) FROM unnest($2::text[]) AS w(id) "
            "UNION ALL "
            f"SELECT 'c', c.scope, c.value, c.stream_id, NULL FROM {s}.unique_claims c "
            "JOIN unnest($3::text[], $4::text[]) AS w(scope, value) "
            "ON c.scope = w.scope AND c.value = w.value",
            keys,
            stream_ids,
            scopes,
            values,
        )
        known: dict[str, tuple[str, str]] = {}
        versions: dict[str, int] = {}
        owners: dict[tuple[str, str], str] = {}
        for row in rows:
            if row["what"] == "k":
                known[row["a"]] = (row["b"], row["c"])
            elif row["what"] == "v":
                versions[row["a"]] = row["version"]
            else:
                owners[(row["a"], row["b"])] = row["c"]
        return known, versions, owners

    async def _check_head(self, conn: Connection, position: int, head_hash: str) -> None:
        """Refuse to sign over a head the service did not sign: a row appended beside the
        store (through the append function, by someone with the service's database role but
        not its key) would otherwise be covered by the next commit's signature."""
        assert self.signer is not None
        if position == 0 or (position, head_hash) in self._trusted_heads:
            return
        row = await conn.fetchrow(
            f"SELECT hash, signature, key_id, EXISTS (SELECT 1 FROM {self._s}.events "
            "WHERE signature IS NOT NULL) AS signed FROM "
            f"{self._s}.events WHERE position = $1",
            position,
        )
        if row is not None and not row["signed"]:
            return  # a log recorded before it was signed: the first commit seals it
        if (
            row is not None
            and row["hash"] == head_hash
            and row["signature"] is not None
            and row["key_id"] is not None
            and self._own_signature(position, head_hash, row["key_id"], row["signature"])
        ):
            self._trusted_heads.add((position, head_hash))
            return
        LOG_TAMPERED.labels(self.source).inc()
        raise LogTampered(
            f"the head of {self.source}'s log (position {position}) is not signed by "
            f"{self.source}: it was appended without the service's key; nothing more is "
            "appended until an operator has looked (party verify)"
        )

    def _own_signature(self, position: int, head_hash: str, key_id: str, signature: str) -> bool:
        """By the service's current key, or by one it used before (a rotation)."""
        assert self.signer is not None
        if self.signer.verifies(position, head_hash, key_id, signature):
            return True
        if self._keyring is None:
            return False
        return self._keyring().check(self.source, position, head_hash, key_id, signature) is None

    # -- reading ------------------------------------------------------------------------------

    async def find_result(self, key: str) -> tuple[str, AppendResult] | None:
        """The fingerprint and result of an earlier command with this idempotency key."""
        row = await self._pool.fetchrow(
            f"SELECT fingerprint, result::text AS result FROM {self._s}.idempotency_keys "
            "WHERE key = $1",
            key,
        )
        if row is None:
            return None
        return row["fingerprint"], AppendResult.from_json(row["result"], replayed=True)

    async def find_results(self, keys: Sequence[str]) -> dict[str, tuple[str, AppendResult]]:
        """`find_result` of several keys in one round trip (the keys not used are left out)."""
        rows = await self._pool.fetch(
            f"SELECT key, fingerprint, result::text AS result FROM {self._s}.idempotency_keys "
            "WHERE key = ANY($1::text[])",
            list(keys),
        )
        return {
            row["key"]: (row["fingerprint"], AppendResult.from_json(row["result"], replayed=True))
            for row in rows
        }

    async def stream_version(self, stream_id: str) -> int:
        version = await self._pool.fetchval(
            f"SELECT COALESCE(max(stream_version), 0) FROM {self._s}.events WHERE stream_id = $1",
            stream_id,
        )
        return int(version)

    async def read_stream(
        self, stream_id: str, *, after_version: int = 0, known_at: datetime | None = None
    ) -> list[RecordedEvent]:
        """A stream's events in version order; `known_at` shows it as it was recorded then."""
        rows = await self._pool.fetch(
            f"SELECT {SELECT_EVENTS} FROM {self._s}.events WHERE stream_id = $1 "
            "AND stream_version > $2 AND ($3::timestamptz IS NULL OR recorded_at <= $3) "
            "ORDER BY stream_version",
            stream_id,
            after_version,
            known_at,
        )
        return [row_to_event(row) for row in rows]

    async def read_streams(self, stream_ids: Sequence[str]) -> dict[str, list[RecordedEvent]]:
        """Several streams in one query, each in version order (absent ones are empty)."""
        rows = await self._pool.fetch(
            f"SELECT {SELECT_EVENTS} FROM {self._s}.events WHERE stream_id = ANY($1::text[]) "
            "ORDER BY stream_id, stream_version",
            list(stream_ids),
        )
        streams: dict[str, list[RecordedEvent]] = {stream_id: [] for stream_id in stream_ids}
        for row in rows:
            streams[row["stream_id"]].append(row_to_event(row))
        return streams

    async def read_streams_after(self, after: Mapping[str, int]) -> dict[str, list[RecordedEvent]]:
        """Of each stream, the events after the version given, in version order (one query)."""
        stream_ids = list(after)
        rows = await self._pool.fetch(
            f"SELECT {SELECT_E_EVENTS} FROM {self._s}.events e "
            "JOIN unnest($1::text[], $2::integer[]) AS w(id, after) "
            "ON e.stream_id = w.id AND e.stream_version > w.after "
            "ORDER BY e.stream_id, e.stream_version",
            stream_ids,
            [after[s] for s in stream_ids],
        )
        streams: dict[str, list[RecordedEvent]] = {stream_id: [] for stream_id in stream_ids}
        for row in rows:
            streams[row["stream_id"]].append(row_to_event(row))
        return streams

    async def read_for_command(
        self,
        stream_ids: Sequence[str],
        key: str | None,
        after: Sequence[int] | None = None,
    ) -> tuple[dict[str, list[RecordedEvent]], tuple[str, AppendResult] | None]:
        """What a command reads before deciding, in one round trip: its streams (as
        `read_streams`; of each only the events after the version in `after`, when given) and
        the fingerprint and result of an earlier command with its idempotency key (as
        `find_result`; None without a key or when there is none)."""
        rows = await self._pool.fetch(
            f"SELECT k.fingerprint AS known_fingerprint, k.result::text AS known_result, "
            f"{SELECT_E_EVENTS} FROM (SELECT 1) AS one "
            f"LEFT JOIN {self._s}.idempotency_keys k ON k.key = $2 "
            f"LEFT JOIN ({self._s}.events e JOIN unnest($1::text[], $3::integer[]) "
            "AS w(id, after) ON e.stream_id = w.id AND e.stream_version > w.after) ON true "
            "ORDER BY e.stream_id, e.stream_version",
            list(stream_ids),
            key,
            list(after) if after is not None else [0] * len(stream_ids),
        )
        streams: dict[str, list[RecordedEvent]] = {stream_id: [] for stream_id in stream_ids}
        earlier = None
        for row in rows:
            if earlier is None and row["known_fingerprint"] is not None:
                earlier = (
                    row["known_fingerprint"],
                    AppendResult.from_json(row["known_result"], replayed=True),
                )
            if row["stream_id"] is not None:
                streams[row["stream_id"]].append(row_to_event(row))
        return streams, earlier

    async def existing_event_ids(self, event_ids: Sequence[UUID]) -> set[UUID]:
        rows = await self._pool.fetch(
            f"SELECT event_id FROM {self._s}.events WHERE event_id = ANY($1::uuid[])",
            list(event_ids),
        )
        return {row["event_id"] for row in rows}

    async def read_all(
        self,
        *,
        after_position: int = 0,
        up_to_position: int | None = None,
        types: Sequence[str] | None = None,
        branch_id: str | None = None,
        known_at: datetime | None = None,
        occurred_before: datetime | None = None,
        limit: int = 1000,
    ) -> list[RecordedEvent]:
        """Events in position (commit) order, filtered by type, branch and time."""
        rows = await self._pool.fetch(
            f"SELECT {SELECT_EVENTS} FROM {self._s}.events WHERE position > $1 "
            "AND ($2::bigint IS NULL OR position <= $2) "
            "AND ($3::text[] IS NULL OR type = ANY($3)) "
            "AND ($4::text IS NULL OR branch_id = $4) "
            "AND ($5::timestamptz IS NULL OR recorded_at <= $5) "
            "AND ($6::timestamptz IS NULL OR occurred_at <= $6) "
            "ORDER BY position LIMIT $7",
            after_position,
            up_to_position,
            list(types) if types is not None else None,
            branch_id,
            known_at,
            occurred_before,
            limit,
        )
        return [row_to_event(row) for row in rows]

    async def iterate(
        self, *, after_position: int = 0, page: int = 5000, **filters: Any
    ) -> AsyncIterator[RecordedEvent]:
        """Every matching event, page by page, without holding them all in memory."""
        while True:
            events = await self.read_all(after_position=after_position, limit=page, **filters)
            for event in events:
                yield event
            if len(events) < page:
                return
            after_position = events[-1].position

    async def head_and_next(
        self, after_position: int, limit: int
    ) -> tuple[int, list[RecordedEvent]]:
        """The log head's position and the events after `after_position` (at most `limit`),
        in one round trip (what the relay reads each round)."""
        rows = await self._pool.fetch(
            f"SELECT h.position AS head_position, {SELECT_E_EVENTS} FROM {self._s}.chain_head h "
            f"LEFT JOIN LATERAL (SELECT * FROM {self._s}.events WHERE position > $1 "
            "ORDER BY position LIMIT $2) e ON true ORDER BY e.position",
            after_position,
            limit,
        )
        assert rows, "chain_head row missing: run the migrations"
        head: int = rows[0]["head_position"]
        return head, [row_to_event(row) for row in rows if row["position"] is not None]

    async def head(self) -> tuple[int, str]:
        row = await self._pool.fetchrow(f"SELECT position, hash FROM {self._s}.chain_head")
        assert row is not None
        return row["position"], row["hash"]


def _check(
    pending: _PendingAppend,
    known_keys: dict[str, tuple[str, str]],
    versions: dict[str, int],
    owners: dict[tuple[str, str], str],
) -> AppendResult | Exception | None:
    """Why this append cannot be written as asked, or None when it can."""
    if pending.idempotency and pending.idempotency.key in known_keys:
        fingerprint, result = known_keys[pending.idempotency.key]
        if fingerprint != pending.idempotency.fingerprint:
            return IdempotencyKeyReused(pending.idempotency.key)
        return AppendResult.from_json(result, replayed=True)
    for append in pending.appends:
        actual = versions[append.stream_id]
        if append.expected_version is not None and append.expected_version != actual:
            return ConcurrencyConflict(append.stream_id, append.expected_version, actual)
        for claim in append.claims:
            owner = owners.get((claim.scope, claim.value))
            if owner is not None and owner != append.stream_id:
                return UniqueClaimTaken(UniqueClaim(claim.scope, claim.value), owner)
    return None


def _fail(pending: _PendingAppend, error: BaseException) -> None:
    if not pending.future.done():
        pending.future.set_exception(error)
