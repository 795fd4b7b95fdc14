"""The safe cryptographic surface of Samenloop.

Three jobs, each a few calls:

* **Pseudonyms** (RFC 9497 VOPRF, ristretto255-SHA512). The agent calls
  :func:`pseudonymise` with the key service's published public key and a function
  that sends blinded elements to the key service; the key service holds an
  :class:`OprfKey`. Nobody else ever sees the key; the key service never sees an input.
* **Envelopes** (RFC 9180 HPKE, X25519 / HKDF-SHA256 / ChaCha20-Poly1305). The agent
  :func:`seal` s a household's identity to a coordinator's public key; the coordinator
  :func:`open` s it with its :class:`EnvelopeKey`.
* **Fingerprints** of public keys, to name keys without showing them.

Every failed proof check or decryption raises :class:`~exchange.errors.VerificationError`
with no detail. Wrong usage (wrong types, sizes) raises ``TypeError`` / ``ValueError``.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from exchange import _group, _oprf
from exchange._files import write_secret
from exchange.errors import InvalidInput, VerificationError

__all__ = [
    "ENVELOPE_SCHEME",
    "MAX_BATCH",
    "OPRF_SUITE",
    "PSEUDONYM_SIZE",
    "EnvelopeKey",
    "Evaluator",
    "KeyKind",
    "OprfKey",
    "fingerprint",
    "key_id",
    "open",
    "pseudonymise",
    "seal",
]

OPRF_SUITE = "ristretto255-SHA512"
PSEUDONYM_SIZE = 32
MAX_BATCH = 1024
ENVELOPE_SCHEME = "HPKE-v1/X25519-HKDF-SHA256/ChaCha20Poly1305"
_VOPRF = _oprf.Suite(_oprf.Mode.VOPRF)
_HPKE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_INPUT_PREFIX = b"samenloop/v1/oprf-input"


class KeyKind(enum.IntEnum):
    """What a pseudonym stands for. Values equal the contract's KeyKind numbers."""

    PERSON = 1
    ADDRESS = 2
    # A household member named in a signal: the member's person key (same OPRF input).
    MEMBER = 3
    # Fuzzy-linkage tokens (exchange.linkage): MinHash bands of given names and of the
    # surname (one OPRF domain, so a swapped name still meets its bands), the date of
    # birth, and the date of birth with one part left out or day and month swapped.
    GIVEN_BAND = 4
    SURNAME_BAND = 5
    BIRTH_DATE = 6
    BIRTH_NEAR = 7
    # The first initial with the surname, and with the building: agrees when one side
    # knows only initials.
    INITIAL_SURNAME = 8
    # Blocking tokens: exact combinations of parts of name and birth date; two signals
    # sharing one are compared, nothing more (a token alone links nothing).
    BLOCK = 9
    # The building (postcode and house number, without the addition); a hub of token
    # scheme 3 compares signals in one building, as with a blocking token.
    BUILDING = 10
    # Sex with the first initial and surname or building, or with the date of birth:
    # tells father and daughter, and twins, apart.
    SEX = 11
    # The first given name and each way of leaving one of its letters out (token scheme
    # 4): names one typo apart share one, where MinHash bands may by chance share few.
    GIVEN_EDIT = 12


_KIND_LABELS = {
    KeyKind.PERSON: b"person/bsn", KeyKind.MEMBER: b"person/bsn",
    KeyKind.ADDRESS: b"address/nl",
    KeyKind.GIVEN_BAND: b"name/band", KeyKind.SURNAME_BAND: b"name/band",
    KeyKind.BIRTH_DATE: b"birth/date", KeyKind.BIRTH_NEAR: b"birth/near",
    KeyKind.INITIAL_SURNAME: b"name/initial", KeyKind.BLOCK: b"name/block",
    KeyKind.BUILDING: b"address/building", KeyKind.SEX: b"name/sex",
    KeyKind.GIVEN_EDIT: b"name/edit",
}

# Sends blinded elements to the key service; returns (evaluated elements, proof).
Evaluator = Callable[[Sequence[bytes]], tuple[Sequence[bytes], bytes]]


def _oprf_input(kind: KeyKind, value: bytes) -> bytes:
    """Domain-separated OPRF input: a BSN and an address with equal bytes differ here."""
    label = _KIND_LABELS[KeyKind(kind)]
    return _INPUT_PREFIX + bytes([len(label)]) + label + value


def fingerprint(public_key: bytes) -> bytes:
    """First 16 bytes of SHA-256 over a raw public key."""
    return hashlib.sha256(public_key).digest()[:16]


