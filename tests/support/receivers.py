"""Local peers for notify's channels, started by the tests: an HTTP webhook receiver that checks
signatures, and an SMTP server that keeps what it receives."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.notify.channels import verify
from tests.support.servers import free_port


@dataclass
class WebhookReceiver:
    secret: str
    fail_first: int = 0  # answer 503 to this many requests first
    delay: float = 0.0
    requests: int = 0
    bad_signatures: int = 0
    accepted: Counter[str] = field(default_factory=Counter)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> JSONResponse:
        self.requests += 1
        body = await request.body()
        if not verify(
            self.secret,
            request.headers.get("x-party-timestamp", "0"),
            body,
            request.headers.get("x-party-signature", ""),
        ):
            self.bad_signatures += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return JSONResponse({"error": "busy"}, status_code=503)
        if self.delay:
            await asyncio.sleep(self.delay)
        delivery = request.headers["x-party-delivery"]
        repeat = delivery in self.accepted
        self.accepted[delivery] += 1
        if not repeat:
            self.payloads.append(await request.json())
        return JSONResponse({"ok": True, "repeat": repeat})


@contextlib.asynccontextmanager
async def webhook_receiver(secret: str, **options: Any) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(secret, **options)
    port = free_port()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@dataclass
class MailServer:
    port: int
    mailbox: _Mailbox

    @property
    def messages(self) -> list[Message]:
        return self.mailbox.messages


def subject_of(message: Message) -> str:
    return str(make_header(decode_header(message["Subject"])))


@contextlib.contextmanager
def mail_server() -> Any:
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield MailServer(port, mailbox)
    finally:
        controller.stop()
