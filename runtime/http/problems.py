"""RFC 9457 problem details for every error a service returns (DESIGN §8)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import ContractViolation, field_errors
from runtime.auth import AccessDenied, AuthenticationFailed
from runtime.decider import CommandRefused
from runtime.eventstore import (
    ConcurrencyConflict,
    IdempotencyKeyReused,
    LogTampered,
    UniqueClaimTaken,
)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = 5


class FieldProblem(BaseModel):
    field: str
    reason: str


class ProblemDetails(BaseModel):
    """The body of every error response (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldProblem] | None = None
    rule: str | None = None
    current_version: int | None = None


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = extra
        super().__init__(detail or title)


def problem_response(problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
    }
    if problem.detail is not None:
        body["detail"] = problem.detail
    if problem.errors is not None:
        body["errors"] = problem.errors
    body.update({k: v for k, v in problem.extra.items() if v is not None})
    return JSONResponse(
        body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON
    )


def validation_problem(errors: list[dict[str, str]], detail: str | None = None) -> Problem:
    return Problem(
        422,
        "Invalid input",
        detail or "; ".join(f"{e['field']}: {e['reason']}" for e in errors),
        type_="/problems/invalid-input",
        errors=errors,
    )


def _request_validation_errors(error: RequestValidationError) -> list[dict[str, str]]:
    errors = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        message = str(item.get("msg", "invalid"))
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
            # model-level validators name their field first: "field: reason"
            head, sep, rest = message.partition(":")
            if sep and " " not in head.strip():
                loc = [*loc, head.strip()]
                message = rest.strip()
        errors.append({"field": ".".join(loc) or "(body)", "reason": message})
    return errors


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_request_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(_request_validation_errors(exc)))

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        errors = [{"field": e.field, "reason": e.reason} for e in field_errors(exc)]
        return problem_response(validation_problem(errors))

    async def on_contract(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ContractViolation)
        errors = [{"field": e.field, "reason": e.reason} for e in exc.errors]
        return problem_response(validation_problem(errors, str(exc)))

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            Problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))
        )

    async def on_unauthenticated(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            Problem(
                401,
                "Not authenticated",
                str(exc),
                type_="/problems/unauthenticated",
                headers={"WWW-Authenticate": "Bearer"},
            )
        )

    async def on_denied(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(Problem(403, "Forbidden", str(exc), type_="/problems/forbidden"))

    async def on_refused(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CommandRefused)
        errors = [{"field": exc.field, "reason": exc.message}] if exc.field else None
        return problem_response(
            Problem(
                422 if exc.invalid else 409,
                "Invalid input" if exc.invalid else "Command refused",
                exc.message,
                rule=exc.rule,
                errors=errors,
                type_=f"/problems/refused/{exc.rule}",
            )
        )

    async def on_conflict(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ConcurrencyConflict)
        return problem_response(
            Problem(
                409,
                "Version conflict",
                str(exc),
                type_="/problems/version-conflict",
                current_version=exc.actual,
                headers={"ETag": f'"{exc.actual}"'},
            )
        )

    async def on_taken(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, UniqueClaimTaken)
        return problem_response(
            Problem(
                409,
                "Already taken",
                # Neither the value nor whose it is: a claimed value is personal data (a
                # student number), and its owner is another person's record.
                f"this {exc.claim.scope} is already recorded for someone else",
                rule=f"unique_{exc.claim.scope}",
                type_=f"/problems/refused/unique_{exc.claim.scope}",
                errors=[{"field": exc.claim.scope, "reason": "already taken"}],
            )
        )

    async def on_key_reused(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            Problem(
                422,
                "Idempotency key reused",
                str(exc),
                type_="/problems/idempotency-key-reused",
                errors=[
                    {"field": "Idempotency-Key", "reason": "used before for a different command"}
                ],
            )
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(ContractViolation, on_contract)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(AuthenticationFailed, on_unauthenticated)
    app.add_exception_handler(AccessDenied, on_denied)
    app.add_exception_handler(CommandRefused, on_refused)
    app.add_exception_handler(ConcurrencyConflict, on_conflict)
    app.add_exception_handler(UniqueClaimTaken, on_taken)
    app.add_exception_handler(IdempotencyKeyReused, on_key_reused)

    async def on_tampered(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(
            Problem(
                503,
                "The log needs an operator",
                str(exc),
                type_="/problems/log-tampered",
            )
        )

    app.add_exception_handler(LogTampered, on_tampered)


#: Error responses to list in an OpenAPI operation (`responses=ERRORS`).
def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    problem = {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
    return {
        status: {"model": ProblemDetails, "content": {PROBLEM_JSON: problem}} for status in statuses
    }
