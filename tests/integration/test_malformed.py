"""Malformed requests to every RPC of the running key service and hub.

Every RPC of every service in proto/samenloop/v1 has a generator here (a test fails when
one is missing). Hypothesis starts from a valid request, built by hand, and applies one or
more invalidating mutations: wrong-length or oversized bytes, unknown enum numbers, too
many repeated items, empty, over-long or control-character strings, malformed ids and
non-canonical UUIDs, timestamps far in the past or future or with invalid nanos, page
sizes out of range, garbage page tokens and covenant files, plus unknown fields. Raw bytes
that are no protobuf message at all go to every method too.

For every example: the status is an error other than INTERNAL and UNKNOWN, its message is
not empty and echoes no generated personal-looking value, the server still answers a valid
call, and the database is unchanged (the access-log tables aside: refusals are logged by
design). RPCs that only read may also succeed, and must then change nothing just the same.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from consent._covenant import _KEYS as COVENANT_KEYS
from exchange import crypto, rpc, vocab
from exchange.errors import InvalidInput
from exchange.v1 import (
    admin_pb2,
    audit_pb2,
    common_pb2,
    coordinator_pb2,
    keyservice_pb2,
    keyservice_pb2_grpc,
    signal_pb2,
)
from hub import _audit, _inputs
from hub._models import Base
from tests.integration.conftest import Services
from tests.support import ADMIN, access, consent_input, row_counts, signal

PROTO = Path(__file__).parents[2] / "proto" / "samenloop" / "v1"


@dataclass(frozen=True)
class Method:
    module: str  # "exchange.v1.signal_pb2"
    service: str  # "SignalService"
    descriptor: MethodDescriptor

    @property
    def name(self) -> str:
        return self.descriptor.name

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.descriptor.input_type)


def _methods() -> dict[str, Method]:
    """Every RPC of every service declared in proto/samenloop/v1, by full method path."""
    found = {}
    for proto in sorted(PROTO.glob("*.proto")):
        module = f"exchange.v1.{proto.stem}_pb2"
        descriptor = importlib.import_module(module).DESCRIPTOR
        for service in descriptor.services_by_name.values():
            for method in service.methods:
                found[f"/{service.full_name}/{method.name}"] = Method(module, service.name,
                                                                       method)
    return found


METHODS = _methods()

# -- generated values -----------------------------------------------------------------

# Values that look like a person's data. Invalid strings carry one, and no error message
# may repeat it: a refusal must never echo what the caller sent.
PERSONAL = ("123456782", "Jansen", "9711AB", "j.jansen@example.nl", "0612345678",
            "Sem de Vries", "2001-02-03", "Kerkstraat")
CONTROL = ("\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "\ufeff")
MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z, the first valid Timestamp
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, the last
UUID_FORMS: tuple[Callable[[str], str], ...] = (
    str.upper, lambda u: "{" + u + "}", lambda u: "urn:uuid:" + u,
    lambda u: u.replace("-", ""), lambda u: u + "\n", lambda u: " " + u, lambda u: u[:-1],
    lambda u: u + "0", lambda u: u + "\x00", lambda u: u * 2, lambda u: u.replace("-", "_"),
)
# 32-byte strings that are no ristretto255 element (RFC 9496: non-canonical or negative field
# encodings), or the identity.
BAD_ELEMENTS = tuple(bytes.fromhex(h) for h in (
    "00" * 32, "ff" * 32, "00" + "ff" * 31, "ff" * 31 + "7f", "ed" + "ff" * 30 + "7f",
    "01" + "00" * 31, "01" + "ff" * 30 + "7f",
))
# X25519 public keys of small order (and non-canonical encodings of them): no envelope can
# be sealed to them.
LOW_ORDER_KEYS = tuple(bytes.fromhex(h) for h in (
    "00" * 32, "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f", "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f",
))

token = st.sampled_from(PERSONAL)
junk = st.text(max_size=12)


def _refused(check: Callable[[str], object], value: str) -> bool:
    try:
        check(value)
    except InvalidInput:
        return True
    return False


def invalid(check: Callable[[str], object], *extra: st.SearchStrategy[str],
            limit: int = 256) -> st.SearchStrategy[str]:
    """Strings ``check`` refuses: personal-looking ones with a space, a control character or
    too many characters, given examples, and random text."""
    return st.one_of(
        st.builds(lambda t, j: f"{t} {j}", token, junk),
        st.builds(lambda t, c, j: f"{t}{c}{j}", token, st.sampled_from(CONTROL), junk),
        st.builds(lambda t, n: (t + " ") * (limit // (len(t) + 1) + 1) + "x" * n,
                  token, st.integers(0, 40)),
        *extra,
        st.text(max_size=80),
    ).filter(lambda v: _refused(check, v))


def bad_text(limit: int, *, required: bool = True) -> st.SearchStrategy[str]:
    blank = [st.sampled_from(["", " ", "\u3000 "])] if required else []
    return invalid(lambda v: vocab.text(v, "f", max_len=limit, required=required), *blank,
                   limit=limit)


def bad_slug(*, optional: bool = False) -> st.SearchStrategy[str]:
    examples = st.sampled_from(["-org", "org-", "Org-a", "org_a", "a" * 65, "org a", "café",
                                "org.a", "\uff4f\uff52\uff47", "org-a\n", ""])
    return invalid(lambda v: (v or not optional) and vocab.slug(v, "f"), examples)


def bad_uuid(real: str | None = None) -> st.SearchStrategy[str]:
    ids = st.uuids().map(str) if real is None else st.one_of(st.just(real),
                                                              st.uuids().map(str))
    return st.one_of(
        st.builds(lambda form, u: form(u), st.sampled_from(UUID_FORMS), ids),
        invalid(lambda v: vocab.uuid_str(v, "f")),
    ).filter(lambda v: _refused(lambda x: vocab.uuid_str(x, "f"), v))


def bad_enum(allowed: set[int]) -> st.SearchStrategy[int]:
    return st.integers(-(2**31), 2**31 - 1).filter(lambda v: v not in allowed)


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def timestamps(lo: int = MIN_SECONDS, hi: int = MAX_SECONDS) -> st.SearchStrategy[Timestamp]:
    """Valid Timestamps from ``lo`` to ``hi`` seconds, never the unset (zero) one."""
    return st.builds(Timestamp, seconds=st.integers(lo, hi),
                     nanos=st.integers(0, 999_999_999)).filter(lambda t: t.seconds or t.nanos)


def bad_timestamps() -> st.SearchStrategy[Timestamp]:
    """Timestamps no datetime can hold: nanos out of range, or seconds beyond 0001-9999."""
    return st.one_of(
        st.builds(Timestamp, seconds=st.integers(MIN_SECONDS, MAX_SECONDS),
                  nanos=st.one_of(st.integers(-(2**31), -1), st.integers(10**9, 2**31 - 1))),
        st.builds(Timestamp, seconds=st.one_of(st.integers(-(2**63), MIN_SECONDS - 1),
                                               st.integers(MAX_SECONDS + 1, 2**63 - 1)),
                  nanos=st.integers(0, 999_999_999)),
    )


def months() -> st.SearchStrategy[Timestamp]:
    """The first day of any month from year 1 to 9999, 00:00 UTC."""
    return st.builds(lambda y, m: Timestamp(seconds=_seconds(datetime(y, m, 1, tzinfo=UTC))),
                     st.integers(1, 9999), st.integers(1, 12))


def _key(kind: int, value: bytes) -> common_pb2.PseudonymousKey:
    return common_pb2.PseudonymousKey(kind=kind, value=value)  # type: ignore[arg-type]


def bad_keys(limit: int, kinds: set[int]) -> st.SearchStrategy[list[common_pb2.PseudonymousKey]]:
    """Key lists the hub refuses: empty, too long, an unknown kind, a wrong length, twice."""
    ok_kind = st.sampled_from(sorted(kinds))
    good = st.builds(_key, ok_kind, st.binary(min_size=32, max_size=32))
    bad = st.one_of(
        st.builds(_key, bad_enum(kinds), st.binary(min_size=32, max_size=32)),
        st.builds(_key, ok_kind, st.binary(max_size=80).filter(lambda b: len(b) != 32)),
    )
    return st.one_of(
        st.just([]),
        st.integers(limit + 1, limit + 8).map(
            lambda n: [_key(min(kinds), i.to_bytes(32, "big")) for i in range(n)]),
        st.builds(lambda ok, b, i: [*ok[:i], b, *ok[i:]], st.lists(good, max_size=3), bad,
                  st.integers(0, 3)),
        good.map(lambda k: [k, k]),
    )


def _phone_field(value: str) -> str:
    return vocab.phone(vocab.text(value, "phone", max_len=32, required=False), "phone")


def _email_field(value: str) -> str:
    return vocab.email(vocab.text(value, "email", max_len=254, required=False), "email")


def bad_contacts() -> st.SearchStrategy[common_pb2.Contact | None]:
    contact = common_pb2.Contact
    return st.one_of(
        st.none(),
        st.just(contact()),
        st.just(contact(name="Pat Professional")),
        st.builds(lambda n: contact(name=n, phone="050 1234567"), bad_text(200)),
        st.builds(lambda p: contact(name="Pat", phone=p),
                  invalid(_phone_field, st.sampled_from(["123", "+31 6", "06-1234567x"]))),
        st.builds(lambda e: contact(name="Pat", email=e),
                  invalid(_email_field, st.sampled_from(["pat@", "@example.org", "pat@example",
                                                         "pat jansen@example.org"]))),
    )


def page_tokens() -> st.SearchStrategy[str]:
    """Tokens no page ever had: text, base64 of junk, and forged cursors with odd times."""
    offsets = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
    moments = st.one_of(
        st.datetimes(timezones=st.one_of(st.none(), offsets)),
        st.builds(lambda d, tz: d.replace(tzinfo=tz),
                  st.sampled_from([datetime(1, 1, 1, tzinfo=UTC),
                                   datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)]),
                  offsets),
    )
    forged = st.builds(lambda d, tail: f"{d.isoformat()}|{tail}", moments,
                       st.one_of(st.uuids().map(str), junk))
    return st.one_of(
        st.text(min_size=1, max_size=60),
        st.binary(min_size=1, max_size=60).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        forged.map(lambda t: base64.urlsafe_b64encode(t.encode()).decode()),
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _unknown_field(number: int, wire: int, payload: bytes) -> bytes:
    tag = _varint(number << 3 | wire)
    if wire == 0:
        return tag + _varint(int.from_bytes(payload[:9], "little") % 2**64)
    if wire == 1:
        return tag + payload[:8].ljust(8, b"\0")
    if wire == 5:
        return tag + payload[:4].ljust(4, b"\0")
    return tag + _varint(len(payload)) + payload


# -- mutations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    label: str
    apply: Callable[[Any], None]
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return self.label


def _strings(value: Any) -> Iterator[str]:
    """Every string in a value: a message's fields, a list's items (repeated fields too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Message):
        for _, item in value.ListFields():
            yield from _strings(item)
    elif not isinstance(value, bytes) and hasattr(value, "__iter__"):
        for item in value:
            yield from _strings(item)


