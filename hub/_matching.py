"""Households, matches and the disclosure gate.

* A **household** is a connected component of active signals: two signals are
  linked when they share a pseudonymous key (a person key or an address key).
  A new signal joins the household of every signal it shares a key with, merging
  them; a withdrawal may split one. The partition does not depend on arrival order.
* A **match** exists, per covenant, when active signals of two or more of the
  covenant's parties are in one household. Parties' signals only: an organisation
  outside a covenant is never disclosed under it.
* The **gate** decides each match with the consent package's policies: the covenant
  itself, or the household's valid consent scoped to the covenant. Permitted matches
  become (or update) one open alert per household per coordinator; others are held.
  Every change of decision is written to the access log.
* The covenant names the household's **coordinator**: its only one, the one of the region
  of the household's most recent signal (a move hands the alert over), or the one of the
  partner group that signalled first.
* **Tasks** tell partners about their own signals: "consent needed" when a signal's
  involvement is held because its category needs consent (never saying who else is
  involved), and match notices when the covenant lets involved professionals know each
  other (see hub._models.Task).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, and_, delete, func, select, text, update
from sqlalchemy.orm import Session, selectinload

import consent
from exchange.db import insert_rows, one_of, pairs_in
from hub import _audit, _linkage
from hub._models import (
    Alert,
    AlertSignal,
    Base,
    Consent,
    ConsentKey,
    Household,
    Match,
    Signal,
    SignalKey,
    Task,
)

Key = tuple[int, bytes]


def _no_profiles(_ref: str) -> None:
    return None


def active(now: datetime) -> ColumnElement[bool]:
    return and_(Signal.state == "active", Signal.expires_at > now)


def _households_sharing(session: Session, keys: Iterable[Key], now: datetime) -> set[str]:
    keys = list(keys)
    if not keys:
        return set()
    return {household for (household,) in _linkage.among(
        session, select(Signal.household_id),
        _linkage.keyed(session, pairs_in(SignalKey.kind, SignalKey.value, keys)),
        active(now))}


@dataclass
class Changes:
    """What one transaction changed that others must hear about."""

    households: set[str] = field(default_factory=set)
    # Alert feed entries (coordinator, alert, change, when), written just before commit.
    feed: list[tuple[str, str, str, datetime]] = field(default_factory=list)


# -- concurrency --------------------------------------------------------------------
#
# Several hub processes may share one PostgreSQL database. Three locks keep them from
# making two households, matches or alerts of one:
# * a transaction-scoped advisory lock per pseudonymous key, taken before looking for the
#   households a new signal belongs to (two signals with one key are linked in turn);
# * a row lock on every household a transaction decides, taken in id order;
# * one advisory lock around writing alert-feed entries, held only from their insert to
#   commit, so that feed cursors are committed in order and a watcher never skips one.
# SQLite takes its one write lock at BEGIN IMMEDIATE, which serialises writers anyway.

_FEED_LOCK = 0x53616D656E6C6F70  # "Samenlop": the alert feed's advisory lock
_KEY_LOCK_SPACE = 0x4B  # keys' advisory locks are (space, 31 bits of the key)
FEED_CHANNEL = "samenloop_alert_feed"


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _lock_ids(keys: Iterable[Key]) -> set[int]:
    return {(int.from_bytes(value[:4], "big") ^ kind) & 0x7FFFFFFF for kind, value in keys}


def lock_keys(session: Session, keys: Iterable[Key]) -> None:
    """Serialise transactions that link signals by any of these keys (PostgreSQL)."""
    if not _postgres(session):
        return
    ids = sorted(_lock_ids(keys))
    if ids:  # one round trip; unnest yields the ids, and so takes the locks, in this order
        session.execute(text("SELECT pg_advisory_xact_lock(:space, id) FROM "
                             "unnest(CAST(:ids AS integer[])) AS id"),
                        {"space": _KEY_LOCK_SPACE, "ids": ids})


def lock_free_keys(session: Session, signals: Sequence[Iterable[Key]]) -> list[bool]:
    """Lock, without waiting, the keys of these signals (each its keys) that no other
    transaction holds; for each signal, whether all its keys are now locked here.

    A signal whose keys another transaction holds can be stored after it commits while
    the others go on now (PostgreSQL; elsewhere every signal is free: SQLite's one
    writer holds the whole database)."""
    wanted = [_lock_ids(_linkage.lock_values(keys)) for keys in signals]
    if not _postgres(session):
        return [True] * len(wanted)
    ids = sorted(set().union(*wanted))
    busy = {lock_id for lock_id, got in session.execute(
        text("SELECT id, pg_try_advisory_xact_lock(:space, id) FROM "
             "unnest(CAST(:ids AS integer[])) AS id"),
        {"space": _KEY_LOCK_SPACE, "ids": ids}) if not got} if ids else set()
    return [not (mine & busy) for mine in wanted]


def lock_households(session: Session, ids: Iterable[str]) -> None:
    """Row-lock households (in id order) before deciding them."""
    wanted = sorted(set(ids))
    if wanted and _postgres(session):
        session.execute(select(Household.id).where(one_of(session, Household.id, wanted))
                        .order_by(Household.id).with_for_update())


def write_feed(session: Session, changes: Changes) -> None:
    """Write the transaction's alert-feed entries, in order, just before it commits."""
    if not changes.feed:
        return
    if _postgres(session):
        session.execute(select(func.pg_advisory_xact_lock(_FEED_LOCK)))
    session.flush()  # the alerts they are about
    insert_rows(session.connection(), Base.metadata.tables["alert_feed"], [
        {"coordinator_id": coordinator, "alert_id": alert, "change": change, "at": at}
        for coordinator, alert, change, at in changes.feed])
    if _postgres(session):
        session.execute(select(func.pg_notify(FEED_CHANNEL, "")))


