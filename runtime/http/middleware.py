"""Pure ASGI middlewares: the observation of each request (log context and metrics), a body
size limit (413), a guard against NUL characters (422), and a last line of defence that turns
an unexpected error into a problem response (503 when a dependency is down, else 500)."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import structlog
from starlette.datastructures import URL
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.errors import is_transient
from runtime.http.problems import PROBLEM_JSON, RETRY_AFTER_SECONDS
from runtime.logs import get_logger
from runtime.metrics import HTTP_REQUESTS

log = get_logger("http")


class BodyTooLarge(Exception):
    pass


async def _send_problem(
    send: Send,
    status: int,
    title: str,
    detail: str,
    extra_headers: list[tuple[bytes, bytes]],
    **extra: Any,
) -> None:
    body = orjson.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *extra_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _ResponseTracker:
    """Passes messages on and remembers whether the response has begun (then it is too late to
    answer with a problem instead)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class ObserveMiddleware:
    """Each request in the log context (service, correlation id, method, path) while the app
    handles it, and in HTTP_REQUESTS by method, route template (`unmatched` when no route) and
    status, timed from its arrival to the start of its response. A request that gets no
    response (the client went away first) is not counted."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        correlation = None
        for name, value in scope["headers"]:
            if name == b"x-correlation-id":
                correlation = value.decode("latin-1")
                break
        method = scope["method"]
        status: int | None = None
        elapsed = 0.0

        async def observed_send(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - started
            await send(message)

        try:
            with structlog.contextvars.bound_contextvars(
                service=self.service,
                correlation_id=correlation,
                method=method,
                path=URL(scope=scope).path,
            ):
                await self.app(scope, receive, observed_send)
        finally:
            if status is not None:  # counted even when the app failed after answering
                route = scope.get("route")
                HTTP_REQUESTS.labels(
                    self.service, method, getattr(route, "path", "unmatched"), str(status)
                ).observe(elapsed)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"request bodies are limited to {self.max_bytes} bytes"
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_problem(send, 413, "Content too large", detail, [])
                return
        seen = 0
        response = _ResponseTracker(send)

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, response.send)
        except BodyTooLarge:
            if not response.started:
                await _send_problem(send, 413, "Content too large", detail, [])


#: `\u0000` in JSON text, not preceded by an escaping backslash.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)


class NulGuardMiddleware:
    """PostgreSQL cannot store a NUL character in text or JSON: refuse it at the door (422,
    naming where it was) rather than fail deep inside (500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
            where = "path" if "\x00" in scope.get("path", "") else "query"
            await _refuse_nul(send, where)
            return
        # The whole body is read first (it is bounded by the body limit): an error raised while
        # the framework reads it would come out as a 400 instead of this 422.
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away: nothing to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"\x00" in body or _ESCAPED_NUL.search(body):
            await _refuse_nul(send, "body")
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse_nul(send: Send, where: str) -> None:
    reason = "contains a NUL character (U+0000), which cannot be stored"
    await _send_problem(
        send,
        422,
        "Invalid input",
        f"{where}: {reason}",
        [],
        errors=[{"field": where, "reason": reason}],
    )


class ErrorBoundaryMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = _ResponseTracker(send)
        try:
            await self.app(scope, receive, response.send)
        except BodyTooLarge:
            raise
        except Exception as error:
            if response.started:
                raise
            if is_transient(error):
                log.warning(
                    "dependency unavailable", path=scope.get("path"), error=type(error).__name__
                )
                await _send_problem(
                    send,
                    503,
                    "Service unavailable",
                    "a dependency (database or Redis) is unavailable; retry later",
                    [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
                )
            else:
                log.exception("unhandled error", path=scope.get("path"), error=type(error).__name__)
                await _send_problem(send, 500, "Internal error", "the error was logged", [])
