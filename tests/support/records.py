"""Producers' records for consumers in the test process: a service or a stand-in producer
registers its store under its stream prefix, and a consumer of the same prefix reads a gap
from it (in production it reads over HTTP: runtime.consumer.records.HttpRecord).

Likewise the peers a service witnesses (runtime.witness): each running app is registered under
its prefix, and a service of the same prefix reaches the others' audit APIs through their apps
in this process (the real HTTP adapter, over an ASGI transport instead of a socket)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from contracts.catalogue import PRODUCERS
from runtime.consumer.incoming import IncomingEvent
from runtime.consumer.records import ProducerRecord, RecordUnavailable, StoreRecord
from runtime.eventstore import EventStore
from runtime.service import ServiceContext
from runtime.witness import HttpPeerCheckpoints, PeerCheckpoints, PeerUnavailable

STORES: dict[tuple[str, str], EventStore] = {}
APPS: dict[tuple[str, str], FastAPI] = {}


def register(prefix: str, producer: str, store: EventStore) -> None:
    STORES[(prefix, producer)] = store


def unregister(prefix: str, producer: str) -> None:
    STORES.pop((prefix, producer), None)


class RegisteredRecord:
    def __init__(self, prefix: str, producer: str) -> None:
        self.producer = producer
        self._key = (prefix, producer)

    def _record(self) -> StoreRecord:
        store = STORES.get(self._key)
        if store is None:
            raise RecordUnavailable(f"no {self.producer} in this test")
        return StoreRecord(self.producer, store)

    async def head(self) -> int:
        return await self._record().head()

    async def read(self, after: int, limit: int) -> list[IncomingEvent]:
        return await self._record().read(after, limit)


def records_for(prefix: str) -> dict[str, ProducerRecord]:
    return {producer: RegisteredRecord(prefix, producer) for producer in PRODUCERS}


def register_app(prefix: str, service: str, app: FastAPI) -> None:
    APPS[(prefix, service)] = app


def unregister_app(prefix: str, service: str) -> None:
    APPS.pop((prefix, service), None)


def peers_for(prefix: str) -> Callable[[ServiceContext], PeerCheckpoints]:
    """The peers of a service in this test: the other apps registered under the prefix."""

    def transport(peer: str) -> httpx.AsyncBaseTransport:
        app = APPS.get((prefix, peer))
        if app is None:
            raise PeerUnavailable(f"no {peer} in this test")
        return httpx.ASGITransport(app=app, raise_app_exceptions=False)

    def build(context: ServiceContext) -> PeerCheckpoints:
        assert context.signer is not None
        return HttpPeerCheckpoints(
            context.definition.name,
            context.signer,
            lambda peer: f"http://{peer}.test",
            transport_for=transport,
        )

    return build
