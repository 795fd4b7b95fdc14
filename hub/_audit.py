"""The access log: every access to the hub, append-only and hash-chained.

Each event is encoded canonically (sorted-key JSON of every column but the hashes);
its leaf hash is the RFC 6962 leaf hash SHA-256(0x00 || canonical), so the same
leaves can later be placed in a Merkle tree. The chain hash links each event to all
before it: chain[i] = SHA-256(chain[i-1] || leaf[i]), chain[-1] = 32 zero bytes.
The single ``audit_head`` row holds the size and the latest chain hash; appending
locks it, so concurrent writers (threads, replicas) produce one sequence.

Events never hold personal data: actors are ids, subjects pseudonymous household
references, details ids of signals, alerts and consents.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange import checkpoint
from exchange.errors import VerificationError
from hub._models import AuditCheckpoint, AuditEvent, AuditHead

ZERO = bytes(32)
ACTIONS = ("create", "read", "update", "delete", "disclose", "search", "deny", "verify")
OUTCOMES = ("success", "denied", "invalid", "failed")
SOURCE_SYSTEM = "samenloop-hub"
# The actor of decisions the hub takes by itself (disclosures, holds).
SYSTEM_ACTOR = ("samenloop-hub", "disclosure-gate", "system")


@dataclass(frozen=True)
class Access:
    """Who is accessing, from where, in which request: the context of every event."""

    organisation_id: str
    user_id: str
    role: str
    request_id: str
    network_address: str = ""
    on_behalf_of: str = ""

    @classmethod
    def system(cls, cause: Access | None = None) -> Access:
        org, user, role = SYSTEM_ACTOR
        return cls(
            organisation_id=org,
            user_id=user,
            role=role,
            request_id=cause.request_id if cause else str(uuid.uuid4()),
            network_address="",
            on_behalf_of=f"{cause.organisation_id}/{cause.user_id}" if cause else "",
        )


@dataclass(frozen=True)
class Event:
    event_type: str
    action: str
    outcome: str = "success"
    # The organisation whose data this concerns; defaults to the acting organisation.
    owner: str | None = None
    subject_ref: str = ""
    basis: str = ""
    reason: str = ""
    purpose: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS or self.outcome not in OUTCOMES:
            raise ValueError("unknown audit action or outcome")


def refusal(event_type: str, action: str, exc: BaseException,
            detail: Mapping[str, Any] | None = None) -> Event:
    """The event that records a refused request: denied, invalid or failed."""
    from exchange.errors import InvalidInput, PermissionDenied, SamenloopError, Unauthenticated
    from exchange.rpc import status_for

    if isinstance(exc, PermissionDenied | Unauthenticated):
        outcome = "denied"
    elif isinstance(exc, InvalidInput):
        outcome = "invalid"
    else:
        outcome = "failed"
    if isinstance(exc, SamenloopError):
        reason = status_for(exc).name.lower()
        subject, detail = exc.subject_ref, {**exc.detail, **(detail or {})}
    else:
        reason, subject, detail = "internal", "", dict(detail or {})
    return Event(event_type, "deny" if outcome == "denied" else action, outcome=outcome,
                 subject_ref=subject, reason=reason, detail=detail)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_HASHED = (
    "seq", "event_id", "occurred_at", "event_type", "action", "outcome", "actor_org",
    "actor_user", "actor_role", "owner_org", "on_behalf_of", "purpose", "subject_ref", "basis",
    "reason", "source_system", "network_address", "request_id", "detail",
)


def canonical(row: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an event: every column but the hashes, in sorted-key JSON."""
    body = {k: row[k] for k in _HASHED}
    body["occurred_at"] = _iso(row["occurred_at"])
    body["v"] = 1
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(row: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(b"\x00" + canonical(row)).digest()


def chain(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(previous + leaf).digest()


def append(session: Session, access: Access, event: Event, at: datetime) -> AuditEvent:
    """Append one event inside the caller's transaction (commit makes both durable)."""
    head = session.execute(
        select(AuditHead).where(AuditHead.id == 1).with_for_update()
    ).scalar_one()
    row: dict[str, Any] = {
        "seq": head.size,
        "event_id": str(uuid.uuid4()),
        "occurred_at": at,
        "event_type": event.event_type,
        "action": event.action,
        "outcome": event.outcome,
        "actor_org": access.organisation_id,
        "actor_user": access.user_id,
        "actor_role": access.role,
        "owner_org": event.owner if event.owner is not None
        else "" if access.role == "system" else access.organisation_id,
        "on_behalf_of": access.on_behalf_of,
        "purpose": event.purpose,
        "subject_ref": event.subject_ref,
        "basis": event.basis,
        "reason": event.reason,
        "source_system": SOURCE_SYSTEM,
        "network_address": access.network_address[:128],
        "request_id": access.request_id,
        "detail": json.dumps(dict(event.detail), sort_keys=True, separators=(",", ":")),
    }
    row["leaf_hash"] = leaf_hash(row)
    row["chain_hash"] = chain(head.chain_hash, row["leaf_hash"])
    entry = AuditEvent(**row)
    session.add(entry)
    head.size += 1
    head.chain_hash = row["chain_hash"]
    session.flush()
    return entry


def head(session: Session) -> tuple[int, bytes]:
    h = session.execute(select(AuditHead).where(AuditHead.id == 1)).scalar_one()
    return h.size, h.chain_hash


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    size: int
    first_bad_index: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None
    checkpoints_checked: int = 0
    signatures_checked: bool = False

    def describe(self) -> str:
        if self.ok:
            signatures = ("their signatures valid" if self.signatures_checked
                          else "signatures NOT checked (give the hub's key)")
            return (
                f"access log verified: {self.size} events, hash chain intact, "
                f"{self.checkpoints_checked} checkpoint(s) consistent, {signatures}"
            )
        event = f" (id {self.first_bad_event_id})" if self.first_bad_event_id else ""
        return (
            f"access log verification FAILED at event #{self.first_bad_index}{event}: "
            f"{self.problem}"
        )


def _walk(rows: Iterator[AuditEvent], wanted: set[int]
          ) -> tuple[VerifyResult | None, int, bytes, dict[int, bytes]]:
    """Check rows in order; return the first failure (or None), the count and chain."""
    chain_at: dict[int, bytes] = {0: ZERO}
    previous, expected = ZERO, 0
    for row in rows:
        if row.seq != expected:
            return VerifyResult(False, expected, expected, None,
                                f"event #{expected} is missing (the next stored event is "
                                f"#{row.seq}, id {row.event_id})"), expected, previous, chain_at
        if leaf_hash(row.as_dict()) != row.leaf_hash:
            return VerifyResult(False, expected, row.seq, row.event_id,
                                "its contents do not match its leaf hash (edited)"
                                ), expected, previous, chain_at
        if chain(previous, row.leaf_hash) != row.chain_hash:
            return VerifyResult(False, expected, row.seq, row.event_id,
                                "the hash chain is broken here (edited, removed or reordered)"
                                ), expected, previous, chain_at
        previous = row.chain_hash
        expected += 1
        if expected in wanted:
            chain_at[expected] = previous
    return None, expected, previous, chain_at


def verify(
    session: Session, *, public_key: bytes | None = None, origin: str | None = None
) -> VerifyResult:
    """Recompute every leaf and chain hash from the rows; name the first bad event.

    Also checks the head row and every stored checkpoint against the recomputed chain
    (and, given the hub's public key, each checkpoint's signature).
    """
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
    result = session.execute(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=2000))
    try:
        failure, expected, previous, chain_at = _walk(
            iter(result.scalars()), {c.size for c in checkpoints})
    finally:
        result.close()
    if failure is not None:
        return failure
    size, stored = head(session)
    if size != expected or stored != previous:
        return VerifyResult(False, expected, min(size, expected), None,
                            f"the log head says {size} events but {expected} verify "
                            "(events removed from the end, or the head was edited)")
    for cp in checkpoints:
        if cp.size > expected or chain_at.get(cp.size) != cp.root_hash:
            return VerifyResult(False, expected, min(cp.size, expected), None,
                                f"the signed checkpoint at size {cp.size} does not match "
                                "the log (history was rewritten)")
        if public_key is not None and origin is not None:
            try:
                signed = checkpoint.verify(cp.note, public_key, origin)
            except VerificationError:
                signed = None
            if signed is None or signed.size != cp.size or signed.root_hash != cp.root_hash:
                return VerifyResult(False, expected, min(cp.size, expected), None,
                                    f"the checkpoint at size {cp.size} has no valid signature")
    return VerifyResult(True, expected, checkpoints_checked=len(checkpoints),
                        signatures_checked=public_key is not None and origin is not None)


def sign_checkpoint(
    session: Session, signer: checkpoint.CheckpointSigner, at: datetime
) -> AuditCheckpoint:
    """Sign the current head; store the note when the size is new."""
    size, root = head(session)
    existing = session.get(AuditCheckpoint, size)
    if existing is not None:
        return existing
    note = signer.sign(checkpoint.Checkpoint(signer.name, size, root, at))
    cp = AuditCheckpoint(size=size, root_hash=root, signed_at=at, note=note)
    session.add(cp)
    session.flush()
    return cp
