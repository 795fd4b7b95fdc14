"""Validated inputs of the hub's RPCs.

Every request is converted here into a frozen value before anything touches the
database; a request that fails raises InvalidInput naming the field (never its
value) and changes nothing. Checks that need the database live in hub._core.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from exchange import crypto, linkage, vocab
from exchange.errors import FailedPrecondition, InvalidInput
from exchange.rpc import from_timestamp
from exchange.v1 import common_pb2, coordinator_pb2, signal_pb2

MAX_KEYS = 200  # during a key rotation every token comes twice
MAX_ENVELOPES = 16
MAX_CIPHERTEXT = 16 * 1024
MIN_CIPHERTEXT = 32 + 16  # HPKE encapsulated key + AEAD tag
MAX_CONSENT_KEYS = 16
MAX_PURPOSES = 16
CONSENT_YEARS = (2000, 2200)  # as for covenants; the hub adds its maximum period to these
WITHDRAWAL_REASONS = {
    signal_pb2.WITHDRAWAL_REASON_RISK_GONE: "risk_gone",
    signal_pb2.WITHDRAWAL_REASON_UNJUSTIFIED: "unjustified",
}
ALERT_STATES: dict[coordinator_pb2.AlertState.ValueType, str] = {
    coordinator_pb2.ALERT_STATE_NEW: "new",
    coordinator_pb2.ALERT_STATE_SEEN: "seen",
    coordinator_pb2.ALERT_STATE_CONTACT_MADE: "contact_made",
    coordinator_pb2.ALERT_STATE_CLOSED: "closed",
}


@dataclass(frozen=True)
class Contact:
    name: str
    phone: str
    email: str


@dataclass(frozen=True)
class EnvelopeInput:
    recipient_id: str
    key_fingerprint: bytes
    scheme: str
    ciphertext: bytes


@dataclass(frozen=True)
class SignalInput:
    signal_id: str
    keys: frozenset[tuple[int, bytes]]
    category: str
    region: str
    professional: Contact
    observed_at: datetime | None
    expires_at: datetime | None
    envelopes: tuple[EnvelopeInput, ...]
    content_sha256: bytes
    # The signal this one replaces (a key rotation), or "".
    replaces: str = ""
    # The linkage profile and token scheme its fuzzy tokens were made with
    # ("id@vN/tS", see exchange.linkage.signal_ref), or "".
    linkage_profile: str = ""


@dataclass(frozen=True)
class ConsentInput:
    consent_id: str
    subject_keys: frozenset[tuple[int, bytes]]
    covenant_id: str
    purposes: tuple[str, ...]
    evidence_reference: str
    valid_from: datetime | None
    valid_until: datetime
    content_sha256: bytes


def _keys(
    keys: list[common_pb2.PseudonymousKey], field: str, limit: int, kinds: set[int]
) -> frozenset[tuple[int, bytes]]:
    if not 1 <= len(keys) <= limit:
        raise InvalidInput(f"{field} must hold 1 to {limit} keys")
    out = set()
    for i, key in enumerate(keys):
        if key.kind not in kinds:
            raise InvalidInput(f"{field}[{i}].kind is not an accepted key kind")
        if len(key.value) != crypto.PSEUDONYM_SIZE:
            raise InvalidInput(f"{field}[{i}].value must be {crypto.PSEUDONYM_SIZE} bytes")
        out.add((int(key.kind), bytes(key.value)))
    if len(out) != len(keys):
        raise InvalidInput(f"{field} lists a key twice")
    return frozenset(out)


def contact(msg: common_pb2.Contact, field: str) -> Contact:
    name = vocab.text(msg.name, f"{field}.name", max_len=200)
    phone = vocab.phone(vocab.text(msg.phone, f"{field}.phone", max_len=32, required=False),
                        f"{field}.phone")
    email = vocab.email(vocab.text(msg.email, f"{field}.email", max_len=254, required=False),
                        f"{field}.email")
    if not phone and not email:
        raise InvalidInput(f"{field} needs a phone number or an e-mail address")
    return Contact(name.strip(), phone, email)


def signal(req: signal_pb2.SubmitSignalRequest) -> SignalInput:
    signal_id = vocab.uuid_str(req.signal_id, "signal_id")
    # before the keys: a newer agent's tokens may be of kinds this hub does not know
    if req.token_scheme > linkage.TOKEN_SCHEME:
        raise FailedPrecondition(
            f"the tokens were made with token scheme {req.token_scheme}; this hub compares "
            f"schemes up to {linkage.TOKEN_SCHEME}: upgrade the hub first")
    keys = _keys(list(req.keys), "keys", MAX_KEYS, {int(k) for k in crypto.KeyKind})
    category = vocab.category(req.category)
    region = vocab.region(req.region)
    if not req.HasField("professional"):
        raise InvalidInput("professional is required")
    professional = contact(req.professional, "professional")
    observed_at = from_timestamp(req.observed_at, "observed_at")
    expires_at = from_timestamp(req.expires_at, "expires_at")
    if len(req.envelopes) > MAX_ENVELOPES:
        raise InvalidInput(f"a signal carries at most {MAX_ENVELOPES} envelopes")
    envelopes = []
    for i, env in enumerate(req.envelopes):
        where = f"envelopes[{i}]"
        vocab.slug(env.recipient_id, f"{where}.recipient_id")
        if len(env.key_fingerprint) != 16:
            raise InvalidInput(f"{where}.key_fingerprint must be 16 bytes")
        if env.scheme != crypto.ENVELOPE_SCHEME:
            raise InvalidInput(f"{where}.scheme must be {crypto.ENVELOPE_SCHEME}")
        if not MIN_CIPHERTEXT <= len(env.ciphertext) <= MAX_CIPHERTEXT:
            raise InvalidInput(
                f"{where}.ciphertext must be {MIN_CIPHERTEXT} to {MAX_CIPHERTEXT} bytes"
            )
        envelopes.append(EnvelopeInput(env.recipient_id, bytes(env.key_fingerprint),
                                       env.scheme, bytes(env.ciphertext)))
    if len({e.recipient_id for e in envelopes}) != len(envelopes):
        raise InvalidInput("envelopes lists a recipient twice")
    replaces = vocab.uuid_str(req.replaces, "replaces") if req.replaces else ""
    if replaces == signal_id:
        raise InvalidInput("a signal cannot replace itself")
    profile = profile_ref(req.linkage_profile) if req.linkage_profile else ""
    fuzzy = {k for k, _ in keys} & FUZZY_KINDS
    if fuzzy and not profile:
        raise InvalidInput("keys holds fuzzy linkage tokens: linkage_profile is required")
    if req.token_scheme and not profile:
        raise InvalidInput("token_scheme is given without linkage_profile")
    return SignalInput(
        signal_id=signal_id, keys=keys, category=category, region=region,
        professional=professional, observed_at=observed_at, expires_at=expires_at,
        envelopes=tuple(envelopes),
        content_sha256=hashlib.sha256(req.SerializeToString(deterministic=True)).digest(),
        replaces=replaces,
        linkage_profile=linkage.signal_ref(profile, req.token_scheme) if profile else "",
    )


FUZZY_KINDS = frozenset(int(k) for k in crypto.KeyKind) - {
    int(crypto.KeyKind.PERSON), int(crypto.KeyKind.ADDRESS), int(crypto.KeyKind.MEMBER)}
_PROFILE_REF = re.compile(r"^([a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)@v([1-9][0-9]{0,5})$")


def profile_ref(value: str) -> str:
    """A linkage profile reference: "id@vN"."""
    if not _PROFILE_REF.fullmatch(value):
        raise InvalidInput("linkage_profile must be a profile id and version, like "
                           "nl-household@v1")
    return value


MAX_EXCLUDED = 1024


def address_keys(keys: list[common_pb2.PseudonymousKey]) -> list[bytes]:
    """1 to 1024 address keys (for the exclusion list)."""
    found = _keys(keys, "keys", MAX_EXCLUDED, {int(crypto.KeyKind.ADDRESS)})
    return sorted(value for _, value in found)


def person_keys(keys: list[common_pb2.PseudonymousKey],
                field: str) -> frozenset[tuple[int, bytes]]:
    """1 to 16 person keys (for consent and subject access)."""
    return _keys(keys, field, MAX_CONSENT_KEYS, {int(crypto.KeyKind.PERSON)})


def withdrawal(req: signal_pb2.WithdrawSignalRequest) -> tuple[str, str]:
    signal_id = vocab.uuid_str(req.signal_id, "signal_id")
    if req.reason not in WITHDRAWAL_REASONS:
        raise InvalidInput("reason must be RISK_GONE or UNJUSTIFIED")
    return signal_id, WITHDRAWAL_REASONS[req.reason]


def consent(req: signal_pb2.RecordConsentRequest) -> ConsentInput:
    consent_id = vocab.uuid_str(req.consent_id, "consent_id")
    keys = person_keys(list(req.subject_keys), "subject_keys")
    covenant_id = vocab.slug(req.covenant_id, "covenant_id")
    if not 1 <= len(req.purposes) <= MAX_PURPOSES:
        raise InvalidInput(f"purposes must list 1 to {MAX_PURPOSES} purposes")
    purposes = tuple(vocab.code(p, "purposes") for p in req.purposes)
    if len(set(purposes)) != len(purposes):
        raise InvalidInput("purposes lists a purpose twice")
    evidence = vocab.reference(req.evidence_reference, "evidence_reference")
    valid_from = from_timestamp(req.valid_from, "valid_from")
    valid_until = from_timestamp(req.valid_until, "valid_until")
    if valid_until is None:
        raise InvalidInput("valid_until is required")
    for name, moment in (("valid_from", valid_from), ("valid_until", valid_until)):
        if moment is not None and not CONSENT_YEARS[0] <= moment.year <= CONSENT_YEARS[1]:
            raise InvalidInput(f"{name} must be in a year from {CONSENT_YEARS[0]} to "
                               f"{CONSENT_YEARS[1]}")
    if valid_from is not None and valid_until <= valid_from:
        raise InvalidInput("valid_until must be after valid_from")
    return ConsentInput(
        consent_id=consent_id, subject_keys=keys, covenant_id=covenant_id,
        purposes=tuple(sorted(purposes)), evidence_reference=evidence,
        valid_from=valid_from, valid_until=valid_until,
        content_sha256=hashlib.sha256(req.SerializeToString(deterministic=True)).digest(),
    )


def page_size(value: int, *, default: int, maximum: int) -> int:
    if value == 0:
        return default
    if not 1 <= value <= maximum:
        raise InvalidInput(f"page_size must be between 1 and {maximum}")
    return value


def alert_states(values: list[coordinator_pb2.AlertState.ValueType]) -> tuple[str, ...]:
    if not values:
        return ("new", "seen", "contact_made")
    try:
        return tuple(sorted({ALERT_STATES[v] for v in values}))
    except KeyError:
        raise InvalidInput("states lists an unknown alert state") from None


CLOSE_REASONS: dict[coordinator_pb2.AlertCloseReason.ValueType, str] = {
    coordinator_pb2.ALERT_CLOSE_REASON_RESOLVED: "resolved",
    coordinator_pb2.ALERT_CLOSE_REASON_NO_ACTION_NEEDED: "no_action_needed",
}


def close_reason(value: coordinator_pb2.AlertCloseReason.ValueType) -> str:
    try:
        return CLOSE_REASONS[value]
    except KeyError:
        raise InvalidInput("reason must be RESOLVED or NO_ACTION_NEEDED") from None
