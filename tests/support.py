"""Helpers shared by the tests: a settable clock, registries, signal builders."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select

from exchange import crypto
from hub import _audit, _inputs
from hub._core import Hub
from hub._models import Base

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
REGION = "GM0014"
COVENANT = """\
id = "test-covenant"
name = "Test covenant"
legal_basis = "AVG art. 6(1)(e)"
valid_from = 2026-01-01
valid_until = 2026-12-31
coordinator = "coord-a"
parties = ["org-a", "org-b", "org-c"]
purposes = ["care_coordination"]
regions = ["GM0014"]

[categories]
youth_care = "covenant"
housing = "covenant"
debt = "covenant"
mental_health = "consent"
"""


def current_covenant() -> str:
    """COVENANT, in force from a year ago to two years ahead: for tests on the real clock."""
    today = datetime.now(UTC).date()
    return (COVENANT.replace("valid_from = 2026-01-01",
                             f"valid_from = {today.replace(year=today.year - 1, day=1)}")
                    .replace("valid_until = 2026-12-31",
                             f"valid_until = {today.replace(year=today.year + 2, day=1)}"))


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def access(org: str, role: str = "partner", user: str = "tester") -> _audit.Access:
    return _audit.Access(org, user, role, str(uuid.uuid4()), "ipv4:127.0.0.1:1")


ADMIN = access("gemeente", "administrator", "admin")


def pseudonym(label: str) -> bytes:
    """A stand-in pseudonym for tests of the hub, which only compares them."""
    return hashlib.sha256(label.encode()).digest()


@dataclass
class Registry:
    hub: Hub
    keys: dict[str, crypto.EnvelopeKey] = field(default_factory=dict)

    def coordinator(self, coordinator_id: str, org: str = "gemeente") -> crypto.EnvelopeKey:
        key = crypto.EnvelopeKey.generate()
        self.hub.register_coordinator(ADMIN, coordinator_id, org,
                                      _inputs.Contact("Coordinator", "050 1234567", ""),
                                      key.public_key)
        self.keys[coordinator_id] = key
        return key


def setup_registry(hub: Hub, covenant: str | None = COVENANT,
                   orgs: tuple[str, ...] = ("org-a", "org-b", "org-c", "org-d")) -> Registry:
    reg = Registry(hub)
    hub.register_organisation(ADMIN, "gemeente", "Gemeente")
    for org in orgs:
        hub.register_organisation(ADMIN, org, org.upper())
    reg.coordinator("coord-a")
    if covenant:
        hub.register_covenant(ADMIN, covenant)
    return reg


def signal(hub: Hub, org: str, *, person: str | None = None, address: str | None = None,
           category: str = "youth_care", region: str = REGION,
           signal_id: str | None = None) -> _inputs.SignalInput:
    """A valid signal input with envelopes for every current recipient of ``org``."""
    keys = set()
    if person:
        keys.add((int(crypto.KeyKind.PERSON), pseudonym("person:" + person)))
    if address:
        keys.add((int(crypto.KeyKind.ADDRESS), pseudonym("address:" + address)))
    signal_id = signal_id or str(uuid.uuid4())
    envelopes = tuple(
        _inputs.EnvelopeInput(r.coordinator_id, r.key_fingerprint, crypto.ENVELOPE_SCHEME,
                              crypto.seal(b'{"test": true}', r.public_key, signal_id.encode()))
        for r in hub.recipients(access(org))
    )
    return _inputs.SignalInput(
        signal_id=signal_id, keys=frozenset(keys), category=category, region=region,
        professional=_inputs.Contact("Prof " + org, "050 7654321", ""), observed_at=None,
        expires_at=None, envelopes=envelopes,
        content_sha256=hashlib.sha256(signal_id.encode() + category.encode()).digest(),
    )


def consent_input(*, person: str, days: int = 30, **changes: object) -> _inputs.ConsentInput:
    """A valid consent of a person, under the test covenant, for ``days`` from T0."""
    value = _inputs.ConsentInput(
        consent_id=str(uuid.uuid4()),
        subject_keys=frozenset({(1, pseudonym("person:" + person))}),
        covenant_id="test-covenant", purposes=("care_coordination",),
        evidence_reference="form-1", valid_from=None,
        valid_until=T0 + timedelta(days=days), content_sha256=b"x" * 32)
    return dataclasses.replace(value, **changes)  # type: ignore[arg-type]


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows per table, to show that a rejected request changed nothing."""
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in Base.metadata.sorted_tables}
