"""Witnessed logs (DESIGN §10): signed checkpoints of a service's own log, other services
keeping them in theirs, and every log checked against what its witnesses saw.

**Checkpoints.** A checkpoint says "my log has `tree_size` events, the last one hashes to
`head_hash`, and the RFC 9162 Merkle tree over every event hash in order has root
`root_hash`", at an instant, signed by the service's Ed25519 key. What is signed:

    party-checkpoint-v1 \\n {service} \\n {tree_size} \\n {head_hash} \\n {root_hash} \\n {at}

(`at` as every instant in an envelope: UTC, microseconds, `contracts.canonical.format_instant`;
the key id is not in the message, it names the key that verifies it). The root is kept by a
persisted `Frontier` (table `log_frontier`), advanced from the last checkpoint by reading only
the hashes of the rows after it, each linking onto the one before; a log that no longer extends
the frontier (cut, or rewritten under it) is refused (`LogChanged`), never signed. The
checkpoints a service made are kept in `log_checkpoints`; asked for one while the log stands
still, it gives the last one again. A service makes one every `PARTY_CHECKPOINT_SECONDS` and on
request (`GET /v1/audit/checkpoint?fresh=true`).

**Witnesses.** Every service witnesses every other one (`Witness.round`, every period): it asks
the peer for a fresh checkpoint, verifies its signature with the key ring, asks for a
consistency proof from the last checkpoint it witnessed of that peer and verifies it
(`merkle.verify_consistency`), and records the checkpoint as `checkpoint.witnessed` in its
*own* log (stream `witness-{peer}`), signed by its own key, in its own database. A bad
signature, an inconsistent checkpoint, a smaller tree than witnessed before, or a peer saying
its log no longer extends its checkpoints is an alarm (an error log line and
`party_witness_disagreements_total`), never recorded. A peer that does not answer is skipped
and asked again next period. So that witnessing does not feed itself, a checkpoint whose growth
since the last one witnessed is only the peer's own witness records is verified but not
recorded (the peer says where its last other event is: `activity_through`, unsigned: a lie
only makes it less witnessed).

**Verification.** `check_log` compares a log, as its rows are now, with checkpoints of it (from
the witnesses' logs or from a file an auditor exported): each one's signature; that the log
has `tree_size` events; that the event at `tree_size` has `head_hash`; that the Merkle root of
the first `tree_size` hashes is `root_hash`. The first disagreement is reported with the first
position it concerns and a sentence: a cut tail, a missing row, a rewritten (and rehashed)
stretch between the last agreeing checkpoint and the first disagreeing one, or a fork after a
witnessed checkpoint (a stretch that differs and yet carries the service's valid signatures).

Peers are reached through the `PeerCheckpoints` port: `HttpPeerCheckpoints` over their audit
API with a service token (in production, and in tests over an in-process ASGI transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import orjson
from pydantic import ValidationError

from contracts.canonical import GENESIS_HASH, format_instant
from contracts.catalogue import PRODUCERS
from contracts.events.audit import Checkpoint, CheckpointWitnessed
from runtime.clock import Clock, utc_now
from runtime.eventstore.models import ConcurrencyConflict, EventMetadata, NewEvent, StreamAppend
from runtime.eventstore.schema import quote_schema
from runtime.eventstore.store import EventStore
from runtime.logs import get_logger
from runtime.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    consistency_proof,
    event_leaf,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
)
from runtime.metrics import (
    CHECKPOINT_SIZE,
    CHECKPOINTS_REFUSED,
    WITNESS_DISAGREEMENTS,
    WITNESSED_SIZE,
)
from runtime.signing import KeyRing, Signer

log = get_logger("witness")

CHECKPOINT_PREFIX = "party-checkpoint-v1"
WITNESSED_TYPE = CheckpointWitnessed.event_type
EMPTY_ROOT_HEX = EMPTY_ROOT.hex()
#: The format of the file `partyctl checkpoints export` writes.
FILE_FORMAT = "party-checkpoints-v1"


def witness_stream(peer: str) -> str:
    """The stream of a witness's log that holds the checkpoints it witnessed of `peer`."""
    return f"witness-{peer}"


# -- signing ----------------------------------------------------------------------------------


def checkpoint_message(
    service: str, tree_size: int, head_hash: str, root_hash: str, at: datetime
) -> bytes:
    """The bytes a service signs for a checkpoint of its log."""
    return (
        f"{CHECKPOINT_PREFIX}\n{service}\n{tree_size}\n{head_hash}\n{root_hash}\n"
        f"{format_instant(at)}"
    ).encode()


def signed_bytes(checkpoint: Checkpoint) -> bytes:
    return checkpoint_message(
        checkpoint.service,
        checkpoint.tree_size,
        checkpoint.head_hash,
        checkpoint.root_hash,
        checkpoint.at,
    )


