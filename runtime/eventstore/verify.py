"""Verify a service's log from the rows as they are stored (DESIGN §2.7, §9).

Three things must hold, and the first position where one does not is reported:

* the chain: positions have no gap, each `prev_hash` is the hash before it, each row's content
  matches its hash, and the log reaches the head it records;
* the signatures: every event is covered by a signature of the service — the next signed
  event, through the chain — made by the key in force at that position (`signing_key.rotated`
  changes it) and not revoked; a row inserted, or a stretch rewritten and rehashed, by someone
  without the key is not;
* the witnesses (checked by `runtime.witness`): checkpoints other services recorded of this
  log agree with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import orjson

from contracts.canonical import GENESIS_HASH
from runtime.eventstore.schema import quote_schema
from runtime.eventstore.store import SELECT_EVENTS, row_to_event
from runtime.signing import KeyRing


@dataclass(frozen=True)
class ChainReport:
    schema: str
    events_checked: int
    head_position: int
    first_broken_position: int | None = None
    reason: str | None = None
    #: The last position covered by a valid signature (None: signatures were not checked).
    signed_through: int | None = None

    @property
    def intact(self) -> bool:
        return self.first_broken_position is None


async def verify_chain(
    pool: asyncpg.Pool,
    schema: str,
    *,
    page: int = 5000,
    keyring: KeyRing | None = None,
    source: str | None = None,
) -> ChainReport:
    """Recompute every hash in position order; with a key ring, check every signature too.

    An edited row fails its own hash; a deleted row leaves a gap in positions and breaks the
    link of the next one; an inserted row breaks the link after it; a truncated tail no longer
    reaches the recorded chain head; a row appended, or rewritten and rehashed, without the
    service's key is not covered by a valid signature.
    """
    s = quote_schema(schema)
    service = source or schema
    checking = keyring is not None
    checked = 0
    expected_position = 1
    expected_prev = GENESIS_HASH
    signed_through = 0
    in_force: str | None = None  # the key of the last valid signature, or a rotation's
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        head = await conn.fetchrow(f"SELECT position, hash FROM {s}.chain_head")
        assert head is not None

        def broken(position: int, reason: str) -> ChainReport:
            return ChainReport(
                schema,
                checked,
                head["position"],
                position,
                reason,
                signed_through if checking else None,
            )

        after = 0
        while True:
            rows = await conn.fetch(
                f"SELECT {SELECT_EVENTS} FROM {s}.events WHERE position > $1 "
                "ORDER BY position LIMIT $2",
                after,
                page,
            )
            for row in rows:
                position = row["position"]
                if position != expected_position:
                    return broken(expected_position, f"position {expected_position} is missing")
                try:
                    event = row_to_event(row)
                    computed = event.computed_hash()
                except (orjson.JSONDecodeError, TypeError, ValueError) as error:
                    return broken(position, f"unreadable row: {error}")
                if event.prev_hash != expected_prev:
                    return broken(position, f"prev_hash does not link to position {position - 1}")
                if computed != event.hash:
                    return broken(position, "content does not match its hash (the row was changed)")
                if keyring is not None:
                    if event.type == "signing_key.rotated":
                        in_force = str(event.data.get("key_id"))
                    if event.signature is not None:
                        why = keyring.check(
                            service, position, event.hash, event.key_id or "", event.signature
                        )
                        if why is None and in_force is not None and event.key_id != in_force:
                            why = (
                                f"signed by key {event.key_id}, but key {in_force} is in force "
                                f"at position {position}"
                            )
                        if why is not None:
                            return broken(
                                signed_through + 1,
                                f"positions {signed_through + 1}–{position} are not covered by "
                                f"a valid signature: {why}",
                            )
                        in_force = event.key_id
                        signed_through = position
                checked += 1
                expected_position += 1
                expected_prev = event.hash
            if len(rows) < page:
                break
            after = rows[-1]["position"]
        if head["position"] != checked or head["hash"] != expected_prev:
            return broken(
                checked + 1,
                f"the log ends at position {checked} but its head records "
                f"position {head['position']}",
            )
        if checking and signed_through < checked:
            return broken(
                signed_through + 1,
                f"positions {signed_through + 1}–{checked} are not covered by any signature of "
                f"{service} (appended without its key)",
            )
    return ChainReport(
        schema, checked, head["position"], signed_through=signed_through if checking else None
    )
