"""Access-log exports for privacy officers' tools: CSV, JSON lines and FHIR AuditEvent.

The FHIR export follows the R4 AuditEvent resource: every required element (type,
recorded, agent with requestor, source with observer) is always present; binary values
are base64 (base64Binary) and the network address is a bare IP address or host name.
"""

from __future__ import annotations

import base64
import csv
import io
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from exchange import auditlog
from exchange.v1 import audit_pb2

FORMATS = ("csv", "jsonl", "fhir")
SYSTEM = "https://samenloop.example/fhir"
_ACTIONS = {"create": "C", "read": "R", "update": "U", "delete": "D", "disclose": "R",
            "search": "E", "deny": "E", "verify": "E"}
_OUTCOMES = {"success": "0", "invalid": "4", "denied": "4", "failed": "8"}
# FHIR R4 AuditEvent.agent.network.type (network-type): 1 machine name, 2 IP address.
_MACHINE_NAME, _IP_ADDRESS = "1", "2"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z)(?=.*[A-Za-z])(?:{_LABEL}\.)*{_LABEL}\.?")
_PORT = re.compile(r"[0-9]{1,5}")


def _is_port(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and int(text) <= 65535


def _without_port(text: str) -> str | None:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` to the host; a bare IPv6 address
    (two or more colons, no brackets) as it is; None when the port is malformed."""
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and _is_port(port[1:]))):
            return None
        return host
    if text.count(":") == 1:
        host, port = text.split(":")
        return host if _is_port(port) else None
    return text


def network_address(peer: str) -> tuple[str, str] | None:
    """The bare address and FHIR network type of a caller's address as the hub logs it.

    The hub records gRPC peers: ``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555`` (perhaps
    percent-encoded); a plain ``host:port`` is understood too. Returns None for an empty
    address or one that is not an IP address or host name (e.g. ``unix:/path``).
    """
    text = urllib.parse.unquote(peer.strip())
    scheme, colon, rest = text.partition(":")
    version = {"ipv4": 4, "ipv6": 6}.get(scheme) if colon else None
    host = _without_port(rest if version else text)
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if version is None and _HOST_NAME.fullmatch(host):
            return host.rstrip(".").lower(), _MACHINE_NAME
        return None
    if version is not None and ip.version != version:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # an IPv4 caller of a dual-stack listener
    return str(ip), _IP_ADDRESS


def _row(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    fields = auditlog.from_message(event)
    fields["occurred_at"] = auditlog.iso(fields["occurred_at"])
    fields["leaf_hash"] = event.leaf_hash.hex()
    return fields


def to_csv(events: Iterable[audit_pb2.AuditEvent]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*auditlog.FIELDS, "leaf_hash"])
    writer.writeheader()
    for event in events:
        writer.writerow(_row(event))
    return out.getvalue()


def to_jsonl(events: Iterable[audit_pb2.AuditEvent]) -> str:
    lines = []
    for event in events:
        row = _row(event)
        row["detail"] = json.loads(row["detail"] or "{}")
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    return "".join(line + "\n" for line in lines)


def _coding(kind: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": f"{SYSTEM}/{kind}", "code": code}
    if display:
        coding["display"] = display
    return coding


def fhir_audit_event(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    """One FHIR R4 AuditEvent resource for one access-log event."""
    actor = event.actor
    network = network_address(event.network_address)
    agents: list[dict[str, Any]] = [{
        "type": {"coding": [_coding("role", actor.role)]},
        "who": {"identifier": {"system": f"{SYSTEM}/user/{actor.organisation_id}",
                               "value": actor.user_id},
                "display": actor.name or actor.user_id},
        "name": actor.name or actor.user_id,
        "requestor": bool(event.requested),
        "network": {"address": network[0], "type": network[1]} if network else None,
        "policy": [event.basis] if event.basis else None,
        "purposeOfUse": [{"coding": [_coding("purpose", event.purpose)]}]
        if event.purpose else None,
    }]
    if event.on_behalf_of:
        agents.append({
            "type": {"coding": [_coding("role", "on-behalf-of")]},
            "who": {"identifier": {"system": f"{SYSTEM}/user", "value": event.on_behalf_of}},
            "requestor": True,
        })
    entities: list[dict[str, Any]] = []
    if event.subject_ref:
        entities.append({
            "what": {"identifier": {"system": f"{SYSTEM}/household",
                                    "value": event.subject_ref}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                     "code": "1", "display": "Person"},
            "description": "pseudonymous household reference",
        })
    entities.append({
        "what": {"identifier": {"system": f"{SYSTEM}/access-log", "value": str(event.index)}},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                 "code": "2", "display": "System Object"},
        "detail": [
            {"type": "detail", "valueString": event.detail_json},
            {"type": "leaf_hash",
             "valueBase64Binary": base64.b64encode(event.leaf_hash).decode("ascii")},
            {"type": "organisation", "valueString": event.owner_organisation_id},
        ],
    })
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event.event_id,
        "type": _coding("event-type", event.event_type.split(".")[0]),
        "subtype": [_coding("event-type", event.event_type)],
        "action": _ACTIONS.get(event.action, "E"),
        "recorded": event.occurred_at.ToDatetime(tzinfo=UTC).isoformat(),
        "outcome": _OUTCOMES.get(event.outcome, "8"),
        "outcomeDesc": event.reason or event.outcome,
        "agent": agents,
        "source": {
            "site": event.source_system,
            "observer": {"identifier": {"system": f"{SYSTEM}/system",
                                        "value": event.source_system},
                         "display": event.source_system},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                      "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    }
    if event.purpose:
        resource["purposeOfEvent"] = [{"coding": [_coding("purpose", event.purpose)]}]
    pruned: dict[str, Any] = _prune(resource)
    return pruned


def _prune(value: Any) -> Any:
    """FHIR has no nulls: drop empty members."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def to_fhir(events: Iterable[audit_pb2.AuditEvent]) -> str:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{e.event_id}", "resource": fhir_audit_event(e)}
                  for e in events],
    }
    return json.dumps(bundle, ensure_ascii=False, indent=2) + "\n"


def export(events: Iterable[audit_pb2.AuditEvent], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(events)
    if fmt == "jsonl":
        return to_jsonl(events)
    if fmt == "fhir":
        return to_fhir(events)
    raise ValueError(f"unknown export format {fmt!r}")
