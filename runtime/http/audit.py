"""Endpoints every service offers to auditors: its log, its chain verification, dead letters,
the events its projections could not apply, its signed checkpoints with their Merkle proofs,
and the checkpoints it witnessed of others."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from contracts.events.audit import Checkpoint
from contracts.wire import dead_letter_key
from runtime.eventstore import verify_chain
from runtime.eventstore.verify import ChainReport
from runtime.failures import failed_events
from runtime.http.moments import KnownAt
from runtime.http.problems import Problem, problem_responses
from runtime.http.security import CurrentPrincipal
from runtime.service import ServiceContext
from runtime.witness import (
    LogChanged,
    ProofUnavailable,
    WitnessedCheckpoint,
    WitnessReport,
    activity_through,
    as_fork,
    check_log,
    latest_checkpoint,
    make_checkpoint,
    prove_consistency,
    prove_inclusion,
    witnessed_checkpoints,
)

audit_router = APIRouter(
    prefix="/v1/audit", tags=["audit"], responses=problem_responses(401, 403, 422, 503)
)


class DisagreementView(BaseModel):
    position: int | None = Field(
        description="the first position that disagrees (none: a checkpoint that is not the "
        "service's at all)"
    )
    kind: str = Field(
        description="cut_tail, missing, rewritten, root_mismatch, fork or bad_signature"
    )
    reason: str
    witness: str = Field(description="who kept the checkpoint that disagrees")
    tree_size: int
    witnessed_at: datetime | None


class WitnessVerification(BaseModel):
    """The log compared with the checkpoints of it that others kept."""

    witnesses: list[str] = Field(description="the witnesses consulted")
    unreachable: list[str] = Field(description="witnesses asked that did not answer")
    checkpoints_checked: int
    agreed_through: int = Field(description="the largest tree size that agreed with the log")
    agrees: bool
    first_disagreement: DisagreementView | None


class ChainVerification(BaseModel):
    service: str
    events_checked: int
    head_position: int
    intact: bool
    first_broken_position: int | None
    reason: str | None
    signed_through: int | None = Field(
        None, description="the last position covered by a valid signature of the service"
    )
    witnesses: WitnessVerification | None = Field(
        None, description="what every other service witnessed of this log, compared with it"
    )


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    next_after: int | None = Field(description="pass as `after` for the next page")


class DeadLetter(BaseModel):
    id: str
    fields: dict[str, str]


def _context(request: Request) -> ServiceContext:
    context: ServiceContext = request.app.state.context
    return context


def _witness_view(report: WitnessReport, chain: ChainReport | None) -> WitnessVerification:
    found = report.disagreement
    if found is not None and chain is not None:
        found = as_fork(found, chain.intact, report.service)
    return WitnessVerification(
        witnesses=list(report.witnesses),
        unreachable=list(report.unreachable),
        checkpoints_checked=report.checkpoints_checked,
        agreed_through=report.agreed_through,
        agrees=report.agrees,
        first_disagreement=DisagreementView(
            position=found.position,
            kind=found.kind,
            reason=found.reason,
            witness=found.witness,
            tree_size=found.tree_size,
            witnessed_at=found.witnessed_at,
        )
        if found is not None
        else None,
    )


@audit_router.get(
    "/verify", summary="Verify this service's hash chain, signatures and witnessed checkpoints"
)
async def verify(request: Request, principal: CurrentPrincipal) -> ChainVerification:
    principal.require_role("auditor", "university_admin")
    context = _context(request)
    name = context.definition.name
    report = await verify_chain(context.pool, context.schema, keyring=context.keyring, source=name)
    witnesses = None
    if context.witness is not None:
        found, asked, silent = await context.witness.consult()
        checked = await check_log(
            context.pool,
            context.schema,
            name,
            found,
            context.keyring,
            witnesses=asked,
            unreachable=silent,
        )
        witnesses = _witness_view(checked, report)
    first, reason = report.first_broken_position, report.reason
    disagreement = witnesses.first_disagreement if witnesses is not None else None
    if report.intact and disagreement is not None:
        first, reason = disagreement.position, disagreement.reason
    return ChainVerification(
        service=name,
        events_checked=report.events_checked,
        head_position=report.head_position,
        intact=report.intact and (witnesses is None or witnesses.agrees),
        first_broken_position=first,
        reason=reason,
        signed_through=report.signed_through,
        witnesses=witnesses,
    )


class CheckpointsToCheck(BaseModel):
    source: str = Field(
        "an exported file", max_length=300, description="named in the sentences, e.g. the file"
    )
    checkpoints: list[dict[str, Any]] = Field(
        max_length=1000,
        description="entries of a `partyctl checkpoints export` file: "
        "{witness, recorded_at, position, consistent_with_size, checkpoint}",
    )


@audit_router.post(
    "/verify/checkpoints",
    summary="Compare this service's log with checkpoints of it (from an exported file)",
)
async def verify_checkpoints(
    request: Request, principal: CurrentPrincipal, body: CheckpointsToCheck
) -> WitnessVerification:
    principal.require_role("auditor", "university_admin")
    context = _context(request)
    name = context.definition.name
    entries: list[WitnessedCheckpoint] = []
    errors: list[dict[str, str]] = []
    for number, raw in enumerate(body.checkpoints):
        try:
            entry = WitnessedCheckpoint.from_json(raw, body.source)
        except ValueError as error:
            errors.append({"field": f"checkpoints[{number}]", "reason": str(error)})
            continue
        if entry.checkpoint.service != name:
            errors.append(
                {
                    "field": f"checkpoints[{number}].checkpoint.service",
                    "reason": f"a checkpoint of {entry.checkpoint.service}, not of {name}",
                }
            )
            continue
        entries.append(entry)
    if errors:
        raise Problem(
            422, "Unreadable checkpoints", "some checkpoints cannot be read", errors=errors
        )
    report = await check_log(
        context.pool,
        context.schema,
        name,
        entries,
        context.keyring,
        witnesses=sorted({e.witness for e in entries}),
    )
    chain = None
    if report.disagreement is not None and report.disagreement.kind == "rewritten":
        chain = await verify_chain(
            context.pool, context.schema, keyring=context.keyring, source=name
        )
    return _witness_view(report, chain)


class CheckpointAnswer(BaseModel):
    checkpoint: Checkpoint
    activity_through: int = Field(
        description="the position of the last event that is not a record of another service's "
        "checkpoint (not signed: witnesses do not record a growth made of witness records only)"
    )


@audit_router.get("/checkpoint", summary="This service's latest signed checkpoint of its log")
async def checkpoint(
    request: Request,
    principal: CurrentPrincipal,
    fresh: Annotated[
        bool, Query(description="make one of the log as it is now (the last one if unchanged)")
    ] = False,
) -> CheckpointAnswer:
    principal.require_role("auditor", "university_admin", "service")
    context = _context(request)
    name = context.definition.name
    made = None if fresh else await latest_checkpoint(context.pool, context.schema, name)
    if made is None:
        try:
            if context.witness is not None:
                made = await context.witness.checkpoint()
            else:
                assert context.signer is not None
                made = await make_checkpoint(
                    context.pool, context.schema, context.signer, clock=context.clock
                )
        except LogChanged as error:
            raise Problem(
                409, "The log no longer extends its last checkpoint", str(error)
            ) from None
    return CheckpointAnswer(
        checkpoint=made, activity_through=await activity_through(context.pool, context.schema)
    )


class InclusionProofView(BaseModel):
    position: int
    tree_size: int
    event_hash: str = Field(description="the leaf input: the event's hash")
    leaf_hash: str = Field(description="SHA-256(0x00 || event hash bytes)")
    root_hash: str
    audit_path: list[str] = Field(description="RFC 9162 PATH, lowest sibling first, hex")


class ConsistencyProofView(BaseModel):
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str] = Field(description="RFC 9162 PROOF(first, D[second]), hex")


Position = Annotated[int, Query(ge=1, le=2**63 - 1)]


@audit_router.get(
    "/proof/inclusion", summary="RFC 9162 audit path of one event in a tree of this log"
)
async def proof_inclusion(
    request: Request, principal: CurrentPrincipal, position: Position, tree_size: Position
) -> InclusionProofView:
    principal.require_role("auditor", "university_admin", "service")
    context = _context(request)
    try:
        proof = await prove_inclusion(context.pool, context.schema, position, tree_size)
    except ProofUnavailable as error:
        raise Problem(422, "No such proof", str(error)) from None
    return InclusionProofView(**vars(proof))


@audit_router.get(
    "/proof/consistency", summary="RFC 9162 proof that one tree of this log extends another"
)
async def proof_consistency(
    request: Request, principal: CurrentPrincipal, first: Position, second: Position
) -> ConsistencyProofView:
    principal.require_role("auditor", "university_admin", "service")
    context = _context(request)
    try:
        proof = await prove_consistency(context.pool, context.schema, first, second)
    except ProofUnavailable as error:
        raise Problem(422, "No such proof", str(error)) from None
    return ConsistencyProofView(**vars(proof))


class WitnessedPage(BaseModel):
    witness: str
    checkpoints: list[dict[str, Any]] = Field(
        description="{witness, recorded_at, position, consistent_with_size, checkpoint}"
    )
    next_after: int | None = Field(description="pass as `after` for the next page")


@audit_router.get(
    "/witnessed", summary="Checkpoints of other services' logs this service witnessed"
)
async def witnessed(
    request: Request,
    principal: CurrentPrincipal,
    service: Annotated[str | None, Query(max_length=64, description="of this service")] = None,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> WitnessedPage:
    principal.require_role("auditor", "university_admin", "service")
    context = _context(request)
    found = await witnessed_checkpoints(
        context.pool,
        context.schema,
        context.definition.name,
        of=service,
        after=after,
        limit=limit,
    )
    return WitnessedPage(
        witness=context.definition.name,
        checkpoints=[c.to_json() for c in found],
        next_after=found[-1].position if len(found) == limit else None,
    )


@audit_router.get("/events", summary="This service's log, in position order")
async def events(
    request: Request,
    principal: CurrentPrincipal,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[list[str] | None, Query(max_length=50)] = None,
    known_at: KnownAt = None,
) -> EventPage:
    principal.require_role("auditor", "university_admin", "service")
    recorded = await _context(request).store.read_all(
        after_position=after, limit=limit, types=type, known_at=known_at
    )
    return EventPage(
        events=[
            {
                "position": e.position,
                **orjson.loads(e.envelope_json()),
                "signature": e.signature,
                "key_id": e.key_id,
            }
            for e in recorded
        ],
        next_after=recorded[-1].position if len(recorded) == limit else None,
    )


class Progress(BaseModel):
    service: str
    head_position: int = Field(description="events this service has recorded")
    inbox: int = Field(description="events from other services it has applied")


@audit_router.get("/progress", summary="How far this service has got: its log and its inbox")
async def progress(request: Request, principal: CurrentPrincipal) -> Progress:
    principal.require_role("auditor", "university_admin", "service")
    context = _context(request)
    head, _ = await context.store.head()
    inbox = await context.pool.fetchval(f'SELECT count(*) FROM "{context.schema}".inbox')
    return Progress(service=context.definition.name, head_position=head, inbox=int(inbox))


class FailedEventView(BaseModel):
    projector: str = Field(
        description="the read models of the service's own log (`{service}_read_models`), or "
        "`consumer` (what it applies of other services' logs)"
    )
    event_id: UUID
    source: str = Field(description="the service whose log holds the event")
    position: int = Field(description="its position in that log")
    stream_id: str
    type: str
    error: str = Field(description="the last error applying it")
    attempts: int
    status: Literal["retrying", "skipped"] = Field(
        description="`skipped`: the read models go without it; `retrying`: tried again soon"
    )
    first_seen: datetime
    last_seen: datetime


class FailedEventsPage(BaseModel):
    service: str
    skipped: int = Field(description="events the projections went without")
    retrying: int = Field(description="events failing, to be tried again before skipping")
    events: list[FailedEventView]


@audit_router.get(
    "/failed-events",
    summary="Events this service's projections could not apply: skipped, or being retried",
)
async def failed_events_view(
    request: Request,
    principal: CurrentPrincipal,
    status: Literal["retrying", "skipped"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> FailedEventsPage:
    """An event of a log that a projection fails on is recorded, tried again a few times
    (`PARTY_PROJECTION_ATTEMPTS`) and then skipped, so that the events after it are still
    applied; `party rebuild` folds it again (and drops it from here when it applies now)."""
    principal.require_role("auditor", "university_admin")
    context = _context(request)
    async with context.pool.acquire() as conn:
        found = await failed_events(conn, context.schema, status=status, limit=limit)
        counts = {
            row["status"]: row["n"]
            for row in await conn.fetch(
                f'SELECT status, count(*) AS n FROM "{context.schema}".failed_events '
                "GROUP BY status"
            )
        }
    return FailedEventsPage(
        service=context.definition.name,
        skipped=counts.get("skipped", 0),
        retrying=counts.get("retrying", 0),
        events=[FailedEventView(**f.view()) for f in found],
    )


@audit_router.get("/dead-letters", summary="Entries this service could not consume")
async def dead_letters(
    request: Request,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetter]:
    principal.require_role("auditor", "university_admin")
    context = _context(request)
    key = dead_letter_key(context.settings.stream_prefix, context.definition.name)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await context.redis.xrevrange(  # type: ignore[assignment]
        key, count=limit
    )
    return [
        DeadLetter(
            id=entry_id.decode(),
            fields={
                k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()
            },
        )
        for entry_id, fields in entries
    ]
