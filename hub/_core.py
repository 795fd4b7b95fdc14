"""The hub's operations, independent of gRPC.

Every method runs in one database transaction and appends its access-log events in
that same transaction: a change is never stored without its log entry, and a
rejected request (an exception) leaves the database as it was. The gRPC edge
(hub._service) logs rejections in a transaction of their own.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, delete, func, or_, select, tuple_, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import consent
from exchange import checkpoint, crypto, linkage, log, vocab
from exchange.db import conflict, insert_rows, pairs_in, retried, session_factory
from exchange.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SamenloopError,
)
from hub import _audit, _inputs, _linkage, _matching, _ops
from hub._audit import MIN_LOG_RETENTION
from hub._logops import LogOperations
from hub._models import (
    Alert,
    AlertFeed,
    AlertSignal,
    Base,
    Consent,
    ConsentKey,
    Coordinator,
    CovenantVersion,
    Envelope,
    ExcludedKey,
    LinkageProfileVersion,
    Match,
    Organisation,
    Signal,
    Task,
)

CLOCK_SKEW = timedelta(minutes=5)
_SWEEP_LOCK = 0x53776565703A6875  # "Sweep:hu": one replica sweeps at a time
_log = log.get("hub")
_Times = tuple[datetime, datetime]  # a new signal's observed_at and expires_at
_TABLES = Base.metadata.tables
# (id, version) of each covenant's latest version
_LATEST_COVENANTS = (select(CovenantVersion.id, func.max(CovenantVersion.version))
                     .group_by(CovenantVersion.id).order_by(CovenantVersion.id))


@dataclass(frozen=True)
class Limits:
    max_signal_age: timedelta = timedelta(days=730)
    max_consent_period: timedelta = timedelta(days=5 * 366)
    # How long an archived signal (expired, or withdrawn as "risk gone") is kept.
    archive_period: timedelta = timedelta(days=1826)


@dataclass(frozen=True)
class Involvement:
    signal_id: str
    organisation_id: str
    organisation_name: str
    professional: _inputs.Contact
    signalled_at: datetime


@dataclass(frozen=True)
class AlertView:
    alert_id: str
    household_ref: str
    state: str
    created_at: datetime
    updated_at: datetime
    covenant_id: str
    closed_reason: str
    involved: tuple[Involvement, ...]
    coordinator_id: str = ""
    # (when, who) of each step; None when it has not happened.
    seen: tuple[datetime, str] | None = None
    contact_made: tuple[datetime, str] | None = None
    closed: tuple[datetime, str] | None = None
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None
    escalated_to: str = ""


@dataclass(frozen=True)
class TaskView:
    task_id: str
    kind: str
    state: str
    signal_id: str
    covenant_id: str
    created_at: datetime
    updated_at: datetime
    closed_reason: str
    # For notices: the other professionals' organisation and contact details.
    others: tuple[tuple[str, str, _inputs.Contact], ...] = ()


@dataclass(frozen=True)
class Recipient:
    coordinator_id: str
    covenant_id: str
    covenant_version: int
    public_key: bytes
    key_fingerprint: bytes
    regions: tuple[str, ...]


def _free_first(s: Session, together: list[tuple[int, _inputs.SignalInput, _Times]]
                ) -> tuple[list[tuple[int, _inputs.SignalInput, _Times]], set[int]]:
    """The new signals whose keys no other transaction holds (now locked here), and the
    positions of the others, to store once that transaction has committed. When none is
    free, all of them: waiting now is as good as waiting later."""
    free = _matching.lock_free_keys(s, [item.keys for _, item, _ in together])
    if not any(free):
        return together, set()
    return ([t for t, ok in zip(together, free, strict=True) if ok],
            {t[0] for t, ok in zip(together, free, strict=True) if not ok})


class Hub(LogOperations):
    """The matching hub: registry, signals, households, gate, alerts and access log."""

    def __init__(
        self,
        engine: Engine,
        *,
        signer: checkpoint.CheckpointSigner,
        clock: Callable[[], datetime] | None = None,
        limits: Limits | None = None,
        oversight: frozenset[str] = frozenset(),
        log_retention: timedelta = MIN_LOG_RETENTION,
        integrate_on_commit: bool = True,
    ) -> None:
        if log_retention < MIN_LOG_RETENTION:
            raise ValueError("the access log is kept at least five years")
        self.log_retention = log_retention
        # Add appended events to the Merkle tree right after each commit (embedded use);
        # a server leaves it to its checkpoint thread (sign_if_due), off the request path.
        self._integrate_on_commit = integrate_on_commit
        self._engine = engine
        # Organisations whose privacy officers see the whole access log (the municipality).
        self.oversight = oversight
        self._sessions = session_factory(engine)
        self._signer = signer
        self._clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits or Limits()
        self._feed_cond = threading.Condition()
        self._feed_version = 0
        self._parsed: dict[tuple[str, int], consent.Covenant] = {}
        self._profiles: dict[str, linkage.Profile | None] = {}

    def close(self) -> None:
        self._engine.dispose()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def checkpoint_public_key(self) -> bytes:
        return self._signer.public_key

    @property
    def origin(self) -> str:
        return self._signer.name

    def now(self) -> datetime:
        return self._clock()

    # -- plumbing -------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[tuple[Session, _matching.Changes]]:
        changes = _matching.Changes()
        with self._sessions() as session:
            with session.begin():
                yield session, changes
                _matching.write_feed(session, changes)
            if self._integrate_on_commit and _audit.wrote(session):
                try:
                    with session.begin():
                        _audit.integrate(session)
                except Exception:  # noqa: BLE001 - the request committed; the next run adds them
                    _log.exception("could not add queued access events to the log")
        if changes.feed:
            self._wake_watchers()

    def _wake_watchers(self) -> None:
        with self._feed_cond:
            self._feed_version += 1
            self._feed_cond.notify_all()

    def listen_for_feed(self, stopping: threading.Event) -> None:
        """Wake this process's watch streams when another hub process on the same
        PostgreSQL database writes the alert feed (LISTEN/NOTIFY); until ``stopping``."""
        if self._engine.dialect.name != "postgresql":
            return
        import psycopg

        url = self._engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        while not stopping.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {_matching.FEED_CHANNEL}")
                    self._wake_watchers()  # anything written while not listening
                    while not stopping.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._wake_watchers()
            except psycopg.Error:
                if stopping.is_set():
                    return
                _log.warning("the alert-feed listener lost its connection; reconnecting")
                stopping.wait(1.0)

    def feed_version(self) -> int:
        with self._feed_cond:
            return self._feed_version

    def wait_for_feed(self, seen: int, timeout: float) -> None:
        """Block until the alert feed changes after version ``seen``, or timeout."""
        with self._feed_cond:
            self._feed_cond.wait_for(lambda: self._feed_version != seen, timeout=timeout)

    @retried
    def log_rejection(self, access: _audit.Access, event: _audit.Event) -> None:
        """Record a refused request in its own transaction."""
        with self._tx() as (s, _):
            _audit.append(s, access, event, self.now())

    def _covenants(self, s: Session) -> list[consent.Covenant]:
        """The latest version of every covenant (a version's text is read and parsed once
        per process: versions never change)."""
        latest = s.execute(_LATEST_COVENANTS).all()
        unparsed = [(cid, v) for cid, v in latest if (cid, v) not in self._parsed]
        if unparsed:
            for row in s.scalars(select(CovenantVersion).where(
                    pairs_in(CovenantVersion.id, CovenantVersion.version, unparsed, s))):
                self._parse(row)
        return [self._parsed[(cid, v)] for cid, v in latest]

    def _parse(self, row: CovenantVersion) -> consent.Covenant:
        key = (row.id, row.version)
        if key not in self._parsed:
            parsed = consent.parse_covenant(row.source)
            self._parsed[key] = consent.Covenant(**{**parsed.__dict__, "version": row.version})
        return self._parsed[key]

    # -- linkage profiles -----------------------------------------------------------

    def _profile(self, s: Session) -> _linkage.Profiles:
        """Profiles by a signal's reference ("id@vN", "id@vN/tS"), parsed once; None for
        an unknown one, or one this hub can no longer read (a [score] table of an earlier
        decision: no fuzzy links by it until a new version is registered)."""

        def lookup(ref: str) -> linkage.Profile | None:
            if ref not in self._profiles:
                profile_id, _, version = linkage.profile_ref_of(ref).partition("@v")
                row = s.get(LinkageProfileVersion, (profile_id, int(version)))
                if row is None:
                    return None
                try:
                    parsed = linkage.parse_profile(row.source)
                except linkage.ProfileError as exc:
                    _log.warning("linkage profile unreadable: no fuzzy links by it",
                                 profile=f"{row.id}@v{row.version}", reason=str(exc))
                    self._profiles[ref] = None
                    return None
                self._profiles[ref] = linkage.Profile(**{**parsed.__dict__,
                                                         "version": row.version})
            return self._profiles[ref]

        return lookup

    @staticmethod
    def _latest_profile_row(s: Session, profile_id: str) -> LinkageProfileVersion | None:
        return s.scalar(select(LinkageProfileVersion).where(
            LinkageProfileVersion.id == profile_id)
            .order_by(LinkageProfileVersion.version.desc()).limit(1))

    def _current_profile(self, s: Session, ref: str) -> None:
        """Refuse tokens made with an unknown or outdated profile version."""
        profile_id, _, version = linkage.profile_ref_of(ref).partition("@v")
        latest = self._latest_profile_row(s, profile_id)
        if latest is None:
            raise NotFound(f"linkage profile {profile_id} is not registered")
        if latest.version != int(version):
            raise FailedPrecondition(
                f"linkage profile {profile_id} is at version {latest.version}, not "
                f"{version}: the agent must fetch it again (samenloop agent submit does)")

    @retried
    def register_profile(self, access: _audit.Access,
                         source: str) -> tuple[LinkageProfileVersion, linkage.Profile]:
        parsed = linkage.parse_profile(source)
        digest = hashlib.sha256(source.encode()).digest()
        with self._tx() as (s, _):
            now = self.now()
            latest = self._latest_profile_row(s, parsed.id)
            if latest is not None and latest.source_sha256 == digest:
                _audit.append(s, access, _audit.Event(
                    "admin.profile", "read", detail={"profile": parsed.id,
                                                     "unchanged": True}), now)
                return latest, self._profile(s)(f"{latest.id}@v{latest.version}") or parsed
            row = LinkageProfileVersion(
                id=parsed.id, version=(latest.version + 1) if latest else 1, source=source,
                source_sha256=digest, registered_at=now, registered_by=access.user_id)
            s.add(row)
            s.flush()
            _audit.append(s, access, _audit.Event(
                "admin.profile", "create" if row.version == 1 else "update",
                detail={"profile": row.id, "version": row.version,
                        "sha256": digest.hex()}), now)
            return row, linkage.Profile(**{**parsed.__dict__, "version": row.version})

    @retried
    def list_profiles(self, access: _audit.Access) -> list[LinkageProfileVersion]:
        with self._tx() as (s, _):
            latest = (select(LinkageProfileVersion.id,
                             func.max(LinkageProfileVersion.version).label("v"))
                      .group_by(LinkageProfileVersion.id).subquery())
            rows = list(s.scalars(select(LinkageProfileVersion).join(
                latest, (LinkageProfileVersion.id == latest.c.id)
                & (LinkageProfileVersion.version == latest.c.v))
                .order_by(LinkageProfileVersion.id)))
            _audit.append(s, access, _audit.Event("admin.profile", "read"), self.now())
            return rows

    @retried
    def profile_for(self, access: _audit.Access) -> LinkageProfileVersion | None:
        """The newest version of the profile this partner's covenants in force name."""
        with self._tx() as (s, _):
            self._require_org(s, access)
            now = self.now()
            named = sorted({c.linkage_profile for c in self._covenants(s)
                            if access.organisation_id in c.parties and c.in_force(now)
                            and c.linkage_profile})
            if len(named) > 1:
                raise FailedPrecondition(
                    f"this organisation's covenants name different linkage profiles "
                    f"({', '.join(named)}): the covenant administrators must agree on one")
            row = self._latest_profile_row(s, named[0]) if named else None
            if named and row is None:
                raise FailedPrecondition(f"linkage profile {named[0]} is not registered")
            _audit.append(s, access, _audit.Event(
                "profile.read", "read",
                detail={"profile": f"{row.id}@v{row.version}" if row else ""}), now)
            return row

    @retried
    def exclude_addresses(self, access: _audit.Access, values: list[bytes]) -> tuple[int, int]:
        """Put address keys on the exclusion list (the municipality only); households
        linked only through them fall apart. Returns (added, total)."""
        with self._tx() as (s, changes):
            self._require_org(s, access)
            if access.organisation_id not in self.oversight:
                raise PermissionDenied("only the municipality (an oversight organisation of "
                                       "the hub) registers excluded addresses")
            now = self.now()
            known = set(s.scalars(select(ExcludedKey.value).where(
                ExcludedKey.kind == _linkage.ADDRESS, ExcludedKey.value.in_(values))))
            new = sorted(set(values) - known)
            s.add_all([ExcludedKey(kind=_linkage.ADDRESS, value=v, registered_at=now,
                                   registered_by=access.user_id) for v in new])
            s.flush()
            households = _matching.households_with_keys(
                s, [(_linkage.ADDRESS, v) for v in new], now) if new else set()
            for household in sorted(households):
                _matching.split(s, household, now, access, changes, self._profile(s))
            self._evaluate(s, changes.households, access, changes, now)
            total = s.scalar(select(func.count()).select_from(ExcludedKey)) or 0
            _audit.append(s, access, _audit.Event(
                "address.exclude", "create",
                detail={"added": len(new), "total": total, "households": len(households)}),
                now)
            return len(new), total

    def _latest_covenant(self, s: Session, covenant_id: str) -> consent.Covenant | None:
        row = s.scalar(select(CovenantVersion).where(CovenantVersion.id == covenant_id)
                       .order_by(CovenantVersion.version.desc()).limit(1))
        return None if row is None else self._parse(row)

    def _evaluate(self, s: Session, households: set[str], access: _audit.Access,
                  changes: _matching.Changes, now: datetime) -> None:
        _matching.evaluate(s, households, self._covenants(s), now, access, changes)

    @staticmethod
    def _require_org(s: Session, access: _audit.Access) -> Organisation:
        org = s.get(Organisation, access.organisation_id)
        if org is None:
            raise PermissionDenied(f"organisation {access.organisation_id} is not registered")
        return org

    @staticmethod
    def _require_coordinator(s: Session, access: _audit.Access) -> Coordinator:
        coord = s.get(Coordinator, access.user_id)
        if coord is None or coord.organisation_id != access.organisation_id:
            raise PermissionDenied("the caller is not a registered coordinator")
        return coord

    def _recipients(self, s: Session, organisation_id: str, now: datetime) -> list[Recipient]:
        """Every coordinator of every covenant in force this partner is party to, once.

        A signal is sealed to each of them: a household handed over to another region's
        coordinator can be opened there too.
        """
        out: dict[str, Recipient] = {}
        for cov in self._covenants(s):
            if organisation_id not in cov.parties or not cov.in_force(now):
                continue
            for coordinator_id in cov.coordinators:
                coord = s.get(Coordinator, coordinator_id)
                if coord is None:  # pragma: no cover - registration checks this
                    continue
                regions = set(cov.regions_of(coord.id))
                if coord.id in out:
                    regions |= set(out[coord.id].regions)
                    cov_id, version = out[coord.id].covenant_id, out[coord.id].covenant_version
                else:
                    cov_id, version = cov.id, cov.version
                out[coord.id] = Recipient(coord.id, cov_id, version, coord.public_key,
                                          coord.key_fingerprint, tuple(sorted(regions)))
        return [out[k] for k in sorted(out)]

    # -- partners -------------------------------------------------------------------

    @retried
    def recipients(self, access: _audit.Access) -> list[Recipient]:
        with self._tx() as (s, _):
            self._require_org(s, access)
            now = self.now()
            found = self._recipients(s, access.organisation_id, now)
            _audit.append(s, access, _audit.Event(
                "recipients.read", "read", detail={"recipients": [r.coordinator_id for r in found]}
            ), now)
            return found

    @retried
    def submit(self, access: _audit.Access, item: _inputs.SignalInput) -> tuple[Signal, bool]:
        """Store one signal; returns it and whether it was a duplicate of a stored one."""
        with self._tx() as (s, changes):
            self._require_org(s, access)
            now = self.now()
            recipients = self._recipient_map(s, access.organisation_id, now)
            signal_id, duplicate = self._store(s, changes, access, item, now, recipients)
            self._evaluate(s, changes.households, access, changes, now)
            return s.get_one(Signal, signal_id), duplicate

    def submit_many(
        self, access: _audit.Access, items: list[_inputs.SignalInput | SamenloopError]
    ) -> list[tuple[str, bool] | SamenloopError]:
        """Store a chunk of signals, each accepted or refused on its own: (its id, whether
        it was a duplicate of a stored one) or the refusal.

        New signals are checked one by one, then stored together: their households are
        decided at once and their rows written in a few statements. A signal sent before
        (a duplicate or a conflict), sent twice in the chunk, or one that replaces
        another is stored on its own after them, in a savepoint; so is every signal of
        the chunk when storing them together fails in the database. A refused item (or
        one that arrives as the error its validation raised) changes nothing and its
        refusal is logged. Households touched by the chunk are decided once, at the end.

        New signals whose keys a concurrent transaction holds (it is storing signals of
        the same households) are stored in a second transaction, once it has committed,
        instead of holding up the whole chunk: in a chunk of partners' signals in their
        own order, a few households are typically shared with each concurrent chunk.
        """
        results = self._submit_chunk(access, items, list(range(len(items))), wait=False)
        later = [i for i, r in enumerate(results) if r is None]
        if later:
            _ops.DEFERRED.inc(len(later))
            for index, result in zip(later, self._submit_chunk(
                    access, [items[i] for i in later], later, wait=True), strict=True):
                results[index] = result
        done = [r for r in results if r is not None]
        assert len(done) == len(items), "every item is stored or refused"
        return done

    @retried
    def _submit_chunk(
        self, access: _audit.Access, items: list[_inputs.SignalInput | SamenloopError],
        positions: list[int], *, wait: bool,
    ) -> list[tuple[str, bool] | SamenloopError | None]:
        """One transaction of submit_many over ``items`` (at these positions in the
        request); without ``wait``, new signals whose keys are busy are left (None)."""
        results: list[tuple[str, bool] | SamenloopError | None] = [None] * len(items)
        deferred: set[int] = set()
        with self._tx() as (s, changes):
            self._require_org(s, access)
            now = self.now()
            recipients = self._recipient_map(s, access.organisation_id, now)

            def refuse(index: int, error: SamenloopError) -> None:
                results[index] = error
                _audit.append(s, access, _audit.refusal(
                    "signal.submit", "create", error, {"index": positions[index]}), now)

            # Which ids are stored already, in one query.
            maybe_stored = {sid for (sid,) in _linkage.among(s, select(Signal.id), sorted(
                {i.signal_id for i in items if not isinstance(i, SamenloopError)}))}
            one_by_one = any(not isinstance(i, SamenloopError) and i.replaces for i in items)
            together: list[tuple[int, _inputs.SignalInput, _Times]] = []
            profiles: dict[str, SamenloopError | None] = {}
            for index, item in enumerate(items):
                if isinstance(item, SamenloopError):
                    refuse(index, item)
                elif not (one_by_one or item.signal_id in maybe_stored):
                    try:
                        times = self._check(s, item, now, recipients, profiles)
                    except SamenloopError as exc:
                        refuse(index, exc)
                        continue
                    maybe_stored.add(item.signal_id)  # sent again: stored on its own
                    together.append((index, item, times))
            if together and not wait:
                together, deferred = _free_first(s, together)
            if together:
                try:
                    with _undoable(s, changes):
                        stored = self._store_new(s, changes, access, now,
                                                 [(i, t) for _, i, t in together])
                    for (index, _, _), signal_id in zip(together, stored, strict=True):
                        results[index] = (signal_id, False)
                except DBAPIError as exc:  # a constraint the checks missed: one by one
                    if conflict(exc):
                        raise  # another replica's transaction: the chunk is retried
                    _log.warning("storing a chunk together failed; storing one by one",
                                 error=type(exc.orig).__name__)
            for index, item in enumerate(items):
                if (results[index] is not None or isinstance(item, SamenloopError)
                        or index in deferred):
                    continue
                try:
                    with _undoable(s, changes):
                        results[index] = self._store(s, changes, access, item, now,
                                                     recipients, profiles)
                except SamenloopError as exc:
                    refuse(index, exc)
                except DBAPIError as exc:  # a constraint the checks missed: this item only
                    if conflict(exc):
                        raise
                    _log.error("signal refused by the database", index=positions[index],
                               error=type(exc.orig).__name__)
                    refuse(index, SamenloopError(
                        f"item {positions[index]} could not be stored"))
            self._evaluate(s, changes.households, access, changes, now)
        return results

    def _check(self, s: Session, item: _inputs.SignalInput, now: datetime,
               recipients: dict[str, Recipient],
               profiles: dict[str, SamenloopError | None]) -> _Times:
        """A new signal's times (observed, expires), or the error that refuses it;
        ``profiles`` remembers what checking a profile reference gave."""
        observed = item.observed_at or now
        if observed > now + CLOCK_SKEW:
            raise InvalidInput("observed_at is in the future")
        if observed < now - self.limits.max_signal_age:
            raise InvalidInput("observed_at is older than the maximum signal age")
        latest = now + self.limits.max_signal_age
        expires = item.expires_at or latest
        if not now < expires <= latest + CLOCK_SKEW:
            raise InvalidInput(
                f"expires_at must be in the future and at most "
                f"{self.limits.max_signal_age.days} days ahead")
        self._check_envelopes(item, recipients)
        if item.linkage_profile:
            ref = item.linkage_profile
            if ref not in profiles:
                try:
                    self._current_profile(s, ref)
                    profiles[ref] = None
                except SamenloopError as exc:
                    profiles[ref] = exc
            if (error := profiles[ref]) is not None:
                raise type(error)(str(error))
        return observed, min(expires, latest)

    def _store(self, s: Session, changes: _matching.Changes, access: _audit.Access,
               item: _inputs.SignalInput, now: datetime,
               recipients: dict[str, Recipient],
               profiles: dict[str, SamenloopError | None] | None = None,
               ) -> tuple[str, bool]:
        """Store one signal, or find it stored already (a duplicate): its id, and
        whether it was."""
        existing = s.get(Signal, item.signal_id)
        if existing is not None:
            if (existing.organisation_id != access.organisation_id
                    or existing.content_sha256 != item.content_sha256):
                raise AlreadyExists(f"signal {item.signal_id} exists with other content")
            _audit.append(s, access, _audit.Event(
                "signal.submit", "create", subject_ref=existing.household_id,
                detail={"signal": existing.id, "duplicate": True}), now)
            return existing.id, True
        times = self._check(s, item, now, recipients, {} if profiles is None else profiles)
        replaced = self._replaced(s, access, item, now) if item.replaces else None
        (signal_id,) = self._store_new(s, changes, access, now, [(item, times)],
                                       replaced=replaced)
        return signal_id, False

    def _store_new(self, s: Session, changes: _matching.Changes, access: _audit.Access,
                   now: datetime, items: list[tuple[_inputs.SignalInput, _Times]], *,
                   replaced: Signal | None = None) -> list[str]:
        """Store new, checked signals together: households, rows, keys, log events and
        archived-match notices; ``replaced`` is the one signal the only item replaces.
        Returns their ids."""
        profiles = self._profile(s)
        decided = _matching.households_for(
            s, [(frozenset(_linkage.with_region(item.keys, item.region)),
                 item.linkage_profile or None) for item, _ in items], now,
            access, changes, profiles)
        # Rows in one executemany per table, not an ORM object each: what reads these
        # signals later (deciding their households) loads them.
        signals = [{
            "id": item.signal_id, "organisation_id": access.organisation_id,
            "household_id": household, "category": item.category, "region": item.region,
            "professional_name": item.professional.name,
            "professional_phone": item.professional.phone,
            "professional_email": item.professional.email,
            "observed_at": observed, "received_at": now, "expires_at": expires,
            "state": "active", "withdrawn_at": None, "withdrawal_reason": None,
            "archived_at": None, "archive_reason": None, "purge_after": None,
            "notice_used_at": None, "content_sha256": item.content_sha256,
            "profile": item.linkage_profile or None,
        } for (item, (observed, expires)), (household, _) in zip(items, decided, strict=True)]
        conn = s.connection()
        insert_rows(conn, _TABLES["signals"], signals)
        envelopes = [{"signal_id": item.signal_id, "recipient_id": e.recipient_id,
                      "key_fingerprint": e.key_fingerprint, "scheme": e.scheme,
                      "ciphertext": e.ciphertext} for item, _ in items for e in item.envelopes]
        insert_rows(conn, _TABLES["envelopes"], envelopes)
        rows = [{"signal_id": item.signal_id, "kind": k, "value": v}
                for item, _ in items for k, v in sorted(item.keys)]
        insert_rows(conn, _TABLES["signal_keys"], rows)
        for (item, _), (household, _) in zip(items, decided, strict=True):
            _audit.append(s, access, _audit.Event(
                "signal.submit", "create", subject_ref=household,
                detail={"signal": item.signal_id, "keys": len(item.keys),
                        "envelopes": len(item.envelopes),
                        **({"replaces": item.replaces} if replaced else {})}), now)
        if replaced is not None:
            self._replace(s, access, changes, replaced, items[0][0].signal_id,
                          decided[0][0], now)
            return [items[0][0].signal_id]
        # Archived signals are found by exact keys only; all of them in one query.
        exact = sorted({sid for _, near in decided for sid in near.exact})
        archived = [sig for (sig,) in _linkage.among(
            s, select(Signal).order_by(Signal.id), exact, Signal.state == "archived",
            Signal.notice_used_at.is_(None),
            Signal.organisation_id != access.organisation_id)] if exact else []
        for (item, _), (household, near) in zip(items, decided, strict=True):
            mine = set(near.exact)
            if related := [a for a in archived if a.id in mine]:
                self._archived_notice(s, item, access.organisation_id, household, related,
                                      now)
        return [item.signal_id for item, _ in items]

    @staticmethod
    def _replaced(s: Session, access: _audit.Access, item: _inputs.SignalInput,
                  now: datetime) -> Signal:
        old = s.get(Signal, item.replaces)
        if old is None or old.organisation_id != access.organisation_id:
            raise NotFound(f"signal {item.replaces} (to replace) not found for this "
                           "organisation")
        if old.state != "active" or old.withdrawn_at is not None or old.expires_at <= now:
            raise FailedPrecondition(f"signal {item.replaces} is no longer active: submit "
                                     "the new one without 'replaces'")
        return old

    def _replace(self, s: Session, access: _audit.Access, changes: _matching.Changes,
                 old: Signal, new_id: str, new_household: str, now: datetime) -> None:
        """The new signal takes the old one's place in every alert and task (a closed
        alert sees no new involvement), then the old one is deleted; the log keeps both."""
        s.execute(update(AlertSignal).where(AlertSignal.signal_id == old.id)
                  .values(signal_id=new_id))
        s.execute(update(Task).where(Task.signal_id == old.id).values(signal_id=new_id))
        household = old.household_id
        s.delete(old)
        s.flush()
        _audit.append(s, access, _audit.Event(
            "signal.withdraw", "delete", subject_ref=household, reason="replaced",
            detail={"signal": old.id, "replaced_by": new_id}), now)
        if household != new_household:
            _matching.split(s, household, now, access, changes, self._profile(s))

    def _archived_notice(self, s: Session, item: _inputs.SignalInput, organisation_id: str,
                         household_id: str, archived: list[Signal], now: datetime) -> None:
        """A new signal that matches only archived signals (``archived``: those of other
        organisations it shares an exact key with) gives its reporter a one-time notice
        of the archived signals' reporters, where a covenant allows notices for both
        categories. Each archived signal gives such a notice once."""
        others_active = s.scalar(select(Signal.id).where(
            Signal.household_id == household_id, _linkage.unindexed(
                _matching.active(now)),
            Signal.organisation_id != organisation_id).limit(1))
        if others_active is not None:
            return
        for cov in self._covenants(s):
            basis = consent.CovenantBasis(cov)

            def noticed(org: str, category: str, region: str,
                        cov: consent.Covenant = cov, basis: consent.Policy = basis) -> bool:
                """The covenant itself would disclose it, and lets its professional know."""
                return cov.notices_for(category) and basis.decide(consent.MatchFacts(
                    organisations=frozenset({org}), categories=frozenset({category}),
                    regions=frozenset({region})), now).permitted

            if not noticed(organisation_id, item.category, item.region):
                continue
            related = [a for a in archived if a.notice_used_at is None
                       and noticed(a.organisation_id, a.category, a.region)]
            if not related:
                continue
            task = Task(id=str(uuid.uuid4()), organisation_id=organisation_id,
                        signal_id=item.signal_id, kind="archived_match", covenant_id=cov.id,
                        alert_id=None, related=[a.id for a in related], state="open",
                        created_at=now, updated_at=now, closed_at=None, closed_reason=None)
            s.add(task)
            for a in related:
                a.notice_used_at = now
            s.flush()
            _audit.append(s, _audit.Access.system(), _audit.Event(
                "task.archived_match", "create", owner=organisation_id,
                subject_ref=household_id, basis=cov.ref,
                detail={"task": task.id, "signal": item.signal_id, "covenant": cov.id,
                        "others": len(related)}), now)

    def _recipient_map(self, s: Session, org: str, now: datetime) -> dict[str, Recipient]:
        return {r.coordinator_id: r for r in self._recipients(s, org, now)}

    @staticmethod
    def _check_envelopes(item: _inputs.SignalInput, recipients: dict[str, Recipient]) -> None:
        for i, env in enumerate(item.envelopes):
            r = recipients.get(env.recipient_id)
            if r is None:
                raise InvalidInput(
                    f"envelopes[{i}] is addressed to {env.recipient_id}, "
                    "which is not a recipient for this organisation")
            if env.key_fingerprint != r.key_fingerprint:
                raise FailedPrecondition(
                    f"envelopes[{i}] is sealed to an outdated key of {env.recipient_id}: "
                    "fetch the recipients again")
        missing = sorted(set(recipients) - {e.recipient_id for e in item.envelopes})
        if missing:
            raise FailedPrecondition(
                f"the signal has no envelope for coordinator {missing[0]}: "
                "fetch the recipients again")

    @retried
    def withdraw(self, access: _audit.Access, signal_id: str, reason: str) -> datetime:
        with self._tx() as (s, changes):
            self._require_org(s, access)
            now = self.now()
            signal = s.get(Signal, signal_id)
            if signal is None or signal.organisation_id != access.organisation_id:
                raise NotFound(f"signal {signal_id} not found for this organisation")
            if signal.state == "archived" and reason == "unjustified":
                # Archived, then judged unjustified after all: it is not kept.
                household = signal.household_id
                s.execute(delete(Task).where(Task.signal_id == signal.id))
                s.delete(signal)
                s.flush()
                _audit.append(s, access, _audit.Event(
                    "signal.withdraw", "delete", subject_ref=household, reason=reason,
                    detail={"signal": signal_id, "archived": True}), now)
                return now
            if signal.state != "active" or signal.withdrawn_at is not None:
                _audit.append(s, access, _audit.Event(
                    "signal.withdraw", "update", subject_ref=signal.household_id,
                    reason=signal.withdrawal_reason or signal.archive_reason or "",
                    detail={"signal": signal.id, "duplicate": True}), now)
                return signal.withdrawn_at or signal.archived_at or now
            household = signal.household_id
            signal.withdrawn_at, signal.withdrawal_reason = now, reason
            self._archive(signal, reason, now)
            self._close_tasks(s, signal, "signal_withdrawn", now)
            s.flush()
            _matching.split(s, household, now, access, changes, self._profile(s))
            self._evaluate(s, changes.households, access, changes, now)
            if reason == "unjustified":
                # Unjustified signals are deleted, not archived; the log keeps the event.
                s.execute(delete(Task).where(Task.signal_id == signal.id))
                s.delete(signal)
                s.flush()
            _audit.append(s, access, _audit.Event(
                "signal.withdraw", "delete" if reason == "unjustified" else "update",
                subject_ref=household, reason=reason, detail={"signal": signal_id}), now)
            return now

    def _archive(self, signal: Signal, reason: str, at: datetime) -> None:
        signal.state, signal.archived_at, signal.archive_reason = "archived", at, reason
        signal.purge_after = at + self.limits.archive_period

    @staticmethod
    def _close_tasks(s: Session, signal: Signal, reason: str, now: datetime) -> None:
        for task in s.scalars(select(Task).where(Task.signal_id == signal.id,
                                                 Task.state == "open")):
            _matching.close_task(s, task, reason, now, _audit.Access.system(),
                                 signal.household_id)

    @retried
    def record_consent(self, access: _audit.Access,
                       item: _inputs.ConsentInput) -> tuple[Consent, bool]:
        with self._tx() as (s, changes):
            self._require_org(s, access)
            now = self.now()
            existing = s.get(Consent, item.consent_id)
            if existing is not None:
                if (existing.organisation_id != access.organisation_id
                        or existing.content_sha256 != item.content_sha256):
                    raise AlreadyExists(f"consent {item.consent_id} exists with other content")
                _audit.append(s, access, _audit.Event(
                    "consent.grant", "create", basis=f"consent:{existing.id}",
                    detail={"consent": existing.id, "duplicate": True}), now)
                return existing, True
            cov = self._latest_covenant(s, item.covenant_id)
            if cov is None:
                raise NotFound(f"covenant {item.covenant_id} is not registered")
            if access.organisation_id not in cov.parties:
                raise PermissionDenied(
                    f"organisation {access.organisation_id} is not a party to {cov.id}")
            unknown = sorted(set(item.purposes) - cov.purposes)
            if unknown:
                raise InvalidInput(f"purposes: '{unknown[0]}' is not a purpose of {cov.id}")
            valid_from = item.valid_from or now
            if item.valid_until > valid_from + self.limits.max_consent_period:
                raise InvalidInput(
                    f"valid_until is more than {self.limits.max_consent_period.days} days "
                    "after valid_from")
            if item.valid_until <= now:
                raise InvalidInput("valid_until is in the past")
            row = Consent(
                id=item.consent_id, organisation_id=access.organisation_id,
                covenant_id=cov.id, covenant_version=cov.version,
                organisations=sorted(cov.parties), purposes=list(item.purposes),
                evidence_reference=item.evidence_reference, valid_from=valid_from,
                valid_until=item.valid_until, recorded_at=now, recorded_by=access.user_id,
                revoked_at=None, revoked_by=None, content_sha256=item.content_sha256,
            )
            row.keys = [ConsentKey(kind=k, value=v) for k, v in sorted(item.subject_keys)]
            s.add(row)
            s.flush()
            households = _matching.households_with_keys(s, item.subject_keys, now)
            self._log_consent(s, access, "consent.grant", "create", row, households, now)
            self._evaluate(s, households, access, changes, now)
            return row, False

    @staticmethod
    def _log_consent(s: Session, access: _audit.Access, event_type: str, action: str,
                     row: Consent, households: set[str], now: datetime) -> None:
        """One event per household of the recorder's own signals the consent concerns.

        Households only other organisations know stay unnamed: the recorder's privacy
        officer sees these events, and a household reference would tell them that
        someone else has a signal about the person.
        """
        own = set(s.scalars(select(Signal.household_id).where(
            Signal.household_id.in_(households),
            _linkage.unindexed(Signal.organisation_id == access.organisation_id,
                               _matching.active(now))).distinct())) if households else set()
        for household in sorted(own) or [""]:
            _audit.append(s, access, _audit.Event(
                event_type, action, subject_ref=household, basis=f"consent:{row.id}",
                purpose=",".join(row.purposes),
                detail={"consent": row.id, "covenant": row.covenant_id,
                        "evidence": row.evidence_reference}), now)

    @retried
    def revoke_consent(self, access: _audit.Access, consent_id: str) -> Consent:
        with self._tx() as (s, changes):
            self._require_org(s, access)
            now = self.now()
            row = s.get(Consent, consent_id)
            if row is None or row.organisation_id != access.organisation_id:
                raise NotFound(f"consent {consent_id} not found for this organisation")
            if row.revoked_at is not None:
                _audit.append(s, access, _audit.Event(
                    "consent.revoke", "update", basis=f"consent:{row.id}",
                    detail={"consent": row.id, "duplicate": True}), now)
                return row
            row.revoked_at, row.revoked_by = now, access.user_id
            s.flush()
            keys = {(k.kind, k.value) for k in row.keys}
            households = _matching.households_with_keys(s, keys, now)
            self._log_consent(s, access, "consent.revoke", "update", row, households, now)
            self._evaluate(s, households, access, changes, now)
            return row

    # -- coordinators ---------------------------------------------------------------

    def _view(self, s: Session, alert: Alert, viewer: str | None = None) -> AlertView:
        """What the coordinator may see of an alert now: no one once it is closed.

        Another viewer (the escalation contact) sees the alert's state and history but
        no organisation, professional or household reference.
        """
        other = viewer is not None and viewer != alert.coordinator_id
        hidden = alert.state == "closed" or other
        rows = [] if hidden else s.execute(
            select(Signal, Organisation.name)
            .join(AlertSignal, AlertSignal.signal_id == Signal.id)
            .join(Organisation, Organisation.id == Signal.organisation_id)
            .where(AlertSignal.alert_id == alert.id)
            .order_by(Signal.observed_at, Signal.id)
        ).all()

        def step(at: datetime | None, by: str | None) -> tuple[datetime, str] | None:
            return None if at is None else (at, by or "")

        return AlertView(
            alert_id=alert.id, household_ref="" if other else alert.household_id,
            state=alert.state,
            created_at=alert.created_at, updated_at=alert.updated_at,
            covenant_id=alert.covenant_id, closed_reason=alert.closed_reason or "",
            involved=tuple(
                Involvement(sig.id, sig.organisation_id, name,
                            _inputs.Contact(sig.professional_name, sig.professional_phone,
                                            sig.professional_email),
                            sig.observed_at)
                for sig, name in rows
            ),
            coordinator_id=alert.coordinator_id,
            seen=step(alert.seen_at, alert.seen_by),
            contact_made=step(alert.contact_made_at, alert.contact_made_by),
            closed=step(alert.closed_at, alert.closed_by or ("" if alert.closed_at is None
                                                             else "hub")),
            reminded_at=alert.reminded_at, escalated_at=alert.escalated_at,
            escalated_to=alert.escalated_to or "",
        )

    def _my_alert(self, s: Session, access: _audit.Access, alert_id: str) -> Alert:
        coord = self._require_coordinator(s, access)
        alert = s.get(Alert, vocab.uuid_str(alert_id, "alert_id"))
        if alert is None or alert.coordinator_id != coord.id:
            raise NotFound(f"alert {alert_id} not found")
        return alert

    def _refresh(self, s: Session, changes: _matching.Changes, access: _audit.Access,
                 now: datetime, households: set[str]) -> None:
        """Decide households again before showing them: a basis may have lapsed since."""
        if households:
            self._evaluate(s, households, access, changes, now)
            s.expire_all()

    def _basis(self, s: Session, alert: Alert) -> str:
        return s.scalar(select(Match.basis).where(
            Match.household_id == alert.household_id,
            Match.covenant_id == alert.covenant_id)) or ""

    def sweep(self, batch: int = 500) -> int:
        """The hub's periodic work; returns how many households were decided again.

        Covenants end, consents start and expire, signals expire: time alone changes
        decisions. Expired signals are archived, archived ones purged after the archive
        period (their access-log events stay), and alerts without recorded contact get
        their reminder and escalation. Each step works in transactions of at most
        ``batch`` signals or households, so a backlog never holds up submissions long.
        """
        with self._sweep_lock() as mine:
            if not mine:
                return 0  # another replica is sweeping
            decided = 0
            while True:
                archived, touched = self._archive_expired(batch)
                decided += touched
                if archived < batch:
                    break
            households = sorted(self._time_dependent())
            for i in range(0, len(households), batch):
                self._decide_batch(households[i:i + batch])
            decided += len(households)
            self._remind_all()
            while self._purge(batch) == batch:
                pass
            return decided

    @contextmanager
    def _sweep_lock(self) -> Iterator[bool]:
        """Whether this process may sweep now: one replica at a time (PostgreSQL)."""
        if self._engine.dialect.name != "postgresql":
            yield True
            return
        with self._engine.connect() as conn:
            mine = bool(conn.execute(select(func.pg_try_advisory_lock(_SWEEP_LOCK))).scalar())
            conn.commit()
            try:
                yield mine
            finally:
                if mine:
                    conn.execute(select(func.pg_advisory_unlock(_SWEEP_LOCK)))
                    conn.commit()

    @retried
    def _decide_batch(self, households: list[str]) -> None:
        with self._tx() as (s, changes):
            self._evaluate(s, set(households), _audit.Access.system(), changes, self.now())

    @retried
    def _remind_all(self) -> None:
        with self._tx() as (s, changes):
            self._remind(s, self.now(), _audit.Access.system(), changes)

    def _time_dependent(self) -> set[str]:
        """Households whose decision time alone may change: an open alert, a held match."""
        with self._sessions() as s:
            return set(s.scalars(select(Alert.household_id).where(
                Alert.state != "closed"))) | set(s.scalars(select(Match.household_id).where(
                    Match.status == "held")))

    @retried
    def _archive_expired(self, batch: int) -> tuple[int, int]:
        """Archive up to ``batch`` expired signals and decide their households again."""
        with self._tx() as (s, changes):
            now = self.now()
            system = _audit.Access.system()
            expired = s.scalars(select(Signal).where(
                Signal.state == "active", Signal.expires_at <= now)
                .order_by(Signal.expires_at, Signal.id).limit(batch)).all()
            touched = {signal.household_id for signal in expired}
            for signal in expired:
                self._archive(signal, "expired", signal.expires_at)
                self._close_tasks(s, signal, "signal_expired", now)
                _audit.append(s, system, _audit.Event(
                    "signal.archive", "update", owner=signal.organisation_id,
                    subject_ref=signal.household_id, reason="expired",
                    detail={"signal": signal.id}), now)
            s.flush()
            for household in sorted(touched):
                _matching.split(s, household, now, system, changes, self._profile(s))
            self._evaluate(s, changes.households, system, changes, now)
            return len(expired), len(changes.households)

    @retried
    def _purge(self, batch: int) -> int:
        """Purge up to ``batch`` signals whose archive period is over; the log stays."""
        with self._tx() as (s, _):
            now = self.now()
            due = s.scalars(select(Signal).where(
                Signal.state == "archived", Signal.purge_after <= now)
                .order_by(Signal.purge_after, Signal.id).limit(batch)).all()
            for signal in due:
                s.execute(delete(Task).where(Task.signal_id == signal.id))
                s.delete(signal)
                _audit.append(s, _audit.Access.system(), _audit.Event(
                    "signal.purge", "delete", owner=signal.organisation_id,
                    subject_ref=signal.household_id, reason=signal.archive_reason or "",
                    detail={"signal": signal.id}), now)
            s.flush()
            return len(due)

    def _remind(self, s: Session, now: datetime, system: _audit.Access,
                changes: _matching.Changes) -> None:
        """Remind, then escalate, open alerts whose contact was not recorded in time."""
        # A covenant reminds after one day at the earliest.
        waiting = s.scalars(select(Alert).where(Alert.state.in_(("new", "seen")),
                                                 Alert.created_at <= now - timedelta(days=1),
                                                 or_(Alert.reminded_at.is_(None),
                                                     Alert.escalated_at.is_(None)))
                            .order_by(Alert.created_at, Alert.id)).all()
        for alert in waiting:
            cov = self._latest_covenant(s, alert.covenant_id)
            if cov is None:  # pragma: no cover - alerts only exist under covenants
                continue
            age = now - alert.created_at
            if alert.reminded_at is None and age >= timedelta(days=cov.reminder_days):
                alert.reminded_at = alert.updated_at = now
                s.flush()
                _matching.add_feed(alert, "reminder", now, changes)
                _audit.append(s, system, _audit.Event(
                    "alert.remind", "update", subject_ref=alert.household_id,
                    detail={"alert": alert.id, "recipient": alert.coordinator_id,
                            "days": cov.reminder_days}), now)
            if alert.escalated_at is None and age >= timedelta(days=cov.escalation_days):
                contact = cov.escalation_contact
                alert.escalated_at = alert.updated_at = now
                alert.escalated_to = contact or None
                s.flush()
                _matching.add_feed(alert, "escalated", now, changes)
                if contact and contact != alert.coordinator_id:
                    _matching.add_feed(alert, "escalated", now, changes, contact)
                _audit.append(s, system, _audit.Event(
                    "alert.escalate", "update", subject_ref=alert.household_id,
                    detail={"alert": alert.id, "recipient": alert.coordinator_id,
                            "escalation_contact": contact, "days": cov.escalation_days}),
                    now)

    @retried
    def list_alerts(self, access: _audit.Access, states: tuple[str, ...], page_size: int,
                    page_token: str, *, escalated: bool = False, id_prefix: str = "",
                    ) -> tuple[list[AlertView], str]:
        """The caller's alerts; or, with ``escalated``, the alerts escalated to the caller
        as a covenant's escalation contact (without involvement); with ``id_prefix``, only
        those whose id starts with it."""
        with self._tx() as (s, changes):
            coord = self._require_coordinator(s, access)
            now = self.now()
            mine = (Alert.escalated_to == coord.id) if escalated else (
                Alert.coordinator_id == coord.id)
            if id_prefix:
                mine = and_(mine, Alert.id.startswith(id_prefix, autoescape=True))
            self._refresh(s, changes, access, now, set(s.scalars(select(Alert.household_id).where(
                mine, Alert.state != "closed"))))
            stmt = (select(Alert).where(mine, Alert.state.in_(states))
                    .order_by(Alert.created_at, Alert.id).limit(page_size + 1))
            if page_token:
                after_time, after_id = _decode_token(page_token)
                stmt = stmt.where(tuple_(Alert.created_at, Alert.id) > (after_time, after_id))
            alerts = list(s.scalars(stmt))
            more = len(alerts) > page_size
            alerts = alerts[:page_size]
            views = [self._view(s, a, coord.id) for a in alerts]
            for a, v in zip(alerts, views, strict=True):
                _audit.append(s, access, _audit.Event(
                    "alert.list", "read", subject_ref=a.household_id,
                    basis=self._basis(s, a) if v.involved else "",
                    purpose=consent.CARE_COORDINATION, detail={"alert": v.alert_id}), now)
            token = _encode_token(alerts[-1].created_at, alerts[-1].id) if more else ""
            return views, token

    @retried
    def start_watch(self, access: _audit.Access, after: int) -> None:
        with self._tx() as (s, _):
            self._require_coordinator(s, access)
            _audit.append(s, access, _audit.Event(
                "alert.watch", "search", detail={"after": after}), self.now())

    def latest_cursor(self, access: _audit.Access) -> int:
        """The cursor of the newest change for the calling coordinator (0 when none)."""
        with self._sessions() as s:
            coord = self._require_coordinator(s, access)
            return s.scalar(select(func.max(AlertFeed.seq)).where(
                AlertFeed.coordinator_id == coord.id)) or 0

    @retried
    def alert_changes(self, access: _audit.Access, after: int,
                      limit: int = 100) -> list[tuple[int, str, AlertView]]:
        """Feed entries after a cursor, with each alert's current view."""
        with self._tx() as (s, changes):
            coord = self._require_coordinator(s, access)
            rows = s.scalars(
                select(AlertFeed).where(AlertFeed.coordinator_id == coord.id,
                                        AlertFeed.seq > after)
                .order_by(AlertFeed.seq).limit(limit)).all()
            if not rows:
                return []
            now = self.now()
            self._refresh(s, changes, access, now, set(s.scalars(select(Alert.household_id).where(
                Alert.id.in_({r.alert_id for r in rows}), Alert.state != "closed"))))
            out = []
            for row in rows:
                alert = s.get_one(Alert, row.alert_id)
                view = self._view(s, alert, coord.id)
                _audit.append(s, access, _audit.Event(
                    "alert.watch", "read", subject_ref=alert.household_id,
                    basis=self._basis(s, alert) if view.involved else "",
                    purpose=consent.CARE_COORDINATION,
                    detail={"alert": view.alert_id, "cursor": row.seq, "change": row.change}),
                    now)
                out.append((row.seq, row.change, view))
            return out

    @retried
    def open_alert(self, access: _audit.Access,
                   alert_id: str) -> tuple[AlertView, list[tuple[str, str, Envelope]]]:
        """The alert and the envelopes sealed to the caller, after re-checking the basis."""
        with self._tx() as (s, changes):
            alert = self._my_alert(s, access, alert_id)
            now = self.now()
            if alert.state != "closed":
                self._refresh(s, changes, access, now, {alert.household_id})
            closed_reason = alert.closed_reason or "closed"
            if alert.state != "closed":
                bases: dict[str, str] = dict(s.execute(
                    select(AlertSignal.signal_id, AlertSignal.basis).where(
                        AlertSignal.alert_id == alert.id)).all())
                envelopes = [
                    (sid, org, env) for sid, org, env in s.execute(
                        select(Signal.id, Signal.organisation_id, Envelope)
                        .join(Envelope, Envelope.signal_id == Signal.id)
                        .where(Signal.id.in_(bases),
                               Envelope.recipient_id == alert.coordinator_id)
                        .order_by(Signal.observed_at, Signal.id)
                    )
                ]
                if alert.state == "new":
                    alert.state = "seen"
                    alert.seen_at, alert.seen_by = now, access.user_id
                    alert.updated_at = now
                    s.flush()
                    _matching.add_feed(alert, "updated", now, changes)
                by_org: dict[str, list[str]] = {}
                for sid, org, _ in envelopes:
                    by_org.setdefault(org, []).append(sid)
                for org, ids in sorted(by_org.items()):
                    _audit.append(s, access, _audit.Event(
                        "alert.open", "disclose", owner=org, subject_ref=alert.household_id,
                        basis="+".join(sorted({bases[i] for i in ids})),
                        purpose=consent.CARE_COORDINATION,
                        detail={"alert": alert.id, "envelopes": ids}), now)
                if not by_org:
                    _audit.append(s, access, _audit.Event(
                        "alert.open", "read", subject_ref=alert.household_id,
                        detail={"alert": alert.id, "envelopes": []}), now)
                return self._view(s, alert), envelopes
            household = alert.household_id
        # Outside the transaction, so that closing the alert above is kept.
        raise PermissionDenied(f"alert {alert_id} is closed ({closed_reason}): nothing to open",
                               subject_ref=household, detail={"alert": alert_id})

    def record_contact(self, access: _audit.Access, alert_id: str) -> AlertView:
        """The coordinator brought the professionals together: contact made."""
        return self._advance(access, alert_id, "contact_made", "alert.contact")

    def close_alert(self, access: _audit.Access, alert_id: str, reason: str) -> AlertView:
        """The coordinator closes the alert; the same involvement raises no new alert."""
        if reason not in _matching.COORDINATOR_CLOSINGS:
            raise InvalidInput(f"reason must be one of {', '.join(_matching.COORDINATOR_CLOSINGS)}")
        return self._advance(access, alert_id, "closed", "alert.close", reason)

    @retried
    def _advance(self, access: _audit.Access, alert_id: str, state: str, event_type: str,
                 reason: str = "") -> AlertView:
        with self._tx() as (s, changes):
            alert = self._my_alert(s, access, alert_id)
            now = self.now()
            self._refresh(s, changes, access, now, {alert.household_id})
            closed = alert.state == "closed"
            if closed and state == "closed":  # closing again: nothing to do
                _audit.append(s, access, _audit.Event(
                    event_type, "update", subject_ref=alert.household_id, reason=reason,
                    detail={"alert": alert.id, "state": alert.state, "duplicate": True}), now)
                return self._view(s, alert)
            household, closed_reason = alert.household_id, alert.closed_reason or "closed"
            if not closed and alert.state != state:
                if state == "closed":
                    _matching.close_alert(alert, reason, now, changes)
                    alert.closed_by = access.user_id
                    for task in s.scalars(select(Task).where(Task.alert_id == alert.id,
                                                             Task.state == "open")):
                        _matching.close_task(s, task, "alert_closed", now,
                                             _audit.Access.system(access), alert.household_id)
                else:
                    alert.state = state
                    alert.contact_made_at, alert.contact_made_by = now, access.user_id
                    alert.updated_at = now
                    _matching.add_feed(alert, "updated", now, changes)
                s.flush()
            if not closed:
                _audit.append(s, access, _audit.Event(
                    event_type, "update", subject_ref=alert.household_id, reason=reason,
                    detail={"alert": alert.id, "state": alert.state}), now)
                return self._view(s, alert)
        # Outside the transaction, so that closing the alert in the refresh above is kept.
        raise FailedPrecondition(f"alert {alert_id} is closed ({closed_reason})",
                                 subject_ref=household, detail={"alert": alert_id})

    # -- partners' tasks ------------------------------------------------------------

    @retried
    def list_tasks(self, access: _audit.Access, *, include_done: bool = False,
                   limit: int = 500) -> list[TaskView]:
        """This partner's open tasks (oldest first), and with ``include_done`` its most
        recent done ones; notices show the others' contacts as they are now.

        Each notice read is logged as a disclosure to the partner, one event per
        organisation whose professional's contact details it shows. A notice whose
        covenant is no longer in force shows no one.
        """
        with self._tx() as (s, changes):
            self._require_org(s, access)
            now = self.now()
            mine = Task.organisation_id == access.organisation_id
            open_ids = list(s.scalars(select(Task.id).where(mine, Task.state == "open")
                                      .order_by(Task.created_at, Task.id).limit(limit)))
            # Decide those households again first: a basis may have lapsed since.
            self._refresh(s, changes, access, now, set(s.scalars(
                select(Signal.household_id).join(Task, Task.signal_id == Signal.id).where(
                    Task.id.in_(open_ids), Task.kind != "archived_match"))))
            tasks = list(s.scalars(select(Task).where(Task.id.in_(open_ids),
                                                      Task.state == "open")
                                   .order_by(Task.created_at, Task.id)))
            if include_done:
                tasks += s.scalars(select(Task).where(mine, Task.state == "done")
                                   .order_by(Task.updated_at.desc(), Task.id).limit(limit))
            out = []
            for task in tasks:
                household = s.scalar(select(Signal.household_id).where(
                    Signal.id == task.signal_id)) or ""
                others = self._notice_contacts(s, access, task, now)
                out.append(TaskView(
                    task.id, task.kind, task.state, task.signal_id, task.covenant_id,
                    task.created_at, task.updated_at, task.closed_reason or "",
                    tuple(others)))
                _audit.append(s, access, _audit.Event(
                    "task.list", "read", subject_ref=household,
                    detail={"task": task.id, "kind": task.kind}), now)
            return out

    def _notice_contacts(self, s: Session, access: _audit.Access, task: Task,
                         now: datetime) -> list[tuple[str, str, _inputs.Contact]]:
        """The other professionals an open notice shows, each disclosure logged.

        A match notice shows only signals still shown in its open alert; any notice shows
        no one once its covenant is not in force (fail closed).
        """
        cov = self._latest_covenant(s, task.covenant_id)
        if (task.state != "open" or task.kind == "consent_needed" or not task.related
                or cov is None or not cov.in_force(now)):
            return []
        stmt = (select(Signal, Organisation.name)
                .join(Organisation, Organisation.id == Signal.organisation_id)
                .where(Signal.id.in_(task.related)).order_by(Signal.observed_at, Signal.id))
        if task.kind == "match_notice":
            stmt = stmt.join(AlertSignal, AlertSignal.signal_id == Signal.id).join(
                Alert, Alert.id == AlertSignal.alert_id).where(
                    Alert.id == task.alert_id, Alert.state != "closed",
                    _linkage.unindexed(_matching.active(now)))
        others = []
        for sig, name in s.execute(stmt):
            others.append((sig.organisation_id, name, _inputs.Contact(
                sig.professional_name, sig.professional_phone, sig.professional_email)))
            _audit.append(s, access, _audit.Event(
                f"notice.{task.kind}", "disclose", owner=sig.organisation_id,
                subject_ref=sig.household_id, basis=cov.ref,
                purpose=consent.CARE_COORDINATION,
                detail={"task": task.id, "signal": sig.id,
                        "recipient": access.organisation_id}), now)
        return others

    @retried
    def dismiss_task(self, access: _audit.Access, task_id: str) -> TaskView:
        """The partner read a notice: it leaves the open list."""
        with self._tx() as (s, _):
            self._require_org(s, access)
            now = self.now()
            task = s.get(Task, vocab.uuid_str(task_id, "task_id"))
            if task is None or task.organisation_id != access.organisation_id:
                raise NotFound(f"task {task_id} not found for this organisation")
            if task.kind == "consent_needed":
                raise FailedPrecondition(
                    "a consent-needed task closes itself when consent is recorded or the "
                    "match ends; it cannot be dismissed")
            household = s.scalar(select(Signal.household_id).where(
                Signal.id == task.signal_id)) or ""
            if task.state == "open":
                _matching.close_task(s, task, "dismissed", now, access, household)
            else:
                _audit.append(s, access, _audit.Event(
                    f"task.{task.kind}", "update", subject_ref=household,
                    detail={"task": task.id, "duplicate": True}), now)
            return TaskView(task.id, task.kind, task.state, task.signal_id, task.covenant_id,
                            task.created_at, task.updated_at, task.closed_reason or "")

    # -- administrators -------------------------------------------------------------

    @retried
    def register_organisation(self, access: _audit.Access, org_id: str,
                              name: str) -> Organisation:
        vocab.slug(org_id, "organisation_id")
        name = vocab.text(name, "name", max_len=200).strip()
        with self._tx() as (s, _):
            now = self.now()
            org = s.get(Organisation, org_id)
            action = "create" if org is None else "update"
            if org is None:
                org = Organisation(id=org_id, name=name, registered_at=now)
                s.add(org)
            elif org.name == name:
                _audit.append(s, access, _audit.Event(
                    "admin.organisation", "read",
                    detail={"organisation": org_id, "unchanged": True}), now)
                return org
            org.name = name
            s.flush()
            _audit.append(s, access, _audit.Event(
                "admin.organisation", action, detail={"organisation": org_id}), now)
            return org

    @retried
    def register_coordinator(self, access: _audit.Access, coordinator_id: str,
                             organisation_id: str, contact: _inputs.Contact,
                             public_key: bytes) -> Coordinator:
        vocab.slug(coordinator_id, "coordinator_id")
        vocab.slug(organisation_id, "organisation_id")
        if len(public_key) != 32:
            raise InvalidInput("public_key must be a raw 32-byte X25519 public key")
        try:
            crypto.seal(b"", public_key, b"samenloop/v1 key check")
        except ValueError:
            raise InvalidInput("public_key is not a usable X25519 public key") from None
        with self._tx() as (s, _):
            now = self.now()
            if s.get(Organisation, organisation_id) is None:
                raise NotFound(f"organisation {organisation_id} is not registered")
            coord = s.get(Coordinator, coordinator_id)
            values = {
                "organisation_id": organisation_id, "name": contact.name,
                "phone": contact.phone, "email": contact.email, "public_key": public_key,
                "key_fingerprint": crypto.fingerprint(public_key),
            }
            if coord is not None and all(getattr(coord, k) == v for k, v in values.items()):
                _audit.append(s, access, _audit.Event(
                    "admin.coordinator", "read",
                    detail={"coordinator": coordinator_id, "unchanged": True}), now)
                return coord
            action = "create" if coord is None else "update"
            if coord is None:
                coord = Coordinator(id=coordinator_id, registered_at=now, **values)
                s.add(coord)
            else:
                for k, v in values.items():
                    setattr(coord, k, v)
            s.flush()
            _audit.append(s, access, _audit.Event(
                "admin.coordinator", action,
                detail={"coordinator": coordinator_id, "organisation": organisation_id,
                        "key_fingerprint": crypto.fingerprint(public_key).hex()}), now)
            return coord

    @retried
    def register_covenant(self, access: _audit.Access,
                          source: str) -> tuple[CovenantVersion, consent.Covenant]:
        parsed = consent.parse_covenant(source)
        with self._tx() as (s, changes):
            now = self.now()
            for coordinator_id in (*parsed.coordinators, parsed.escalation_contact):
                if coordinator_id and s.get(Coordinator, coordinator_id) is None:
                    raise NotFound(f"coordinator {coordinator_id} is not registered")
            for party in sorted(parsed.parties):
                if s.get(Organisation, party) is None:
                    raise NotFound(f"party {party} is not a registered organisation")
            if parsed.linkage_profile and self._latest_profile_row(
                    s, parsed.linkage_profile) is None:
                raise NotFound(f"linkage profile {parsed.linkage_profile} is not registered "
                               "(samenloop admin add-profile)")
            latest = s.scalar(select(CovenantVersion).where(CovenantVersion.id == parsed.id)
                              .order_by(CovenantVersion.version.desc()).limit(1))
            if latest is not None and latest.source_sha256 == parsed.source_sha256:
                _audit.append(s, access, _audit.Event(
                    "admin.covenant", "read", basis=self._parse(latest).ref,
                    detail={"covenant": parsed.id, "unchanged": True}), now)
                return latest, self._parse(latest)
            row = CovenantVersion(
                id=parsed.id, version=(latest.version + 1) if latest else 1, name=parsed.name,
                coordinator_id=parsed.coordinators[0], valid_from=parsed.valid_from,
                valid_until=parsed.valid_until, source=source,
                source_sha256=parsed.source_sha256, registered_at=now,
                registered_by=access.user_id,
            )
            s.add(row)
            s.flush()
            cov = self._parse(row)
            _audit.append(s, access, _audit.Event(
                "admin.covenant", "create" if row.version == 1 else "update", basis=cov.ref,
                detail={"covenant": cov.id, "version": cov.version,
                        "sha256": parsed.source_sha256.hex()}), now)
            households = _matching.households_for_covenant(s, cov, now)
            self._evaluate(s, households, access, changes, now)
            return row, cov

    @retried
    def list_registry(self, access: _audit.Access) -> tuple[
            list[Organisation], list[Coordinator], list[tuple[CovenantVersion, consent.Covenant]]]:
        with self._tx() as (s, _):
            orgs = list(s.scalars(select(Organisation).order_by(Organisation.id)))
            coords = list(s.scalars(select(Coordinator).order_by(Coordinator.id)))
            covs = [(s.get_one(CovenantVersion, (c.id, c.version)), c) for c in self._covenants(s)]
            _audit.append(s, access, _audit.Event("admin.list", "read"), self.now())
            return orgs, coords, covs


@contextmanager
def _undoable(s: Session, changes: _matching.Changes) -> Iterator[None]:
    """A savepoint that, rolled back, also forgets what it added to ``changes``."""
    touched, feed = set(changes.households), len(changes.feed)
    try:
        with s.begin_nested():
            yield
    except (SamenloopError, DBAPIError):
        changes.households = touched
        del changes.feed[feed:]
        raise


def _encode_token(created_at: datetime, alert_id: str) -> str:
    raw = f"{created_at.isoformat()}|{alert_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str) -> tuple[datetime, str]:
    try:
        stamp, alert_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment.astimezone(UTC), vocab.uuid_str(alert_id, "page_token")
    except (ValueError, OverflowError, UnicodeDecodeError, InvalidInput):
        raise InvalidInput("page_token is not valid") from None
