"""RFC 6962 / 9162 Merkle proofs: every transparency-dev vector, and generated trees."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import merkle
from exchange.errors import VerificationError
from tests.conftest import DATA

VECTORS = DATA / "rfc6962-merkle"


def _load(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(json.loads(p.read_text()), id=str(p.relative_to(VECTORS / kind)))
            for p in files]


def _b(value: str) -> bytes:
    return base64.b64decode(value)


INCLUSION, CONSISTENCY = _load("inclusion"), _load("consistency")


def test_all_vectors_are_there() -> None:
    assert len(INCLUSION) == 98 and len(CONSISTENCY) == 98
    happy = [p for p in INCLUSION + CONSISTENCY if not p.values[0]["wantErr"]]
    assert len(happy) == 12


@pytest.mark.parametrize("case", INCLUSION)
def test_inclusion_vector(case: dict[str, Any]) -> None:
    args = (case["leafIdx"], case["treeSize"], _b(case["leafHash"]),
            [_b(p) for p in case["proof"] or []], _b(case["root"]))
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("case", CONSISTENCY)
def test_consistency_vector(case: dict[str, Any]) -> None:
    args = (case["size1"], case["size2"], [_b(p) for p in case["proof"] or []],
            _b(case["root1"]), _b(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH, straight from the definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def _tree(n: int) -> tuple[merkle.MemoryTree, list[bytes]]:
    tree = merkle.MemoryTree()
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(n)]
    for leaf in leaves:
        tree.append(leaf)
    return tree, leaves


def test_the_rfc_6962_reference_tree() -> None:
    # The eight reference leaves behind the vectors (transparency-dev testonly data).
    data = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f"]
    tree = merkle.MemoryTree()
    for d in data:
        tree.append(merkle.leaf_hash(d))
    happy = json.loads((VECTORS / "inclusion" / "1" / "happy-path.json").read_text())
    assert tree.root() == _b(happy["root"])
    assert merkle.inclusion_proof(0, 8, tree.node) == [_b(p) for p in happy["proof"]]


@settings(max_examples=80)
@given(st.integers(1, 70), st.data())
def test_generated_proofs_verify(size: int, data: st.DataObject) -> None:
    tree, leaves = _tree(size)
    assert tree.root() == _reference_root(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(index, size, tree.node)
    merkle.verify_inclusion(index, size, leaves[index], proof, tree.root())
    old = data.draw(st.integers(1, size))
    assert tree.root(old) == _reference_root(leaves[:old])
    merkle.verify_consistency(old, size, merkle.consistency_proof(old, size, tree.node),
                              tree.root(old), tree.root())


@settings(max_examples=80)
@given(st.integers(2, 40), st.data())
def test_any_change_to_a_proof_fails(size: int, data: st.DataObject) -> None:
    tree, leaves = _tree(size)
    old = data.draw(st.integers(1, size - 1))
    proof = merkle.consistency_proof(old, size, tree.node)
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = list(proof)
    bad[which] = bytes(b ^ (1 << (bit % 8)) if i == bit // 8 else b
                       for i, b in enumerate(bad[which]))
    with pytest.raises(VerificationError):
        merkle.verify_consistency(old, size, bad, tree.root(old), tree.root())
    index = data.draw(st.integers(0, size - 1))
    inclusion = merkle.inclusion_proof(index, size, tree.node)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(index, size, leaves[index], inclusion[:-1], tree.root())
    with pytest.raises(VerificationError):
        merkle.verify_inclusion((index + 1) % size, size, leaves[index], inclusion,
                                tree.root())


def test_a_rewritten_history_is_not_consistent() -> None:
    tree, leaves = _tree(10)
    other = merkle.MemoryTree()
    for leaf in [*leaves[:5], merkle.leaf_hash(b"edited"), *leaves[6:]]:
        other.append(leaf)
    proof = merkle.consistency_proof(4, 10, other.node)
    merkle.verify_consistency(4, 10, proof, tree.root(4), other.root())  # before the edit
    with pytest.raises(VerificationError):
        merkle.verify_consistency(6, 10, merkle.consistency_proof(6, 10, other.node),
                                  tree.root(6), other.root())


def test_wrong_usage() -> None:
    tree, _ = _tree(3)
    with pytest.raises(ValueError, match="index"):
        merkle.inclusion_proof(3, 3, tree.node)
    with pytest.raises(ValueError, match="sizes"):
        merkle.consistency_proof(0, 3, tree.node)
    with pytest.raises(TypeError):
        merkle.verify_inclusion(0, 3, "leaf", [], b"")  # type: ignore[arg-type]
    assert merkle.root(0, tree.node) == merkle.EMPTY_ROOT
    assert Path(VECTORS / "LICENSE").exists()