def key_id(public_key: bytes) -> str:
    """Short printable id of an OPRF public key."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def pseudonymise(
    items: Sequence[tuple[KeyKind, bytes]],
    *,
    public_key: bytes,
    evaluate: Evaluator,
    batch_size: int = 256,
) -> list[bytes]:
    """Turn (kind, normalised value) pairs into pseudonyms through the key service.

    Blinds every input, asks ``evaluate`` for one batch at a time, verifies the batch's
    DLEQ proof against ``public_key`` and unblinds. A proof that fails raises
    VerificationError and no pseudonym of that call is returned.
    """
    if not isinstance(public_key, bytes) or len(public_key) != _group.ELEMENT_SIZE:
        raise ValueError("public_key must be 32 bytes")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
    try:
        _group.check_element(public_key)
    except _group.GroupError as exc:
        raise ValueError("public_key is not a valid ristretto255 element") from exc
    inputs = []
    for kind, value in items:
        if not isinstance(value, bytes) or not value:
            raise ValueError("each value must be non-empty bytes")
        inputs.append(_oprf_input(kind, value))
    out: list[bytes] = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        blinds, blinded = zip(*(_VOPRF.blind(x) for x in chunk), strict=True)
        evaluated, proof = evaluate(list(blinded))
        evaluated = list(evaluated)
        if len(evaluated) != len(chunk) or not _VOPRF.verify_proof(
            public_key, blinded, evaluated, proof
        ):
            raise VerificationError()
        try:
            out.extend(
                _VOPRF.finalize(x, b, e)[:PSEUDONYM_SIZE]
                for x, b, e in zip(chunk, blinds, evaluated, strict=True)
            )
        except _group.GroupError as exc:  # pragma: no cover - excluded by the proof check
            raise VerificationError() from exc
    return out


class OprfKey:
    """The key service's OPRF private key. It never leaves the key service."""

    __slots__ = ("_sk", "public_key")

    def __init__(self, private_bytes: bytes) -> None:
        if not isinstance(private_bytes, bytes):
            raise TypeError("private key must be bytes")
        try:
            self.public_key = _VOPRF.public_key(private_bytes)
        except (_group.GroupError, _oprf.OprfError) as exc:
            raise ValueError("not a valid OPRF private key") from exc
        self._sk = private_bytes

    @classmethod
    def generate(cls) -> OprfKey:
        return cls(_VOPRF.derive_key_pair(os.urandom(32), b"samenloop/v1 oprf key")[0])

    @classmethod
    def load(cls, path: Path) -> OprfKey:
        raw = path.read_bytes()
        try:
            return cls(bytes.fromhex(raw.decode("ascii").strip()))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{path} does not hold an OPRF private key") from exc

    def save(self, path: Path) -> None:
        """Write the key as hex, readable by the owner only; never overwrite a key."""
        write_secret(path, (self._sk.hex() + "\n").encode())

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def evaluate(self, blinded: Sequence[bytes]) -> tuple[list[bytes], bytes]:
        """Evaluate blinded elements and prove it with one batched DLEQ proof.

        Raises InvalidInput for an empty, oversized or malformed batch.
        """
        if not 1 <= len(blinded) <= MAX_BATCH:
            raise InvalidInput(f"a batch holds 1 to {MAX_BATCH} blinded elements")
        try:
            evaluated = [_VOPRF.blind_evaluate(self._sk, b) for b in blinded]
        except _group.GroupError as exc:
            raise InvalidInput("a blinded element is not a valid ristretto255 element") from exc
        return evaluated, _VOPRF.generate_proof(self._sk, self.public_key, blinded, evaluated)

    def __repr__(self) -> str:
        return f"OprfKey(key_id={self.key_id})"


def seal(plaintext: bytes, recipient_public_key: bytes, context: bytes) -> bytes:
    """HPKE base-mode seal to a raw X25519 public key, bound to ``context``."""
    if not isinstance(plaintext, bytes) or not isinstance(context, bytes):
        raise TypeError("plaintext and context must be bytes")
    try:
        public = X25519PublicKey.from_public_bytes(recipient_public_key)
    except ValueError as exc:
        raise ValueError("recipient public key must be 32 raw X25519 bytes") from exc
    return _HPKE.encrypt(plaintext, public, info=context)


def open(sealed: bytes, key: EnvelopeKey, context: bytes) -> bytes:  # noqa: A001 - the recipe's name
    """Open an envelope sealed with :func:`seal`. Any failure is VerificationError."""
    if not isinstance(key, EnvelopeKey):
        raise TypeError("key must be an EnvelopeKey")
    try:
        return _HPKE.decrypt(sealed, key._private, info=context)
    except (InvalidTag, ValueError) as exc:
        raise VerificationError() from exc


class EnvelopeKey:
    """A coordinator's X25519 key pair for opening envelopes."""

    __slots__ = ("_private",)

    def __init__(self, private: X25519PrivateKey) -> None:
        if not isinstance(private, X25519PrivateKey):
            raise TypeError("expected an X25519PrivateKey")
        self._private = private

    @classmethod
    def generate(cls) -> EnvelopeKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> EnvelopeKey:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise ValueError(f"{path} does not hold a PEM private key") from exc
        if not isinstance(key, X25519PrivateKey):
            raise ValueError(f"{path} does not hold an X25519 private key")
        return cls(key)

    def save(self, path: Path) -> None:
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_secret(path, pem)

    @property
    def public_key(self) -> bytes:
        return self._private.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return f"EnvelopeKey(fingerprint={fingerprint(self.public_key).hex()})"
