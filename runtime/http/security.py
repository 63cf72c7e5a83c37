"""FastAPI dependencies for authentication and idempotency keys."""

from __future__ import annotations

import hashlib
from typing import Annotated
from uuid import UUID, uuid4

import jwt
import orjson
from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.auth import AccessDenied, AuthenticationFailed, Principal, TokenAuthority
from runtime.commands import CommandContext
from runtime.eventstore import IdempotencyKey

_bearer = HTTPBearer(auto_error=False, description="A signed token: `party token --help`")


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    if credentials is None:
        raise AuthenticationFailed("send `Authorization: Bearer <token>`")
    token = credentials.credentials
    if is_service_token(token):
        return _service_principal(request, token)
    tokens: TokenAuthority = request.app.state.tokens
    principal = tokens.verify(token)
    if principal.role == "campus_system":
        raise AccessDenied("the campus_system role subscribes to the event streams, not this API")
    return principal


def is_service_token(token: str) -> bool:
    try:
        return str(jwt.get_unverified_header(token).get("kid", "")).startswith("service:")
    except jwt.InvalidTokenError:
        return False


def _service_principal(request: Request, token: str) -> Principal:
    """Another service, by its signing key: it may read this service's record, nothing else."""
    context = request.app.state.context
    try:
        service = context.keyring.service_of_token(token, context.definition.name)
    except jwt.ExpiredSignatureError:
        raise AuthenticationFailed("the service token has expired") from None
    except jwt.InvalidTokenError as error:
        raise AuthenticationFailed(f"the service token is not valid: {error}") from None
    return Principal(subject=f"service:{service}", role="service")


CurrentPrincipal = Annotated[Principal, Depends(authenticated)]


async def idempotency(
    request: Request,
    principal: CurrentPrincipal,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="Retrying with the same key returns the first result; "
            "the same key with a different body is refused (422).",
        ),
    ] = None,
) -> IdempotencyKey | None:
    if key is None:
        return None
    body = await request.body()
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.url.path.encode() + b"\n" + canonical
    ).hexdigest()
    return IdempotencyKey(key=caller_key(principal.subject, key), fingerprint=fingerprint)


def caller_key(subject: str, key: str) -> str:
    """The stored key of one caller's Idempotency-Key: per caller, so two clients choosing the
    same key do not collide, and unambiguous, so that neither can a subject with a colon in it:
    `alice` with `x:1` and `alice:x` with `1` are two keys. The subject's `%` and `:` are
    percent-escaped, so its end is the first colon; a subject without either is stored as it
    was before (`alice:x:1`), and keys already recorded keep their meaning."""
    escaped = subject.replace("%", "%25").replace(":", "%3A")
    return f"{escaped}:{key}"


CommandKey = Annotated[IdempotencyKey | None, Depends(idempotency)]


async def command_context(
    request: Request,
    principal: CurrentPrincipal,
    key: CommandKey,
    if_match: Annotated[
        str | None,
        Header(
            alias="If-Match",
            description="The stream version you read (from ETag); a stale one gets 409.",
            pattern=r'^(W/)?"?\d+"?$',
        ),
    ] = None,
    correlation_id: Annotated[UUID | None, Header(alias="X-Correlation-Id")] = None,
) -> CommandContext:
    # Refused before the body is read, so a caller without the right learns nothing from it.
    if principal.role == "auditor":
        raise AccessDenied("an auditor reads everything and changes nothing")
    if principal.role == "service":
        raise AccessDenied("another service reads this service's record and changes nothing")
    branch_id = request.path_params.get("branch_id")
    scoped = principal.role in ("branch_secretary", "committee_member")
    if scoped and branch_id is not None and branch_id not in principal.branches:
        raise AccessDenied(
            f"{principal.role} {principal.subject} may not change branch {branch_id}"
        )
    expected = int(if_match.removeprefix("W/").strip('"')) if if_match else None
    return CommandContext(
        actor_id=principal.subject,
        actor_role=principal.role,
        idempotency=key,
        expected_version=expected,
        correlation_id=correlation_id or uuid4(),
    )


#: What every command endpoint receives: who, under which key, at which version.
Command = Annotated[CommandContext, Depends(command_context)]
