"""``samenloop pki``: a development certificate authority for the demo and for tests.

One directory holds the CA (``ca.pem``, ``ca.key``), its revocation list (``crl.pem``) and
the certificates it issued (``NAME.pem`` with ``NAME.key``). Servers get DNS and IP names;
clients get their Samenloop identity (exchange.tls). Keys are ECDSA P-256, written
readable by their owner only and never overwritten. Production deployments take their
certificates from the organisations' own PKI; only the identity URI must be the same.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange import tls, vocab
from exchange._files import write_secret
from exchange.errors import AlreadyExists, ConfigError, InvalidInput, NotFound

CA_CERT, CA_KEY, CRL = "ca.pem", "ca.key", "crl.pem"
CRL_DAYS = 30


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except FileNotFoundError:
        raise NotFound(f"no CA in {directory}: create one with 'samenloop pki init'") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{directory / CA_KEY} is not an ECDSA key")
    return cert, key


def init_ca(directory: Path, *, days: int = 3650, name: str = "Samenloop development CA",
            now: datetime | None = None) -> x509.Certificate:
    """Create a CA and an empty revocation list; never overwrites an existing CA."""
    if (directory / CA_KEY).exists() or (directory / CA_CERT).exists():
        raise AlreadyExists(f"{directory} already holds a CA")
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    write_secret(directory / CA_KEY, _key_pem(key))
    (directory / CA_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_crl(directory, now=now)
    return cert


def issue(directory: Path, name: str, *, hosts: list[str] | None = None,
          organisation: str = "", role: str = "", user: str = "", days: int = 365,
          now: datetime | None = None, not_before: datetime | None = None) -> Path:
    """Issue a server certificate (``hosts``) or a client one (organisation, role, user);
    returns the certificate's path (the key is beside it, ``NAME.key``)."""
    vocab.slug(name, "name")
    if bool(hosts) == bool(organisation or role or user):
        raise InvalidInput("a certificate is for a server (hosts) or a client "
                           "(organisation, role, user), not both or neither")
    if not 1 <= days <= 3650:
        raise InvalidInput("days must be from 1 to 3650")
    ca_cert, ca_key = _load_ca(directory)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    if cert_path.exists() or key_path.exists():
        raise AlreadyExists(f"{cert_path} already exists")
    now = now or datetime.now(UTC)
    start = not_before or now - timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    attributes = []
    if hosts:
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        usage = ExtendedKeyUsageOID.SERVER_AUTH
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]))
    else:
        names.append(x509.UniformResourceIdentifier(tls.identity_uri(organisation, role, user)))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                       x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                       x509.NameAttribute(NameOID.COMMON_NAME, user[:64])]
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_secret(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def write_crl(directory: Path, revoke: x509.Certificate | None = None, *,
              now: datetime | None = None, days: int = CRL_DAYS) -> x509.CertificateRevocationList:
    """(Re-)sign the CA's revocation list, adding ``revoke``; valid for ``days``."""
    ca_cert, ca_key = _load_ca(directory)
    now = now or datetime.now(UTC)
    revoked: list[x509.RevokedCertificate] = []
    path = directory / CRL
    if path.exists():
        try:
            revoked = list(x509.load_pem_x509_crl(path.read_bytes()))
        except ValueError:
            raise ConfigError(f"{path} is not a revocation list: restore it from a backup "
                              "(re-signing it would forget every revocation)") from None
    if revoke is not None:
        if revoke.issuer != ca_cert.subject:
            raise InvalidInput("the certificate was not issued by this CA")
        if not any(r.serial_number == revoke.serial_number for r in revoked):
            revoked.append(x509.RevokedCertificateBuilder()
                           .serial_number(revoke.serial_number).revocation_date(now).build())
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(now - timedelta(minutes=5)).next_update(now + timedelta(days=days)))
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)  # servers re-read it whole
    return crl


# -- the command ---------------------------------------------------------------------