def households_for(
    session: Session, signals: Sequence[tuple[frozenset[Key], str | None]], now: datetime,
    access: _audit.Access, changes: Changes, profiles: _linkage.Profiles = _no_profiles,
) -> list[tuple[str, _linkage.Neighbours]]:
    """The household each new signal (its keys, its profile ref) belongs to, and the
    stored signals it links to; decided for all of them at once, before they are stored.

    The new signals link to stored ones and to each other; each connected group of them
    joins the households its stored neighbours are in (merging them into the oldest when
    there are several) or forms a new one: the households that storing them one after
    another would give.
    """
    lock_keys(session, _linkage.lock_values(k for keys, _ in signals for k in keys))
    near = _linkage.neighbours(session, signals, profiles, now)
    linked = {sid for n in near for sid in (*n.exact, *n.fuzzy)}
    home = _linkage.households_of(session, linked, now)
    # PostgreSQL: lock them; a merge committed meanwhile may have moved the signals.
    # (SQLite's one writer holds the whole database already.)
    while home and _postgres(session):
        lock_households(session, home.values())
        again = _linkage.households_of(session, linked, now)
        if again == home:
            break
        home = again
    # Group the new signals: by their links to each other and by a household they share.
    skip = set().union(*(n.skip for n in near))
    homes = [{home[sid] for sid in (*n.exact, *n.fuzzy) if sid in home} for n in near]
    parts = _linkage.components([(str(i), ref, list(keys))
                                 for i, (keys, ref) in enumerate(signals)], skip, profiles,
                                shared=homes)
    found = {h.id: h for h in _chunked(session, select(Household), Household.id,
                                       sorted(set(home.values())))}
    chosen: dict[int, str] = {}  # signal index -> its household
    new: list[dict[str, Any]] = []
    for part in parts:
        existing = sorted({found[h] for i in part for h in homes[i]},
                          key=lambda h: (h.created_at, h.id))
        if existing:
            survivor, *others = existing
            for other in others:
                _merge(session, other, survivor, now, access, changes)
            household = survivor.id
        else:
            household = uuid.uuid4().hex
            new.append({"id": household, "created_at": now, "merged_into": None,
                        "split_from": None})
        chosen.update(dict.fromkeys(part, household))
    insert_rows(session.connection(), Base.metadata.tables["households"], new)
    changes.households.update(chosen.values())
    return [(chosen[i], n) for i, n in enumerate(near)]


def _merge(
    session: Session, other: Household, survivor: Household, now: datetime,
    access: _audit.Access, changes: Changes,
) -> None:
    session.execute(
        update(Signal).where(Signal.household_id == other.id).values(household_id=survivor.id)
    )
    other.merged_into = survivor.id
    for match in session.scalars(select(Match).where(Match.household_id == other.id)):
        kept = session.scalar(select(Match).where(
            Match.household_id == survivor.id, Match.covenant_id == match.covenant_id))
        if kept is None:
            match.household_id = survivor.id
        else:
            session.delete(match)
    session.flush()
    for alert in _open_alerts(session, other.id):
        if _open_alert(session, survivor.id, alert.coordinator_id) is None:
            alert.household_id = survivor.id
            session.flush()
        else:
            close_alert(alert, "merged", now, changes)
    _audit.append(session, _audit.Access.system(access), _audit.Event(
        "household.merge", "update", subject_ref=survivor.id,
        detail={"merged": other.id, "into": survivor.id},
    ), now)
    changes.households.discard(other.id)


