"""Witnessed logs (issue 13) on the real PostgreSQL and Redis: the four services in this
process, each signing checkpoints of its log and witnessing the others'; then the database's
superuser cuts roster's tail or rewrites and rehashes a stretch of it, and every verifier —
`GET /v1/audit/verify`, `party verify`, `partyctl verify --checkpoints` — names the position.

Witness rounds are run here by calling `Witness.round()` (the background task waits a period
between them); one test lets the background task do it on a short period."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY
from rich.console import Console

from contracts.events.audit import Checkpoint
from runtime.eventstore import EventStore
from runtime.merkle import event_leaf, root, verify_consistency, verify_inclusion
from runtime.settings import Settings
from runtime.witness import (
    PeerCheckpoint,
    PeerLogChanged,
    PeerUnavailable,
    Witness,
    WitnessedCheckpoint,
    parse_checkpoint,
    sign_checkpoint,
    signature_problem,
)
from services import auditor, cli
from services.activities.service import DEFINITION as ACTIVITIES
from services.notify.service import DEFINITION as NOTIFY
from services.roster.service import DEFINITION as ROSTER
from services.scoring.service import DEFINITION as SCORING
from tests.conftest import REDIS_URL
from tests.support.apps import Api
from tests.support.keys import keyring, keys_dir, signer
from tests.support.roster import RosterClient
from tests.support.stack import services
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(240)

PEERS_OF_ROSTER = ("activities", "scoring", "notify")


@pytest.fixture
async def stack(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> AsyncIterator[dict[str, Api]]:
    async with services(
        [ROSTER, ACTIVITIES, SCORING, NOTIFY], database_url, stream_prefix, REDIS_URL
    ) as apis:
        yield apis


class Roster:
    """Events in roster's log, a few commands at a time."""

    def __init__(self, api: Api) -> None:
        self.client = RosterClient(api)
        self.enrolled = 0

    async def organise(self) -> None:
        await self.client.organisation()

    async def enrol(self, n: int = 3) -> None:
        for _ in range(n):
            self.enrolled += 1
            await self.client.enrol(f"m{self.enrolled:04d}", number=f"2010{self.enrolled:04d}")


async def head(api: Api) -> int:
    position, _ = await api.context.store.head()
    return position


async def witness_roster(apis: dict[str, Api]) -> int:
    """A round of every other service; each records roster's checkpoint. Its tree size."""
    sizes = set()
    for name in PEERS_OF_ROSTER:
        witness = apis[name].context.witness
        assert witness is not None
        outcomes = await witness.round()
        [seen] = [o for o in outcomes if o.peer == "roster"]
        assert seen.status == "recorded", seen
        sizes.add(seen.tree_size)
    assert len(sizes) == 1, sizes
    size = sizes.pop()
    assert size is not None
    return size


async def verify(api: Api) -> dict[str, Any]:
    response = await api.client.get("/v1/audit/verify", headers=api.auth("auditor"))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def superuser(database_url: str, schema: str, *statements: tuple[str, list[Any]]) -> None:
    """What someone with the superuser's password can do: switch the append-only triggers off,
    change the log, switch them on again."""
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute(f'ALTER TABLE "{schema}".events DISABLE TRIGGER USER')
            for statement, args in statements:
                await conn.execute(statement, *args)
            await conn.execute(f'ALTER TABLE "{schema}".events ENABLE TRIGGER USER')
    finally:
        await conn.close()


async def cut_tail(database_url: str, store: EventStore, keep: int) -> None:
    """Delete every event after `keep` and move the chain head back onto it."""
    s = f'"{store.schema}"'
    [last] = await store.read_all(after_position=keep - 1, limit=1)
    await superuser(
        database_url,
        store.schema,
        (f"DELETE FROM {s}.events WHERE position > $1", [keep]),
        (
            f"UPDATE {s}.chain_head SET position = $1, hash = $2, recorded_at = $3",
            [keep, last.hash, last.recorded_at],
        ),
    )


