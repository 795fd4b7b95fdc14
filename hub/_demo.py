"""``samenloop demo``: the whole product, for real, on one machine.

Starts the key service and the hub as gRPC servers on loopback, registers three
partners, a municipality coordinator and a covenant, runs each partner's agent on a
synthetic export, and tells what happens in plain language: an alert reaching the
coordinator, who opens it; a match held because a category needs consent, released
when consent is recorded; a withdrawal; and the access log verified.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from exchange import crypto, log
from exchange.errors import FailedPrecondition, InvalidInput, SamenloopError
from exchange.v1 import coordinator_pb2, signal_pb2

if TYPE_CHECKING:
    from agent import Agent, CoordinatorDesk
    from hub import RunningHub

REGION = "GM0014"  # Groningen
COVENANT_ID = "samen-sterk-noord"
COORDINATOR_ID = "regie-noord"
MUNICIPALITY = "gemeente-noord"
PARTNERS = {
    "jeugdzorg-noord": "Jeugdzorg Noord",
    "woonstad-noord": "Woonstad Noord (housing corporation)",
    "schuldhulp-noord": "Schuldhulp Noord (debt counselling)",
}
_YEAR = datetime.now(UTC).year
COVENANT = f"""\
id = "{COVENANT_ID}"
name = "Convenant Samen Sterk Noord"
legal_basis = "AVG art. 6(1)(e) en 9(2)(g); Jeugdwet art. 7.1.1.1; Wmo 2015 art. 5.2.1"
valid_from = {_YEAR}-01-01
valid_until = {_YEAR + 2}-12-31
coordinator = "{COORDINATOR_ID}"
parties = ["jeugdzorg-noord", "woonstad-noord", "schuldhulp-noord"]
purposes = ["care_coordination"]
regions = ["{REGION}"]
article = "art. 5"
match_notices = ["youth_care", "housing", "debt", "income"]

[categories]
youth_care = "covenant"
housing = "covenant"
debt = "covenant"
income = "covenant"
mental_health = "consent"
domestic_violence = "consent"

[articles]
housing = "art. 5.3"

