"""Weak defaults refused: outside development a service does not start with the published
token secret, a short one, or a signing key it would make itself; `party token` mints no token
that opens nothing or everything for ever."""

from __future__ import annotations

import pytest

from runtime.service import UnsafeSettings, check_safe_to_start
from runtime.settings import DEVELOPMENT_SECRET, Settings
from services.cli import main

STRONG = "a-random-secret-of-more-than-32-bytes-0123456789"


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PARTY_ENV",
        "PARTY_AUTH_SECRET",
        "PARTY_AUTH_PUBLIC_KEY",
        "PARTY_CREATE_MISSING_KEY",
        "PARTY_TOKEN_MAX_LIFETIME_HOURS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARTY_RUN_DIR", "/nonexistent")  # no stack's credentials file either


def settings(**values: object) -> Settings:
    return Settings(**{"create_missing_key": False, "auth_secret": STRONG, **values})


def test_production_is_the_default() -> None:
    assert Settings().env == "production"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_secret": DEVELOPMENT_SECRET}, "PARTY_AUTH_SECRET is a secret published"),
        (
            {"auth_secret": "change-me-a-long-random-token-signing-secret"},  # compose's example
            "PARTY_AUTH_SECRET is a secret published",
        ),
        ({"auth_secret": "x"}, "PARTY_AUTH_SECRET is 1 bytes long: it needs at least 32"),
        ({"auth_secret": "y" * 31}, "PARTY_AUTH_SECRET is 31 bytes long"),
        ({"create_missing_key": True}, "PARTY_CREATE_MISSING_KEY is true"),
    ],
)
def test_a_service_refuses_weak_settings_outside_development(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(UnsafeSettings, match=message) as refused:
        check_safe_to_start(settings(**values))
    assert "PARTY_ENV=development" in str(refused.value)
    check_safe_to_start(settings(**values, env="development"))  # said explicitly: allowed


def test_the_defaults_are_refused_and_a_strong_secret_is_not() -> None:
    with pytest.raises(UnsafeSettings) as refused:
        check_safe_to_start(Settings(env="production"))
    assert "PARTY_AUTH_SECRET" in str(refused.value)
    assert "PARTY_CREATE_MISSING_KEY" in str(refused.value)
    check_safe_to_start(settings())
    check_safe_to_start(settings(auth_secret="z" * 32))


def test_with_the_identity_providers_public_key_the_secret_verifies_nothing() -> None:
    check_safe_to_start(settings(auth_secret=DEVELOPMENT_SECRET, auth_public_key="PEM"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--role", "auditor", "--ttl-hours", "-1"], "--ttl-hours must be more than 0 (not -1)"),
        (["--role", "auditor", "--ttl-hours", "0"], "--ttl-hours must be more than 0 (not 0)"),
        (["--role", "auditor", "--ttl-hours", "876000"], "tokens last at most 9 hours"),
        (["--role", "branch_secretary"], "a branch_secretary token needs its scope: give --branch"),
        (["--role", "committee_member"], "a committee_member token needs its scope: give --branch"),
        (["--role", "school_admin"], "a school_admin token needs its scope: give --school"),
        (["--role", "member"], "a member token needs its scope: give --member"),
    ],
)
def test_party_token_refuses_a_token_that_opens_nothing_or_lasts_too_long(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", *arguments]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_party_token_issues_a_scoped_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--role", "branch_secretary", "--branch", "nde-b1"]) == 0
    assert capsys.readouterr().out.count(".") == 2  # a JWT
