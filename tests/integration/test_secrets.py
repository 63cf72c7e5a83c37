"""No published secret opens a service, and no token outlives a working day (issue 14, "Secrets
and credentials"): against a real service (PostgreSQL, Redis) and real `party` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from runtime.auth import TokenAuthority
from runtime.service import ServiceDefinition, UnsafeSettings, start_service
from runtime.settings import DEVELOPMENT_SECRET
from tests.conftest import REDIS_URL
from tests.support.apps import SECRET, Api, running, service_settings
from tests.support.keys import keys_dir

PARTY = str(Path(sys.executable).parent / "party")


@pytest.fixture
async def api(
    database_url: str, schema_name: str, stream_prefix: str, redis_client: Any
) -> AsyncIterator[Api]:
    # As a deployment runs it: production, the provisioned key (the session has roster's), a
    # strong secret.
    settings = service_settings(
        database_url,
        schema_name,
        stream_prefix,
        REDIS_URL,
        env="production",
        create_missing_key=False,
    )
    async with running(ServiceDefinition(name="roster", title="Test"), settings) as api:
        yield api


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "sub": "x",
        "role": "university_admin",
        "iss": "party-members",
        "aud": "party-members",
        "iat": now,
        "exp": now + 3600,
        **changes,
    }
    return {k: v for k, v in base.items() if v is not None}


async def test_a_token_valid_for_a_hundred_years_gets_401_naming_the_reason(api: Api) -> None:
    now = int(time.time())
    century = jwt.encode(claims(exp=now + 100 * 365 * 86400), SECRET)
    response = await api.client.get("/v1/audit/verify", headers=bearer(century))
    assert response.status_code == 401
    assert "longer than the 9 hours a token may last" in response.json()["detail"]
    day = await api.client.get("/v1/audit/verify", headers=bearer(jwt.encode(claims(), SECRET)))
    assert day.status_code == 200


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "another-issuer"}, "it was not issued by party-members"),
        ({"iss": None}, 'missing the "iss" claim'),
        ({"aud": "another-system"}, "it is not meant for party-members"),
        ({"iat": None}, 'missing the "iat" claim'),
    ],
)
async def test_a_token_from_another_issuer_or_without_iat_gets_401(
    api: Api, changes: dict[str, Any], reason: str
) -> None:
    response = await api.client.get(
        "/v1/audit/verify", headers=bearer(jwt.encode(claims(**changes), SECRET))
    )
    assert response.status_code == 401
    assert reason in response.json()["detail"]


async def test_a_service_does_not_start_with_the_published_secret(
    database_url: str, schema_name: str, stream_prefix: str
) -> None:
    for values, variable in [
        ({"auth_secret": DEVELOPMENT_SECRET}, "PARTY_AUTH_SECRET"),
        ({"auth_secret": "short"}, "PARTY_AUTH_SECRET"),
        ({"create_missing_key": True}, "PARTY_CREATE_MISSING_KEY"),
    ]:
        settings = service_settings(
            database_url,
            schema_name,
            stream_prefix,
            REDIS_URL,
            **{"env": "production", "create_missing_key": False, **values},
        )
        with pytest.raises(UnsafeSettings, match=variable):
            await start_service(ServiceDefinition(name="roster", title="Test"), settings)


def party(*arguments: str, **environ: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARTY_")}
    return subprocess.run(
        [PARTY, *arguments],
        env={**clean, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_party_serve_refuses_weak_secrets_and_self_made_keys_in_production(
    database_url: str, schema_name: str
) -> None:
    common = {
        "PARTY_DATABASE_URL": database_url,
        "PARTY_DB_SCHEMA": schema_name,
        "PARTY_KEYS_DIR": str(keys_dir()),
        "PARTY_CREATE_MISSING_KEY": "false",
    }
    published = party("serve", "roster", **common)  # PARTY_AUTH_SECRET not set: the default
    assert published.returncode == 2
    assert "PARTY_AUTH_SECRET is a secret published in the repository" in published.stderr
    short = party("serve", "roster", **common, PARTY_AUTH_SECRET="0123456789")
    assert short.returncode == 2
    assert "PARTY_AUTH_SECRET is 10 bytes long: it needs at least 32" in short.stderr
    keys = party(
        "serve", "all", **{**common, "PARTY_AUTH_SECRET": SECRET, "PARTY_CREATE_MISSING_KEY": "1"}
    )
    assert keys.returncode == 2
    assert "PARTY_CREATE_MISSING_KEY is true" in keys.stderr


def test_party_token_takes_the_secret_of_the_stack_make_up_started(tmp_path: Path) -> None:
    stack_secret = "the-stack-secret-" + "s" * 40
    (tmp_path / "credentials.json").write_text(json.dumps({"auth_secret": stack_secret}))
    made = party("token", "--role", "auditor", PARTY_RUN_DIR=str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert TokenAuthority(secret=stack_secret).verify(made.stdout.strip()).role == "auditor"
    # PARTY_AUTH_SECRET, when set, comes first.
    given = party(
        "token", "--role", "auditor", PARTY_RUN_DIR=str(tmp_path), PARTY_AUTH_SECRET=SECRET
    )
    assert TokenAuthority(secret=SECRET).verify(given.stdout.strip()).role == "auditor"
