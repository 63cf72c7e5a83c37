"""Names of the PostgreSQL schemas that hold each service's tables."""

from __future__ import annotations

import re

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def quote_schema(schema: str) -> str:
    """The schema name quoted for SQL; only plain lowercase names are accepted."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(
            f"schema name {schema!r}: use lowercase letters, digits and underscores (max 63)"
        )
    return f'"{schema}"'