def split(session: Session, household_id: str, now: datetime, access: _audit.Access,
          changes: Changes, profiles: _linkage.Profiles = _no_profiles) -> None:
    """Re-partition a household's active signals after one left it."""
    signals = session.scalars(
        select(Signal).where(Signal.household_id == household_id,
                             _linkage.unindexed(active(now)))
        .options(selectinload(Signal.keys))
        .order_by(Signal.received_at, Signal.id)
    ).all()
    changes.households.add(household_id)
    keyed = [(sig.id, sig.profile, _linkage.with_region(((k.kind, k.value) for k in sig.keys),
                                                         sig.region)) for sig in signals]
    skip = _linkage.excluded(session, {k for _, _, keys in keyed for k in keys})
    parts = _linkage.components(keyed, skip, profiles)
    if len(parts) <= 1:
        return
    groups = [[signals[i] for i in part] for part in parts]
    # The component holding the oldest signal keeps the household id.
    ordered = sorted(groups, key=lambda g: (g[0].received_at, g[0].id))
    for group in ordered[1:]:
        household = Household(id=uuid.uuid4().hex, created_at=now, merged_into=None,
                              split_from=household_id)
        session.add(household)
        session.flush()
        for sig in group:
            sig.household_id = household.id
        changes.households.add(household.id)
        _audit.append(session, _audit.Access.system(access), _audit.Event(
            "household.split", "update", subject_ref=household.id,
            detail={"from": household_id, "signals": sorted(s.id for s in group)},
        ), now)
    session.flush()


def _open_alerts(session: Session, household_id: str) -> list[Alert]:
    return list(session.scalars(
        select(Alert).where(Alert.household_id == household_id, Alert.state != "closed")
    ))


def _open_alert(session: Session, household_id: str, coordinator_id: str) -> Alert | None:
    return session.scalar(select(Alert).where(
        Alert.household_id == household_id,
        Alert.coordinator_id == coordinator_id,
        Alert.state != "closed",
    ))


def add_feed(alert: Alert, change: str, now: datetime, changes: Changes,
             coordinator_id: str | None = None) -> None:
    """A change for the coordinator's watch stream (written by write_feed at commit)."""
    changes.feed.append((coordinator_id or alert.coordinator_id, alert.id, change, now))


def close_alert(alert: Alert, reason: str, now: datetime, changes: Changes) -> None:
    alert.state = "closed"
    alert.closed_at = now
    alert.closed_reason = reason
    alert.updated_at = now
    add_feed(alert, "closed", now, changes)


def households_with_keys(session: Session, keys: Iterable[Key], now: datetime) -> set[str]:
    """Households with an active signal about, or naming as a member, these persons."""
    return _households_sharing(session, _linkage.exact_lookups(keys, set()), now)


def households_for_covenant(
    session: Session, covenant: consent.Covenant, now: datetime
) -> set[str]:
    """Households where the covenant's parties have a match, or had one."""
    multi = select(Signal.household_id).where(
        active(now), Signal.organisation_id.in_(covenant.parties)
    ).group_by(Signal.household_id).having(func.count(Signal.organisation_id.distinct()) >= 2)
    known = select(Match.household_id).where(Match.covenant_id == covenant.id)
    return set(session.scalars(multi)) | set(session.scalars(known))


@dataclass
class _Shown:
    """What one coordinator may see of a household: signals and the basis of each."""

    covenant_id: str
    # signal id -> (organisation, basis, the covenant article when the covenant is it)
    signals: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    # (signal id, covenant id) -> the other organisations' signals its professional gets
    # a notice of under that covenant
    notices: dict[tuple[str, str], list[str]] = field(default_factory=dict)


# Alert closings by the coordinator: the same involvement does not raise a new alert.
COORDINATOR_CLOSINGS = ("resolved", "no_action_needed")