[escalation]
reminder_days = 5
escalation_days = 10
"""


def bsn_from(seed: int) -> str:
    """A synthetic BSN that passes the elfproef (deterministic from a seed)."""
    n = 10_000_000 + (seed * 7_919_311) % 89_999_999
    while True:
        digits = f"{n:08d}"
        rest = sum(int(d) * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if rest != 10:
            return digits + str(rest)
        n += 1


FIELDS = ["case_ref", "bsn", "given_names", "surname_prefix", "surname", "date_of_birth",
          "street", "house_number", "postcode", "city", "category", "region",
          "professional_name", "professional_phone", "professional_email"]


def _row(case: str, bsn: str, given: str, prefix: str, surname: str, dob: str, street: str,
         number: str, postcode: str, category: str, prof: tuple[str, str, str]) -> dict[str, str]:
    return dict(zip(FIELDS, [case, bsn, given, prefix, surname, dob, street, number, postcode,
                             "Groningen" if postcode else "", category, REGION, *prof],
                    strict=True))


def partner_rows() -> dict[str, list[dict[str, str]]]:
    """The synthetic exports. Spellings differ between partners on purpose."""
    jz = ("Sanne Mulder", "050 367 1100", "s.mulder@jeugdzorg-noord.example")
    ws = ("Ahmed Yilmaz", "050 365 2200", "a.yilmaz@woonstad-noord.example")
    sh = ("Ingrid Bos", "050 367 3300", "i.bos@schuldhulp-noord.example")
    return {
        "jeugdzorg-noord": [
            # Household A: the child; the mother is known at the housing corporation.
            _row("JZ-2026-0412", bsn_from(1), "Sem", "de", "Vries", "2014-03-09",
                 "Dorpsstraat", "12", "9711 AB", "youth_care", jz),
            # Household B: a child in mental health care (needs consent under the covenant).
            _row("JZ-2026-0588", bsn_from(4), "Yasmine", "el", "Amrani", "2011-07-21",
                 "Oosterweg", "5-2", "9712 CD", "mental_health", jz),
            # Known only here: no match.
            _row("JZ-2026-0601", bsn_from(6), "Lotte", "", "Visser", "2016-11-02",
                 "Kerkpad", "3", "9714 GH", "youth_care", jz),
        ],
        "woonstad-noord": [
            _row("WS-88213", bsn_from(2), "Anna", "de", "Vries", "09-12-1986",
                 "Dorpsstraat", "12", "9711ab", "housing", ws),
            _row("WS-88240", bsn_from(5), "Peter", "", "Bakker", "1979-05-30",
                 "Zuiderdiep", "88", "9713 EF", "housing", ws),
            _row("WS-88255", bsn_from(7), "Kees", "", "Smit", "1962-01-15",
                 "Molenstraat", "21 A", "9715 JK", "housing", ws),
        ],
        "schuldhulp-noord": [
            _row("SH/0917", bsn_from(3), "Fatima", "El", "Amrani", "1984-02-17",
                 "Oosterweg", "5 - 2", "9712CD", "debt", sh),
            # Same person as WS-88240, recorded without an address.
            _row("SH/0921", bsn_from(5), "P.", "", "Bakker", "30-05-1979", "", "", "",
                 "debt", sh),
            # A typo in the BSN: the agent reports the row and does not submit it.
            _row("SH/0930", bsn_from(8)[:-1] + str((int(bsn_from(8)[-1]) + 1) % 10),
                 "Henk", "", "Jansen", "1990-08-08", "Vismarkt", "1", "9712 AA", "debt", sh),
        ],
    }


@dataclass
class DemoResult:
    data_dir: Path
    alerts_opened: int = 0
    identities_opened: list[str] = field(default_factory=list)
    held_then_released: bool = False
    withdrawn: bool = False
    log_verified: bool = False
    offline_verified: bool = False
    subject_access: int = 0
    events: int = 0


class _Story:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.step = 0

    def section(self, title: str) -> None:
        self.step += 1
        print(f"\n{self.step}. {title}", file=self.out, flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", file=self.out, flush=True)


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="run the whole product on this machine with synthetic data",
        description="Start the key service and the hub on loopback, register three "
        "partners, a coordinator and a covenant, run each partner's agent on synthetic "
        "data and show the alert, the opened envelope, a held-then-released match, a "
        "withdrawal and the verified access log. Needs no configuration.")
    demo.add_argument("--data-dir", type=Path, metavar="DIR",
                      help="new or empty directory for the database, keys, inputs and logs "
                      "(default: a new temporary directory)")
    demo.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="samenloop-demo-"))
    result = run(data_dir, sys.stdout)
    ok = (result.alerts_opened and result.held_then_released and result.withdrawn
          and result.log_verified and result.offline_verified and result.subject_access)
    return 0 if ok else 1


def _write_inputs(data_dir: Path) -> dict[str, Path]:
    partners = data_dir / "partners"
    partners.mkdir(parents=True)
    paths = {}
    for org, rows in partner_rows().items():
        path = partners / f"{org}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        paths[org] = path
    (data_dir / "covenant.toml").write_text(COVENANT, encoding="utf-8")
    return paths


def run(data_dir: Path, out: IO[str], *, configure_logging: bool = True) -> DemoResult:
    """Run the demo scenario in data_dir (new or empty) and narrate it to ``out``."""
    from hub import HubSettings, KeyServiceSettings, start_hub, start_keyservice

    if data_dir.exists() and any(data_dir.iterdir()):
        raise InvalidInput(f"{data_dir} is not empty: give a new or empty directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    if configure_logging:
        log.configure(level=logging.INFO, stream=sys.stderr, console_level=logging.ERROR,
                      files={"hub": logs / "hub.log", "keyservice": logs / "keyservice.log",
                             "agent": logs / "agent.log",
                             "coordinator": logs / "coordinator.log"})
    story = _Story(out)
    print("Samenloop demo: three organisations that work with the same families, a "
          "municipal coordinator\nand a privacy officer, all for real on this machine "
          "(servers, database, encryption).\n"
          f"Everything it writes is in {data_dir}", file=out)
    inputs = _write_inputs(data_dir)

    story.section("Starting the central services")
    pki = _Pki(data_dir / "pki")
    story.say(f"a development CA ({pki.dir}) gives the servers and every role a "
              "certificate: each channel is mutual TLS, and the hub acts on the "
              "organisation and role in the caller's certificate")
    oprf_key = crypto.OprfKey.generate()
    oprf_key.save(data_dir / "oprf.key")
    keyservice = start_keyservice(KeyServiceSettings(
        listen="127.0.0.1:0", key_file=data_dir / "oprf.key", **pki.server()))
    database = f"sqlite:///{data_dir / 'hub.db'}"
    try:
        hub = start_hub(HubSettings(listen="127.0.0.1:0", database_url=database,
                                    checkpoint_key=data_dir / "hub-checkpoint.key",
                                    oversight_organisations=(MUNICIPALITY,), migrate=True,
                                    **pki.server()))
    except BaseException:
        keyservice.stop(grace=0)
        raise
    demo = _Demo(story, data_dir, database, keyservice.address, hub, pki)
    try:
        story.say(f"the key service ({keyservice.address}) holds the secret key that turns "
                  "citizen numbers and addresses into pseudonyms; it never sees them")
        story.say(f"the hub ({hub.address}) links pseudonyms into households; it never "
                  f"sees a name or number (database {data_dir / 'hub.db'})")
        demo.register()
        demo.submit(inputs)
        demo.coordinator()
        demo.audit()
        demo.subject_access()
    finally:
        demo.close()
        hub.stop(grace=2)
        keyservice.stop(grace=2)
    story.section("Done")
    story.say(f"the hub database, keys, partner inputs and service logs are in {data_dir}")
    command = sys.argv[0] if sys.argv[0].endswith("samenloop") else "samenloop"
    story.say(f"check the log yourself: {command} audit verify --database {database}")
    return demo.result


def _involved(alert: coordinator_pb2.Alert) -> str:
    return "; ".join(f"{i.organisation_name} - {i.professional.name}, {i.professional.phone}"
                     for i in alert.involved)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Pki:
    """The demo's certificates: one CA, a server certificate, one per role."""

    def __init__(self, directory: Path) -> None:
        from exchange import _pki

        self.dir = directory
        _pki.init_ca(directory, name="Samenloop demo CA")
        _pki.issue(directory, "server", hosts=["127.0.0.1", "localhost"])

    def server(self) -> dict[str, Any]:  # TLS settings, as keyword arguments
        return {"tls_cert": self.dir / "server.pem", "tls_key": self.dir / "server.key",
                "tls_client_ca": self.dir / "ca.pem", "tls_crl": self.dir / "crl.pem"}

    def client(self, organisation: str, role: str, user: str) -> dict[str, Any]:
        """Settings for a client holding a new certificate for this identity."""
        from exchange import _pki

        name = f"{organisation}-{role}-{user}".replace("_", "-")
        if not (self.dir / f"{name}.pem").exists():
            _pki.issue(self.dir, name, organisation=organisation, role=role, user=user)
        return {"tls_ca": self.dir / "ca.pem", "tls_cert": self.dir / f"{name}.pem",
                "tls_key": self.dir / f"{name}.key"}


