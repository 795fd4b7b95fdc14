"""The access log: every access to the hub, append-only, in an RFC 6962 Merkle tree.

Each event's leaf hash covers its canonical encoding (exchange.auditlog). Leaves form a
Merkle tree whose perfect-subtree hashes are stored as they complete (``audit_nodes``),
so adding an event costs O(log n) and inclusion and consistency proofs are read from
storage, not recomputed. The single ``audit_head`` row holds the size, the root, the
frontier (the roots of the perfect subtrees making up the tree) and a hash chain over the
leaves, which names the exact event where a sloppy edit starts. Signed checkpoints (C2SP
notes) commit to (size, root, time).

Appending is split in two so that concurrent requests do not queue behind one lock held
until their commit: a request's transaction writes its events to ``audit_queue`` (durable
with the request's own changes, or gone with them); ``integrate`` then moves committed
events into the tree under the head lock, many per transaction, in a single sequence
whatever the number of writers (threads, replicas).

Events never hold personal data: actors are ids, subjects pseudonymous household
references, details ids of signals, alerts and consents.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import String, bindparam, delete, event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from exchange import auditlog, checkpoint, merkle
from exchange.db import insert_rows, one_of, pairs_in
from exchange.errors import VerificationError
from hub._models import (
    AuditCheckpoint,
    AuditEvent,
    AuditHead,
    AuditNode,
    AuditPruned,
    AuditQueued,
    Base,
)

ZERO = bytes(32)
ACTIONS = ("create", "read", "update", "delete", "disclose", "search", "deny", "verify")
OUTCOMES = ("success", "denied", "invalid", "failed")
SOURCE_SYSTEM = "samenloop-hub"
# The law asks five years for access logs in care (NEN 7513); no setting goes below it.
MIN_LOG_RETENTION = timedelta(days=5 * 365 + 1)
# The actor of decisions the hub takes by itself (disclosures, holds).
SYSTEM_ACTOR = ("samenloop-hub", "disclosure-gate", "system")
# The purpose of use (NEN 7513) when an operation names none: what the role is there for.
DEFAULT_PURPOSE = {
    "partner": "care_coordination", "coordinator": "care_coordination",
    "system": "care_coordination", "privacy_officer": "oversight",
    "administrator": "administration", "key_client": "pseudonymisation",
}
T = TypeVar("T")


@dataclass(frozen=True)
class Access:
    """Who is accessing, from where, in which request: the context of every event."""

    organisation_id: str
    user_id: str
    role: str
    request_id: str
    network_address: str = ""
    on_behalf_of: str = ""
    user_name: str = ""

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
            user_name="Samenloop disclosure gate",
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


def chain(previous: bytes, leaf: bytes) -> bytes:
    return hashlib.sha256(previous + leaf).digest()


def _split(frontier: bytes) -> list[bytes]:
    return [frontier[i:i + 32] for i in range(0, len(frontier), 32)]


def _fold(stack: list[bytes]) -> bytes:
    """The root of a tree from its frontier (largest perfect subtree first)."""
    if not stack:
        return merkle.EMPTY_ROOT
    root = stack[-1]
    for left in reversed(stack[:-1]):
        root = merkle.node_hash(left, root)
    return root


_HEAD = AuditHead.__table__
_QUEUE = Base.metadata.tables[AuditQueued.__tablename__]
# Built once: appending runs for every access, and building statements costs more than
# running them.
_LOCK_HEAD = (select(_HEAD.c.size, _HEAD.c.frontier, _HEAD.c.chain_hash)
              .where(_HEAD.c.id == 1).with_for_update())
_READ_HEAD = select(_HEAD.c.size, _HEAD.c.root_hash).where(_HEAD.c.id == 1)
_NEXT_QUEUED = select(_QUEUE.c.id, _QUEUE.c.payload).order_by(_QUEUE.c.id)
_EVENTS = Base.metadata.tables[AuditEvent.__tablename__]
_NODES = Base.metadata.tables[AuditNode.__tablename__]
_UPDATE_HEAD = update(AuditHead).where(AuditHead.id == 1).values(
    size=bindparam("new_size"), frontier=bindparam("new_frontier"),
    root_hash=bindparam("new_root"), chain_hash=bindparam("new_chain"))
# Column lengths of the event's text fields, checked as an event is appended.
_LIMITS: dict[str, int] = {c.name: c.type.length for c in AuditEvent.__table__.columns
                           if isinstance(c.type, String) and c.type.length is not None}
# An event's detail, sorted; the queued payload (read back only by integrate). orjson:
# ten times json's speed, and appending runs for every access.
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _detail_json(detail: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(detail), option=_SORTED).decode()


# Queued events moved into the tree per statement batch (and per lock, see integrate).
INTEGRATE_BATCH = 2000

# Session.info keys: the events this transaction appended and has yet to write; the
# buffer's length when each open savepoint began; whether the session's last commit
# queued events; whether the transaction ending now rolled back.
_PENDING = "samenloop.audit_pending"
_SAVED = "samenloop.audit_savepoints"
_WROTE = "samenloop.audit_wrote"
_ROLLED_BACK = "samenloop.audit_rolled_back"


def _flush(session: Session) -> None:
    pending: list[dict[str, str]] | None = session.info.pop(_PENDING, None)
    if pending:
        insert_rows(session.connection(), _QUEUE, pending)
        session.info[_WROTE] = True


@event.listens_for(Session, "before_commit")
def _write_queue(session: Session) -> None:
    """Queue what a transaction appended, as the outer transaction commits."""
    if session.in_nested_transaction():
        return  # a savepoint is released: the outer transaction writes the log
    _flush(session)


@event.listens_for(Session, "after_transaction_create")
def _remember_at_savepoint(session: Session, transaction: SessionTransaction) -> None:
    """A savepoint starts: remember how many appends precede it, to drop on rollback."""
    if transaction.nested:
        session.info.setdefault(_SAVED, {})[id(transaction)] = len(
            session.info.get(_PENDING, ()))


@event.listens_for(Session, "after_rollback")
def _note_rollback(session: Session) -> None:
    session.info[_ROLLED_BACK] = True


@event.listens_for(Session, "after_transaction_end")
def _end_transaction(session: Session, transaction: SessionTransaction) -> None:
    """A savepoint that rolled back takes its appends with it; a transaction that ends
    without committing leaves nothing behind."""
    if not (transaction.nested or transaction.parent is None):
        return  # a subtransaction (a flush's): its savepoint or outer transaction decides
    rolled_back = session.info.pop(_ROLLED_BACK, False)
    if transaction.nested:
        kept = session.info.get(_SAVED, {}).pop(id(transaction), None)
        if rolled_back and kept is not None:
            del session.info.get(_PENDING, [])[kept:]
    elif transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVED, None)


def append(session: Session, access: Access, event: Event, at: datetime) -> None:
    """Append one event inside the caller's transaction (commit makes both durable).

    The event is queued as the transaction commits, in one multi-row insert with the
    transaction's other events and without locking anything, and joins the Merkle tree
    when the log is next integrated (``integrate``): right after the commit in an
    embedded hub, within the checkpoint interval in a server.
    """
    if at.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    system = access.role == "system"
    owner = (event.owner if event.owner is not None
             else "" if system else access.organisation_id)
    on_behalf_of = access.on_behalf_of
    if system and owner and on_behalf_of.partition("/")[0] != owner:
        # The hub's decision on one organisation's data, caused by another's request:
        # the owner's privacy officer sees the decision, not who elsewhere caused it.
        on_behalf_of = ""
    row: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": auditlog.iso(at),  # canonical form: integrate hashes as is
        "event_type": event.event_type,
        "action": event.action,
        "outcome": event.outcome,
        "actor_org": access.organisation_id,
        "actor_user": access.user_id,
        "actor_name": (access.user_name or access.user_id)[:200],
        "actor_role": access.role,
        "requested": not system,
        "owner_org": owner,
        "on_behalf_of": on_behalf_of[:128],
        "purpose": event.purpose or (
            "oversight" if event.event_type.startswith("audit.")
            else DEFAULT_PURPOSE.get(access.role, "")),
        "subject_ref": event.subject_ref,
        "basis": event.basis,
        "reason": event.reason,
        "source_system": SOURCE_SYSTEM,
        "network_address": access.network_address[:128],
        "request_id": access.request_id,
        "detail": _detail_json(event.detail),
    }
    for name, value in row.items():
        limit = _LIMITS.get(name)
        if limit is not None and len(value) > limit:
            # Refuse here, with the request, not later in integrate, where one bad row
            # would hold up the whole log.
            raise ValueError(f"audit field {name} is longer than {limit}")
    payload = orjson.dumps(row).decode()
    session.info.setdefault(_PENDING, []).append({"payload": payload})


def wrote(session: Session) -> bool:
    """Whether the session's last commit queued events (and forget it)."""
    return bool(session.info.pop(_WROTE, False))


