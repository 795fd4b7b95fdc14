"""The access-log event as every party encodes it, so clients can check what they get.

An event's leaf hash is the RFC 6962 leaf hash of its canonical bytes: sorted-key,
compact JSON of every field below, the time as UTC with microseconds, plus ``"v": 1``.
The hub stores the leaves in a Merkle tree (exchange.merkle); a privacy officer who
receives an event recomputes its leaf hash here and checks its inclusion proof.

The fields follow NEN 7513: what happened (type, action, outcome), when, who (the
user's id, name and role, the organisation, on whose behalf, whether they asked for it
themselves), the purpose, the subject (a pseudonymous household reference), from where
(source system, network address) and the authorisation used (basis).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from exchange import merkle
from exchange.v1 import audit_pb2

FIELDS = (
    "seq", "event_id", "occurred_at", "event_type", "action", "outcome",
    "actor_org", "actor_user", "actor_name", "actor_role", "requested", "owner_org",
    "on_behalf_of", "purpose", "subject_ref", "basis", "reason", "source_system",
    "network_address", "request_id", "detail",
)
FORMAT_VERSION = 1


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(event: Mapping[str, Any]) -> bytes:
    """The bytes an event's leaf hash covers."""
    body = {k: event[k] for k in FIELDS}
    body["occurred_at"] = iso(event["occurred_at"])
    return _encode(body)


def _encode(body: dict[str, Any]) -> bytes:
    # orjson writes exactly what json.dumps(sort_keys=True, separators=(",", ":"),
    # ensure_ascii=False) writes, UTF-8 encoded, ten times faster (a test checks it).
    return orjson.dumps({**body, "v": FORMAT_VERSION}, option=orjson.OPT_SORT_KEYS)


def leaf_hash(event: Mapping[str, Any]) -> bytes:
    return merkle.leaf_hash(canonical(event))


def encoded_leaf_hash(body: dict[str, Any]) -> bytes:
    """The leaf hash of an event already in canonical form: exactly the FIELDS, the
    time as :func:`iso` gives it (as the hub queues events); saves a copy per event."""
    return merkle.leaf_hash(_encode(body))


def from_message(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    """The fields of an event as the hub sent it, to recompute its leaf hash."""
    return {
        "seq": event.index, "event_id": event.event_id,
        "occurred_at": event.occurred_at.ToDatetime(tzinfo=UTC),
        "event_type": event.event_type, "action": event.action, "outcome": event.outcome,
        "actor_org": event.actor.organisation_id, "actor_user": event.actor.user_id,
        "actor_name": event.actor.name, "actor_role": event.actor.role,
        "requested": event.requested, "owner_org": event.owner_organisation_id,
        "on_behalf_of": event.on_behalf_of, "purpose": event.purpose,
        "subject_ref": event.subject_ref, "basis": event.basis, "reason": event.reason,
        "source_system": event.source_system, "network_address": event.network_address,
        "request_id": event.request_id, "detail": event.detail_json,
    }
