"""The acceptance scenario of disclosure governance: four partner organisations (and one
organisation outside the covenant), twenty households, and the alerts, held matches and
partners' tasks each should end with, written out by hand below.

The expectations follow the rules, not the code's output:

* docs/covenants.md, "When is a match disclosed?": each party signal needs a basis of its
  own (the covenant for a "covenant" category, or the household's consent recorded by an
  involved partner); two or more organisations with a basis give an alert showing exactly
  those, fewer hold the whole match; a signal of a region or an organisation outside the
  covenant is never disclosed under it; a category not listed needs consent.
* hub._matching: households are linked by a shared person key or address key; the
  coordinator is the one of the region of the household's most recent signal (a move
  hands the alert over); "consent needed" goes to the partner whose category needs
  consent and names no one else; match notices let the professionals of the covenant's
  notice categories know each other (and only each other).
* README ("For the coordinator"): closing an alert ends it for these organisations; a new
  organisation raises a new one.

Households (H01..H20; organisations J = jeugdzorg, youth care; W = woonstad, housing;
S = schuldhulp, debt; G = ggz, mental health, a "consent" category; P = politie, not a
party):

=====  ===========================================================  =====================
H01    J only (two people at one address)                           nothing
H02    J + S, one person                                            alert, contact made
H03    J + W linked only by a shared address                        alert (seen), notices
H04    J + W linked only by a person key (two addresses)            alert, W dismissed
H05    J and W apart, then S bridges them (J's person, W's address) alert J+W+S, notices
H06    G + J                                                        held, G consent needed
H07    G + W, G records consent                                     released: alert G+W
H08    J + W + G                                                    alert J+W, G consent
H09    G + J, consent recorded by S (a party, but not involved)     held, G consent needed
H10    G + W, G records consent, then revokes it                    held, alert closed
H11    P + J                                                        nothing (one party)
H12    P + J + W                                                    alert J+W, notices
H13    J + W, W's signal in a region outside the covenant           held, no task
H14    J + W, W withdraws (risk gone)                               alert closed, no match
H15    J + W + S, S withdraws (unjustified)                         alert J+W, notices
H16    J + S in the south region                                    alert at the south
H17    J + W in the north, then S in the south (a move)             handed over to south
H18    J + W, coordinator closes (no action needed)                 closed, nothing new
H19    J + W, coordinator closes (resolved), then S joins           new alert J+W+S
H20    G + S, S with a category the covenant does not list          held, both consent
=====  ===========================================================  =====================
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from exchange import vocab
from exchange.db import session_factory
from hub._audit import Access
from hub._core import AlertView, Hub, TaskView
from hub._models import Match, Signal
from tests.support import (
    ADMIN,
    Clock,
    access,
    consent_input,
    setup_registry,
    signal,
)

COVENANT_ID = "samen-sterk-scenario"
NORTH, SOUTH, ELSEWHERE = "GM0014", "GM0034", "GM0999"
J, W, S, G, P = "jeugdzorg", "woonstad", "schuldhulp", "ggz", "politie"
PARTIES = (J, W, S, G)
ORGANISATIONS = (*PARTIES, P)
CATEGORY = {J: "youth_care", W: "housing", S: "debt", G: "mental_health", P: "police"}
COORD_NORTH = access("gemeente", "coordinator", "coord-a")
COORD_SOUTH = access("gemeente", "coordinator", "coord-b")
OPEN = ("new", "seen", "contact_made")

SCENARIO_COVENANT = f"""\
id = "{COVENANT_ID}"
name = "Convenant Samen Sterk (scenario)"
legal_basis = "AVG art. 6(1)(e) en 9(2)(g); Jeugdwet art. 7.1.1.1; Wmo 2015 art. 5.2.1"
valid_from = 2026-01-01
valid_until = 2027-12-31
parties = ["{J}", "{W}", "{S}", "{G}"]
purposes = ["care_coordination"]
regions = ["{NORTH}", "{SOUTH}"]
article = "art. 5"
match_notices = ["youth_care", "housing"]

[coordinators]
{NORTH} = "coord-a"
{SOUTH} = "coord-b"