def _secrets(value: Any) -> tuple[str, ...]:
    return tuple(sorted({t for s in _strings(value) for t in PERSONAL if t in s}))


def _assign(message: Any, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    for parent in parents:
        message = getattr(message, parent)
    current = getattr(message, name)
    if value is None:
        message.ClearField(name)
    elif hasattr(current, "extend"):  # a repeated field
        del current[:]
        current.extend(value)
    elif isinstance(current, Message):
        current.CopyFrom(value)
    else:
        setattr(message, name, value)


def put(path: str, values: st.SearchStrategy[Any], *,
        personal: bool = True) -> st.SearchStrategy[Mutation]:
    """Set the field at ``path`` (dotted) to a drawn value; None clears it. With
    ``personal``, the field may hold personal data and no refusal may echo its value."""
    def mutation(value: Any) -> Mutation:
        shown = repr(value)
        shown = shown if len(shown) <= 100 else shown[:97] + "..."
        return Mutation(f"{path}={shown}", lambda m: _assign(m, path, value),
                        _secrets(value) if personal else ())
    return values.map(mutation)


def unknown_fields() -> st.SearchStrategy[Mutation]:
    """An unknown field (numbers from 100 up are declared nowhere): ignored by design."""
    raw = st.builds(_unknown_field, st.integers(100, 2**29 - 1).filter(
        lambda n: not 19000 <= n <= 19999), st.sampled_from([0, 1, 2, 5]),
        st.binary(max_size=24))
    return raw.map(lambda b: Mutation(f"unknown field {b.hex()}",
                                      lambda m: m.MergeFromString(b)))


# -- the seeded hub -----------------------------------------------------------------------

NOTICE_COVENANT = """\
id = "notice-covenant"
name = "Notice covenant"
legal_basis = "AVG art. 6(1)(e)"
valid_from = {start}
valid_until = {end}
coordinator = "coord-a"
parties = ["org-a", "org-d"]
purposes = ["care_coordination"]
regions = ["GM0014"]
match_notices = ["youth_care"]

[categories]
youth_care = "covenant"
"""
PARTNER_B = rpc.Caller("org-b", "agent-b", "partner")
PARTNER_A = rpc.Caller("org-a", "agent-a", "partner")
PARTNER_C = rpc.Caller("org-c", "agent-c", "partner")
PARTNER_D = rpc.Caller("org-d", "agent-d", "partner")
COORDINATOR = rpc.Caller("gemeente", "coord-a", "coordinator")
OFFICER = rpc.Caller("gemeente", "officer", "privacy_officer")
ADMINISTRATOR = rpc.Caller("gemeente", "admin", "administrator")
KEY_CLIENT = rpc.Caller("org-a", "agent-a", "partner")
MUNICIPALITY = rpc.Caller("gemeente", "agent-g", "partner")


@dataclass
class World:
    """The running servers with a household matched across org-a, org-b and org-c (an
    alert; org-c's category needs consent), org-a's consent, and a match notice for org-d
    under a second covenant."""

    services: Services
    alert_id: str
    signal_id: str  # org-b's, in the alert
    other_signal_id: str  # org-a's, in the same alert
    consent_id: str  # org-a's
    task_id: str  # org-d's match notice
    recipient: Any  # org-b's one recipient
    oprf_public_key: bytes
    key_id: str
    # When the servers started: every generated time is relative to it, so that hypothesis
    # sees the same strategies in every example.
    now: datetime
    _channels: dict[tuple[str, rpc.Caller], grpc.Channel] = field(default_factory=dict)

    def channel(self, target: str, caller: rpc.Caller) -> grpc.Channel:
        if (target, caller) not in self._channels:
            address = (self.services.keyservice.address if target == "keyservice"
                       else self.services.hub.address)
            self._channels[target, caller] = rpc.channel(address, caller)
        return self._channels[target, caller]

    def stub(self, method: Method, case: Case) -> Any:
        grpc_module = importlib.import_module(method.module + "_grpc")
        stub = getattr(grpc_module, f"{method.service}Stub")(
            self.channel(case.target, case.caller))
        return getattr(stub, method.name)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


@pytest.fixture
def world(services: Services) -> Iterator[World]:
    hub = services.hub.hub
    hub.oversight = frozenset({"gemeente"})  # as HubSettings.oversight_organisations does
    today = datetime.now(UTC).date()
    hub.register_covenant(ADMIN, NOTICE_COVENANT.format(
        start=today.replace(year=today.year - 1, day=1),
        end=today.replace(year=today.year + 2, day=1)))
    ids = {}
    for org, category, extra in (("org-a", "youth_care", {"address": "a1"}),
                                 ("org-b", "housing", {}),
                                 ("org-c", "mental_health", {})):
        item = signal(hub, org, person="p1", category=category, **extra)
        hub.submit(access(org), item)
        ids[org] = item.signal_id
    for org in ("org-a", "org-d"):
        hub.submit(access(org), signal(hub, org, person="p3", category="youth_care"))
    consent = dataclasses.replace(consent_input(person="p2"),
                                  valid_until=datetime.now(UTC) + timedelta(days=30))
    hub.record_consent(access("org-a"), consent)
    views, _ = hub.list_alerts(access("gemeente", "coordinator", "coord-a"), ("new",), 10, "")
    alert = next(v for v in views if ids["org-b"] in {i.signal_id for i in v.involved})
    (notice,) = [t for t in hub.list_tasks(access("org-d")) if t.kind == "match_notice"]
    (recipient,) = hub.recipients(access("org-b"))
    running = World(services, alert.alert_id, ids["org-b"], ids["org-a"], consent.consent_id,
                    notice.task_id, recipient, b"", "", datetime.now(UTC))
    key = keyservice_pb2_grpc.KeyServiceStub(running.channel("keyservice", KEY_CLIENT))
    published = key.GetPublicKey(keyservice_pb2.GetPublicKeyRequest(), timeout=10)
    running.oprf_public_key, running.key_id = published.public_key, published.key_id
    yield running
    running.close()


# -- a valid request and its invalidating mutations, per RPC ---------------------------


@dataclass(frozen=True)
class Case:
    caller: rpc.Caller
    base: Callable[[World], Any]
    # Mutations each of which makes the request invalid.
    invalid: Callable[[World], st.SearchStrategy[Mutation]] | None = None
    # RPCs that only read may also get valid variations, and may succeed.
    reads: bool = False
    harmless: Callable[[World], st.SearchStrategy[Mutation]] | None = None
    target: str = "hub"


def _submit_base(w: World) -> signal_pb2.SubmitSignalRequest:
    signal_id = str(uuid.uuid4())
    r = w.recipient
    return signal_pb2.SubmitSignalRequest(
        signal_id=signal_id, keys=[_key(1, uuid.uuid4().bytes * 2)],
        category="housing", region="GM0014",
        professional=common_pb2.Contact(name="Pat Professional", phone="050 1234567"),
        observed_at=rpc.to_timestamp(w.now - timedelta(days=1)),
        envelopes=[common_pb2.SealedEnvelope(
            recipient_id=r.coordinator_id, key_fingerprint=r.key_fingerprint,
            scheme=crypto.ENVELOPE_SCHEME,
            ciphertext=crypto.seal(b"{}", r.public_key, signal_id.encode()))])


def _envelopes(w: World) -> st.SearchStrategy[list[common_pb2.SealedEnvelope]]:
    valid = _submit_base(w).envelopes[0]

    def env(**changes: Any) -> common_pb2.SealedEnvelope:
        out = common_pb2.SealedEnvelope()
        out.CopyFrom(valid)
        for name, value in changes.items():
            setattr(out, name, value)
        return out

    return st.one_of(
        st.just([]),  # no envelope for the recipient
        st.integers(_inputs.MAX_ENVELOPES + 1, _inputs.MAX_ENVELOPES + 4).map(
            lambda n: [env(recipient_id=f"coord-{i}") for i in range(n)]),
        bad_slug().map(lambda v: [env(recipient_id=v)]),
        st.just([env(recipient_id="coord-zz")]),  # not a recipient of this partner
        st.binary(max_size=40).filter(lambda b: len(b) != 16).map(
            lambda b: [env(key_fingerprint=b)]),
        st.binary(min_size=16, max_size=16).filter(lambda b: b != valid.key_fingerprint).map(
            lambda b: [env(key_fingerprint=b)]),
        st.text(max_size=60).filter(lambda s: s != crypto.ENVELOPE_SCHEME).map(
            lambda s: [env(scheme=s)]),
        st.one_of(st.binary(max_size=_inputs.MIN_CIPHERTEXT - 1),
                  st.integers(_inputs.MAX_CIPHERTEXT + 1, _inputs.MAX_CIPHERTEXT + 1024).map(
                      bytes)).map(
            lambda c: [env(ciphertext=c)]),
        st.just([valid, valid]),
    )


def _submit_invalid(w: World) -> st.SearchStrategy[Mutation]:
    now = w.now
    return st.one_of(
        put("signal_id", bad_uuid()),
        put("keys", bad_keys(_inputs.MAX_KEYS, {int(k) for k in crypto.KeyKind})),
        put("category", invalid(vocab.category, st.sampled_from(
            ["YOUTH_CARE", "youth care", "youth_care ", "gossip", ""]))),
        put("region", invalid(vocab.region, st.sampled_from(
            ["GM14", "gm0014", "GM00140", "GM0014\n", "GM 014", "GM\u0660\u0660\u0661\u0664",
             "NL0014", ""]))),
        put("professional", bad_contacts()),
        put("observed_at", st.one_of(
            bad_timestamps(), timestamps(hi=_seconds(now - timedelta(days=731))),
            timestamps(lo=_seconds(now + timedelta(days=1))))),
        put("expires_at", st.one_of(
            bad_timestamps(), timestamps(hi=_seconds(now - timedelta(minutes=1))),
            timestamps(lo=_seconds(now + timedelta(days=732))))),
        put("envelopes", _envelopes(w)),
        put("replaces", st.one_of(
            bad_uuid(w.signal_id).filter(bool),
            st.just(w.other_signal_id),  # another organisation's signal
            st.uuids().map(str))),  # no signal at all
        st.just(Mutation("replaces itself",
                         lambda m: setattr(m, "replaces", m.signal_id))),
        *_linkage_invalid(),
    )


def _linkage_invalid() -> list[st.SearchStrategy[Mutation]]:
    """A submission's linkage profile: malformed, unknown, or missing for fuzzy tokens."""
    if "linkage_profile" not in signal_pb2.SubmitSignalRequest.DESCRIPTOR.fields_by_name:
        return []

    def fuzzy_without_profile(kind: int, value: bytes) -> Mutation:
        def apply(m: Any) -> None:
            m.keys.append(_key(kind, value))
            m.linkage_profile = ""
        return Mutation(f"a fuzzy token of kind {kind} without linkage_profile", apply)

    return [
        put("linkage_profile", st.one_of(
            invalid(_inputs.profile_ref, st.sampled_from(
                ["nl-household", "nl-household@v0", "nl-household@V1", "@v1", "NL@v1",
                 "nl-household@v1 ", "nl-household@v1234567"])).filter(bool),
            st.just("no-such-profile@v1"))),
        st.builds(fuzzy_without_profile, st.sampled_from(sorted(_inputs.FUZZY_KINDS)),
                  st.binary(min_size=32, max_size=32)),
    ]


def _consent_base(w: World) -> signal_pb2.RecordConsentRequest:
    return signal_pb2.RecordConsentRequest(
        consent_id=str(uuid.uuid4()), subject_keys=[_key(1, uuid.uuid4().bytes * 2)],
        covenant_id="test-covenant", purposes=["care_coordination"],
        evidence_reference="form-1",
        valid_until=rpc.to_timestamp(w.now + timedelta(days=30)))


def _consent_invalid(w: World) -> st.SearchStrategy[Mutation]:
    now = w.now
    until = _seconds(now + timedelta(days=30))  # the base's valid_until
    longest = timedelta(days=5 * 366 + 2)  # beyond the hub's maximum consent period
    far = _seconds(datetime(2201, 1, 1, tzinfo=UTC))
    codes = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
    return st.one_of(
        put("consent_id", bad_uuid()),
        put("subject_keys", bad_keys(_inputs.MAX_CONSENT_KEYS, {int(crypto.KeyKind.PERSON)})),
        put("covenant_id", st.one_of(bad_slug(), st.just("no-such-covenant"))),
        put("purposes", st.one_of(
            st.just([]), st.lists(codes, min_size=_inputs.MAX_PURPOSES + 1,
                                  max_size=_inputs.MAX_PURPOSES + 4, unique=True),
            st.builds(lambda p: ["care_coordination", p], invalid(lambda v: vocab.code(v, "f"))),
            st.just(["care_coordination", "care_coordination"]), st.just(["marketing"]))),
        put("evidence_reference", invalid(lambda v: vocab.reference(v, "f"),
                                          st.sampled_from(["", "-form", "form 1"]), limit=128)),
        put("valid_until", st.one_of(
            st.none(), bad_timestamps(), timestamps(hi=_seconds(now - timedelta(minutes=1))),
            timestamps(lo=_seconds(now + longest)))),
        put("valid_from", st.one_of(
            bad_timestamps(), timestamps(lo=until + 1),
            timestamps(hi=_seconds(now - longest)))),
        # Both far in the future, in order.
        st.builds(lambda start, length: (start, start + length),
                  st.integers(far, MAX_SECONDS - 86_400), st.integers(1, 86_400)).map(
            lambda period: Mutation(
                f"valid_from..valid_until={period}",
                lambda m: (m.valid_from.FromSeconds(period[0]),
                           m.valid_until.FromSeconds(period[1])))),
    )


def _uuid_case(caller: rpc.Caller, request: Callable[[str], Any], path: str,
               real: Callable[[World], str]) -> Case:
    """An RPC that takes the id of an existing object: the base names a real one."""
    return Case(caller, lambda w: request(real(w)),
                lambda w: put(path, bad_uuid(real(w))))


def _alert_invalid(w: World) -> st.SearchStrategy[Mutation]:
    return put("alert_id", bad_uuid(w.alert_id))


def _list_alerts(w: World) -> st.SearchStrategy[Mutation]:
    states = set(coordinator_pb2.AlertState.values())
    return st.one_of(
        put("states", st.builds(lambda ok, bad: [*ok, bad],
                                st.lists(st.sampled_from(sorted(states - {0}))),
                                bad_enum(states - {0}))),
        put("page_size", st.integers(501, 2**32 - 1)),
        put("page_token", page_tokens()),
        put("alert_id_prefix", st.one_of(
            bad_uuid(w.alert_id), st.integers(1, 7).map(lambda n: w.alert_id[:n]),
        ).filter(lambda v: v != "" and _refused(lambda x: vocab.uuid_prefix(x, "f"), v))),
    )


def _list_alerts_valid(w: World) -> st.SearchStrategy[Mutation]:
    return st.one_of(put("escalated", st.booleans()), put("page_size", st.integers(0, 500)),
                     put("states", st.lists(st.sampled_from([1, 2, 3, 4]))),
                     put("alert_id_prefix", st.builds(lambda n: w.alert_id[:n],
                                                      st.integers(8, 36))))


def _query_events(w: World) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        put("subject_ref", bad_text(64, required=False)),
        put("organisation_id", bad_slug(optional=True)),
        put("actor_user_id", bad_text(128, required=False)),
        put("event_type", bad_text(64, required=False)),
        put("action", st.text(min_size=1, max_size=20).filter(
            lambda v: v not in _audit.ACTIONS)),
        put("outcome", st.text(min_size=1, max_size=20).filter(
            lambda v: v not in _audit.OUTCOMES)),
        put("since", bad_timestamps()),
        put("until", bad_timestamps()),
        put("page_size", st.integers(1001, 2**32 - 1)),
        put("page_token", st.one_of(
            st.text(min_size=1, max_size=30), st.from_regex(r"[0-9]{19,30}", fullmatch=True),
            st.sampled_from(["-1", "+1", " 1", "1 ", "\u0661\u0662", "\u00b2", "0x10"])).filter(
            lambda v: not (v.isascii() and v.isdigit() and len(v) < 19))),
    )


