"""RFC 9162 (Certificate Transparency 2.0) Merkle trees over a service's event log.

Pure: no I/O, standard library only. A checkpoint of a log is (tree size, root hash); with it an
auditor can check that one event is in the log (an inclusion proof, RFC 9162 §2.1.3) and that a
later checkpoint extends an earlier one (a consistency proof, §2.1.4) without reading the log.
The hashing is RFC 9162's (and RFC 6962's, Trillian's, transparency-dev/merkle's) with SHA-256:
a leaf hashes as SHA-256(0x00 || input), an interior node as SHA-256(0x01 || left || right), and
the proofs are the RFC's plain lists of 32-byte hashes, so a Go or other verifier of those
formats checks ours, and the other way round.

Every function that takes leaves takes the leaf *inputs*, d(i) in the RFC, and hashes them
itself. For our logs a leaf input is the 32 raw bytes of an event's hash, in log order:
`event_leaf(event.hash)`, which is `bytes.fromhex(event.hash)`, never the hex text's ASCII.

Arguments that cannot be right whatever the proof is (a negative size, an index outside the
tree, a first size above the second, more leaves asked for than given) raise ValueError naming
the argument. A proof that does not check, whatever is wrong with it (a changed hash, a hash of
the wrong length, too few or too many hashes, the wrong root), makes the verifier return False.

Consistency proofs, as in RFC 9162 §2.1.4, run from a first size of at least 1: the empty tree
is a prefix of every tree, so there is nothing to prove from it, and like Trillian
(transparency-dev/merkle `proof.VerifyConsistency`) this module refuses first_size 0 with a
ValueError rather than deciding what such a "proof" should accept. An auditor whose earlier
checkpoint is the empty tree checks only that its root is `EMPTY_ROOT`.

Generating a proof or a root from the leaves hashes all of them, O(n); a service keeps the root
of its whole log current with `Frontier` instead, O(log n) memory and O(1) amortised hashes per
appended event.

No library is used. The candidates on PyPI were looked at: `pymerkle` 7.0.0 computes RFC-exact
roots, but is GPL-3.0-or-later (copyleft over the services that would import it), says of itself
that it "requires security audit", numbers leaves from 1, has its own proof format (a path that
includes the leaf, with rule and subset bit lists; its consistency proof for 6 -> 8 has four
hashes where RFC 9162's has three), so RFC and Trillian verifiers cannot read its proofs, keeps
every leaf (no compact frontier) and pins `cachetools==7.2.1`. `merkle-py` 1.2.11 (MIT) is not
RFC 6962 hashing (optional double hashing and sorting, no domain separation) and has no
consistency proofs. What we need is small: this module, checked in tests/unit/test_merkle.py
against the transparency-dev/merkle test vectors.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "consistency_proof",
    "event_leaf",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 hash: every node hash and every proof element."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) of RFC 9162 §2.1.1: the root of the empty tree, SHA-256 of the empty string."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d): the hash of one leaf input."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def event_leaf(event_hash: str) -> bytes:
    """The leaf input of an event: the 32 raw bytes of its 64-char lowercase hex SHA-256 hash."""
    if not isinstance(event_hash, str) or _HEX_HASH.fullmatch(event_hash) is None:
        raise ValueError(
            f"event_hash must be 64 lowercase hex characters (a SHA-256), got {event_hash!r}"
        )
    return bytes.fromhex(event_hash)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1 over the leaf inputs; `EMPTY_ROOT` for no leaves."""
    if not leaves:
        return EMPTY_ROOT
    return _subtree_hash([leaf_hash(d) for d in leaves], 0, len(leaves))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1: the audit path of leaf `index` in the tree of all
    `leaves` (n = len(leaves)), lowest sibling first. For an earlier tree size m, pass
    `leaves[:m]`."""
    _check_non_negative("index", index)
    if index >= len(leaves):
        raise ValueError(f"index {index} is out of range for a tree of {len(leaves)} leaves")
    hashes = [leaf_hash(d) for d in leaves]
    path: list[bytes] = []
    _path(hashes, index, 0, len(hashes), path)
    path.reverse()
    return path


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show leaf input `leaf` at `index` in the tree of
    `tree_size` leaves whose root is `root`?

    `leaf` is the leaf input (for an event, `event_leaf(event.hash)`), not its leaf hash.
    Raises ValueError if index is not in [0, tree_size)."""
    _check_non_negative("index", index)
    _check_non_negative("tree_size", tree_size)
    if index >= tree_size:
        raise ValueError(f"index {index} is out of range for tree_size {tree_size}")
    if not _all_hashes(proof):
        return False
    fn, sn = index, tree_size - 1
    r = leaf_hash(leaf)
    for p in proof:
        if sn == 0:
            return False  # more hashes than the path has levels
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def consistency_proof(leaves: Sequence[bytes], first_size: int, second_size: int) -> list[bytes]:
    """PROOF(first_size, D[second_size]) of RFC 9162 §2.1.4.1 over the first `second_size`
    leaf inputs: the hashes that show the tree of `second_size` leaves extends the tree of
    `first_size`. Empty when the sizes are equal.

    Requires 1 <= first_size <= second_size <= len(leaves), else ValueError."""
    _check_non_negative("first_size", first_size)
    _check_non_negative("second_size", second_size)
    if first_size == 0:
        raise ValueError(
            "first_size must be at least 1: every tree extends the empty tree, so there is "
            "no consistency proof from it (check only that its root is EMPTY_ROOT)"
        )
    if first_size > second_size:
        raise ValueError(f"first_size {first_size} is greater than second_size {second_size}")
    if second_size > len(leaves):
        raise ValueError(f"second_size {second_size} is more than the {len(leaves)} leaves given")
    hashes = [leaf_hash(d) for d in leaves[:second_size]]
    proof: list[bytes] = []
    _subproof(hashes, first_size, 0, second_size, True, proof)
    proof.reverse()
    return proof