async def rewrite_and_rehash(database_url: str, store: EventStore, position: int) -> None:
    """Change who recorded the event at `position`, and rehash it and every event after it so
    that the chain links again (the signatures cannot be redone without the key)."""
    s = f'"{store.schema}"'
    events = await store.read_all(after_position=position - 1, limit=10_000)
    prev_hash = events[0].prev_hash
    statements: list[tuple[str, list[Any]]] = []
    for n, event in enumerate(events):
        if n == 0:
            event = dataclasses.replace(event, actor_id="someone-else")
        event = dataclasses.replace(event, prev_hash=prev_hash)
        event = dataclasses.replace(event, hash=event.computed_hash())
        statements.append(
            (
                f"UPDATE {s}.events SET actor_id = $1, prev_hash = $2, hash = $3 "
                "WHERE position = $4",
                [event.actor_id, event.prev_hash, event.hash, event.position],
            )
        )
        prev_hash = event.hash
    statements.append((f"UPDATE {s}.chain_head SET hash = $1", [prev_hash]))
    await superuser(database_url, store.schema, *statements)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the good path ----------------------------------------------------------------------------


async def test_every_log_agrees_with_every_witness(stack: dict[str, Api]) -> None:
    roster = Roster(stack["roster"])
    await roster.organise()
    await roster.enrol(2)
    first = await witness_roster(stack)
    await roster.enrol(2)
    second = await witness_roster(stack)
    assert second > first
    for api in stack.values():  # everybody witnesses everybody, roster too
        assert api.context.witness is not None
        await api.context.witness.round()

    report = await verify(stack["roster"])
    assert report["intact"], report
    witnesses = report["witnesses"]
    assert sorted(witnesses["witnesses"]) == sorted(PEERS_OF_ROSTER)
    assert witnesses["unreachable"] == []
    assert witnesses["checkpoints_checked"] == 6  # three witnesses, two sizes each
    assert witnesses["agreed_through"] == second
    assert witnesses["first_disagreement"] is None
    for name, api in stack.items():
        other = await verify(api)
        assert other["intact"], (name, other)
        assert other["witnesses"]["agrees"], (name, other)

    # What scoring recorded: checkpoints roster signed, each proven to extend the one before.
    page = (
        await stack["scoring"].client.get(
            "/v1/audit/witnessed",
            params={"service": "roster"},
            headers=stack["scoring"].auth("auditor"),
        )
    ).json()
    entries = [WitnessedCheckpoint.from_json(item) for item in page["checkpoints"]]
    assert [e.checkpoint.tree_size for e in entries] == [first, second]
    assert [e.consistent_with_size for e in entries] == [None, first]
    assert all(signature_problem(e.checkpoint, keyring()) is None for e in entries)
    assert all(e.witness == "scoring" for e in entries)

    # Witnessing does not feed itself: once the services are quiet (notify records its own
    # deadlines from roster's events as they arrive), a round records nothing new of anyone.
    async def quiet_round() -> bool:
        statuses = set()
        for api in stack.values():
            assert api.context.witness is not None
            statuses |= {o.status for o in await api.context.witness.round()}
        return statuses <= {"unchanged", "not_recorded"}

    await wait_until(quiet_round, within=30, interval=0.5, what="a round that records nothing")
    counts = {name: await api.event_count() for name, api in stack.items()}
    assert await quiet_round()
    assert {name: await api.event_count() for name, api in stack.items()} == counts