def sign_checkpoint(
    signer: Signer, tree_size: int, head_hash: str, root_hash: str, at: datetime
) -> Checkpoint:
    message = checkpoint_message(signer.service, tree_size, head_hash, root_hash, at)
    return Checkpoint(
        service=signer.service,
        tree_size=tree_size,
        head_hash=head_hash,
        root_hash=root_hash,
        at=at,
        key_id=signer.key_id,
        signature=signer.sign_bytes(message),
    )


def signature_problem(checkpoint: Checkpoint, keyring: KeyRing) -> str | None:
    """Why this checkpoint is not its service's, or None when its signature holds."""
    service, key_id = checkpoint.service, checkpoint.key_id
    key = keyring.keys.get(service, {}).get(key_id)
    if key is None:
        return f"{service} has no public key {key_id}"
    if key.revoked_after is not None and checkpoint.tree_size > key.revoked_after:
        return (
            f"{service}'s key {key_id} was revoked after position {key.revoked_after}, and the "
            f"checkpoint is of size {checkpoint.tree_size}"
        )
    if not keyring.verify_bytes(service, key_id, signed_bytes(checkpoint), checkpoint.signature):
        return f"its signature does not verify under {service}'s key {key_id}"
    return None


def parse_checkpoint(raw: Any) -> Checkpoint:
    """A checkpoint from its JSON form (raises ValueError with pydantic's reasons)."""
    try:
        return Checkpoint.model_validate_json(orjson.dumps(raw))
    except (ValidationError, TypeError) as error:
        raise ValueError(f"not a checkpoint: {error}") from None


# -- making checkpoints -----------------------------------------------------------------------


class LogChanged(Exception):
    """The log no longer extends the tree its last checkpoint covered (cut or rewritten)."""


async def make_checkpoint(
    pool: asyncpg.Pool, schema: str, signer: Signer, *, clock: Clock = utc_now, page: int = 5000
) -> Checkpoint:
    """A signed checkpoint of the log as it is now (the last one again when it has not grown).

    The frontier is advanced in the same transaction, under its row lock (replicas take turns),
    by the rows after it only; raises LogChanged when they do not extend it."""
    s = quote_schema(schema)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(f"SELECT size, head_hash, nodes FROM {s}.log_frontier FOR UPDATE")
        assert row is not None, "log_frontier row missing: run the migrations"
        frontier = Frontier.from_hex(row["size"], list(row["nodes"]))
        covered_hash: str = row["head_hash"]
        head = await conn.fetchrow(f"SELECT position, hash FROM {s}.chain_head")
        assert head is not None
        head_position: int = head["position"]
        if head_position < frontier.size:
            raise LogChanged(
                f"the log's head is at position {head_position}, but its checkpoints already "
                f"covered {frontier.size} events: positions {head_position + 1}–"
                f"{frontier.size} were cut"
            )
        last_hash = covered_hash
        while frontier.size < head_position:
            rows = await conn.fetch(
                f"SELECT position, hash, prev_hash FROM {s}.events WHERE position > $1 "
                "AND position <= $2 ORDER BY position LIMIT $3",
                frontier.size,
                head_position,
                page,
            )
            if not rows:
                raise LogChanged(
                    f"position {frontier.size + 1} is missing (the head says {head_position})"
                )
            for event in rows:
                expected = frontier.size + 1
                if event["position"] != expected:
                    raise LogChanged(f"position {expected} is missing")
                if event["prev_hash"] != last_hash:
                    raise LogChanged(
                        f"the event at position {expected} does not link to the event at "
                        f"position {expected - 1} the last checkpoint covered"
                    )
                try:
                    frontier.append(event_leaf(event["hash"]))
                except ValueError:
                    raise LogChanged(
                        f"the event at position {expected} has no valid hash"
                    ) from None
                last_hash = event["hash"]
        if head_position > 0 and last_hash != head["hash"]:
            if head_position == row["size"]:
                raise LogChanged(
                    f"the event at position {head_position} is not the one the last checkpoint "
                    f"covered (hash {head['hash'][:12]}… instead of {last_hash[:12]}…): the log "
                    "was rewritten"
                )
            raise LogChanged(
                f"the head records another hash for position {head_position} than its event has"
            )
        if frontier.size != row["size"]:
            await conn.execute(
                f"UPDATE {s}.log_frontier SET size = $1, head_hash = $2, nodes = $3, "
                "updated_at = now()",
                frontier.size,
                last_hash,
                frontier.to_hex(),
            )
        known = await conn.fetchrow(
            f"SELECT tree_size, head_hash, root_hash, at, key_id, signature "
            f"FROM {s}.log_checkpoints WHERE tree_size = $1 AND key_id = $2",
            frontier.size,
            signer.key_id,
        )
        if known is not None:
            return _checkpoint_of(signer.service, known)
        checkpoint = sign_checkpoint(
            signer, frontier.size, last_hash, frontier.root().hex(), clock()
        )
        await conn.execute(
            f"INSERT INTO {s}.log_checkpoints (tree_size, key_id, head_hash, root_hash, at, "
            "signature) VALUES ($1, $2, $3, $4, $5, $6)",
            checkpoint.tree_size,
            checkpoint.key_id,
            checkpoint.head_hash,
            checkpoint.root_hash,
            checkpoint.at,
            checkpoint.signature,
        )
    CHECKPOINT_SIZE.labels(signer.service).set(checkpoint.tree_size)
    return checkpoint


