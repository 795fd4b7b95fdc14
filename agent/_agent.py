"""The partner agent: from the partner's export to pseudonymous signals at the hub.

For each batch of rows: normalise, pseudonymise through the key service (verifying
its proof against the key this agent trusts), seal the identity to every recipient
coordinator, store the exact request in the outbox (the state database, committed), then
send it, and mark it submitted only when the hub has answered. Re-running on the same
file sends nothing twice; requests stored but not acknowledged ("pending") are resent
unchanged, and the hub counts a resent signal once (same signal id, same content).

A call the key service or the hub cannot answer (exchange.errors.Unavailable) is retried
with backoff for ``retry_seconds`` (agent._retry). When the hub stays away, the rest of
the export is still prepared into the outbox; ``deliver`` (and the next ``submit``)
sends what waits there.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import exc as sql_errors
from sqlalchemy import func, select

from agent import _mapping, _source
from agent import _normalise as norm
from agent._client import HubClient, KeyServiceClient
from agent._identity import envelope_context
from agent._models import STATES, ConsentRecord, Pin, Submission
from agent._retry import Backoff, Retrying
from agent._witness import Seen, Witness, newest, parse_hub_key, untrusted_log
from exchange import config, crypto, linkage, log, rpc, tls, vocab
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import (
    FailedPrecondition,
    IntegrityError,
    InvalidInput,
    NotFound,
    Unavailable,
    VerificationError,
)
from exchange.v1 import common_pb2, signal_pb2

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "_migrations"
_log = log.get("agent")
HUB, KEY_SERVICE = "hub", "key service"  # service names in retry logs
_REASONS = {
    "risk_gone": signal_pb2.WITHDRAWAL_REASON_RISK_GONE,
    "unjustified": signal_pb2.WITHDRAWAL_REASON_UNJUSTIFIED,
}


class _Changed(Exception):
    def __init__(self, previous: bytes) -> None:
        self.previous = previous


@config.section("agent")
@dataclass(frozen=True)
class AgentSettings(tls.TlsClientSettings):
    organisation: str
    user: str = "agent"
    hub: str = "127.0.0.1:50051"
    keyservice: str = "127.0.0.1:50052"
    state_database: str = "sqlite:///samenloop-agent.db"
    batch_size: int = 256
    # The hub's checkpoint origin and, optionally, its key (else pinned on first use).
    hub_origin: str = "samenloop.local/hub"
    hub_key: str = ""
    # Keep retrying an unavailable key service or hub this long (seconds) before giving
    # up; what was prepared stays in the outbox. 0: do not retry.
    retry_seconds: float = 300.0


@dataclass
class SubmitSummary:
    rows: int = 0
    invalid: list[_source.RowError] = field(default_factory=list)
    already_submitted: int = 0
    submitted: int = 0
    duplicates: int = 0
    resent: int = 0
    rejected: list[str] = field(default_factory=list)
    pseudonyms: int = 0
    # earlier signals whose tokens another profile version or token scheme made
    outdated: int = 0

    def describe_delivery(self) -> str:
        """What ``deliver`` did, in one line."""
        parts = [f"{self.resent} waiting signal{'' if self.resent == 1 else 's'} sent",
                 f"{self.submitted} accepted by the hub"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already at the hub")
        if self.rejected:
            parts.append(f"{len(self.rejected)} rejected by the hub")
        return ", ".join(parts)

    def describe(self) -> str:
        def n(count: int, word: str) -> str:
            return f"{count} {word}" if count == 1 else f"{count} {word}s"

        parts = [f"{n(self.rows, 'row')} read", f"{n(self.submitted, 'signal')} submitted"]
        if self.resent:
            parts.append(f"{self.resent} pending resent")
        if self.duplicates:
            parts.append(f"{self.duplicates} already at the hub")
        if self.already_submitted:
            parts.append(f"{self.already_submitted} skipped (submitted earlier)")
        if self.invalid:
            parts.append(f"{n(len(self.invalid), 'invalid row')} not submitted")
        if self.rejected:
            parts.append(f"{len(self.rejected)} rejected by the hub")
        return ", ".join(parts) + self.describe_outdated()

    def describe_outdated(self) -> str:
        if not self.outdated:
            return ""
        return (f"; {self.outdated} earlier signal{'' if self.outdated == 1 else 's'} "
                "carry tokens of another linkage profile version or token scheme and link "
                "with new signals only by BSN or address: 'samenloop agent rekey' with "
                "the whole caseload re-submits them")


@dataclass(frozen=True)
class Outbox:
    """What the state database holds: signals per state, and when."""

    counts: dict[str, int]
    oldest_pending: datetime | None
    last_sent: datetime | None


class Undelivered(Unavailable):
    """The key service or the hub stayed unavailable for the whole retry time.

    Nothing prepared is lost: it waits in the outbox as pending. ``summary`` is what the
    run did before it stopped.
    """

    def __init__(self, message: str, summary: SubmitSummary) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class _Run:
    """One submission run."""

    summary: SubmitSummary
    progress: Callable[[int], None] | None
    # When the hub stays unavailable: go on preparing and storing the records (pending),
    # and send nothing more in this run; otherwise stop.
    keep_preparing: bool = False
    hub_down: Unavailable | None = None


def _ts(value: datetime | None) -> object:
    return rpc.to_timestamp(value)


_EXACT = (crypto.KeyKind.PERSON, crypto.KeyKind.ADDRESS, crypto.KeyKind.MEMBER)
# The profile version and token scheme every submitted signal's tokens were made with,
# when that was last checked (Agent.outdated).
_MADE_WITH = "linkage:made-with"


class Agent:
    def __init__(self, settings: AgentSettings,
                 clock: Callable[[], datetime] | None = None,
                 retrying: Retrying | None = None) -> None:
        vocab.slug(settings.organisation, "organisation")
        if not 1 <= settings.batch_size <= crypto.MAX_BATCH // 2:
            raise InvalidInput(f"batch_size must be between 1 and {crypto.MAX_BATCH // 2}")
        self.settings = settings
        self._clock = clock or (lambda: datetime.now(UTC))
        self._retrying = retrying or Retrying(Backoff(settings.retry_seconds))
        self._key: tuple[bytes, str] | None = None
        # During a rotation: the key being retired, trusted and still evaluated.
        self._previous: tuple[bytes, str] | None = None
        # key id -> (kind, input) -> pseudonym, for this agent's lifetime (one run)
        self._cache: dict[str, dict[tuple[int, bytes], bytes]] = {}
        self._profile: linkage.Profile | None = None
        self._profile_fetched = False
        # OPRF elements evaluated, and seconds spent pseudonymising (benchmarks read it)
        self.stats: dict[str, float] = {"elements": 0, "seconds": 0.0}
        self._announced_previous = b""
        self._engine = make_engine(settings.state_database)
        self._sessions = session_factory(self._engine)
        self._caller = rpc.Caller(settings.organisation, settings.user, "partner")
        self._client_tls = settings.client_tls()
        self._keyservice = KeyServiceClient(settings.keyservice, self._caller,
                                            self._client_tls)
        self.hub = HubClient(settings.hub, self._caller, self._client_tls)
        try:
            self.witness = self._open_state()
        except BaseException:
            self.close()  # a refused start leaves no connection or channel open
            raise

    def _open_state(self) -> Witness:
        """Migrate the state database, check what it pins, and make the log's witness."""
        settings = self.settings
        migrate(self._engine, MIGRATIONS)
        given = parse_hub_key(settings.hub_key) if settings.hub_key else None
        pinned = self._pinned("key:hub")
        if given is not None and pinned is not None and given != pinned:
            raise IntegrityError(
                f"the configured hub_key {given.hex()} differs from the hub's checkpoint key "
                f"{pinned.hex()} pinned in this agent's state database: resolve this before "
                "trusting either")
        bound = self._pinned("organisation")
        if bound is not None and bound != settings.organisation.encode():
            raise FailedPrecondition(
                f"this agent's state database belongs to organisation {bound.decode()}, not "
                f"{settings.organisation}: each organisation needs its own state database")
        self._pin("organisation", settings.organisation.encode(), trust_new=False)
        last = self._pinned("log:checkpoint")
        return Witness(self.hub, origin=settings.hub_origin, trusted_key=given or pinned,
                       last=Seen.from_json(json.loads(last)) if last else None,
                       remember=self._remember_log)

    def close(self) -> None:
        self._keyservice.close()
        self.hub.close()
        self._engine.dispose()

    # -- retrying -------------------------------------------------------------------

    def _retry(self, operation: Callable[[], T], service: str) -> T:
        """``operation`` retried while ``service`` is unavailable (agent._retry), each
        retry on a fresh channel."""
        return self._retrying(operation, service, reconnect=lambda: self._reconnect(service))

    def _on_hub(self, call: Callable[[HubClient], T]) -> T:
        """A hub call, retried while the hub is unavailable; each attempt uses the
        channel open at that moment."""
        return self._retry(lambda: call(self.hub), HUB)

    def _reconnect(self, service: str) -> None:
        if service == HUB:
            old_hub, self.hub = self.hub, HubClient(self.settings.hub, self._caller,
                                                    self._client_tls)
            self.witness.hub = self.hub
            old_hub.close()
        else:
            old_ks, self._keyservice = self._keyservice, KeyServiceClient(
                self.settings.keyservice, self._caller, self._client_tls)
            old_ks.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keys ---------------------------------------------------------------------

    def _remember_log(self, key: bytes, seen: Seen) -> None:
        """Keep the hub's key and a verified checkpoint, in one transaction.

        Another process sharing this state database (or this one, slowly) may have kept a
        newer checkpoint meanwhile: the kept one only moves forward, and one of the same
        size with another root is a forked log. The rows are locked while deciding (SQLite
        takes the write lock at BEGIN); two first writers racing to insert retry once.
        """
        for attempt in range(3):
            try:
                self._remember_log_once(key, seen)
                return
            except sql_errors.IntegrityError:
                if attempt == 2:
                    raise
                _log.info("log checkpoint written concurrently, deciding again")

    def _remember_log_once(self, key: bytes, seen: Seen) -> None:
        with self._sessions.begin() as s:
            pins = {pin.name: pin for pin in s.scalars(
                select(Pin).where(Pin.name.in_(("key:hub", "log:checkpoint")))
                .with_for_update())}
            held = pins.get("key:hub")
            if held is not None and held.value != key:
                raise untrusted_log(
                    f"it signed with key {key.hex()}, but another process using this agent's "
                    f"state database pinned key {held.value.hex()}")
            stored = pins.get("log:checkpoint")
            before = None if stored is None else Seen.from_json(json.loads(stored.value))
            keep = newest(before, seen)
            now = self._clock()
            if held is None:
                s.add(Pin(name="key:hub", value=key, recorded_at=now))
            if keep == before:
                return  # what is kept is as new or newer
            value = json.dumps(keep.to_json()).encode()
            if stored is None:
                s.add(Pin(name="log:checkpoint", value=value, recorded_at=now))
            else:
                stored.value, stored.recorded_at = value, now

    def witness_log(self) -> None:
        """Check the hub's access log against the last checkpoint this agent saw.

        Done before every operation: an agent does not feed a log that forked or shrank.
        """
        self.witness.contact()

    def _pinned(self, name: str) -> bytes | None:
        with self._sessions() as s:
            pin = s.get(Pin, name)
            return None if pin is None else pin.value

    def _pin(self, name: str, value: bytes, *, trust_new: bool) -> bytes | None:
        """Pin a value on first use. Returns the previous value when it changed (and
        ``trust_new`` allowed it), None otherwise; a change without it is refused."""
        with self._sessions.begin() as s:
            pin = s.get(Pin, name)
            if pin is None:
                s.add(Pin(name=name, value=value, recorded_at=self._clock()))
                _log.info("pinned on first use", name=name)
                return None
            if pin.value == value:
                return None
            if not trust_new:
                raise _Changed(pin.value)
            previous = pin.value
            pin.value, pin.recorded_at = value, self._clock()
            _log.warning("pinned value replaced", name=name)
            return previous

    def oprf_key(self, *, trust_new: bool = False) -> tuple[bytes, str]:
        """The key service's public key, pinned on first use (or on ``trust_new``)."""
        if self._key is not None and not trust_new:
            return self._key
        response = self._keyservice.public_key()
        if response.suite != crypto.OPRF_SUITE or len(response.public_key) != 32:
            raise FailedPrecondition("the key service offers an unsupported OPRF suite")
        public_key = bytes(response.public_key)
        if crypto.key_id(public_key) != response.key_id:
            raise FailedPrecondition("the key service's key id does not match its key")
        try:
            self._pin("key:oprf", public_key, trust_new=trust_new)
        except _Changed as changed:
            raise FailedPrecondition(
                f"the key service now presents OPRF key {response.key_id}, not the key "
                f"{crypto.key_id(changed.previous)} this agent trusts. If it was rotated on "
                "purpose (ask the key service's operator), run 'samenloop agent trust-key'; "
                "pseudonyms made with the new key do not match the old ones") from None
        self._key = (public_key, response.key_id)
        self._announced_previous = bytes(response.previous_public_key)
        previous = self._pinned("key:oprf:previous")
        self._previous = ((previous, crypto.key_id(previous))
                          if previous and previous == self._announced_previous else None)
        return self._key

    def recipients(self, *, trust_new: bool = False) -> list[signal_pb2.Recipient]:
        """The coordinators to seal to, each key pinned on first use."""
        found = list(self.hub.call(self.hub.signals.GetRecipients,
                                   signal_pb2.GetRecipientsRequest()).recipients)
        for r in found:
            key = bytes(r.public_key)
            if bytes(r.key_fingerprint) != crypto.fingerprint(key):
                raise FailedPrecondition(
                    f"the hub sent a key for coordinator {r.coordinator_id} whose "
                    "fingerprint does not match it")
            try:
                self._pin(f"key:coordinator:{r.coordinator_id}", key, trust_new=trust_new)
            except _Changed as changed:
                raise FailedPrecondition(
                    f"the envelope key of coordinator {r.coordinator_id} changed (fingerprint "
                    f"{crypto.fingerprint(key).hex()}, trusted "
                    f"{crypto.fingerprint(changed.previous).hex()}). Identities are only "
                    "sealed to trusted keys: confirm the new fingerprint with the "
                    "municipality, then run 'samenloop agent trust-key'") from None
        return found

    def trust_current_keys(self) -> list[str]:
        """Pin the keys the key service and the hub present now; say what changed."""
        before = {"oprf": self._pinned("key:oprf")}
        _, key_id = self.oprf_key(trust_new=True)
        changed = [f"OPRF key {key_id}"] if before["oprf"] != self._pinned("key:oprf") else []
        if changed and before["oprf"] and before["oprf"] == self._announced_previous:
            # A rotation: new signals also carry the retiring key's pseudonyms, so that
            # they link with the old ones until the caseload is re-submitted ('rekey').
            self._pin("key:oprf:previous", before["oprf"], trust_new=True)
            self._previous = (before["oprf"], crypto.key_id(before["oprf"]))
            changed.append(f"the retiring OPRF key {self._previous[1]} is used beside it "
                           "until the key service stops offering it")
        for r in self.hub.call(self.hub.signals.GetRecipients,
                               signal_pb2.GetRecipientsRequest()).recipients:
            name = f"key:coordinator:{r.coordinator_id}"
            old = self._pinned(name)
            self._pin(name, bytes(r.public_key), trust_new=True)
            if old != bytes(r.public_key):
                changed.append(f"coordinator {r.coordinator_id} key "
                               f"{crypto.fingerprint(bytes(r.public_key)).hex()}")
        return changed

    def pseudonymise(self, items: list[tuple[crypto.KeyKind, bytes]]) -> list[bytes]:
        """Pseudonyms under the current key."""
        return self._pseudonymise(items, self._retry(self.oprf_key, KEY_SERVICE))

    def pseudonymise_all(self, items: list[tuple[crypto.KeyKind, bytes]]
                         ) -> list[list[bytes]]:
        """Each item's pseudonyms: under the current key and, during a key rotation, also
        under the retiring key, so that new signals link with those made before."""
        current = self.pseudonymise(items)
        if self._previous is None:
            return [[p] for p in current]
        previous = self._pseudonymise(items, self._previous)
        return [[c, p] for c, p in zip(current, previous, strict=True)]

    def _pseudonymise(self, items: list[tuple[crypto.KeyKind, bytes]],
                      key: tuple[bytes, str]) -> list[bytes]:
        public_key, key_id = key

        def evaluate(blinded: Sequence[bytes]) -> tuple[Sequence[bytes], bytes]:
            # The same blinded elements again: the key service learns nothing more.
            return self._retry(lambda: self._keyservice.evaluator(key_id)(blinded),
                               KEY_SERVICE)

        # Inputs repeat within a run (a household's address, common name bands): each is
        # evaluated once, and its pseudonym kept in memory for the rest of the run.
        cache = self._cache.setdefault(key_id, {})
        wanted = sorted({(int(k), v) for k, v in items} - set(cache))
        started = time.perf_counter()
        try:
            made = crypto.pseudonymise([(crypto.KeyKind(k), v) for k, v in wanted],
                                       public_key=public_key, evaluate=evaluate,
                                       batch_size=crypto.MAX_BATCH // 2) if wanted else []
            cache.update(zip(wanted, made, strict=True))
            self.stats["elements"] += len(wanted)
            self.stats["seconds"] += time.perf_counter() - started
            return [cache[(int(k), v)] for k, v in items]
        except VerificationError:
            _log.error("key service proof did not verify", key_id=key_id)
            raise VerificationError(
                f"the key service's answer did not verify against its published key "
                f"{key_id}: nothing of this batch was submitted. The key service is "
                "misconfigured or not the one this agent trusts; tell its operator") from None

    # -- the outbox ---------------------------------------------------------------

    def outbox(self) -> Outbox:
        """How many signals the state database holds per state (no network)."""
        with self._sessions() as s:
            counts = dict.fromkeys(STATES, 0)
            for state, count in s.execute(select(Submission.state, func.count())
                                          .group_by(Submission.state)).all():
                counts[state] = count
            oldest = s.scalar(select(func.min(Submission.created_at))
                              .where(Submission.state == "pending"))
            last = s.scalar(select(func.max(Submission.sent_at)))
        return Outbox(counts, oldest, last)

    def _waiting(self) -> int:
        with self._sessions() as s:
            return s.scalar(select(func.count()).select_from(Submission)
                            .where(Submission.state == "pending")) or 0

    def _undelivered(self, exc: Unavailable, summary: SubmitSummary, *,
                     all_read: bool) -> Undelivered:
        """The one-line error of a run that gave up: what waits, and how it gets sent."""
        waiting = self._waiting()
        if waiting:
            told = (f"{'1 signal waits' if waiting == 1 else f'{waiting} signals wait'} in "
                    "the outbox")
        else:
            told = "Nothing waits in the outbox"
        if not all_read:
            told += ("; the input was not read: submit it again later" if not summary.rows
                     else "; the input was not read to the end: submit it again later "
                     "(what is in the outbox is neither prepared nor sent twice)")
        elif waiting:
            told += ("; 'samenloop agent deliver' (or the next 'agent submit') sends "
                     f"{'it' if waiting == 1 else 'them'}")
        _log.warning("run stopped, signals wait in the outbox", waiting=waiting,
                     complete=all_read)
        return Undelivered(f"{exc}. {told}", summary)

    def deliver(self, progress: Callable[[int], None] | None = None) -> SubmitSummary:
        """Send every pending signal in the outbox, oldest first, in batches.

        Raises Undelivered when the hub stays unavailable; what was not sent stays pending.
        """
        summary = SubmitSummary()
        run = _Run(summary, progress)
        try:
            self._retry(self.witness_log, HUB)
            self._deliver_waiting(run)
        except Unavailable as exc:
            raise self._undelivered(exc, summary, all_read=True) from None
        _log.info("delivery done", sent=summary.resent, accepted=summary.submitted,
                  duplicates=summary.duplicates, rejected=len(summary.rejected))
        return summary

    def _deliver_waiting(self, run: _Run) -> None:
        with self._sessions() as s:
            ids = list(s.scalars(select(Submission.signal_id)
                                 .where(Submission.state == "pending")
                                 .order_by(Submission.created_at, Submission.signal_id)))
        size = self.settings.batch_size
        for start in range(0, len(ids), size):
            with self._sessions() as s:  # still pending: another run may have sent some
                requests = list(s.scalars(select(Submission.request).where(
                    Submission.signal_id.in_(ids[start:start + size]),
                    Submission.state == "pending").order_by(Submission.created_at,
                                                            Submission.signal_id)))
            if requests:
                parsed = [signal_pb2.SubmitSignalRequest.FromString(r) for r in requests]
                run.summary.resent += len(parsed)
                self._send(run, [p.signal_id for p in parsed], parsed, [0] * len(parsed))

    # -- submitting ---------------------------------------------------------------

    def linkage_profile(self) -> linkage.Profile | None:
        """The linkage profile of this partner's covenants (None: exact keys only),
        fetched from the hub once per run."""
        if not self._profile_fetched:
            found = self._on_hub(lambda hub: hub.call(
                hub.signals.GetLinkageProfile, signal_pb2.GetLinkageProfileRequest()))
            if found.profile_id:
                parsed = linkage.parse_profile(found.toml)
                if parsed.id != found.profile_id:
                    raise FailedPrecondition("the hub sent a linkage profile under another id")
                self._profile = linkage.Profile(**{**parsed.__dict__,
                                                   "version": found.version})
                _log.info("linkage profile", profile=self._profile.ref)
            self._profile_fetched = True
        return self._profile

    def _made_with(self, rec: _source.Record) -> tuple[str, int]:
        """How the record's fuzzy tokens were made, as the request says it: the profile
        version and the token scheme (none without fuzzy tokens)."""
        if self._profile is None or all(k in _EXACT for k, _ in rec.keys):
            return "", 0
        return self._profile.ref, linkage.TOKEN_SCHEME

    def records(self, path: Path | None, mapping: Path | None = None
                ) -> Iterator[_source.Record | _source.RowError]:
        """The records of an export: a CSV with the standard columns, or any source a
        mapping file describes (then ``path`` is the file, or None for an SQL query)."""
        profile = self._retry(self.linkage_profile, HUB)
        if mapping is None:
            if path is None:
                raise InvalidInput("give the export to read (--input)")
            yield from _source.read_csv(path, profile)
            return
        described = _mapping.load_mapping(mapping)
        if profile is not None and described.profile != profile.id:
            raise FailedPrecondition(
                f"the mapping maps to linkage profile '{described.profile}', but this "
                f"partner's covenant uses '{profile.id}': update the mapping file")
        for row in _mapping.read(described, path):
            if isinstance(row, _mapping.RowProblem):
                yield _source.RowError(row.row, row.field, row.problem)
            else:
                yield _source.record(row.row, row.values, profile)

    def submit_file(self, path: Path | None, progress: Callable[[int], None] | None = None,
                    mapping: Path | None = None) -> SubmitSummary:
        return self.submit_records(self.records(path, mapping), progress)

    def submit_records(self, records: Iterable[_source.Record | _source.RowError],
                       progress: Callable[[int], None] | None = None) -> SubmitSummary:
        """Deliver what waits in the outbox, then prepare, store and send the records.

        ``progress`` advances once per waiting signal sent and once per record. Raises
        Undelivered when the key service or the hub stays unavailable for
        ``retry_seconds``. When the hub does, the rest of the records are still prepared
        and stored (pending) for ``deliver``; when the key service does, the run stops.
        """
        summary = SubmitSummary()
        run = _Run(summary, progress, keep_preparing=True)
        try:
            self._retry(self.witness_log, HUB)
            self._deliver_waiting(_Run(summary, progress))
            recipients = self._retry(self.recipients, HUB)
        except Unavailable as exc:
            raise self._undelivered(exc, summary, all_read=False) from None
        try:
            self._submit(records, recipients, run)
        except Unavailable as exc:
            raise self._undelivered(exc, summary, all_read=False) from None
        if run.hub_down is not None:
            raise self._undelivered(run.hub_down, summary, all_read=True)
        summary.outdated = self.outdated()
        _log.info("submission run done", rows=summary.rows, submitted=summary.submitted,
                  invalid=len(summary.invalid), rejected=len(summary.rejected),
                  duplicates=summary.duplicates)
        return summary

    def _submit(self, records: Iterable[_source.Record | _source.RowError],
                recipients: list[signal_pb2.Recipient], run: _Run) -> None:
        summary, progress = run.summary, run.progress
        seen: set[str] = set()
        batch: list[_source.Record] = []
        pending: list[Submission] = []
        for item in records:
            summary.rows += 1
            if isinstance(item, _source.RowError):
                summary.invalid.append(item)
                _log.info("row not submitted", row=item.row, field=item.field,
                          problem=item.problem)
                if progress:
                    progress(1)
                continue
            if item.case_ref in seen:
                error = _source.RowError(item.row, "case_ref", "appears twice in this input")
                summary.invalid.append(error)
                _log.info("row not submitted", row=item.row, field="case_ref",
                          problem=error.problem)
                if progress:
                    progress(1)
                continue
            seen.add(item.case_ref)
            # A case with a signal in the outbox reuses it: a rerun after a crash never
            # gives a case a second signal id.
            earlier = self._active_submission(item.case_ref)
            if earlier is not None and earlier.state == "pending":
                pending.append(earlier)
            elif earlier is not None:
                summary.already_submitted += 1
                if progress:
                    progress(1)
            else:
                batch.append(item)
            if len(batch) >= self.settings.batch_size:
                self._send_batch(run, batch, recipients)
                batch = []
        if batch:
            self._send_batch(run, batch, recipients)
        if pending:  # left pending by a run that stopped, or stored meanwhile by another
            summary.resent += len(pending)
            self._send(run, [p.signal_id for p in pending],
                       [signal_pb2.SubmitSignalRequest.FromString(p.request) for p in pending],
                       [0] * len(pending))

    # -- the exclusion list --------------------------------------------------------

    def exclude_addresses(self, path: Path) -> tuple[int, int, list[_source.RowError]]:
        """Put institutional addresses (a CSV with postcode, house_number and optionally
        house_addition) on the hub's exclusion list, as address keys: the municipality's
        agent only. Returns (added, total on the list, rows that could not be read)."""
        keys: set[bytes] = set()
        problems: list[_source.RowError] = []
        for row, cells in _source.read_rows(path):
            try:
                number = norm.house_number(f"{cells.get('house_number', '')} "
                                           f"{cells.get('house_addition', '')}".strip())
                keys.add(norm.address_key(norm.postcode(cells.get("postcode", "")),
                                          number).encode())
            except norm.FieldError as exc:
                problems.append(_source.RowError(row, "address", str(exc)))
        if not keys:
            raise InvalidInput(f"{path} holds no address to exclude")
        self._retry(self.witness_log, HUB)
        pseudonyms = self.pseudonymise_all([(crypto.KeyKind.ADDRESS, v) for v in sorted(keys)])
        flat = sorted({p for ps in pseudonyms for p in ps})
        added = total = 0
        for start in range(0, len(flat), 1024):
            request = signal_pb2.ExcludeAddressesRequest(keys=[
                common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_ADDRESS, value=v)
                for v in flat[start:start + 1024]])
            response = self._exclude_at_hub(request)
            added, total = added + response.added, response.total
        _log.info("addresses excluded", added=added, total=total, unreadable=len(problems))
        return added, total, problems

    def _exclude_at_hub(self, request: signal_pb2.ExcludeAddressesRequest
                        ) -> signal_pb2.ExcludeAddressesResponse:
        return self._on_hub(lambda hub: hub.call(hub.signals.ExcludeAddresses, request))

    # -- key rotation -------------------------------------------------------------

    def rekey(self, records: Iterable[_source.Record | _source.RowError],
              progress: Callable[[int], None] | None = None) -> SubmitSummary:
        """Re-submit every case of the export whose signal was made with another OPRF key
        (after a rotation, 'trust-key'), another linkage profile version or another token
        scheme (after an upgrade of this agent). Each new signal carries the current key's
        pseudonyms (and the retiring key's, while it is offered) and tokens, and replaces
        the old one at the hub, which keeps its place in alerts and tasks. The records
        must come with the linkage profile (:meth:`records`). Safe to run again."""
        summary = SubmitSummary()
        run = _Run(summary, progress)
        self._retry(self.witness_log, HUB)
        self._retry(self.linkage_profile, HUB)
        _, key_id = self._retry(self.oprf_key, KEY_SERVICE)
        recipients = self._retry(self.recipients, HUB)
        batch: list[_source.Record] = []
        replaces: dict[str, str] = {}
        waiting: list[Submission] = []
        for item in records:
            summary.rows += 1
            if isinstance(item, _source.RowError):
                summary.invalid.append(item)
                if progress:
                    progress(1)
                continue
            with self._sessions() as s:
                mine = s.scalars(select(Submission).where(
                    Submission.case_ref == item.case_ref,
                    Submission.state.in_(("pending", "submitted")))).all()
            pending = [m for m in mine if m.state == "pending"]
            old = next((m for m in mine if m.state == "submitted"), None)
            if pending:
                waiting += pending  # stored by a run that stopped: send it as it is
            elif old is None or (old.key_id == key_id
                                 and self._still_made_with(old, item)):
                summary.already_submitted += 1  # nothing to do, or done already
                if progress:
                    progress(1)
            else:
                batch.append(item)
                replaces[item.case_ref] = old.signal_id
            if len(batch) >= self.settings.batch_size:
                self._send_batch(run, batch, recipients, replaces)
                batch = []
        if batch:
            self._send_batch(run, batch, recipients, replaces)
        if waiting:
            summary.resent += len(waiting)
            self._send(run, [w.signal_id for w in waiting],
                       [signal_pb2.SubmitSignalRequest.FromString(w.request) for w in waiting],
                       [0] * len(waiting))
        summary.outdated = self.outdated()
        _log.info("rekey run done", rows=summary.rows, replaced=summary.submitted,
                  current=summary.already_submitted, rejected=len(summary.rejected))
        return summary

    def outdated(self) -> int:
        """How many submitted signals carry tokens of another linkage profile version or
        token scheme than this agent makes now: they link with new signals only through
        exact keys until 'rekey' re-submits them. Read only when that changed since the
        last time there were none (a pin), so that a usual run reads nothing."""
        if self._profile is None:
            return 0
        current = linkage.signal_ref(self._profile.ref, linkage.TOKEN_SCHEME).encode()
        if self._pinned(_MADE_WITH) == current:
            return 0
        count = 0
        with self._sessions() as s:
            for raw in s.scalars(select(Submission.request)
                                 .where(Submission.state == "submitted")):
                sent = signal_pb2.SubmitSignalRequest.FromString(raw)
                if sent.linkage_profile and linkage.signal_ref(
                        sent.linkage_profile, sent.token_scheme).encode() != current:
                    count += 1
        if not count:
            self._pin(_MADE_WITH, current, trust_new=True)
        return count

    def _still_made_with(self, old: Submission, rec: _source.Record) -> bool:
        """Whether the old signal's tokens were made as this record's would be now."""
        sent = signal_pb2.SubmitSignalRequest.FromString(old.request)
        return (sent.linkage_profile, sent.token_scheme) == self._made_with(rec)

    def _active_submission(self, case_ref: str) -> Submission | None:
        with self._sessions() as s:
            return s.scalar(select(Submission).where(
                Submission.case_ref == case_ref,
                Submission.state.in_(("pending", "submitted"))).limit(1))

    def _build(self, records: list[_source.Record], recipients: list[signal_pb2.Recipient],
               replaces: dict[str, str] | None = None) -> list[Submission]:
        items = [key for rec in records for key in rec.keys]
        pseudonyms = iter(self.pseudonymise_all(items))
        assert self._key is not None  # pseudonymise_all fetched it
        org = self.settings.organisation
        now = self._clock()
        out = []
        for rec in records:
            signal_id = str(uuid.uuid4())
            keys = [(kind, value) for kind, _ in rec.keys for value in next(pseudonyms)]
            plaintext = rec.identity.to_bytes(signal_id, org)
            made_with = self._made_with(rec)
            request = signal_pb2.SubmitSignalRequest(
                signal_id=signal_id,
                keys=[common_pb2.PseudonymousKey(kind=int(kind), value=value)  # type: ignore[arg-type]
                      for kind, value in keys],
                category=rec.category, region=rec.region,
                professional=common_pb2.Contact(name=rec.professional[0],
                                                phone=rec.professional[1],
                                                email=rec.professional[2]),
                observed_at=_ts(rec.observed_at),  # type: ignore[arg-type]
                expires_at=_ts(rec.expires_at),  # type: ignore[arg-type]
                envelopes=[
                    common_pb2.SealedEnvelope(
                        recipient_id=r.coordinator_id, key_fingerprint=r.key_fingerprint,
                        scheme=crypto.ENVELOPE_SCHEME,
                        ciphertext=crypto.seal(plaintext, bytes(r.public_key),
                                               envelope_context(signal_id, org,
                                                                r.coordinator_id)))
                    for r in recipients
                ],
                replaces=(replaces or {}).get(rec.case_ref, ""),
                linkage_profile=made_with[0], token_scheme=made_with[1],
            )
            person = next((v for k, v in keys if k is crypto.KeyKind.PERSON), None)
            out.append(Submission(
                signal_id=signal_id, case_ref=rec.case_ref, person_key=person,
                request=request.SerializeToString(deterministic=True), state="pending",
                created_at=now, sent_at=None, withdrawn_at=None, withdrawal_reason=None,
                error=None, key_id=self._key[1], replaced_by=None))
        return out

    def _send_batch(self, run: _Run, records: list[_source.Record],
                    recipients: list[signal_pb2.Recipient],
                    replaces: dict[str, str] | None = None) -> None:
        # Nothing is stored until the whole batch is pseudonymised and sealed; a run
        # stopped before this commit leaves no trace, and its rows get new ids next time
        # (the hub never saw the old ones).
        submissions = self._build(records, recipients, replaces)
        run.summary.pseudonyms += sum(len(r.keys) for r in records)
        with self._sessions.begin() as s:
            s.add_all(submissions)
        self._send(run, [x.signal_id for x in submissions],
                   [signal_pb2.SubmitSignalRequest.FromString(x.request) for x in submissions],
                   [r.row for r in records])

    def _send(self, run: _Run, ids: list[str], requests: list[signal_pb2.SubmitSignalRequest],
              rows: list[int]) -> None:
        """Send stored (pending) requests; mark them on the hub's answer.

        Once the hub has stayed unavailable for the retry time in a submission run, the
        requests stay pending and later batches are only prepared and stored.
        """
        summary, progress = run.summary, run.progress
        if run.hub_down is not None:
            if progress:
                progress(len(ids))
            return
        try:
            response = self._on_hub(lambda hub: hub.submit_many(requests))
        except Unavailable as exc:
            if not run.keep_preparing:
                raise
            run.hub_down = exc
            _log.warning("hub unavailable, storing the rest without sending",
                         waiting=len(ids))
            if progress:
                progress(len(ids))
            return
        rejected = {e.index: e for e in response.rejected}
        now = self._clock()
        with self._sessions.begin() as s:
            for index, signal_id in enumerate(ids):
                sub = s.get_one(Submission, signal_id)
                if index in rejected:
                    sub.state, sub.error = "rejected", rejected[index].message[:300]
                    where = f"row {rows[index]}" if rows[index] else f"signal {signal_id}"
                    summary.rejected.append(f"{where}: {rejected[index].message}")
                    _log.warning("signal rejected by the hub", row=rows[index],
                                 signal_id=signal_id, code=rejected[index].code)
                else:
                    sub.state, sub.sent_at = "submitted", now
                    replaced = requests[index].replaces
                    old = s.get(Submission, replaced) if replaced else None
                    if old is not None:  # a key rotation's replacement took its place
                        old.state, old.replaced_by = "replaced", signal_id
        summary.duplicates += response.duplicates
        summary.submitted += response.accepted
        if progress:
            progress(len(ids))

    # -- withdrawing --------------------------------------------------------------

    def withdraw(self, *, reason: str, case_ref: str | None = None,
                 signal_id: str | None = None) -> list[str]:
        """Withdraw this partner's signal(s) for a case, or one signal by id."""
        if reason not in _REASONS:
            raise InvalidInput(f"reason must be one of {', '.join(_REASONS)}")
        self._retry(self.witness_log, HUB)
        if signal_id:
            which = Submission.signal_id == vocab.uuid_str(signal_id, "signal id")
        elif case_ref:
            which = Submission.case_ref == case_ref
        else:
            raise InvalidInput("give a case reference or a signal id")
        # A signal withdrawn as "risk gone" is archived at the hub; judging it unjustified
        # later deletes it there. One withdrawn as unjustified is gone.
        states = ("submitted", "withdrawn") if reason == "unjustified" else ("submitted",)
        with self._sessions() as s:
            ids = list(s.scalars(select(Submission.signal_id).where(
                which, Submission.state.in_(states),
                Submission.withdrawal_reason.is_distinct_from("unjustified"))))
            earlier = None if ids else s.scalar(
                select(Submission.withdrawn_at).where(which, Submission.state == "withdrawn")
                .order_by(Submission.withdrawn_at.desc()).limit(1))
            waiting = not ids and s.scalar(select(Submission.signal_id).where(
                which, Submission.state == "pending").limit(1)) is not None
        if earlier is not None:
            raise FailedPrecondition(
                f"that signal was already withdrawn on {earlier.date().isoformat()}")
        if waiting:
            raise FailedPrecondition(
                "that signal waits in the outbox (pending): send it first with "
                "'samenloop agent deliver', then withdraw it")
        if not ids:
            raise NotFound("no submitted signal for that case reference or id")
        for done, sid in enumerate(ids):
            try:
                response = self._withdraw_at_hub(
                    signal_pb2.WithdrawSignalRequest(signal_id=sid, reason=_REASONS[reason]))
                withdrawn_at = rpc.from_timestamp(response.withdrawn_at, "withdrawn_at")
            except NotFound:
                if reason != "unjustified":
                    raise
                # Deleted already (an earlier answer was lost, or the archive was purged).
                withdrawn_at = self._clock()
            except Unavailable as exc:
                raise Unavailable(
                    f"{exc}. {done} of {len(ids)} signals withdrawn: run the same command "
                    "again later for the rest") from None
            with self._sessions.begin() as s:
                sub = s.get_one(Submission, sid)
                sub.state = "withdrawn"
                sub.withdrawn_at = sub.withdrawn_at or withdrawn_at
                sub.withdrawal_reason = reason
            _log.info("signal withdrawn", signal_id=sid, reason=reason)
        return ids

    def _withdraw_at_hub(self, request: signal_pb2.WithdrawSignalRequest,
                         ) -> signal_pb2.WithdrawSignalResponse:
        # Repeating a withdrawal is harmless: the hub answers with the first one.
        return self._on_hub(lambda hub: hub.call(hub.signals.WithdrawSignal, request))

    # -- consent ------------------------------------------------------------------

    def _person_keys(self, case_ref: str | None, bsn: str | None) -> list[bytes]:
        if bsn:
            try:
                value = norm.bsn(bsn)
            except norm.FieldError as exc:
                raise InvalidInput(f"the BSN {exc}") from None
            # during a key rotation: the retiring key's pseudonym too
            return self.pseudonymise_all([(crypto.KeyKind.PERSON, value.encode())])[0]
        if not case_ref:
            raise InvalidInput("give a case reference or a BSN")
        with self._sessions() as s:
            keys = set(s.scalars(select(Submission.person_key).where(
                Submission.case_ref == case_ref, Submission.person_key.is_not(None))))
        if not keys:
            raise NotFound(f"case {case_ref} has no signal with a BSN: give the person's BSN")
        return sorted(k for k in keys if k is not None)

    def grant_consent(self, *, covenant_id: str, evidence: str, valid_until: datetime,
                      purposes: list[str], case_ref: str | None = None,
                      bsn: str | None = None,
                      valid_from: datetime | None = None) -> signal_pb2.ConsentRecord:
        vocab.reference(evidence, "the evidence reference")
        self._retry(self.witness_log, HUB)
        keys = self._person_keys(case_ref, bsn)
        consent_id = str(uuid.uuid4())
        request = signal_pb2.RecordConsentRequest(
            consent_id=consent_id,
            subject_keys=[common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_PERSON, value=k)
                          for k in keys],
            covenant_id=covenant_id, purposes=purposes, evidence_reference=evidence,
            valid_from=_ts(valid_from),  # type: ignore[arg-type]
            valid_until=_ts(valid_until),  # type: ignore[arg-type]
        )
        # Resent unchanged (same consent id) after an unanswered attempt: recorded once.
        record = self._on_hub(lambda hub: hub.call(hub.signals.RecordConsent, request))
        with self._sessions.begin() as s:
            s.add(ConsentRecord(consent_id=consent_id, case_ref=case_ref or "",
                                covenant_id=covenant_id, recorded_at=self._clock(),
                                revoked_at=None))
        _log.info("consent recorded", consent_id=consent_id, covenant=covenant_id)
        return record

    def revoke_consent(self, consent_id: str) -> signal_pb2.ConsentRecord:
        self._retry(self.witness_log, HUB)
        request = signal_pb2.RevokeConsentRequest(consent_id=consent_id)
        record = self._on_hub(lambda hub: hub.call(hub.signals.RevokeConsent, request))
        with self._sessions.begin() as s:
            row = s.get(ConsentRecord, consent_id)
            if row is not None:
                row.revoked_at = self._clock()
        _log.info("consent revoked", consent_id=consent_id)
        return record

    # -- tasks and notices ------------------------------------------------------------

    def tasks(self, *, include_done: bool = False) -> list[tuple[signal_pb2.Task, str]]:
        """This partner's tasks, each with the case reference of the signal it is about."""
        tasks = list(self.hub.call(self.hub.signals.ListTasks, signal_pb2.ListTasksRequest(
            include_done=include_done)).tasks)
        with self._sessions() as s:
            refs = dict(s.execute(select(Submission.signal_id, Submission.case_ref).where(
                Submission.signal_id.in_([t.signal_id for t in tasks]))).all())
        return [(t, refs.get(t.signal_id, "")) for t in tasks]

    def dismiss_task(self, task_id: str) -> signal_pb2.Task:
        return self.hub.call(self.hub.signals.DismissTask,
                             signal_pb2.DismissTaskRequest(task_id=task_id))

    def consents(self, case_ref: str | None = None) -> Iterator[ConsentRecord]:
        with self._sessions() as s:
            stmt = select(ConsentRecord).order_by(ConsentRecord.recorded_at)
            if case_ref:
                stmt = stmt.where(ConsentRecord.case_ref == case_ref)
            yield from s.scalars(stmt).all()
