"""The hub's operations over a real database: households, the gate, alerts, refusals."""

from __future__ import annotations

import dataclasses
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from exchange import checkpoint, crypto
from exchange.db import make_engine, migrate, session_factory
from exchange.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from hub._core import Hub
from hub._models import AuditEvent, Household, Match, Signal, SignalKey
from hub._server import MIGRATIONS
from tests.support import (
    ADMIN,
    COVENANT,
    Clock,
    Registry,
    access,
    pseudonym,
    row_counts,
    setup_registry,
    signal,
)

COORD = access("gemeente", "coordinator", "coord-a")


@pytest.fixture
def reg(hub: Hub) -> Registry:
    return setup_registry(hub)


def _household(hub: Hub, signal_id: str) -> str:
    with session_factory(hub._engine)() as s:
        return s.get_one(Signal, signal_id).household_id


def _events(hub: Hub, event_type: str) -> list[AuditEvent]:
    with session_factory(hub._engine)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.event_type == event_type)
                              .order_by(AuditEvent.seq)))


def test_three_organisations_one_household_one_alert(hub: Hub, reg: Registry) -> None:
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="child", address="home"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="mother", address="home",
                                              category="housing"))
    c, _ = hub.submit(access("org-c"), signal(hub, "org-c", person="mother", category="debt"))
    assert _household(hub, a.id) == _household(hub, b.id) == _household(hub, c.id)
    views, _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert len(views) == 1
    assert {i.organisation_id for i in views[0].involved} == {"org-a", "org-b", "org-c"}
    assert views[0].household_ref == _household(hub, a.id)
    # one alert, updated (not duplicated) when the third organisation joined
    changes = [change for _, change, _ in hub.alert_changes(COORD, 0)]
    assert changes == ["created", "updated"]
    disclosures = _events(hub, "alert.create") + _events(hub, "alert.update")
    assert [e.basis for e in disclosures] == ["covenant:test-covenant@v1"] * 2