def _checkpoint_of(service: str, row: asyncpg.Record) -> Checkpoint:
    return Checkpoint(
        service=service,
        tree_size=row["tree_size"],
        head_hash=row["head_hash"],
        root_hash=row["root_hash"],
        at=row["at"],
        key_id=row["key_id"],
        signature=row["signature"],
    )


async def latest_checkpoint(pool: asyncpg.Pool, schema: str, service: str) -> Checkpoint | None:
    """The last checkpoint the service made of its log (None before the first)."""
    row = await pool.fetchrow(
        f"SELECT tree_size, head_hash, root_hash, at, key_id, signature "
        f"FROM {quote_schema(schema)}.log_checkpoints ORDER BY tree_size DESC, at DESC LIMIT 1"
    )
    return _checkpoint_of(service, row) if row is not None else None


async def activity_through(pool: asyncpg.Pool, schema: str) -> int:
    """The position of the log's last event that is not a witness record (0: none)."""
    value = await pool.fetchval(
        f"SELECT position FROM {quote_schema(schema)}.events WHERE type <> $1 "
        "ORDER BY position DESC LIMIT 1",
        WITNESSED_TYPE,
    )
    return int(value or 0)


# -- proofs -----------------------------------------------------------------------------------


class ProofUnavailable(ValueError):
    """The log cannot give this proof (sizes out of range, or rows missing)."""


async def leaf_inputs(pool: asyncpg.Pool, schema: str, up_to: int) -> list[bytes]:
    """The leaf inputs (raw event hashes) of positions 1..up_to, as the rows are now."""
    rows = await pool.fetch(
        f"SELECT position, hash FROM {quote_schema(schema)}.events WHERE position <= $1 "
        "ORDER BY position",
        up_to,
    )
    leaves: list[bytes] = []
    for expected, row in enumerate(rows, start=1):
        if row["position"] != expected:
            raise ProofUnavailable(f"the log has no event at position {expected}")
        try:
            leaves.append(event_leaf(row["hash"]))
        except ValueError:
            raise ProofUnavailable(f"the event at position {expected} has no valid hash") from None
    if len(leaves) < up_to:
        raise ProofUnavailable(f"the log has {len(leaves)} events, not {up_to}")
    return leaves


@dataclass(frozen=True)
class InclusionProof:
    position: int
    tree_size: int
    event_hash: str
    leaf_hash: str
    root_hash: str
    audit_path: list[str]


