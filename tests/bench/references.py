"""What each project figure is set against, from the same run: the peer library's figure
(tests.bench.peer) and the machine's limit through the same drivers (tests.bench.machine).

Ratios are speeds: 1.00× is as fast as the reference, 0.25× a quarter as fast. For a rate it is
measured ÷ reference; for a latency, reference ÷ measured (p99 against p99 where the reference
has one). Some figures have relative targets as well as absolute ones (RELATIVE_TARGETS); a
figure passes when it meets both (the relative one only when its reference was measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.bench.machine import MachineFigures

if TYPE_CHECKING:
    from tests.bench.peer import PeerFigures

NONE = "—"

#: The relative targets, by figure key: what the figure must reach as a share of a reference.
RELATIVE_TARGETS = {
    "single": "≥ 2× the peer",
    "sheets": "≥ 50% of executemany",
    "scoring_replay": "≥ 50% of the keyset read",
}


@dataclass(frozen=True)
class Comparison:
    peer: str = NONE
    limit: str = NONE
    peer_ratio: str = NONE
    limit_ratio: str = NONE
    relative_target: str = ""  # empty: none
    relative_met: bool | None = None  # None: no relative target, or its reference is missing


def rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms" if seconds < 0.01 else f"{seconds * 1000:,.1f} ms"


def speed(measured: float, reference: float, latency: bool = False) -> str:
    """How many times as fast as the reference the measured figure is."""
    if measured <= 0 or reference <= 0 or measured != measured or reference != reference:
        return NONE
    ratio = reference / measured if latency else measured / reference
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.3f}×"


@dataclass(frozen=True)
class References:
    peer: PeerFigures | None
    machine: MachineFigures | None

    def compare(self, key: str, value: float, rows: int = 0) -> Comparison:
        """The peer and limit columns of figure `key` measuring `value` (a rate, or a p99 in
        seconds for latencies; `rows`: how many events a read folds)."""
        p, m = self.peer, self.machine
        relative = RELATIVE_TARGETS.get(key, "")
        if key == "single":
            return Comparison(
                peer=rate(p.command_rate, "cmd/s") if p else NONE,
                limit=f"{rate(m.insert_many_rate, 'rows/s')} (INSERT, {m.many_clients} clients)"
                if m
                else NONE,
                peer_ratio=speed(value, p.command_rate) if p else NONE,
                limit_ratio=speed(value, m.insert_many_rate) if m else NONE,
                relative_target=relative,
                relative_met=value >= 2 * p.command_rate if p else None,
            )
        if key == "sheets":
            return Comparison(
                peer=rate(p.batch_rate, "events/s") if p else NONE,
                limit=f"{rate(m.best_executemany, 'rows/s')} (executemany)" if m else NONE,
                peer_ratio=speed(value, p.batch_rate) if p else NONE,
                limit_ratio=speed(value, m.best_executemany) if m else NONE,
                relative_target=relative,
                relative_met=value >= 0.5 * m.best_executemany if m else None,
            )
        if key == "relay":
            return Comparison(
                limit=f"p99 {ms(m.xadd_p99)} (an XADD round trip)" if m else NONE,
                limit_ratio=speed(value, m.xadd_p99, latency=True) if m else NONE,
            )
        if key == "visible":
            floor = m.insert_p99 + m.xadd_p99 if m else 0.0
            return Comparison(
                limit=f"p99 {ms(floor)} (a commit + an XADD)" if m else NONE,
                limit_ratio=speed(value, floor, latency=True) if m else NONE,
            )
        if key == "read":
            peer_time = rows * p.read_p99 / p.read_events if p else 0.0
            limit_time = rows / m.keyset_rate if m else 0.0
            return Comparison(
                peer=f"p99 {ms(peer_time)} (repository.get, {rows:,} events)" if p else NONE,
                limit=f"{ms(limit_time)} ({rows:,} rows by keyset)" if m else NONE,
                peer_ratio=speed(value, peer_time, latency=True) if p else NONE,
                limit_ratio=speed(value, limit_time, latency=True) if m else NONE,
            )
        if key in ("scoring_live", "consumer"):
            return Comparison(
                peer=f"{rate(p.subscription_rate, 'events/s')} (subscription)" if p else NONE,
                limit=f"{rate(m.xadd_pipelined_rate, 'entries/s')} (XADD pipelined)" if m else NONE,
                peer_ratio=speed(value, p.subscription_rate) if p else NONE,
                limit_ratio=speed(value, m.xadd_pipelined_rate) if m else NONE,
            )
        if key == "scoring_replay":
            return Comparison(
                peer=f"{rate(p.subscription_rate, 'events/s')} (subscription)" if p else NONE,
                limit=f"{rate(m.keyset_rate, 'rows/s')} (keyset read)" if m else NONE,
                peer_ratio=speed(value, p.subscription_rate) if p else NONE,
                limit_ratio=speed(value, m.keyset_rate) if m else NONE,
                relative_target=relative,
                relative_met=value >= 0.5 * m.keyset_rate if m else None,
            )
        return Comparison()

    def lines(self) -> list[str]:
        """The references, in full, for the notes under the table."""
        out = []
        p, m = self.peer, self.machine
        if p:
            out.append(
                f"peer: eventsourcing {p.version} with PostgreSQL persistence (psycopg 3), one "
                f"client in-process: commands (repository.get + one event + save) "
                f"{p.command_rate_default:,.0f}/s with its defaults, "
                f"{p.command_rate_db_functions:,.0f}/s with its DB functions (p50 "
                f"{ms(p.command_p50)}, p99 {ms(p.command_p99)} for the better); batches of "
                f"{p.batch} events {p.batch_rate_default:,.0f} / "
                f"{p.batch_rate_db_functions:,.0f} events/s; repository.get of "
                f"{p.read_events:,} events p50 {ms(p.read_p50)}, p99 {ms(p.read_p99)} "
                f"({p.read_rate:,.0f} events/s); subscription from the start "
                f"{p.subscription_rate:,.0f} events/s over {p.subscription_events:,} events. "
                "Without signatures, hash chain, inbox or projections: the library has none"
            )
        if m:
            out.append(
                f"limits (asyncpg, rows shaped like events): INSERT a commit each "
                f"{m.insert_rate:,.0f} rows/s from 1 client (p50 {ms(m.insert_p50)}, p99 "
                f"{ms(m.insert_p99)}), {m.insert_many_rate:,.0f} from {m.many_clients}; "
                f"executemany of {m.batch} rows a transaction {m.executemany_rate:,.0f} rows/s "
                f"from 1 client, {m.executemany_many_rate:,.0f} from {m.batch_clients}; keyset "
                f"read {m.keyset_rate:,.0f} rows/s (~{m.keyset_rows:,} rows, pages of "
                f"{m.keyset_page:,}, ORDER BY a bigint position)"
            )
            out.append(
                f"limits (redis-py with hiredis, asyncio): XADD awaited one at a time "
                f"{m.xadd_rate:,.0f}/s (p50 {ms(m.xadd_p50)}, p99 {ms(m.xadd_p99)}), "
                f"pipelined by {m.pipeline} {m.xadd_pipelined_rate:,.0f}/s; XREAD COUNT 1000 "
                f"{m.xread_rate:,.0f} entries/s ({m.xread_entries:,} entries)"
            )
        out.append(
            "ratios are speeds (1.00× = as fast as the reference): measured ÷ reference for "
            "rates, reference ÷ measured for latencies"
        )
        return out