def _consent_needed(party: list[_Party], permitted: dict[str, consent.Decision],
                    denied: dict[str, consent.Decision]) -> set[str]:
    """The signals whose partner is asked to seek consent: those consent would release,
    and only when it would make a match, i.e. another organisation's signal has a basis
    or could get one from the same consent. Otherwise the task would only tell the
    partner that someone else is involved."""
    lone = consent.Reason.NO_OTHER_PARTY_WITH_BASIS
    helped = {sid for sid, d in denied.items() if _consent_would_help(d)}
    could = {s.organisation_id for s in party
             if s.id in permitted or s.id in helped or denied[s.id].reason is lone}
    return helped if len(could) >= 2 else set()


def _consent_would_help(decision: consent.Decision) -> bool:
    """Whether asking the household for consent could release this signal: its covenant
    basis fails only on its category, and the household has not revoked a consent under
    this covenant (it has said no; the partner is not prompted to ask again)."""
    return (decision.reason is consent.Reason.CATEGORY_NOT_COVERED
            and consent.Reason.CONSENT_REVOKED not in decision.details)


def _coordinator(cov: consent.Covenant, permitted: list[_Party]) -> str:
    """The coordinator of a disclosed match, from its permitted signals."""
    latest = max(permitted, key=lambda s: (s.observed_at, s.received_at, s.id))
    first = min(permitted, key=lambda s: (s.received_at, s.id))
    return cov.coordinator_for(latest.region, first.organisation_id)


def _decide(
    covenant: consent.Covenant, grants: list[consent.ConsentGrant], party: list[_Party],
    now: datetime,
) -> tuple[dict[str, consent.Decision], dict[str, consent.Decision]]:
    """Decide each party signal: may its organisation's involvement be shown?"""
    policy = consent.AnyOf(consent.CovenantBasis(covenant),
                           *(consent.ConsentBasis(g, covenant) for g in grants))
    household = frozenset(s.organisation_id for s in party)
    permitted: dict[str, consent.Decision] = {}
    denied: dict[str, consent.Decision] = {}
    for sig in party:
        decision = policy.decide(consent.MatchFacts(
            organisations=frozenset({sig.organisation_id}),
            categories=frozenset({sig.category}), regions=frozenset({sig.region}),
            household_organisations=household), now)
        (permitted if decision.permitted else denied)[sig.id] = decision
    if len({s.organisation_id for s in party if s.id in permitted}) < 2:
        # Fewer than two organisations with a basis: there is nothing to disclose.
        lone = consent.Decision.deny(consent.Reason.NO_OTHER_PARTY_WITH_BASIS)
        denied.update(dict.fromkeys(permitted, lone))
        permitted = {}
    return permitted, denied


class _Party(NamedTuple):
    """What deciding a household reads of an active signal (a row, not an ORM object)."""

    id: str
    household_id: str
    organisation_id: str
    category: str
    region: str
    observed_at: datetime
    received_at: datetime


@dataclass
class _Prefetched:
    """What deciding a set of households reads, fetched for all of them at once."""

    signals: dict[str, list[_Party]] = field(default_factory=lambda: defaultdict(list))
    matches: dict[str, dict[str, Match]] = field(default_factory=lambda: defaultdict(dict))
    open_alerts: dict[str, list[Alert]] = field(default_factory=lambda: defaultdict(list))
    closed_alerts: dict[str, list[Alert]] = field(default_factory=lambda: defaultdict(list))
    # open alerts' signals: alert -> signal -> the basis it is shown on
    links: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    open_tasks: dict[str, list[Task]] = field(default_factory=lambda: defaultdict(list))
    # (signal, covenant, alert) of match notices their partner dismissed
    dismissed: set[tuple[str, str, str | None]] = field(default_factory=set)
    persons: dict[str, set[Key]] = field(default_factory=lambda: defaultdict(set))
    # consents with a key among the households' persons: (consent, its person keys)
    consents: list[tuple[Consent, set[Key]]] = field(default_factory=list)
    # Rows written once every household is decided: matches decided for the first
    # time (nothing refers to them), new alerts and their signals. Until then nothing
    # is flushed (a task of a new alert needs the alert's row first).
    new_matches: list[dict[str, Any]] = field(default_factory=list)
    new_alerts: list[Alert] = field(default_factory=list)
    new_links: list[dict[str, Any]] = field(default_factory=list)


def _chunked(session: Session, stmt: Select[Any], column: Any, ids: list[str]) -> list[Any]:
    """The entities of ``stmt`` whose ``column`` is one of ``ids``, a chunk per query."""
    return [entity for (entity,) in _linkage.rows_in(session, stmt, column, ids)]