def _query_events_valid(w: World) -> st.SearchStrategy[Mutation]:
    return st.one_of(
        put("newest_first", st.booleans()), put("with_proofs", st.booleans()),
        put("since", timestamps()), put("until", timestamps()),
        put("page_size", st.integers(0, 1000)),
        put("page_token", st.from_regex(r"[0-9]{1,18}", fullmatch=True)),
        put("event_type", st.sampled_from(["signal.submit", "alert.open", "audit.query"])),
        put("action", st.sampled_from(_audit.ACTIONS)),
        put("outcome", st.sampled_from(_audit.OUTCOMES)),
        put("organisation_id", st.sampled_from(["org-a", "gemeente", "org-zz"])),
    )


def _sizes(*paths: str) -> Callable[[World], st.SearchStrategy[Mutation]]:
    sizes = st.one_of(st.integers(0, 64), st.integers(2**63 - 4, 2**64 - 1),
                      st.integers(0, 2**64 - 1))
    return lambda _: st.one_of(*(put(p, sizes) for p in paths))


def _report(w: World) -> st.SearchStrategy[Mutation]:
    moments = st.one_of(st.none(), bad_timestamps(), timestamps(), months())
    return st.one_of(put("since", moments), put("until", moments))


def _report_base(w: World) -> audit_pb2.GetReportRequest:
    first = w.now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return audit_pb2.GetReportRequest(
        since=rpc.to_timestamp(first.replace(year=first.year - 1)),
        until=rpc.to_timestamp(first))