def integrate(session: Session) -> int:
    """Move every queued event into the tree, oldest first; return how many.

    Locks the head row until the caller's transaction ends: one integrator at a time,
    and readers in the same transaction see the tree with every committed event. Each
    event gets the next index, its leaf hash and chain hash; completed subtree hashes
    are stored. Queued rows are deleted by id, so events committed meanwhile wait for
    the next run. Events this transaction appended are queued and moved too.
    """
    if not session.in_nested_transaction():
        # This transaction's own events first (a savepoint's could still roll back).
        _flush(session)
        session.info.pop(_WROTE, None)
    conn = session.connection()
    row = conn.execute(_LOCK_HEAD).one()
    size, chain_hash = int(row.size), bytes(row.chain_hash)
    stack = _split(bytes(row.frontier))
    moved = 0
    while True:
        queued = conn.execute(_NEXT_QUEUED.limit(INTEGRATE_BATCH)).all()
        if not queued:
            break
        events: list[dict[str, Any]] = []
        nodes: list[dict[str, Any]] = []
        for _, payload in queued:
            fields = orjson.loads(payload)
            fields["seq"] = size
            moment = datetime.fromisoformat(fields["occurred_at"])
            if not fields["occurred_at"].endswith("Z"):  # queued by an older hub
                fields["occurred_at"] = auditlog.iso(moment)
            leaf = auditlog.encoded_leaf_hash(fields)
            fields["occurred_at"] = moment
            chain_hash = chain(chain_hash, leaf)
            fields["leaf_hash"], fields["chain_hash"] = leaf, chain_hash
            events.append(fields)
            node, level, index = leaf, 0, size
            while index & 1:
                node = merkle.node_hash(stack.pop(), node)
                level, index = level + 1, index >> 1
                nodes.append({"level": level, "index": index, "hash": node})
            stack.append(node)
            size += 1
        insert_rows(conn, _EVENTS, events)
        insert_rows(conn, _NODES, nodes)
        ids = [qid for qid, _ in queued]
        for start in range(0, len(ids), 500):
            conn.execute(delete(AuditQueued).where(
                one_of(conn, AuditQueued.id, ids[start:start + 500])))
        moved += len(queued)
        if len(queued) < INTEGRATE_BATCH:
            break
    if moved:
        conn.execute(_UPDATE_HEAD, {
            "new_size": size, "new_frontier": b"".join(stack),
            "new_root": _fold(stack), "new_chain": chain_hash})
    return moved


