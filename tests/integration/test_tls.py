"""Mutual TLS on real sockets: the caller's organisation and role come from its
certificate, and each way a certificate can be wrong is refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from agent import (
    Admin,
    AdminSettings,
    Agent,
    AgentSettings,
    Auditor,
    AuditSettings,
    CoordinatorDesk,
    CoordinatorSettings,
)
from agent._client import HubClient, KeyServiceClient
from exchange import crypto, rpc, tls
from exchange._pki import init_ca, issue, write_crl
from exchange.db import make_engine, session_factory
from exchange.errors import ConfigError, PermissionDenied, Unauthenticated, Unavailable
from exchange.v1 import admin_pb2, admin_pb2_grpc, signal_pb2
from hub import HubSettings, KeyServiceSettings, start_hub, start_keyservice
from hub._models import AuditEvent
from tests.integration.conftest import person, write_csv
from tests.support import current_covenant

CLIENTS = {  # certificate name: (organisation, role, user)
    "admin": ("gemeente", "administrator", "administrator"),
    "org-a": ("org-a", "partner", "agent"),
    "org-b": ("org-b", "partner", "agent"),
    "coord-a": ("gemeente", "coordinator", "coord-a"),
    "officer": ("gemeente", "privacy_officer", "privacy-officer"),
}


@dataclass
class Pki:
    dir: Path

    def client(self, name: str) -> tls.ClientTls:
        return tls.ClientTls(ca=self.dir / "ca.pem", cert=self.dir / f"{name}.pem",
                             key=self.dir / f"{name}.key")

    def settings(self, name: str) -> dict[str, Path]:
        c = self.client(name)
        return {"tls_ca": c.ca, "tls_cert": c.cert, "tls_key": c.key}


@dataclass
class Secured:
    pki: Pki
    hub_address: str
    keyservice_address: str
    database_url: str


@pytest.fixture
def secured(tmp_path: Path, database_url: str) -> Iterator[Secured]:
    pki = Pki(tmp_path / "pki")
    init_ca(pki.dir)
    issue(pki.dir, "server", hosts=["127.0.0.1", "localhost"])
    for name, (org, role, user) in CLIENTS.items():
        issue(pki.dir, name, organisation=org, role=role, user=user)
    server_tls = {"tls_cert": pki.dir / "server.pem", "tls_key": pki.dir / "server.key",
                  "tls_client_ca": pki.dir / "ca.pem", "tls_crl": pki.dir / "crl.pem"}
    keyservice = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0", **server_tls),
                                  key=crypto.OprfKey.generate())
    hub = start_hub(HubSettings(listen="127.0.0.1:0", database_url=database_url,
                                checkpoint_key=tmp_path / "cp.key", migrate=True, **server_tls))
    coord_key = crypto.EnvelopeKey.generate()
    coord_key.save(tmp_path / "coordinator.key")
    with Admin(AdminSettings(organisation="gemeente", hub=hub.address,
                             **pki.settings("admin"))) as admin:
        admin.organisation("gemeente", "Gemeente")
        for org in ("org-a", "org-b", "org-c"):
            admin.organisation(org, org.upper())
        admin.coordinator("coord-a", "gemeente", "Coordinator A", "050 0000000", "",
                          coord_key.public_key)
        (tmp_path / "covenant.toml").write_text(current_covenant())
        admin.covenant(tmp_path / "covenant.toml")
    yield Secured(pki, hub.address, keyservice.address, database_url)
    hub.stop(grace=1)
    keyservice.stop(grace=1)


def _agent(s: Secured, org: str, root: Path) -> Agent:
    return Agent(AgentSettings(organisation=org, hub=s.hub_address,
                               keyservice=s.keyservice_address,
                               state_database=f"sqlite:///{root / org}.db",
                               **s.pki.settings(org)))


def _list_organisations(s: Secured, client_tls: tls.ClientTls,
                        caller: rpc.Caller | None = None) -> int:
    """ListOrganisations as the certificate's holder (or ``caller`` for a certificate that
    names none)."""
    with HubClient(s.hub_address, caller or client_tls.caller(), client_tls) as hub:
        return len(hub.call(hub.admin.ListOrganisations,
                            admin_pb2.ListOrganisationsRequest(), timeout=10).organisations)


def test_every_role_works_over_mutual_tls(secured: Secured, tmp_path: Path) -> None:
    for org, rows in (("org-a", [person("A-1", "111222333")]),
                      ("org-b", [person("B-1", "111222333", category="housing")])):
        with _agent(secured, org, tmp_path) as agent:
            summary = agent.submit_file(write_csv(tmp_path / f"{org}.csv", rows))
            assert summary.submitted == 1
    with CoordinatorDesk(CoordinatorSettings(
            coordinator_id="coord-a", organisation="gemeente", hub=secured.hub_address,
            key_file=tmp_path / "coordinator.key", **secured.pki.settings("coord-a"))) as desk:
        (alert,) = desk.alerts()
        _, opened = desk.open(alert.alert_id, crypto.EnvelopeKey.load(
            tmp_path / "coordinator.key"))
        assert {o.organisation_id for o in opened} == {"org-a", "org-b"}
        assert all(o.identity is not None for o in opened)
    with Auditor(AuditSettings(organisation="gemeente", hub=secured.hub_address,
                               keyservice=secured.keyservice_address,
                               state_file=tmp_path / "audit.json",
                               **secured.pki.settings("officer"))) as auditor:
        assert auditor.verify().ok
    # the access log names the certificate's organisation, role and user
    engine = make_engine(secured.database_url)
    try:
        with session_factory(engine)() as s:
            actors = set(s.execute(select(AuditEvent.actor_org, AuditEvent.actor_role,
                                          AuditEvent.actor_user)).all())
    finally:
        engine.dispose()
    assert {("org-a", "partner", "agent"), ("gemeente", "coordinator", "coord-a"),
            ("gemeente", "administrator", "administrator")} <= actors


def test_headers_cannot_claim_another_identity_over_tls(secured: Secured) -> None:
    # org-a's certificate with headers claiming to be the municipality's administrator
    claim = rpc.Caller("gemeente", "administrator", "administrator")
    channel = rpc.channel(secured.hub_address, credentials=secured.pki.client("org-a")
                          .credentials())
    intercepted = grpc.intercept_channel(channel, rpc._IdentityInterceptor(claim))
    with pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.AdminServiceStub(intercepted).ListOrganisations(
            admin_pb2.ListOrganisationsRequest(), timeout=10)
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "partner" in (info.value.details() or "")
    channel.close()


def test_the_role_in_the_certificate_decides_what_may_be_called(secured: Secured) -> None:
    with pytest.raises(PermissionDenied, match="role partner"):
        _list_organisations(secured, secured.pki.client("org-a"))
    assert _list_organisations(secured, secured.pki.client("admin")) == 4
    officer = secured.pki.client("officer")
    with HubClient(secured.hub_address, officer.caller(), officer) as hub, pytest.raises(
            PermissionDenied, match="role privacy_officer"):
        hub.call(hub.signals.GetRecipients, signal_pb2.GetRecipientsRequest(), timeout=10)
    coordinator = secured.pki.client("coord-a")
    with KeyServiceClient(secured.keyservice_address, coordinator.caller(),
                          coordinator) as ks, pytest.raises(PermissionDenied):
        ks.public_key()


def test_a_call_without_a_client_certificate_is_refused(secured: Secured) -> None:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(secured.pki.dir / "ca.pem").read_bytes())
    channel = rpc.channel(secured.hub_address, credentials=credentials)
    with pytest.raises(grpc.RpcError) as info:
        admin_pb2_grpc.AdminServiceStub(channel).ListOrganisations(
            admin_pb2.ListOrganisationsRequest(), timeout=10)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE  # the handshake fails
    channel.close()


def test_a_certificate_of_an_unknown_ca_is_refused(secured: Secured, tmp_path: Path) -> None:
    other = tmp_path / "other-ca"
    init_ca(other, name="Someone else's CA")
    issue(other, "admin", organisation="gemeente", role="administrator", user="administrator")
    # it trusts the real servers, but its own certificate comes from an unknown CA
    rogue = tls.ClientTls(ca=secured.pki.dir / "ca.pem", cert=other / "admin.pem",
                          key=other / "admin.key")
    with pytest.raises(Unavailable):
        _list_organisations(secured, rogue)


def test_an_expired_certificate_is_refused(secured: Secured) -> None:
    issue(secured.pki.dir, "old-admin", organisation="gemeente", role="administrator",
          user="administrator", days=30,
          not_before=datetime.now(UTC) - timedelta(days=60))
    with pytest.raises(Unavailable):
        _list_organisations(secured, tls.ClientTls(
            ca=secured.pki.dir / "ca.pem", cert=secured.pki.dir / "old-admin.pem",
            key=secured.pki.dir / "old-admin.key"))


def test_a_revoked_certificate_is_refused_from_then_on(secured: Secured) -> None:
    admin = secured.pki.client("admin")
    assert _list_organisations(secured, admin) == 4
    write_crl(secured.pki.dir, tls.load_certificates(admin.cert, "certificate")[0])
    with pytest.raises(Unauthenticated, match="revoked"):
        _list_organisations(secured, admin)
    # another certificate of the same CA still works
    issue(secured.pki.dir, "admin-2", organisation="gemeente", role="administrator",
          user="administrator")
    assert _list_organisations(secured, tls.ClientTls(
        ca=admin.ca, cert=secured.pki.dir / "admin-2.pem",
        key=secured.pki.dir / "admin-2.key")) == 4


def test_an_expired_or_unreadable_revocation_list_refuses_everyone(secured: Secured) -> None:
    admin = secured.pki.client("admin")
    path = secured.pki.dir / "crl.pem"
    good = path.read_bytes()
    path.write_text("not a list")
    with pytest.raises(Unauthenticated, match="cannot be checked"):
        _list_organisations(secured, admin)
    path.write_bytes(good)
    assert _list_organisations(secured, admin) == 4
    write_crl(secured.pki.dir, now=datetime.now(UTC) - timedelta(days=40), days=30)
    with pytest.raises(Unauthenticated, match="revocation list has expired"):
        _list_organisations(secured, admin)
    write_crl(secured.pki.dir)  # the CA signs a new one: callers are let in again
    assert _list_organisations(secured, admin) == 4


def test_a_certificate_without_a_samenloop_identity_is_refused(secured: Secured) -> None:
    # a client certificate of the right CA that names no organisation and role
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((secured.pki.dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((secured.pki.dir / "ca.key").read_bytes(),
                                                None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anyone")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))
    (secured.pki.dir / "anon.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (secured.pki.dir / "anon.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    anonymous = tls.ClientTls(ca=secured.pki.dir / "ca.pem", cert=secured.pki.dir / "anon.pem",
                              key=secured.pki.dir / "anon.key")
    with pytest.raises(Unauthenticated, match="names no Samenloop identity"):
        _list_organisations(secured, anonymous, rpc.Caller("gemeente", "x", "administrator"))


def test_a_client_refuses_a_certificate_for_someone_else(secured: Secured,
                                                         tmp_path: Path) -> None:
    settings = AgentSettings(organisation="org-b", hub=secured.hub_address,
                             keyservice=secured.keyservice_address,
                             state_database=f"sqlite:///{tmp_path / 'b.db'}",
                             **secured.pki.settings("org-a"))
    with pytest.raises(ConfigError, match="organisation 'org-a', but this client is "
                       "configured as 'org-b'"):
        Agent(settings)
    with pytest.raises(ConfigError, match="tls_key is missing"):
        dataclasses.replace(settings, tls_key=None).client_tls()


def test_the_server_needs_a_complete_tls_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_client_ca is missing"):
        start_hub(HubSettings(listen="127.0.0.1:0", database_url=f"sqlite:///{tmp_path}/h.db",
                              checkpoint_key=tmp_path / "cp.key", migrate=True,
                              tls_cert=tmp_path / "x.pem", tls_key=tmp_path / "x.key"))
