"""``samenloop audit ...``: the privacy officer's commands."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent._cli import _date, _end_date, _hub_flag, _json, _read_bsn, print_table
from exchange import config, tls
from exchange.errors import InvalidInput

_FILTERS = {"subject": "subject_ref", "actor_organisation": "organisation_id",
            "actor": "actor_user_id", "type": "event_type", "action": "action",
            "outcome": "outcome"}


def register_audit(sub: Any) -> None:
    audit = sub.add_parser(
        "audit", help="privacy officer: query, export and verify the access log",
        description="Query, export and verify the hub's access log. Every command first "
        "checks the hub's signed checkpoint against the last one this client saw (a "
        "consistency proof): a log that shrank, forked or was rewritten stops it.")
    a_sub = audit.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser, *, read_only: bool = False) -> None:
        p.add_argument("--organisation", metavar="ID", help="your organisation id")
        p.add_argument("--user", metavar="ID", help="your user id")
        p.add_argument("--state-file", type=Path, metavar="FILE",
                       help="keys pinned on first use and the last checkpoint seen "
                       "(default samenloop-audit-state.json)")
        p.add_argument("--hub-key", metavar="HEX",
                       help="the hub's checkpoint public key, as 'hub serve' prints it")
        p.add_argument("--origin", metavar="NAME", help="the hub's checkpoint origin")
        _hub_flag(p)
        if read_only:
            p.add_argument("--continue-read-only", action="store_true",
                           help="when the log fails its checks, say so loudly but go on "
                           "reading (to investigate); nothing is remembered")

    def filters(p: argparse.ArgumentParser, limit: int = 100) -> None:
        p.add_argument("--subject", metavar="REF", help="pseudonymous household reference")
        p.add_argument("--actor-organisation", metavar="ID",
                       help="events this organisation acted in or whose data they concern")
        p.add_argument("--actor", metavar="ID", help="acting user id")
        p.add_argument("--type", metavar="TYPE", help="event type, e.g. alert.open")
        p.add_argument("--action", help="create, read, update, delete, disclose, search, "
                       "deny or verify")
        p.add_argument("--outcome", help="success, denied, invalid or failed")
        p.add_argument("--since", type=_date, metavar="YYYY-MM-DD")
        p.add_argument("--until", type=_end_date, metavar="YYYY-MM-DD")
        p.add_argument("--limit", type=int, default=limit,
                       help=f"at most this many (default {limit})")
        p.add_argument("--newest", action="store_true", help="newest events first")

    verify = a_sub.add_parser(
        "verify", help="verify the access log (offline with --database)",
        description="Without --database: check the hub's checkpoint against the last one "
        "seen (consistency proof), then have the hub recompute its whole log. With "
        "--database: recompute every event, the hash chain, the Merkle tree, the head, "
        "every stored checkpoint and every removal of old events from the database "
        "itself, and check that the log extends the checkpoints you saw before (the last "
        "one in your state file, and any --checkpoint), signed by the hub's key (given, "
        "or pinned in your state file); name the first bad event (exit 1). A database "
        "checked without a checkpoint seen before only shows that it agrees with itself.")
    verify.add_argument("--database", metavar="URL",
                        help="SQLAlchemy URL of a hub database to verify offline (a "
                        "read-only snapshot: the hub keeps running)")
    verify.add_argument("--checkpoint", type=Path, action="append", default=[],
                        metavar="FILE", help="with --database: a checkpoint seen before, "
                        "as saved by 'checkpoint --save' or another client's state file "
                        "(repeatable)")
    common(verify)
    verify.set_defaults(func=_verify)

    query = a_sub.add_parser(
        "query", help="search the access log",
        description="Search the events you may see (your organisation's, or all of them "
        "for an oversight organisation) by household reference, organisation, actor, "
        "type, action, outcome and period. Each event is proven to be in the hub's signed "
        "log (an inclusion proof, checked here); the query itself is logged.")
    filters(query)
    query.add_argument("--json", action="store_true", help="JSON lines for scripts")
    common(query, read_only=True)
    query.set_defaults(func=_query)

    export = a_sub.add_parser(
        "export", help="export events as CSV, JSON lines or FHIR AuditEvent",
        description="Export the events you may see, filtered and proven as with 'query', "
        "as CSV, JSON lines, or a FHIR R4 Bundle of AuditEvent resources.")
    export.add_argument("--format", choices=("csv", "jsonl", "fhir"), required=True)
    export.add_argument("--output", type=Path, metavar="FILE",
                        help="write here instead of standard output")
    filters(export, limit=100_000)
    common(export, read_only=True)
    export.set_defaults(func=_export)

    access = a_sub.add_parser(
        "subject-access", help="every disclosure about a person (GDPR art. 15)",
        description="Answer a subject-access request: asks for the person's BSN (typed at "
        "a prompt, or from standard input), pseudonymises it through the key service, and "
        "lists every disclosure of your organisation's signals about them or about a "
        "household they belong or belonged to — recipient, date, purpose, basis — each "
        "proven to be in the signed log.")
    access.add_argument("--keyservice", metavar="HOST:PORT", help="the key service's address")
    access.add_argument("--json", action="store_true", help="JSON for scripts")
    common(access, read_only=True)
    access.set_defaults(func=_subject_access)

    report = a_sub.add_parser(
        "report", help="aggregate figures for oversight over whole months",
        description="Figures for whole calendar months (signals, alerts, held matches, "
        "consents, time to contact, denials) that cannot be traced to persons or "
        "professionals: counts below 5 are shown as '<5', larger ones rounded to a "
        "multiple of 5, and the median time to contact needs 10 alerts.")
    report.add_argument("--since", type=_month, required=True, metavar="YYYY-MM",
                        help="first month")
    report.add_argument("--until", type=_end_month, required=True, metavar="YYYY-MM",
                        help="last month (inclusive)")
    report.add_argument("--json", action="store_true", help="JSON for scripts")
    common(report)
    report.set_defaults(func=_report)

    register = a_sub.add_parser(
        "register", help="the register of processing (GDPR art. 30), from the covenants",
        description="Print the register of processing activities for the covenants in "
        "force that your organisation is a party to (all of them for an oversight "
        "organisation), as Markdown (or JSON).")
    register.add_argument("--json", action="store_true", help="JSON for scripts")
    common(register)
    register.set_defaults(func=_register)

    cp = a_sub.add_parser(
        "checkpoint", help="fetch, check and print the hub's signed checkpoint",
        description="Fetch the hub's latest checkpoint, check it against the last one "
        "seen, and print it. Share it with other privacy officers: 'audit compare' "
        "catches a hub that shows them different histories.")
    cp.add_argument("--save", type=Path, metavar="FILE", help="also write the note here")
    common(cp)
    cp.set_defaults(func=_checkpoint)

    compare = a_sub.add_parser(
        "compare", help="compare another officer's checkpoint with yours",
        description="Check that another client's checkpoint (a note saved with "
        "'checkpoint --save', or their state file) and yours lie on one history. A hub "
        "that showed you different histories is caught here.")
    compare.add_argument("other", type=Path, metavar="FILE")
    common(compare)
    compare.set_defaults(func=_compare)


def _month(value: str, *, end: bool = False) -> datetime:
    """A YYYY-MM month as its first moment, UTC (the month after's when ``end``)."""
    try:
        month = datetime.strptime(value, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a month like 2027-12") from None
    if end:
        month = month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)
    return month


def _end_month(value: str) -> datetime:
    return _month(value, end=True)


def _auditor(args: argparse.Namespace) -> Any:
    from agent import Auditor, AuditSettings

    settings = config.load(AuditSettings, path=args.config, overrides={
        "organisation": args.organisation, "user": args.user, "hub": args.hub,
        "hub_key": getattr(args, "hub_key", None), "origin": getattr(args, "origin", None),
        "state_file": getattr(args, "state_file", None),
        "keyservice": getattr(args, "keyservice", None), **tls.client_overrides(args)})
    return Auditor(settings,
                   read_only_on_failure=getattr(args, "continue_read_only", False))


def _notices(auditor: Any) -> None:
    for notice in auditor.notices:
        print(f"note: {notice}", file=sys.stderr)


def _verify(args: argparse.Namespace) -> int:
    if args.database:
        from agent import AuditSettings
        from agent._auditor import offline_trust
        from hub import Trusted, verify_database

        settings = config.load(AuditSettings, path=args.config, overrides={
            "organisation": args.organisation or "-",  # not used offline
            "hub_key": args.hub_key, "origin": args.origin, "state_file": args.state_file})
        key, seen = offline_trust(settings, args.checkpoint)
        result = verify_database(args.database, public_key=key, origin=settings.origin,
                                 trusted=[Trusted(*item) for item in seen])
        print(result.describe())
        return 0 if result.ok else 1
    if args.checkpoint:
        raise InvalidInput("--checkpoint goes with --database; online, the state file "
                           "holds the checkpoint seen before")
    with _auditor(args) as auditor:
        response = auditor.verify()
        _notices(auditor)
    if response.ok:
        print(f"access log verified: the hub's checkpoint extends the last one this client "
              f"saw, and the hub found all {response.size} events intact. The verification "
              f"is itself logged, so the signed checkpoint covers {response.checkpoint.size}")
        return 0
    print(f"access log verification FAILED at event #{response.first_bad_index}"
          f" (id {response.first_bad_event_id or '?'}): {response.problem}")
    return 1


def _events(args: argparse.Namespace, auditor: Any, limit: int) -> list[Any]:
    if not 1 <= limit <= 1_000_000:
        raise InvalidInput("--limit must be between 1 and 1000000")
    chosen = {field: getattr(args, arg) for arg, field in _FILTERS.items()
              if getattr(args, arg)}
    return list(auditor.query(limit=limit, since=args.since, until=args.until,
                              newest_first=args.newest, **chosen))


def _query(args: argparse.Namespace) -> int:
    with _auditor(args) as auditor:
        events = _events(args, auditor, args.limit)
        _notices(auditor)
    if args.json:
        for event in events:
            print(_json(event))
        return 0
    rows = [[str(e.index), e.occurred_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
             e.event_type, e.outcome,
             f"{e.actor.organisation_id}/{e.actor.user_id}", e.subject_ref or "-",
             e.basis or e.reason or "-"] for e in events]
    if not rows:
        print("no events")
        return 0
    print_table(rows, ["#", "TIME (UTC)", "EVENT", "OUTCOME", "ACTOR", "SUBJECT", "BASIS"])
    return 0


def _export(args: argparse.Namespace) -> int:
    from agent._export import export

    with _auditor(args) as auditor:
        events = _events(args, auditor, args.limit)
        _notices(auditor)
    text = export(events, args.format)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"exported {len(events)} events to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _subject_access(args: argparse.Namespace) -> int:
    from agent import _normalise as norm

    try:
        bsn = norm.bsn(_read_bsn("the person asking"))
    except norm.FieldError as exc:
        raise InvalidInput(f"the BSN {exc}") from None
    with _auditor(args) as auditor:
        signals, found = auditor.subject_access(bsn)
        _notices(auditor)
    if args.json:
        print(json.dumps({"signals": signals, "disclosures": [
            {"recipient": d.recipient, "names_person": d.names_person,
             "event": json.loads(_json(d.event))} for d in found]}, ensure_ascii=False))
        return 0
    print(f"{signals} signal(s) of your organisation concern this person; "
          f"{len(found)} disclosure(s) about them or their household, each proven to be in "
          "the signed log:")
    rows = [[d.event.occurred_at.ToDatetime().strftime("%Y-%m-%d %H:%M"),
             d.event.event_type, "person" if d.names_person else "household",
             d.recipient, d.event.purpose or "-", d.event.basis or "-"]
            for d in found]
    if rows:
        print_table(rows, ["WHEN (UTC)", "WHAT", "ABOUT", "RECIPIENT", "PURPOSE", "BASIS"])
    return 0


def _report(args: argparse.Namespace) -> int:
    with _auditor(args) as auditor:
        report = auditor.report(args.since, args.until)
        _notices(auditor)
    if args.json:
        print(_json(report))
        return 0
    last = (args.until - timedelta(days=1)).strftime("%Y-%m")
    print(f"Samenloop report {args.since:%Y-%m} to {last} ({report.scope}); counts below "
          f"{report.suppression_threshold} are shown as <{report.suppression_threshold}, "
          f"others rounded to a multiple of {report.rounded_to}")
    print_table([[f.name, f.value, f.description] for f in report.figures],
                ["FIGURE", "VALUE", "WHAT"])
    return 0


def _register(args: argparse.Namespace) -> int:
    with _auditor(args) as auditor:
        register = auditor.register()
        _notices(auditor)
    if args.json:
        print(_json(register))
        return 0
    print("# Register of processing activities (GDPR art. 30)\n")
    print(f"Generated {register.generated_at.ToDatetime(tzinfo=UTC):%Y-%m-%d %H:%M} UTC "
          "from the covenants in force.\n")
    for a in register.activities:
        until = a.valid_until.ToDatetime(tzinfo=UTC).date() - timedelta(days=1)
        print(f"## {a.name} ({a.covenant_id}, version {a.covenant_version})\n")
        print(f"- Valid: {a.valid_from.ToDatetime(tzinfo=UTC).date()} to {until}")
        print(f"- Joint controllers: {', '.join(a.controllers)}")
        print(f"- Purposes: {', '.join(a.purposes)}")
        print(f"- Legal basis: {a.legal_basis}")
        print(f"- Regions: {', '.join(a.regions)}")
        for title, items in (("Categories (basis)", a.categories),
                             ("Data subjects", a.data_subjects),
                             ("Personal data", a.personal_data),
                             ("Recipients", a.recipients), ("Retention", a.retention),
                             ("Security measures", a.security_measures)):
            print(f"- {title}:")
            for item in items:
                print(f"  - {item}")
        print()
    if not register.activities:
        print("No covenant is in force.")
    return 0


def _checkpoint(args: argparse.Namespace) -> int:
    with _auditor(args) as auditor:
        note, signed = auditor.checkpoint()
        _notices(auditor)
    print(note, end="")
    print(f"signature valid and consistent with the last checkpoint seen; size {signed.size}")
    if args.save:
        args.save.write_text(note)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from agent._auditor import read_checkpoint_file

    other = read_checkpoint_file(args.other)
    with _auditor(args) as auditor:
        mine, theirs = auditor.compare(other)
        _notices(auditor)
    print(f"consistent: your checkpoint ({mine.size} events) and theirs ({theirs.size} "
          "events) lie on one history")
    return 0

