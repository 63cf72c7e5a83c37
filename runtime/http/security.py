"""FastAPI dependencies for authentication and idempotency keys."""

from __future__ import annotations

import hashlib
from typing import Annotated

import orjson
from fastapi import Depends, Header, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.auth import AuthenticationFailed, Principal, TokenAuthority
from runtime.eventstore import IdempotencyKey

_bearer = HTTPBearer(auto_error=False, description="A signed token: `party token --help`")


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    if credentials is None:
        raise AuthenticationFailed("send `Authorization: Bearer <token>`")
    tokens: TokenAuthority = request.app.state.tokens
    return tokens.verify(credentials.credentials)


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
    # Keys are per caller: two clients choosing the same key do not collide.
    return IdempotencyKey(key=f"{principal.subject}:{key}", fingerprint=fingerprint)


CommandKey = Annotated[IdempotencyKey | None, Depends(idempotency)]