def _toml_str(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join([*out, '"'])


def _toml(top: dict[str, str], tables: dict[str, dict[str, str]]) -> str:
    lines = [f"{k} = {v}" for k, v in top.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {v}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def _covenant_parts() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    today = datetime.now(UTC).date()
    return ({"id": '"second-covenant"', "name": '"Second covenant"',
             "legal_basis": '"AVG art. 6(1)(e)"',
             "valid_from": str(today.replace(year=today.year - 1, day=1)),
             "valid_until": str(today.replace(year=today.year + 2, day=1)),
             "coordinator": '"coord-a"', "parties": '["org-a", "org-b"]',
             "purposes": '["care_coordination"]', "regions": '["GM0014"]'},
            {"categories": {"youth_care": '"covenant"', "housing": '"consent"'}})


def _covenants(w: World) -> st.SearchStrategy[Mutation]:
    """Covenant files the hub refuses, each broken in one way."""
    def top(key: str, values: st.SearchStrategy[str | None]) -> st.SearchStrategy[str]:
        def text(value: str | None) -> str:
            head, tables = _covenant_parts()
            if value is None:
                del head[key]
            else:
                head[key] = value
            return _toml(head, tables)
        return values.map(text)

    def table(name: str, values: st.SearchStrategy[dict[str, str]]) -> st.SearchStrategy[str]:
        def text(value: dict[str, str]) -> str:
            head, tables = _covenant_parts()
            tables[name] = value
            return _toml(head, tables)
        return values.map(text)

    base = _toml(*_covenant_parts())
    year = datetime.now(UTC).year
    slug_list = bad_slug().map(lambda v: f'["org-a", {_toml_str(v)}]')
    texts = st.one_of(
        st.sampled_from(["", "  \n", "\x00", "[categories"]),
        st.just(base + "\n# " + "x" * (64 * 1024)),
        st.sampled_from(['\nname = "unterminated', "\n[categories", "\n= 1", '\nid = "again"',
                         "\n[[categories]]", "\nkey = \n"]).map(lambda tail: base + tail),
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(
            lambda k: k not in COVENANT_KEYS).map(lambda k: f"{k} = 1\n{base}"),
        top("id", st.one_of(bad_slug().map(_toml_str), st.sampled_from(["1", "true", "[]"]))),
        top("name", bad_text(200).map(_toml_str)),
        top("legal_basis", bad_text(1000).map(_toml_str)),
        top("valid_until", st.sampled_from([f"{year - 2}-01-01", "2201-01-01", '"2030-01-01"',
                                            "20300101", "12:00:00"])),
        top("valid_from", st.sampled_from(["1999-12-31", "2201-01-01", '"2026-01-01"',
                                           "2026-01-01T00:00:00"])),
        top("parties", st.one_of(slug_list, st.sampled_from(
            ['["org-a"]', '["org-a", "org-a"]', '["org-a", "org-zz"]', "[]", '"org-a"',
             "[1, 2]"]))),
        top("purposes", st.one_of(  # codes: "org_a" is a bad slug but a good purpose
            bad_slug().filter(lambda v: _refused(lambda x: vocab.code(x, "f"), v))
            .map(lambda v: f"[{_toml_str(v)}]"), st.sampled_from(["[]", '"x"']))),
        top("regions", st.one_of(
            invalid(vocab.region).map(lambda v: f"[{_toml_str(v)}]"),
            st.sampled_from(["[]", '["GM0014", "GM0014"]']))),
        top("coordinator", st.one_of(bad_slug().map(_toml_str),
                                     st.sampled_from(['"coord-zz"', "1", None]))),
        top("match_notices", st.sampled_from(['["debt"]', '["youth_care", "youth_care"]', "[]"])),
        top("linkage_profile", st.sampled_from(["1", '"Not A Slug"', '""'])),
        top("article", st.sampled_from(["1", '"' + "a" * 101 + '"', '"art.\\u0000"'])),
        table("categories", st.one_of(
            st.just({}), st.just({"gossip": '"covenant"'}),
            st.just({"youth_care": '"maybe"'}), st.just({"youth_care": "1"}))),
        table("escalation", st.one_of(
            st.builds(lambda d: {"reminder_days": d}, st.sampled_from(
                ["0", "366", "true", '"5"', "-1", "5.5", "99999999999999999"])),
            st.just({"reminder_days": "5", "escalation_days": "5"}),
            st.just({"contact": '"coord-zz"'}),
            st.just({"unknown": "1"}))),
        table("articles", st.just({"housing": '"art. 5"'})),  # a consent category
        table("coordinators", st.just({"GM0014": '"coord-a"'})),  # and coordinator: both
    )
    # An administrator's own covenant file is no personal data: its errors may quote it.
    return put("toml", texts, personal=False)


def _profile_parts() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    return ({"id": '"second-profile"', "name": '"Second profile"'},
            {"fuzzy": {"seed": '"second-profile"', "given_bands": "8", "surname_bands": "8",
                       "rows": "1"},
             "score": {"scheme": "3", "threshold": "9.0", "birth_exact": "6.0"}})


def _profile(**tables: dict[str, str]) -> str:
    """The base profile with some keys of its tables changed."""
    head, parts = _profile_parts()
    for name, changes in tables.items():
        parts[name] = {**parts[name], **changes}
    return _toml(head, parts)


def _profiles(w: World) -> st.SearchStrategy[Mutation]:
    """Linkage profiles the hub refuses, each broken in one way."""
    def top(key: str, values: st.SearchStrategy[str | None]) -> st.SearchStrategy[str]:
        def text(value: str | None) -> str:
            head, tables = _profile_parts()
            if value is None:
                del head[key]
            else:
                head[key] = value
            return _toml(head, tables)
        return values.map(text)

    base = _toml(*_profile_parts())
    numbers = ["0", "17", "-1", "true", '"8"', "1.5", "nan"]
    texts = st.one_of(
        st.sampled_from(["", "  \n", "\x00", "[fuzzy", "= 1"]),
        st.just(base + "\n# " + "x" * (64 * 1024)),
        st.sampled_from(['\nname = "unterminated', '\nid = "again"', "\n[fuzzy]"]).map(
            lambda tail: base + tail),
        st.from_regex(r"[a-z_]{1,12}", fullmatch=True).filter(
            lambda k: k not in {"id", "name", "fuzzy", "score"}).map(lambda k: f"{k} = 1\n{base}"),
        top("id", st.one_of(bad_slug().map(_toml_str), st.sampled_from(["1", "[]", None]))),
        top("name", st.one_of(bad_text(200).map(_toml_str), st.sampled_from(["1", None]))),
        top("fuzzy", st.sampled_from(["1", '"x"'])),
        st.sampled_from([{"unknown": "1"}, {"seed": '""'}, {"seed": '"' + "s" * 65 + '"'},
                         {"seed": "1"}, {"rows": "0"}, {"rows": "5"}]).map(
            lambda t: _profile(fuzzy=t)),
        st.builds(lambda key, v: _profile(fuzzy={key: v}),
                  st.sampled_from(["given_bands", "surname_bands"]), st.sampled_from(numbers)),
        st.builds(lambda key, v: _profile(score={key: v}),
                  st.sampled_from(["threshold", "birth_exact", "address"]),
                  st.sampled_from(["nan", "-nan", "inf", "-inf", "101", "-100.5", '"9"',
                                   "true", "[]"])),
        st.just(_profile(score={"unknown": "1"})),
    )
    # An administrator's own profile is no personal data: its errors may quote it.
    return put("toml", texts, personal=False)


def _coordinator_base(w: World) -> admin_pb2.RegisterCoordinatorRequest:
    return admin_pb2.RegisterCoordinatorRequest(
        coordinator_id="coord-new", organisation_id="gemeente",
        contact=common_pb2.Contact(name="Coordinator New", phone="050 1111111"),
        public_key=crypto.EnvelopeKey.generate().public_key)


def _evaluate(w: World) -> st.SearchStrategy[Mutation]:
    pk = w.oprf_public_key
    elements = st.one_of(
        st.just([]),
        st.integers(crypto.MAX_BATCH + 1, crypto.MAX_BATCH + 4).map(lambda n: [pk] * n),
        st.builds(lambda n, bad, i: [pk] * i + [bad] + [pk] * (n - i),
                  st.integers(0, 3), st.one_of(
                      st.binary(max_size=80).filter(lambda b: len(b) != 32),
                      st.sampled_from(BAD_ELEMENTS)), st.integers(0, 3)),
    )
    key_ids = st.one_of(
        st.text(min_size=1, max_size=40).filter(lambda v: not re.fullmatch("[0-9a-f]{16}", v)),
        st.from_regex("[0-9a-f]{16}", fullmatch=True).filter(lambda v: v != w.key_id),
        st.just(w.key_id.upper()), st.just(w.key_id + "0"))
    return st.one_of(put("blinded_elements", elements), put("key_id", key_ids))


CASES: dict[str, Case] = {
    "/samenloop.v1.KeyService/GetPublicKey": Case(
        KEY_CLIENT, lambda _: keyservice_pb2.GetPublicKeyRequest(), reads=True,
        target="keyservice"),
    "/samenloop.v1.KeyService/Evaluate": Case(
        KEY_CLIENT, lambda w: keyservice_pb2.EvaluateRequest(
            blinded_elements=[w.oprf_public_key], key_id=w.key_id), _evaluate,
        target="keyservice"),
    "/samenloop.v1.SignalService/GetRecipients": Case(
        PARTNER_B, lambda _: signal_pb2.GetRecipientsRequest(), reads=True),
    "/samenloop.v1.SignalService/SubmitSignal": Case(PARTNER_B, _submit_base, _submit_invalid),
    "/samenloop.v1.SignalService/SubmitSignals": Case(PARTNER_B, _submit_base, _submit_invalid),
    "/samenloop.v1.SignalService/WithdrawSignal": Case(
        PARTNER_B, lambda w: signal_pb2.WithdrawSignalRequest(
            signal_id=w.signal_id, reason=signal_pb2.WITHDRAWAL_REASON_RISK_GONE),
        lambda w: st.one_of(put("signal_id", bad_uuid(w.signal_id)),
                            put("reason", bad_enum({1, 2})))),
    "/samenloop.v1.SignalService/RecordConsent": Case(PARTNER_A, _consent_base,
                                                      _consent_invalid),
    "/samenloop.v1.SignalService/RevokeConsent": _uuid_case(
        PARTNER_A, lambda i: signal_pb2.RevokeConsentRequest(consent_id=i), "consent_id",
        lambda w: w.consent_id),
    "/samenloop.v1.SignalService/ListTasks": Case(
        PARTNER_C, lambda _: signal_pb2.ListTasksRequest(), reads=True,
        harmless=lambda _: put("include_done", st.booleans())),
    "/samenloop.v1.SignalService/DismissTask": _uuid_case(
        PARTNER_D, lambda i: signal_pb2.DismissTaskRequest(task_id=i), "task_id",
        lambda w: w.task_id),
    "/samenloop.v1.CoordinatorService/ListAlerts": Case(
        COORDINATOR, lambda _: coordinator_pb2.ListAlertsRequest(), _list_alerts, reads=True,
        harmless=_list_alerts_valid),
    "/samenloop.v1.CoordinatorService/WatchAlerts": Case(
        COORDINATOR, lambda _: coordinator_pb2.WatchAlertsRequest(), reads=True,
        harmless=lambda _: st.one_of(
            put("after_cursor", st.one_of(st.integers(0, 2**64 - 1),
                                          st.integers(2**63 - 2, 2**64 - 1))),
            put("from_now", st.booleans()))),
    "/samenloop.v1.CoordinatorService/OpenAlert": _uuid_case(
        COORDINATOR, lambda i: coordinator_pb2.OpenAlertRequest(alert_id=i), "alert_id",
        lambda w: w.alert_id),
    "/samenloop.v1.CoordinatorService/AcknowledgeAlert": _uuid_case(
        COORDINATOR, lambda i: coordinator_pb2.AcknowledgeAlertRequest(alert_id=i), "alert_id",
        lambda w: w.alert_id),
    "/samenloop.v1.CoordinatorService/RecordContact": _uuid_case(
        COORDINATOR, lambda i: coordinator_pb2.RecordContactRequest(alert_id=i), "alert_id",
        lambda w: w.alert_id),
    "/samenloop.v1.CoordinatorService/CloseAlert": Case(
        COORDINATOR, lambda w: coordinator_pb2.CloseAlertRequest(
            alert_id=w.alert_id, reason=coordinator_pb2.ALERT_CLOSE_REASON_RESOLVED),
        lambda w: st.one_of(_alert_invalid(w), put("reason", bad_enum({1, 2})))),
    "/samenloop.v1.AuditService/QueryEvents": Case(
        OFFICER, lambda _: audit_pb2.QueryEventsRequest(), _query_events, reads=True,
        harmless=_query_events_valid),
    "/samenloop.v1.AuditService/GetCheckpoint": Case(
        OFFICER, lambda _: audit_pb2.GetCheckpointRequest(), reads=True),
    "/samenloop.v1.AuditService/Verify": Case(
        OFFICER, lambda _: audit_pb2.VerifyRequest(), reads=True),
    "/samenloop.v1.AuditService/GetInclusionProof": Case(
        OFFICER, lambda _: audit_pb2.GetInclusionProofRequest(index=0, tree_size=1),
        reads=True, harmless=_sizes("index", "tree_size")),
    "/samenloop.v1.AuditService/GetConsistencyProof": Case(
        OFFICER, lambda _: audit_pb2.GetConsistencyProofRequest(from_size=1, to_size=1),
        reads=True, harmless=_sizes("from_size", "to_size")),
    "/samenloop.v1.AuditService/SubjectAccess": Case(
        OFFICER, lambda _: audit_pb2.SubjectAccessRequest(keys=[_key(1, bytes(32))]),
        lambda _: put("keys", bad_keys(_inputs.MAX_CONSENT_KEYS, {int(crypto.KeyKind.PERSON)})),
        reads=True,
        harmless=lambda _: put("keys", st.lists(
            st.builds(_key, st.just(1), st.binary(min_size=32, max_size=32)),
            min_size=1, max_size=_inputs.MAX_CONSENT_KEYS, unique_by=lambda k: k.value))),
    "/samenloop.v1.AuditService/GetReport": Case(
        OFFICER, _report_base, reads=True, harmless=_report),
    "/samenloop.v1.AuditService/GetProcessingRegister": Case(
        OFFICER, lambda _: audit_pb2.GetProcessingRegisterRequest(), reads=True),
    "/samenloop.v1.AdminService/RegisterOrganisation": Case(
        ADMINISTRATOR, lambda _: admin_pb2.RegisterOrganisationRequest(
            organisation_id="org-new", name="New organisation"),
        lambda _: st.one_of(put("organisation_id", bad_slug()), put("name", bad_text(200)))),
    "/samenloop.v1.AdminService/RegisterCoordinator": Case(
        ADMINISTRATOR, _coordinator_base, lambda _: st.one_of(
            put("coordinator_id", bad_slug()),
            put("organisation_id", st.one_of(bad_slug(), st.just("org-zz"))),
            put("contact", bad_contacts()),
            put("public_key", st.one_of(st.binary(max_size=80).filter(lambda b: len(b) != 32),
                                        st.sampled_from(LOW_ORDER_KEYS))))),
    "/samenloop.v1.AdminService/RegisterCovenant": Case(
        ADMINISTRATOR, lambda _: admin_pb2.RegisterCovenantRequest(
            toml=_toml(*_covenant_parts())), _covenants),
    "/samenloop.v1.AdminService/ListOrganisations": Case(
        ADMINISTRATOR, lambda _: admin_pb2.ListOrganisationsRequest(), reads=True),
    "/samenloop.v1.AdminService/ListCoordinators": Case(
        ADMINISTRATOR, lambda _: admin_pb2.ListCoordinatorsRequest(), reads=True),
    "/samenloop.v1.AdminService/ListCovenants": Case(
        ADMINISTRATOR, lambda _: admin_pb2.ListCovenantsRequest(), reads=True),
}


if hasattr(admin_pb2, "RegisterLinkageProfileRequest"):  # linkage profiles (docs/linkage.md)
    CASES.update({
        "/samenloop.v1.SignalService/GetLinkageProfile": Case(
            PARTNER_B, lambda _: signal_pb2.GetLinkageProfileRequest(), reads=True),
        "/samenloop.v1.SignalService/ExcludeAddresses": Case(
            MUNICIPALITY, lambda _: signal_pb2.ExcludeAddressesRequest(
                keys=[_key(int(crypto.KeyKind.ADDRESS), uuid.uuid4().bytes * 2)]),
            lambda _: put("keys", bad_keys(_inputs.MAX_EXCLUDED,
                                           {int(crypto.KeyKind.ADDRESS)}))),
        "/samenloop.v1.AdminService/RegisterLinkageProfile": Case(
            ADMINISTRATOR, lambda _: admin_pb2.RegisterLinkageProfileRequest(
                toml=_toml(*_profile_parts())), _profiles),
        "/samenloop.v1.AdminService/ListLinkageProfiles": Case(
            ADMINISTRATOR, lambda _: admin_pb2.ListLinkageProfilesRequest(), reads=True),
    })


# -- calling and checking ---------------------------------------------------------------

# A refusal's status: never OK for an invalid request, never INTERNAL or UNKNOWN (a check
# is missing), and nothing that says the server is in trouble.
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.ALREADY_EXISTS,
            grpc.StatusCode.RESOURCE_EXHAUSTED}
# What gRPC itself answers to bytes that are no protobuf message, before any handler runs.
UNDECODABLE = "Exception deserializing request!"
WATCH_SECONDS = 0.3


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    response: Any = None


def _call(call: Callable[[], Any]) -> Outcome:
    try:
        return Outcome(grpc.StatusCode.OK, "", call())
    except grpc.RpcError as exc:
        failed = cast(grpc.Call, exc)
        return Outcome(failed.code(), failed.details() or "")


def _watch(stream: Any) -> Outcome:
    """The first event of a watch, or OK when none arrives before the deadline."""
    try:
        first = next(stream, None)
    except grpc.RpcError as exc:
        failed = cast(grpc.Call, exc)
        if failed.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            return Outcome(grpc.StatusCode.OK, "")
        return Outcome(failed.code(), failed.details() or "")
    stream.cancel()
    return Outcome(grpc.StatusCode.OK, "", first)


def invoke(w: World, name: str, request: Any, *, watch: float = WATCH_SECONDS) -> Outcome:
    method, case = METHODS[name], CASES[name]
    call = w.stub(method, case)
    if method.descriptor.client_streaming:
        return _call(lambda: call(iter(request), timeout=30))
    if method.descriptor.server_streaming:
        return _watch(call(request, timeout=watch))
    return _call(lambda: call(request, timeout=30))


def assert_refused(outcome: Outcome, secrets: tuple[str, ...], what: str) -> None:
    assert outcome.code in REFUSALS, f"{what}: {outcome.code.name} {outcome.details!r}"
    assert outcome.details.strip(), f"{what}: {outcome.code.name} without a message"
    echoed = [s for s in secrets if s in outcome.details]
    assert not echoed, f"{what}: the message echoes {echoed}: {outcome.details!r}"


def database_state(w: World) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Row counts and contents of every table but the access log's."""
    engine = w.services.engine
    counts = {t: n for t, n in row_counts(engine).items() if not t.startswith("audit")}
    with engine.connect() as conn:
        rows = {t.name: sorted(repr(tuple(r)) for r in conn.execute(select(t)))
                for t in Base.metadata.sorted_tables if not t.name.startswith("audit")}
    return counts, rows


def key_usage(w: World) -> dict[str, int]:
    return dict(getattr(w.services.keyservice.service, "usage", {}))


def assert_alive(w: World) -> None:
    """Both servers still answer a valid call."""
    stub = w.stub(METHODS["/samenloop.v1.AdminService/ListOrganisations"],
                  CASES["/samenloop.v1.AdminService/ListOrganisations"])
    assert stub(admin_pb2.ListOrganisationsRequest(), timeout=10).organisations
    key = w.stub(METHODS["/samenloop.v1.KeyService/GetPublicKey"],
                 CASES["/samenloop.v1.KeyService/GetPublicKey"])
    assert key(keyservice_pb2.GetPublicKeyRequest(), timeout=10).public_key


def _mutated(base: Any, mutations: list[Mutation]) -> tuple[Any, tuple[str, ...]]:
    for mutation in mutations:
        mutation.apply(base)
    return base, tuple(sorted({s for m in mutations for s in m.secrets}))


def _draw_mutations(data: st.DataObject, case: Case, w: World) -> list[Mutation]:
    extra = unknown_fields()
    if case.harmless is not None:
        extra = st.one_of(extra, case.harmless(w))
    if not case.reads:
        assert case.invalid is not None
        return [*data.draw(st.lists(case.invalid(w), min_size=1, max_size=3), "invalid"),
                *data.draw(st.lists(unknown_fields(), max_size=1), "unknown fields")]
    options = extra if case.invalid is None else st.one_of(case.invalid(w), extra)
    return data.draw(st.lists(options, min_size=1, max_size=3), "mutations")


FUZZ = settings(max_examples=8, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_every_rpc_has_a_generator() -> None:
    assert set(CASES) == set(METHODS), (
        f"RPCs without a generator: {sorted(set(METHODS) - set(CASES))}; "
        f"generators without an RPC: {sorted(set(CASES) - set(METHODS))}")
    assert {m.service for m in METHODS.values()} >= {
        "KeyService", "SignalService", "CoordinatorService", "AuditService", "AdminService"}
    for name, case in CASES.items():
        assert case.reads or case.invalid is not None, name


def test_the_base_requests_are_valid(world: World) -> None:
    """Each base request succeeds, so the mutations are what the server refuses."""
    last = ("/samenloop.v1.CoordinatorService/CloseAlert",  # after the other alert steps
            "/samenloop.v1.SignalService/WithdrawSignal")
    for name in [*(n for n in CASES if n not in last), *last]:
        request = CASES[name].base(world)
        if METHODS[name].descriptor.client_streaming:
            outcome = invoke(world, name, [request, CASES[name].base(world)])
            assert (outcome.response.accepted, list(outcome.response.rejected)) == (2, []), name
            continue
        outcome = invoke(world, name, request, watch=10)
        assert outcome.code is grpc.StatusCode.OK, (name, outcome)
        if METHODS[name].descriptor.server_streaming:
            assert outcome.response is not None, name


@pytest.mark.parametrize("name", sorted(CASES))
@FUZZ
@given(data=st.data())
def test_malformed_requests_are_refused_and_change_nothing(
        name: str, world: World, data: st.DataObject) -> None:
    case = CASES[name]
    before, usage = database_state(world), key_usage(world)
    if METHODS[name].descriptor.client_streaming:
        items = [_mutated(case.base(world), _draw_mutations(data, case, world))
                 for _ in range(data.draw(st.integers(1, 3), "items"))]
        outcome = invoke(world, name, [request for request, _ in items])
        assert outcome.code is grpc.StatusCode.OK, outcome
        response = outcome.response
        assert (response.accepted, response.duplicates) == (0, 0), response
        assert [e.index for e in response.rejected] == list(range(len(items)))
        for error, (request, secrets) in zip(response.rejected, items, strict=True):
            code = getattr(grpc.StatusCode, error.code)
            assert_refused(Outcome(code, error.message), secrets, f"item {error.index}")
            assert error.signal_id in ("", request.signal_id)
            assert error.signal_id or _refused(lambda v: vocab.uuid_str(v, "f"),
                                               request.signal_id)
    else:
        request, secrets = _mutated(case.base(world), _draw_mutations(data, case, world))
        outcome = invoke(world, name, request)
        if outcome.code is not grpc.StatusCode.OK or not case.reads:
            assert_refused(outcome, secrets, name)
    assert_alive(world)
    assert key_usage(world) == usage
    after = database_state(world)
    assert after[0] == before[0], "a refused request changed the row counts"
    assert after[1] == before[1], "a refused request changed the database"


def _forged_token(moment: str) -> str:
    return base64.urlsafe_b64encode(f"{moment}|{uuid.uuid4()}".encode()).decode()


def _at(year: int, month: int = 1, day: int = 1) -> Timestamp:
    return Timestamp(seconds=_seconds(datetime(year, month, day, tzinfo=UTC)))


# Boundary values the generators reach only now and then, each on its own.
EDGES: list[tuple[str, str, dict[str, Any]]] = [
    ("WatchAlerts", "cursor-2^64-1", {"after_cursor": 2**64 - 1}),
    ("WatchAlerts", "cursor-2^63", {"after_cursor": 2**63}),
    ("ListAlerts", "token-year-1-east",
     {"page_token": _forged_token("0001-01-01T00:00:00+05:00")}),
    ("ListAlerts", "token-year-9999-west",
     {"page_token": _forged_token("9999-12-31T23:00:00-05:00")}),
    ("ListAlerts", "token-naive", {"page_token": _forged_token("2026-01-01T00:00:00")}),
    ("RecordConsent", "valid-in-9999",
     {"valid_from": _at(9999, 12, 30), "valid_until": _at(9999, 12, 31)}),
    ("RecordConsent", "valid-in-5000", {"valid_from": _at(5000), "valid_until": _at(5000, 2)}),
    ("RecordConsent", "valid-from-year-1", {"valid_from": Timestamp(seconds=MIN_SECONDS)}),
    ("SubmitSignal", "observed-year-1", {"observed_at": Timestamp(seconds=MIN_SECONDS)}),
    ("SubmitSignal", "expires-9999",
     {"expires_at": Timestamp(seconds=MAX_SECONDS, nanos=999_999_999)}),
    ("GetInclusionProof", "sizes-2^64-1", {"index": 2**64 - 1, "tree_size": 2**64 - 1}),
    ("GetConsistencyProof", "sizes-2^64-1", {"from_size": 2**64 - 1, "to_size": 2**64 - 1}),
    ("GetReport", "year-1-to-9999", {"since": _at(1), "until": _at(9999, 12)}),
    ("QueryEvents", "year-1-to-9999",
     {"since": Timestamp(seconds=MIN_SECONDS), "until": Timestamp(seconds=MAX_SECONDS)}),
    ("Evaluate", "one-too-many",
     {"blinded_elements": [BAD_ELEMENTS[1]] * (crypto.MAX_BATCH + 1)}),
]
if hasattr(admin_pb2, "RegisterLinkageProfileRequest"):
    EDGES.append(("RegisterLinkageProfile", "threshold-nan",
                  {"toml": _profile(score={"threshold": "nan"})}))


def test_boundary_values_are_refused_or_answered_and_change_nothing(world: World) -> None:
    problems = []
    for short, label, fields in EDGES:
        (name,) = [n for n in METHODS if n.endswith("/" + short)]
        case = CASES[name]
        before, usage = database_state(world), key_usage(world)
        request = case.base(world)
        for path, value in fields.items():
            _assign(request, path, value)
        outcome = invoke(world, name, request)
        try:
            if outcome.code is not grpc.StatusCode.OK or not case.reads:
                assert_refused(outcome, (), f"{short} with {label}")
            assert key_usage(world) == usage, f"{short} with {label} used the key"
            assert database_state(world) == before, f"{short} with {label} changed the database"
        except AssertionError as exc:
            problems.append(str(exc).splitlines()[0])
        assert_alive(world)
    assert not problems, "\n".join(problems)


def _undecodable(method: Method, garbage: bytes) -> bool:
    try:
        method.request_class().FromString(garbage)
    except DecodeError:
        return True
    return False


GARBAGE = st.one_of(
    st.binary(max_size=40).map(lambda b: b"\x00" + b),  # field number 0
    st.binary(max_size=40).map(lambda b: b"\x0f" + b),  # wire type 7
    st.binary(max_size=40).map(lambda b: b + b"\x80"),  # a truncated varint
    st.binary(min_size=1, max_size=40).map(  # a length beyond the end
        lambda b: b"\x0a" + _varint(len(b) + 1) + b),
    st.binary(max_size=40).map(lambda b: b"\x0a" + _varint(len(b) + 2) + b"\xff\xfe" + b),
    st.sampled_from([b"\xff" * 11, b"\x0b", b"\x0c", b"\x0a\x02\xc3\x28"]),
)


def _send_garbage(world: World, name: str, garbage: bytes) -> Outcome:
    method, case = METHODS[name], CASES[name]
    channel = world.channel(case.target, case.caller)
    if method.descriptor.client_streaming:
        return _call(lambda: channel.stream_unary(name)(iter([garbage]), timeout=30))
    if method.descriptor.server_streaming:
        return _watch(channel.unary_stream(name)(garbage, timeout=10))
    return _call(lambda: channel.unary_unary(name)(garbage, timeout=30))


def _assert_undecodable_refused(name: str, outcome: Outcome) -> None:
    assert outcome.code is grpc.StatusCode.INVALID_ARGUMENT or (
        outcome.code is grpc.StatusCode.INTERNAL and outcome.details == UNDECODABLE), (
        name, outcome)


@FUZZ
@given(garbage=GARBAGE)
def test_bytes_that_are_no_message_are_refused_by_every_method(
        world: World, garbage: bytes) -> None:
    # Streams of them: see test_bytes_that_are_no_message_on_a_client_stream. Bytes that
    # happen to be a message after all are the typed tests' business.
    names = [name for name, method in METHODS.items()
             if not method.descriptor.client_streaming and _undecodable(method, garbage)]
    assume(names)
    before, usage = database_state(world), key_usage(world)
    for name in names:
        _assert_undecodable_refused(name, _send_garbage(world, name, garbage))
    assert_alive(world)
    assert key_usage(world) == usage
    assert database_state(world) == before