def queued(session: Session) -> int:
    """How many committed events wait to join the tree."""
    return int(session.scalar(select(func.count()).select_from(_QUEUE)) or 0)


def head(session: Session) -> tuple[int, bytes]:
    """(size, Merkle root) of the tree as this transaction sees it."""
    h = session.execute(_READ_HEAD).one()
    return int(h.size), bytes(h.root_hash)


# -- proofs from stored subtree hashes ----------------------------------------------------


def with_nodes(session: Session, compute: Callable[[merkle.Node], T]) -> T:
    """Run a proof computation over stored nodes, fetching them in one pass.

    The computation's path does not depend on hash values, so it runs once with a
    recorder to learn which nodes it needs, then again with the stored ones.
    """
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return ZERO

    compute(record)
    found: dict[tuple[int, int], bytes] = {}
    leaves = sorted(i for lvl, i in wanted if lvl == 0)
    for start in range(0, len(leaves), 500):
        chunk = leaves[start:start + 500]
        found.update(((0, seq), h) for seq, h in session.execute(
            select(AuditEvent.seq, AuditEvent.leaf_hash).where(AuditEvent.seq.in_(chunk))))
    nodes = sorted(wanted - set(found))
    for start in range(0, len(nodes), 500):
        part = nodes[start:start + 500]
        found.update(((lvl, i), h) for lvl, i, h in session.execute(
            select(AuditNode.level, AuditNode.index, AuditNode.hash).where(
                pairs_in(AuditNode.level, AuditNode.index, part))))
    missing = wanted - set(found)
    if missing:
        raise VerificationError(f"the log lacks {len(missing)} stored subtree hash(es)")
    return compute(lambda level, index: found[(level, index)])