@dataclass(frozen=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


async def _head(pool: asyncpg.Pool, schema: str) -> int:
    return int(await pool.fetchval(f"SELECT position FROM {quote_schema(schema)}.chain_head") or 0)


async def prove_inclusion(
    pool: asyncpg.Pool, schema: str, position: int, tree_size: int
) -> InclusionProof:
    """RFC 9162 audit path of the event at `position` (1-based: leaf index position − 1) in
    the tree of the first `tree_size` events."""
    head = await _head(pool, schema)
    if not 1 <= position <= tree_size:
        raise ProofUnavailable(f"position {position} is not in a tree of size {tree_size}")
    if tree_size > head:
        raise ProofUnavailable(f"the log has {head} events, fewer than the tree size {tree_size}")
    leaves = await leaf_inputs(pool, schema, tree_size)

    def compute() -> InclusionProof:
        return InclusionProof(
            position=position,
            tree_size=tree_size,
            event_hash=leaves[position - 1].hex(),
            leaf_hash=leaf_hash(leaves[position - 1]).hex(),
            root_hash=root(leaves).hex(),
            audit_path=[h.hex() for h in inclusion_proof(leaves, position - 1)],
        )

    return await asyncio.to_thread(compute)


async def prove_consistency(
    pool: asyncpg.Pool, schema: str, first: int, second: int
) -> ConsistencyProof:
    """RFC 9162 consistency proof that the tree of `second` events extends that of `first`."""
    head = await _head(pool, schema)
    if not 1 <= first <= second:
        raise ProofUnavailable(f"need 1 <= first <= second, got first {first}, second {second}")
    if second > head:
        raise ProofUnavailable(f"the log has {head} events, fewer than {second}")
    leaves = await leaf_inputs(pool, schema, second)

    def compute() -> ConsistencyProof:
        return ConsistencyProof(
            first=first,
            second=second,
            first_root=root(leaves[:first]).hex(),
            second_root=root(leaves).hex(),
            proof=[h.hex() for h in consistency_proof(leaves, first, second)],
        )

    return await asyncio.to_thread(compute)


# -- what witnesses recorded ------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A checkpoint of a service's log, as someone kept it: a witness in its log (where and
    when), the service itself (its latest, in an exported file), or a file."""

    checkpoint: Checkpoint
    witness: str
    recorded_at: datetime | None = None
    #: The position of the `checkpoint.witnessed` event in the witness's log.
    position: int | None = None
    consistent_with_size: int | None = None
    #: Where it was read, when not from the witness's own log ("the exported file x.json").
    source: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "witness": self.witness,
            "recorded_at": format_instant(self.recorded_at) if self.recorded_at else None,
            "position": self.position,
            "consistent_with_size": self.consistent_with_size,
            "checkpoint": self.checkpoint.model_dump(mode="json"),
        }

    @classmethod
    def from_json(cls, raw: Any, source: str | None = None) -> WitnessedCheckpoint:
        if not isinstance(raw, dict) or not isinstance(raw.get("witness"), str):
            raise ValueError("each entry needs a `witness` and a `checkpoint`")
        recorded = raw.get("recorded_at")
        try:
            recorded_at = datetime.fromisoformat(recorded) if recorded else None
        except (TypeError, ValueError):
            raise ValueError(f"recorded_at {recorded!r} is not an instant") from None
        if recorded_at is not None and recorded_at.tzinfo is None:
            raise ValueError(f"recorded_at {recorded!r} has no offset")
        position = raw.get("position")
        consistent = raw.get("consistent_with_size")
        return cls(
            checkpoint=parse_checkpoint(raw.get("checkpoint")),
            witness=raw["witness"],
            recorded_at=recorded_at,
            position=position if isinstance(position, int) else None,
            consistent_with_size=consistent if isinstance(consistent, int) else None,
            source=source,
        )

    def described(self) -> str:
        """ "by scoring on 2025-03-01T08:00:00+00:00", for sentences."""
        when = self.recorded_at or self.checkpoint.at
        who = (
            f"signed by {self.witness} itself"
            if self.witness == self.checkpoint.service
            else f"by {self.witness}"
        )
        where = f" ({self.source})" if self.source else ""
        return f"{who} on {when.isoformat(timespec='seconds')}{where}"


async def witnessed_checkpoints(
    pool: asyncpg.Pool,
    schema: str,
    witness: str,
    *,
    of: str | None = None,
    after: int = 0,
    limit: int | None = None,
) -> list[WitnessedCheckpoint]:
    """The `checkpoint.witnessed` events of the witness's log (its schema), in order."""
    rows = await pool.fetch(
        f"SELECT position, recorded_at, data::text AS data FROM {quote_schema(schema)}.events "
        "WHERE type = $1 AND position > $2 "
        "AND ($3::text IS NULL OR data->'checkpoint'->>'service' = $3) "
        "ORDER BY position LIMIT $4",
        WITNESSED_TYPE,
        after,
        of,
        limit,
    )
    found = []
    for row in rows:
        data = orjson.loads(row["data"])
        try:
            checkpoint = parse_checkpoint(data.get("checkpoint"))
        except ValueError as error:
            log.warning(
                "unreadable witness record",
                witness=witness,
                position=row["position"],
                error=str(error),
            )
            continue
        found.append(
            WitnessedCheckpoint(
                checkpoint=checkpoint,
                witness=witness,
                recorded_at=row["recorded_at"],
                position=row["position"],
                consistent_with_size=data.get("consistent_with_size"),
            )
        )
    return found


# -- checking a log against checkpoints -------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """The first place where a log is not what a checkpoint of it says."""

    #: The first position concerned (None: a checkpoint that is not the service's at all).
    position: int | None
    #: cut_tail, missing, rewritten, root_mismatch, fork, bad_signature
    kind: str
    reason: str
    witness: str
    tree_size: int
    witnessed_at: datetime | None


@dataclass(frozen=True)
class WitnessReport:
    service: str
    log_size: int
    checkpoints_checked: int
    witnesses: tuple[str, ...]
    #: The largest tree size every checkpoint up to which agreed with the log.
    agreed_through: int
    disagreement: Disagreement | None = None
    #: Witnesses that were asked and did not answer.
    unreachable: tuple[str, ...] = ()

    @property
    def agrees(self) -> bool:
        return self.disagreement is None


