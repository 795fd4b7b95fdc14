"""The access log's operations: queries, checkpoints, proofs and the privacy officer's tools.

A mixin of hub._core.Hub. Visibility is one rule everywhere: administrators and privacy
officers of an oversight organisation see every event; a partner's privacy officer sees
the events their organisation acted in or that concern its data (``owner_org``).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, and_, delete, false, func, insert, literal, or_, select
from sqlalchemy.orm import Session

import consent
from exchange import checkpoint, merkle
from exchange.db import pairs_in, snapshot
from exchange.errors import FailedPrecondition, InvalidInput
from hub import _audit, _linkage, _matching
from hub._models import (
    AuditCheckpoint,
    AuditEvent,
    AuditNode,
    AuditPruned,
    Household,
    Organisation,
    Signal,
    SignalKey,
)

SUPPRESS_BELOW = 5
ROUND_TO = 5
MEDIAN_FROM = 10
S = TypeVar("S", bound=Select[Any])


@dataclass(frozen=True)
class AuditFilter:
    subject_ref: str = ""
    organisation_id: str = ""
    actor_user_id: str = ""
    event_type: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ProvenEvent:
    event: AuditEvent
    leaf_hash: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class EventPage:
    events: list[AuditEvent]
    next_page_token: str
    # With proofs: one per event, against the checkpoint.
    proven: list[ProvenEvent]
    checkpoint: AuditCheckpoint | None


@dataclass(frozen=True)
class SubjectAccess:
    signals: int
    disclosures: list[ProvenEvent]
    checkpoint: AuditCheckpoint
    households: list[str]
    # Indexes of the disclosures that name one of the person's own signals.
    naming_person: set[int]


class LogOperations:
    """Mixed into Hub, which provides the members declared here."""

    oversight: frozenset[str]
    log_retention: timedelta
    _signer: checkpoint.CheckpointSigner
    _engine: Engine

    def _tx(self) -> AbstractContextManager[tuple[Session, _matching.Changes]]:
        raise NotImplementedError  # pragma: no cover - Hub implements it

    def now(self) -> datetime:
        raise NotImplementedError  # pragma: no cover

    @property
    def origin(self) -> str:
        raise NotImplementedError  # pragma: no cover

    @staticmethod
    def _require_org(s: Session, access: _audit.Access) -> Organisation:
        raise NotImplementedError  # pragma: no cover

    def _covenants(self, s: Session) -> list[consent.Covenant]:
        raise NotImplementedError  # pragma: no cover

    # -- visibility -------------------------------------------------------------------

    def sees_everything(self, access: _audit.Access) -> bool:
        return access.role == "administrator" or access.organisation_id in self.oversight

    def _visible(self, access: _audit.Access, stmt: S) -> S:
        if self.sees_everything(access):
            return stmt
        mine = access.organisation_id
        return stmt.where(or_(AuditEvent.actor_org == mine, AuditEvent.owner_org == mine))

    # -- queries ----------------------------------------------------------------------

    def query_events(self, access: _audit.Access, flt: AuditFilter, page_size: int,
                     page_token: str, *, newest_first: bool = False,
                     with_proofs: bool = False) -> EventPage:
        """Events visible to the caller, oldest (or newest) first, one page; with proofs,
        each proven to be in the tree of the newest checkpoint that covers the page."""
        with self._tx() as (s, _):
            self._require_org(s, access)
            _audit.integrate(s)
            now = self.now()
            order = AuditEvent.seq.desc() if newest_first else AuditEvent.seq
            stmt = self._visible(access, select(AuditEvent).order_by(order)
                                 .limit(page_size + 1))
            if flt.organisation_id:
                stmt = stmt.where(or_(AuditEvent.actor_org == flt.organisation_id,
                                      AuditEvent.owner_org == flt.organisation_id))
            for column, value in (
                (AuditEvent.subject_ref, flt.subject_ref),
                (AuditEvent.actor_user, flt.actor_user_id),
                (AuditEvent.event_type, flt.event_type),
                (AuditEvent.action, flt.action),
                (AuditEvent.outcome, flt.outcome),
            ):
                if value:
                    stmt = stmt.where(column == value)
            if flt.since is not None:
                stmt = stmt.where(AuditEvent.occurred_at >= flt.since)
            if flt.until is not None:
                stmt = stmt.where(AuditEvent.occurred_at < flt.until)
            if page_token:
                if not (page_token.isascii() and page_token.isdigit() and len(page_token) < 19):
                    raise InvalidInput("page_token is not valid")
                after = int(page_token)
                stmt = stmt.where(AuditEvent.seq < after if newest_first
                                  else AuditEvent.seq > after)
            rows = list(s.scalars(stmt))
            more = len(rows) > page_size
            rows = rows[:page_size]
            proven: list[ProvenEvent] = []
            cp = None
            if with_proofs:
                cp = _audit.latest_checkpoint(s)
                if cp is None or any(row.seq >= cp.size for row in rows):
                    cp = _audit.sign_checkpoint(s, self._signer, now)
                proven = _prove(s, rows, cp.size)
            detail = {k: v.isoformat() if isinstance(v, datetime) else v
                      for k, v in flt.__dict__.items() if v}
            detail["returned"] = len(rows)
            _audit.append(s, access, _audit.Event("audit.query", "search", detail=detail), now)
            return EventPage(rows, str(rows[-1].seq) if more else "", proven, cp)

    # -- checkpoints and proofs -------------------------------------------------------

    def integrate(self) -> int:
        """Add the events committed since the last run to the Merkle tree."""
        with self._tx() as (s, _):
            return _audit.integrate(s)

    def checkpoint(self, access: _audit.Access) -> AuditCheckpoint:
        with self._tx() as (s, _):
            now = self.now()
            _audit.append(s, access, _audit.Event("audit.checkpoint", "read"), now)
            return _audit.sign_checkpoint(s, self._signer, now)

    def sign_if_due(self) -> AuditCheckpoint | None:
        """Add queued events to the tree, and sign a checkpoint when it grew since the
        last one."""
        with self._tx() as (s, _):
            _audit.integrate(s)
            if _audit.unsigned_events(s) <= 0:
                return None
            return _audit.sign_checkpoint(s, self._signer, self.now())

    def _check_sizes(self, s: Session, *sizes: int) -> int:
        _audit.integrate(s)
        size, _ = _audit.head(s)
        if any(not 0 < n <= size for n in sizes):
            raise InvalidInput(f"tree sizes must be between 1 and the log's size ({size})")
        return size

    def inclusion_proof(self, access: _audit.Access, index: int,
                        tree_size: int) -> tuple[bytes, list[bytes]]:
        with self._tx() as (s, _):
            self._check_sizes(s, tree_size)
            if not 0 <= index < tree_size:
                raise InvalidInput("index must be below tree_size")
            proof = _audit.inclusion_proof(s, index, tree_size)
            _audit.append(s, access, _audit.Event(
                "audit.proof", "read", detail={"index": index, "tree_size": tree_size}),
                self.now())
            return proof

    def consistency_proof(self, access: _audit.Access, from_size: int,
                          to_size: int) -> list[bytes]:
        with self._tx() as (s, _):
            self._check_sizes(s, from_size, to_size)
            if from_size > to_size:
                raise InvalidInput("from_size must not exceed to_size")
            proof = _audit.consistency_proof(s, from_size, to_size)
            _audit.append(s, access, _audit.Event(
                "audit.consistency", "read", detail={"from": from_size, "to": to_size}),
                self.now())
            return proof

    def verify(self, access: _audit.Access) -> tuple[_audit.VerifyResult, AuditCheckpoint]:
        self.integrate()
        with snapshot(self._engine) as s:
            result = _audit.verify(s, public_key=self._signer.public_key, origin=self.origin)
        with self._tx() as (s, _):
            now = self.now()
            _audit.append(s, access, _audit.Event(
                "audit.verify", "verify", outcome="success" if result.ok else "failed",
                reason="" if result.ok else "log_inconsistent",
                detail={"size": result.size}), now)
            return result, _audit.sign_checkpoint(s, self._signer, now)

    # -- the privacy officer's tools --------------------------------------------------

    def subject_access(self, access: _audit.Access,
                       keys: frozenset[tuple[int, bytes]]) -> SubjectAccess:
        """Every disclosure about a person the caller may see, each with a proof.

        A person is found by their person keys, among the signals the caller may see (a
        partner's officer: their organisation's). Returned are the disclosures that name
        one of those signals, withdrawn ones included, and those of the households the
        signals are or were in (through merges and splits): telling a coordinator who is
        involved with a household is data about everyone in it.
        """
        with self._tx() as (s, _):
            self._require_org(s, access)
            _audit.integrate(s)
            now = self.now()
            own = () if self.sees_everything(access) else (
                Signal.organisation_id == access.organisation_id,)
            rows = {(sid, household) for sid, household in _linkage.among(
                s, select(Signal.id, Signal.household_id),
                _linkage.keyed(s, pairs_in(SignalKey.kind, SignalKey.value, keys)), *own)}
            signal_ids = sorted({sid for sid, _ in rows})
            households = _with_history(s, {h for _, h in rows if h})
            events: list[AuditEvent] = []
            if signal_ids:
                events = list(s.scalars(self._visible(access, select(AuditEvent).where(
                    AuditEvent.action == "disclose",
                    or_(_about(households),
                        *(AuditEvent.detail.contains(f'"{sid}"') for sid in signal_ids)),
                ).order_by(AuditEvent.seq))))
            _audit.append(s, access, _audit.Event(
                "audit.subject_access", "search", purpose="gdpr_art15",
                detail={"signals": len(signal_ids), "disclosures": len(events)}), now)
            cp = _audit.sign_checkpoint(s, self._signer, now)
            direct = {e.seq for e in events if any(f'"{sid}"' in e.detail for sid in signal_ids)}
            return SubjectAccess(len(signal_ids), _prove(s, events, cp.size), cp,
                                 sorted(households), direct)

    def report(self, access: _audit.Access, since: datetime,
               until: datetime) -> tuple[str, list[tuple[str, str, str]]]:
        """Aggregate figures for whole calendar months, safe to publish.

        Counts below the threshold show as "<5", larger ones are rounded to a multiple of
        5, and the median time to contact needs 10 alerts: differences between two
        reports cannot single out a household or a professional.
        """
        for name, moment in (("since", since), ("until", until)):
            if (moment.astimezone(UTC).day, moment.astimezone(UTC).time()) != (1, time()):
                raise InvalidInput(f"{name} must be the first day of a month, 00:00 UTC: "
                                   "reports cover whole calendar months")
        if until <= since:
            raise InvalidInput("until must be after since")
        with self._tx() as (s, _):
            self._require_org(s, access)
            _audit.integrate(s)
            events = list(s.scalars(self._visible(access, select(AuditEvent).where(
                AuditEvent.occurred_at >= since, AuditEvent.occurred_at < until))))
            figures = _figures(s, access, self, events)
            scope = ("all organisations" if self.sees_everything(access)
                     else access.organisation_id)
            _audit.append(s, access, _audit.Event(
                "audit.report", "search", purpose="oversight",
                detail={"since": since.isoformat(), "until": until.isoformat()}), self.now())
            return scope, figures

    def processing_register(self, access: _audit.Access) -> list[consent.Covenant]:
        """The covenants in force now: the processing activities of GDPR art. 30.

        A partner's officer gets those their organisation is a party to (a joint
        controller of); oversight and administrators get all.
        """
        with self._tx() as (s, _):
            self._require_org(s, access)
            now = self.now()
            covenants = [c for c in self._covenants(s) if c.in_force(now) and (
                self.sees_everything(access) or access.organisation_id in c.parties)]
            _audit.append(s, access, _audit.Event(
                "audit.register", "read", detail={"covenants": len(covenants)}), now)
            return covenants

    # -- retention --------------------------------------------------------------------

    def prune_log(self, access: _audit.Access, before: datetime) -> tuple[int, int]:
        """Remove the events up to the newest checkpoint signed before ``before``.

        Only events past the retention period go, only up to a signed checkpoint (itself
        older than the retention period, which offline verification checks), and their
        leaf hashes stay (as level-0 nodes), so every root and proof still verifies.
        Returns the range [first, upto) removed.
        """
        with self._tx() as (s, _):
            _audit.integrate(s)
            now = self.now()
            if before > now - self.log_retention:
                raise FailedPrecondition(
                    f"events are kept at least {self.log_retention.days} days: choose a date "
                    f"before {(now - self.log_retention).date().isoformat()}")
            previous = s.scalar(select(func.max(AuditPruned.upto))) or 0
            upto = s.scalar(select(func.max(AuditCheckpoint.size)).where(
                AuditCheckpoint.signed_at < before, AuditCheckpoint.size > previous))
            if upto is None:
                raise FailedPrecondition("no signed checkpoint ends a range of events old "
                                         "enough to prune")
            last = s.get_one(AuditEvent, upto - 1)
            s.execute(insert(AuditNode).from_select(
                ["level", "index", "hash"],
                select(literal(0), AuditEvent.seq, AuditEvent.leaf_hash).where(
                    AuditEvent.seq < upto)))
            s.add(AuditPruned(upto=upto, first=previous, chain_hash=last.chain_hash,
                              pruned_at=now, pruned_by=access.user_id))
            s.execute(delete(AuditEvent).where(AuditEvent.seq < upto))
            _audit.append(s, access, _audit.Event(
                "audit.prune", "delete", purpose="retention",
                detail={"first": previous, "upto": upto, "before": before.isoformat()}), now)
            _audit.integrate(s)  # the removal is in the tree before anyone verifies it
            return previous, upto


def _with_history(s: Session, households: set[str]) -> dict[str, datetime | None]:
    """Households with those they were merged from or split off, transitively: every
    reference the log used for their members, each with the moment from which it no
    longer concerned them (a split), or None."""
    known: dict[str, datetime | None] = dict.fromkeys(households)
    frontier = set(households)
    while frontier:
        batch = sorted(frontier)
        earlier: dict[str, datetime | None] = {}
        for merged in s.scalars(select(Household.id).where(Household.merged_into.in_(batch))):
            earlier[merged] = None  # merged away: no event names it afterwards
        for child in s.scalars(select(Household).where(
                Household.id.in_(batch), Household.split_from.is_not(None))):
            assert child.split_from is not None
            earlier[child.split_from] = child.created_at  # the split
        frontier = {h for h in earlier if h not in known}
        known.update({h: earlier[h] for h in frontier})
    return known


def _about(households: dict[str, datetime | None]) -> Any:
    """Events naming these households while the person belonged to them."""
    always = sorted(h for h, until in households.items() if until is None)
    clauses: list[Any] = [AuditEvent.subject_ref.in_(always)] if always else []
    clauses += [and_(AuditEvent.subject_ref == h, AuditEvent.occurred_at < until)
                for h, until in sorted(households.items()) if until is not None]
    return or_(false(), *clauses)


def _prove(s: Session, events: list[AuditEvent], size: int) -> list[ProvenEvent]:
    """Inclusion proofs for events in the tree of ``size``, read in one pass."""
    proofs = _audit.with_nodes(s, lambda node: [
        (node(0, e.seq), merkle.inclusion_proof(e.seq, size, node)) for e in events])
    return [ProvenEvent(event, leaf, proof) for event, (leaf, proof) in zip(
        events, proofs, strict=True)]


def _count(value: int) -> str:
    """A count fit to publish: "<5" when small, else rounded to a multiple of 5."""
    if 0 < value < SUPPRESS_BELOW:
        return f"<{SUPPRESS_BELOW}"
    return str(ROUND_TO * round(value / ROUND_TO))


def _details(events: list[AuditEvent]) -> Iterator[tuple[AuditEvent, dict[str, Any]]]:
    for event in events:
        try:
            yield event, json.loads(event.detail)
        except ValueError:  # pragma: no cover - the hub writes valid JSON
            yield event, {}


def _figures(s: Session, access: _audit.Access, ops: LogOperations,
             events: list[AuditEvent]) -> list[tuple[str, str, str]]:
    by_type: dict[str, list[tuple[AuditEvent, dict[str, Any]]]] = {}
    for event, detail in _details(events):
        by_type.setdefault(event.event_type, []).append((event, detail))

    def fresh(kind: str) -> int:
        return sum(1 for e, d in by_type.get(kind, []) if e.outcome == "success"
                   and not d.get("duplicate"))

    created = {d.get("alert") for _, d in by_type.get("alert.create", [])}
    held = {e.subject_ref for e, _ in by_type.get("match.hold", [])}
    # "alert.acknowledge" is what hubs before revision 0003 logged for contact made.
    contacts = by_type.get("alert.acknowledge", []) + by_type.get("alert.contact", [])
    contacted: dict[Any, datetime] = {}
    for e, d in contacts:
        if e.outcome == "success" and d.get("alert"):
            contacted.setdefault(d["alert"], e.occurred_at)
    hours = _hours_to_contact(s, access, ops, contacted)
    median = (f"{statistics.median(hours):.0f}" if len(hours) >= MEDIAN_FROM
              else "suppressed" if hours else "-")
    return [
        ("signals_submitted", _count(fresh("signal.submit")), "signals received"),
        ("signals_withdrawn", _count(fresh("signal.withdraw")), "signals withdrawn"),
        ("alerts_created", _count(len(created - {None})),
         "matches disclosed to a coordinator as a new alert"),
        ("households_held", _count(len(held)),
         "households with a match held back for want of a basis"),
        ("consents_recorded", _count(fresh("consent.grant")), "consents recorded"),
        ("consents_revoked", _count(fresh("consent.revoke")), "consents revoked"),
        ("alerts_contact_made", _count(len(contacted)),
         "alerts where the coordinator recorded that contact was made"),
        ("median_hours_to_contact", median,
         f"median whole hours from alert to contact made (shown from {MEDIAN_FROM} "
         "alerts)"),
        ("denials", _count(sum(1 for e in events if e.outcome == "denied")),
         "requests refused or disclosures denied"),
    ]


def _hours_to_contact(s: Session, access: _audit.Access, ops: LogOperations,
                      contacted: dict[Any, datetime]) -> list[float]:
    hours = []
    for alert_id, at in contacted.items():
        if not isinstance(alert_id, str):
            continue
        created = s.scalar(ops._visible(access, select(func.min(AuditEvent.occurred_at)).where(
            AuditEvent.event_type == "alert.create",
            AuditEvent.detail.contains(f'"{alert_id}"'))))
        if created is not None:
            hours.append((at - created).total_seconds() / 3600)
    return hours