def inclusion_proof(session: Session, index: int, size: int) -> tuple[bytes, list[bytes]]:
    """(leaf hash, proof) for event ``index`` in the tree of ``size``."""
    leaf, proof = with_nodes(session, lambda node: (
        node(0, index), merkle.inclusion_proof(index, size, node)))
    return leaf, proof


def consistency_proof(session: Session, size1: int, size2: int) -> list[bytes]:
    return with_nodes(session, lambda node: merkle.consistency_proof(size1, size2, node))


def root_at(session: Session, size: int) -> bytes:
    return with_nodes(session, lambda node: merkle.root(size, node))


# -- offline verification -------------------------------------------------------------------


@dataclass(frozen=True)
class Trusted:
    """A checkpoint the verifier trusts from outside the database: one it saw before."""

    size: int
    root_hash: bytes
    source: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    size: int
    first_bad_index: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None
    checkpoints_checked: int = 0
    signatures_checked: bool = False
    # The trusted checkpoints the log was found to extend, as (size, source).
    anchors: tuple[tuple[int, str], ...] = ()
    # Ranges [first, upto) removed after their retention period, with their leaf hashes kept.
    pruned: tuple[tuple[int, int], ...] = ()
    # Events after the newest signed checkpoint: no signature covers them yet.
    unsigned: int = 0
    # Events committed to the queue but not yet in the tree (see integrate).
    queued: int = 0

    def describe(self) -> str:
        if not self.ok:
            event = f" (id {self.first_bad_event_id})" if self.first_bad_event_id else ""
            return (f"access log verification FAILED at event #{self.first_bad_index}{event}: "
                    f"{self.problem}")
        lines = [f"access log verified: {self.size} events, Merkle tree and hash chain "
                 f"intact, {self.checkpoints_checked} stored checkpoint(s) consistent"]
        lines.append("- checkpoint signatures valid" if self.signatures_checked else
                     "- checkpoint signatures NOT checked: give the hub's key (--hub-key) or "
                     "the state file that pinned it")
        for size, source in self.anchors:
            lines.append(f"- the log extends the checkpoint you trust at size {size} "
                         f"({source})")
        if not self.anchors:
            lines.append("- NO trusted checkpoint: this shows the database agrees with "
                         "itself, not that it holds the history the hub signed; give a "
                         "checkpoint you saw before (--checkpoint, or your state file)")
        for first, upto in self.pruned:
            lines.append(f"- events #{first} to #{upto - 1} were removed after the retention "
                         "period, as logged; their leaf hashes remain")
        if self.unsigned:
            lines.append(f"- the newest {self.unsigned} event(s) are not yet covered by a "
                         "signed checkpoint")
        if self.queued:
            lines.append(f"- {self.queued} newer event(s) wait in the queue to join the tree "
                         "(the hub adds them within its checkpoint interval); nothing covers "
                         "them until then")
        return "\n".join(lines)


def _fail(size: int, index: int, problem: str, event_id: str | None = None) -> VerifyResult:
    return VerifyResult(False, size, index, event_id, problem)

class _Walk:
    """One pass over the stored events: leaves, chain, and roots at checkpoint sizes."""

    def __init__(self, first: int, chain_start: bytes, wanted: set[int]) -> None:
        self.expected = first
        self.previous = chain_start
        self.wanted = wanted
        self.stack: list[bytes] = []
        self.roots: dict[int, bytes] = {}
        self.failure: VerifyResult | None = None

    def feed(self, rows: Iterator[AuditEvent]) -> None:
        for row in rows:
            if row.seq != self.expected:
                self.failure = _fail(self.expected, self.expected,
                                     f"event #{self.expected} is missing (the next stored "
                                     f"event is #{row.seq}, id {row.event_id})")
                return
            if auditlog.leaf_hash(row.as_dict()) != row.leaf_hash:
                self.failure = _fail(self.expected, row.seq, "its contents do not match "
                                     "its leaf hash (edited)", row.event_id)
                return
            if chain(self.previous, row.leaf_hash) != row.chain_hash:
                self.failure = _fail(self.expected, row.seq, "the hash chain is broken "
                                     "here (edited, removed or reordered)", row.event_id)
                return
            self.previous = row.chain_hash
            self.push(row.leaf_hash)

    def push(self, leaf: bytes) -> None:
        node, index = leaf, self.expected
        while index & 1:
            node = merkle.node_hash(self.stack.pop(), node)
            index >>= 1
        self.stack.append(node)
        self.expected += 1
        if self.expected in self.wanted:
            self.roots[self.expected] = _fold(self.stack)


