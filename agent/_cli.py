"""``samenloop agent|coordinator|audit|admin ...``: the partner-side and client commands."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict

from exchange import config, tls, vocab
from exchange.errors import InvalidInput
from exchange.v1 import coordinator_pb2

if TYPE_CHECKING:
    from agent._agent import Agent, SubmitSummary

_STATE_NAMES: dict[coordinator_pb2.AlertState.ValueType, str] = {
    coordinator_pb2.ALERT_STATE_NEW: "new",
    coordinator_pb2.ALERT_STATE_SEEN: "seen",
    coordinator_pb2.ALERT_STATE_CONTACT_MADE: "contact_made",
    coordinator_pb2.ALERT_STATE_CLOSED: "closed",
}
_NEXT_ACTION = {
    "new": "open it: samenloop coordinator open {id}",
    "seen": "bring the professionals together, then: samenloop coordinator contact {id}",
    "contact_made": "when they work together: samenloop coordinator close {id}",
}


def _date(value: str, *, end: bool = False) -> datetime:
    """A YYYY-MM-DD date as a UTC moment (the end of that day when ``end``)."""
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date like 2027-12-31") from None
    return day + timedelta(days=1) if end else day


def _end_date(value: str) -> datetime:
    return _date(value, end=True)


def _hub_flag(p: argparse.ArgumentParser) -> None:
    """--hub, and the TLS flags every client of the hub takes."""
    p.add_argument("--hub", metavar="HOST:PORT", help="the hub's address")
    tls.add_client_flags(p)


def register(sub: Any) -> None:
    _register_agent(sub)
    _register_coordinator(sub)
    from agent._audit_cli import register_audit

    register_audit(sub)
    _register_admin(sub)


# -- agent --------------------------------------------------------------------------


def _register_agent(sub: Any) -> None:
    agent = sub.add_parser(
        "agent", help="partner agent: pseudonymise and submit signals, withdraw, consent",
        description="The partner's agent. Identifiers never leave it in the clear: it "
        "pseudonymises them through the key service and seals identities to coordinators.")
    a_sub = agent.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def organisation_and_state(p: argparse.ArgumentParser) -> None:
        p.add_argument("--organisation", metavar="ID", help="this partner's organisation id")
        p.add_argument("--state-database", metavar="URL",
                       help="the agent's local state and outbox (default "
                       "sqlite:///samenloop-agent.db)")

    def common(p: argparse.ArgumentParser, *, keyservice: bool = True) -> None:
        p.add_argument("--organisation", metavar="ID", help="this partner's organisation id")
        _hub_flag(p)
        if keyservice:
            p.add_argument("--keyservice", metavar="HOST:PORT",
                           help="the key service's address")
        p.add_argument("--state-database", metavar="URL",
                       help="the agent's local state and outbox (default "
                       "sqlite:///samenloop-agent.db)")

    def retrying(p: argparse.ArgumentParser, which: str = "the key service or the hub",
                 ) -> None:
        p.add_argument("--retry-seconds", type=float, metavar="SECONDS",
                       help=f"keep retrying while {which} is unavailable, with growing "
                       "pauses, for this long before giving up (default 300; 0: no retries)")

    submit = a_sub.add_parser(
        "submit", help="submit the signals in an export (CSV, JSON Lines or SQL)",
        description="Send what waits in the outbox first, then read the export — a CSV "
        "with the standard columns (docs/agent.md), or any CSV, JSON Lines file or SQL "
        "query that a --mapping file describes — pseudonymise and submit every valid row "
        "(with the covenant's linkage profile, also the fuzzy tokens of names and dates "
        "of birth). Each "
        "signal is stored in the outbox (the state database) before it is sent. Invalid "
        "rows are reported by row number and field and not submitted. Re-running on the "
        "same file submits nothing twice. If the hub stays unavailable for "
        "--retry-seconds, the remaining rows are still prepared into the outbox and the "
        "command ends with an error: 'samenloop agent deliver' sends them later.")
    submit.add_argument("--input", type=Path, metavar="FILE",
                        help="the export to submit (not with an SQL mapping)")
    submit.add_argument("--mapping", type=Path, metavar="MAPPING.toml",
                        help="how your columns map to the profile's fields, and the "
                        "source's format (docs/agent.md)")
    submit.add_argument("--batch-size", type=int, metavar="N",
                        help="rows per key-service batch and per send (default 256)")
    retrying(submit)
    common(submit)
    submit.set_defaults(func=_agent_submit)

    deliver = a_sub.add_parser(
        "deliver", help="send the signals waiting in the outbox",
        description="Send every signal that waits in the outbox (state pending: stored, "
        "not yet acknowledged by the hub), oldest first, without reading an export. A "
        "signal the hub already has is counted once. Exits 1 if the hub rejected one, "
        "and with an error if the hub stays unavailable for --retry-seconds (the signals "
        "stay pending).")
    deliver.add_argument("--batch-size", type=int, metavar="N",
                         help="signals per send (default 256)")
    retrying(deliver, "the hub")
    common(deliver, keyservice=False)
    deliver.set_defaults(func=_agent_deliver)

    status = a_sub.add_parser(
        "status", help="count the signals in the outbox per state (no network)",
        description="Show how many signals the state database holds per state: pending "
        "(waiting to be sent: 'samenloop agent deliver'), submitted (acknowledged by the "
        "hub), rejected (refused by the hub; reasons were printed when submitting) and "
        "withdrawn, with the oldest pending and the last send. Reads only the state "
        "database, which must exist.")
    status.add_argument("--json", action="store_true", help="one JSON object for scripts")
    organisation_and_state(status)
    status.set_defaults(func=_agent_status)

    withdraw = a_sub.add_parser(
        "withdraw", help="withdraw a signal",
        description="Withdraw this partner's signal for a case (or by signal id). "
        "risk_gone archives it; unjustified deletes it.")
    target = withdraw.add_mutually_exclusive_group(required=True)
    target.add_argument("--case-ref", metavar="REF", help="the case reference in the export")
    target.add_argument("--signal-id", metavar="UUID", help="the signal id")
    withdraw.add_argument("--reason", choices=("risk_gone", "unjustified"), required=True,
                          help="why the signal is withdrawn")
    retrying(withdraw, "the hub")
    common(withdraw)
    withdraw.set_defaults(func=_agent_withdraw)

    consent = a_sub.add_parser("consent", help="record or revoke a household's consent",
                               description="Record or revoke consent for disclosure.")
    c_sub = consent.add_subparsers(dest="consent_command", metavar="ACTION", required=True)
    grant = c_sub.add_parser(
        "grant", help="record consent",
        description="Record that the person consented to disclosure of matches about "
        "their household to the covenant's coordinator.")
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument("--case-ref", metavar="REF", help="a case this agent submitted (with BSN)")
    who.add_argument("--bsn", action="store_true",
                     help="ask for the person's BSN (typed at a prompt, or read from "
                     "standard input; never on the command line) and pseudonymise it here")
    grant.add_argument("--covenant", required=True, metavar="ID", help="the covenant id")
    grant.add_argument("--purpose", action="append", metavar="CODE",
                       help="a purpose consented to (repeatable; default care_coordination)")
    grant.add_argument("--evidence", required=True, metavar="REF",
                       help="your reference code for the evidence, e.g. the signed form's id "
                       "(letters, digits, ._/:#-)")
    grant.add_argument("--valid-from", type=_date, metavar="YYYY-MM-DD",
                       help="first day of validity (default now)")
    until = grant.add_mutually_exclusive_group(required=True)
    until.add_argument("--valid-until", type=_end_date, metavar="YYYY-MM-DD",
                       help="last day of validity (inclusive)")
    until.add_argument("--valid-for", type=int, metavar="DAYS",
                       help="valid for this many days from today")
    retrying(grant)
    common(grant)
    grant.set_defaults(func=_consent_grant)
    revoke = c_sub.add_parser("revoke", help="revoke consent",
                              description="Revoke consent; disclosure stops at once.")
    revoke.add_argument("--consent-id", required=True, metavar="UUID", help="the consent id")
    retrying(revoke, "the hub")
    common(revoke)
    revoke.set_defaults(func=_consent_revoke)

    tasks = a_sub.add_parser(
        "tasks", help="consent-needed tasks and match notices for your signals",
        description="List what the hub asks of this partner: 'consent needed' (a match on "
        "your signal is held until the household consents; it does not say who else is "
        "involved), match notices (the other professionals' contact details, never the "
        "reason) and one-time notices of archived signals. Each notice you list is logged.")
    tasks.add_argument("--all", action="store_true", help="also tasks that are done")
    tasks.add_argument("--json", action="store_true", help="JSON lines for scripts")
    common(tasks)
    tasks.set_defaults(func=_agent_tasks)
    dismiss = a_sub.add_parser(
        "dismiss", help="dismiss a notice you have read",
        description="Dismiss a match notice or archived-signal notice. Consent-needed "
        "tasks close by themselves when consent is recorded or the match ends.")
    dismiss.add_argument("task_id", metavar="TASK", help="the task id or its first 8 characters")
    common(dismiss)
    dismiss.set_defaults(func=_agent_dismiss)

    trust = a_sub.add_parser(
        "trust-key", help="trust the keys presented now (after a planned rotation)",
        description="Pin the key service's current OPRF key and every coordinator's current "
        "envelope key. The agent pins them on first use and refuses changed keys; run this "
        "only after confirming a planned rotation with the key service's operator or the "
        "municipality. During an OPRF key rotation the agent then adds the retiring key's "
        "pseudonyms to new signals, so they still link with the old ones; run 'agent "
        "rekey' with the whole caseload to re-submit it under the new key.")
    common(trust)
    trust.set_defaults(func=_agent_trust)

    exclude = a_sub.add_parser(
        "exclude-addresses", help="the municipality: addresses that link no household",
        description="Put institutional addresses — shelters, care homes, student housing — "
        "on the hub's exclusion list, as address keys: people who share such an address "
        "are not one household. The CSV needs postcode and house_number (and optionally "
        "house_addition). Only the municipality (an oversight organisation of the hub) "
        "may; the list applies to every covenant.")
    exclude.add_argument("--input", type=Path, required=True, metavar="FILE.csv")
    common(exclude)
    exclude.set_defaults(func=_agent_exclude)

    rekey = a_sub.add_parser(
        "rekey", help="after an OPRF key rotation, a new linkage profile version or an "
        "agent upgrade: re-submit the caseload with the current key and tokens",
        description="Re-submit every case of the export whose signal was made with another "
        "OPRF key, another linkage profile version or another token scheme (an upgraded "
        "agent may make tokens differently: the hub compares tokens only between signals "
        "made alike). The new signal carries the current key's pseudonyms (and the "
        "retiring key's while the key service offers it) and replaces the old signal at "
        "the hub, keeping its place in alerts and tasks. Cases already current are "
        "skipped; running it again is safe. See docs/operations.md, 'Rotating the OPRF "
        "key' and 'Upgrading agents and linkage profiles'.")
    rekey.add_argument("--input", type=Path, metavar="FILE",
                       help="the whole caseload export, as for 'agent submit' (not with an "
                       "SQL mapping)")
    rekey.add_argument("--mapping", type=Path, metavar="MAPPING.toml",
                       help="how the export's columns map to the profile's fields (as for "
                       "'agent submit')")
    common(rekey)
    rekey.set_defaults(func=_agent_rekey)


_TASK_KINDS = {1: "consent_needed", 2: "match_notice", 3: "archived_match"}


def _task_text(task: Any, case_ref: str) -> str:
    kind = _TASK_KINDS.get(task.kind, "?")
    if task.state == 2:  # done
        return f"done ({task.closed_reason})"
    if kind == "consent_needed":
        ref = case_ref or "<case-ref>"
        return (f"ask the household for consent, then: samenloop agent consent grant "
                f"--case-ref {ref} --covenant {task.covenant_id} --evidence <REF> "
                "--valid-for <DAYS>")
    people = "; ".join(
        f"{o.organisation_name}: {o.professional.name} "
        f"({', '.join(c for c in (o.professional.phone, o.professional.email) if c)})"
        for o in task.others) or "no one any more"
    return ("also involved: " if kind == "match_notice" else "known before: ") + people


def _agent_tasks(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        tasks = agent.tasks(include_done=args.all)
    if args.json:
        for task, case_ref in tasks:
            print(_json(task, case_ref=case_ref))
        return 0
    if not tasks:
        print("no tasks")
        return 0
    now = datetime.now(UTC)
    print_table([[t.task_id[:8], _TASK_KINDS.get(t.kind, "?"), ref or "-",
                  _age(t.created_at.ToDatetime(tzinfo=UTC), now), _task_text(t, ref)]
                 for t, ref in tasks], ["TASK", "KIND", "CASE", "AGE", "WHAT TO DO"])
    return 0


def _agent_dismiss(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        task_id = args.task_id
        if len(task_id) != 36:
            found = [t.task_id for t, _ in agent.tasks() if t.task_id.startswith(task_id)]
            if len(found) != 1:
                raise InvalidInput(f"'{task_id}' does not name exactly one open task")
            task_id = found[0]
        task = agent.dismiss_task(task_id)
    print(f"task {task.task_id} is done ({task.closed_reason})")
    return 0


def print_notices(notices: Iterable[str]) -> None:
    """What a client must tell its user besides the result (e.g. a key pinned on first
    use), as ``note: ...`` lines on standard error."""
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)


@contextmanager
def _agent(args: argparse.Namespace, *, existing: bool = False) -> Iterator[Agent]:
    """The agent, closed on leaving; its witness's notices are printed then, also when
    the command failed after contacting the hub (a key it pinned stays pinned). With
    ``existing``, a SQLite state database that does not exist is an error, not created."""
    from agent import Agent, AgentSettings
    from exchange.db import make_engine

    settings = config.load(AgentSettings, path=args.config, overrides={
        "organisation": args.organisation, "hub": getattr(args, "hub", None),
        "keyservice": getattr(args, "keyservice", None),
        "state_database": args.state_database,
        "batch_size": getattr(args, "batch_size", None),
        "retry_seconds": getattr(args, "retry_seconds", None), **tls.client_overrides(args)})
    if existing:
        make_engine(settings.state_database, must_exist=True).dispose()
    agent = Agent(settings)
    try:
        yield agent
    finally:
        try:
            print_notices(agent.witness.notices)
        finally:
            agent.close()


def _agent_submit(args: argparse.Namespace) -> int:
    from agent._agent import Undelivered
    from exchange.cli import Progress

    rows = _count_input(args.input, args.mapping)
    with _agent(args) as agent:
        # The bar counts the signals waiting in the outbox (sent first), then the rows.
        total = rows + agent.outbox().counts["pending"]
        try:
            with Progress(total, "submitting") as bar:
                summary = agent.submit_file(args.input, progress=bar.advance,
                                            mapping=args.mapping)
        except Undelivered as stopped:
            if stopped.summary.rows or stopped.summary.resent:
                _print_submitted(stopped.summary)
            raise
    _print_submitted(summary)
    return 0 if not summary.rejected else 1


def _agent_exclude(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        added, total, problems = agent.exclude_addresses(args.input)
    for problem in problems:
        print(f"  not read: {problem}", file=sys.stderr)
    print(f"{added} addresses added to the exclusion list ({total} on it)")
    return 0 if not problems else 1


def _agent_rekey(args: argparse.Namespace) -> int:
    from exchange.cli import Progress

    rows = _count_input(args.input, args.mapping)
    with _agent(args) as agent, Progress(rows, "re-submitting") as bar:
        summary = agent.rekey(agent.records(args.input, args.mapping), progress=bar.advance)
    for error in summary.invalid:
        print(f"  not re-submitted: {error}", file=sys.stderr)
    for message in summary.rejected:
        print(f"  rejected: {message}", file=sys.stderr)
    print(f"{summary.rows} rows read, {summary.submitted} signals replaced with the "
          f"current key and tokens, {summary.already_submitted} already current or not "
          "submitted"
          + (f", {len(summary.rejected)} rejected" if summary.rejected else "")
          + summary.describe_outdated())
    return 0 if not summary.rejected else 1


def _print_submitted(summary: SubmitSummary) -> None:
    for error in summary.invalid:
        print(f"  not submitted: {error}", file=sys.stderr)
    for message in summary.rejected:
        print(f"  rejected: {message}", file=sys.stderr)
    print(summary.describe())


def _agent_deliver(args: argparse.Namespace) -> int:
    from agent._agent import Undelivered
    from exchange.cli import Progress

    with _agent(args) as agent:
        waiting = agent.outbox().counts["pending"]
        if not waiting:
            print("nothing waits in the outbox")
            return 0
        try:
            with Progress(waiting, "delivering") as bar:
                summary = agent.deliver(progress=bar.advance)
        except Undelivered as stopped:
            print(stopped.summary.describe_delivery())
            raise
    for message in summary.rejected:
        print(f"  rejected: {message}", file=sys.stderr)
    print(summary.describe_delivery())
    return 0 if not summary.rejected else 1


def _agent_status(args: argparse.Namespace) -> int:
    def when(at: datetime | None) -> str:
        return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else ""

    with _agent(args, existing=True) as agent:
        outbox = agent.outbox()
    counts = outbox.counts
    if args.json:
        print(json.dumps({**counts, "oldest_pending": outbox.oldest_pending and
                          outbox.oldest_pending.isoformat(),
                          "last_sent": outbox.last_sent and outbox.last_sent.isoformat()}))
        return 0
    notes = {
        "pending": (f"waiting since {when(outbox.oldest_pending)}: 'samenloop agent "
                    f"deliver' sends {'it' if counts['pending'] == 1 else 'them'}"
                    ) if counts["pending"] else "",
        "submitted": f"last sent {when(outbox.last_sent)}" if outbox.last_sent else "",
        "rejected": ("refused by the hub: correct the rows and submit them again"
                     if counts["rejected"] else ""),
        "withdrawn": "",
    }
    print_table([[state, str(count), notes.get(state, "")] for state, count in counts.items()],
                ["STATE", "SIGNALS", "NOTE"])
    return 0


def _count_input(path: Path | None, mapping: Path | None) -> int:
    """The rows an export holds, for the progress bar."""
    from agent import _mapping

    if mapping is not None:
        return _mapping.count_rows(_mapping.load_mapping(mapping), path)
    if path is None:
        raise InvalidInput("give the export to read: --input FILE (or an SQL --mapping)")
    return _count_rows(path)


def _count_rows(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


def _agent_withdraw(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        ids = agent.withdraw(reason=args.reason, case_ref=args.case_ref,
                             signal_id=args.signal_id)
    for sid in ids:
        print(f"withdrew signal {sid} ({args.reason})")
    return 0


def _read_bsn(whose: str = "the person who consents") -> str:
    """A BSN typed at a prompt (not echoed) or read from standard input, never an argument."""
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"BSN of {whose}: ")
    return sys.stdin.readline().strip()


def _consent_grant(args: argparse.Namespace) -> int:
    bsn = _read_bsn() if args.bsn else None
    until = args.valid_until
    if until is None:
        if not 1 <= args.valid_for <= 5 * 365:
            raise InvalidInput("--valid-for must be 1 to 1825 days")
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        until = today + timedelta(days=args.valid_for + 1)
    with _agent(args) as agent:
        record = agent.grant_consent(
            covenant_id=args.covenant, evidence=args.evidence, valid_from=args.valid_from,
            valid_until=until, purposes=args.purpose or ["care_coordination"],
            case_ref=args.case_ref, bsn=bsn)
    print(f"recorded consent {record.consent_id} under {record.covenant_id}")
    return 0


def _consent_revoke(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        record = agent.revoke_consent(args.consent_id)
    print(f"revoked consent {record.consent_id}")
    return 0


def _agent_trust(args: argparse.Namespace) -> int:
    with _agent(args) as agent:
        changed = agent.trust_current_keys()
    for item in changed:
        print(f"now trusting {item}")
    if not changed:
        print("the keys presented are the ones already trusted")
    return 0


# -- coordinator ----------------------------------------------------------------------


def _register_coordinator(sub: Any) -> None:
    coord = sub.add_parser(
        "coordinator", help="coordinator desk: alert inbox, open, contact made, close",
        description="The coordinator's desk. Alerts say which organisations and "
        "professionals are involved, never why. Envelopes are opened on this machine. "
        "An alert goes new -> seen (opened) -> contact_made -> closed.")
    c_sub = coord.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--coordinator-id", metavar="ID", help="your coordinator id")
        p.add_argument("--organisation", metavar="ID", help="your organisation id")
        _hub_flag(p)

    keygen = c_sub.add_parser(
        "keygen", help="create your envelope key pair",
        description="Create an X25519 key pair for opening envelopes: the private key in "
        "FILE (mode 0600) and the public key in FILE.pub, to give to the covenant "
        "administrator. Never overwrites a key file.")
    keygen.add_argument("--key-file", type=Path, metavar="FILE",
                        help="where to write the private key (default coordinator.key)")
    keygen.set_defaults(func=_coord_keygen)

    alerts = c_sub.add_parser(
        "inbox", aliases=["alerts"], help="show your alert inbox",
        description="List your alerts as a table: state, age, organisations involved and "
        "the next action (OVERDUE after the covenant's reminder days without contact, "
        "ESCALATED after its escalation days). --json gives JSON lines for scripts. With "
        "--watch, keep streaming changes, resuming from the last one after a reconnect.")
    alerts.add_argument("--state", action="append",
                        choices=("new", "seen", "contact_made", "closed"),
                        help="only alerts in this state (repeatable; default all open)")
    alerts.add_argument("--escalated", action="store_true",
                        help="the alerts escalated to you as a covenant's escalation contact")
    alerts.add_argument("--watch", action="store_true",
                        help="stream changes until Ctrl-C, resuming where this desk left off")
    alerts.add_argument("--after", type=int, metavar="CURSOR",
                        help="with --watch: start after this cursor (0 replays every change)")
    alerts.add_argument("--json", action="store_true", help="JSON lines for scripts")
    common(alerts)
    alerts.set_defaults(func=_coord_alerts)

    alert_help = "the alert id, its first 8 characters, or 'next' (the oldest {})"
    open_ = c_sub.add_parser(
        "open", help="open an alert's envelopes with your private key (new -> seen)",
        description="Fetch the alert's envelopes and open them locally. The hub records "
        "the opening in the access log; a new alert becomes seen.")
    open_.add_argument("alert_id", metavar="ALERT", help=alert_help.format("new"))
    open_.add_argument("--key-file", type=Path, metavar="FILE",
                       help="your private key (default coordinator.key)")
    open_.add_argument("--json", action="store_true", help="JSON for scripts")
    common(open_)
    open_.set_defaults(func=_coord_open)

    contact = c_sub.add_parser(
        "contact", aliases=["ack"], help="record that contact was made (seen -> contact_made)",
        description="Record that you brought the professionals together. Stops the "
        "reminder and escalation.")
    contact.add_argument("alert_id", metavar="ALERT", help=alert_help.format("seen"))
    contact.add_argument("--json", action="store_true", help="JSON for scripts")
    common(contact)
    contact.set_defaults(func=_coord_contact)

    close = c_sub.add_parser(
        "close", help="close an alert",
        description="Close an alert. The same organisations raise no new alert; a new "
        "organisation or signal does.")
    close.add_argument("alert_id", metavar="ALERT", help=alert_help.format("contact_made"))
    close.add_argument("--reason", choices=("resolved", "no_action_needed"),
                       default="resolved", help="why (default resolved)")
    close.add_argument("--json", action="store_true", help="JSON for scripts")
    common(close)
    close.set_defaults(func=_coord_close)

    show = c_sub.add_parser(
        "show", help="an alert's history: who did what, when",
        description="Show one alert: who is involved, and who saw it, recorded contact, "
        "was reminded, escalated and closed it, and when.")
    show.add_argument("alert_id", metavar="ALERT", help=alert_help.format("new"))
    show.add_argument("--json", action="store_true", help="JSON for scripts")
    common(show)
    show.set_defaults(func=_coord_show)


def _desk(args: argparse.Namespace) -> Any:
    from agent import CoordinatorDesk, CoordinatorSettings

    settings = config.load(CoordinatorSettings, path=args.config, overrides={
        "coordinator_id": args.coordinator_id, "organisation": args.organisation,
        "hub": args.hub, "key_file": getattr(args, "key_file", None),
        **tls.client_overrides(args)})
    return CoordinatorDesk(settings)


def _coord_keygen(args: argparse.Namespace) -> int:
    from exchange import crypto
    from exchange.errors import AlreadyExists

    path = args.key_file or Path("coordinator.key")
    public = path.with_name(path.name + ".pub")
    key = crypto.EnvelopeKey.generate()
    try:
        key.save(path)
    except FileExistsError:
        raise AlreadyExists(f"{path} exists; a key is never overwritten") from None
    encoded = base64.b64encode(key.public_key).decode()
    public.write_text(encoded + "\n")
    print(f"wrote your private key to {path} (keep it on this computer) and the public "
          f"key to {public}")
    print(f"public key: {encoded} (fingerprint {crypto.fingerprint(key.public_key).hex()})")
    return 0


def _when(ts: Any) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


def _age(since: datetime, now: datetime) -> str:
    age = now - since
    return f"{age.days}d" if age.days else f"{int(age.total_seconds() // 3600)}h"


def alert_row(alert: coordinator_pb2.Alert, now: datetime, me: str = "") -> list[str]:
    state = _STATE_NAMES.get(alert.state, "?")
    orgs = ", ".join(sorted({i.organisation_name for i in alert.involved})) or "-"
    short = alert.alert_id[:8]
    if state == "closed":
        action = f"none (closed: {alert.closed_reason})"
    elif me and alert.coordinator_id and alert.coordinator_id != me:
        action = f"escalated to you: ask {alert.coordinator_id} to make contact"
    else:
        action = _NEXT_ACTION[state].format(id=short)
        if state in ("new", "seen"):
            if _when(alert.escalated_at):
                action = f"ESCALATED ({alert.escalated_to or 'no contact named'}): {action}"
            elif _when(alert.reminded_at):
                action = f"OVERDUE: {action}"
    return [short, state, _age(alert.created_at.ToDatetime(tzinfo=UTC), now), orgs, action]


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _coord_alerts(args: argparse.Namespace) -> int:
    states = [k for k, v in _STATE_NAMES.items() if v in (args.state or [])]
    with _desk(args) as desk:
        if args.watch:
            return _watch(desk, args)
        alerts = desk.alerts(states, escalated=args.escalated)
        me = desk.settings.coordinator_id
    if args.json:
        for alert in alerts:
            print(_json(alert))
        return 0
    if not alerts:
        print("no alerts escalated to you" if args.escalated else "no alerts")
        return 0
    now = datetime.now(UTC)
    print_table([alert_row(a, now, me) for a in alerts],
                ["ALERT", "STATE", "AGE", "ORGANISATIONS", "NEXT ACTION"])
    return 0


def _watch(desk: Any, args: argparse.Namespace) -> int:
    state_file: Path = desk.settings.state_file
    after = args.after
    if after is None and state_file.exists():
        try:
            after = int(json.loads(state_file.read_text())["cursor"])
        except (OSError, ValueError, KeyError, TypeError):
            raise InvalidInput(f"{state_file} is not a desk state file") from None
    where = "from now on" if after is None else f"after change {after}"
    print(f"watching your alerts {where} (Ctrl-C to stop; the resume point is kept in "
          f"{state_file})", file=sys.stderr, flush=True)
    try:
        for event in desk.watch(after):
            if args.json:
                print(_json(event), flush=True)
            else:
                change = coordinator_pb2.AlertChange.Name(event.change).split("_")[-1]
                row = alert_row(event.alert, datetime.now(UTC), desk.settings.coordinator_id)
                print(f"[{event.cursor}] {change.lower():8} {'  '.join(row)}", flush=True)
            state_file.write_text(json.dumps({"cursor": event.cursor}))
    except KeyboardInterrupt:
        return 0
    return 0


def _json(message: Any, **extra: Any) -> str:
    """One JSON line for scripts: protobuf field names, numbers as numbers."""
    data = MessageToDict(message, preserving_proto_field_name=True)
    for key in ("index", "cursor", "size"):
        if key in data:
            data[key] = int(data[key])
    if "detail_json" in data:
        data["detail"] = json.loads(data.pop("detail_json"))
    data.update(extra)
    return json.dumps(data, ensure_ascii=False)


def _named(desk: Any, prefix: str) -> list[Any]:
    """Your alerts, in any state, whose id starts with ``prefix`` (the hub reads and logs
    only those); a prefix that is no alert id's names none."""
    try:
        vocab.uuid_prefix(prefix, "alert")
    except InvalidInput:
        return []
    return list(desk.alerts(list(_STATE_NAMES), id_prefix=prefix))


