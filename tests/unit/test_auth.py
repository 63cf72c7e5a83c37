"""Tokens and scopes: who may read and change which branch."""

from __future__ import annotations

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
                {"sub": "x", "role": "king", "aud": "party-members", "exp": 9999999999}, SECRET
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
