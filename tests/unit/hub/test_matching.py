"""Deciding households: a transaction decides every household it touched together (one
lock statement, one read of each table for all of them); the outcome must be what
deciding them one signal at a time gives."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from exchange import checkpoint
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import SamenloopError
from hub import _linkage, _matching
from hub._core import Hub
from hub._models import Alert, AlertSignal, Match, Signal, Task
from hub._server import MIGRATIONS
from tests.support import (
    COVENANT,
    Clock,
    access,
    consent_input,
    row_counts,
    setup_registry,
    signal,
)

# Each family: the organisations that signal about its one person, with their category.
# org-d is no party to the covenant; mental health needs the household's consent.
FAMILIES: list[list[tuple[str, str]]] = [
    [("org-a", "youth_care"), ("org-b", "housing")],
    [("org-a", "youth_care"), ("org-b", "mental_health")],
    [("org-a", "youth_care"), ("org-b", "housing"), ("org-c", "debt")],
    [("org-a", "youth_care")],
    [("org-a", "mental_health"), ("org-c", "mental_health")],
    [("org-b", "housing"), ("org-d", "debt")],
    [("org-a", "mental_health"), ("org-b", "housing"), ("org-c", "mental_health")],
]
CONSENTED = {4}  # families whose person consented before the signals came


def _sid(world: str, family: int, org: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{world}/{family}/{org}"))


def _submit(hub: Hub, world: str, *, together: bool) -> None:
    for family in CONSENTED:
        hub.record_consent(access("org-a"), consent_input(
            person=f"{world}-{family}", consent_id=_sid(world, family, "consent")))
    for org in ("org-a", "org-b", "org-c", "org-d"):
        items = [signal(hub, org, person=f"{world}-{family}", category=category,
                        signal_id=_sid(world, family, org))
                 for family, members in enumerate(FAMILIES)
                 for o, category in members if o == org]
        if together:
            results = hub.submit_many(access(org), list(items))
            assert all(isinstance(r, tuple) for r in results), results
        else:
            for item in items:
                hub.submit(access(org), item)


def _outcome(hub: Hub, world: str) -> list[dict[str, Any]]:
    """Each family's matches, alerts and tasks, by organisation rather than by id."""
    consents = {_sid(world, family, "consent"): "the consent" for family in CONSENTED}

    def basis(text: str | None) -> str | None:  # a consent's id says which world it is in
        for consent_id, name in consents.items():
            text = text.replace(consent_id, name) if text else text
        return text

    out = []
    with session_factory(hub.engine)() as s:
        for family, members in enumerate(FAMILIES):
            ids = {_sid(world, family, org): org for org, _ in members}
            households = set(s.scalars(select(Signal.household_id).where(
                Signal.id.in_(ids))))
            assert len(households) == 1  # one person: one household
            alerts = s.scalars(select(Alert).where(Alert.household_id.in_(households))).all()
            out.append({
                "matches": sorted((m.covenant_id, m.status, m.reason, basis(m.basis), m.withheld)
                                  for m in s.scalars(select(Match).where(
                                      Match.household_id.in_(households)))),
                "alerts": sorted((a.coordinator_id, a.state, tuple(sorted(
                    (ids[link.signal_id], basis(link.basis)) for link in s.scalars(
                        select(AlertSignal).where(AlertSignal.alert_id == a.id)))))
                    for a in alerts),
                "tasks": sorted((ids[t.signal_id], t.kind, t.state, t.covenant_id,
                                 len(t.related)) for t in s.scalars(
                                     select(Task).where(Task.signal_id.in_(ids)))),
            })
    return out


def test_households_decided_together_end_as_one_at_a_time(hub: Hub) -> None:
    setup_registry(hub)
    _submit(hub, "together", together=True)
    _submit(hub, "alone", together=False)
    together, alone = _outcome(hub, "together"), _outcome(hub, "alone")
    assert together == alone
    # and the families came out as the covenant says, so the comparison means something
    disclosed = [any(m[1] == "disclosed" for m in f["matches"]) for f in together]
    assert disclosed == [True, False, True, False, True, False, False]
    assert [len(f["alerts"]) for f in together] == [1, 0, 1, 0, 1, 0, 0]
    assert ("org-b", "consent_needed", "open", "test-covenant", 0) in together[1]["tasks"]


