"""Signed checkpoints of the access log, in the C2SP signed-note format.

A checkpoint commits to the log's size and root hash at a time::

    <origin>
    <size>
    <base64 root hash>
    time <RFC 3339 UTC>

    — <origin> <base64(key id || Ed25519 signature)>

The key id is the first 4 bytes of SHA-256(name || 0x0A || 0x01 || public key), as
C2SP prescribes for Ed25519. Parties keep the notes they saw and verify new ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exchange._files import write_secret
from exchange.errors import VerificationError

_DASH = "\u2014"
_SIZE = re.compile(r"^(0|[1-9][0-9]{0,19})$")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    time: datetime

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or " " in self.origin:
            raise ValueError("origin must be one word on one line")
        if self.size < 0 or len(self.root_hash) != 32:
            raise ValueError("size must be >= 0 and root_hash 32 bytes")
        if self.time.tzinfo is None:
            raise ValueError("time must be timezone-aware")

    def body(self) -> str:
        stamp = self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        root = base64.b64encode(self.root_hash).decode()
        return f"{self.origin}\n{self.size}\n{root}\ntime {stamp}\n"


def _key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


class CheckpointSigner:
    """The hub's Ed25519 checkpoint key."""

    __slots__ = ("_key", "name")

    def __init__(self, key: Ed25519PrivateKey, name: str) -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("expected an Ed25519PrivateKey")
        self._key = key
        self.name = name

    @classmethod
    def load_or_create(cls, path: Path, name: str) -> CheckpointSigner:
        """Load the PEM key at path, creating it (mode 0600) when it does not exist."""
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            write_secret(path, pem)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(loaded, name)

    @property
    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes_raw()

    def sign(self, checkpoint: Checkpoint) -> str:
        body = checkpoint.body()
        signature = self._key.sign(body.encode())
        blob = base64.b64encode(_key_id(self.name, self.public_key) + signature).decode()
        return f"{body}\n{_DASH} {self.name} {blob}\n"


def verify(note: str, public_key: bytes, name: str) -> Checkpoint:
    """Verify a signed checkpoint note and return what it commits to.

    Raises VerificationError, without detail, for anything that does not verify.
    """
    try:
        body, _, signatures = note.partition("\n\n")
        body += "\n"
        key = Ed25519PublicKey.from_public_bytes(public_key)
        want_id = _key_id(name, public_key)
        for line in signatures.splitlines():
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != _DASH or parts[1] != name:
                continue
            blob = _b64(parts[2])
            if blob[:4] != want_id:
                continue
            key.verify(blob[4:], body.encode())
            return _parse_body(body)
    except (ValueError, InvalidSignature, binascii.Error):
        pass
    raise VerificationError()


def _b64(text: str) -> bytes:
    """Strict base64: only the canonical spelling (unused low bits of the last character
    must be zero), so no one can change a signed note's text and keep its signature."""
    data = base64.b64decode(text, validate=True)
    if base64.b64encode(data).decode() != text:
        raise ValueError("not canonical base64")
    return data


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 5 or not _SIZE.fullmatch(lines[1]) or not lines[3].startswith("time "):
        raise ValueError("malformed checkpoint body")
    time = datetime.strptime(lines[3][5:], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return Checkpoint(
        origin=lines[0],
        size=int(lines[1]),
        root_hash=_b64(lines[2]),
        time=time,
    )
