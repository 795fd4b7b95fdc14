"""Disclosure governance over a real database: who coordinates, the alert lifecycle,
reminders and escalation, partners' tasks and notices, and the signal lifecycle."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exchange.db import session_factory
from exchange.errors import (
    ConfigError,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from hub import HubSettings
from hub._core import Hub
from hub._models import (
    AlertFeed,
    AlertSignal,
    AuditEvent,
    Envelope,
    Signal,
    SignalKey,
    Task,
)
from hub._server import open_hub
from tests.support import (
    ADMIN,
    COVENANT,
    Clock,
    Registry,
    access,
    consent_input,
    setup_registry,
    signal,
)

COORD = access("gemeente", "coordinator", "coord-a")
COORD_B = access("gemeente", "coordinator", "coord-b")
LEAD = access("gemeente", "coordinator", "coord-lead")
OPEN = ("new", "seen", "contact_made")
NORTH, SOUTH = "GM0014", "GM0034"


def _covenant(*, top: str = "", tables: str = "", single: bool = True) -> str:
    """The test covenant with extra top-level keys and tables."""
    text = COVENANT if single else COVENANT.replace('coordinator = "coord-a"\n', "")
    return text.replace('regions = ["GM0014"]\n', f'regions = ["GM0014"]\n{top}') + tables


REGIONAL = _covenant(single=False, tables=f'\n[coordinators]\n{NORTH} = "coord-a"\n'
                     f'{SOUTH} = "coord-b"\n').replace(
    'regions = ["GM0014"]', f'regions = ["{NORTH}", "{SOUTH}"]')
NOTICES = _covenant(top='match_notices = ["youth_care", "housing", "debt"]\n')


def _events(hub: Hub, event_type: str) -> list[AuditEvent]:
    with session_factory(hub._engine)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.event_type == event_type)
                              .order_by(AuditEvent.seq)))


def _feed(hub: Hub, coordinator: str) -> list[str]:
    with session_factory(hub._engine)() as s:
        return list(s.scalars(select(AlertFeed.change).where(
            AlertFeed.coordinator_id == coordinator).order_by(AlertFeed.seq)))


def _registry(hub: Hub, covenant: str, *extra_coordinators: str) -> Registry:
    reg = setup_registry(hub, covenant=None)
    for coordinator in extra_coordinators:
        reg.coordinator(coordinator)
    hub.register_covenant(ADMIN, covenant)
    return reg


def _orgs(view: object) -> set[str]:
    return {i.organisation_id for i in view.involved}  # type: ignore[attr-defined]


# -- who coordinates ---------------------------------------------------------------


def test_two_coordinators_by_region(hub: Hub) -> None:
    _registry(hub, REGIONAL, "coord-b")
    hub.submit(access("org-a"), signal(hub, "org-a", person="north", region=NORTH))
    hub.submit(access("org-b"), signal(hub, "org-b", person="north", region=NORTH,
                                       category="housing"))
    hub.submit(access("org-a"), signal(hub, "org-a", person="south", region=SOUTH))
    hub.submit(access("org-c"), signal(hub, "org-c", person="south", region=SOUTH,
                                       category="debt"))
    (north,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    (south,), _ = hub.list_alerts(COORD_B, OPEN, 10, "")
    assert (_orgs(north), north.coordinator_id) == ({"org-a", "org-b"}, "coord-a")
    assert (_orgs(south), south.coordinator_id) == ({"org-a", "org-c"}, "coord-b")
    with pytest.raises(NotFound):  # a coordinator cannot reach the other region's alert
        hub.open_alert(COORD_B, north.alert_id)
    # every signal is sealed to both coordinators: a household can move between them
    recipients = {r.coordinator_id: r.regions for r in hub.recipients(access("org-a"))}
    assert recipients == {"coord-a": (NORTH,), "coord-b": (SOUTH,)}


def test_a_household_that_moves_is_handed_to_the_new_regions_coordinator(
        hub: Hub, clock: Clock) -> None:
    _registry(hub, REGIONAL, "coord-b")
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", region=NORTH))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", region=NORTH,
                                       category="housing"))
    (before,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    hub.open_alert(COORD, before.alert_id)
    clock.advance(days=3)
    # the family moved south; debt counselling there knows them by the same person key
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", region=SOUTH,
                                       category="debt"))
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []
    (closed,), _ = hub.list_alerts(COORD, ("closed",), 10, "")
    assert (closed.alert_id, closed.closed_reason, closed.involved) == (
        before.alert_id, "handed_over", ())
    (after,), _ = hub.list_alerts(COORD_B, OPEN, 10, "")
    assert _orgs(after) == {"org-a", "org-b", "org-c"} and after.state == "new"
    _, envelopes = hub.open_alert(COORD_B, after.alert_id)
    assert {org for _, org, _ in envelopes} == {"org-a", "org-b", "org-c"}
    assert _feed(hub, "coord-a")[-1] == "closed" and _feed(hub, "coord-b") == [
        "created", "updated"]
    (handover,) = [e for e in _events(hub, "alert.close") if e.reason == "handed_over"]
    assert handover.detail and "coord-a" in handover.detail


def test_coordinators_by_partner_group(hub: Hub, clock: Clock) -> None:
    groups = _covenant(single=False, tables='\n[[groups]]\ncoordinator = "coord-a"\n'
                       'parties = ["org-a", "org-b"]\n\n[[groups]]\ncoordinator = "coord-b"\n'
                       'parties = ["org-c"]\n')
    _registry(hub, groups, "coord-b")
    for org, person, category in (("org-c", "p", "debt"), ("org-a", "p", "youth_care"),
                                  ("org-b", "q", "housing"), ("org-a", "q", "youth_care")):
        hub.submit(access(org), signal(hub, org, person=person, category=category))
        clock.advance(minutes=1)
    # the group of the party that signalled first coordinates the household
    (first,), _ = hub.list_alerts(COORD_B, OPEN, 10, "")
    (second,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert _orgs(first) == {"org-a", "org-c"} and _orgs(second) == {"org-a", "org-b"}


# -- the alert lifecycle -----------------------------------------------------------


def test_an_alert_goes_new_seen_contact_made_closed_with_who_and_when(
        hub: Hub, clock: Clock) -> None:
    setup_registry(hub)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert (view.state, view.seen, view.contact_made, view.closed) == ("new", None, None, None)
    clock.advance(hours=1)
    seen, _ = hub.open_alert(COORD, view.alert_id)
    assert (seen.state, seen.seen) == ("seen", (clock.now, "coord-a"))
    clock.advance(hours=1)
    made = hub.record_contact(COORD, view.alert_id)
    assert (made.state, made.contact_made) == ("contact_made", (clock.now, "coord-a"))
    with pytest.raises(InvalidInput, match="reason"):
        hub.close_alert(COORD, view.alert_id, "bored")
    assert hub.list_alerts(COORD, OPEN, 10, "")[0][0].state == "contact_made"  # unchanged
    clock.advance(hours=1)
    closed = hub.close_alert(COORD, view.alert_id, "resolved")
    assert (closed.state, closed.closed, closed.closed_reason) == (
        "closed", (clock.now, "coord-a"), "resolved")
    assert closed.seen == seen.seen and closed.contact_made == made.contact_made
    with pytest.raises(FailedPrecondition, match="closed"):
        hub.record_contact(COORD, view.alert_id)
    again = hub.close_alert(COORD, view.alert_id, "resolved")  # a retried close succeeds
    assert (again.closed, again.closed_reason) == (closed.closed, "resolved")
    assert [e.event_type for e in _events(hub, "alert.contact") + _events(hub, "alert.close")
            ] == ["alert.contact", "alert.close", "alert.close"]
    assert _feed(hub, "coord-a") == ["created", "updated", "updated", "closed"]


def test_a_closed_alert_stays_closed_until_someone_new_is_involved(hub: Hub) -> None:
    setup_registry(hub)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    b = signal(hub, "org-b", person="p", category="housing")
    hub.submit(access("org-b"), b)
    (view,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    hub.close_alert(COORD, view.alert_id, "no_action_needed")
    hub.submit(access("org-b"), b)  # a resubmission
    hub.sweep()
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    (again,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert again.alert_id != view.alert_id and again.state == "new"
    assert _orgs(again) == {"org-a", "org-b", "org-c"}


def test_listing_by_id_prefix_reads_and_logs_only_those_alerts(hub: Hub) -> None:
    setup_registry(hub).coordinator("coord-b")
    for person in ("p", "q", "r"):
        hub.submit(access("org-a"), signal(hub, "org-a", person=person))
        hub.submit(access("org-b"), signal(hub, "org-b", person=person, category="housing"))
    views, _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert len(views) == 3
    before = len(_events(hub, "alert.list"))
    wanted = views[1]
    for prefix in (wanted.alert_id[:8], wanted.alert_id):
        (found,), _ = hub.list_alerts(COORD, OPEN, 10, "", id_prefix=prefix)
        assert found.alert_id == wanted.alert_id
    listed = _events(hub, "alert.list")[before:]
    assert [json.loads(e.detail)["alert"] for e in listed] == [wanted.alert_id] * 2
    # another coordinator's alert, or a prefix of none of them, lists nothing
    assert hub.list_alerts(COORD_B, OPEN, 10, "", id_prefix=wanted.alert_id)[0] == []
    nothing = next(p for p in (f"{n:08x}" for n in range(16))
                   if not any(v.alert_id.startswith(p) for v in views))
    assert hub.list_alerts(COORD, OPEN, 10, "", id_prefix=nothing)[0] == []


def test_another_coordinator_cannot_advance_an_alert(hub: Hub) -> None:
    reg = setup_registry(hub)
    reg.coordinator("coord-b")
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (view,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    for step in (lambda: hub.record_contact(COORD_B, view.alert_id),
                 lambda: hub.close_alert(COORD_B, view.alert_id, "resolved")):
        with pytest.raises(NotFound):
            step()
    assert hub.list_alerts(COORD, OPEN, 10, "")[0][0].state == "new"


ESCALATING = _covenant(tables='\n[escalation]\nreminder_days = 2\nescalation_days = 4\n'
                       'contact = "coord-lead"\n')


def test_reminder_then_escalation_when_no_contact_is_recorded(hub: Hub, clock: Clock) -> None:
    _registry(hub, ESCALATING, "coord-lead")
    hub.submit(access("org-a"), signal(hub, "org-a", person="slow"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="slow", category="housing"))
    hub.submit(access("org-a"), signal(hub, "org-a", person="quick"))
    hub.submit(access("org-c"), signal(hub, "org-c", person="quick", category="debt"))
    slow, quick = hub.list_alerts(COORD, OPEN, 10, "")[0]
    start = clock.now
    clock.advance(days=1)
    hub.record_contact(COORD, quick.alert_id)
    clock.now = start + timedelta(days=2) - timedelta(minutes=1)
    hub.sweep()
    assert _feed(hub, "coord-a").count("reminder") == 0
    clock.now = start + timedelta(days=2)
    hub.sweep()
    hub.sweep()  # once only
    assert _feed(hub, "coord-a").count("reminder") == 1
    views = {v.alert_id: v for v in hub.list_alerts(COORD, OPEN, 10, "")[0]}
    assert views[slow.alert_id].reminded_at == clock.now
    assert views[quick.alert_id].reminded_at is None  # contact was made in time
    assert views[slow.alert_id].escalated_at is None
    assert hub.list_alerts(LEAD, OPEN, 10, "", escalated=True)[0] == []

    clock.now = start + timedelta(days=4)
    hub.sweep()
    hub.sweep()
    assert _feed(hub, "coord-a").count("escalated") == 1
    assert _feed(hub, "coord-lead") == ["escalated"]
    (escalated,), _ = hub.list_alerts(LEAD, OPEN, 10, "", escalated=True)
    # the escalation contact sees the alert's state and history, not who is involved
    assert (escalated.alert_id, escalated.coordinator_id, escalated.involved,
            escalated.household_ref) == (slow.alert_id, "coord-a", (), "")
    assert (escalated.escalated_at, escalated.escalated_to) == (clock.now, "coord-lead")
    assert hub.list_alerts(LEAD, OPEN, 10, "")[0] == []  # not the contact's own alert
    with pytest.raises(NotFound):
        hub.open_alert(LEAD, slow.alert_id)
    (remind,) = _events(hub, "alert.remind")
    (escalate,) = _events(hub, "alert.escalate")
    assert slow.alert_id in remind.detail and "coord-lead" in escalate.detail
    # recording contact now still works and ends the wait
    assert hub.record_contact(COORD, slow.alert_id).state == "contact_made"


def test_escalation_without_a_named_contact_reaches_the_coordinator(
        hub: Hub, clock: Clock) -> None:
    setup_registry(hub, covenant=_covenant(
        tables="\n[escalation]\nreminder_days = 1\nescalation_days = 3\n"))
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    clock.advance(days=3)
    hub.sweep()
    (view,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert view.reminded_at == view.escalated_at == clock.now and view.escalated_to == ""
    assert _feed(hub, "coord-a") == ["created", "reminder", "escalated"]


# -- consent needed ----------------------------------------------------------------


def test_a_held_match_asks_only_the_partner_whose_category_needs_consent(
        hub: Hub, clock: Clock) -> None:
    setup_registry(hub)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []
    (task,) = hub.list_tasks(access("org-a"))
    assert (task.kind, task.state, task.covenant_id, task.others) == (
        "consent_needed", "open", "test-covenant", ())
    assert "org-b" not in repr(task) and b.id not in repr(task)
    assert hub.list_tasks(access("org-b")) == []  # housing has a basis: nothing to ask
    for event in _events(hub, "task.consent_needed"):
        assert event.owner_org == "org-a" and "org-b" not in event.detail
        assert b.id not in event.detail
    with pytest.raises(FailedPrecondition, match="closes itself"):
        hub.dismiss_task(access("org-a"), task.task_id)
    with pytest.raises(NotFound):
        hub.dismiss_task(access("org-b"), task.task_id)

    clock.advance(hours=2)
    record, _ = hub.record_consent(access("org-a"), consent_input(person="p"))
    (view,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert _orgs(view) == {"org-a", "org-b"}
    assert hub.list_tasks(access("org-a")) == []
    (done,) = hub.list_tasks(access("org-a"), include_done=True)
    assert (done.task_id, done.state, done.closed_reason) == (task.task_id, "done", "released")

    # revoked: disclosure stops at once, and the household that said no is not asked again
    clock.advance(hours=2)
    hub.revoke_consent(access("org-a"), record.id)
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []
    assert hub.list_tasks(access("org-a")) == []
    hub.sweep()
    assert hub.list_tasks(access("org-a")) == []


def test_consent_revoked_between_two_disclosures(hub: Hub, clock: Clock) -> None:
    setup_registry(hub)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    (view,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert _orgs(view) == {"org-b", "org-c"}  # mental health held back
    record, _ = hub.record_consent(access("org-a"), consent_input(person="p"))
    _, first = hub.open_alert(COORD, view.alert_id)
    assert {org for _, org, _ in first} == {"org-a", "org-b", "org-c"}
    clock.advance(hours=1)
    hub.revoke_consent(access("org-a"), record.id)
    seen, second = hub.open_alert(COORD, view.alert_id)
    assert {org for _, org, _ in second} == {"org-b", "org-c"}
    assert seen.alert_id == view.alert_id and _orgs(seen) == {"org-b", "org-c"}
    opens = _events(hub, "alert.open")
    by_time: dict[object, set[str]] = {}
    for e in opens:
        by_time.setdefault(e.occurred_at, set()).add(e.owner_org)
    # the first disclosure of org-a stays in the log, on the consent's basis
    assert sorted(map(sorted, by_time.values())) == [
        ["org-a", "org-b", "org-c"], ["org-b", "org-c"]]
    assert {e.basis for e in opens if e.owner_org == "org-a"} == {
        f"consent:{record.id}@test-covenant@v1"}


def test_a_new_covenant_version_decides_every_match_again(hub: Hub) -> None:
    setup_registry(hub)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", category="mental_health"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []
    hub.register_covenant(ADMIN, COVENANT.replace('mental_health = "consent"',
                                                  'mental_health = "covenant"'))
    (view,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert _orgs(view) == {"org-a", "org-b"}
    assert hub.list_tasks(access("org-a"), include_done=True)[0].closed_reason == "released"
    created = _events(hub, "alert.create")
    assert {e.basis for e in created} == {"covenant:test-covenant@v2"}
    hub.register_covenant(ADMIN, COVENANT)  # version 3: back to consent
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []
    (task,) = hub.list_tasks(access("org-a"))
    assert task.kind == "consent_needed"


# -- match notices -----------------------------------------------------------------


def test_match_notices_give_the_others_contacts_never_the_reason(hub: Hub) -> None:
    setup_registry(hub, covenant=_covenant(top='match_notices = ["youth_care", "housing"]\n'))
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    (alert,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert _orgs(alert) == {"org-a", "org-b", "org-c"}
    (notice,) = hub.list_tasks(access("org-a"))
    assert notice.kind == "match_notice"
    assert [(org, contact.name) for org, _, contact in notice.others] == [
        ("org-b", "Prof org-b")]  # debt is not a notice category: org-c stays unnamed
    (other,) = hub.list_tasks(access("org-b"))
    assert [org for org, _, _ in other.others] == ["org-a"]
    assert hub.list_tasks(access("org-c")) == []
    text = repr(notice) + repr(other)
    assert not any(c in text for c in ("youth_care", "housing", "debt", "category"))
    # each listing of a notice is a disclosure, logged for the organisation it names
    shown = _events(hub, "notice.match_notice")
    assert [(e.owner_org, e.action) for e in shown] == [("org-b", "disclose"),
                                                         ("org-a", "disclose")]
    assert b.id in shown[0].detail and "org-a" in shown[0].detail

    dismissed = hub.dismiss_task(access("org-a"), notice.task_id)
    assert (dismissed.state, dismissed.closed_reason) == ("done", "dismissed")
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    assert hub.list_tasks(access("org-a")) == []  # not raised again for the same alert
    hub.close_alert(COORD, alert.alert_id, "resolved")
    (closed,) = hub.list_tasks(access("org-b"), include_done=True)
    assert closed.closed_reason == "alert_closed" and closed.others == ()


# -- the signal lifecycle ----------------------------------------------------------


def _rows(hub: Hub, model: type, signal_id: str) -> int:
    column = model.id if model is Signal else model.signal_id  # type: ignore[attr-defined]
    with session_factory(hub._engine)() as s:
        return s.scalar(select(func.count()).select_from(model).where(column == signal_id)) or 0


def test_an_unjustified_withdrawal_leaves_no_archived_trace_but_a_log_entry(hub: Hub) -> None:
    setup_registry(hub, covenant=NOTICES)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (alert,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert hub.list_tasks(access("org-b"))  # a match notice about org-a
    hub.withdraw(access("org-b"), b.id, "unjustified")
    for model in (Signal, SignalKey, Envelope, AlertSignal, Task):
        assert _rows(hub, model, b.id) == 0, model.__name__
    (event,) = [e for e in _events(hub, "signal.withdraw") if b.id in e.detail]
    assert (event.action, event.reason, event.owner_org) == ("delete", "unjustified", "org-b")
    assert hub.list_alerts(COORD, ("closed",), 10, "")[0][0].alert_id == alert.alert_id
    # nothing of it is shown to a later reporter either
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    (notice,) = hub.list_tasks(access("org-c"))
    assert (notice.kind, [org for org, _, _ in notice.others]) == ("match_notice", ["org-a"])


def test_risk_gone_is_archived_and_an_archived_signal_can_still_be_judged_unjustified(
        hub: Hub) -> None:
    setup_registry(hub)
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.withdraw(access("org-a"), a.id, "risk_gone")
    with session_factory(hub._engine)() as s:
        row = s.get_one(Signal, a.id)
        assert (row.state, row.archive_reason) == ("archived", "risk_gone")
        assert row.purge_after == row.archived_at + hub.limits.archive_period  # type: ignore[operator]
    hub.withdraw(access("org-a"), a.id, "risk_gone")  # repeated: nothing changes
    hub.withdraw(access("org-a"), a.id, "unjustified")
    assert _rows(hub, Signal, a.id) == 0
    actions = [(e.action, e.reason) for e in _events(hub, "signal.withdraw")]
    assert actions == [("update", "risk_gone"), ("update", "risk_gone"),
                       ("delete", "unjustified")]


def test_expiry_archives_then_the_archive_is_purged_and_the_log_still_verifies(
        hub: Hub, clock: Clock) -> None:
    setup_registry(hub, covenant=COVENANT.replace("valid_until = 2026-12-31",
                                                  "valid_until = 2035-12-31"))
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    assert len(hub.list_alerts(COORD, OPEN, 10, "")[0]) == 1
    clock.advance(days=730)
    hub.sweep()
    with session_factory(hub._engine)() as s:
        row = s.get_one(Signal, a.id)
        assert (row.state, row.archive_reason, row.archived_at) == (
            "archived", "expired", row.expires_at)
    (closed,), _ = hub.list_alerts(COORD, ("closed",), 10, "")
    assert closed.closed_reason == "dissolved"
    archived = [e for e in _events(hub, "signal.archive") if a.id in e.detail]
    assert [(e.owner_org, e.reason) for e in archived] == [("org-a", "expired")]

    clock.advance(days=hub.limits.archive_period.days - 1)
    hub.sweep()
    assert _rows(hub, Signal, a.id) == 1
    clock.advance(days=1)
    hub.sweep()
    for model in (Signal, SignalKey, Envelope):
        assert _rows(hub, model, a.id) == 0
    purged = [e for e in _events(hub, "signal.purge") if a.id in e.detail]
    assert [(e.owner_org, e.reason) for e in purged] == [("org-a", "expired")]
    assert _events(hub, "signal.submit")  # the log keeps what happened
    result, _ = hub.verify(ADMIN)
    assert result.ok


def test_a_new_signal_matching_only_archived_ones_gets_a_one_time_notice(hub: Hub) -> None:
    setup_registry(hub, covenant=NOTICES)
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.withdraw(access("org-a"), a.id, "risk_gone")
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []  # archived signals do not match
    (notice,) = hub.list_tasks(access("org-b"))
    assert notice.kind == "archived_match"
    assert [(org, c.name) for org, _, c in notice.others] == [("org-a", "Prof org-a")]
    hub.withdraw(access("org-b"), b.id, "risk_gone")
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    (later,) = hub.list_tasks(access("org-c"))
    # org-a's archived signal gave its notice once; org-b's gives its own
    assert [org for org, _, _ in later.others] == ["org-b"]
    # with another organisation active, a new signal makes a match, not an archive notice
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    assert [t.kind for t in hub.list_tasks(access("org-a"))] == ["match_notice"]


def test_no_archived_notice_while_another_organisation_is_active(hub: Hub) -> None:
    setup_registry(hub, covenant=NOTICES)
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.withdraw(access("org-a"), a.id, "risk_gone")
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    c, _ = hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    assert [t.kind for t in hub.list_tasks(access("org-c"))] == ["match_notice"]
    with session_factory(hub._engine)() as s:
        assert s.scalar(select(Task.id).where(Task.signal_id == c.id,
                                              Task.kind == "archived_match")) is None


def test_a_task_of_another_partner_is_not_found(hub: Hub) -> None:
    setup_registry(hub, covenant=NOTICES)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (task,) = hub.list_tasks(access("org-a"))
    with pytest.raises(NotFound):
        hub.dismiss_task(access("org-b"), task.task_id)
    with pytest.raises(InvalidInput):
        hub.dismiss_task(access("org-a"), "not-a-uuid")
    with pytest.raises(PermissionDenied):
        hub.list_tasks(access("org-x"))
    assert hub.list_tasks(access("org-a"))[0].state == "open"


# -- the hub's settings for the lifecycle ------------------------------------------


def test_expiry_and_archive_periods_come_from_the_hub_settings(tmp_path: Path) -> None:
    settings = HubSettings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", migrate=True,
                           checkpoint_key=tmp_path / "cp.key", max_signal_age_days=30,
                           archive_days=90)
    hub = open_hub(settings)
    try:
        assert (hub.limits.max_signal_age, hub.limits.archive_period) == (
            timedelta(days=30), timedelta(days=90))
    finally:
        hub.close()
    for bad in ({"archive_days": 0}, {"max_signal_age_days": -5}):
        with pytest.raises(ConfigError, match="whole number of days"):
            open_hub(dataclasses.replace(settings, **bad))  # type: ignore[arg-type]


def test_a_split_closes_the_notices_of_a_match_that_ended(hub: Hub) -> None:
    setup_registry(hub, covenant=NOTICES)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="q", address="flat",
                                       category="housing"))
    bridge, _ = hub.submit(access("org-c"), signal(hub, "org-c", person="p", address="flat",
                                                   category="debt"))
    (notice,) = hub.list_tasks(access("org-b"))
    assert {org for org, _, _ in notice.others} == {"org-a", "org-c"}
    hub.withdraw(access("org-c"), bridge.id, "risk_gone")  # org-a and org-b fall apart
    assert hub.list_tasks(access("org-b")) == [] and hub.list_tasks(access("org-a")) == []
    (done,) = hub.list_tasks(access("org-b"), include_done=True)
    assert (done.closed_reason, done.others) == ("match_ended", ())


def test_consent_needed_only_when_consent_could_make_a_match(hub: Hub) -> None:
    setup_registry(hub)
    # org-a's signal is outside the covenant's regions: nothing can disclose it, so asking
    # org-b's household for consent would only tell org-b that someone else is involved
    hub.submit(access("org-a"), signal(hub, "org-a", person="p", region="GM0999"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="mental_health"))
    assert hub.list_tasks(access("org-b")) == []
    # two consent categories: one consent would release both, so both partners are asked
    hub.submit(access("org-a"), signal(hub, "org-a", person="q", category="mental_health"))
    hub.submit(access("org-c"), signal(hub, "org-c", person="q", category="mental_health"))
    assert [t.kind for t in hub.list_tasks(access("org-a"))] == ["consent_needed"]
    assert [t.kind for t in hub.list_tasks(access("org-c"))] == ["consent_needed"]
    hub.record_consent(access("org-c"), consent_input(person="q"))
    (alert,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    assert _orgs(alert) == {"org-a", "org-c"}
    assert hub.list_tasks(access("org-a")) == hub.list_tasks(access("org-c")) == []


def test_an_archived_match_notice_needs_the_covenant_to_cover_both_signals(
        hub: Hub, clock: Clock) -> None:
    setup_registry(hub, covenant=NOTICES)
    a, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.withdraw(access("org-a"), a.id, "risk_gone")
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing",
                                              region="GM0999"))
    assert hub.list_tasks(access("org-b")) == []  # a region outside the covenant
    hub.withdraw(access("org-b"), b.id, "unjustified")
    hub.submit(access("org-c"), signal(hub, "org-c", person="p", category="debt"))
    (notice,) = hub.list_tasks(access("org-c"))
    assert [org for org, _, _ in notice.others] == ["org-a"]
    clock.now = clock.now.replace(year=2027, month=1, day=2)  # the covenant has ended
    (ended,) = hub.list_tasks(access("org-c"))
    assert (ended.task_id, ended.others) == (notice.task_id, ())  # fails closed


def test_a_notice_rests_on_the_covenant_that_allows_it(hub: Hub) -> None:
    reg = setup_registry(hub)
    assert reg.hub is hub
    second = (COVENANT.replace('id = "test-covenant"', 'id = "zz-notices"')
              .replace('regions = ["GM0014"]\n',
                       'regions = ["GM0014"]\nmatch_notices = ["youth_care", "housing"]\n'))
    hub.register_covenant(ADMIN, second)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    assert len(hub.list_alerts(COORD, OPEN, 10, "")[0]) == 1  # one alert for the coordinator
    (notice,) = hub.list_tasks(access("org-a"))
    assert notice.covenant_id == "zz-notices"
    assert {e.basis for e in _events(hub, "notice.match_notice")} == {"covenant:zz-notices@v1"}


def test_a_replacement_takes_the_old_signals_place(hub: Hub) -> None:
    """Re-submitting a case with pseudonyms of a new OPRF key (a key rotation) neither
    raises a new alert nor loses the old one's place."""
    setup_registry(hub, covenant=NOTICES)
    old, _ = hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    b, _ = hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    (alert,), _ = hub.list_alerts(COORD, OPEN, 10, "")
    (notice,) = hub.list_tasks(access("org-a"))
    hub.close_alert(COORD, alert.alert_id, "resolved")
    feed = _feed(hub, "coord-a")
    new = signal(hub, "org-a", person="p")  # in a rotation it carries both keys' pseudonyms
    new = dataclasses.replace(new, keys=new.keys | {(1, b"n" * 32)}, replaces=old.id)
    stored, duplicate = hub.submit(access("org-a"), new)
    assert not duplicate
    assert hub.list_alerts(COORD, OPEN, 10, "")[0] == []  # no new involvement
    assert _feed(hub, "coord-a") == feed
    with session_factory(hub._engine)() as s:
        assert s.get(Signal, old.id) is None
        assert set(s.scalars(select(AlertSignal.signal_id).where(
            AlertSignal.alert_id == alert.alert_id))) == {stored.id, b.id}
        assert s.scalar(select(Task.signal_id).where(Task.id == notice.task_id)) == stored.id
    (event,) = [e for e in _events(hub, "signal.withdraw") if old.id in e.detail]
    assert (event.action, event.reason) == ("delete", "replaced") and stored.id in event.detail
    assert hub.submit(access("org-a"), new)[1]  # resent: a duplicate, nothing else
    with pytest.raises(NotFound, match="to replace"):
        hub.submit(access("org-b"), dataclasses.replace(
            signal(hub, "org-b", person="p", category="housing"), replaces=old.id))