def _pruned_leaves(session: Session, upto: int) -> Iterator[bytes]:
    yield from session.scalars(
        select(AuditNode.hash).where(AuditNode.level == 0, AuditNode.index < upto)
        .order_by(AuditNode.index).execution_options(yield_per=5000))


def _check_nodes(session: Session, size: int) -> VerifyResult | None:
    """Every stored subtree hash equals the hash of its two children, level by level."""
    levels = session.scalars(select(AuditNode.level).where(AuditNode.level > 0)
                             .distinct().order_by(AuditNode.level)).all()
    for level in levels:
        children: dict[int, bytes] = {}
        if level == 1:
            rows = session.execute(select(AuditEvent.seq, AuditEvent.leaf_hash))
            children = dict(rows.all())
            children.update(session.execute(select(AuditNode.index, AuditNode.hash).where(
                AuditNode.level == 0)).all())
        else:
            children = dict(session.execute(select(AuditNode.index, AuditNode.hash).where(
                AuditNode.level == level - 1)).all())
        for index, stored in session.execute(
                select(AuditNode.index, AuditNode.hash).where(AuditNode.level == level)
                .order_by(AuditNode.index)):
            left, right = children.get(2 * index), children.get(2 * index + 1)
            first = index << level
            if left is None or right is None or merkle.node_hash(left, right) != stored:
                return _fail(size, first, f"the stored subtree hash over events #{first} to "
                             f"#{first + (1 << level) - 1} is wrong (the tree was edited)")
    return None


def _prune_event(session: Session, first: int, upto: int) -> AuditEvent | None:
    """The logged audit.prune event that removed events [first, upto), if it is kept."""
    for row in session.scalars(select(AuditEvent).where(
            AuditEvent.event_type == "audit.prune", AuditEvent.seq >= upto)):
        try:
            detail = json.loads(row.detail)
        except ValueError:
            continue
        if isinstance(detail, dict) and (detail.get("first"), detail.get("upto")) == (
                first, upto):
            return row
    return None


def _check_pruned(session: Session, size: int, ranges: list[AuditPruned],
                  signed_at: Mapping[int, datetime]) -> VerifyResult | None:
    """Each removed range ends at a signed checkpoint at least five years older than its
    removal, and the newest removal is itself in the log."""
    previous = 0
    for number, pruned in enumerate(ranges):
        first, upto = pruned.first, pruned.upto
        if first != previous:
            return _fail(size, previous, f"events #{previous} to #{first - 1} are gone "
                         "without a record of their removal")
        previous = upto
        if upto not in signed_at:
            return _fail(size, first, f"events #{first} to #{upto - 1} were removed, but no "
                         f"signed checkpoint at size {upto} fixes what they were")
        event = _prune_event(session, first, upto)
        if event is None and number == len(ranges) - 1:
            return _fail(size, first, f"events #{first} to #{upto - 1} were removed without "
                         "an audit.prune event in the log")
        removed = event.occurred_at if event is not None else pruned.pruned_at
        if signed_at[upto] + MIN_LOG_RETENTION > removed:
            return _fail(size, first, f"events #{first} to #{upto - 1} were removed on "
                         f"{removed.date()}, before their retention period ended (their "
                         f"checkpoint was signed on {signed_at[upto].date()})")
    return None


def _range_message(size: int, good: int, what: str) -> str:
    return (f"{what} (history was rewritten: the log still matches the checkpoint at size "
            f"{good}, so the change lies in events #{good} to #{size - 1})")


