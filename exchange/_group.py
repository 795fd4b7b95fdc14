"""Hazardous layer: the ristretto255 group and the hash primitives of RFC 9497.

Everything here works on raw bytes and does exactly what the RFCs say. Nothing
outside exchange/ calls it: the rest of the code uses exchange.crypto.

Group operations come from libsodium (rbcl). Hashing follows RFC 9380
expand_message_xmd with SHA-512, as ristretto255-SHA512 in RFC 9497 requires.
"""

from __future__ import annotations

import hashlib
import hmac

import rbcl

ELEMENT_SIZE = 32
SCALAR_SIZE = 32
HASH_SIZE = 64  # SHA-512
_SHA512_BLOCK = 128
# The order of the prime-order group: 2^252 + 27742317777372353535851937790883648493.
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes(ELEMENT_SIZE)


class GroupError(ValueError):
    """A value is not a valid element or scalar, or an operation gave the identity."""


def i2osp(value: int, length: int) -> bytes:
    """RFC 8017 I2OSP: a non-negative integer as big-endian bytes of a fixed length."""
    if value < 0 or value >= 1 << (8 * length):
        raise GroupError("integer out of range for I2OSP")
    return value.to_bytes(length, "big")


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512."""
    ell = -(-length // HASH_SIZE)
    if ell > 255 or length > 65535 or len(dst) > 255:
        raise GroupError("expand_message_xmd parameters out of range")
    dst_prime = dst + i2osp(len(dst), 1)
    z_pad = bytes(_SHA512_BLOCK)
    b0 = hashlib.sha512(z_pad + msg + i2osp(length, 2) + b"\x00" + dst_prime).digest()
    b_prev = hashlib.sha512(b0 + b"\x01" + dst_prime).digest()
    out = [b_prev]
    for i in range(2, ell + 1):
        mixed = bytes(x ^ y for x, y in zip(b0, b_prev, strict=True))
        b_prev = hashlib.sha512(mixed + i2osp(i, 1) + dst_prime).digest()
        out.append(b_prev)
    return b"".join(out)[:length]


def hash_to_group(msg: bytes, dst: bytes) -> bytes:
    """RFC 9497 HashToGroup for ristretto255: hash_to_ristretto255 (RFC 9380)."""
    element: bytes = rbcl.crypto_core_ristretto255_from_hash(
        expand_message_xmd(msg, dst, HASH_SIZE)
    )
    return element


def hash_to_scalar(msg: bytes, dst: bytes) -> bytes:
    """RFC 9497 HashToScalar for ristretto255: 64 uniform bytes reduced mod the order."""
    scalar: bytes = rbcl.crypto_core_ristretto255_scalar_reduce(
        expand_message_xmd(msg, dst, HASH_SIZE)
    )
    return scalar


def check_element(data: bytes) -> bytes:
    """DeserializeElement: a canonical encoding of a non-identity group element."""
    if len(data) != ELEMENT_SIZE or data == IDENTITY:
        raise GroupError("not a valid group element")
    if not rbcl.crypto_core_ristretto255_is_valid_point(data):
        raise GroupError("not a valid group element")
    return data


def check_scalar(data: bytes) -> bytes:
    """DeserializeScalar: a canonical (fully reduced) little-endian scalar."""
    if len(data) != SCALAR_SIZE or int.from_bytes(data, "little") >= GROUP_ORDER:
        raise GroupError("not a canonical scalar")
    return data


def is_zero_scalar(scalar: bytes) -> bool:
    return hmac.compare_digest(scalar, bytes(SCALAR_SIZE))


def scalar_mult(scalar: bytes, element: bytes) -> bytes:
    """scalar * element. Raises GroupError when the result is the identity."""
    try:
        result: bytes = rbcl.crypto_scalarmult_ristretto255(scalar, element)
    except RuntimeError as exc:
        raise GroupError("scalar multiplication gave the identity") from exc
    return result


def scalar_mult_base(scalar: bytes) -> bytes:
    try:
        result: bytes = rbcl.crypto_scalarmult_ristretto255_base(scalar)
    except RuntimeError as exc:
        raise GroupError("scalar multiplication gave the identity") from exc
    return result


def element_add(a: bytes, b: bytes) -> bytes:
    result: bytes = rbcl.crypto_core_ristretto255_add(a, b)
    return result


def scalar_random() -> bytes:
    """A uniformly random non-zero scalar."""
    while True:
        scalar: bytes = rbcl.crypto_core_ristretto255_scalar_random()
        if not is_zero_scalar(scalar):
            return scalar


def scalar_invert(scalar: bytes) -> bytes:
    if is_zero_scalar(scalar):
        raise GroupError("zero has no inverse")
    result: bytes = rbcl.crypto_core_ristretto255_scalar_invert(scalar)
    return result


def scalar_mul(a: bytes, b: bytes) -> bytes:
    result: bytes = rbcl.crypto_core_ristretto255_scalar_mul(a, b)
    return result


def scalar_sub(a: bytes, b: bytes) -> bytes:
    result: bytes = rbcl.crypto_core_ristretto255_scalar_sub(a, b)
    return result
