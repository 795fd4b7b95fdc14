"""Mutual TLS: credentials for channels and servers, and the caller from its certificate.

Every Samenloop client certificate names its holder in one URI subject alternative name::

    samenloop://<organisation>/<role>/<user>        (the user percent-encoded)

so the organisation and role a server acts on come from a certificate its trusted CA
signed, never from what the caller says. A server configured with TLS
(:class:`TlsServerSettings`) requires a client certificate chaining to ``tls_client_ca``
(the TLS handshake refuses unknown CAs and expired certificates), and
:class:`CertificateIdentity` refuses a certificate that is revoked by the CA's revocation
list (``tls_crl``), that names no identity, or whose list cannot be trusted: anything it
cannot verify is refused. ``samenloop pki`` (exchange._pki) makes a development CA and
certificates; production takes them from the organisation's own PKI.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from exchange import log
from exchange.errors import ConfigError, InvalidInput, Unauthenticated
from exchange.rpc import Caller

SCHEME = "samenloop"
_log = log.get("tls")


def identity_uri(organisation: str, role: str, user: str) -> str:
    """The URI a certificate carries for this holder."""
    Caller(organisation, user, role)  # validates
    return f"{SCHEME}://{organisation}/{role}/{urllib.parse.quote(user, safe='')}"


def caller_of(cert: x509.Certificate) -> Caller:
    """The holder a certificate names; Unauthenticated when it names none, or several."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = [u for u in san.value.get_values_for_type(x509.UniformResourceIdentifier)
                if u.startswith(f"{SCHEME}://")]
    except x509.ExtensionNotFound:
        uris = []
    if len(uris) != 1:
        raise Unauthenticated("the client certificate names no Samenloop identity "
                              "(one samenloop://organisation/role/user URI)")
    parsed = urllib.parse.urlsplit(uris[0])
    parts = parsed.path.split("/")
    try:
        if len(parts) != 3 or parts[0] or parsed.query or parsed.fragment:
            raise InvalidInput("malformed")
        return Caller(parsed.netloc, urllib.parse.unquote(parts[2], errors="strict"),
                      parts[1])
    except (InvalidInput, UnicodeDecodeError):
        raise Unauthenticated("the client certificate's Samenloop identity is malformed"
                              ) from None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}") from None


def load_certificates(path: Path, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(_read(path, what))
    except ValueError:
        raise ConfigError(f"the {what} {path} holds no PEM certificate") from None
    return certs


# -- clients --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TlsClientSettings:
    """A role's TLS settings: all three, or none for the development mode (identity in
    request headers, accepted by servers on loopback only)."""

    # The CA that signed the servers' certificates.
    tls_ca: Path | None = None
    # This role's certificate and private key (PEM), e.g. from 'samenloop pki client'.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def client_tls(self) -> ClientTls | None:
        given = {f.name: getattr(self, f.name) for f in fields(TlsClientSettings)}
        if not any(given.values()):
            return None
        missing = sorted(k for k, v in given.items() if v is None)
        if missing:
            raise ConfigError(f"TLS needs tls_ca, tls_cert and tls_key; {missing[0]} is "
                              "missing")
        return ClientTls(ca=self.tls_ca, cert=self.tls_cert, key=self.tls_key)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClientTls:
    ca: Path
    cert: Path
    key: Path

    def caller(self) -> Caller:
        """Who this certificate says we are."""
        return caller_of(load_certificates(self.cert, "certificate")[0])

    def check(self, expected: Caller) -> None:
        """Refuse to start when the certificate names someone else than the settings."""
        mine = self.caller()
        for what, have, want in (("organisation", mine.organisation_id,
                                  expected.organisation_id), ("role", mine.role, expected.role),
                                 ("user", mine.user_id, expected.user_id)):
            if have != want:
                raise ConfigError(
                    f"the certificate {self.cert} is for {what} '{have}', but this client "
                    f"is configured as '{want}'")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA certificate"),
            private_key=_read(self.key, "private key"),
            certificate_chain=_read(self.cert, "certificate"))


# -- servers --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TlsServerSettings:
    """A server's TLS settings. With ``tls_cert`` set the server listens on any address
    and takes callers from their certificates; without, it is the development mode."""

    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The CAs whose client certificates are accepted (PEM bundle).
    tls_client_ca: Path | None = None
    # The CAs' certificate revocation lists (PEM, one or more); re-read when it changes.
    tls_crl: Path | None = None

    def server_tls(self) -> ServerTls | None:
        if not any((self.tls_cert, self.tls_key, self.tls_client_ca, self.tls_crl)):
            return None
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            if getattr(self, name) is None:
                raise ConfigError(f"TLS needs tls_cert, tls_key and tls_client_ca; {name} "
                                  "is missing")
        return ServerTls(cert=self.tls_cert, key=self.tls_key,  # type: ignore[arg-type]
                         client_ca=self.tls_client_ca, crl=self.tls_crl)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    client_ca: Path
    crl: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        load_certificates(self.client_ca, "client CA bundle")
        return grpc.ssl_server_credentials(
            [(_read(self.key, "private key"), _read(self.cert, "certificate"))],
            root_certificates=_read(self.client_ca, "client CA bundle"),
            require_client_auth=True)

    def identity(self, clock: Callable[[], datetime] | None = None) -> CertificateIdentity:
        return CertificateIdentity(self.client_ca, self.crl, clock=clock)


