"""The answer every command endpoint gives."""

from __future__ import annotations

from uuid import UUID

from fastapi import Response
from pydantic import BaseModel, Field

from runtime.eventstore import AppendResult


class Accepted(BaseModel):
    """A command was accepted: what it appended (or, with a repeated key, what it appended the
    first time)."""

    id: str | None = Field(None, description="the id of what the command created, if anything")
    versions: dict[str, int] = Field(description="version of each stream after the command")
    event_ids: list[UUID]
    position: int | None = Field(description="position of the last event in the service's log")
    replayed: bool = Field(description="true when this repeats the answer to an earlier request")


def accepted(
    result: AppendResult,
    response: Response,
    *,
    id: str | None = None,
    stream: str | None = None,
) -> Accepted:
    if stream is not None and stream in result.stream_versions:
        response.headers["ETag"] = f'"{result.stream_versions[stream]}"'
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return Accepted(
        id=id,
        versions=result.stream_versions,
        event_ids=result.event_ids,
        position=result.last_position,
        replayed=result.replayed,
    )
