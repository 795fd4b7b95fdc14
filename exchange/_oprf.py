"""RFC 9497 OPRF and VOPRF for the suite ristretto255-SHA512.

Protocol layer over exchange._group. Callers outside exchange use
exchange.crypto; this module is exercised directly by the known-answer tests.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from enum import IntEnum

from exchange import _group as g

SUITE_ID = b"ristretto255-SHA512"
PROOF_SIZE = 2 * g.SCALAR_SIZE


class Mode(IntEnum):
    OPRF = 0
    VOPRF = 1


class OprfError(ValueError):
    """Invalid input to the protocol (bad element, bad input length, ...)."""


def _lp(data: bytes) -> bytes:
    """Length-prefixed with a 2-byte big-endian length, as in the RFC's transcripts."""
    return g.i2osp(len(data), 2) + data


class Suite:
    """The ristretto255-SHA512 suite in one mode."""

    def __init__(self, mode: Mode) -> None:
        if mode not in (Mode.OPRF, Mode.VOPRF):
            raise ValueError("only modes 0 (OPRF) and 1 (VOPRF) are supported")
        self.mode = mode
        self.context = b"OPRFV1-" + g.i2osp(int(mode), 1) + b"-" + SUITE_ID
        self._h2g_dst = b"HashToGroup-" + self.context
        self._h2s_dst = b"HashToScalar-" + self.context

    # -- keys -------------------------------------------------------------------------
    def derive_key_pair(self, seed: bytes, info: bytes) -> tuple[bytes, bytes]:
        """RFC 9497 section 3.2.1 DeriveKeyPair."""
        if len(seed) != 32:
            raise OprfError("seed must be 32 bytes")
        derive_input = seed + _lp(info)
        dst = b"DeriveKeyPair" + self.context
        for counter in range(256):
            sk = g.hash_to_scalar(derive_input + g.i2osp(counter, 1), dst)
            if not g.is_zero_scalar(sk):
                return sk, g.scalar_mult_base(sk)
        raise OprfError("DeriveKeyPairError")  # pragma: no cover - probability 2^-2000

    @staticmethod
    def public_key(sk: bytes) -> bytes:
        g.check_scalar(sk)
        if g.is_zero_scalar(sk):
            raise OprfError("the private key must not be zero")
        return g.scalar_mult_base(sk)

    # -- client -----------------------------------------------------------------------
    def blind(self, data: bytes, blind: bytes | None = None) -> tuple[bytes, bytes]:
        """Return (blind, blinded_element) for one input."""
        if len(data) > 0xFFFF:
            raise OprfError("input too long")
        r = g.scalar_random() if blind is None else g.check_scalar(blind)
        element = g.hash_to_group(data, self._h2g_dst)
        if element == g.IDENTITY:
            raise OprfError("InvalidInputError")  # pragma: no cover - needs a hash preimage
        return r, g.scalar_mult(r, element)

    def finalize(self, data: bytes, blind: bytes, evaluated: bytes) -> bytes:
        unblinded = g.scalar_mult(g.scalar_invert(blind), g.check_element(evaluated))
        transcript = _lp(data) + _lp(unblinded) + b"Finalize"
        return hashlib.sha512(transcript).digest()

    # -- server -----------------------------------------------------------------------
    @staticmethod
    def blind_evaluate(sk: bytes, blinded: bytes) -> bytes:
        return g.scalar_mult(sk, g.check_element(blinded))

    def evaluate(self, sk: bytes, data: bytes) -> bytes:
        """Full (unblinded) evaluation, as the RFC's Evaluate; used by tests only."""
        element = g.hash_to_group(data, self._h2g_dst)
        transcript = _lp(data) + _lp(g.scalar_mult(sk, element)) + b"Finalize"
        return hashlib.sha512(transcript).digest()

    # -- proofs (VOPRF) ---------------------------------------------------------------
    def _seed(self, b: bytes) -> bytes:
        return hashlib.sha512(_lp(b) + _lp(b"Seed-" + self.context)).digest()

    def _weights(self, b: bytes, cs: Sequence[bytes], ds: Sequence[bytes]) -> list[bytes]:
        if not cs or len(cs) != len(ds) or len(cs) > 0xFFFF:
            raise OprfError("mismatched or empty element lists")
        seed = self._seed(b)
        return [
            g.hash_to_scalar(
                _lp(seed) + g.i2osp(i, 2) + _lp(c) + _lp(d) + b"Composite", self._h2s_dst
            )
            for i, (c, d) in enumerate(zip(cs, ds, strict=True))
        ]

    @staticmethod
    def _combine(weights: Sequence[bytes], elements: Sequence[bytes]) -> bytes:
        acc = b""
        for w, e in zip(weights, elements, strict=True):
            term = g.scalar_mult(w, e)
            acc = term if not acc else g.element_add(acc, term)
        return acc

    def _challenge(self, b: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes) -> bytes:
        transcript = _lp(b) + _lp(m) + _lp(z) + _lp(t2) + _lp(t3) + b"Challenge"
        return g.hash_to_scalar(transcript, self._h2s_dst)

    def generate_proof(
        self,
        sk: bytes,
        pk: bytes,
        blinded: Sequence[bytes],
        evaluated: Sequence[bytes],
        r: bytes | None = None,
    ) -> bytes:
        """One batched DLEQ proof that evaluated[i] = sk * blinded[i] for every i.

        Uses ComputeCompositesFast: the server knows sk, so Z = sk * M.
        """
        weights = self._weights(pk, blinded, evaluated)
        m = self._combine(weights, blinded)
        z = g.scalar_mult(sk, m)
        r = g.scalar_random() if r is None else g.check_scalar(r)
        t2 = g.scalar_mult_base(r)
        t3 = g.scalar_mult(r, m)
        c = self._challenge(pk, m, z, t2, t3)
        s = g.scalar_sub(r, g.scalar_mul(c, sk))
        return c + s

    def verify_proof(
        self, pk: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], proof: bytes
    ) -> bool:
        """VerifyProof with A = G. Any malformed part makes it return False."""
        try:
            if len(proof) != PROOF_SIZE:
                return False
            c = g.check_scalar(proof[: g.SCALAR_SIZE])
            s = g.check_scalar(proof[g.SCALAR_SIZE :])
            for e in (pk, *blinded, *evaluated):
                g.check_element(e)
            weights = self._weights(pk, blinded, evaluated)
            m = self._combine(weights, blinded)
            z = self._combine(weights, evaluated)
            t2 = g.element_add(g.scalar_mult_base(s), g.scalar_mult(c, pk))
            t3 = g.element_add(g.scalar_mult(s, m), g.scalar_mult(c, z))
        except (g.GroupError, OprfError):
            return False
        return hmac.compare_digest(self._challenge(pk, m, z, t2, t3), c)
