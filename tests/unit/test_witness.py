"""Checkpoints without I/O: the bytes a service signs, their verification, and the Merkle
frontier persisted and advanced piece by piece equal to the root computed from scratch."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from datetime import UTC, datetime

import pytest

from contracts.canonical import GENESIS_HASH
from runtime.merkle import EMPTY_ROOT, Frontier, event_leaf, root
from runtime.signing import KeyRing, Signer
from runtime.witness import (
    WitnessedCheckpoint,
    checkpoint_message,
    parse_checkpoint,
    sign_checkpoint,
    signature_problem,
)

AT = datetime(2011, 4, 30, 16, 0, 0, 123456, tzinfo=UTC)
HEAD = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
ROOT = "1a208aeb6e1e4ea6cb4e4c3f1e4c1c3f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"


@pytest.fixture(scope="module")
def roster() -> Signer:
    return Signer.generate("roster")


@pytest.fixture(scope="module")
def ring(roster: Signer) -> KeyRing:
    ring = KeyRing()
    ring.add("roster", roster.public_key)
    return ring


def test_the_signed_bytes_name_the_service_size_hashes_and_instant() -> None:
    assert (
        checkpoint_message("roster", 343, HEAD, ROOT, AT)
        == (
            f"party-checkpoint-v1\nroster\n343\n{HEAD}\n{ROOT}\n2011-04-30T16:00:00.123456+00:00"
        ).encode()
    )


def test_the_instant_is_signed_in_utc_whatever_its_offset() -> None:
    from zoneinfo import ZoneInfo

    local = AT.astimezone(ZoneInfo("Asia/Shanghai"))
    assert checkpoint_message("roster", 1, HEAD, ROOT, local) == checkpoint_message(
        "roster", 1, HEAD, ROOT, AT
    )


def test_a_signed_checkpoint_verifies_and_survives_its_json(roster: Signer, ring: KeyRing) -> None:
    checkpoint = sign_checkpoint(roster, 343, HEAD, ROOT, AT)
    assert checkpoint.key_id == roster.key_id
    assert signature_problem(checkpoint, ring) is None
    again = parse_checkpoint(checkpoint.model_dump(mode="json"))
    assert again == checkpoint
    assert signature_problem(again, ring) is None


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 342},
        {"head_hash": ROOT},
        {"root_hash": HEAD},
        {"at": AT.replace(microsecond=0)},
        {"service": "scoring"},
    ],
)
def test_any_change_breaks_the_signature(
    roster: Signer, ring: KeyRing, change: dict[str, object]
) -> None:
    checkpoint = sign_checkpoint(roster, 343, HEAD, ROOT, AT)
    changed = checkpoint.model_copy(update=change)
    assert signature_problem(changed, ring) is not None


def test_another_key_or_a_revoked_one_does_not_verify(roster: Signer, ring: KeyRing) -> None:
    impostor = Signer.generate("roster")
    forged = sign_checkpoint(impostor, 343, HEAD, ROOT, AT)
    assert signature_problem(forged, ring) == f"roster has no public key {impostor.key_id}"
    revoked = KeyRing()
    revoked.add("roster", roster.public_key, revoked_after=300)
    problem = signature_problem(sign_checkpoint(roster, 343, HEAD, ROOT, AT), revoked)
    assert problem is not None
    assert "revoked after position 300" in problem
    assert signature_problem(sign_checkpoint(roster, 300, HEAD, ROOT, AT), revoked) is None
    # A signature moved onto another checkpoint does not hold.
    other = sign_checkpoint(roster, 344, HEAD, ROOT, AT)
    moved = other.model_copy(update={"signature": forged.signature})
    assert signature_problem(moved, ring) is not None


def _hashes(n: int) -> list[str]:
    return [hashlib.sha256(f"event {i}".encode()).hexdigest() for i in range(1, n + 1)]


@pytest.mark.parametrize("seed", range(20))
def test_a_frontier_persisted_and_advanced_in_pieces_equals_the_root_from_scratch(
    seed: int,
) -> None:
    chance = random.Random(seed)
    hashes = _hashes(chance.randint(0, 300))
    stored_size, stored_nodes = 0, Frontier().to_hex()
    done = 0
    while True:
        # Read back from its persisted form, advanced by the rows after it only.
        frontier = Frontier.from_hex(stored_size, stored_nodes)
        step = chance.randint(0, 40)
        frontier.extend(event_leaf(h) for h in hashes[done : done + step])
        done = min(len(hashes), done + step)
        stored_size, stored_nodes = frontier.size, frontier.to_hex()
        assert frontier.root() == root([event_leaf(h) for h in hashes[:done]])
        if done == len(hashes):
            break
    assert stored_size == len(hashes)
    if not hashes:
        assert frontier.root() == EMPTY_ROOT


def test_an_exported_entry_reads_back_and_says_who_kept_it(roster: Signer) -> None:
    checkpoint = sign_checkpoint(roster, 200, HEAD, ROOT, AT)
    entry = WitnessedCheckpoint(checkpoint, "scoring", AT, 57, 180)
    again = WitnessedCheckpoint.from_json(entry.to_json(), "the exported file cp.json")
    assert dataclasses.replace(again, source=None) == entry
    assert again.described() == (
        "by scoring on 2011-04-30T16:00:00+00:00 (the exported file cp.json)"
    )
    own = WitnessedCheckpoint(checkpoint, "roster")
    assert own.described() == "signed by roster itself on 2011-04-30T16:00:00+00:00"
    with pytest.raises(ValueError, match="not a checkpoint"):
        WitnessedCheckpoint.from_json({"witness": "scoring", "checkpoint": {"tree_size": -1}})
    assert GENESIS_HASH == "0" * 64