async def test_the_background_task_witnesses_every_period(
    database_url: str, stream_prefix: str, redis_client: redis.Redis
) -> None:
    async with services(
        [ROSTER, SCORING], database_url, stream_prefix, REDIS_URL, checkpoint_seconds=0.3
    ) as apis:
        await Roster(apis["roster"]).organise()
        size = await head(apis["roster"])
        scoring = apis["scoring"].context

        async def witnessed() -> bool:
            row = await scoring.pool.fetchval(
                f"SELECT max((data->'checkpoint'->>'tree_size')::bigint) FROM \"{scoring.schema}\""
                ".events WHERE type = 'checkpoint.witnessed' AND stream_id = 'witness-roster'"
            )
            return row is not None and row >= size

        await wait_until(witnessed, within=20, what="scoring to witness roster's checkpoint")
        # Its own checkpoints too, every period.
        made = await apis["roster"].context.pool.fetchval(
            f'SELECT max(tree_size) FROM "{apis["roster"].context.schema}".log_checkpoints'
        )
        assert made >= size
        assert metric("party_witnessed_tree_size", service="scoring", peer="roster") >= size


# -- (a) a cut tail ---------------------------------------------------------------------------


async def test_a_cut_tail_is_named_by_the_witnesses(
    stack: dict[str, Api], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = Roster(stack["roster"])
    await roster.organise()
    kept = await witness_roster(stack)
    await roster.enrol(3)
    witnessed = await witness_roster(stack)
    store = stack["roster"].context.store
    await cut_tail(database_url, store, kept)

    report = await verify(stack["roster"])
    assert not report["intact"]
    assert report["first_broken_position"] == kept + 1
    expected = (
        f"the log ends at position {kept} but roster's log was witnessed at size {witnessed} by "
    )
    assert expected in report["reason"], report["reason"]
    assert f"positions {kept + 1}–{witnessed} are missing (a cut tail)" in report["reason"]
    found = report["witnesses"]["first_disagreement"]
    assert (found["kind"], found["position"], found["tree_size"]) == (
        "cut_tail",
        kept + 1,
        witnessed,
    )
    assert report["witnesses"]["agreed_through"] == kept

    # The witnesses sound the alarm too: roster can no longer sign a checkpoint of its log.
    before = metric("party_witness_disagreements_total", service="scoring", peer="roster")
    witness = stack["scoring"].context.witness
    assert witness is not None
    [seen] = [o for o in await witness.round() if o.peer == "roster"]
    assert seen.status == "disagreement"
    assert seen.detail is not None
    assert f"positions {kept + 1}–{witnessed} were cut" in seen.detail
    assert metric("party_witness_disagreements_total", service="scoring", peer="roster") == (
        before + 1
    )

    # party verify reads the witnesses' logs straight from PostgreSQL.
    code = await cli._verify(["roster"], settings=_settings(database_url), schemas=_schemas(stack))
    out = capsys.readouterr().out
    assert code == 1
    assert f"witnesses DISAGREE at position {kept + 1} (cut_tail)" in out
    assert expected in out


def _settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, keys_dir=str(keys_dir()))


def _schemas(apis: dict[str, Api]) -> dict[str, str]:
    return {name: api.context.schema for name, api in apis.items()}


# -- (b) a rewritten and rehashed stretch -----------------------------------------------------