def _prefetch(session: Session, household_ids: list[str], now: datetime) -> _Prefetched:
    pre = _Prefetched()
    for row in _linkage.rows_in(session, select(*(getattr(Signal, f) for f in _Party._fields))
                                .where(_linkage.unindexed(active(now))).order_by(Signal.id),
                                Signal.household_id, household_ids):
        pre.signals[row.household_id].append(_Party(*row))
    for match in _chunked(session, select(Match).order_by(Match.id), Match.household_id,
                          household_ids):
        pre.matches[match.household_id][match.covenant_id] = match
    for alert in _chunked(session, select(Alert).order_by(Alert.id), Alert.household_id,
                          household_ids):
        (pre.closed_alerts if alert.state == "closed" else pre.open_alerts)[
            alert.household_id].append(alert)
    open_ids = [a.id for alerts in pre.open_alerts.values() for a in alerts]
    for alert_id, signal_id, basis in _linkage.rows_in(session, select(
            AlertSignal.alert_id, AlertSignal.signal_id, AlertSignal.basis),
            AlertSignal.alert_id, open_ids):
        pre.links[alert_id][signal_id] = basis
    signal_ids = [s.id for sigs in pre.signals.values() for s in sigs]
    for task in _chunked(session, select(Task).where(
            (Task.state == "open") | (Task.closed_reason == "dismissed")).order_by(Task.id),
            Task.signal_id, signal_ids):
        if task.state == "open":
            pre.open_tasks[task.signal_id].append(task)
        elif task.kind == "match_notice":
            pre.dismissed.add((task.signal_id, task.covenant_id, task.alert_id))
    household_of = {s.id: s.household_id for sigs in pre.signals.values() for s in sigs}
    for signal_id, value in _linkage.rows_in(session, select(
            SignalKey.signal_id, SignalKey.value).where(
            SignalKey.kind.in_((_linkage.PERSON, _linkage.MEMBER))),
            SignalKey.signal_id, signal_ids):
        # consent is recorded for person keys: a household's own person keys, and the
        # members its signals name (a parent's consent covers the child's signal)
        pre.persons[household_of[signal_id]].add((_linkage.PERSON, value))
    wanted = sorted(set().union(*pre.persons.values())) if pre.persons else []
    by_consent: dict[str, set[Key]] = defaultdict(set)
    for i in range(0, len(wanted), _linkage.CHUNK):
        for consent_id, kind, value in session.execute(
                select(ConsentKey.consent_id, ConsentKey.kind, ConsentKey.value).where(
                    pairs_in(ConsentKey.kind, ConsentKey.value,
                             wanted[i:i + _linkage.CHUNK], session))):
            by_consent[consent_id].add((kind, value))
    for c in _chunked(session, select(Consent), Consent.id, sorted(by_consent)):
        pre.consents.append((c, by_consent[c.id]))
    pre.consents.sort(key=lambda item: (item[0].recorded_at, item[0].id))
    return pre


def _grants(pre: _Prefetched, persons: set[Key],
            covenant_id: str) -> list[consent.ConsentGrant]:
    """The consents under this covenant recorded for one of these persons, oldest first."""
    return [_grant(c) for c, keys in pre.consents
            if c.covenant_id == covenant_id and keys & persons]


def _grant(c: Consent) -> consent.ConsentGrant:
    return consent.ConsentGrant(
        id=c.id, recorded_by=c.organisation_id, covenant_id=c.covenant_id,
        covenant_version=c.covenant_version, organisations=frozenset(c.organisations),
        purposes=frozenset(c.purposes), valid_from=c.valid_from,
        valid_until=c.valid_until, revoked_at=c.revoked_at,
    )


