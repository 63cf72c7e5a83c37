"""A producer's own record, read when Redis did not deliver what the producer recorded
(entries trimmed past MAXLEN, acknowledged by someone else, never published): the port, an
adapter over HTTP with a service token (production), and one over an in-process store.

What is read is believed only as the stream is: every event's hash is recomputed and the run
must end at an event the producer signed (runtime.consumer.trust).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import httpx
import orjson

from contracts.catalogue import CATALOGUE
from runtime.consumer.incoming import IncomingEvent, parse_envelope_bytes
from runtime.eventstore.models import RecordedEvent
from runtime.eventstore.store import EventStore
from runtime.signing import Signer


class RecordUnavailable(Exception):
    """The producer's record could not be read now (it is down, or refused): retry later."""


class ProducerRecord(Protocol):
    producer: str

    async def head(self) -> int: ...

    async def read(self, after: int, limit: int) -> list[IncomingEvent]: ...


def incoming(event: RecordedEvent, producer: str) -> IncomingEvent:
    return parse_envelope_bytes(
        event.envelope_json(), producer, event.position, event.signature, event.key_id, CATALOGUE
    )


class StoreRecord:
    """The record of a producer whose store is in this process (tests, one-process runs)."""

    def __init__(self, producer: str, store: EventStore) -> None:
        self.producer = producer
        self._store = store

    async def head(self) -> int:
        position, _ = await self._store.head()
        return position

    async def read(self, after: int, limit: int) -> list[IncomingEvent]:
        events = await self._store.read_all(after_position=after, limit=limit)
        return [incoming(e, self.producer) for e in events]


class HttpRecord:
    """A producer's record over its audit API, authenticated by this service's signing key."""

    def __init__(self, producer: str, base_url: str, signer: Signer, timeout: float = 10.0) -> None:
        self.producer = producer
        self._base = base_url.rstrip("/")
        self._signer = signer
        self._client = httpx.AsyncClient(timeout=timeout)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._signer.service_token(self.producer)}"}

    async def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = await self._client.get(
                self._base + path, params=params, headers=self._headers()
            )
        except httpx.HTTPError as error:
            raise RecordUnavailable(f"{self.producer} at {self._base}: {error!r}") from None
        if response.status_code != 200:
            raise RecordUnavailable(
                f"{self.producer} answered {response.status_code}: {response.text[:200]}"
            )
        try:
            return orjson.loads(response.content)  # the record's pages are large: a fast decoder
        except orjson.JSONDecodeError as error:
            raise RecordUnavailable(f"{self.producer} answered no JSON: {error}") from None

    async def head(self) -> int:
        body = await self._get("/v1/audit/progress", {})
        return int(body["head_position"])

    async def read(self, after: int, limit: int) -> list[IncomingEvent]:
        body = await self._get("/v1/audit/events", {"after": after, "limit": min(limit, 1000)})
        return [incoming(_recorded(item), self.producer) for item in body["events"]]

    async def close(self) -> None:
        await self._client.aclose()


def _recorded(item: dict[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        position=int(item["position"]),
        event_id=UUID(item["event_id"]),
        stream_id=item["stream_id"],
        stream_version=int(item["stream_version"]),
        type=item["type"],
        schema_version=int(item["schema_version"]),
        branch_id=item["branch_id"],
        occurred_at=datetime.fromisoformat(item["occurred_at"]),
        recorded_at=datetime.fromisoformat(item["recorded_at"]),
        actor_id=item["actor"]["id"],
        actor_role=item["actor"]["role"],
        correlation_id=UUID(item["correlation_id"]),
        causation_id=UUID(item["causation_id"]) if item["causation_id"] else None,
        data=item["data"],
        hash=item["hash"],
        prev_hash=item["prev_hash"],
        signature=item.get("signature"),
        key_id=item.get("key_id"),
    )
