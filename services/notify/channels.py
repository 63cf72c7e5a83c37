"""The three ways a reminder leaves: a Redis stream for campus gateways, a signed webhook, and
e-mail. Each carries the delivery id, so a receiver can recognise a repeat."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from email.message import EmailMessage
from enum import Enum
from typing import Any, Protocol
from uuid import UUID

import aiosmtplib
import httpx
import orjson
import redis.asyncio as redis
from redis.exceptions import WatchError

from services.notify.domain.config import NotifyConfig
from services.notify.domain.reminders import DeadlineView, Message


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # worth trying again later
    FAILED = "failed"  # will not succeed however often it is tried


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True)
class Outgoing:
    delivery_id: UUID
    deadline: DeadlineView
    recipient_id: str
    lead_seconds: int
    message: Message
    email: str | None

    def payload(self) -> dict[str, Any]:
        return {
            "delivery_id": str(self.delivery_id),
            "deadline_id": self.deadline.deadline_id,
            "kind": self.deadline.kind,
            "title": self.deadline.title,
            "due_at": self.deadline.due_at.isoformat(),
            "branch_id": self.deadline.branch_id,
            "member_id": self.deadline.member_id,
            "recipient_id": self.recipient_id,
            "lead_seconds": self.lead_seconds,
            "subject": self.message.subject,
            "body": self.message.body,
        }


class Channel(Protocol):
    async def send(self, outgoing: Outgoing) -> Attempt: ...


def notification_stream(prefix: str) -> str:
    return f"{prefix}:notifications"


#: How long a delivery id is remembered as added (a retry comes much sooner).
ONCE_SECONDS = 90 * 86400


class StreamChannel:
    """Adds the entry only if this delivery id was never added: atomic, whichever replica
    retries. A transaction under WATCH instead of a script, so that notify's Redis user needs
    no scripting (`party provision` gives none): the marker and the entry are set in one
    MULTI/EXEC, and a replica that set the marker meanwhile makes it fail (WatchError)."""

    def __init__(self, client: redis.Redis, prefix: str, maxlen: int = 100_000) -> None:
        self._client = client
        self._stream = notification_stream(prefix)
        self._prefix = prefix
        self._maxlen = maxlen

    async def send(self, outgoing: Outgoing) -> Attempt:
        fields: dict[Any, Any] = {
            k: "" if v is None else str(v) for k, v in outgoing.payload().items()
        }
        marker = f"{self._prefix}:notified:{outgoing.delivery_id}"
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                await pipe.watch(marker)
                if await pipe.exists(marker):
                    await pipe.unwatch()  # type: ignore[no-untyped-call]
                    return Attempt(Outcome.DELIVERED, "already on the stream")
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(marker, "1", ex=ONCE_SECONDS)
                pipe.xadd(self._stream, fields, maxlen=self._maxlen, approximate=True)
                await pipe.execute()
        except WatchError:  # another replica added it between WATCH and EXEC
            return Attempt(Outcome.DELIVERED, "already on the stream")
        except (redis.ConnectionError, redis.TimeoutError) as error:
            return Attempt(Outcome.RETRY, f"Redis unavailable: {error}")
        return Attempt(Outcome.DELIVERED, "added")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: HMAC-SHA256 over `{timestamp}.{body}`, hex, prefixed."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    if abs((now or time.time()) - int(timestamp)) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookChannel:
    def __init__(self, config: NotifyConfig, client: httpx.AsyncClient | None = None) -> None:
        self._url = config.webhook.url
        self._secret = config.webhook.secret or ""
        self._client = client or httpx.AsyncClient(timeout=config.webhook.timeout_seconds)

    async def send(self, outgoing: Outgoing) -> Attempt:
        if not self._url:
            return Attempt(Outcome.FAILED, "no webhook URL is configured")
        body = orjson.dumps(outgoing.payload())
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Party-Delivery": str(outgoing.delivery_id),
            "X-Party-Timestamp": timestamp,
            "X-Party-Signature": sign(self._secret, timestamp, body),
        }
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return Attempt(Outcome.RETRY, f"{type(error).__name__}: {error}")
        if response.status_code < 300:
            return Attempt(Outcome.DELIVERED, f"HTTP {response.status_code}")
        if response.status_code == 429 or response.status_code >= 500:
            return Attempt(Outcome.RETRY, f"HTTP {response.status_code}")
        return Attempt(Outcome.FAILED, f"HTTP {response.status_code} from the receiver")

    async def close(self) -> None:
        await self._client.aclose()


class EmailChannel:
    def __init__(self, config: NotifyConfig) -> None:
        self._config = config.email

    async def send(self, outgoing: Outgoing) -> Attempt:
        if not outgoing.email:
            return Attempt(Outcome.FAILED, f"no e-mail address for {outgoing.recipient_id}")
        message = EmailMessage()
        message["From"] = self._config.sender
        message["To"] = outgoing.email
        message["Subject"] = outgoing.message.subject
        message["Message-ID"] = f"<{outgoing.delivery_id}@party-members>"
        message.set_content(outgoing.message.body)
        try:
            await aiosmtplib.send(
                message,
                hostname=self._config.host,
                port=self._config.port,
                start_tls=self._config.use_tls,
                timeout=10,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            return Attempt(Outcome.FAILED, f"recipient refused: {error}")
        except (aiosmtplib.SMTPException, OSError) as error:
            return Attempt(Outcome.RETRY, f"{type(error).__name__}: {error}")
        return Attempt(Outcome.DELIVERED, "accepted by the mail server")
