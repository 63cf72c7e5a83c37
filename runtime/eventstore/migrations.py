"""Versioned SQL migrations, applied in order, each once, under an advisory lock.

Each service applies the event store's migrations and then its own (projection tables) into its
own schema, at start and with `party migrate SERVICE`. Applying twice changes nothing; a file
that was edited after it was applied is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from runtime.db import Connection, mark_session_state
from runtime.eventstore.schema import quote_schema

EVENT_STORE_MIGRATIONS = Path(__file__).resolve().parent / "sql"


@dataclass(frozen=True)
class Migration:
    id: str  # "<source>/<file stem>", e.g. "eventstore/0001_event_store"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationChanged(RuntimeError):
    pass


def load_migrations(source: str, directory: Path) -> list[Migration]:
    return [
        Migration(f"{source}/{path.stem}", path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.sql"))
    ]


async def migrate(conn: Connection, schema: str, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet applied to `schema`; return the ids applied now."""
    quoted = quote_schema(schema)
    applied_now: list[str] = []
    mark_session_state(conn)  # a session lock, and whatever the migrations' SQL sets
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}")
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ("
            "id text PRIMARY KEY, checksum text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["id"]: row["checksum"]
            for row in await conn.fetch(f"SELECT id, checksum FROM {quoted}.schema_migrations")
        }
        for migration in migrations:
            if migration.id in done:
                if done[migration.id] != migration.checksum:
                    raise MigrationChanged(
                        f"migration {migration.id} changed after it was applied to schema "
                        f"{schema}; add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql.replace("{schema}", quoted))
                await conn.execute(
                    f"INSERT INTO {quoted}.schema_migrations (id, checksum) VALUES ($1, $2)",
                    migration.id,
                    migration.checksum,
                )
            applied_now.append(migration.id)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    return applied_now