def verify(
    session: Session, *, public_key: bytes | None = None, origin: str | None = None,
    trusted: Sequence[Trusted] = (),
) -> VerifyResult:
    """Recompute every leaf, the chain, the tree and its root; name the first bad event.

    Also checks the head row, every stored checkpoint and every ``trusted`` checkpoint
    (seen outside the database) against the recomputed tree, each checkpoint's signature
    given the hub's public key, and that removed events were removed by the retention
    rule. Run it in a snapshot (exchange.db.snapshot): it reads in several statements.
    """
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
    ranges = list(session.scalars(select(AuditPruned).order_by(AuditPruned.upto)))
    wanted = {c.size for c in checkpoints} | {t.size for t in trusted}
    walk = _Walk(0, ZERO, wanted)
    if ranges:
        upto = ranges[-1].upto
        for leaf in _pruned_leaves(session, upto):
            walk.push(leaf)
        if walk.expected != upto:
            return _fail(walk.expected, walk.expected, "the leaf hashes kept for the pruned "
                         f"events stop at #{walk.expected}, not #{upto}")
        walk.previous = ranges[-1].chain_hash
    result = session.execute(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=2000))
    try:
        walk.feed(iter(result.scalars()))
    finally:
        result.close()
    if walk.failure is not None:
        return walk.failure
    expected = walk.expected
    stored = session.execute(select(_HEAD).where(_HEAD.c.id == 1)).one()
    if stored.size != expected or stored.chain_hash != walk.previous:
        return _fail(expected, min(stored.size, expected),
                     f"the log head says {stored.size} events but {expected} verify (events "
                     "removed from the end, or the head was edited)")
    if stored.root_hash != _fold(walk.stack) or stored.frontier != b"".join(walk.stack):
        return _fail(expected, expected, "the log head's Merkle root does not match its events")
    failure = _check_nodes(session, expected)
    if failure is not None:
        return failure
    # Every checkpoint, stored or trusted, smallest first: a mismatch is reported with
    # the largest one below it that still matches.
    good = 0
    signed_at: dict[int, datetime] = {}
    claims = sorted([(c.size, 1, c) for c in checkpoints] + [(t.size, 0, t) for t in trusted],
                    key=lambda claim: (claim[0], claim[1]))
    for size, _, claim in claims:
        root = claim.root_hash
        label = (f"the signed checkpoint at size {size} stored in the database"
                 if isinstance(claim, AuditCheckpoint)
                 else f"the checkpoint you trust at size {size} ({claim.source})")
        if size > expected:
            return _fail(expected, expected, f"{label} covers more events than the "
                         f"{expected} in the database (events were removed from the end)")
        if walk.roots.get(size, merkle.EMPTY_ROOT) != root:
            return _fail(expected, good, _range_message(size, good,
                                                        f"{label} does not match the log"))
        if isinstance(claim, AuditCheckpoint):
            signed_at[size] = claim.signed_at
            if public_key is not None and origin is not None:
                try:
                    note = checkpoint.verify(claim.note, public_key, origin)
                except VerificationError:
                    note = None
                if note is None or note.size != size or note.root_hash != root:
                    return _fail(expected, good, _range_message(
                        size, good, f"{label} has no valid signature"))
                signed_at[size] = note.time
        good = size
    failure = _check_pruned(session, expected, ranges, signed_at)
    if failure is not None:
        return failure
    newest = max(signed_at, default=0)
    return VerifyResult(
        True, expected, checkpoints_checked=len(checkpoints),
        signatures_checked=public_key is not None and origin is not None,
        anchors=tuple((t.size, t.source) for t in sorted(trusted, key=lambda t: t.size)),
        pruned=tuple((r.first, r.upto) for r in ranges), unsigned=expected - newest,
        queued=queued(session))


# -- checkpoints --------------------------------------------------------------------------


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc())
                          .limit(1))


def sign_checkpoint(
    session: Session, signer: checkpoint.CheckpointSigner, at: datetime
) -> AuditCheckpoint:
    """Integrate the queue and sign the head; store the note when the size is new."""
    integrate(session)
    size, root = head(session)
    existing = session.get(AuditCheckpoint, size)
    if existing is not None:
        return existing
    note = signer.sign(checkpoint.Checkpoint(signer.name, size, root, at))
    cp = AuditCheckpoint(size=size, root_hash=root, signed_at=at, note=note)
    session.add(cp)
    session.flush()
    return cp


def unsigned_events(session: Session) -> int:
    """How many events the newest checkpoint does not cover yet."""
    size, _ = head(session)
    signed = session.scalar(select(func.max(AuditCheckpoint.size))) or 0
    return size - signed
