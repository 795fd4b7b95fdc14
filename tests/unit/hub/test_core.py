"""The hub's operations over a real database: households, the gate, alerts, refusals."""

from __future__ import annotations

import dataclasses
import json
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
    consent_input,
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
    # one disclosure event per organisation whose involvement was shown
    disclosures = _events(hub, "alert.create") + _events(hub, "alert.update")
    assert [(e.event_type, e.owner_org) for e in disclosures] == [
        ("alert.create", "org-a"), ("alert.create", "org-b"), ("alert.update", "org-c")]
    assert {e.basis for e in disclosures} == {"covenant:test-covenant@v1"}
    assert all(a.id not in e.detail for e in disclosures[1:])  # no other partner's ids


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
    holds = _events(hub, "match.hold")  # one per organisation, each about its own signal
    assert [(h.owner_org, h.outcome, h.reason) for h in holds] == [
        ("org-a", "denied", "category_not_covered"),
        ("org-b", "denied", "no_other_party_with_basis")]
    assert b.id in holds[1].detail and b.id not in holds[0].detail
    with session_factory(hub._engine)() as s:
        assert s.execute(select(Match.status, Match.reason)).all() == [
            ("held", "category_not_covered")]

    record, duplicate = hub.record_consent(access("org-a"), consent_input(person="child"))
    assert not duplicate
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert view.household_ref == _household(hub, b.id)
    created = _events(hub, "alert.create")
    assert [(e.owner_org, e.basis) for e in created] == [
        ("org-a", f"consent:{record.id}@test-covenant@v1"),
        ("org-b", "covenant:test-covenant@v1")]


def test_consent_does_not_cover_a_party_added_in_a_later_version(hub: Hub,
                                                                  reg: Registry) -> None:
    two_parties = COVENANT.replace('"org-b", "org-c"]', '"org-b"]')
    hub.register_covenant(ADMIN, two_parties)  # version 2: org-c is no party any more
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    record, _ = hub.record_consent(access("org-a"), consent_input(person="p"))
    assert record.covenant_version == 2
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    hub.register_covenant(ADMIN, COVENANT)  # version 3 adds org-c again
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="mental_health"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert {i.organisation_id for i in view.involved} == {"org-a", "org-b"}
    (hold,) = [e for e in _events(hub, "match.hold") if e.owner_org == "org-c"]
    assert hold.reason == "category_not_covered"
    assert "consent_out_of_scope" in hold.detail


