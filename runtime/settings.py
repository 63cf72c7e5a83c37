"""Settings from environment variables (prefix `PARTY_`), with defaults for one machine.

Every field is documented in README.md ("Configuration"); a test keeps the two in step.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORTS = {"roster": 8101, "activities": 8102, "scoring": 8103, "notify": 8104}
#: The token secret published in this repository: accepted only with `PARTY_ENV=development`.
DEVELOPMENT_SECRET = "dev-only-secret-change-me-0123456789"
#: Every token secret printed in this repository (the default, compose's example), refused
#: outside development.
PUBLISHED_SECRETS = frozenset({DEVELOPMENT_SECRET, "change-me-a-long-random-token-signing-secret"})
#: The shortest token secret a service accepts outside development (bytes).
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTY_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "production",
        description="`development` lets a service start with the published token secret, a "
        "short one, or a signing key it creates itself; anything else refuses them",
    )
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/party",
        description="PostgreSQL DSN (the database is created if missing); one schema per service",
    )
    db_schema: str | None = Field(None, description="schema name (default: the service name)")
    db_pool_size: int = Field(10, ge=1, description="connections per service process")
    migrate_on_start: bool = Field(
        True, description="apply migrations at start (off when running as a restricted role)"
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for the event streams")
    redis_sentinels: str | None = Field(
        None, description="`host:port,host:port` of Redis Sentinels: the primary is asked of them"
    )
    redis_sentinel_master: str = Field(
        "party", description="the master name the sentinels monitor (with redis_sentinels)"
    )
    stream_prefix: str = Field("party", description="prefix of every stream key, `party:member`")
    stream_maxlen: int = Field(
        1_000_000, ge=1000, description="approximate MAXLEN of each family stream"
    )
    http_host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    http_port: int | None = Field(
        None,
        description="HTTP port (default 8101 roster, 8102 activities, 8103 scoring, 8104 notify)",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies get 413")
    http_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="a request's line and headers complete within this long of the connection "
        "opening (or of a later request's first byte), or 408 and the connection is closed",
    )
    http_body_timeout_seconds: float = Field(
        30.0, gt=0, description="a request's body arrives in full within this long of its headers"
    )
    http_keep_alive_seconds: int = Field(
        5, ge=1, description="an idle kept-alive connection is closed after this long"
    )
    http_max_connections: int = Field(
        1000,
        ge=1,
        description="open HTTP connections at most; one more gets 503 and is closed (kept below "
        "the process's descriptor limit)",
    )
    http_max_header_bytes: int = Field(
        65_536, ge=1024, description="a request line and headers larger than this get 431"
    )
    auth_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_SECRET),
        description="HS256 secret for tokens: the published default and secrets under 32 bytes "
        "only in development",
    )
    auth_public_key: str | None = Field(
        None, description="PEM public key: when set, only RS256/EdDSA tokens it signed are accepted"
    )
    token_issuer: str = Field(
        "party-members", description="the `iss` every accepted token names (and `party token` sets)"
    )
    token_audience: str = Field(
        "party-members", description="the `aud` every accepted token names (and `party token` sets)"
    )
    token_max_lifetime_hours: float = Field(
        9.0, gt=0, description="a token valid longer than this (exp − iat) is refused"
    )
    timezone: str = Field("Asia/Shanghai", description="the university's time zone for dates")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_format: Literal["json", "console"] = Field("json", description="structlog renderer")
    append_batch_max: int = Field(500, ge=1, description="appends group-committed together")
    relay_batch_size: int = Field(1000, ge=1, description="events per relay XADD pipeline")
    relay_poll_seconds: float = Field(
        1.0, gt=0, description="relay polling fallback when no NOTIFY arrives"
    )
    consumer_batch_size: int = Field(500, ge=1, description="entries read per XREADGROUP")
    consumer_block_ms: int = Field(100, ge=1, description="XREADGROUP block time")
    reclaim_idle_ms: int = Field(
        30_000, ge=100, description="pending entries idle this long are reclaimed (XAUTOCLAIM)"
    )
    max_deliveries: int = Field(
        5, ge=1, description="an entry failing this many deliveries goes to the dead letters"
    )
    projection_attempts: int = Field(
        3,
        ge=1,
        description="an event a projection fails on this many times (not because PostgreSQL or "
        "Redis is down) is recorded in `failed_events` and skipped; the rest go on",
    )
    consumer_name: str | None = Field(
        None, description="consumer name in the groups (default: host-pid-random, unique)"
    )
    keys_dir: str = Field(
        ".run/keys",
        description="signing keys: `{service}.key` (this service's, private) and every "
        "service's `{service}.keys.json` (public)",
    )
    create_missing_key: bool = Field(
        True, description="create this service's signing key at start when it has none"
    )
    service_urls: dict[str, str] = Field(
        default_factory=dict,
        description='where the other services answer, `{"roster": "http://…"}` (default: '
        "this machine's ports): a gap is read from the producer's own record there",
    )
    gap_grace_seconds: float = Field(
        5.0, gt=0, description="a missing event is read from its producer's record after this"
    )
    checkpoint_seconds: float = Field(
        60.0,
        gt=0,
        description="how often the service signs a checkpoint of its log and witnesses every "
        "other service's",
    )

    def schema_for(self, service: str) -> str:
        return self.db_schema or service

    def port_for(self, service: str) -> int:
        return self.http_port or DEFAULT_PORTS.get(service, 8100)

    def url_for(self, service: str) -> str:
        """Where another service answers."""
        return self.service_urls.get(service) or f"http://127.0.0.1:{DEFAULT_PORTS[service]}"

    def consumer_name_for(self, service: str) -> str:
        if self.consumer_name:
            return self.consumer_name
        return f"{service}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