async def check_log(
    pool: asyncpg.Pool,
    schema: str,
    service: str,
    checkpoints: Iterable[WitnessedCheckpoint],
    keyring: KeyRing,
    *,
    witnesses: Sequence[str] | None = None,
    unreachable: Sequence[str] = (),
    page: int = 5000,
) -> WitnessReport:
    """Compare the log with every checkpoint of it; report the first disagreement.

    The log's hashes are read once, in position order, into a Merkle frontier; at each
    checkpoint's size its root and the hash there are compared with the checkpoint's."""
    s = quote_schema(schema)
    mine = [c for c in checkpoints if c.checkpoint.service == service]
    consulted = (
        tuple(witnesses) if witnesses is not None else tuple(dict.fromkeys(c.witness for c in mine))
    )
    forged: WitnessedCheckpoint | None = None
    forged_why = ""
    valid: list[WitnessedCheckpoint] = []
    for c in mine:
        why = signature_problem(c.checkpoint, keyring)
        if why is None:
            valid.append(c)
        elif forged is None:
            forged, forged_why = c, why
    valid.sort(key=lambda c: (c.checkpoint.tree_size, c.witness))

    def report(size: int, agreed: int, disagreement: Disagreement | None) -> WitnessReport:
        if disagreement is None and forged is not None:
            disagreement = Disagreement(
                None,
                "bad_signature",
                f"a checkpoint of {service}'s log at size {forged.checkpoint.tree_size} "
                f"{forged.described()} is not {service}'s: {forged_why}",
                forged.witness,
                forged.checkpoint.tree_size,
                forged.recorded_at,
            )
        return WitnessReport(
            service, size, len(mine), consulted, agreed, disagreement, tuple(unreachable)
        )

    def disagree(c: WitnessedCheckpoint, kind: str, position: int, reason: str) -> Disagreement:
        return Disagreement(
            position, kind, reason, c.witness, c.checkpoint.tree_size, c.recorded_at
        )

    agreed = 0
    index = 0
    while index < len(valid) and valid[index].checkpoint.tree_size == 0:
        c = valid[index]
        if c.checkpoint.root_hash != EMPTY_ROOT_HEX or c.checkpoint.head_hash != GENESIS_HASH:
            return report(
                0,
                0,
                disagree(
                    c,
                    "root_mismatch",
                    1,
                    "a checkpoint of the empty log "
                    f"{c.described()} has another root than the empty tree's",
                ),
            )
        index += 1

    frontier = Frontier()
    gap: int | None = None
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        log_size = int(await conn.fetchval(f"SELECT coalesce(max(position), 0) FROM {s}.events"))
        after = 0
        reading = index < len(valid)
        while reading:
            rows = await conn.fetch(
                f"SELECT position, hash FROM {s}.events WHERE position > $1 "
                "ORDER BY position LIMIT $2",
                after,
                page,
            )
            for row in rows:
                expected = frontier.size + 1
                if row["position"] != expected:
                    gap = expected
                    reading = False
                    break
                try:
                    frontier.append(event_leaf(row["hash"]))
                except ValueError:
                    gap = expected
                    reading = False
                    break
                while index < len(valid) and valid[index].checkpoint.tree_size == frontier.size:
                    c = valid[index]
                    size = frontier.size
                    span = f"positions {agreed + 1}–{size}"
                    if row["hash"] != c.checkpoint.head_hash:
                        since = (
                            f"the last witnessed size that agrees is {agreed}"
                            if agreed
                            else "no smaller witnessed size agrees"
                        )
                        return report(
                            log_size,
                            agreed,
                            disagree(
                                c,
                                "rewritten",
                                agreed + 1,
                                f"the event at position {size} is not the one {service}'s "
                                f"checkpoint of size {size} {c.described()} names (hash "
                                f"{row['hash'][:12]}… instead of {c.checkpoint.head_hash[:12]}…): "
                                f"{span} were rewritten, or the log forked after position "
                                f"{agreed} ({since})",
                            ),
                        )
                    if frontier.root().hex() != c.checkpoint.root_hash:
                        return report(
                            log_size,
                            agreed,
                            disagree(
                                c,
                                "root_mismatch",
                                agreed + 1,
                                f"the event at position {size} is the one {service}'s checkpoint "
                                f"{c.described()} names, but the Merkle root over positions "
                                f"1–{size} is not: a stored hash in {span} was changed",
                            ),
                        )
                    agreed = size
                    index += 1
                if index == len(valid):
                    reading = False
                    break
            if len(rows) < page:
                break
            after = rows[-1]["position"] if rows else after
    if index < len(valid):
        # Checkpoints beyond what the log holds: the largest says most.
        c = max(valid[index:], key=lambda v: v.checkpoint.tree_size)
        size = c.checkpoint.tree_size
        if gap is not None and gap <= log_size:
            reason = (
                f"the log has no event at position {gap} (it goes on to {log_size}), but "
                f"{service}'s log was witnessed at size {size} {c.described()}: a row was "
                "deleted"
            )
            return report(log_size, agreed, disagree(c, "missing", gap, reason))
        end = frontier.size
        reason = (
            f"the log ends at position {end} but {service}'s log was witnessed at size {size} "
            f"{c.described()}: positions {end + 1}–{size} are missing (a cut tail)"
        )
        return report(log_size, agreed, disagree(c, "cut_tail", end + 1, reason))
    return report(log_size, agreed, None)