def test_a_consent_category_is_held_while_covered_ones_are_shown(hub: Hub,
                                                                   reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="youth_care"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    c, _ = hub.submit(access("org-c"), signal(hub, "org-c", person="p",
                                              category="mental_health"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert {i.organisation_id for i in view.involved} == {"org-a", "org-b"}
    (hold,) = _events(hub, "match.hold")
    assert (hold.owner_org, hold.reason) == ("org-c", "category_not_covered")
    hub.record_consent(access("org-c"), consent_input(person="p"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    assert {i.organisation_id for i in view.involved} == {"org-a", "org-b", "org-c"}
    (update,) = _events(hub, "alert.update")
    assert (update.owner_org, update.basis) == ("org-c", f"consent:{_consent_id(hub)}"
                                                "@test-covenant@v1")
    assert c.id in update.detail


def _consent_id(hub: Hub) -> str:
    from hub._models import Consent

    with session_factory(hub._engine)() as s:
        return s.scalars(select(Consent.id)).one()


def test_consent_recorded_by_an_uninvolved_partner_releases_nothing(hub: Hub,
                                                                    reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    hub.record_consent(access("org-c"), consent_input(person="p"))
    assert hub.list_alerts(COORD, ("new",), 10, "")[0] == []


def test_revoked_consent_stops_disclosure_at_once(hub: Hub, reg: Registry,
                                                  clock: Clock) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    record, _ = hub.record_consent(access("org-a"), consent_input(person="p"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    hub.open_alert(COORD, view.alert_id)  # first disclosure
    clock.advance(hours=1)
    hub.revoke_consent(access("org-a"), record.id)
    with pytest.raises(PermissionDenied, match="closed"):
        hub.open_alert(COORD, view.alert_id)  # second disclosure refused
    assert hub.list_alerts(COORD, ("closed",), 10, "")[0][0].closed_reason == "basis_lapsed"
    opens = _events(hub, "alert.open")  # one event per organisation whose data was opened
    assert {e.owner_org for e in opens} == {"org-a", "org-b"}
    assert len({e.request_id for e in opens}) == 1  # the past disclosure stays in the log


def test_expired_covenant_denies_an_open(hub: Hub, reg: Registry, clock: Clock) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    _, envelopes = hub.open_alert(COORD, view.alert_id)
    assert len(envelopes) == 2
    clock.now = clock.now.replace(year=2027, month=1, day=1)
    with pytest.raises(PermissionDenied):
        hub.open_alert(COORD, view.alert_id)
    holds = _events(hub, "match.hold")
    assert {(h.owner_org, h.reason) for h in holds} == {
        ("org-a", "covenant_not_in_force"), ("org-b", "covenant_not_in_force")}


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
        assert s.get_one(Signal, a.id).state == "archived"
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
        lambda: hub.record_consent(access("org-d"), consent_input(person="p")),
        lambda: hub.record_consent(access("org-a"), consent_input(person="p", days=4000)),
        lambda: hub.record_consent(access("org-a"), consent_input(person="p",
                                                             purposes=("research",))),
        lambda: hub.record_consent(access("org-a"), consent_input(person="p",
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
    events = _events(hub, "alert.open")
    assert {(e.owner_org, e.action, e.basis) for e in events} == {
        ("org-a", "disclose", "covenant:test-covenant@v1"),
        ("org-b", "disclose", "covenant:test-covenant@v1")}
    acked = hub.record_contact(COORD, view.alert_id)
    assert acked.state == "contact_made"


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


def test_privacy_officers_see_their_own_organisation_only(hub: Hub, reg: Registry) -> None:
    from hub._logops import AuditFilter

    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p",
                                              category="mental_health"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    officer_a = access("org-a", "privacy_officer", "po-a")
    rows = hub.query_events(officer_a, AuditFilter(), 1000, "").events
    assert rows and all("org-a" in (r.actor_org, r.owner_org) for r in rows)
    text = " ".join(r.detail + r.actor_org + r.owner_org for r in rows)
    assert b.id not in text and "org-b" not in text  # nothing betrays the other partner
    assert {r.event_type for r in rows} >= {"signal.submit", "match.hold"}
    everything = hub.query_events(access("gemeente", "administrator", "a"), AuditFilter(),
                                  1000, "").events
    assert len(everything) > len(rows)
    hub.oversight = frozenset({"gemeente"})
    overseen = hub.query_events(access("gemeente", "privacy_officer", "po"), AuditFilter(),
                                1000, "").events
    assert {r.owner_org for r in overseen} >= {"org-a", "org-b"}
    with pytest.raises(PermissionDenied):
        hub.query_events(access("nobody", "privacy_officer", "x"), AuditFilter(), 10, "")
    assert a.id


def test_a_closed_alert_shows_no_one(hub: Hub, reg: Registry) -> None:
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    hub.withdraw(access("org-a"), a.id, "risk_gone")
    (closed,), _ = hub.list_alerts(COORD, ("closed",), 10, "")
    assert closed.involved == ()
    replay = hub.alert_changes(COORD, 0)
    assert all(view.involved == () for _, _, view in replay)  # history shows no one either


def test_lapses_take_effect_without_an_open(hub: Hub, reg: Registry, clock: Clock) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    assert len(hub.list_alerts(COORD, ("new",), 10, "")[0]) == 1
    clock.now = clock.now.replace(year=2027, month=1, day=1)  # the covenant has ended
    assert hub.list_alerts(COORD, ("new", "seen", "contact_made"), 10, "")[0] == []
    (closed,), _ = hub.list_alerts(COORD, ("closed",), 10, "")
    assert (closed.closed_reason, closed.involved) == ("basis_lapsed", ())


def test_an_expired_signal_leaves_the_alert(hub: Hub, reg: Registry, clock: Clock) -> None:
    item = signal(hub, "org-a", person="p")
    hub.submit(access("org-a"), dataclasses.replace(
        item, expires_at=clock.now + timedelta(days=2)))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    clock.advance(days=3)
    with pytest.raises(FailedPrecondition, match="closed"):
        hub.record_contact(COORD, view.alert_id)
    (closed,), _ = hub.list_alerts(COORD, ("closed",), 10, "")
    assert closed.closed_reason == "dissolved"


def test_the_sweep_releases_a_consent_that_starts_later(hub: Hub, reg: Registry,
                                                        clock: Clock) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    hub.record_consent(access("org-a"), consent_input(
        person="p", valid_from=clock.now + timedelta(days=1)))
    assert hub.sweep() == 1
    assert hub.alert_changes(COORD, 0) == []
    clock.advance(days=2)
    assert hub.sweep() == 1
    ((_, change, view),) = hub.alert_changes(COORD, 0)
    assert change == "created" and len(view.involved) == 2


def test_malformed_page_tokens_are_invalid_input(hub: Hub, reg: Registry) -> None:
    import base64

    from hub._logops import AuditFilter

    naive = base64.urlsafe_b64encode(
        b"2026-06-01T09:00:00|0b1c5a52-5d4e-4f0a-9a0b-6b2b9d4c1e11").decode()
    for token in (naive, "%%%", base64.urlsafe_b64encode(b"a|b").decode()):
        with pytest.raises(InvalidInput, match="page_token"):
            hub.list_alerts(COORD, ("new",), 10, token)
    for token in ("99999999999999999999", "-1", "١٢", "1e3"):
        with pytest.raises(InvalidInput, match="page_token"):
            hub.query_events(ADMIN_WITH_ORG, AuditFilter(), 10, token)


ADMIN_WITH_ORG = access("gemeente", "administrator", "admin")


def test_a_disclosure_records_the_covenant_article_it_rests_on(hub: Hub, reg: Registry) -> None:
    hub.register_covenant(ADMIN, COVENANT.replace(
        'regions = ["GM0014"]', 'regions = ["GM0014"]\narticle = "art. 5"')
        + '\n[articles]\nhousing = "art. 5.3"\n')
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    created = {e.owner_org: (e.basis, json.loads(e.detail)) for e in _events(hub, "alert.create")}
    assert created["org-a"][0] == created["org-b"][0] == "covenant:test-covenant@v2"
    assert created["org-a"][1]["articles"] == ["art. 5"]
    assert created["org-b"][1]["articles"] == ["art. 5.3"]
    (activity,) = hub.processing_register(access("org-a", "privacy_officer", "po"))
    assert activity.article_for("housing") == "art. 5.3"
