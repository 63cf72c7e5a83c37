"""Signed tokens with a role and a scope, shared by every service (DESIGN §6).

Claims: `sub` (who), `role`, `branches` and `schools` (the scope of secretaries and school
admins), `member` (the member id of a member), `iss`, `aud`, `iat` and `exp`. A token is accepted
only from the configured issuer, for the configured audience, and valid for no longer than the
configured lifetime (`exp` − `iat`). Development signs with a shared secret (HS256); production
verifies with a public key (RS256 or EdDSA) and never sees a private key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, cast, get_args

import jwt

from contracts.types import PersonRole

#: A service reading another's record (to fill a gap) acts as `service`: its token is signed
#: by its own signing key (runtime.signing), never by the people's token issuer.
Role = PersonRole | Literal["service"]
ROLES: tuple[PersonRole, ...] = get_args(PersonRole)
AUDIENCE = "party-members"
ISSUER = "party-members"
#: A working day: the longest a token may be valid (`PARTY_TOKEN_MAX_LIFETIME_HOURS`).
MAX_LIFETIME = timedelta(hours=9)


class AuthenticationFailed(Exception):
    """No token, or a token that is forged, expired or malformed (HTTP 401)."""


class AccessDenied(Exception):
    """An authentic caller outside the scope or role the action needs (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    branches: frozenset[str] = field(default_factory=frozenset)
    schools: frozenset[str] = field(default_factory=frozenset)
    member_id: str | None = None

    @property
    def reads_everything(self) -> bool:
        return self.role in ("university_admin", "auditor")

    def covers_branch(self, branch_id: str, school_id: str | None) -> bool:
        """Whether the branch is inside this caller's scope (whatever their role)."""
        if self.role == "university_admin" or self.role == "auditor":
            return True
        if self.role == "school_admin":
            return school_id is not None and school_id in self.schools
        if self.role in ("branch_secretary", "committee_member"):
            return branch_id in self.branches
        return False

    def require_read(self, branch_id: str, school_id: str | None = None) -> None:
        if not self.covers_branch(branch_id, school_id):
            raise AccessDenied(f"{self.role} {self.subject} may not read branch {branch_id}")

    def require_write(self, branch_id: str, school_id: str | None = None) -> None:
        if self.role not in (
            "university_admin",
            "school_admin",
            "branch_secretary",
            "committee_member",
        ):
            raise AccessDenied(f"the {self.role} role may not change branch records")
        if not self.covers_branch(branch_id, school_id):
            raise AccessDenied(f"{self.role} {self.subject} may not change branch {branch_id}")

    def require_role(self, *roles: Role) -> None:
        if self.role not in roles:
            raise AccessDenied(f"this needs one of the roles {', '.join(roles)}, not {self.role}")


class TokenAuthority:
    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        private_key: str | None = None,
        leeway_seconds: int = 30,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        max_lifetime: timedelta = MAX_LIFETIME,
    ) -> None:
        if public_key is None and not secret:
            raise ValueError("a shared secret or a public key is needed to verify tokens")
        self._secret = secret
        self._public_key = public_key
        self._private_key = private_key
        self._leeway = leeway_seconds
        self.issuer = issuer
        self.audience = audience
        self.max_lifetime = max_lifetime

    def issue(
        self,
        subject: str,
        role: Role,
        *,
        branches: Iterable[str] = (),
        schools: Iterable[str] = (),
        member_id: str | None = None,
        ttl: timedelta = timedelta(hours=8),
        now: datetime | None = None,
    ) -> str:
        if ttl > self.max_lifetime:
            raise ValueError(
                f"a token valid for {_hours(ttl)} would be refused: tokens last at most "
                f"{_hours(self.max_lifetime)}"
            )
        issued = now or datetime.now(UTC)
        claims = {
            "sub": subject,
            "role": role,
            "branches": sorted(branches),
            "schools": sorted(schools),
            "member": member_id,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued,
            "exp": issued + ttl,
        }
        if self._private_key is not None:
            return jwt.encode(claims, self._private_key, algorithm="RS256")
        if not self._secret:
            raise ValueError("no key to sign tokens with")
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> Principal:
        if self._public_key is not None:
            key, algorithms = self._public_key, ["RS256", "EdDSA"]
        else:
            assert self._secret is not None
            key, algorithms = self._secret, ["HS256"]
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the token has expired") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed(
                f"the token is not valid: it was not issued by {self.issuer}"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed(
                f"the token is not valid: it is not meant for {self.audience}"
            ) from None
        except jwt.InvalidTokenError as error:
            raise AuthenticationFailed(f"the token is not valid: {error}") from None
        lifetime = timedelta(seconds=float(claims["exp"]) - float(claims["iat"]))
        if lifetime > self.max_lifetime:
            raise AuthenticationFailed(
                f"the token is not valid: it lasts {_hours(lifetime)}, longer than the "
                f"{_hours(self.max_lifetime)} a token may last"
            )
        role = claims.get("role")
        if role not in ROLES:
            raise AuthenticationFailed(f"the token names an unknown role {role!r}")
        branches = claims.get("branches") or []
        schools = claims.get("schools") or []
        if not all(isinstance(b, str) for b in [*branches, *schools]):
            raise AuthenticationFailed("the token's branches and schools must be lists of ids")
        return Principal(
            subject=str(claims["sub"]),
            role=cast(Role, role),
            branches=frozenset(branches),
            schools=frozenset(schools),
            member_id=claims.get("member"),
        )


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours" if hours < 48 else f"{hours / 24:,.0f} days"