def as_fork(disagreement: Disagreement, chain_intact: bool, service: str) -> Disagreement:
    """A rewritten stretch whose signatures all hold was written with the service's key: the
    log forked (a restored backup that went on, a second writer), it was not edited."""
    if disagreement.kind != "rewritten" or not chain_intact:
        return disagreement
    start = (disagreement.position or 1) - 1
    return Disagreement(
        disagreement.position,
        "fork",
        f"{disagreement.reason}; every event is signed by {service}'s key, so the log forked "
        f"after position {start}: what was witnessed there was replaced by another history "
        "(a restored backup that went on, or a second writer)",
        disagreement.witness,
        disagreement.tree_size,
        disagreement.witnessed_at,
    )


def load_checkpoint_file(path: Path) -> list[WitnessedCheckpoint]:
    """The checkpoints of a file `partyctl checkpoints export` wrote (ValueError: why not)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise ValueError(f"{path} is not a checkpoints file ({FILE_FORMAT})")
    entries = document.get("checkpoints")
    if not isinstance(entries, list):
        raise ValueError(f"{path} has no list of checkpoints")
    source = f"the exported file {path.name}"
    found = []
    for number, entry in enumerate(entries, start=1):
        try:
            found.append(WitnessedCheckpoint.from_json(entry, source))
        except ValueError as error:
            raise ValueError(f"{path}: checkpoint {number}: {error}") from None
    return found


# -- peers ------------------------------------------------------------------------------------


class PeerUnavailable(Exception):
    """The peer did not answer (down, unreachable, or refused): ask again next time."""


class PeerLogChanged(Exception):
    """The peer says its log no longer extends its own last checkpoint."""


@dataclass(frozen=True)
class PeerCheckpoint:
    checkpoint: Checkpoint
    #: Where the peer's last event other than a witness record is (unsigned).
    activity_through: int


class PeerCheckpoints(Protocol):
    """How a service reaches the other services' checkpoints and witness records."""

    #: Every service this one witnesses, and asks when it verifies its own log.
    peers: tuple[str, ...]

    async def checkpoint(self, peer: str) -> PeerCheckpoint: ...

    async def consistency(self, peer: str, first: int, second: int) -> list[bytes]: ...

    async def witnessed(self, peer: str, of: str) -> list[WitnessedCheckpoint]: ...

    async def close(self) -> None: ...


TransportFor = Callable[[str], httpx.AsyncBaseTransport]