def _find_alert(desk: Any, alert_id: str, next_state: str) -> Any:
    """The alert a full id, the 8-character prefix the inbox shows, or 'next' names:
    'next' is the oldest alert in ``next_state`` (new ones to open, seen ones to record
    contact for)."""
    if alert_id == "next":
        waiting = [a for a in desk.alerts() if _STATE_NAMES[a.state] == next_state]
        if not waiting:
            raise InvalidInput(f"there is no {next_state} alert")
        return waiting[0]
    matches = _named(desk, alert_id)
    if len(matches) != 1:
        raise InvalidInput(f"'{alert_id}' does not name exactly one of your alerts")
    return matches[0]


def _resolve_alert(desk: Any, alert_id: str, next_state: str) -> str:
    """The id of the alert :func:`_find_alert` finds; a full id as it is (the hub
    checks it when it acts on it)."""
    return alert_id if len(alert_id) == 36 else str(
        _find_alert(desk, alert_id, next_state).alert_id)


def _coord_open(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from exchange import crypto

    with _desk(args) as desk:
        key_file = desk.settings.key_file
        try:
            key = crypto.EnvelopeKey.load(key_file)
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"cannot load your private key from {key_file}: {exc}") from None
        alert, opened = desk.open(_resolve_alert(desk, args.alert_id, "new"), key)
    if args.json:
        print(_json(alert, signals=[
            {"signal_id": o.signal_id, "organisation_id": o.organisation_id,
             "identity": asdict(o.identity) if o.identity else None} for o in opened]))
        return 0
    names = {i.signal_id: i for i in alert.involved}
    print(f"alert {alert.alert_id} - household {alert.household_ref}")
    for item in opened:
        who = names.get(item.signal_id)
        if who is None:
            print(f"- {item.organisation_id}")
        else:
            prof = who.professional
            contact = ", ".join(c for c in (prof.phone, prof.email) if c)
            since = who.signalled_at.ToDatetime().date().isoformat()
            print(f"- {who.organisation_name}: {prof.name} ({contact}), signal of {since}")
        if item.identity is None:
            print("    envelope could not be opened (wrong key or tampered)")
            continue
        ident = item.identity
        print(f"    {ident.display_name()}, born {ident.date_of_birth or '?'}, "
              f"BSN {ident.bsn or '-'}")
        print(f"    {ident.street} {ident.house_number}, {ident.postcode} {ident.city}"
              f"  (their case ref {ident.case_reference})")
    return 0 if all(o.identity for o in opened) else 1


