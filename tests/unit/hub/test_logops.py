"""The privacy officer's tools at the hub: subject access, report, register, retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, func, insert, literal, select, update

from exchange import merkle
from exchange.db import session_factory, snapshot
from exchange.errors import FailedPrecondition, InvalidInput
from hub import _audit
from hub._core import Hub
from hub._logops import AuditFilter
from hub._models import AuditEvent
from tests.support import (
    ADMIN,
    Clock,
    Registry,
    access,
    consent_input,
    pseudonym,
    setup_registry,
    signal,
)

COORD = access("gemeente", "coordinator", "coord-a")
OFFICER_A = access("org-a", "privacy_officer", "po-a")
PERSON = frozenset({(1, pseudonym("person:p"))})


@pytest.fixture
def reg(hub: Hub) -> Registry:
    return setup_registry(hub)


def _disclose(hub: Hub) -> tuple[str, str]:
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="q", category="housing"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    hub.open_alert(COORD, view.alert_id)
    return a.id, b.id


def test_subject_access_lists_this_persons_disclosures_with_proofs(hub: Hub,
                                                                   reg: Registry) -> None:
    a, b = _disclose(hub)
    found = hub.subject_access(OFFICER_A, PERSON)
    assert found.signals == 1
    assert [(p.event.event_type, p.event.owner_org) for p in found.disclosures] == [
        ("alert.create", "org-a"), ("alert.open", "org-a")]
    assert all(a in p.event.detail for p in found.disclosures)
    for proven in found.disclosures:
        merkle.verify_inclusion(proven.event.seq, found.checkpoint.size, proven.leaf_hash,
                                proven.proof, found.checkpoint.root_hash)
    everything = hub.subject_access(access("gemeente", "administrator", "a"), PERSON)
    assert everything.signals == 2 and len(everything.disclosures) == 4
    assert hub.subject_access(OFFICER_A, frozenset({(1, pseudonym("person:x"))})).signals == 0
    assert b  # org-b's signal about someone else is never in org-a's answer


def test_subject_access_includes_disclosures_of_the_persons_household(
        hub: Hub, reg: Registry) -> None:
    held, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="mother", address="A",
                                                 category="mental_health"))
    child, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="child", address="A"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="child", category="housing"))
    mother = frozenset({(1, pseudonym("person:mother"))})
    found = hub.subject_access(OFFICER_A, mother)
    assert found.signals == 1 and len(found.households) == 1
    (create,) = found.disclosures
    assert create.event.event_type == "alert.create" and create.event.owner_org == "org-a"
    assert child.id in create.event.detail and held.id not in create.event.detail
    assert create.event.seq not in found.naming_person  # her household, not her signal
    assert create.event.subject_ref == found.households[0]
    for_child = hub.subject_access(OFFICER_A, frozenset({(1, pseudonym("person:child"))}))
    assert [p.event.seq for p in for_child.disclosures] == [create.event.seq]
    assert for_child.naming_person == {create.event.seq}


def test_subject_access_follows_a_household_through_a_split(hub: Hub, reg: Registry,
                                                            clock: Clock) -> None:
    admin = access("gemeente", "administrator", "a")
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    clock.advance(minutes=1)  # p's signal is the oldest: its part keeps the household id
    bridge, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", address="A",
                                                   category="housing"))
    hub.submit(access("org-c"), signal(hub, "org-c", person="r", address="A", category="debt"))
    before = hub.subject_access(admin, frozenset({(1, pseudonym("person:r"))}))
    assert len(before.households) == 1
    clock.advance(hours=1)
    hub.withdraw(access("org-b"), bridge.id, "risk_gone")  # r's signal splits off
    clock.advance(hours=1)
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    after = hub.subject_access(admin, frozenset({(1, pseudonym("person:r"))}))
    old_household = before.households[0]
    assert old_household in after.households and len(after.households) == 2
    # what was disclosed about the household while r belonged to it, and nothing later
    assert [p.event.seq for p in after.disclosures] == [p.event.seq for p in before.disclosures]
    later = [e for e in _seen_by(hub, admin, "alert.create")
             if e.subject_ref == old_household and e.occurred_at > clock.now - timedelta(hours=1)]
    assert later and not {e.seq for e in later} & {p.event.seq for p in after.disclosures}


def _seen_by(hub: Hub, who: _audit.Access, event_type: str = "") -> list[AuditEvent]:
    rows = hub.query_events(who, AuditFilter(event_type=event_type), 1000, "").events
    return rows


def test_a_consent_names_only_the_recorders_own_households(hub: Hub, reg: Registry) -> None:
    hub.submit(access("org-b"), signal(hub, "org-b", person="known-to-b"))
    hub.submit(access("org-a"), signal(hub, "org-a", person="known-to-a"))
    for person in ("known-to-b", "known-to-a", "unknown"):
        record, _ = hub.record_consent(access("org-a"), consent_input(person=person))
        if person == "known-to-b":
            hub.revoke_consent(access("org-a"), record.id)
    grants = _seen_by(hub, OFFICER_A, "consent.grant")
    revokes = _seen_by(hub, OFFICER_A, "consent.revoke")
    # org-a's officer cannot tell the person only org-b knows from one nobody knows
    assert [bool(e.subject_ref) for e in grants] == [False, True, False]
    assert [e.subject_ref for e in revokes] == [""]
    with session_factory(hub._engine)() as s:
        own = s.scalar(select(AuditEvent.subject_ref).where(
            AuditEvent.event_type == "signal.submit", AuditEvent.actor_org == "org-a"))
    assert grants[1].subject_ref == own


def test_the_hubs_decisions_do_not_say_who_elsewhere_caused_them(hub: Hub,
                                                                reg: Registry) -> None:
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b", user="b-worker-17"),
               signal(hub, "org-b", person="p", category="mental_health"))
    hub.submit(access("org-c", user="c-worker-3"),
               signal(hub, "org-c", person="p", category="housing"))
    decisions = [e for e in _seen_by(hub, OFFICER_A) if e.actor_role == "system"]
    assert {e.event_type for e in decisions} >= {"match.hold"}
    assert all(e.owner_org == "org-a" for e in decisions)
    assert all("org-b" not in e.on_behalf_of and "org-c" not in e.on_behalf_of
               for e in decisions)
    # the organisation whose request caused a decision about its own data still sees who
    own = [e for e in _seen_by(hub, access("org-b", "privacy_officer", "po-b"))
           if e.actor_role == "system" and e.owner_org == "org-b"]
    assert {e.on_behalf_of for e in own} == {"org-b/b-worker-17", ""}  # "": org-c's doing
    everything = _seen_by(hub, access("gemeente", "administrator", "a"), "match.hold")
    assert {e.on_behalf_of for e in everything} & {"org-b/b-worker-17", "org-c/c-worker-3"}


def test_the_report_covers_whole_months_suppressed_and_rounded(hub: Hub, reg: Registry,
                                                                clock: Clock) -> None:
    admin = access("gemeente", "administrator", "a")
    june, july = clock.now.replace(day=1, hour=0), clock.now.replace(month=7, day=1, hour=0)

    def figures(who: _audit.Access = admin) -> dict[str, str]:
        return {name: value for name, value, _ in hub.report(who, june, july)[1]}

    _disclose(hub)
    values = figures()
    assert values["signals_submitted"] == "<5"   # 3 signals
    assert values["alerts_created"] == "<5"
    assert values["median_hours_to_contact"] == "-"
    assert values["denials"] == "0"
    for i in range(4):
        hub.submit(access("org-c"), signal(hub, "org-c", person=f"x{i}"))
    assert figures()["signals_submitted"] == "5"    # 7, rounded
    hub.submit(access("org-c"), signal(hub, "org-c", person="x4"))
    assert figures()["signals_submitted"] == "10"   # 8, rounded
    assert hub.report(OFFICER_A, june, july)[0] == "org-a"
    assert figures(OFFICER_A)["signals_submitted"] == "<5"  # only org-a's own
    for since, until in ((clock.now, july), (june, july.replace(day=2)), (july, june),
                         (june, june)):
        with pytest.raises(InvalidInput):
            hub.report(OFFICER_A, since, until)


def test_the_median_time_to_contact_needs_ten_alerts(hub: Hub, reg: Registry,
                                                     clock: Clock) -> None:
    admin = access("gemeente", "administrator", "a")
    june, july = clock.now.replace(day=1, hour=0), clock.now.replace(month=7, day=1, hour=0)
    for i in range(10):
        hub.submit(access("org-a"), signal(hub, "org-a", person=f"p{i}"))
        hub.submit(access("org-b"), signal(hub, "org-b", person=f"p{i}", category="housing"))
        clock.advance(hours=2)
        (view,), _ = hub.list_alerts(COORD, ("new",), 10, "")
        hub.record_contact(COORD, view.alert_id)
        median = {n: v for n, v, _ in hub.report(admin, june, july)[1]}[
            "median_hours_to_contact"]
        assert median == ("2" if i == 9 else "suppressed")


def test_the_register_holds_the_covenants_in_force(hub: Hub, reg: Registry,
                                                   clock: Clock) -> None:
    (cov,) = hub.processing_register(OFFICER_A)
    assert cov.id == "test-covenant"
    # org-d is no party: the covenant is not its processing
    assert hub.processing_register(access("org-d", "privacy_officer", "po-d")) == []
    assert len(hub.processing_register(access("gemeente", "administrator", "a"))) == 1
    hub.oversight = frozenset({"gemeente"})
    assert len(hub.processing_register(access("gemeente", "privacy_officer", "po"))) == 1
    clock.now = clock.now.replace(year=2027, month=2)
    assert hub.processing_register(OFFICER_A) == []


def test_pruning_keeps_the_log_verifiable(hub: Hub, reg: Registry, clock: Clock) -> None:
    _disclose(hub)
    old = hub.checkpoint(ADMIN)
    clock.now += timedelta(days=1)
    with pytest.raises(FailedPrecondition, match="kept at least"):
        hub.prune_log(ADMIN, clock.now)
    clock.now += timedelta(days=6 * 365)
    hub.register_organisation(ADMIN, "org-late", "Late")
    first, upto = hub.prune_log(ADMIN, clock.now - timedelta(days=6 * 365))
    assert (first, upto) == (0, old.size)
    with session_factory(hub._engine)() as s:
        assert s.scalar(select(func.min(AuditEvent.seq))) == old.size
        result = _audit.verify(s, public_key=hub.checkpoint_public_key, origin=hub.origin)
        assert result.ok, result.describe()
        assert result.pruned == ((0, old.size),)
        assert f"events #0 to #{old.size - 1} were removed after the retention" in (
            result.describe())
        size, root = _audit.head(s)
        assert _audit.root_at(s, old.size) == old.root_hash
        merkle.verify_consistency(old.size, size, _audit.consistency_proof(s, old.size, size),
                                  old.root_hash, root)
        leaf, proof = _audit.inclusion_proof(s, 3, size)  # a pruned event is still proven
        merkle.verify_inclusion(3, size, leaf, proof, root)
    rows = hub.query_events(ADMIN, AuditFilter(), 1000, "").events
    assert rows[0].seq == old.size
    with pytest.raises(FailedPrecondition, match="no signed checkpoint"):
        hub.prune_log(ADMIN, clock.now - timedelta(days=6 * 365))


def _remove_as_if_pruned(hub: Hub, upto: int) -> None:
    """What someone with database access might do to make events vanish quietly."""
    from hub._models import AuditNode, AuditPruned

    with session_factory(hub._engine).begin() as s:
        last = s.get_one(AuditEvent, upto - 1)
        s.execute(insert(AuditNode).from_select(["level", "index", "hash"], select(
            literal(0), AuditEvent.seq, AuditEvent.leaf_hash).where(AuditEvent.seq < upto)))
        s.add(AuditPruned(upto=upto, first=0, chain_hash=last.chain_hash,
                          pruned_at=hub.now(), pruned_by="nobody"))
        s.execute(delete(AuditEvent).where(AuditEvent.seq < upto))


def _offline(hub: Hub, *, key: bool = True) -> _audit.VerifyResult:
    with snapshot(hub._engine) as s:
        if not key:
            return _audit.verify(s)
        return _audit.verify(s, public_key=hub.checkpoint_public_key, origin=hub.origin)


def test_events_removed_outside_the_retention_rule_are_caught(hub: Hub, reg: Registry,
                                                              clock: Clock) -> None:
    _disclose(hub)
    recent = hub.checkpoint(ADMIN)
    hub.submit(access("org-c"), signal(hub, "org-c", person="z"))
    _remove_as_if_pruned(hub, recent.size)
    result = _offline(hub)
    assert not result.ok and result.first_bad_index == 0
    assert "without an audit.prune event" in (result.problem or "")


def test_a_pruned_range_needs_a_checkpoint_five_years_older(hub: Hub, reg: Registry,
                                                             clock: Clock) -> None:
    from hub._models import AuditCheckpoint

    _disclose(hub)
    old = hub.checkpoint(ADMIN)
    clock.now += timedelta(days=6 * 365)
    hub.prune_log(ADMIN, clock.now - timedelta(days=5 * 365 + 2))
    assert _offline(hub).ok
    with session_factory(hub._engine).begin() as s:  # make the checkpoint look recent
        s.execute(update(AuditCheckpoint).where(AuditCheckpoint.size == old.size)
                  .values(signed_at=clock.now - timedelta(days=30)))
    result = _offline(hub, key=False)
    assert not result.ok and "before their retention period ended" in (result.problem or "")
    assert _offline(hub).ok  # with the hub's key, the signed time in the note counts
    with session_factory(hub._engine).begin() as s:  # and without its checkpoint at all
        s.execute(delete(AuditCheckpoint).where(AuditCheckpoint.size == old.size))
    result = _offline(hub)
    assert not result.ok and f"no signed checkpoint at size {old.size}" in (
        result.problem or "")


def test_proof_requests_are_checked(hub: Hub, reg: Registry) -> None:
    with pytest.raises(InvalidInput, match="tree sizes"):
        hub.consistency_proof(OFFICER_A, 0, 3)
    with pytest.raises(InvalidInput, match="tree sizes"):
        hub.inclusion_proof(OFFICER_A, 0, 10_000)
    with pytest.raises(InvalidInput, match="index"):
        hub.inclusion_proof(OFFICER_A, 5, 5)
