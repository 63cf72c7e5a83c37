"""RFC 9162 Merkle trees (runtime.merkle): the reference test vectors, then properties.

The vectors are copied from transparency-dev/merkle (Apache-2.0; the Go Merkle tree code of
Trillian and Certificate Transparency, moved there from google/certificate-transparency-go),
snapshot at commit 417fb0c314750d94e53942e9f92e79b6d35915db:
- `testonly/constants.go`: LeafInputs, NodeHashes, RootHashes, CompactTrees, EmptyRootHash;
- `cmd/proofgen/main.go` (which writes `testdata/inclusion/**` and `testdata/consistency/**`):
  the inclusion and consistency proof vectors, the corruptions applied to each
  (`invalidInclusionProof`, `invalidConsistencyProof`), `staticInclusionProbes`,
  `singleEntryInclusionProbes` and `staticConsistencyProbes`;
- `rfc6962/rfc6962_test.go`: the leaf and node hash vectors;
- `proof/proof_test.go` `TestInclusion`: audit paths in the 7-leaf tree as node ids, turned into
  hashes here with NodeHashes (those rows are derived, not copied).
Their test code numbers inclusion vectors' leaves from 1; the tables below are 0-based.
Their verifiers take leaf hashes, ours leaf inputs: a "wrong leaf hash" probe is a wrong input.
Where they expect an error, ours either returns False or, for arguments that cannot be right
(index >= size, size1 > size2, size1 == 0), raises ValueError: both count as rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    event_leaf,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def h(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


# testonly/constants.go LeafInputs()
LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

# testonly/constants.go RootHashes(): the root for each tree size 0..8 over LEAVES.
ROOTS = [
    h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# testonly/constants.go NodeHashes(): NODES[level][i] is the root of the perfect subtree of
# LEAVES[i * 2**level : (i + 1) * 2**level].
NODES = [
    [
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [
        h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ],
]

# testonly/constants.go CompactTrees(): the compact range [0, size) for each size 0..8.
COMPACT = [
    [],
    [NODES[0][0]],
    [NODES[1][0]],
    [NODES[1][0], NODES[0][2]],
    [NODES[2][0]],
    [NODES[2][0], NODES[0][4]],
    [NODES[2][0], NODES[1][2]],
    [NODES[2][0], NODES[1][2], NODES[0][6]],
    [NODES[3][0]],
]

# cmd/proofgen/main.go inclusionProofs (leaf index made 0-based): (index, tree size, proof).
INCLUSION_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# proof/proof_test.go TestInclusion, the rows for trees of up to 8 leaves, node ids (level,
# index) replaced by NODES; l = hash(i, j) is the one node not in NODES (the 7-leaf tree's
# right half, ids (1, 2) and (0, 6)). Derived here, not copied as hashes.
_A, _B, _C, _D, _E, _F, _J = (NODES[0][i] for i in (0, 1, 2, 3, 4, 5, 6))
_G, _H, _I = NODES[1][0], NODES[1][1], NODES[1][2]
_K = NODES[2][0]
_L = node_hash(_I, _J)
DERIVED_INCLUSION_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (0, 2, [_B]),
    (1, 2, [_A]),
    (1, 3, [_A, _C]),
    (0, 7, [_B, _H, _L]),
    (1, 7, [_A, _H, _L]),
    (2, 7, [_D, _G, _L]),
    (3, 7, [_C, _G, _L]),
    (4, 7, [_F, _J, _K]),
    (5, 7, [_E, _J, _K]),
    (6, 7, [_I, _K]),
    (2, 4, [_D, _G]),
    (3, 5, [_C, _G, _E]),
    (3, 6, [_C, _G, _I]),
    (4, 6, [_F, _K]),
]

# cmd/proofgen/main.go consistencyProofs: (first size, second size, proof).
CONSISTENCY_VECTORS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

# cmd/proofgen/main.go sha256SomeHash and the "don't care" roots of staticConsistencyProbes.
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")
DONT_CARE_1 = b"don't care 1"
DONT_CARE_2 = b"don't care 2"
UINT64_MAX = 2**64 - 1


def rejected(verify: Callable[..., bool], *args: object) -> bool:
    """The verifier refuses: False for a proof that does not check, ValueError for arguments."""
    try:
        return not verify(*args)
    except ValueError:
        return True


# --- hashing -------------------------------------------------------------------------------


def test_the_rfc6962_hash_vectors() -> None:
    # rfc6962/rfc6962_test.go TestRFC6962Hasher
    assert EMPTY_ROOT == root([]) == ROOTS[0] == hashlib.sha256(b"").digest()
    assert leaf_hash(b"") == h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456") == h(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == h(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    # rfc6962/rfc6962_test.go TestRFC6962HasherCollisions
    left, right = leaf_hash(b"Hello"), leaf_hash(b"World")
    assert left != right
    assert node_hash(left, right) != leaf_hash(left + right)
    assert node_hash(left, right) != node_hash(right, left)


def test_an_event_hash_becomes_its_raw_bytes() -> None:
    digest = hashlib.sha256(b"an event").hexdigest()
    assert event_leaf(digest) == bytes.fromhex(digest)
    assert len(event_leaf(digest)) == 32


@pytest.mark.parametrize(
    "bad",
    ["", "ab" * 31, "ab" * 33, "AB" * 32, "zz" * 32, " " + "ab" * 32, b"ab" * 32],
)
def test_an_event_hash_that_is_not_64_lowercase_hex_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="event_hash"):
        event_leaf(bad)


# --- roots -----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", range(9))
def test_the_root_of_each_tree_size(size: int) -> None:
    assert root(LEAVES[:size]) == ROOTS[size]


def test_every_perfect_subtree_hash() -> None:
    for level, hashes in enumerate(NODES):
        width = 2**level
        for i, expected in enumerate(hashes):
            assert root(LEAVES[i * width : (i + 1) * width]) == expected, (level, i)


@pytest.mark.parametrize("size", range(9))
def test_the_frontier_is_the_compact_range_at_each_size(size: int) -> None:
    frontier = Frontier()
    frontier.extend(LEAVES[:size])
    assert frontier.size == size
    assert list(frontier.nodes) == COMPACT[size]
    assert frontier.root() == ROOTS[size]


# --- inclusion vectors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "size", "proof"),
    INCLUSION_VECTORS + DERIVED_INCLUSION_VECTORS,
    ids=lambda v: str(v) if isinstance(v, int) else "proof",
)
def test_the_inclusion_proof_vectors(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(LEAVES[:size], index) == proof
    assert verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], tree_root: bytes, leaf: bytes
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """cmd/proofgen/main.go invalidInclusionProof: (desc, index, size, leaf, proof, root)."""
    probes = [
        ("leafIdx sub @1", index - 1 if index else UINT64_MAX, size, leaf, proof, tree_root),
        ("leafIdx plus @1", index + 1, size, leaf, proof, tree_root),
        ("leafIdx XOR @2", index ^ 2, size, leaf, proof, tree_root),
        ("treeSize mul @2", index, size * 2, leaf, proof, tree_root),
        ("treeSize div @2", index, size // 2, leaf, proof, tree_root),
        ("wrong leaf", index, size, b"WrongLeaf", proof, tree_root),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], tree_root),
        ("trailing root", index, size, leaf, [*proof, tree_root], tree_root),
        ("preceding garbage", index, size, leaf, [b"", *proof], tree_root),
        ("preceding root", index, size, leaf, [tree_root, *proof], tree_root),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((f"modified proof[{i}] bit @3", index, size, leaf, wrong, tree_root))
    if proof:
        probes.append(("removed component", index, size, leaf, proof[:-1], tree_root))
    if len(proof) > 1:
        wrong = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted component", index, size, leaf, wrong, tree_root))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_every_corruption_of_an_inclusion_vector_is_rejected(
    index: int, size: int, proof: list[bytes]
) -> None:
    probes = _corrupt_inclusion(index, size, proof, ROOTS[size], LEAVES[index])
    accepted = [
        desc
        for desc, i, n, leaf, wrong, tree_root in probes
        if not rejected(verify_inclusion, leaf, i, n, wrong, tree_root)
    ]
    assert accepted == []


def test_the_single_entry_inclusion_probes() -> None:
    # cmd/proofgen/main.go singleEntryInclusionProbes: one leaf, whose hash is the root.
    data = b"data"
    one_root = leaf_hash(data)
    assert verify_inclusion(data, 0, 1, [], one_root)
    assert not verify_inclusion(b"", 0, 1, [], one_root)  # "empty leaf"
    assert not verify_inclusion(data, 0, 1, [], b"")  # "empty root"
    assert not verify_inclusion(b"", 0, 1, [], b"")  # "empty root and leaf"


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_the_static_inclusion_probes(index: int, size: int) -> None:
    # cmd/proofgen/main.go staticInclusionProbes; their leaf hashes are our leaf inputs.
    assert rejected(verify_inclusion, SOME_HASH, index, size, [], b"")
    assert rejected(verify_inclusion, b"", index, size, [], EMPTY_ROOT)
    assert rejected(verify_inclusion, SOME_HASH, index, size, [], EMPTY_ROOT)


# --- consistency vectors ---------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_the_consistency_proof_vectors(first: int, second: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAVES, first, second) == proof
    assert verify_consistency(first, second, ROOTS[first], ROOTS[second], proof)


def _corrupt_consistency(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """cmd/proofgen/main.go invalidConsistencyProof: (desc, size1, size2, root1, root2, proof)."""
    probes = [
        ("size1 sub @1", first - 1, second, root1, root2, proof),
        ("size1 plus @1", first + 1, second, root1, root2, proof),
        ("size1 XOR @2", first ^ 2, second, root1, root2, proof),
        ("size2 mul @2", first, second * 2, root1, root2, proof),
        ("size2 div @2", first, second // 2, root1, root2, proof),
        ("wrong root1", first, second, b"WrongRoot", root2, proof),
        ("wrong root2", first, second, root1, b"WrongRoot", proof),
        ("swapped roots", first, second, root2, root1, proof),
        ("empty proof", first, second, root1, root2, []),
        ("trailing garbage", first, second, root1, root2, [*proof, b""]),
        ("trailing root1", first, second, root1, root2, [*proof, root1]),
        ("trailing root2", first, second, root1, root2, [*proof, root2]),
        ("preceding garbage", first, second, root1, root2, [b"", *proof]),
        ("preceding root1", first, second, root1, root2, [root1, *proof]),
        ("preceding root2", first, second, root1, root2, [root2, *proof]),
        ("preceding proof @0", first, second, root1, root2, [proof[0], *proof]),
        ("truncated proof", first, second, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((f"modified proof@{i} bit @4", first, second, root1, root2, wrong))
    return probes


@pytest.mark.parametrize(("first", "second", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_every_corruption_of_a_consistency_vector_is_rejected(
    first: int, second: int, proof: list[bytes]
) -> None:
    probes = _corrupt_consistency(first, second, ROOTS[first], ROOTS[second], proof)
    accepted = [
        desc
        for desc, m, n, root1, root2, wrong in probes
        if not rejected(verify_consistency, m, n, root1, root2, wrong)
    ]
    assert accepted == []


# cmd/proofgen/main.go staticConsistencyProbes: (size1, size2, root1, root2, proof, accepted).
STATIC_CONSISTENCY_PROBES: list[tuple[int, int, bytes, bytes, list[bytes], bool]] = [
    (0, 0, DONT_CARE_1, DONT_CARE_2, [], False),
    (1, 1, DONT_CARE_1, DONT_CARE_2, [], False),
    (0, 0, DONT_CARE_1, DONT_CARE_1, [], False),
    (0, 1, DONT_CARE_1, DONT_CARE_2, [], False),
    (1, 1, DONT_CARE_2, DONT_CARE_2, [], True),
    (1, 0, DONT_CARE_1, DONT_CARE_2, [], False),
    (2, 1, DONT_CARE_1, DONT_CARE_2, [], False),
    (1, 2, DONT_CARE_1, DONT_CARE_2, [], False),
    (0, 0, EMPTY_ROOT, DONT_CARE_2, [], False),
    (1, 1, EMPTY_ROOT, DONT_CARE_2, [], False),
    (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    (0, 1, EMPTY_ROOT, DONT_CARE_2, [], False),
    (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
]


@pytest.mark.parametrize(
    ("first", "second", "root1", "root2", "proof", "accepted"), STATIC_CONSISTENCY_PROBES
)
def test_the_static_consistency_probes(
    first: int, second: int, root1: bytes, root2: bytes, proof: list[bytes], accepted: bool
) -> None:
    assert rejected(verify_consistency, first, second, root1, root2, proof) is not accepted


# --- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: inclusion_proof(LEAVES, -1), "index"),
        (lambda: inclusion_proof(LEAVES, 8), "index"),
        (lambda: inclusion_proof([], 0), "index"),
        (lambda: verify_inclusion(b"", 3, 3, [], ROOTS[3]), "index"),
        (lambda: verify_inclusion(b"", -1, 3, [], ROOTS[3]), "index"),
        (lambda: verify_inclusion(b"", 0, -1, [], ROOTS[3]), "tree_size"),
        (lambda: consistency_proof(LEAVES, 0, 3), "first_size"),
        (lambda: consistency_proof(LEAVES, 4, 3), "first_size"),
        (lambda: consistency_proof(LEAVES, -1, 3), "first_size"),
        (lambda: consistency_proof(LEAVES, 1, 9), "second_size"),
        (lambda: consistency_proof(LEAVES, 1, -1), "second_size"),
        (lambda: verify_consistency(0, 3, EMPTY_ROOT, ROOTS[3], []), "first_size"),
        (lambda: verify_consistency(4, 3, ROOTS[4], ROOTS[3], []), "first_size"),
        (lambda: verify_consistency(1, -3, ROOTS[1], ROOTS[3], []), "second_size"),
        (lambda: Frontier.from_hex(-1, []), "size"),
        (lambda: Frontier.from_hex(3, [ROOTS[2].hex()]), "nodes"),
        (lambda: Frontier.from_hex(1, [ROOTS[1].hex().upper()]), "nodes"),
        (lambda: Frontier.from_hex(1, [ROOTS[1].hex()[:-2]]), "nodes"),
        (lambda: Frontier.from_hex(1, ROOTS[1].hex()), "nodes"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(
    call: Callable[[], object], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        call()


def test_a_proof_of_wrongly_sized_hashes_does_not_verify() -> None:
    index, size, proof = INCLUSION_VECTORS[1]
    assert not verify_inclusion(
        LEAVES[index], index, size, [*proof[:-1], proof[-1] + b"\0"], ROOTS[size]
    )
    first, second, proof = CONSISTENCY_VECTORS[2]
    assert not verify_consistency(
        first, second, ROOTS[first], ROOTS[second], [proof[0][:-1], *proof[1:]]
    )


# --- properties ------------------------------------------------------------------------------

# Distinct leaves, as a hash chain's are: with two equal leaves a proof can hold at another
# index too (the tree [a, a] proves a at both), which is no fault of the proof.
leaf_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=48, unique=True)


def reference_root(leaves: Sequence[bytes]) -> bytes:
    """An independent MTH: hash each level in pairs, carrying an odd last node up as it is."""
    level = [leaf_hash(d) for d in leaves]
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        level = paired + level[len(paired) * 2 :]
    return level[0]


def flip(proof: list[bytes], element: int, byte: int, bit: int) -> list[bytes]:
    wrong = list(proof)
    node = bytearray(wrong[element])
    node[byte] ^= 1 << bit
    wrong[element] = bytes(node)
    return wrong


@settings(max_examples=200, deadline=None)
@given(leaf_lists)
def test_the_root_is_the_reference_root(leaves: list[bytes]) -> None:
    assert root(leaves) == reference_root(leaves)


@settings(max_examples=100, deadline=None)
@given(leaf_lists)
def test_every_inclusion_proof_verifies(leaves: list[bytes]) -> None:
    tree_root = root(leaves)
    for index, leaf in enumerate(leaves):
        proof = inclusion_proof(leaves, index)
        assert len(proof) <= (len(leaves) - 1).bit_length()
        assert verify_inclusion(leaf, index, len(leaves), proof, tree_root)


@settings(max_examples=300, deadline=None)
@given(leaf_lists.filter(lambda leaves: len(leaves) >= 2), st.data())
def test_a_changed_inclusion_proof_or_index_does_not_verify(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size, tree_root = len(leaves), root(leaves)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(leaves, index)
    element = data.draw(st.integers(0, len(proof) - 1), label="element")
    byte = data.draw(st.integers(0, 31), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    assert not verify_inclusion(
        leaves[index], index, size, flip(proof, element, byte, bit), tree_root
    )
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
    assert not verify_inclusion(leaves[index], other, size, proof, tree_root)
    assert not verify_inclusion(leaves[other], index, size, proof, tree_root)


@settings(max_examples=300, deadline=None)
@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies_and_not_against_another_first_root(
    leaves: list[bytes], data: st.DataObject
) -> None:
    second = data.draw(st.integers(1, len(leaves)), label="second")
    first = data.draw(st.integers(1, second), label="first")
    proof = consistency_proof(leaves, first, second)
    first_root, second_root = root(leaves[:first]), root(leaves[:second])
    assert verify_consistency(first, second, first_root, second_root, proof)
    assert (proof == []) is (first == second)
    # Another first tree of the same size: one leaf changed.
    changed = data.draw(st.integers(0, first - 1), label="changed")
    other = [*leaves[:changed], leaves[changed] + b"!", *leaves[changed + 1 : first]]
    assert not verify_consistency(first, second, root(other), second_root, proof)
    if first < second:
        assert not verify_consistency(first, second, second_root, first_root, proof)


@settings(max_examples=300, deadline=None)
@given(leaf_lists.filter(lambda leaves: len(leaves) >= 2), st.data())
def test_a_changed_consistency_proof_does_not_verify(
    leaves: list[bytes], data: st.DataObject
) -> None:
    second = data.draw(st.integers(2, len(leaves)), label="second")
    first = data.draw(st.integers(1, second - 1), label="first")
    proof = consistency_proof(leaves, first, second)
    first_root, second_root = root(leaves[:first]), root(leaves[:second])
    element = data.draw(st.integers(0, len(proof) - 1), label="element")
    byte = data.draw(st.integers(0, 31), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    wrong = flip(proof, element, byte, bit)
    assert not verify_consistency(first, second, first_root, second_root, wrong)
    assert not verify_consistency(first, second, first_root, second_root, proof[:-1])
    assert not verify_consistency(first, second, first_root, second_root, [*proof, SOME_HASH])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=80))
def test_the_frontier_root_is_the_root_of_every_prefix(leaves: list[bytes]) -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for index, leaf in enumerate(leaves):
        assert frontier.append(leaf) == index
        assert frontier.size == index + 1
        assert len(frontier.nodes) == frontier.size.bit_count()
        assert frontier.root() == root(leaves[: index + 1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=80), st.data())
def test_a_frontier_round_trips_through_hex_and_goes_on_growing(
    leaves: list[bytes], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(leaves)), label="cut")
    frontier = Frontier()
    frontier.extend(leaves[:cut])
    stored = frontier.to_hex()
    assert all(isinstance(node, str) and len(node) == 64 for node in stored)
    restored = Frontier.from_hex(frontier.size, stored)
    assert restored == frontier
    assert restored.root() == frontier.root() == root(leaves[:cut])
    assert restored.to_hex() == stored
    copy = frontier.copy()
    restored.extend(leaves[cut:])
    assert copy == frontier  # the restored one is a separate object
    assert restored.size == len(leaves)
    assert restored.root() == root(leaves)