def evaluate(
    session: Session,
    household_ids: Iterable[str],
    covenants: list[consent.Covenant],
    now: datetime,
    access: _audit.Access,
    changes: Changes,
) -> None:
    """Decide every covenant's match on these households and bring alerts in line.

    Each party signal needs a basis of its own: the covenant for its category, or a
    consent whose scope includes its organisation. The match is disclosed when signals
    of two or more organisations have one, and only those signals are shown; the others
    are withheld and logged, one event per organisation concerned. The households are
    locked in id order, and what deciding them reads is fetched for all at once.
    """
    ids = sorted(set(household_ids))
    if not ids:
        return
    system = _audit.Access.system(access)
    lock_households(session, ids)
    pre = _prefetch(session, ids, now)
    with session.no_autoflush:
        for household_id in ids:
            _evaluate_one(session, household_id, covenants, now, system, changes, pre)
    tables = Base.metadata.tables
    insert_rows(session.connection(), tables["alerts"], [
        {c.name: getattr(alert, c.key) for c in tables["alerts"].columns}
        for alert in pre.new_alerts])
    session.flush()  # changed matches, alerts and tasks, and new tasks
    insert_rows(session.connection(), tables["alert_signals"], pre.new_links)
    insert_rows(session.connection(), tables["matches"], pre.new_matches)


def _evaluate_one(
    session: Session, household_id: str, covenants: list[consent.Covenant], now: datetime,
    system: _audit.Access, changes: Changes, pre: _Prefetched,
) -> None:
    signals = pre.signals[household_id]
    matches = pre.matches[household_id]
    open_alerts = pre.open_alerts[household_id]
    if (len({s.organisation_id for s in signals}) < 2 and not matches and not open_alerts
            and not any(pre.open_tasks[s.id] for s in signals)):
        return  # no match is possible, none existed and no partner was told of one
    shown: dict[str, _Shown] = {}
    close_reasons: dict[str, str] = {}
    consent_tasks: dict[str, set[str]] = {}  # covenant -> signals needing consent
    for cov in covenants:
        party = [s for s in signals if s.organisation_id in cov.parties]
        orgs = frozenset(s.organisation_id for s in party)
        match = matches.get(cov.id)
        consent_tasks[cov.id] = set()
        if len(orgs) < 2:
            if match is not None and match.status != "dissolved":
                match.status, match.reason, match.basis, match.withheld, match.decided_at = (
                    "dissolved", "fewer_than_two_parties", None, 0, now)
                _audit.append(session, system, _audit.Event(
                    "match.dissolve", "update", subject_ref=household_id,
                    reason="fewer_than_two_parties", detail={"covenant": cov.ref},
                ), now)
            for coordinator in cov.coordinators:
                close_reasons.setdefault(coordinator, "dissolved")
            continue
        grants = _grants(pre, pre.persons[household_id], cov.id)
        permitted, denied = _decide(cov, grants, party, now)
        consent_tasks[cov.id] = _consent_needed(party, permitted, denied)
        coordinator = _coordinator(cov, [s for s in party if s.id in permitted]) \
            if permitted else ""
        status, reason, basis = _outcome(permitted if coordinator else {}, denied)
        if match is None:  # nothing refers to a match: its row is written at the end
            pre.new_matches.append({
                "household_id": household_id, "covenant_id": cov.id, "status": status,
                "reason": reason, "basis": basis, "withheld": len(denied), "decided_at": now})
            _log_withheld(session, system, household_id, cov, party, denied, now)
        elif (match.status, match.reason, match.basis, match.withheld) != (
                status, reason, basis, len(denied)):
            match.status, match.reason, match.basis, match.withheld, match.decided_at = (
                status, reason, basis, len(denied), now)
            _log_withheld(session, system, household_id, cov, party, denied, now)
        if status == "disclosed":
            _show(shown.setdefault(coordinator, _Shown(cov.id)), cov, party, permitted)
            for alert in open_alerts:
                if alert.covenant_id == cov.id and alert.coordinator_id != coordinator:
                    close_reasons[alert.coordinator_id] = "handed_over"
        else:
            for other in cov.coordinators:
                close_reasons.setdefault(other, "basis_lapsed")
    alerts: dict[str, Alert] = {}
    for coordinator_id in sorted(set(shown) | {a.coordinator_id for a in open_alerts}):
        synced = _sync_alert(session, household_id, coordinator_id, shown.get(coordinator_id),
                             now, system, changes, close_reasons.get(coordinator_id,
                                                                    "basis_lapsed"), pre)
        if synced is not None:
            alerts[coordinator_id] = synced
    notices = {(sid, cov_id): (alerts[coordinator_id].id, others)
               for coordinator_id, target in shown.items() if coordinator_id in alerts
               for (sid, cov_id), others in target.notices.items()}
    disclosed = {sid for target in shown.values() for sid in target.signals}
    _sync_tasks(session, household_id, signals, consent_tasks, notices, disclosed, now,
                system, pre)