def verify_consistency(
    first_size: int,
    second_size: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
) -> bool:
    """RFC 9162 §2.1.4.2: does `proof` show that the tree of `second_size` leaves with root
    `second_root` extends the tree of `first_size` leaves with root `first_root`?

    Equal sizes are consistent only with equal roots and an empty proof. Raises ValueError
    unless 1 <= first_size <= second_size (see the module docstring on first_size 0)."""
    _check_non_negative("first_size", first_size)
    _check_non_negative("second_size", second_size)
    if first_size == 0:
        raise ValueError(
            "first_size must be at least 1: every tree extends the empty tree, so there is "
            "nothing to verify (check only that its root is EMPTY_ROOT)"
        )
    if first_size > second_size:
        raise ValueError(f"first_size {first_size} is greater than second_size {second_size}")
    if first_size == second_size:
        return not proof and first_root == second_root
    if not proof or not _all_hashes(proof):
        return False
    path = list(proof)
    if first_size & (first_size - 1) == 0:  # an exact power of 2: the first tree is a subtree
        path.insert(0, first_root)
    fn, sn = first_size - 1, second_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # more hashes than the trees have levels
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


class Frontier:
    """The right edge of a growing tree: the roots of its perfect subtrees, largest (leftmost)
    first — one per set bit of the size, so at most 63 for any size a bigint holds — which is
    all that is needed to append a leaf and to compute the root (Trillian's compact range
    [0, size)). `root()` equals `root(leaves)` over the same leaves at every size.

    Persist it as (size, to_hex()) and read it back with `Frontier.from_hex(size, nodes)`."""

    __slots__ = ("_nodes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._nodes: list[bytes] = []

    @property
    def size(self) -> int:
        """How many leaves have been appended."""
        return self._size

    @property
    def nodes(self) -> tuple[bytes, ...]:
        """The perfect subtrees' roots along the right edge, leftmost first."""
        return tuple(self._nodes)

    def append(self, leaf_input: bytes) -> int:
        """Add one leaf input on the right; returns its index (the size before it)."""
        index = self._size
        h = leaf_hash(leaf_input)
        n = index
        while n & 1:  # each trailing 1 bit of the old size is a perfect subtree to merge
            h = node_hash(self._nodes.pop(), h)
            n >>= 1
        self._nodes.append(h)
        self._size = index + 1
        return index

    def extend(self, leaf_inputs: Iterable[bytes]) -> None:
        """Append each leaf input in order."""
        for leaf_input in leaf_inputs:
            self.append(leaf_input)

    def root(self) -> bytes:
        """MTH of the leaves appended so far (RFC 9162 §2.1.1)."""
        if not self._nodes:
            return EMPTY_ROOT
        r = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            r = node_hash(node, r)
        return r

    def copy(self) -> Frontier:
        other = Frontier()
        other._size = self._size
        other._nodes = list(self._nodes)
        return other

    def to_hex(self) -> list[str]:
        """The nodes as 64-char lowercase hex strings, leftmost first (store with `size`)."""
        return [node.hex() for node in self._nodes]

    @classmethod
    def from_hex(cls, size: int, nodes: Sequence[str]) -> Frontier:
        """The frontier of `size` leaves from its `to_hex()`; ValueError if they do not fit."""
        _check_non_negative("size", size)
        if isinstance(nodes, str):
            raise ValueError("nodes must be a sequence of hex strings, not one string")
        if len(nodes) != size.bit_count():
            raise ValueError(
                f"nodes has {len(nodes)} hashes but a frontier of size {size} has "
                f"{size.bit_count()} (one per set bit of the size)"
            )
        parsed: list[bytes] = []
        for i, node in enumerate(nodes):
            if not isinstance(node, str) or _HEX_HASH.fullmatch(node) is None:
                raise ValueError(f"nodes[{i}] must be 64 lowercase hex characters, got {node!r}")
            parsed.append(bytes.fromhex(node))
        frontier = cls()
        frontier._size = size
        frontier._nodes = parsed
        return frontier

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frontier):
            return NotImplemented
        return self._size == other._size and self._nodes == other._nodes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