async def test_a_rewritten_stretch_is_named_by_the_signatures_and_the_witnesses(
    stack: dict[str, Api], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = Roster(stack["roster"])
    await roster.organise()
    first = await witness_roster(stack)
    await roster.enrol(3)
    second = await witness_roster(stack)
    await roster.enrol(2)
    third = await witness_roster(stack)
    context = stack["roster"].context
    rewritten = first + 2
    assert first < rewritten <= second < third
    await rewrite_and_rehash(database_url, context.store, rewritten)
    # The commit the rewritten event belongs to starts after the last signed event before it.
    commit_starts = 1 + await context.pool.fetchval(
        f'SELECT coalesce(max(position), 0) FROM "{context.schema}".events '
        "WHERE signature IS NOT NULL AND position < $1",
        rewritten,
    )

    report = await verify(stack["roster"])
    assert not report["intact"]
    assert report["first_broken_position"] == commit_starts
    assert "not covered by a valid signature" in report["reason"]
    found = report["witnesses"]["first_disagreement"]
    assert found["kind"] == "rewritten"
    assert found["position"] == first + 1
    assert found["tree_size"] == second
    assert f"positions {first + 1}–{second} were rewritten" in found["reason"]
    assert f"the last witnessed size that agrees is {first}" in found["reason"]

    # A witness asking roster for a checkpoint: roster will not sign one over its rewritten
    # log, which no longer extends its frontier (nor append onto it: the head's signature
    # does not hold).
    witness = stack["notify"].context.witness
    assert witness is not None
    [seen] = [o for o in await witness.round() if o.peer == "roster"]
    assert seen.status == "disagreement"
    assert seen.detail is not None
    assert seen.detail.startswith("log_changed:")
    assert f"the event at position {third} is not the one the last checkpoint" in seen.detail
    # A superuser who resets the frontier too gets roster to sign a checkpoint of the rewritten
    # log: notify sees two different trees of the size it witnessed.
    s = f'"{context.schema}"'
    await superuser(
        database_url,
        context.schema,
        (f"DELETE FROM {s}.log_checkpoints", []),
        (f"UPDATE {s}.log_frontier SET size = 0, head_hash = repeat('0', 64), nodes = '{{}}'", []),
    )
    [seen] = [o for o in await witness.round() if o.peer == "roster"]
    assert seen.status == "disagreement"
    assert seen.detail is not None
    assert seen.detail.startswith(f"forked: roster signed two different trees of size {third}")

    code = await cli._verify(["roster"], settings=_settings(database_url), schemas=_schemas(stack))
    out = capsys.readouterr().out
    assert code == 1
    assert f"roster: BROKEN at position {commit_starts}" in out
    assert f"witnesses DISAGREE at position {first + 1} (rewritten)" in out


# -- (c) an exported file, and the log tampered with afterwards -------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app (its lifespan already running) over HTTP on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(_started(server, task), within=20, what=f"uvicorn on port {port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=20)
        sock.close()


def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> Any:
    async def check() -> bool:
        if task.done():
            task.result()
            raise AssertionError("uvicorn stopped before it started")
        return bool(server.started)

    return check


async def partyctl(urls: dict[str, str], token: str, *argv: str) -> int:
    """partyctl in a thread (it blocks on HTTP) while this loop serves the services."""
    with pytest.MonkeyPatch.context() as env:
        for name, url in urls.items():
            env.setenv(f"PARTY_{name.upper()}_URL", url)
        env.setattr(auditor, "console", Console(width=400, force_terminal=False))
        return await asyncio.to_thread(auditor.main, ["--token", token, *argv])


async def test_an_exported_file_names_the_position_of_a_later_cut(
    stack: dict[str, Api],
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roster = Roster(stack["roster"])
    await roster.organise()
    await witness_roster(stack)
    await roster.enrol(3)
    await witness_roster(stack)
    size = await head(stack["roster"])
    token = stack["roster"].tokens.issue("auditor", "auditor")
    exported = tmp_path / "checkpoints.json"
    async with contextlib.AsyncExitStack() as servers:
        urls = {
            name: await servers.enter_async_context(served(api.app)) for name, api in stack.items()
        }
        assert await partyctl(urls, token, "checkpoints", "export", "--out", str(exported)) == 0
        document = json.loads(exported.read_text())
        assert document["format"] == "party-checkpoints-v1"
        entries = [WitnessedCheckpoint.from_json(e) for e in document["checkpoints"]]
        own = [e for e in entries if e.witness == e.checkpoint.service]
        assert sorted(e.witness for e in own) == sorted(stack)
        assert [e.checkpoint.tree_size for e in own if e.witness == "roster"] == [size]
        of_roster = [e for e in entries if e.checkpoint.service == "roster"]
        assert len(of_roster) == 1 + 2 * len(PEERS_OF_ROSTER)
        capsys.readouterr()

        # (d) untouched: every log agrees with every witness and with the file.
        assert await partyctl(urls, token, "verify", "--checkpoints", str(exported)) == 0
        out = capsys.readouterr().out
        assert "disagree" not in out
        assert out.count("agree") >= 2 * len(stack)
        code = await cli._verify(
            ["all"], str(exported), settings=_settings(database_url), schemas=_schemas(stack)
        )
        assert code == 0
        assert "DISAGREE" not in capsys.readouterr().out

        # The superuser cuts the last two events afterwards.
        await cut_tail(database_url, stack["roster"].context.store, size - 2)
        assert await partyctl(urls, token, "verify", "--checkpoints", str(exported)) == 1
        out = capsys.readouterr().out
        assert f"broken at position {size - 1}" in out
        assert "disagree at position" in out
        assert (
            f"roster against the exported file: the log ends at position {size - 2} but "
            f"roster's log was witnessed at size {size} by activities on "
        ) in out
        assert f"positions {size - 1}–{size} are missing (a cut tail)" in out
        assert "(the exported file checkpoints.json)" in out

    code = await cli._verify(
        ["roster"], str(exported), settings=_settings(database_url), schemas=_schemas(stack)
    )
    assert code == 1
    assert f"witnesses DISAGREE at position {size - 1} (cut_tail)" in capsys.readouterr().out


# -- (e) proofs -------------------------------------------------------------------------------


async def test_inclusion_and_consistency_proofs_verify_against_signed_checkpoints(
    stack: dict[str, Api],
) -> None:
    api = stack["roster"]
    auditor_header = api.auth("auditor")
    roster = Roster(api)
    await roster.organise()

    async def checkpoint(fresh: bool = True) -> Checkpoint:
        response = await api.client.get(
            "/v1/audit/checkpoint", params={"fresh": fresh}, headers=auditor_header
        )
        assert response.status_code == 200, response.text
        return parse_checkpoint(response.json()["checkpoint"])

    one = await checkpoint()
    assert await checkpoint(fresh=True) == one  # nothing recorded since: the same one
    await roster.enrol(3)
    two = await checkpoint()
    assert await checkpoint(fresh=False) == two
    assert one.tree_size < two.tree_size == await head(api)
    for made in (one, two):
        assert signature_problem(made, keyring()) is None
    # The persisted frontier, advanced from one checkpoint to the next, gave the same root as
    # the tree computed from scratch over every event hash.
    events = await api.context.store.read_all(limit=1000)
    assert two.root_hash == root([event_leaf(e.hash) for e in events]).hex()
    assert two.head_hash == events[-1].hash

    for position in (1, one.tree_size, two.tree_size):
        response = await api.client.get(
            "/v1/audit/proof/inclusion",
            params={"position": position, "tree_size": two.tree_size},
            headers=auditor_header,
        )
        assert response.status_code == 200, response.text
        proof = response.json()
        assert proof["event_hash"] == events[position - 1].hash
        assert proof["root_hash"] == two.root_hash
        path = [bytes.fromhex(h) for h in proof["audit_path"]]
        leaf = event_leaf(proof["event_hash"])
        assert verify_inclusion(
            leaf, position - 1, two.tree_size, path, bytes.fromhex(two.root_hash)
        )
        assert not verify_inclusion(
            event_leaf(events[0].hash if position > 1 else events[1].hash),
            position - 1,
            two.tree_size,
            path,
            bytes.fromhex(two.root_hash),
        )

    response = await api.client.get(
        "/v1/audit/proof/consistency",
        params={"first": one.tree_size, "second": two.tree_size},
        headers=auditor_header,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    proof = [bytes.fromhex(h) for h in body["proof"]]
    assert (body["first_root"], body["second_root"]) == (one.root_hash, two.root_hash)
    assert verify_consistency(
        one.tree_size,
        two.tree_size,
        bytes.fromhex(one.root_hash),
        bytes.fromhex(two.root_hash),
        proof,
    )

    # Out of range: a problem, not a proof.
    response = await api.client.get(
        "/v1/audit/proof/consistency",
        params={"first": two.tree_size, "second": two.tree_size + 5},
        headers=auditor_header,
    )
    assert response.status_code == 422
    assert "fewer than" in response.json()["detail"]
    # Another service reads checkpoints with its service token; a member may not.
    service_token = signer("scoring").service_token("roster")
    response = await api.client.get(
        "/v1/audit/checkpoint", headers={"Authorization": f"Bearer {service_token}"}
    )
    assert response.status_code == 200
    member = api.auth("member", member_id="m0001")
    assert (await api.client.get("/v1/audit/checkpoint", headers=member)).status_code == 403


# -- the witness's alarms, against a peer that lies -------------------------------------------


class LyingRoster:
    """A stand-in `roster` peer that answers whatever the test sets."""

    peers = ("roster",)

    def __init__(self) -> None:
        self.answer: PeerCheckpoint | Exception = PeerUnavailable("down")
        self.proof: list[bytes] = []

    async def checkpoint(self, peer: str) -> PeerCheckpoint:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def consistency(self, peer: str, first: int, second: int) -> list[bytes]:
        return self.proof

    async def witnessed(self, peer: str, of: str) -> list[WitnessedCheckpoint]:
        return []

    async def close(self) -> None:
        return None


def _tree(n: int) -> list[bytes]:
    return [bytes([i % 256]) * 32 for i in range(1, n + 1)]


async def test_a_witness_refuses_what_does_not_hold_and_records_nothing(store: EventStore) -> None:
    peer = LyingRoster()
    witness = Witness("activities", store, signer("activities"), keyring, peer)
    roster_key = signer("roster")
    now = datetime.now(UTC)

    def signed(n: int, leaves: list[bytes] | None = None, by: Any = roster_key) -> PeerCheckpoint:
        leaves = leaves if leaves is not None else _tree(n)
        made = sign_checkpoint(by, n, leaves[n - 1].hex(), root(leaves[:n]).hex(), now)
        return PeerCheckpoint(made, n)

    async def one(expected: str) -> str | None:
        [outcome] = await witness.round()
        assert outcome.status == expected, outcome
        return outcome.detail

    await one("unavailable")  # a peer that is down is skipped
    peer.answer = signed(10)
    await one("recorded")
    alarms = metric("party_witness_disagreements_total", service="activities", peer="roster")

    # Signed by someone else.
    from runtime.signing import Signer

    peer.answer = signed(12, by=Signer.generate("roster"))
    detail = await one("disagreement")
    assert detail is not None
    assert detail.startswith("bad_signature:")
    # Smaller than witnessed.
    peer.answer = signed(8)
    detail = await one("disagreement")
    assert detail is not None
    assert "has 8 events now, but activities witnessed it at size 10" in detail
    # The same size with another tree.
    other = [bytes([99]) * 32] * 10
    peer.answer = signed(10, other)
    assert (await one("disagreement") or "").startswith("forked:")
    # Larger, but not an extension of the tree witnessed (a rewrite in 1..10).
    rewritten = other + _tree(14)[10:]
    peer.answer = signed(14, rewritten)
    from runtime.merkle import consistency_proof

    peer.proof = consistency_proof(rewritten, 10, 14)
    assert (await one("disagreement") or "").startswith("inconsistent:")
    # Saying its log changed under its checkpoints.
    peer.answer = PeerLogChanged("positions 9–10 were cut")
    assert (await one("disagreement") or "").startswith("log_changed:")
    assert (
        metric("party_witness_disagreements_total", service="activities", peer="roster")
        == alarms + 5
    )
    # A real extension is recorded, with the size it was proven to extend.
    peer.answer = signed(14)
    peer.proof = consistency_proof(_tree(14), 10, 14)
    await one("recorded")
    recorded = await store.read_stream("witness-roster")
    assert [e.data["checkpoint"]["tree_size"] for e in recorded] == [10, 14]
    assert [e.data["consistent_with_size"] for e in recorded] == [None, 10]
    assert all(e.actor_role == "system" for e in recorded)
    assert recorded[1].occurred_at - now < timedelta(seconds=1)