def _outcome(permitted: dict[str, consent.Decision],
             denied: dict[str, consent.Decision]) -> tuple[str, str, str | None]:
    """A match's status, reason and basis from its signals' decisions."""
    if permitted:
        reason = "+".join(sorted({d.reason.value for d in permitted.values()}))
        return "disclosed", reason, "+".join(sorted({d.basis or "" for d in permitted.values()}))
    causes = sorted(d.reason.value for d in denied.values()
                    if d.reason is not consent.Reason.NO_OTHER_PARTY_WITH_BASIS)
    return "held", causes[0] if causes else consent.Reason.NO_OTHER_PARTY_WITH_BASIS.value, None


def _show(target: _Shown, cov: consent.Covenant, party: list[_Party],
          permitted: dict[str, consent.Decision]) -> None:
    """Add a disclosed match's signals, and the notices they give, to what is shown."""
    for sig in party:
        if sig.id in permitted:
            used = permitted[sig.id].basis or ""
            article = cov.article_for(sig.category) if used == cov.ref else ""
            target.signals.setdefault(sig.id, (sig.organisation_id, used, article))
    noticed = [s for s in party if s.id in permitted and cov.notices_for(s.category)]
    for sig in noticed:
        others = sorted(o.id for o in noticed if o.organisation_id != sig.organisation_id)
        if others:
            target.notices[(sig.id, cov.id)] = others


def _sync_tasks(
    session: Session, household_id: str, signals: list[_Party],
    consent_needed: dict[str, set[str]], notices: dict[tuple[str, str], tuple[str, list[str]]],
    disclosed: set[str], now: datetime, system: _audit.Access, pre: _Prefetched,
) -> None:
    """Open, update and close the partners' consent-needed tasks and match notices for
    a household's active signals (a one-time archived-match notice stays until read)."""
    existing = {(t.signal_id, t.kind, t.covenant_id): t for s in signals
                for t in pre.open_tasks[s.id] if t.kind != "archived_match"}
    owners = {s.id: s.organisation_id for s in signals}
    wanted: dict[tuple[str, str, str], tuple[str | None, list[str]]] = {}
    for cov_id, ids in consent_needed.items():
        for sid in ids:
            wanted[(sid, "consent_needed", cov_id)] = (None, [])
    for (sid, cov_id), notice in notices.items():
        wanted[(sid, "match_notice", cov_id)] = notice
    for key, stale in existing.items():
        if key not in wanted:
            closing = "match_ended"
            if stale.kind == "consent_needed" and stale.signal_id in disclosed:
                closing = "released"
            close_task(session, stale, closing, now, system, household_id)
    for key, (alert_id, related) in sorted(wanted.items()):
        sid, kind, cov_id = key
        found = existing.get(key)
        if found is None:
            if kind == "match_notice" and (sid, cov_id, alert_id) in pre.dismissed:
                continue  # the partner dismissed this notice for this alert
            task = Task(id=str(uuid.uuid4()), organisation_id=owners[sid], signal_id=sid,
                        kind=kind, covenant_id=cov_id, alert_id=alert_id, related=related,
                        state="open", created_at=now, updated_at=now, closed_at=None,
                        closed_reason=None)
            session.add(task)
            action = "create"
        elif (found.alert_id, list(found.related)) != (alert_id, related):
            task = found
            task.alert_id, task.related, task.updated_at = alert_id, related, now
            action = "update"
        else:
            continue
        _audit.append(session, system, _audit.Event(
            f"task.{kind}", action, owner=task.organisation_id, subject_ref=household_id,
            detail={"task": task.id, "signal": sid, "covenant": cov_id,
                    **({"alert": alert_id, "others": len(related)} if alert_id else {})},
        ), now)


def close_task(session: Session, task: Task, reason: str, now: datetime,
               system: _audit.Access, household_id: str) -> None:
    task.state, task.closed_at, task.closed_reason, task.updated_at = "done", now, reason, now
    _audit.append(session, system, _audit.Event(
        f"task.{task.kind}", "update", owner=task.organisation_id, subject_ref=household_id,
        reason=reason, detail={"task": task.id, "signal": task.signal_id,
                               "covenant": task.covenant_id}), now)


