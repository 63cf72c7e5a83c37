"""Personal data that can be erased from an append-only log (个人信息保护法): crypto-shredding.

A person's personal fields (a member's name, student number, dormitory and bed; a guide's name
and phone) are written into events sealed — AES-256-GCM under a key of that person alone. The
key is kept in a table of the service's own schema that is not part of the log, wrapped under
the university's personal-data key, a file beside the signing keys that is never in PostgreSQL
or Redis. Erasing the person destroys their key: the events stay as they were recorded, every
hash and signature still holds, scores still replay, and the sealed fields can no longer be
read by anyone — every view shows the person as erased.

    sealed field:  pd1:{key id}:{nonce ‖ ciphertext, base64url}
    associated data: the person's id and the field's name (a value cannot be moved elsewhere)

Values that are unique across the university (a student number) are claimed by a keyed hash
(`bi1:…`, HMAC-SHA256 under a key derived from the personal-data key), so that uniqueness is
still enforced without the value itself in the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runtime.db import Connection
from runtime.errors import OperatorNeeded
from runtime.eventstore.schema import quote_schema

PREFIX = "pd1"
INDEX_PREFIX = "bi1"
#: What every view shows, and every read model keeps, in place of an erased person's field.
ERASED = "（已删除 erased）"
KEY_FILE = "personal-data.key"

PERSONAL_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS {schema}.personal_keys (
    subject_id   text        PRIMARY KEY,
    key_id       text        NOT NULL,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz
)
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(f"{PREFIX}:")


def load_master_key(keys_dir: Path, *, create: bool) -> bytes:
    """The university's personal-data key (32 bytes), created in development when missing."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(
                f"the personal-data key {path} is missing: `party provision` creates it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(_b64(secrets.token_bytes(32)) + "\n")
    key = _unb64(path.read_text().strip())
    if len(key) != 32:
        raise ValueError(f"{path} does not hold a 32-byte key")
    return key


@dataclass(frozen=True)
class SubjectKey:
    """One person's data key (None when erased: nothing of theirs can be read again)."""

    subject_id: str
    key_id: str
    key: bytes | None

    @property
    def erased(self) -> bool:
        return self.key is None

    def seal(self, field: str, value: str) -> str:
        if self.key is None:
            raise ValueError(f"{self.subject_id} was erased: nothing more is recorded of them")
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, value.encode(), self._aad(field))
        return f"{PREFIX}:{self.key_id}:{_b64(nonce + sealed)}"

    def unseal(self, field: str, value: str) -> str:
        """The plain value, or ERASED when the key is gone; a plain (legacy) value as it is."""
        if not is_sealed(value):
            return value
        if self.key is None:
            return ERASED
        _, key_id, body = value.split(":", 2)
        if key_id != self.key_id:
            return ERASED
        raw = _unb64(body)
        try:
            return AESGCM(self.key).decrypt(raw[:12], raw[12:], self._aad(field)).decode()
        except (InvalidTag, ValueError):
            return ERASED

    def _aad(self, field: str) -> bytes:
        return f"{self.subject_id}\n{field}".encode()


class PersonalVault:
    """The data keys of the people a service records, wrapped under the personal-data key."""

    def __init__(self, pool: asyncpg.Pool, schema: str, master_key: bytes) -> None:
        self._pool = pool
        self._s = quote_schema(schema)
        self._wrap = AESGCM(master_key)
        self._index_key = hmac.new(master_key, b"party blind index v1", hashlib.sha256).digest()

    def blind_index(self, scope: str, value: str) -> str:
        """A keyed hash of a value that must be unique (its claim, without the value)."""
        digest = hmac.new(self._index_key, f"{scope}\n{value}".encode(), hashlib.sha256)
        return f"{INDEX_PREFIX}:{digest.hexdigest()}"

    async def keys(
        self, subjects: list[str], *, create: bool = False, conn: Connection | None = None
    ) -> dict[str, SubjectKey]:
        """The keys of these people; with `create`, a new key for whoever has none yet."""
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        db = conn or self._pool
        rows = await db.fetch(
            f"SELECT subject_id, key_id, wrapped_key FROM {self._s}.personal_keys "
            "WHERE subject_id = ANY($1::text[])",
            wanted,
        )
        found = {r["subject_id"]: self._unwrap(r) for r in rows}
        missing = [s for s in wanted if s not in found]
        if create and missing:
            new = []
            for subject in missing:
                key = secrets.token_bytes(32)
                key_id = secrets.token_hex(8)
                nonce = secrets.token_bytes(12)
                wrapped = nonce + self._wrap.encrypt(nonce, key, subject.encode())
                new.append((subject, key_id, wrapped))
            await db.executemany(
                f"INSERT INTO {self._s}.personal_keys (subject_id, key_id, wrapped_key) "
                "VALUES ($1, $2, $3) ON CONFLICT (subject_id) DO NOTHING",
                new,
            )
            return await self.keys(wanted, create=False, conn=conn)
        return found

    async def erase(self, subject: str, conn: Connection) -> bool:
        """Destroy the person's key (once; True when it was there to destroy). Run in the
        transaction that records the erasure, so that the two cannot part."""
        status = await conn.execute(
            f"UPDATE {self._s}.personal_keys SET wrapped_key = NULL, erased_at = now() "
            "WHERE subject_id = $1 AND wrapped_key IS NOT NULL",
            subject,
        )
        return str(status).endswith(" 1")

    async def index_plain_claims(self, scope: str) -> int:
        """Claims of `scope` recorded before they were indexed (the plain value in the
        database) replaced by their keyed hash; how many were. Run at start: uniqueness holds
        across the old and the new claims from then on."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"DELETE FROM {self._s}.unique_claims WHERE scope = $1 AND value NOT LIKE $2 "
                "RETURNING value, stream_id, claimed_at",
                scope,
                f"{INDEX_PREFIX}:%",
            )
            await conn.executemany(
                f"INSERT INTO {self._s}.unique_claims (scope, value, stream_id, claimed_at) "
                "VALUES ($1, $2, $3, $4)",
                [
                    (scope, self.blind_index(scope, r["value"]), r["stream_id"], r["claimed_at"])
                    for r in rows
                ],
            )
        return len(rows)

    async def check(self) -> None:
        """Refuse a personal-data key that does not open the keys already kept (another
        machine's, or one created afresh over a lost one): nothing could be read with it, and
        every view would be folded as if everyone had been erased."""
        row = await self._pool.fetchrow(
            f"SELECT subject_id, key_id, wrapped_key FROM {self._s}.personal_keys "
            "WHERE wrapped_key IS NOT NULL LIMIT 1"
        )
        if row is not None:
            self._unwrap(row)

    def _unwrap(self, row: asyncpg.Record) -> SubjectKey:
        wrapped = row["wrapped_key"]
        if wrapped is None:
            return SubjectKey(row["subject_id"], row["key_id"], None)
        raw = bytes(wrapped)
        try:
            key = self._wrap.decrypt(raw[:12], raw[12:], row["subject_id"].encode())
        except InvalidTag:
            raise PersonalDataKeyMismatch(
                f"the personal-data key ({KEY_FILE}) does not open the key of "
                f"{row['subject_id']}: it is not the key these records were sealed under"
            ) from None
        return SubjectKey(row["subject_id"], row["key_id"], key)


class PersonalDataKeyMismatch(OperatorNeeded):
    """The personal-data key given is not the one the people's keys were wrapped under."""


def erased_key(subject: str) -> SubjectKey:
    """What a person without a key is: every sealed field reads as erased."""
    return SubjectKey(subject, "", None)
