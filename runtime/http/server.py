"""How a service's HTTP server holds its connections: every one is bounded in time and in number.

uvicorn (0.54, with httptools) arms its keep-alive timer only after a response: a connection
that never sends a request, or sends half of its headers and stops, is held for ever, and each
holds a file descriptor (3,000 idle half-open connections were held; about 20,000 exhausted the
process's descriptors and every new request was reset). uvicorn has no header-read timeout and
no limit on connections (`limit_concurrency` answers 503 only once a request's headers are in,
and counts the idle connections it has already accepted), and httptools no limit on the size of
headers. `GuardedHttpToolsProtocol` is uvicorn's own httptools protocol with those added:

* **header timeout**: a request's line and headers complete within `header_timeout` seconds of
  the connection being opened, or of the first byte of a later request on a kept-alive
  connection; otherwise `408` and the connection is closed. A header sent a byte at a time does
  not extend it (slowloris).
* **body timeout**: its body arrives in full within `body_timeout` seconds of its headers;
  otherwise the connection is closed (the handler sees the client gone).
* **keep-alive**: an idle connection between requests is closed after `keep_alive` seconds
  (uvicorn's `timeout_keep_alive`).
* **connection limit**: a connection beyond `max_connections` open ones gets `503` with
  `Retry-After` and is closed at once, so that the descriptors the service needs for PostgreSQL,
  Redis and its logs remain; the limit is also kept below the process's descriptor limit.
* **header size**: a request line and headers larger than `max_header_bytes` get `431` and the
  connection is closed.

Each closing is counted in `party_http_connections_closed_total{reason}`. A proxy in front
bounds the same (deploy/README.md, "HTTP in front of the services"); these hold when there is
none, or when it is misconfigured.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runtime.logs import get_logger
from runtime.settings import Settings

log = get_logger("http")

CONNECTIONS_CLOSED = Counter(
    "party_http_connections_closed_total",
    "HTTP connections the service closed to bound them (header_timeout, body_timeout, "
    "too_many_connections, headers_too_large)",
    ["reason"],
)

#: Descriptors kept for what is not an HTTP connection: the PostgreSQL pool, Redis clients,
#: log files, the pipes of worker processes, the listening socket.
RESERVED_DESCRIPTORS = 128


def _response(status: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 0\r\nconnection: close\r\n" + extra + b"\r\n"
    )


TIMEOUT_408 = _response(b"408 Request Timeout")
BUSY_503 = _response(b"503 Service Unavailable", b"retry-after: 1\r\n")
TOO_LARGE_431 = _response(b"431 Request Header Fields Too Large")


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    keep_alive: int
    max_connections: int
    max_header_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            keep_alive=settings.http_keep_alive_seconds,
            max_connections=usable_connections(settings.http_max_connections),
            max_header_bytes=settings.http_max_header_bytes,
        )


def usable_connections(wanted: int) -> int:
    """The connection limit, below the process's descriptor limit (RLIMIT_NOFILE) less what
    the service needs besides connections."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(16, soft - RESERVED_DESCRIPTORS)
    if wanted > room:
        log.warning(
            "PARTY_HTTP_MAX_CONNECTIONS is above what the descriptor limit leaves; lowered",
            wanted=wanted,
            descriptor_limit=soft,
            used=room,
        )
        return room
    return wanted


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body timeouts, a connection limit and a
    header size limit (the module's docstring)."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading: str | None = None  # "headers" or "body" while a request is being read
        self._header_bytes = 0
        self._headers_too_large = False
        self._refused = False

    # -- the connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= self.limits.max_connections:
            self._refused = True
            CONNECTIONS_CLOSED.labels("too_many_connections").inc()
            transport.write(BUSY_503)
            transport.close()
            return
        super().connection_made(transport)
        self._expect("headers", self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        if self._headers_too_large and not self.transport.is_closing():
            CONNECTIONS_CLOSED.labels("headers_too_large").inc()
            self._stop_timer()
            self.transport.write(TOO_LARGE_431)
            self.transport.close()

    # -- a request being read ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._headers_too_large = False
        if self._reading is None:  # a later request on a kept-alive connection
            self._expect("headers", self.limits.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        if not self._headers_too_large:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._headers_too_large:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._headers_too_large:
            return  # answered 431 once the parser returns (data_received)
        self._stop_timer()
        self._expect("body", self.limits.body_timeout)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._headers_too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_timer()
        self._reading = None
        if not self._headers_too_large:
            super().on_message_complete()

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes:
            self._headers_too_large = True

    # -- the timer --------------------------------------------------------------------------

    def _expect(self, part: str, seconds: float) -> None:
        self._stop_timer()
        self._reading = part
        self._read_timer = self.loop.call_later(seconds, self._timed_out)

    def _stop_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._reading == "headers":
            CONNECTIONS_CLOSED.labels("header_timeout").inc()
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(TIMEOUT_408)
        else:
            CONNECTIONS_CLOSED.labels("body_timeout").inc()
        self._reading = None
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn builds each connection with, holding these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """What `party serve` gives uvicorn.run / uvicorn.Config besides the app, host and port."""
    limits = ConnectionLimits.from_settings(settings)
    return {
        "loop": "uvloop",
        "http": guarded_protocol(limits),
        "timeout_keep_alive": limits.keep_alive,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 15,
    }