class _Demo:
    """The scenario's steps, sharing the clients they create."""

    def __init__(self, story: _Story, data_dir: Path, database: str, keyservice: str,
                 hub: RunningHub, pki: _Pki) -> None:
        from agent import Auditor, AuditSettings, CoordinatorDesk, CoordinatorSettings

        self.pki = pki
        self.story = story
        self.data_dir = data_dir
        self.database = database
        self.keyservice = keyservice
        self.hub = hub
        self.result = DemoResult(data_dir)
        self.agents: dict[str, Agent] = {}
        self.coord_key = crypto.EnvelopeKey.generate()
        self.coord_key.save(data_dir / "coordinator.key")
        self.desk = CoordinatorDesk(CoordinatorSettings(
            coordinator_id=COORDINATOR_ID, organisation=MUNICIPALITY, hub=hub.address,
            **pki.client(MUNICIPALITY, "coordinator", COORDINATOR_ID)))
        self.auditor = Auditor(AuditSettings(
            **pki.client(MUNICIPALITY, "privacy_officer", "privacy-officer"),
            organisation=MUNICIPALITY, user="privacy-officer", hub=hub.address,
            hub_key=hub.hub.checkpoint_public_key.hex(), origin=hub.hub.origin,
            state_file=data_dir / "audit-state.json"))

    def close(self) -> None:
        self.desk.close()
        self.auditor.close()
        for agent in self.agents.values():
            agent.close()

    def register(self) -> None:
        from agent import Admin, AdminSettings

        say = self.story.say
        self.story.section(
            "The municipality registers the partners, its coordinator and the covenant")
        with Admin(AdminSettings(organisation=MUNICIPALITY, user="beheerder",
                                 hub=self.hub.address,
                                 **self.pki.client(MUNICIPALITY, "administrator",
                                                   "beheerder"))) as adm:
            adm.organisation(MUNICIPALITY, "Gemeente Noord")
            say(f"organisation {MUNICIPALITY}: Gemeente Noord (the municipality)")
            for org, name in PARTNERS.items():
                adm.organisation(org, name)
                say(f"organisation {org}: {name}")
            adm.coordinator(COORDINATOR_ID, MUNICIPALITY, "Marieke de Boer (procesregisseur)",
                            "050 367 0000", "m.deboer@gemeente-noord.example",
                            self.coord_key.public_key)
            say(f"coordinator {COORDINATOR_ID} (Marieke de Boer); her private key, the only "
                "key that opens identities, stays on her own computer")
            cov, _ = adm.covenant(self.data_dir / "covenant.toml")
            say(f"covenant {cov.covenant_id} (version {cov.version}): youth care, housing, "
                "debt and income may be shared on the covenant's basis; mental health and "
                "domestic violence only with the family's consent")

    def submit(self, inputs: dict[str, Path]) -> None:
        from agent import Agent, AgentSettings

        say = self.story.say
        self.story.section("Each organisation's agent reads its export and sends signals")
        for org, path in inputs.items():
            state = f"sqlite:///{self.data_dir / 'agents' / org}.db"
            agent = Agent(AgentSettings(organisation=org, hub=self.hub.address,
                                        keyservice=self.keyservice, state_database=state,
                                        **self.pki.client(org, "partner", "agent")))
            self.agents[org] = agent
            summary = agent.submit_file(path)
            say(f"{org}: {summary.describe()}")
            for error in summary.invalid:
                say(f"    not sent: {error} (the value itself is never shown or logged)")
        say("before anything left an organisation, its agent turned each citizen number and "
            "address into a pseudonym with the key service's help (checking the key "
            "service's proof), and locked the family's identity in an envelope that only "
            "the coordinator can open")

    def coordinator(self) -> None:
        story, say, desk = self.story, self.story.say, self.desk
        story.section("The coordinator's inbox: 'known elsewhere' alerts - who, never why")
        alerts = desk.alerts()
        for alert in alerts:
            say(f"alert {alert.alert_id[:8]}: a family (household {alert.household_ref[:8]}) "
                f"is known at {len(alert.involved)} organisations: {_involved(alert)}")
        first = next((a for a in alerts
                      if any(i.organisation_id == "jeugdzorg-noord" for i in a.involved)), None)
        if first is None:
            raise FailedPrecondition("the demo expected an alert involving Jeugdzorg Noord")

        story.section(f"The coordinator opens alert {first.alert_id[:8]} on her own computer")
        _, opened = desk.open(first.alert_id, self.coord_key)
        for item in opened:
            if item.identity is None:
                raise FailedPrecondition("an envelope did not open")
            ident = item.identity
            say(f"{item.organisation_id} (their case {ident.case_reference}): "
                f"{ident.display_name()}, born {ident.date_of_birth}, BSN {ident.bsn}, "
                f"{ident.street} {ident.house_number}, {ident.postcode} {ident.city}")
            self.result.identities_opened.append(ident.bsn)
        self.result.alerts_opened += 1
        say("the hub recorded the opening in the access log (the alert is now 'seen')")
        desk.record_contact(first.alert_id)
        say("she calls the professionals and brings them together, then records 'contact "
            "made'; had she not within 5 days she would be reminded, at 10 days escalated")
        notices = [t for t, _ in self.agents["jeugdzorg-noord"].tasks()
                   if t.kind == signal_pb2.TASK_KIND_MATCH_NOTICE]
        if notices:
            others = "; ".join(f"{o.organisation_name}: {o.professional.name}"
                               for o in notices[0].others)
            say(f"the covenant lets involved professionals know each other: Jeugdzorg "
                f"Noord's agent received a match notice with the others' contacts ({others}), "
                "never the reason")

        story.section("A match the covenant alone does not allow is held back")
        held = list(self.auditor.query(limit=50, event_type="match.hold"))
        if not held:
            raise FailedPrecondition("the demo expected a held match")
        held_ref = held[0].subject_ref
        names = {e.owner_organisation_id: PARTNERS.get(e.owner_organisation_id, "?")
                 for e in held if e.subject_ref == held_ref}
        say(f"household {held_ref[:8]} is known at {' and '.join(sorted(names.values()))}, "
            "but one of them works on mental health, which needs the family's consent")
        say("so the hub holds the match: the coordinator sees nothing, and the access log "
            "records why (" + ", ".join(sorted({e.reason for e in held})) + ")")

        events: queue.Queue[coordinator_pb2.AlertEvent] = queue.Queue()
        threading.Thread(target=_watch, args=(desk, events), daemon=True).start()
        _drain(events, quiet=0.5)  # the replay of the changes so far

        story.section("Jeugdzorg Noord asks the family, who consent; the match is released")
        waiting = [(t, ref) for t, ref in self.agents["jeugdzorg-noord"].tasks()
                   if t.kind == signal_pb2.TASK_KIND_CONSENT_NEEDED]
        if not waiting:
            raise FailedPrecondition("the demo expected a consent-needed task")
        say(f"Jeugdzorg Noord's agent shows a task: 'consent needed' for case "
            f"{waiting[0][1]} (it does not say which other organisation is involved)")
        started = time.monotonic()
        record = self.agents["jeugdzorg-noord"].grant_consent(
            covenant_id=COVENANT_ID, evidence=f"TF-{_YEAR}-031",
            valid_until=datetime.now(UTC) + timedelta(days=365),
            purposes=["care_coordination"], case_ref="JZ-2026-0588")
        say(f"consent {record.consent_id[:8]} recorded (the signed form stays at Jeugdzorg "
            "Noord; the hub keeps its reference)")
        released = _wait_for(events, lambda e: e.alert.household_ref == held_ref)
        say(f"{(time.monotonic() - started) * 1000:.0f} ms later a new alert "
            f"{released.alert.alert_id[:8]} for household {held_ref[:8]} appeared on the "
            f"coordinator's screen: {_involved(released.alert)}")
        self.result.held_then_released = True

        story.section("Schuldhulp Noord withdraws its signal: the debts are settled")
        ids = self.agents["schuldhulp-noord"].withdraw(reason="risk_gone", case_ref="SH/0921")
        closed = _wait_for(events, lambda e: e.change == coordinator_pb2.ALERT_CHANGE_CLOSED)
        say(f"signal {ids[0][:8]} withdrawn (archived, not deleted); alert "
            f"{closed.alert.alert_id[:8]} was closed ({closed.alert.closed_reason}): only "
            "one organisation is still involved with that family")
        self.result.withdrawn = True
        say(f"the coordinator's inbox now holds {_plural(len(desk.alerts()), 'open alert')}")

    def audit(self) -> None:
        from hub import verify_database

        say = self.story.say
        self.story.section("The municipality's privacy officer checks the access log")
        events = list(self.auditor.query(limit=10_000))
        self.result.events = len(events)

        def count(*types: str) -> int:
            return sum(e.event_type in types for e in events)

        counts = {
            "signals sent or withdrawn": count("signal.submit", "signal.withdraw"),
            "disclosures to the coordinator": count("alert.create", "alert.update"),
            "held back": count("match.hold"),
            "alert views and openings": count("alert.list", "alert.watch", "alert.open"),
        }
        say(f"every access is logged, {len(events)} events so far, among them: "
            + "; ".join(f"{n} {label}" for label, n in counts.items()))
        response = self.auditor.verify()
        say("her client checked that the hub's signed log extends the one it saw before "
            "(an RFC 6962 consistency proof), and the hub re-checked every event: "
            f"{'intact' if response.ok else 'FAILED'} (these checks are logged too, so the log "
            f"now holds {response.checkpoint.size} events)")
        self.result.log_verified = response.ok
        offline = verify_database(self.database, public_key=self.hub.hub.checkpoint_public_key,
                                  origin=self.hub.hub.origin)
        say(f"and independently, straight from the database file: {offline.describe()}")
        self.result.offline_verified = offline.ok

    def subject_access(self) -> None:
        from agent import Auditor, AuditSettings

        say = self.story.say
        self.story.section("Anna de Vries asks Woonstad Noord who received data about her")
        settings = AuditSettings(
            **self.pki.client("woonstad-noord", "privacy_officer", "privacy-officer"),
            organisation="woonstad-noord", user="privacy-officer", hub=self.hub.address,
            keyservice=self.keyservice, hub_key=self.hub.hub.checkpoint_public_key.hex(),
            origin=self.hub.hub.origin, state_file=self.data_dir / "woonstad-audit.json")
        with Auditor(settings) as officer:
            signals, found = officer.subject_access(bsn_from(2))
        say(f"Woonstad Noord's privacy officer enters her BSN; it is pseudonymised on the "
            f"officer's computer. {signals} of Woonstad's signals concern her, disclosed "
            f"{len(found)} times, each proven to be in the signed log:")
        for item in found:
            when = item.event.occurred_at.ToDatetime().strftime("%Y-%m-%d %H:%M")
            if item.event.event_type == "alert.open":
                what = ("opened her identity" if item.names_person
                        else "opened the identity of a member of her household")
            else:
                what = "told that Woonstad is involved" + (
                    "" if item.names_person else " with her household")
            who = f"coordinator {item.recipient}"
            if item.event.event_type.startswith("notice."):
                who, what = (f"{PARTNERS.get(item.recipient, item.recipient)}'s agent",
                             "received a match notice with Woonstad's professional's contact "
                             "details")
            articles = json.loads(item.event.detail_json or "{}").get("articles", [])
            article = f" {', '.join(articles)}" if articles else ""
            say(f"  {when} UTC: {who} {what}, for "
                f"{item.event.purpose}, on the basis of {item.event.basis}{article}")
        self.result.subject_access = len(found)


def _watch(desk: CoordinatorDesk, events: queue.Queue[coordinator_pb2.AlertEvent]) -> None:
    try:
        for event in desk.watch(0, reconnect=False):
            events.put(event)
    except SamenloopError:
        return  # the stream ends when the demo stops the hub


def _drain(events: queue.Queue[coordinator_pb2.AlertEvent], quiet: float) -> None:
    while True:
        try:
            events.get(timeout=quiet)
        except queue.Empty:
            return


def _wait_for(events: queue.Queue[coordinator_pb2.AlertEvent],
              match: Callable[[coordinator_pb2.AlertEvent], bool],
              timeout: float = 10.0) -> coordinator_pb2.AlertEvent:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            event = events.get(timeout=left)
        except queue.Empty:
            break
        if match(event):
            return event
    raise FailedPrecondition("the expected alert change did not arrive in time")
