"""Exports: CSV and JSON lines carry every hashed field; FHIR is a valid R4 AuditEvent."""

from __future__ import annotations

import base64
import csv
import io
import ipaddress
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from agent import _export
from exchange import auditlog, rpc
from exchange.v1 import audit_pb2


def _event(index: int, **changes: Any) -> audit_pb2.AuditEvent:
    fields: dict[str, Any] = {
        "index": index, "event_id": f"00000000-0000-4000-8000-{index:012d}",
        "occurred_at": rpc.to_timestamp(datetime(2026, 6, 1, 12, 0, index, tzinfo=UTC)),
        "event_type": "alert.open", "action": "disclose", "outcome": "success",
        "actor": audit_pb2.Actor(organisation_id="gemeente-noord", user_id="regie-noord",
                                 role="coordinator", name="Marieke de Boer"),
        "requested": True, "owner_organisation_id": "jeugdzorg-noord",
        "on_behalf_of": "", "purpose": "care_coordination",
        "subject_ref": "0f" * 16, "basis": "covenant:samen-sterk-noord@v1", "reason": "",
        "source_system": "samenloop-hub", "network_address": "ipv4:127.0.0.1:5555",
        "request_id": "11111111-1111-4111-8111-111111111111",
        "detail_json": '{"alert":"a","envelopes":["s"]}',
    }
    fields.update(changes)
    event = audit_pb2.AuditEvent(**fields)
    event.leaf_hash = auditlog.leaf_hash(auditlog.from_message(event))
    return event


EVENTS = [_event(0), _event(1, event_type="match.hold", action="deny", outcome="denied",
                             requested=False, on_behalf_of="org-a/agent",
                             actor=audit_pb2.Actor(organisation_id="samenloop-hub",
                                                   user_id="disclosure-gate", role="system"),
                             purpose="", basis="", reason="category_not_covered")]


def test_csv_and_jsonl_hold_every_hashed_field() -> None:
    rows = list(csv.DictReader(io.StringIO(_export.to_csv(EVENTS))))
    assert [r["seq"] for r in rows] == ["0", "1"]
    assert set(auditlog.FIELDS) <= set(rows[0])
    lines = [json.loads(line) for line in _export.to_jsonl(EVENTS).splitlines()]
    assert lines[0]["detail"] == {"alert": "a", "envelopes": ["s"]}
    assert lines[1]["leaf_hash"] == EVENTS[1].leaf_hash.hex()


_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
# FHIR R4 base64Binary (http://hl7.org/fhir/R4/datatypes.html#base64Binary)
_BASE64 = re.compile(r"(\s*([0-9a-zA-Z+/=]){4}\s*)+")
_NETWORK_TYPES = {"1", "2", "3", "4", "5"}  # machine name, IP, telephone, email, URI


def _coding(value: Any) -> None:
    assert isinstance(value, dict) and isinstance(value.get("code"), str)
    assert isinstance(value.get("system"), str)


def validate_audit_event(resource: dict[str, Any]) -> None:
    """The required elements and value sets of the FHIR R4 AuditEvent resource."""
    assert resource["resourceType"] == "AuditEvent"
    _coding(resource["type"])                                   # type 1..1 Coding
    for sub in resource.get("subtype", []):
        _coding(sub)
    assert resource.get("action", "E") in {"C", "R", "U", "D", "E"}
    assert _INSTANT.fullmatch(resource["recorded"])             # recorded 1..1 instant
    assert resource.get("outcome", "0") in {"0", "4", "8", "12"}
    agents = resource["agent"]                                  # agent 1..*
    assert isinstance(agents, list) and agents
    for agent in agents:
        assert isinstance(agent["requestor"], bool)             # agent.requestor 1..1
        assert "who" in agent or "name" in agent
        if "network" in agent:                                  # a bare address and its type
            network = agent["network"]
            assert network["type"] in _NETWORK_TYPES and network["address"]
            if network["type"] == "2":
                ipaddress.ip_address(network["address"])
    source = resource["source"]                                 # source 1..1
    assert isinstance(source["observer"], dict)                 # source.observer 1..1
    assert source["observer"].get("identifier") or source["observer"].get("display")
    for entity in resource.get("entity", []):
        assert "what" in entity or "description" in entity
        for detail in entity.get("detail", []):                 # detail.type and value[x]
            assert isinstance(detail["type"], str)
            assert any(k.startswith("value") for k in detail)
            if "valueBase64Binary" in detail:
                assert _BASE64.fullmatch(detail["valueBase64Binary"])
                base64.b64decode(detail["valueBase64Binary"], validate=True)
    assert not _has_null(resource)                              # FHIR JSON has no nulls


