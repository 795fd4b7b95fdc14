"""RFC 9497 known-answer tests, suite ristretto255-SHA512, modes OPRF (0) and VOPRF (1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange import _oprf
from tests.conftest import DATA

SUITES: list[dict[str, Any]] = json.loads(
    (DATA / "rfc9497-ristretto255-sha512.json").read_text())


def _hex_list(vector: dict[str, Any], key: str) -> list[bytes]:
    return [bytes.fromhex(x) for x in vector[key].split(",")]


def _cases() -> list[Any]:
    return [
        pytest.param(suite, vector, id=f"mode{suite['mode']}-vector{i}-batch{vector['Batch']}")
        for suite in SUITES
        for i, vector in enumerate(suite["vectors"])
    ]


def test_the_vector_file_covers_both_modes_and_a_batch() -> None:
    assert sorted(s["mode"] for s in SUITES) == [0, 1]
    assert all(s["identifier"] == "ristretto255-SHA512" for s in SUITES)
    assert any(v["Batch"] > 1 for s in SUITES for v in s["vectors"])
    assert len(_cases()) == 5


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: f"mode{s['mode']}")
def test_derive_key_pair_and_context(suite: dict[str, Any]) -> None:
    oprf = _oprf.Suite(_oprf.Mode(suite["mode"]))
    sk, pk = oprf.derive_key_pair(bytes.fromhex(suite["seed"]), bytes.fromhex(suite["keyInfo"]))
    assert sk.hex() == suite["skSm"]
    if "pkSm" in suite:
        assert pk.hex() == suite["pkSm"]
    assert (b"HashToGroup-" + oprf.context).hex() == suite["groupDST"]


@pytest.mark.parametrize(("suite", "vector"), _cases())
def test_vector(suite: dict[str, Any], vector: dict[str, Any]) -> None:
    oprf = _oprf.Suite(_oprf.Mode(suite["mode"]))
    sk = bytes.fromhex(suite["skSm"])
    inputs, blinds = _hex_list(vector, "Input"), _hex_list(vector, "Blind")
    blinded = [oprf.blind(x, b)[1] for x, b in zip(inputs, blinds, strict=True)]
    assert blinded == _hex_list(vector, "BlindedElement")
    evaluated = [oprf.blind_evaluate(sk, b) for b in blinded]
    assert evaluated == _hex_list(vector, "EvaluationElement")
    outputs = [oprf.finalize(x, b, e) for x, b, e in zip(inputs, blinds, evaluated, strict=True)]
    assert outputs == _hex_list(vector, "Output")
    assert [oprf.evaluate(sk, x) for x in inputs] == outputs
    if suite["mode"] == 1:
        pk = bytes.fromhex(suite["pkSm"])
        proof = oprf.generate_proof(sk, pk, blinded, evaluated, bytes.fromhex(vector["Proof"]["r"]))
        assert proof.hex() == vector["Proof"]["proof"]
        assert oprf.verify_proof(pk, blinded, evaluated, proof)


VOPRF = next(s for s in SUITES if s["mode"] == 1)
BATCH = next(v for v in VOPRF["vectors"] if v["Batch"] == 2)
PK = bytes.fromhex(VOPRF["pkSm"])
BLINDED = _hex_list(BATCH, "BlindedElement")
EVALUATED = _hex_list(BATCH, "EvaluationElement")
PROOF = bytes.fromhex(BATCH["Proof"]["proof"])
SUITE = _oprf.Suite(_oprf.Mode.VOPRF)


@given(st.integers(min_value=0, max_value=len(PROOF) * 8 - 1))
def test_any_flipped_proof_bit_is_rejected(bit: int) -> None:
    tampered = bytearray(PROOF)
    tampered[bit // 8] ^= 1 << (bit % 8)
    assert not SUITE.verify_proof(PK, BLINDED, EVALUATED, bytes(tampered))


def test_proof_binds_key_order_and_values() -> None:
    assert SUITE.verify_proof(PK, BLINDED, EVALUATED, PROOF)
    other_pk = SUITE.derive_key_pair(bytes(32), b"other")[1]
    assert not SUITE.verify_proof(other_pk, BLINDED, EVALUATED, PROOF)
    assert not SUITE.verify_proof(PK, BLINDED, EVALUATED[::-1], PROOF)
    assert not SUITE.verify_proof(PK, BLINDED[:1], EVALUATED[:1], PROOF)
    assert not SUITE.verify_proof(PK, BLINDED, EVALUATED, PROOF[:-1])
    assert not SUITE.verify_proof(PK, BLINDED, [EVALUATED[0], bytes(32)], PROOF)