def _log_withheld(session: Session, system: _audit.Access, household_id: str,
                  cov: consent.Covenant, party: list[_Party],
                  denied: dict[str, consent.Decision], now: datetime) -> None:
    """One 'held' event per organisation whose involvement is withheld."""
    by_org: dict[str, list[_Party]] = defaultdict(list)
    for sig in party:
        if sig.id in denied:
            by_org[sig.organisation_id].append(sig)
    for org, own in sorted(by_org.items()):
        decisions = [denied[s.id] for s in own]
        _audit.append(session, system, _audit.Event(
            "match.hold", "deny", outcome="denied", owner=org, subject_ref=household_id,
            reason=min(d.reason.value for d in decisions), purpose=consent.CARE_COORDINATION,
            detail={"covenant": cov.ref, "signals": sorted(s.id for s in own),
                    # every basis tried and why each failed
                    "reasons": sorted({r.value for d in decisions
                                       for r in (d.details or (d.reason,))})},
        ), now)


def _sync_alert(
    session: Session, household_id: str, coordinator_id: str, shown: _Shown | None,
    now: datetime, system: _audit.Access, changes: Changes, close_reason: str,
    pre: _Prefetched,
) -> Alert | None:
    """Bring one coordinator's alert in line; returns it while it is open."""
    alert = next((a for a in pre.open_alerts[household_id]
                  if a.coordinator_id == coordinator_id), None)
    if shown is None:
        if alert is not None:
            close_alert(alert, close_reason, now, changes)
            _audit.append(session, system, _audit.Event(
                "alert.close", "update", owner="", subject_ref=household_id,
                reason=close_reason, detail={"alert": alert.id, "recipient": coordinator_id},
            ), now)
        return None
    links: dict[str, str] = {}
    if alert is None and _closed_with_same_involvement(
            session, pre.closed_alerts[household_id], coordinator_id, set(shown.signals)):
        return None
    if alert is None:
        # (the columns not given read as None: the row written is complete)
        alert = Alert(id=str(uuid.uuid4()), household_id=household_id,
                      covenant_id=shown.covenant_id, coordinator_id=coordinator_id,
                      state="new", created_at=now, updated_at=now)
        pre.new_alerts.append(alert)  # not in the session: written as a row
        change = "created"
    else:
        links = pre.links[alert.id]
        if links == {k: v[1] for k, v in shown.signals.items()}:
            return alert
        change = "updated"
    removed = sorted(set(links) - set(shown.signals))
    added: dict[str, list[str]] = defaultdict(list)
    for sid, (org, basis, _) in sorted(shown.signals.items()):
        if sid not in links:
            pre.new_links.append({"alert_id": alert.id, "signal_id": sid, "basis": basis})
            added[org].append(sid)
        elif links[sid] != basis:
            session.execute(update(AlertSignal).where(
                AlertSignal.alert_id == alert.id, AlertSignal.signal_id == sid)
                .values(basis=basis))
            added[org].append(sid)
    if removed:
        session.execute(delete(AlertSignal).where(
            AlertSignal.alert_id == alert.id, AlertSignal.signal_id.in_(removed)))
    alert.updated_at = now
    alert.covenant_id = shown.covenant_id
    add_feed(alert, change, now, changes)
    for org, ids in sorted(added.items()):
        bases = sorted({shown.signals[i][1] for i in ids})
        articles = sorted({shown.signals[i][2] for i in ids} - {""})
        _audit.append(session, system, _audit.Event(
            f"alert.{'create' if change == 'created' else 'update'}", "disclose", owner=org,
            subject_ref=household_id, basis="+".join(bases), purpose=consent.CARE_COORDINATION,
            detail={"alert": alert.id, "recipient": coordinator_id, "signals": ids,
                    **({"articles": articles} if articles else {})},
        ), now)
    if removed:
        _audit.append(session, system, _audit.Event(
            "alert.update", "update", owner="", subject_ref=household_id,
            detail={"alert": alert.id, "recipient": coordinator_id, "removed": len(removed)},
        ), now)
    return alert


def _closed_with_same_involvement(session: Session, closed: list[Alert], coordinator_id: str,
                                  signal_ids: set[str]) -> bool:
    """Whether the coordinator closed this household's last alert (of ``closed``, its
    closed alerts) and nothing is new."""
    last = max((a for a in closed if a.coordinator_id == coordinator_id),
               key=lambda a: (a.closed_at or datetime.min.replace(tzinfo=UTC), a.id),
               default=None)
    if last is None or last.closed_reason not in COORDINATOR_CLOSINGS:
        return False
    seen = set(session.scalars(select(AlertSignal.signal_id).where(
        AlertSignal.alert_id == last.id)))
    return signal_ids <= seen
