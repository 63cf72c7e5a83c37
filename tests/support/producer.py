"""A stand-in for a producing service: appends real contract events to its own event store and
publishes them through the real relay, with a clock the test controls (to record late)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import asyncpg
import redis.asyncio as redis

from contracts.envelope import EventPayload
from runtime.eventstore import (
    EVENT_STORE_MIGRATIONS,
    EventMetadata,
    EventStore,
    NewEvent,
    StreamAppend,
    load_migrations,
    migrate,
)
from runtime.relay import Relay
from tests.support import records
from tests.support.keys import signer

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day: str, hour: int = 19) -> datetime:
    """A moment of a business day in Shanghai."""
    return datetime.combine(date.fromisoformat(day), time(hour), SHANGHAI)


class Producer:
    def __init__(self, store: EventStore, relay: Relay) -> None:
        self.store = store
        self.relay = relay
        self.now: datetime | None = None  # the record time of the next events (None: real)

    def _clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    async def emit(
        self,
        payload: EventPayload,
        occurred_at: datetime,
        branch_id: str | None,
        *,
        stream: str | None = None,
        actor: str = "secretary-b1",
    ) -> UUID:
        event_id = uuid4()
        await self.store.append(
            StreamAppend(
                stream or f"s-{event_id}",
                [
                    NewEvent.from_payload(
                        payload, occurred_at=occurred_at, branch_id=branch_id, event_id=event_id
                    )
                ],
            ),
            metadata=EventMetadata(actor, "branch_secretary"),
        )
        return event_id

    async def publish(self) -> None:
        while await self.relay.publish_once():
            pass


@asynccontextmanager
async def producer(
    pool: asyncpg.Pool, client: redis.Redis, prefix: str, source: str
) -> AsyncIterator[Producer]:
    schema = f"t_{uuid4().hex[:10]}_{source}"
    async with pool.acquire() as conn:
        await migrate(conn, schema, load_migrations("eventstore", EVENT_STORE_MIGRATIONS))
    holder: list[Producer] = []
    store = EventStore(
        pool, schema, clock=lambda: holder[0]._clock(), signer=signer(source), source=source
    )
    made = Producer(store, Relay(store=store, redis_client=client, source=source, prefix=prefix))
    holder.append(made)
    records.register(prefix, source, store)
    try:
        yield made
    finally:
        records.unregister(prefix, source)
        await store.close()
        await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