def _check_non_negative(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


def _all_hashes(proof: Sequence[bytes]) -> bool:
    return all(len(p) == HASH_SIZE for p in proof)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): the size of the left subtree."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_hash(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) from the leaf hashes, hi > lo."""
    n = hi - lo
    if n == 1:
        return hashes[lo]
    k = _split(n)
    return node_hash(_subtree_hash(hashes, lo, lo + k), _subtree_hash(hashes, lo + k, hi))


def _path(hashes: Sequence[bytes], m: int, lo: int, hi: int, out: list[bytes]) -> None:
    """Append PATH(m, D[lo:hi]) to `out` top-down (the caller reverses it)."""
    n = hi - lo
    if n == 1:
        return
    k = _split(n)
    if m < k:
        out.append(_subtree_hash(hashes, lo + k, hi))
        _path(hashes, m, lo, lo + k, out)
    else:
        out.append(_subtree_hash(hashes, lo, lo + k))
        _path(hashes, m - k, lo + k, hi, out)


def _subproof(
    hashes: Sequence[bytes], m: int, lo: int, hi: int, complete: bool, out: list[bytes]
) -> None:
    """Append SUBPROOF(m, D[lo:hi], complete) to `out` top-down (the caller reverses it)."""
    n = hi - lo
    if m == n:
        if not complete:
            out.append(_subtree_hash(hashes, lo, hi))
        return
    k = _split(n)
    if m <= k:
        out.append(_subtree_hash(hashes, lo + k, hi))
        _subproof(hashes, m, lo, lo + k, complete, out)
    else:
        out.append(_subtree_hash(hashes, lo, lo + k))
        _subproof(hashes, m - k, lo + k, hi, False, out)