def test_a_single_organisation_is_no_match(hub: Hub, reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p1"))
    hub.submit(access("org-a"), signal(hub, "org-a", person="p1", address="x"))
    assert hub.list_alerts(COORD, ("new",), 10, "")[0] == []


def test_an_organisation_outside_the_covenant_is_never_disclosed(hub: Hub,
                                                                   reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-d"), signal(hub, "org-d", person="p"))
    assert hub.list_alerts(COORD, ("new",), 10, "")[0] == []
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert {i.organisation_id for i in view.involved} == {"org-a", "org-b"}


def test_alerts_never_carry_a_category(hub: Hub, reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    text = repr(view)
    assert "youth_care" not in text and "housing" not in text


def test_held_without_basis_then_released_by_consent(hub: Hub, reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="child", address="h",
                                       category="mental_health"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="mother", address="h",
                                              category="housing"))
    assert hub.list_alerts(COORD, ("new",), 10, "")[0] == []
    (hold,) = _events(hub, "match.hold")
    assert (hold.outcome, hold.reason) == ("denied", "category_not_covered")
    with session_factory(hub._engine)() as s:
        assert s.scalars(select(Match.status)).all() == ["held"]

    record, duplicate = hub.record_consent(access("org-a"), _consent(person="child"))
    assert not duplicate
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert view.household_ref == _household(hub, b.id)
    (created,) = _events(hub, "alert.create")
    assert created.basis == f"consent:{record.id}"


def _consent(*, person: str, days: int = 30, **changes: object) -> object:
    from hub import _inputs

    value = _inputs.ConsentInput(
        consent_id=str(__import__("uuid").uuid4()),
        subject_keys=frozenset({(1, pseudonym("person:" + person))}),
        covenant_id="test-covenant", purposes=("care_coordination",),
        evidence_reference="form-1", valid_from=None,
        valid_until=Clock().now + timedelta(days=days), content_sha256=b"x" * 32)
    return dataclasses.replace(value, **changes)  # type: ignore[arg-type]


def test_revoked_consent_stops_disclosure_at_once(hub: Hub, reg: Registry,
                                                  clock: Clock) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    record, _ = hub.record_consent(access("org-a"), _consent(person="p"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    hub.open_alert(COORD, view.alert_id)  # first disclosure
    clock.advance(hours=1)
    hub.revoke_consent(access("org-a"), record.id)
    with pytest.raises(PermissionDenied, match="closed"):
        hub.open_alert(COORD, view.alert_id)  # second disclosure refused
    assert hub.list_alerts(COORD, ("closed",), 10, "")[0][0].closed_reason == "basis_lapsed"
    assert len(_events(hub, "alert.open")) == 1  # the past disclosure stays in the log


def test_expired_covenant_denies_an_open(hub: Hub, reg: Registry, clock: Clock) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    _, envelopes = hub.open_alert(COORD, view.alert_id)
    assert len(envelopes) == 2
    clock.now = clock.now.replace(year=2027, month=1, day=1)
    with pytest.raises(PermissionDenied):
        hub.open_alert(COORD, view.alert_id)
    (hold,) = _events(hub, "match.hold")
    assert hold.reason == "covenant_not_in_force"


def test_a_covenant_registered_later_discloses_existing_matches(hub: Hub) -> None:
    reg = setup_registry(hub, covenant=None)
    assert reg.hub is hub
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    assert hub.list_alerts(COORD, ("new",), 10, "")[0] == []
    hub.register_covenant(ADMIN, COVENANT)
    assert len(hub.list_alerts(COORD, ("new",), 10, "")[0]) == 1


def test_covenant_versions(hub: Hub, reg: Registry) -> None:
    row, cov = hub.register_covenant(ADMIN, COVENANT)
    assert (row.version, cov.version) == (1, 1)  # unchanged text: no new version
    row, cov = hub.register_covenant(ADMIN, COVENANT.replace('debt = "covenant"',
                                                             'debt = "consent"'))
    assert row.version == 2 and "debt" not in cov.covered_categories
    with pytest.raises(NotFound, match="party org-x"):
        hub.register_covenant(ADMIN, COVENANT.replace('"org-c"]', '"org-x"]'))


def test_households_merge_when_a_signal_bridges_them(hub: Hub, reg: Registry) -> None:
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p1", address="x"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p2", address="y",
                                              category="housing"))
    assert _household(hub, a.id) != _household(hub, b.id)
    c, _ = hub.submit(access("org-c"), signal(hub, "org-c", person="p1", address="y",
                                              category="debt"))
    assert _household(hub, a.id) == _household(hub, b.id) == _household(hub, c.id)
    with session_factory(hub._engine)() as s:
        merged = s.scalars(select(Household).where(Household.merged_into.is_not(None))).all()
    assert len(merged) == 1 and merged[0].merged_into == _household(hub, a.id)
    assert len(_events(hub, "household.merge")) == 1


def test_withdrawing_the_bridge_splits_the_household(hub: Hub, reg: Registry,
                                                     clock: Clock) -> None:
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p1", address="x"))
    clock.advance(minutes=1)
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p2", address="y",
                                              category="housing"))
    clock.advance(minutes=1)
    c, _ = hub.submit(access("org-c"), signal(hub, "org-c", person="p1", address="y",
                                              category="debt"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert len(view.involved) == 3
    hub.withdraw(access("org-c"), c.id, "risk_gone")
    assert _household(hub, a.id) != _household(hub, b.id)
    assert _household(hub, a.id) == view.household_ref  # the oldest part keeps the id
    (closed,), _ = hub.list_alerts(COORD, ("closed",), 10, "")
    assert closed.closed_reason == "dissolved"


def test_withdrawal_reasons(hub: Hub, reg: Registry) -> None:
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="q", category="housing"))
    hub.withdraw(access("org-a"), a.id, "risk_gone")
    hub.withdraw(access("org-b"), b.id, "unjustified")
    with session_factory(hub._engine)() as s:
        assert s.get_one(Signal, a.id).state == "withdrawn"  # archived
        assert s.get(Signal, b.id) is None  # deleted, not archived
        assert s.scalars(select(SignalKey).where(SignalKey.signal_id == b.id)).all() == []
    (event,) = [e for e in _events(hub, "signal.withdraw") if b.id in e.detail]
    assert (event.action, event.reason) == ("delete", "unjustified")
    again = hub.withdraw(access("org-a"), a.id, "risk_gone")  # idempotent
    assert again == hub.now()
    with pytest.raises(NotFound):
        hub.withdraw(access("org-b"), a.id, "risk_gone")  # not yours


def test_resubmission_is_idempotent_and_ids_are_not_reusable(hub: Hub, reg: Registry) -> None:
    item = signal(hub, "org-a", person="p")
    first, dup1 = hub.submit(access("org-a"), item)
    again, dup2 = hub.submit(access("org-a"), item)
    assert (dup1, dup2) == (False, True) and first.id == again.id
    with pytest.raises(AlreadyExists):
        hub.submit(access("org-b"), signal(hub, "org-b", person="p", signal_id=item.signal_id))
    with pytest.raises(AlreadyExists):
        hub.submit(access("org-a"), dataclasses.replace(item, content_sha256=b"y" * 32))


def test_envelopes_must_match_the_current_recipients(hub: Hub, reg: Registry) -> None:
    item = signal(hub, "org-a", person="p")
    with pytest.raises(FailedPrecondition, match="no envelope for coordinator coord-a"):
        hub.submit(access("org-a"), dataclasses.replace(item, envelopes=()))
    env = item.envelopes[0]
    stale = dataclasses.replace(env, key_fingerprint=bytes(16))
    with pytest.raises(FailedPrecondition, match="outdated key"):
        hub.submit(access("org-a"), dataclasses.replace(item, envelopes=(stale,)))
    stranger = dataclasses.replace(env, recipient_id="coord-z")
    with pytest.raises(InvalidInput, match="not a recipient"):
        hub.submit(access("org-a"), dataclasses.replace(item, envelopes=(env, stranger)))
    no_party = signal(hub, "org-d", person="p")
    assert no_party.envelopes == ()  # org-d is in no covenant: nobody to seal to
    hub.submit(access("org-d"), no_party)


