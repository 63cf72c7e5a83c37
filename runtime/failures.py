"""Events a projection cannot apply: recorded, retried a few times, then skipped.

A log is append-only: an event that a projection fails on (one accepted before the inputs were
bounded, say `expected_graduation` 9999-12-31, or one a bug trips over) stays in it for ever.
If the projector stopped there, its checkpoint (or a consumer's cursor) would stop with it and
every later event would wait behind it. So both the local projector (runtime.projection) and
the consumer's projector (runtime.consumer.projector) apply a failing batch again one event at
a time, and an event that fails:

* with a *transient* error (runtime.errors: PostgreSQL or Redis unreachable, the log needing
  an operator) is never skipped: the batch is retried as a whole, for as long as it takes;
* with any other error is recorded in `failed_events` (the service's schema) as `retrying`,
  and tried again, up to `attempts` times in all (`PARTY_PROJECTION_ATTEMPTS`); then it is
  `skipped`: recorded with its last error, left out of the read models, and the projector goes
  on with the events after it.

An event that succeeds on a later attempt leaves the table. A rebuild (`party rebuild`) folds
every event again and records the same set of skipped events (and drops those that now apply,
after a fix): live and rebuilt read models agree, including on what they went without.

Operators see it in `party_failed_events{service, projector}` (skipped events now),
`party_projection_failures_total` (failed attempts), the alert `PartyEventsSkipped`, the log
("event skipped") and `GET /v1/audit/failed-events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from runtime.db import Connection
from runtime.eventstore.schema import quote_schema
from runtime.logs import get_logger
from runtime.metrics import FAILED_EVENTS, PROJECTION_FAILURES

log = get_logger("failures")

#: How many times an event is tried before it is skipped (the default of the setting).
DEFAULT_ATTEMPTS = 3
#: The name the consumer's projections record their failures under.
CONSUMER = "consumer"
#: How much of an error is kept (a message can quote a whole payload).
MAX_ERROR_CHARS = 2000


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]


@dataclass(frozen=True)
class Failing:
    """An event that failed, and where it is."""

    event_id: UUID
    source: str
    position: int
    stream_id: str
    event_type: str
    error: str


@dataclass(frozen=True)
class FailedEvent:
    projector: str
    event_id: UUID
    source: str
    position: int
    stream_id: str
    event_type: str
    error: str
    attempts: int
    status: str
    first_seen: datetime
    last_seen: datetime

    def view(self) -> dict[str, Any]:
        return {
            "projector": self.projector,
            "event_id": str(self.event_id),
            "source": self.source,
            "position": self.position,
            "stream_id": self.stream_id,
            "type": self.event_type,
            "error": self.error,
            "attempts": self.attempts,
            "status": self.status,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


class FailedEvents:
    """The `failed_events` rows of one projector, in the transaction of the batch."""

    def __init__(
        self, schema: str, service: str, projector: str, attempts: int = DEFAULT_ATTEMPTS
    ) -> None:
        self._s = quote_schema(schema)
        self.schema = schema
        self.service = service
        self.projector = projector
        self.attempts = max(1, attempts)

    async def record(
        self, conn: Connection, failing: Failing, *, attempts: int = 1
    ) -> tuple[str, int]:
        """Count `attempts` more failed attempts of the event; return its status now
        (`retrying`, or `skipped` once it has failed `self.attempts` times) and how many times
        it has failed."""
        previous = await conn.fetchval(
            f"SELECT attempts FROM {self._s}.failed_events WHERE projector = $1 AND event_id = $2",
            self.projector,
            failing.event_id,
        )
        total = (previous or 0) + attempts
        status = "skipped" if total >= self.attempts else "retrying"
        await conn.execute(
            f"INSERT INTO {self._s}.failed_events (projector, event_id, source, position, "
            "stream_id, event_type, error, attempts, status) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
            "ON CONFLICT (projector, event_id) DO UPDATE SET error = EXCLUDED.error, "
            "attempts = EXCLUDED.attempts, status = EXCLUDED.status, last_seen = now()",
            self.projector,
            failing.event_id,
            failing.source,
            failing.position,
            failing.stream_id,
            failing.event_type,
            failing.error,
            total,
            status,
        )
        PROJECTION_FAILURES.labels(self.service, self.projector).inc(attempts)
        (log.error if status == "skipped" else log.warning)(
            "event skipped: its projection keeps failing"
            if status == "skipped"
            else "event failed; it will be tried again",
            projector=self.projector,
            source=failing.source,
            position=failing.position,
            event_id=str(failing.event_id),
            event_type=failing.event_type,
            error=failing.error,
            attempts=total,
        )
        return status, total

    async def applied(self, conn: Connection, event_ids: list[UUID]) -> None:
        """These events were applied after all: they are no longer failed."""
        if not event_ids:
            return
        recovered = await conn.fetch(
            f"DELETE FROM {self._s}.failed_events WHERE projector = $1 "
            "AND event_id = ANY($2::uuid[]) RETURNING event_id, attempts",
            self.projector,
            event_ids,
        )
        for row in recovered:
            log.warning(
                "event applied after failing",
                projector=self.projector,
                event_id=str(row["event_id"]),
                attempts=row["attempts"],
            )

    async def skipped_ids(self, conn: Connection) -> set[UUID]:
        rows = await conn.fetch(
            f"SELECT event_id FROM {self._s}.failed_events "
            "WHERE projector = $1 AND status = 'skipped'",
            self.projector,
        )
        return {row["event_id"] for row in rows}

    async def keep_only(self, conn: Connection, event_ids: set[UUID]) -> None:
        """After a rebuild: the rows of events that did not fail this time go."""
        await conn.execute(
            f"DELETE FROM {self._s}.failed_events WHERE projector = $1 "
            "AND NOT (event_id = ANY($2::uuid[]))",
            self.projector,
            list(event_ids),
        )

    async def observe(self, conn: Connection) -> None:
        await observe(conn, self.schema, self.service)


async def observe(conn: Connection, schema: str, service: str) -> None:
    """Set `party_failed_events` from the table (every replica reports what is recorded)."""
    rows = await conn.fetch(
        f"SELECT projector, count(*) FILTER (WHERE status = 'skipped') AS skipped "
        f"FROM {quote_schema(schema)}.failed_events GROUP BY projector"
    )
    seen = set()
    for row in rows:
        FAILED_EVENTS.labels(service, row["projector"]).set(row["skipped"])
        seen.add(row["projector"])
    for projector in _KNOWN.get(service, set()) - seen:
        FAILED_EVENTS.labels(service, projector).set(0)
    _KNOWN.setdefault(service, set()).update(seen)


#: The projectors each service has reported on, so that a count back to nothing reads 0.
_KNOWN: dict[str, set[str]] = {}


async def failed_events(
    conn: Connection, schema: str, *, status: str | None = None, limit: int = 1000
) -> list[FailedEvent]:
    rows = await conn.fetch(
        f"SELECT projector, event_id, source, position, stream_id, event_type, error, attempts, "
        f"status, first_seen, last_seen FROM {quote_schema(schema)}.failed_events "
        "WHERE $1::text IS NULL OR status = $1 ORDER BY source, position, projector LIMIT $2",
        status,
        limit,
    )
    return [FailedEvent(**dict(row)) for row in rows]