def _verify_signature(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    key = ca.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey
                      | ed25519.Ed25519PublicKey):
        return False
    return crl.is_signature_valid(key)


class CertificateIdentity:
    """The caller of a TLS call, from the client certificate the handshake verified.

    Refuses (Unauthenticated) a call without a certificate, a certificate that names no
    Samenloop identity, that has expired, or that its issuer's revocation list revokes.
    With ``crl`` configured, a certificate whose issuer has no valid list (signed by that
    CA, not past its next update) is refused too: revocation that cannot be checked fails
    closed.
    """

    def __init__(self, client_ca: Path, crl: Path | None, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._cas = {c.subject.public_bytes(): c
                     for c in load_certificates(client_ca, "client CA bundle")}
        self._crl_path = crl
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._crls: dict[bytes, x509.CertificateRevocationList] = {}
        self._crl_problem = ""
        if crl is not None:
            self._reload()
            if self._crl_problem:
                raise ConfigError(f"the revocation list {crl}: {self._crl_problem}")

    def _reload(self) -> None:
        """Read the CRL file again when it changed (size or modification time)."""
        assert self._crl_path is not None
        try:
            st = os.stat(self._crl_path)
        except OSError:
            self._crls, self._crl_problem, self._stamp = {}, "cannot be read", None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        crls: dict[bytes, x509.CertificateRevocationList] = {}
        problem = ""
        try:
            text = self._crl_path.read_bytes()
            blocks = [b"-----BEGIN X509 CRL-----" + part for part in
                      text.split(b"-----BEGIN X509 CRL-----")[1:]]
            if not blocks:
                raise ValueError("no CRL")
            for block in blocks:
                crl = x509.load_pem_x509_crl(block)
                ca = self._cas.get(crl.issuer.public_bytes())
                if ca is None or not _verify_signature(crl, ca):
                    problem = "a list is not signed by a trusted CA"
                    break
                crls[crl.issuer.public_bytes()] = crl
        except (OSError, ValueError):
            problem = "is not a PEM certificate revocation list"
        self._crls, self._crl_problem = ({}, problem) if problem else (crls, "")
        if problem:
            _log.error("revocation list unusable; refusing every client certificate",
                       path=str(self._crl_path), problem=problem)

    def _check_revocation(self, cert: x509.Certificate, now: datetime) -> None:
        if self._crl_path is None:
            return
        with self._lock:
            self._reload()
            crl = self._crls.get(cert.issuer.public_bytes())
            problem = self._crl_problem
        if problem or crl is None:
            raise Unauthenticated("the client certificate's revocation status cannot be "
                                  "checked; refused")
        next_update = crl.next_update_utc
        if next_update is None or next_update <= now:
            raise Unauthenticated("the certificate revocation list has expired; refused "
                                  "(the CA must issue a new one)")
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise Unauthenticated("the client certificate has been revoked")

    def __call__(self, context: grpc.ServicerContext) -> Caller:
        found: bytes | list[bytes] = (context.auth_context() or {}).get("x509_pem_cert") or []
        pems = [found] if isinstance(found, bytes) else list(found)
        if not pems:
            raise Unauthenticated("no client certificate")
        try:
            cert = x509.load_pem_x509_certificate(bytes(pems[0]))
        except ValueError:
            raise Unauthenticated("the client certificate cannot be read") from None
        now = self._clock()
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise Unauthenticated("the client certificate is not valid now")
        self._check_revocation(cert, now)
        return caller_of(cert)


# -- command-line flags ---------------------------------------------------------------


def add_client_flags(p: Any) -> None:
    """--tls-ca, --tls-cert and --tls-key on a client command."""
    p.add_argument("--tls-ca", type=Path, metavar="FILE",
                   help="CA certificate the servers' certificates chain to (with TLS)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="your client certificate (PEM): it says who you are")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")


def client_overrides(args: Any) -> dict[str, Any]:
    return {k: getattr(args, k, None) for k in ("tls_ca", "tls_cert", "tls_key")}


def add_server_flags(p: Any) -> None:
    """--tls-cert, --tls-key, --tls-client-ca and --tls-crl on a serve command."""
    p.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="the server's certificate (PEM); with it, mutual TLS is required")
    p.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")
    p.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                   help="CA certificates whose client certificates are accepted")
    p.add_argument("--tls-crl", type=Path, metavar="FILE",
                   help="the CAs' revocation lists (PEM); re-read when the file changes")


def server_overrides(args: Any) -> dict[str, Any]:
    return {k: getattr(args, k, None)
            for k in ("tls_cert", "tls_key", "tls_client_ca", "tls_crl")}


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """What ``samenloop pki show`` prints."""
    out: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "valid_from": cert.not_valid_before_utc.isoformat(),
        "valid_until": cert.not_valid_after_utc.isoformat(),
    }
    try:
        caller = caller_of(cert)
        out["identity"] = {"organisation": caller.organisation_id, "role": caller.role,
                           "user": caller.user_id}
    except Unauthenticated:
        pass
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        out["hosts"] = [str(v) for v in san.value.get_values_for_type(x509.DNSName)] + [
            str(v) for v in san.value.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    return out


__all__ = [
    "CertificateIdentity",
    "ClientTls",
    "ServerTls",
    "TlsClientSettings",
    "TlsServerSettings",
    "add_client_flags",
    "add_server_flags",
    "caller_of",
    "client_overrides",
    "describe",
    "identity_uri",
    "server_overrides",
]