class HttpPeerCheckpoints:
    """The peers' audit APIs, with a service token signed by this service's key. By default
    over the network (`url_for`); `transport_for` gives another transport per peer (tests
    serve the peers' apps in process)."""

    def __init__(
        self,
        service: str,
        signer: Signer,
        url_for: Callable[[str], str],
        *,
        peers: Sequence[str] | None = None,
        timeout: float = 10.0,
        transport_for: TransportFor | None = None,
    ) -> None:
        self.service = service
        self.peers = tuple(peers if peers is not None else (p for p in PRODUCERS if p != service))
        self._signer = signer
        self._url_for = url_for
        self._timeout = timeout
        self._transport_for = transport_for
        self._client: httpx.AsyncClient | None = None

    async def _get(self, peer: str, path: str, params: dict[str, Any]) -> Any:
        try:
            url = self._url_for(peer).rstrip("/") + path
        except KeyError:
            raise PeerUnavailable(f"no address for {peer}") from None
        headers = {"Authorization": f"Bearer {self._signer.service_token(peer)}"}
        try:
            if self._transport_for is not None:
                transport = self._transport_for(peer)
                async with httpx.AsyncClient(transport=transport, timeout=self._timeout) as c:
                    response = await c.get(url, params=params, headers=headers)
            else:
                if self._client is None:
                    self._client = httpx.AsyncClient(timeout=self._timeout)
                response = await self._client.get(url, params=params, headers=headers)
        except httpx.HTTPError as error:
            raise PeerUnavailable(f"{peer} at {url}: {error!r}") from None
        if response.status_code == 409 and path == "/v1/audit/checkpoint":
            raise PeerLogChanged(_detail(response))
        if response.status_code != 200:
            raise PeerUnavailable(f"{peer} answered {response.status_code}: {_detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise PeerUnavailable(
                f"{peer} answered {path} with something that is not JSON"
            ) from None

    async def checkpoint(self, peer: str) -> PeerCheckpoint:
        body = await self._get(peer, "/v1/audit/checkpoint", {"fresh": "true"})
        try:
            return PeerCheckpoint(
                parse_checkpoint(body["checkpoint"]), int(body["activity_through"])
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PeerUnavailable(f"{peer} answered an unreadable checkpoint: {error}") from None

    async def consistency(self, peer: str, first: int, second: int) -> list[bytes]:
        body = await self._get(
            peer, "/v1/audit/proof/consistency", {"first": first, "second": second}
        )
        try:
            return [bytes.fromhex(h) for h in body["proof"]]
        except (KeyError, TypeError, ValueError) as error:
            raise PeerUnavailable(f"{peer} answered an unreadable proof: {error}") from None

    async def witnessed(self, peer: str, of: str) -> list[WitnessedCheckpoint]:
        found: list[WitnessedCheckpoint] = []
        after = 0
        while True:
            body = await self._get(
                peer, "/v1/audit/witnessed", {"service": of, "after": after, "limit": 1000}
            )
            try:
                found += [WitnessedCheckpoint.from_json(item) for item in body["checkpoints"]]
                next_after = body.get("next_after")
            except (KeyError, TypeError, ValueError) as error:
                raise PeerUnavailable(
                    f"{peer} answered unreadable witness records: {error}"
                ) from None
            if next_after is None:
                return found
            after = int(next_after)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("title") or body)[:300]
    return response.text[:200]


# -- the witness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessOutcome:
    """What one round made of one peer."""

    peer: str
    #: recorded, unchanged, not_recorded (grew by witness records only), unavailable,
    #: disagreement
    status: str
    tree_size: int | None = None
    detail: str | None = None