def _has_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, dict):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_null(v) for v in value)
    return False


def test_the_fhir_export_is_a_bundle_of_valid_audit_events() -> None:
    bundle = json.loads(_export.to_fhir(EVENTS))
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert len(bundle["entry"]) == 2
    for entry, event in zip(bundle["entry"], EVENTS, strict=True):
        assert entry["fullUrl"] == f"urn:uuid:{event.event_id}"
        validate_audit_event(entry["resource"])
    opened, held = (e["resource"] for e in bundle["entry"])
    assert (opened["action"], opened["outcome"]) == ("R", "0")
    assert opened["agent"][0]["policy"] == ["covenant:samen-sterk-noord@v1"]
    assert opened["agent"][0]["who"]["display"] == "Marieke de Boer"
    assert (held["outcome"], held["agent"][0]["requestor"]) == ("4", False)
    assert held["agent"][1]["who"]["identifier"]["value"] == "org-a/agent"
    assert opened["agent"][0]["network"] == {"address": "127.0.0.1", "type": "2"}


def test_the_leaf_hash_is_base64_of_its_bytes() -> None:
    for event in EVENTS:
        (log_entry,) = (e for e in _export.fhir_audit_event(event)["entity"]
                        if e["what"]["identifier"]["system"].endswith("/access-log"))
        (leaf,) = (d for d in log_entry["detail"] if d["type"] == "leaf_hash")
        assert base64.b64decode(leaf["valueBase64Binary"], validate=True) == event.leaf_hash


@pytest.mark.parametrize(("recorded", "address", "kind"), [
    ("ipv4:127.0.0.1:5555", "127.0.0.1", "2"),
    ("ipv6:[::1]:5555", "::1", "2"),
    ("ipv6:%5B::1%5D:5555", "::1", "2"),
    ("ipv6:[2001:db8::7]:443", "2001:db8::7", "2"),
    ("ipv6:[::ffff:10.0.0.8]:5555", "10.0.0.8", "2"),
    ("127.0.0.1:5555", "127.0.0.1", "2"),
    ("[::1]:5555", "::1", "2"),
    ("10.1.2.3", "10.1.2.3", "2"),
    ("::1", "::1", "2"),
    ("hub.example.org:50051", "hub.example.org", "1"),
])
def test_the_network_address_is_bare(recorded: str, address: str, kind: str) -> None:
    resource = _export.fhir_audit_event(_event(0, network_address=recorded))
    assert resource["agent"][0]["network"] == {"address": address, "type": kind}
    validate_audit_event(resource)


@pytest.mark.parametrize("recorded", [
    "", "unix:/run/samenloop.sock", "unix-abstract:samenloop", "ipv4:", "ipv4:[::1]:5555",
    "ipv6:127.0.0.1:5555", "ipv4:127.0.0.1:port", "127.0.0.1:99999", "[::1", "not an address",
])
def test_a_missing_or_unparseable_address_has_no_network(recorded: str) -> None:
    resource = _export.fhir_audit_event(_event(0, network_address=recorded))
    assert "network" not in resource["agent"][0]
    validate_audit_event(resource)


def test_the_validator_rejects_what_fhir_rejects() -> None:
    resource = _export.fhir_audit_event(EVENTS[0])
    for broken in ({k: v for k, v in resource.items() if k != "recorded"},
                   {**resource, "agent": []},
                   {**resource, "source": {"site": "x"}},
                   {**resource, "action": "X"},
                   _with_leaf_hash(resource, EVENTS[0].leaf_hash.hex() + "!"),
                   {**resource, "agent": [{**resource["agent"][0],
                                           "network": {"address": "ipv4:127.0.0.1:5555",
                                                       "type": "2"}}]}):
        with pytest.raises((AssertionError, KeyError, ValueError)):
            validate_audit_event(broken)


def _with_leaf_hash(resource: dict[str, Any], value: str) -> dict[str, Any]:
    entities = json.loads(json.dumps(resource["entity"]))
    for entity in entities:
        for detail in entity.get("detail", []):
            if detail["type"] == "leaf_hash":
                detail["valueBase64Binary"] = value
    return {**resource, "entity": entities}


def test_unknown_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        _export.export(EVENTS, "xml")