def test_new_alerts_with_match_notices_decided_together_end_as_one_at_a_time(
        hub: Hub) -> None:
    """With match notices, a chunk opens alerts and tasks that refer to them for many
    households at once (their rows are written after every household is decided)."""
    setup_registry(hub, covenant=COVENANT.replace(
        "purposes = ", 'match_notices = ["youth_care", "housing", "debt"]\npurposes = '))
    _submit(hub, "together", together=True)
    _submit(hub, "alone", together=False)
    together, alone = _outcome(hub, "together"), _outcome(hub, "alone")
    assert together == alone
    notices = [t for family in together for t in family["tasks"] if t[1] == "match_notice"]
    assert len(notices) == 5  # families 0 and 2: two and three parties told of each other
    assert all(t[2] == "open" for t in notices)


def test_a_chunk_that_fails_in_the_database_is_stored_one_by_one(hub: Hub) -> None:
    """An item the checks let through but the database refuses (two envelopes for one
    recipient, which the gRPC validation would have caught) is refused on its own: the
    others of its chunk are stored, in the households they belong to."""
    setup_registry(hub)
    first = hub.submit_many(access("org-a"), [signal(hub, "org-a", person="p1")])
    assert isinstance(first[0], tuple)
    good = signal(hub, "org-b", person="p1", category="housing")
    bad = signal(hub, "org-b", person="p2", category="housing")
    bad = dataclasses.replace(bad, envelopes=bad.envelopes * 2)
    other = signal(hub, "org-b", person="p3", category="housing")
    before = row_counts(hub.engine)
    results = hub.submit_many(access("org-b"), [good, bad, other])
    assert isinstance(results[0], tuple) and isinstance(results[2], tuple)
    assert isinstance(results[1], SamenloopError)
    assert str(results[1]) == "item 1 could not be stored"
    after = row_counts(hub.engine)
    assert after["signals"] == before["signals"] + 2
    assert after["envelopes"] == before["envelopes"] + 2
    with session_factory(hub.engine)() as s:
        assert s.get(Signal, bad.signal_id) is None
        homes = {sid: s.get_one(Signal, sid).household_id
                 for sid in (first[0][0], good.signal_id, other.signal_id)}
        assert len(s.scalars(select(Alert)).all()) == 1  # p1 is a match of two partners
    assert homes[good.signal_id] == homes[first[0][0]] != homes[other.signal_id]


def test_a_conflict_while_storing_a_chunk_retries_the_whole_transaction(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deadlock or serialization failure (another replica's transaction) is not a
    refusal to store one by one: the chunk's transaction runs again."""
    setup_registry(hub)
    items: list[Any] = [signal(hub, "org-a", person=f"p{i}") for i in range(3)]
    real, calls = Hub._store_new, []

    class Deadlock(Exception):
        sqlstate = "40P01"

    def store_new(self: Hub, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[4]))
        if len(calls) == 1:
            raise OperationalError("SELECT", None, Deadlock())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Hub, "_store_new", store_new)
    results = hub.submit_many(access("org-a"), items)
    assert results == [(i.signal_id, False) for i in items]
    assert calls == [3, 3]  # the chunk again, together; never one by one


@pytest.mark.postgres
def test_signals_whose_keys_another_transaction_holds_do_not_hold_up_the_rest(
        postgres_url: str, tmp_path: Path, clock: Clock) -> None:
    """A chunk's signals about a household another transaction is storing wait for it to
    commit; the chunk's other signals are stored (and committed) meanwhile. The
    response still answers every item in its place."""
    engine = make_engine(postgres_url)
    migrate(engine, MIGRATIONS)
    hub = Hub(engine, signer=checkpoint.CheckpointSigner.load_or_create(
        tmp_path / "cp.key", "test.example/hub"), clock=clock)
    setup_registry(hub)
    busy, free = (signal(hub, "org-a", person=p) for p in ("busy", "free"))

    def stored(signal_id: str) -> bool:
        with session_factory(engine)() as s:
            return s.get(Signal, signal_id) is not None

    holder = session_factory(engine)()  # another replica's transaction, storing "busy"
    _matching.lock_keys(holder, _linkage.lock_values(busy.keys))
    deferred = REGISTRY.get_sample_value("samenloop_signals_deferred_total") or 0.0
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.extend(
        hub.submit_many(access("org-a"), [busy, free])))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not stored(free.signal_id):
            assert time.monotonic() < deadline, "the free signal waited for the busy one"
            time.sleep(0.02)
        assert worker.is_alive() and not stored(busy.signal_id)
    finally:
        holder.rollback()
        holder.close()
        worker.join(30)
    assert results == [(busy.signal_id, False), (free.signal_id, False)]
    assert stored(busy.signal_id)
    # operators see how often it happens (/metrics)
    assert REGISTRY.get_sample_value("samenloop_signals_deferred_total") == deferred + 1
    hub.close()
    engine.dispose()
