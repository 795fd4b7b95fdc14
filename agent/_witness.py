"""Witnessing the hub's access log: what every agent and privacy officer does on contact.

A witness holds the hub's checkpoint key (given, or pinned on first use) and the last
checkpoint it verified. On each contact it fetches the hub's latest signed checkpoint and
a consistency proof from its own: a log that shrank, forked or rewrote history cannot
produce one. Two witnesses compare their checkpoints to catch a hub that shows them
different histories (a split view).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent._client import HubClient
from exchange import checkpoint as notes
from exchange import merkle
from exchange.errors import ConfigError, FailedPrecondition, IntegrityError, VerificationError
from exchange.v1 import audit_pb2

Saved = dict[str, Any]
_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Seen:
    """A verified checkpoint: what a witness keeps."""

    size: int
    root: bytes
    note: str

    def to_json(self) -> Saved:
        return {"size": self.size, "root": base64.b64encode(self.root).decode(),
                "note": self.note}

    @classmethod
    def from_json(cls, data: Saved) -> Seen:
        return cls(int(data["size"]), base64.b64decode(data["root"]), str(data["note"]))


def parse_hub_key(value: str) -> bytes:
    """The hub's checkpoint key as configured: 64 lowercase hex characters."""
    if not _HEX_KEY.fullmatch(value):
        raise ConfigError("the hub key must be 64 lowercase hex characters")
    return bytes.fromhex(value)


def untrusted_log(message: str) -> IntegrityError:
    """The error for a log that failed a check: loud, and telling what to do."""
    return IntegrityError(f"THE HUB'S ACCESS LOG CANNOT BE TRUSTED: {message}. Keep this "
                          "client's state as evidence and report it")


def newest(stored: Seen | None, seen: Seen) -> Seen:
    """The checkpoint to keep when ``seen`` was verified and ``stored`` is already kept.

    What a client keeps only moves forward: a larger stored checkpoint (another process
    sharing the state, or one that contacted the hub later) stays. One of the same size
    with a different root means the hub signed two histories: IntegrityError.
    """
    if stored is None or seen.size > stored.size:
        return seen
    if seen.size == stored.size:
        if seen.root != stored.root:
            raise untrusted_log(f"two signed checkpoints of size {seen.size} have "
                                "different roots (the hub forked its history)")
        return seen
    return stored


class Witness:
    def __init__(self, hub: HubClient, *, origin: str, trusted_key: bytes | None,
                 last: Seen | None, remember: Callable[[bytes, Seen], None],
                 read_only_on_failure: bool = False) -> None:
        self.hub = hub
        self.origin = origin
        self.trusted_key = trusted_key
        self.last = last
        self._remember = remember
        self.read_only_on_failure = read_only_on_failure
        self.notices: list[str] = []
        self.failed = False
        self.latest = ""  # the newest note received, verified or not

    def verify_note(self, note: str, presented_key: bytes) -> notes.Checkpoint:
        """Check a signed note against the trusted (or first-seen) key and the origin."""
        key = self.trusted_key if self.trusted_key is not None else presented_key
        if presented_key != key:
            raise untrusted_log(f"it now signs with key {presented_key.hex()}, not the "
                                f"trusted key {key.hex()}")
        origin = note.split("\n", 1)[0]
        if origin != self.origin:
            raise FailedPrecondition(
                f"the hub signs as origin '{origin}', not '{self.origin}' as configured: set "
                "the origin to the hub's")
        signed = notes.verify(note, key, self.origin)
        self.trusted_key = key  # adopted (on first use) only once its signature verified
        return signed

    def check(self, cp: audit_pb2.Checkpoint) -> notes.Checkpoint:
        """Verify a checkpoint the hub sent and that it extends the last one seen."""
        self.latest = cp.note
        first_use = self.trusted_key is None
        signed = self.verify_note(cp.note, bytes(cp.public_key))
        if signed.size != cp.size or signed.root_hash != cp.root_hash:
            raise untrusted_log("a checkpoint's fields differ from its signed note")
        seen = Seen(signed.size, signed.root_hash, cp.note)
        try:
            self.consistent(self.last, seen)
        except IntegrityError as exc:
            if not self.read_only_on_failure:
                raise
            self.failed = True
            self.notices.append(f"{exc} -- continuing READ-ONLY; nothing was remembered")
            return signed
        key = self.trusted_key
        assert key is not None
        self._remember(key, seen)
        self.last = seen
        if first_use:  # said once the key is kept, so the notice is never premature
            self.notices.append(
                f"pinned the hub's checkpoint key {key.hex()} on first use: compare it with "
                "the key 'samenloop hub serve' prints")
        return signed

    def consistent(self, older: Seen | None, newer: Seen) -> None:
        """Raise IntegrityError unless ``newer`` extends ``older`` (asking the hub's proof)."""
        if older is None or older.size == 0:
            return
        if newer.size < older.size:
            raise untrusted_log(f"it now has {newer.size} events, fewer than the "
                                f"{older.size} this client saw before (the log shrank)")
        if newer.size == older.size:
            if newer.root != older.root:
                raise untrusted_log(f"two signed checkpoints of size {newer.size} have "
                                    "different roots (the hub forked its history)")
            return
        proof = self.hub.call(self.hub.audit.GetConsistencyProof,
                              audit_pb2.GetConsistencyProofRequest(
                                  from_size=older.size, to_size=newer.size))
        try:
            merkle.verify_consistency(older.size, newer.size, list(proof.hashes),
                                      older.root, newer.root)
        except VerificationError:
            raise untrusted_log(f"the log of {newer.size} events does not extend the log "
                                f"of {older.size} events seen before (history was rewritten "
                                "or forked)") from None

    def contact(self) -> notes.Checkpoint:
        """Fetch and check the hub's latest checkpoint: done on every contact."""
        cp = self.hub.call(self.hub.audit.GetCheckpoint, audit_pb2.GetCheckpointRequest())
        return self.check(cp)

    def compare(self, other_note: str) -> tuple[notes.Checkpoint, notes.Checkpoint]:
        """Compare another witness's checkpoint with ours: both must lie on one history."""
        mine = self.contact()
        key = self.trusted_key
        assert key is not None
        try:
            theirs = notes.verify(other_note, key, self.origin)
        except VerificationError:
            raise FailedPrecondition("the other checkpoint is not signed by the hub's "
                                     "trusted key") from None
        pair = sorted([Seen(theirs.size, theirs.root_hash, other_note),
                       Seen(mine.size, mine.root_hash, "")], key=lambda seen: seen.size)
        self.consistent(pair[0], pair[1])
        return mine, theirs