@dataclass
class Witness:
    """This service's checkpoints of its own log, and its witnessing of every peer."""

    service: str
    store: EventStore
    signer: Signer
    keyring: Callable[[], KeyRing]
    peers: PeerCheckpoints
    period: float = 60.0
    clock: Clock = utc_now
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def checkpoint(self) -> Checkpoint:
        """A fresh checkpoint of this service's log (raises LogChanged)."""
        try:
            return await make_checkpoint(
                self.store.pool, self.store.schema, self.signer, clock=self.clock
            )
        except LogChanged as error:
            CHECKPOINTS_REFUSED.labels(self.service).inc()
            log.error(
                "checkpoint refused: the log no longer extends its last checkpoint",
                service=self.service,
                reason=str(error),
            )
            raise

    async def last_witnessed(self, peer: str) -> tuple[int, Checkpoint] | None:
        """The stream version and checkpoint of the last record of `peer` in this log."""
        row = await self.store.pool.fetchrow(
            f"SELECT stream_version, data::text AS data FROM {quote_schema(self.store.schema)}"
            ".events WHERE stream_id = $1 ORDER BY stream_version DESC LIMIT 1",
            witness_stream(peer),
        )
        if row is None:
            return None
        return row["stream_version"], parse_checkpoint(orjson.loads(row["data"])["checkpoint"])

    def _alarm(self, peer: str, kind: str, sentence: str, **sizes: int | None) -> WitnessOutcome:
        WITNESS_DISAGREEMENTS.labels(self.service, peer).inc()
        log.error(
            "witness disagreement",
            service=self.service,
            peer=peer,
            kind=kind,
            reason=sentence,
            **sizes,
        )
        return WitnessOutcome(
            peer, "disagreement", sizes.get("claimed_size"), f"{kind}: {sentence}"
        )

    async def witness(self, peer: str) -> WitnessOutcome:
        """Ask the peer for a checkpoint, check it, and record it when its tree grew."""
        try:
            answer = await self.peers.checkpoint(peer)
        except PeerUnavailable as error:
            log.warning(
                "peer not witnessed this time", service=self.service, peer=peer, reason=str(error)
            )
            return WitnessOutcome(peer, "unavailable", detail=str(error))
        except PeerLogChanged as error:
            last = await self.last_witnessed(peer)
            return self._alarm(
                peer,
                "log_changed",
                f"{peer} says its log no longer extends its last checkpoint: {error}",
                witnessed_size=last[1].tree_size if last else None,
            )
        cp = answer.checkpoint
        if cp.service != peer:
            return self._alarm(
                peer, "bad_signature", f"{peer} answered a checkpoint of {cp.service}"
            )
        why = signature_problem(cp, self.keyring())
        if why is not None:
            return self._alarm(
                peer,
                "bad_signature",
                f"{peer}'s checkpoint of size {cp.tree_size} is not {peer}'s: {why}",
                claimed_size=cp.tree_size,
            )
        last = await self.last_witnessed(peer)
        version, before = last if last is not None else (0, None)
        sizes = {
            "claimed_size": cp.tree_size,
            "witnessed_size": before.tree_size if before else None,
        }
        if before is not None:
            if cp.tree_size < before.tree_size:
                return self._alarm(
                    peer,
                    "shrunk",
                    f"{peer}'s log has {cp.tree_size} events now, but {self.service} witnessed "
                    f"it at size {before.tree_size} on {before.at.isoformat(timespec='seconds')}"
                    f": positions {cp.tree_size + 1}–{before.tree_size} are gone",
                    **sizes,
                )
            if cp.tree_size == before.tree_size:
                if (cp.root_hash, cp.head_hash) != (before.root_hash, before.head_hash):
                    return self._alarm(
                        peer,
                        "forked",
                        f"{peer} signed two different trees of size {cp.tree_size}: root "
                        f"{cp.root_hash[:12]}… now, {before.root_hash[:12]}… witnessed on "
                        f"{before.at.isoformat(timespec='seconds')}",
                        **sizes,
                    )
                WITNESSED_SIZE.labels(self.service, peer).set(before.tree_size)
                return WitnessOutcome(peer, "unchanged", cp.tree_size)
            if before.tree_size > 0:
                try:
                    proof = await self.peers.consistency(peer, before.tree_size, cp.tree_size)
                except PeerUnavailable as error:
                    log.warning(
                        "peer gave no consistency proof this time",
                        service=self.service,
                        peer=peer,
                        reason=str(error),
                    )
                    return WitnessOutcome(peer, "unavailable", cp.tree_size, str(error))
                consistent = len(proof) < 64 and all(len(p) == HASH_SIZE for p in proof)
                consistent = consistent and verify_consistency(
                    before.tree_size,
                    cp.tree_size,
                    bytes.fromhex(before.root_hash),
                    bytes.fromhex(cp.root_hash),
                    proof,
                )
                if not consistent:
                    return self._alarm(
                        peer,
                        "inconsistent",
                        f"{peer}'s checkpoint of size {cp.tree_size} does not extend the one of "
                        f"size {before.tree_size} {self.service} witnessed on "
                        f"{before.at.isoformat(timespec='seconds')}: its log was rewritten in "
                        f"positions 1–{before.tree_size}, or forked",
                        **sizes,
                    )
        elif cp.tree_size == 0:
            return WitnessOutcome(peer, "unchanged", 0)
        if before is not None and answer.activity_through <= before.tree_size:
            WITNESSED_SIZE.labels(self.service, peer).set(before.tree_size)
            return WitnessOutcome(
                peer, "not_recorded", cp.tree_size, "it grew only by its own witness records"
            )
        event = CheckpointWitnessed(
            checkpoint=cp, consistent_with_size=before.tree_size if before else None
        )
        try:
            await self.store.append(
                StreamAppend(
                    witness_stream(peer),
                    [NewEvent.from_payload(event, occurred_at=cp.at, branch_id=None)],
                    expected_version=version,
                ),
                metadata=EventMetadata(self.service, "system"),
            )
        except ConcurrencyConflict:
            return WitnessOutcome(peer, "unchanged", cp.tree_size, "another replica recorded it")
        WITNESSED_SIZE.labels(self.service, peer).set(cp.tree_size)
        log.info("checkpoint witnessed", service=self.service, peer=peer, tree_size=cp.tree_size)
        return WitnessOutcome(peer, "recorded", cp.tree_size)

    async def round(self) -> list[WitnessOutcome]:
        """One period's work: a checkpoint of this log, then a look at every peer."""
        async with self._lock:
            with contextlib.suppress(LogChanged):
                await self.checkpoint()
            return [await self.witness(peer) for peer in self.peers.peers]

    async def run(self) -> None:
        """Every period until cancelled; a failing round is logged and tried again."""
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    "witness round failed; trying again next period",
                    service=self.service,
                    error=f"{type(error).__name__}: {error}",
                )

    async def consult(self) -> tuple[list[WitnessedCheckpoint], list[str], list[str]]:
        """Every peer's records of this service's checkpoints: (checkpoints, asked, silent)."""
        found: list[WitnessedCheckpoint] = []
        asked, silent = [], []
        for peer in self.peers.peers:
            try:
                found += await self.peers.witnessed(peer, self.service)
                asked.append(peer)
            except PeerUnavailable as error:
                log.warning(
                    "witness not consulted", service=self.service, peer=peer, reason=str(error)
                )
                silent.append(peer)
        return found, asked, silent

    async def close(self) -> None:
        await self.peers.close()