def _coord_contact(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        alert = desk.record_contact(_resolve_alert(desk, args.alert_id, "seen"))
    return _print_alert_state(alert, args.json)


def _coord_close(args: argparse.Namespace) -> int:
    with _desk(args) as desk:
        alert = desk.close_alert(_resolve_alert(desk, args.alert_id, "contact_made"),
                                 args.reason)
    return _print_alert_state(alert, args.json)


def _print_alert_state(alert: coordinator_pb2.Alert, as_json: bool) -> int:
    if as_json:
        print(_json(alert))
    else:
        reason = f" ({alert.closed_reason})" if alert.closed_reason else ""
        print(f"alert {alert.alert_id} is {_STATE_NAMES[alert.state]}{reason}")
    return 0


def _coord_show(args: argparse.Namespace) -> int:
    with _desk(args) as desk:  # one listing: of the alerts the id (or prefix) names
        alert = _find_alert(desk, args.alert_id, "new")
    if args.json:
        print(_json(alert))
        return 0
    print(f"alert {alert.alert_id} - household {alert.household_ref} - covenant "
          f"{alert.covenant_id} - {_STATE_NAMES[alert.state]}")
    for who in alert.involved:
        prof = who.professional
        contact = ", ".join(c for c in (prof.phone, prof.email) if c)
        print(f"  involved: {who.organisation_name}: {prof.name} ({contact})")
    steps = [("created", alert.created_at, ""), ("seen", alert.seen_at, alert.seen_by),
             ("reminded", alert.reminded_at, ""),
             ("escalated", alert.escalated_at, alert.escalated_to and
              f"to {alert.escalated_to}"),
             ("contact made", alert.contact_made_at, alert.contact_made_by),
             ("closed", alert.closed_at, alert.closed_by and
              f"{alert.closed_by} ({alert.closed_reason})")]
    for label, ts, who_did in steps:
        at = _when(ts)
        if at is not None:
            print(f"  {label:13} {at.isoformat(timespec='minutes')}  {who_did}".rstrip())
    return 0


# -- admin ----------------------------------------------------------------------------


def _register_admin(sub: Any) -> None:
    admin = sub.add_parser(
        "admin", help="covenant administrator: organisations, coordinators, covenants",
        description="Register organisations, coordinators and covenants at the hub.")
    a_sub = admin.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--organisation", metavar="ID", help="your organisation id")
        p.add_argument("--user", metavar="ID", help="your user id")
        _hub_flag(p)

    org = a_sub.add_parser("add-organisation", help="register or rename an organisation",
                           description="Register an organisation (or change its name).")
    org.add_argument("organisation_id", metavar="ID", help="lowercase id, e.g. woonstad-noord")
    org.add_argument("--name", required=True, help="display name")
    common(org)
    org.set_defaults(func=_admin_org)

    coord = a_sub.add_parser(
        "add-coordinator", help="register a coordinator and their public key",
        description="Register a coordinator (or update their contact details or key).")
    coord.add_argument("coordinator_id", metavar="ID")
    coord.add_argument("--of", dest="coordinator_org", required=True, metavar="ORG",
                       help="the coordinator's organisation")
    coord.add_argument("--name", required=True)
    coord.add_argument("--phone", default="")
    coord.add_argument("--email", default="")
    given = coord.add_mutually_exclusive_group(required=True)
    given.add_argument("--public-key", metavar="BASE64",
                       help="the public key printed by 'samenloop coordinator keygen'")
    given.add_argument("--public-key-file", type=Path, metavar="FILE",
                       help="the .pub file written by 'samenloop coordinator keygen'")
    common(coord)
    coord.set_defaults(func=_admin_coord)

    cov = a_sub.add_parser(
        "add-covenant", help="register a covenant from its TOML file",
        description="Register a covenant (docs/covenants.md). Changed text registers "
        "a new version; unchanged text changes nothing.")
    cov.add_argument("file", type=Path, metavar="COVENANT.toml")
    common(cov)
    cov.set_defaults(func=_admin_cov)

    profile = a_sub.add_parser(
        "add-profile", help="register a linkage profile from its TOML file",
        description="Register a linkage profile (docs/linkage.md): how every partner of "
        "a covenant that names it turns names and dates of birth into tokens, and when "
        "the hub links two signals. Changed text registers a new version; agents then "
        "fetch it, and signals made with the old version must be submitted again.")
    profile.add_argument("file", type=Path, metavar="PROFILE.toml")
    common(profile)
    profile.set_defaults(func=_admin_profile)

    show = a_sub.add_parser("list", help="show organisations, coordinators and covenants",
                            description="Show the registry.")
    common(show)
    show.set_defaults(func=_admin_list)


def _admin(args: argparse.Namespace) -> Any:
    from agent import Admin, AdminSettings

    return Admin(config.load(AdminSettings, path=args.config, overrides={
        "organisation": args.organisation, "user": args.user, "hub": args.hub,
        **tls.client_overrides(args)}))


def _admin_org(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        org = admin.organisation(args.organisation_id, args.name)
    print(f"organisation {org.organisation_id} ({org.name}) registered")
    return 0


def _admin_coord(args: argparse.Namespace) -> int:
    encoded = args.public_key
    if args.public_key_file:
        try:
            encoded = args.public_key_file.read_text().strip()
        except OSError as exc:
            raise InvalidInput(f"cannot read {args.public_key_file}: {exc.strerror}") from None
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("the public key must be base64") from None
    with _admin(args) as admin:
        coord = admin.coordinator(args.coordinator_id, args.coordinator_org, args.name,
                                  args.phone, args.email, key)
    print(f"coordinator {coord.coordinator_id} registered "
          f"(key fingerprint {coord.key_fingerprint.hex()})")
    return 0


def _admin_cov(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        cov, unchanged = admin.covenant(args.file)
    if unchanged:
        print(f"covenant {cov.covenant_id} is unchanged (still version {cov.version})")
    else:
        print(f"covenant {cov.covenant_id} version {cov.version} registered "
              f"({len(cov.parties)} parties, coordinator {cov.coordinator_id})")
    now = datetime.now(UTC)
    if not cov.valid_from.ToDatetime(tzinfo=UTC) <= now < cov.valid_until.ToDatetime(tzinfo=UTC):
        print(f"warning: version {cov.version} is not in force now, so nothing is disclosed "
              "on its basis (alerts that depend on it are closed)", file=sys.stderr)
    return 0


def _admin_profile(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        made, unchanged = admin.profile(args.file)
    print(f"linkage profile {made.profile_id} "
          + (f"is unchanged (still version {made.version})" if unchanged
             else f"version {made.version} registered"))
    return 0


def _admin_list(args: argparse.Namespace) -> int:
    with _admin(args) as admin:
        orgs, coords, covs = admin.registry()
        profiles = admin.profiles()
    print("organisations:")
    for o in orgs:
        print(f"  {o.organisation_id:24} {o.name}")
    print("coordinators:")
    for c in coords:
        print(f"  {c.coordinator_id:24} {c.contact.name} ({c.organisation_id})")
    print("covenants:")
    for v in covs:
        until = v.valid_until.ToDatetime().date() - timedelta(days=1)  # inclusive
        print(f"  {v.covenant_id:24} v{v.version}, until {until}, parties: {', '.join(v.parties)}")
    print("linkage profiles:")
    for lp in profiles:
        print(f"  {lp.profile_id:24} v{lp.version}")
    return 0