def register(sub: Any) -> None:
    pki = sub.add_parser(
        "pki", help="development CA: certificates for servers and every role",
        description="A development certificate authority for the demo, tests and trials. "
        "It writes ca.pem, ca.key, crl.pem and NAME.pem/NAME.key into --dir. Give servers "
        "--tls-cert/--tls-key/--tls-client-ca ca.pem/--tls-crl crl.pem, and each role "
        "--tls-ca ca.pem/--tls-cert/--tls-key. Production takes certificates from the "
        "organisations' own PKI with the same samenloop://organisation/role/user URI.")
    p_sub = pki.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def directory(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", type=Path, default=Path("pki"), metavar="DIR",
                       help="the CA's directory (default ./pki)")

    init = p_sub.add_parser("init", help="create the CA and an empty revocation list",
                            description="Create a CA in DIR; never overwrites one.")
    init.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    directory(init)
    init.set_defaults(func=_init)

    server = p_sub.add_parser(
        "server", help="issue a server certificate (hub, key service)",
        description="Issue NAME.pem and NAME.key for a server reachable as each --host "
        "(DNS names or IP addresses; clients check the name they connect to).")
    server.add_argument("name", metavar="NAME", help="file name, e.g. hub")
    server.add_argument("--host", action="append", required=True, metavar="HOST",
                        help="a DNS name or IP address of the server (repeatable)")
    server.add_argument("--days", type=int, default=365, help="validity (default 365)")
    directory(server)
    server.set_defaults(func=_server)

    client = p_sub.add_parser(
        "client", help="issue a certificate for a role of an organisation",
        description="Issue NAME.pem and NAME.key naming organisation, role and user. The "
        "hub acts on exactly this identity: a partner's agent, a coordinator (user = the "
        "coordinator id), a privacy officer, an administrator.")
    client.add_argument("name", metavar="NAME", help="file name, e.g. jeugdzorg-agent")
    client.add_argument("--organisation", required=True, metavar="ID")
    client.add_argument("--role", required=True, choices=vocab.ROLES)
    client.add_argument("--user", metavar="ID",
                        help="user id (default: agent, privacy-officer, administrator; a "
                        "coordinator's is the coordinator id, required)")
    client.add_argument("--days", type=int, default=365, help="validity (default 365)")
    directory(client)
    client.set_defaults(func=_client)

    revoke = p_sub.add_parser(
        "revoke", help="revoke a certificate",
        description="Add the certificate to the CA's revocation list. Servers re-read "
        "the list when it changes and refuse the certificate from then on.")
    revoke.add_argument("cert", type=Path, metavar="CERT.pem")
    directory(revoke)
    revoke.set_defaults(func=_revoke)

    crl = p_sub.add_parser(
        "crl", help="sign the revocation list again",
        description=f"Re-sign crl.pem for another --days (default {CRL_DAYS}). Servers "
        "refuse every client once the list's next update has passed: renew it in time.")
    crl.add_argument("--days", type=int, default=CRL_DAYS)
    directory(crl)
    crl.set_defaults(func=_crl)

    show = p_sub.add_parser("show", help="what a certificate says",
                            description="Print a certificate's identity, names and validity "
                            "as JSON.")
    show.add_argument("cert", type=Path, metavar="CERT.pem")
    show.set_defaults(func=_show)


_DEFAULT_USERS = {"partner": "agent", "privacy_officer": "privacy-officer",
                  "administrator": "administrator", "key_client": "key-client"}


def _init(args: argparse.Namespace) -> int:
    cert = init_ca(args.dir, days=args.days)
    print(f"created CA '{cert.subject.rfc4514_string()}' in {args.dir} "
          f"(give {args.dir / CA_CERT} to every server and client; keep {CA_KEY} safe)")
    return 0


def _server(args: argparse.Namespace) -> int:
    path = issue(args.dir, args.name, hosts=args.host, days=args.days)
    print(f"issued {path} and {path.with_suffix('.key')} for {', '.join(args.host)}")
    return 0


def _client(args: argparse.Namespace) -> int:
    user = args.user or _DEFAULT_USERS.get(args.role)
    if not user:
        raise InvalidInput("a coordinator's certificate needs --user (the coordinator id)")
    path = issue(args.dir, args.name, organisation=args.organisation, role=args.role,
                 user=user, days=args.days)
    print(f"issued {path} and {path.with_suffix('.key')} for "
          f"{tls.identity_uri(args.organisation, args.role, user)}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    cert = tls.load_certificates(args.cert, "certificate")[0]
    write_crl(args.dir, cert)
    print(f"revoked serial {cert.serial_number:x}; {args.dir / CRL} updated")
    return 0


def _crl(args: argparse.Namespace) -> int:
    crl = write_crl(args.dir, days=args.days)
    print(f"{args.dir / CRL} signed, next update {crl.next_update_utc:%Y-%m-%d %H:%M} UTC")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(json.dumps(tls.describe(tls.load_certificates(args.cert, "certificate")[0]),
                     indent=2))
    return 0
