"""RFC 6962 / RFC 9162 Merkle trees: hashes, proofs and their verification.

Pure functions with no storage. Verifiers (agents, privacy officers) call
:func:`verify_inclusion` and :func:`verify_consistency`, which raise
:class:`~exchange.errors.VerificationError` for anything that does not verify. The log
calls :func:`inclusion_proof`, :func:`consistency_proof` and :func:`root` with a
``node(level, index)`` accessor returning the hash of the perfect subtree that covers
leaves ``[index * 2**level, (index + 1) * 2**level)`` — stored, not recomputed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from exchange.errors import VerificationError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
Node = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(start: int, end: int, node: Node) -> bytes:
    """MTH of leaves [start, end), from perfect subtrees (start is aligned to them)."""
    n = end - start
    if n & (n - 1) == 0:  # a perfect subtree
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(_range_hash(start, start + k, node), _range_hash(start + k, end, node))


def root(size: int, node: Node) -> bytes:
    """The root hash of the first ``size`` leaves."""
    if size < 0:
        raise ValueError("size must be >= 0")
    return EMPTY_ROOT if size == 0 else _range_hash(0, size, node)


def inclusion_proof(index: int, size: int, node: Node) -> list[bytes]:
    """RFC 6962 PATH(index, D[size]), leaf side first."""
    if not 0 <= index < size:
        raise ValueError("index must be in [0, size)")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(_range_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(_range_hash(start, start + k, node))
            start += k
    return proof[::-1]


def consistency_proof(size1: int, size2: int, node: Node) -> list[bytes]:
    """RFC 6962 PROOF(size1, D[size2]) for 0 < size1 <= size2."""
    if not 0 < size1 <= size2:
        raise ValueError("sizes must satisfy 0 < size1 <= size2")
    proof: list[bytes] = []

    def subproof(m: int, start: int, end: int, complete: bool) -> None:
        n = end - start
        if m == n:
            if not complete:
                proof.append(_range_hash(start, end, node))
            return
        k = _split(n)
        if m <= k:
            subproof(m, start, start + k, complete)
            proof.append(_range_hash(start + k, end, node))
        else:
            subproof(m - k, start + k, end, False)
            proof.append(_range_hash(start, start + k, node))

    if size1 < size2:
        subproof(size1, 0, size2, True)
    return proof


def _check_hashes(*hashes: bytes) -> None:
    if any(not isinstance(h, bytes) for h in hashes):
        raise TypeError("hashes must be bytes")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 section 2.1.3.2)."""
    _check_hashes(leaf, *proof)
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        raise VerificationError()
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError()
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError()
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     expected_root: bytes) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` with this root."""
    if root_from_inclusion(index, size, leaf, proof) != expected_root:
        raise VerificationError()


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes,
                       root2: bytes) -> None:
    """Check that the tree of size2 with root2 extends the tree of size1 with root1.

    A check from an empty tree proves nothing and is refused, as in RFC 9162.
    """
    _check_hashes(root1, root2, *proof)
    if size1 <= 0 or size2 < size1:
        raise VerificationError()
    if size1 == size2:
        if proof or root1 != root2:
            raise VerificationError()
        return
    if not proof:
        raise VerificationError()
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root starts the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError()
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise VerificationError()


class MemoryTree:
    """An in-memory tree with O(log n) appends, for verifiers and tests."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        self.levels[0].append(leaf)
        level, index = 0, self.size - 1
        while index & 1:
            if len(self.levels) == level + 1:
                self.levels.append([])
            self.levels[level + 1].append(
                node_hash(self.levels[level][index - 1], self.levels[level][index]))
            level, index = level + 1, index >> 1

    def node(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int | None = None) -> bytes:
        return root(self.size if size is None else size, self.node)
