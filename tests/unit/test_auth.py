"""Tokens and scopes: who may read and change which branch."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from runtime.auth import AccessDenied, AuthenticationFailed, Principal, TokenAuthority

SECRET = "unit-test-secret-0123456789-abcdef"


def test_a_token_round_trips_its_claims() -> None:
    tokens = TokenAuthority(secret=SECRET)
    principal = tokens.verify(
        tokens.issue("sec-1", "branch_secretary", branches=["b2", "b1"], member_id=None)
    )
    assert principal == Principal("sec-1", "branch_secretary", frozenset({"b1", "b2"}))


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-token", "the token is not valid"),
        (
            jwt.encode(
                {"sub": "x", "role": "auditor", "aud": "party-members", "exp": 9999999999},
                "another-secret-0123456789-abcdef",
            ),
            "Signature verification failed",
        ),
        (
            jwt.encode(
                {
                    "sub": "x",
                    "role": "king",
                    "iss": "party-members",
                    "aud": "party-members",
                    # Made when the tests are collected, minutes before this one runs.
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 8 * 3600,
                },
                SECRET,
            ),
            "unknown role 'king'",
        ),
        (
            jwt.encode({"sub": "x", "role": "auditor", "exp": 9999999999}, SECRET),
            "the token is not valid",
        ),
    ],
)
def test_bad_tokens_are_refused_with_a_reason(token: str, message: str) -> None:
    with pytest.raises(AuthenticationFailed, match=message):
        TokenAuthority(secret=SECRET).verify(token)


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "sub": "x",
        "role": "university_admin",
        "iss": "party-members",
        "aud": "party-members",
        "iat": now,
        "exp": now + 3600,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_a_token_names_its_issuer_audience_and_issue_time() -> None:
    token = TokenAuthority(secret=SECRET).issue("x", "auditor")
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience="party-members")
    assert decoded["iss"] == "party-members"
    assert decoded["exp"] - decoded["iat"] == 8 * 3600


def test_a_token_valid_for_a_hundred_years_is_refused() -> None:
    now = int(time.time())
    century = jwt.encode(claims(iat=now, exp=now + 100 * 365 * 86400), SECRET)
    with pytest.raises(AuthenticationFailed, match="longer than the 9 hours a token may last"):
        TokenAuthority(secret=SECRET).verify(century)
    # The cap is the settings': a day and a half is refused under 9 hours, accepted under 48.
    day_and_a_half = jwt.encode(claims(exp=now + 36 * 3600), SECRET)
    with pytest.raises(AuthenticationFailed, match="lasts 36 hours"):
        TokenAuthority(secret=SECRET).verify(day_and_a_half)
    TokenAuthority(secret=SECRET, max_lifetime=timedelta(hours=48)).verify(day_and_a_half)
    with pytest.raises(ValueError, match="would be refused"):
        TokenAuthority(secret=SECRET).issue("x", "auditor", ttl=timedelta(hours=10))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iss": "someone-else"}, "it was not issued by party-members"),
        ({"iss": None}, 'missing the "iss" claim'),
        ({"aud": "another-system"}, "it is not meant for party-members"),
        ({"iat": None}, 'missing the "iat" claim'),
    ],
)
def test_a_token_from_another_issuer_or_without_iat_is_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(AuthenticationFailed, match=message):
        TokenAuthority(secret=SECRET).verify(jwt.encode(claims(**changes), SECRET))


def test_the_issuer_and_audience_are_configurable() -> None:
    ours = TokenAuthority(secret=SECRET, issuer="https://idp.example.edu.cn", audience="party")
    principal = ours.verify(ours.issue("x", "auditor"))
    assert principal.role == "auditor"
    with pytest.raises(AuthenticationFailed, match=r"not issued by https://idp\.example\.edu\.cn"):
        ours.verify(TokenAuthority(secret=SECRET, audience="party").issue("x", "auditor"))


def test_expired_tokens_are_refused() -> None:
    tokens = TokenAuthority(secret=SECRET)
    with pytest.raises(AuthenticationFailed, match="expired"):
        tokens.verify(tokens.issue("x", "auditor", ttl=timedelta(minutes=-1)))


def test_scopes() -> None:
    secretary = Principal("s", "branch_secretary", branches=frozenset({"b1"}))
    secretary.require_write("b1")
    with pytest.raises(AccessDenied, match="may not change branch b2"):
        secretary.require_write("b2")
    with pytest.raises(AccessDenied, match="may not read branch b2"):
        secretary.require_read("b2")

    school_admin = Principal("a", "school_admin", schools=frozenset({"nde"}))
    school_admin.require_write("b9", school_id="nde")
    with pytest.raises(AccessDenied):
        school_admin.require_read("b9", school_id="other")

    auditor = Principal("au", "auditor")
    auditor.require_read("any-branch")
    with pytest.raises(AccessDenied, match="may not change branch records"):
        auditor.require_write("any-branch")

    member = Principal("m", "member", member_id="m-1")
    with pytest.raises(AccessDenied):
        member.require_read("b1")
    with pytest.raises(AccessDenied):
        Principal("c", "campus_system").require_read("b1")