[categories]
youth_care = "covenant"
housing = "covenant"
debt = "covenant"
mental_health = "consent"
"""

# -- the expectations, by hand ---------------------------------------------------------

# Per coordinator: household -> the organisations its open alert shows.
EXPECTED_OPEN_ALERTS: dict[str, dict[str, set[str]]] = {
    "coord-a": {
        "H02": {J, S},
        "H03": {J, W},
        "H04": {J, W},
        "H05": {J, W, S},
        "H07": {G, W},
        "H08": {J, W},
        "H12": {J, W},
        "H15": {J, W},
        "H19": {J, W, S},
    },
    "coord-b": {
        "H16": {J, S},
        "H17": {J, W, S},
    },
}

# The state of each open alert: H02's coordinator opened it and recorded contact, H03's
# opened it; the others are unread.
EXPECTED_ALERT_STATES: dict[str, str] = {
    "H02": "contact_made",
    "H03": "seen",
    "H04": "new",
    "H05": "new",
    "H07": "new",
    "H08": "new",
    "H12": "new",
    "H15": "new",
    "H16": "new",
    "H17": "new",
    "H19": "new",
}

# Per coordinator: household -> the reasons its closed alerts were closed with.
EXPECTED_CLOSED_ALERTS: dict[str, dict[str, list[str]]] = {
    "coord-a": {
        "H10": ["basis_lapsed"],      # the consent it rested on was revoked
        "H14": ["dissolved"],         # one organisation left: no match any more
        "H17": ["handed_over"],       # the household moved to the south
        "H18": ["no_action_needed"],  # closed by the coordinator
        "H19": ["resolved"],          # closed by the coordinator, before S joined
    },
    "coord-b": {},
}

# Households whose match (under the covenant) is held.
EXPECTED_HELD: set[str] = {"H06", "H09", "H10", "H13", "H20"}

# Every match the covenant has, by household (H01 and H11 never had two parties).
EXPECTED_MATCHES: dict[str, str] = {
    "H02": "disclosed",
    "H03": "disclosed",
    "H04": "disclosed",
    "H05": "disclosed",
    "H06": "held",
    "H07": "disclosed",
    "H08": "disclosed",  # J and W shown, G withheld
    "H09": "held",
    "H10": "held",
    "H12": "disclosed",
    "H13": "held",
    "H14": "dissolved",
    "H15": "disclosed",
    "H16": "disclosed",
    "H17": "disclosed",
    "H18": "disclosed",  # the basis stands; the coordinator closed the alert
    "H19": "disclosed",
    "H20": "held",
}

# Per organisation: its open tasks as (household, kind, other organisations named).
NOTICE, CONSENT = "match_notice", "consent_needed"
EXPECTED_TASKS: dict[str, list[tuple[str, str, tuple[str, ...]]]] = {
    J: [
        ("H03", NOTICE, (W,)),
        ("H04", NOTICE, (W,)),
        ("H05", NOTICE, (W,)),
        ("H08", NOTICE, (W,)),
        ("H12", NOTICE, (W,)),
        ("H15", NOTICE, (W,)),
        ("H17", NOTICE, (W,)),
        ("H19", NOTICE, (W,)),
    ],
    W: [
        ("H03", NOTICE, (J,)),
        # H04: dismissed by woonstad
        ("H05", NOTICE, (J,)),
        ("H08", NOTICE, (J,)),
        ("H12", NOTICE, (J,)),
        ("H15", NOTICE, (J,)),
        ("H17", NOTICE, (J,)),
        ("H19", NOTICE, (J,)),
    ],
    S: [
        ("H20", CONSENT, ()),
    ],
    G: [
        ("H06", CONSENT, ()),
        ("H08", CONSENT, ()),
        ("H09", CONSENT, ()),
        ("H20", CONSENT, ()),
    ],
    P: [],
}

LABELS = tuple(f"H{i:02d}" for i in range(1, 21))


# -- the scenario ----------------------------------------------------------------------


@dataclass
class Scenario:
    hub: Hub
    clock: Clock
    # household label -> the ids of its signals, in submission order
    signals: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, label: str, org: str, *, person: str | None = None,
            address: str | None = None, category: str | None = None,
            region: str = NORTH) -> str:
        """Submit one signal of ``org`` about household ``label``, a minute later."""
        self.clock.advance(minutes=1)
        item = signal(self.hub, org, person=f"{label}-{person}" if person else None,
                      address=f"{label}-{address}" if address else None,
                      category=category or CATEGORY[org], region=region)
        stored, duplicate = self.hub.submit(access(org), item)
        assert not duplicate
        self.signals[label].append(stored.id)
        return stored.id

    def consent(self, label: str, org: str, person: str) -> str:
        self.clock.advance(minutes=1)
        record, _ = self.hub.record_consent(access(org), consent_input(
            person=f"{label}-{person}", covenant_id=COVENANT_ID, days=365))
        return record.id

    def household(self, label: str) -> str:
        """The household of a label, from its active signals (which must agree)."""
        with session_factory(self.hub._engine)() as s:
            found = set(s.scalars(select(Signal.household_id).where(
                Signal.id.in_(self.signals[label]), Signal.state == "active")))
        assert len(found) == 1, f"{label}: active signals in households {found}"
        return found.pop()

    def alert(self, coordinator: Access, label: str) -> AlertView:
        views, _ = self.hub.list_alerts(coordinator, OPEN, 100, "")
        (view,) = [v for v in views if v.household_ref == self.household(label)]
        return view


def _play(sc: Scenario) -> None:
    hub = sc.hub
    # H01: one organisation, two people at one address: no match.
    sc.add("H01", J, person="child", address="home")
    sc.add("H01", J, person="mother", address="home")
    # H02: youth care and debt counselling about the same person.
    sc.add("H02", J, person="mother", address="home")
    sc.add("H02", S, person="mother")
    # H03: linked only through the shared address.
    sc.add("H03", J, person="child", address="home")
    sc.add("H03", W, person="tenant", address="home")
    # H04: linked only through a person key (the mother lives elsewhere now).
    sc.add("H04", J, person="mother", address="old-home")
    w04 = sc.add("H04", W, person="mother", address="new-home")
    # H05: two separate households, then a signal bridges them.
    sc.add("H05", J, person="child", address="home-1")
    sc.add("H05", W, person="tenant", address="home-2")
    sc.add("H05", S, person="child", address="home-2")
    # H06: mental health needs consent; youth care alone cannot make a match.
    sc.add("H06", G, person="father", address="home")
    sc.add("H06", J, person="child", address="home")
    # H07: held at first, then mental health records the household's consent.
    sc.add("H07", G, person="mother", address="home")
    sc.add("H07", W, person="mother", address="home")
    sc.consent("H07", G, "mother")
    # H08: mental health alongside two covered organisations.
    sc.add("H08", J, person="child", address="home")
    sc.add("H08", W, person="mother", address="home")
    sc.add("H08", G, person="mother", address="home")
    # H09: the consent is recorded by a party that has no signal on the household.
    sc.add("H09", G, person="child", address="home")
    sc.add("H09", J, person="child", address="home")
    sc.consent("H09", S, "child")
    # H10: consent recorded, then revoked.
    sc.add("H10", G, person="father", address="home")
    sc.add("H10", W, person="father", address="home")
    consent_10 = sc.consent("H10", G, "father")
    sc.clock.advance(minutes=1)
    hub.revoke_consent(access(G), consent_10)
    # H11: an organisation outside the covenant with one party.
    sc.add("H11", P, person="son", address="home")
    sc.add("H11", J, person="son", address="home")
    # H12: an organisation outside the covenant with two parties.
    sc.add("H12", P, person="son", address="home")
    sc.add("H12", J, person="son", address="home")
    sc.add("H12", W, person="mother", address="home")
    # H13: the housing signal is from a region outside the covenant.
    sc.add("H13", J, person="child", address="home")
    sc.add("H13", W, person="child", address="home", region=ELSEWHERE)
    # H14: housing withdraws its signal (risk gone).
    sc.add("H14", J, person="child", address="home")
    w14 = sc.add("H14", W, person="tenant", address="home")
    sc.clock.advance(minutes=1)
    hub.withdraw(access(W), w14, "risk_gone")
    # H15: debt counselling withdraws as unjustified; youth care and housing remain.
    sc.add("H15", J, person="child", address="home")
    sc.add("H15", W, person="tenant", address="home")
    s15 = sc.add("H15", S, person="tenant", address="home")
    sc.clock.advance(minutes=1)
    hub.withdraw(access(S), s15, "unjustified")
    # H16: a household in the south.
    sc.add("H16", J, person="child", address="home", region=SOUTH)
    sc.add("H16", S, person="mother", address="home", region=SOUTH)
    # H17: a household in the north, whose newest signal comes from the south.
    sc.add("H17", J, person="child", address="home")
    sc.add("H17", W, person="mother", address="home")
    sc.add("H17", S, person="mother", address="new-home", region=SOUTH)
    # H18: the coordinator closes the alert; nothing new happens after.
    sc.add("H18", J, person="child", address="home")
    sc.add("H18", W, person="tenant", address="home")
    sc.clock.advance(minutes=1)
    hub.close_alert(COORD_NORTH, sc.alert(COORD_NORTH, "H18").alert_id, "no_action_needed")
    # H19: the coordinator closes the alert; then a new organisation gets involved.
    sc.add("H19", J, person="child", address="home")
    sc.add("H19", W, person="tenant", address="home")
    sc.clock.advance(minutes=1)
    hub.close_alert(COORD_NORTH, sc.alert(COORD_NORTH, "H19").alert_id, "resolved")
    sc.add("H19", S, person="tenant", address="home")
    # H20: two categories that need consent (income is not listed in the covenant).
    sc.add("H20", G, person="mother", address="home")
    sc.add("H20", S, person="mother", address="home", category="income")

    # The coordinator works two alerts; housing dismisses one notice.
    sc.clock.advance(minutes=1)
    hub.open_alert(COORD_NORTH, sc.alert(COORD_NORTH, "H02").alert_id)
    hub.record_contact(COORD_NORTH, sc.alert(COORD_NORTH, "H02").alert_id)
    hub.open_alert(COORD_NORTH, sc.alert(COORD_NORTH, "H03").alert_id)
    (notice_04,) = [t for t in hub.list_tasks(access(W)) if t.signal_id == w04]
    hub.dismiss_task(access(W), notice_04.task_id)

    # Time passes; the hub's periodic work decides every household again.
    sc.clock.advance(hours=1)
    hub.sweep()


# -- the check -------------------------------------------------------------------------


def test_four_organisations_twenty_households(hub: Hub, clock: Clock) -> None:
    reg = setup_registry(hub, covenant=None, orgs=ORGANISATIONS)
    reg.coordinator("coord-b")
    hub.register_covenant(ADMIN, SCENARIO_COVENANT)
    sc = Scenario(hub, clock)
    _play(sc)

    assert sorted(sc.signals) == list(LABELS)
    households = {label: sc.household(label) for label in LABELS}
    label_of = {h: label for label, h in households.items()}
    assert len(label_of) == len(LABELS), "two labelled households were linked"
    signal_label = {sid: label for label, ids in sc.signals.items() for sid in ids}

    # Alerts, per coordinator: which households, showing which organisations, in what state.
    views: list[AlertView] = []
    for coordinator in (COORD_NORTH, COORD_SOUTH):
        open_views, _ = hub.list_alerts(coordinator, OPEN, 100, "")
        closed_views, _ = hub.list_alerts(coordinator, ("closed",), 100, "")
        views += open_views + closed_views
        shown = {label_of[v.household_ref]: {i.organisation_id for i in v.involved}
                 for v in open_views}
        assert len(shown) == len(open_views), "one household has two open alerts"
        assert shown == EXPECTED_OPEN_ALERTS[coordinator.user_id], coordinator.user_id
        states = {label_of[v.household_ref]: v.state for v in open_views}
        assert states == {k: EXPECTED_ALERT_STATES[k]
                          for k in EXPECTED_OPEN_ALERTS[coordinator.user_id]}
        closed: dict[str, list[str]] = defaultdict(list)
        for v in closed_views:
            closed[label_of[v.household_ref]].append(v.closed_reason)
            assert v.involved == ()  # a closed alert shows no one
        assert {k: sorted(r) for k, r in closed.items()} == \
            EXPECTED_CLOSED_ALERTS[coordinator.user_id], coordinator.user_id

    # Matches: which are held (and the status of every one).
    with session_factory(hub._engine)() as s:
        rows = s.execute(select(Match.household_id, Match.covenant_id, Match.status)).all()
    assert {cov for _, cov, _ in rows} == {COVENANT_ID}
    unknown = [h for h, _, _ in rows if h not in label_of]
    assert unknown == [], "a match on a household that is none of the twenty"
    statuses = {label_of[h]: status for h, _, status in rows}
    assert len(statuses) == len(rows)
    assert {label for label, status in statuses.items() if status == "held"} == EXPECTED_HELD
    assert statuses == EXPECTED_MATCHES

    # Tasks, per organisation: kind and the other organisations a notice names.
    tasks: list[TaskView] = []
    for org in ORGANISATIONS:
        mine = hub.list_tasks(access(org))
        tasks += mine + hub.list_tasks(access(org), include_done=True)
        got = sorted((signal_label[t.signal_id], t.kind,
                      tuple(sorted(o for o, _, _ in t.others))) for t in mine)
        assert got == EXPECTED_TASKS[org], org
        for task in mine:
            assert (task.state, task.covenant_id) == ("open", COVENANT_ID)
            if task.kind == CONSENT:
                # "consent needed" never says who else is involved
                assert task.others == ()
                assert not any(o in repr(task) for o in ORGANISATIONS if o != org)
                assert not any(sid in repr(task) for sid in signal_label
                               if sid != task.signal_id)
            else:
                assert all(contact.name == f"Prof {o}" for o, _, contact in task.others)

    # Neither an alert nor a task ever tells why: no category in anything shown.
    feed = [v for c in (COORD_NORTH, COORD_SOUTH) for _, _, v in hub.alert_changes(c, 0)]
    shown_items: list[AlertView | TaskView] = [*views, *tasks, *feed]
    for shown_item in shown_items:
        text = repr(shown_item)
        assert not any(category in text for category in vocab.CATEGORIES), text
        assert not any(f.name == "category" for f in dataclasses.fields(shown_item))