def test_refused_requests_change_nothing(hub: Hub, reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    item = signal(hub, "org-b", person="p", category="housing")
    before = row_counts(hub._engine)
    attempts = [
        lambda: hub.submit(access("unregistered"), item),
        lambda: hub.submit(access("org-b"), dataclasses.replace(item, envelopes=())),
        lambda: hub.submit(access("org-b"), dataclasses.replace(
            item, expires_at=hub.now() + timedelta(days=800))),
        lambda: hub.submit(access("org-b"), dataclasses.replace(
            item, observed_at=hub.now() + timedelta(days=1))),
        lambda: hub.withdraw(access("org-b"), item.signal_id, "risk_gone"),
        lambda: hub.record_consent(access("org-d"), _consent(person="p")),
        lambda: hub.record_consent(access("org-a"), _consent(person="p", days=4000)),
        lambda: hub.record_consent(access("org-a"), _consent(person="p",
                                                             purposes=("research",))),
        lambda: hub.record_consent(access("org-a"), _consent(person="p",
                                                             covenant_id="nope")),
        lambda: hub.open_alert(COORD, "00000000-0000-4000-8000-000000000000"),
        lambda: hub.list_alerts(access("gemeente", "coordinator", "coord-z"), ("new",), 1, ""),
        lambda: hub.register_coordinator(ADMIN, "c2", "nope", item.professional, bytes(32)),
        lambda: hub.register_covenant(ADMIN, "id = 1"),
    ]
    for attempt in attempts:
        with pytest.raises((InvalidInput, NotFound, PermissionDenied, FailedPrecondition)):
            attempt()
        assert row_counts(hub._engine) == before


def test_only_the_addressed_coordinator_sees_an_alert(hub: Hub, reg: Registry) -> None:
    reg.coordinator("coord-b")
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    other = access("gemeente", "coordinator", "coord-b")
    assert hub.list_alerts(other, ("new",), 10, "")[0] == []
    with pytest.raises(NotFound):
        hub.open_alert(other, view.alert_id)
    with pytest.raises(PermissionDenied):
        hub.open_alert(access("org-a", "coordinator", "coord-a"), view.alert_id)


def test_open_returns_only_envelopes_for_the_caller_and_marks_seen(hub: Hub,
                                                                   reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    opened, envelopes = hub.open_alert(COORD, view.alert_id)
    assert opened.state == "seen"
    assert {env.recipient_id for _, _, env in envelopes} == {"coord-a"}
    (event,) = _events(hub, "alert.open")
    assert (event.action, event.basis) == ("disclose", "covenant:test-covenant@v1")
    acked = hub.acknowledge(COORD, view.alert_id)
    assert acked.state == "acknowledged"


def test_alert_pages(hub: Hub, reg: Registry) -> None:
    for i in range(5):
        hub.submit(access("org-a"), signal(hub, "org-a", person=f"p{i}"))
        hub.submit(access("org-b"), signal(hub, "org-b", person=f"p{i}", category="housing"))
    seen, token = [], ""
    while True:
        page, token = hub.list_alerts(COORD, ("new",), 2, token)
        seen += [v.alert_id for v in page]
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    with pytest.raises(InvalidInput):
        hub.list_alerts(COORD, ("new",), 2, "not-a-token")


def _partition(order: list[int]) -> set[frozenset[str]]:
    """Submit six signals in the given order; return the households as sets of ids."""
    plan = [("org-a", "p1", "x"), ("org-b", "p2", "x"), ("org-c", "p3", None),
            ("org-a", "p3", "y"), ("org-b", "p4", "z"), ("org-c", "p5", None)]
    ids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(len(plan))]
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'hub.db'}")
        migrate(engine, MIGRATIONS)
        hub = Hub(engine, signer=checkpoint.CheckpointSigner.load_or_create(
            Path(tmp) / "k", "t.example/h"), clock=Clock())
        setup_registry(hub)
        for i in order:
            org, person, address = plan[i]
            hub.submit(access(org), signal(hub, org, person=person, address=address,
                                           signal_id=ids[i]))
        groups: dict[str, set[str]] = {}
        for sid in ids:
            groups.setdefault(_household(hub, sid), set()).add(sid)
        hub.close()
    return {frozenset(g) for g in groups.values()}


EXPECTED = {frozenset({"00000000-0000-4000-8000-000000000000",
                       "00000000-0000-4000-8000-000000000001"}),
            frozenset({"00000000-0000-4000-8000-000000000002",
                       "00000000-0000-4000-8000-000000000003"}),
            frozenset({"00000000-0000-4000-8000-000000000004"}),
            frozenset({"00000000-0000-4000-8000-000000000005"})}


@settings(max_examples=12, deadline=None)
@given(st.permutations(range(6)))
def test_households_do_not_depend_on_arrival_order(order: list[int]) -> None:
    assert _partition(list(order)) == EXPECTED


def test_pseudonyms_are_the_only_keys_stored(hub: Hub, reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="123456782"))
    with session_factory(hub._engine)() as s:
        values = s.scalars(select(SignalKey.value)).all()
    assert values == [pseudonym("person:123456782")]
    assert len(values[0]) == crypto.PSEUDONYM_SIZE
