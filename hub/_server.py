"""Starting and stopping the hub and the key service as gRPC servers."""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1.health import HealthServicer

from exchange import checkpoint, config, crypto, log, tls, vocab
from exchange.db import check_current, make_engine, migrate, redact_url
from exchange.errors import ConfigError
from exchange.rpc import MAX_MESSAGE_BYTES
from hub import _ops
from hub._audit import MIN_LOG_RETENTION
from hub._core import Hub, Limits
from hub._keyservice import KeyService
from hub._service import IdentityResolver, add_services, metadata_identity

MIGRATIONS = Path(__file__).parent / "_migrations"
HUB_SERVICES = ["samenloop.v1.SignalService", "samenloop.v1.CoordinatorService",
                "samenloop.v1.AuditService", "samenloop.v1.AdminService"]
_log = log.get("hub")


@config.section("hub")
@dataclass(frozen=True)
class HubSettings(tls.TlsServerSettings):
    listen: str = "127.0.0.1:50051"
    database_url: str = "sqlite:///samenloop-hub.db"
    checkpoint_key: Path = Path("hub-checkpoint.key")
    origin: str = "samenloop.local/hub"
    max_workers: int = 32
    # A signal expires after at most this many days (the partner may choose earlier).
    max_signal_age_days: int = 730
    # Expired signals, and those withdrawn as "risk gone", are archived this long, then
    # purged (their access-log events stay). Signals withdrawn as unjustified are not kept.
    archive_days: int = 1826
    # How often time-based decisions (expiry, consent periods) are re-made; 0 disables.
    sweep_seconds: float = 60.0
    # Organisations (the municipality) whose privacy officers see the whole access log.
    oversight_organisations: tuple[str, ...] = ()
    # A checkpoint is signed this often when events were added; 0 signs only on request.
    checkpoint_seconds: float = 0.5
    # Access events are kept at least this long (five years at the least).
    log_retention_days: int = 1827
    migrate: bool = False
    # HOST:PORT for /healthz, /readyz and /metrics over HTTP; empty: none.
    ops_listen: str = ""


@config.section("keyservice")
@dataclass(frozen=True)
class KeyServiceSettings(tls.TlsServerSettings):
    listen: str = "127.0.0.1:50052"
    key_file: Path = Path("oprf.key")
    # During a key rotation: the key being retired (see docs/operations.md).
    previous_key_file: Path | None = None
    max_workers: int = 8
    # Per organisation: blinded elements evaluated per minute on average, and at once.
    # An agent onboarding a caseload stays within them; enumerating identities does not.
    rate_per_minute: int = 120_000
    rate_burst: int = 1_000_000
    # HOST:PORT for /healthz, /readyz and /metrics over HTTP; empty: none.
    ops_listen: str = ""


def _is_loopback(host: str) -> bool:
    """True when every address the host resolves to is a loopback address."""
    name = host.strip("[]")
    try:
        infos = socket.getaddrinfo(name, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _bind(server: grpc.Server, listen: str, server_tls: tls.ServerTls | None) -> int:
    host = listen.rsplit(":", 1)[0]
    if server_tls is None and not _is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {listen}: without TLS client certificates the "
            "caller's identity cannot be trusted, so only loopback addresses are allowed "
            "(set tls_cert, tls_key and tls_client_ca)")
    try:
        port = (server.add_insecure_port(listen) if server_tls is None
                else server.add_secure_port(listen, server_tls.credentials()))
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}")
    return port


class _Drain(grpc.ServerInterceptor):
    """Counts the calls in flight and, once the server is stopping, refuses new ones with
    UNAVAILABLE, so that stopping can wait for the calls in flight before it stops the gRPC
    server. (grpcio's own grace period now and then cancels a client stream that is waiting
    for its next message.) Health checks pass untouched: they answer NOT_SERVING."""

    def __init__(self, stopping: threading.Event) -> None:
        self.stopping = stopping
        self._lock = threading.Condition()
        self._calls = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._calls

    def stop(self, grace: float) -> float:
        """Refuse new calls and wait up to ``grace`` seconds for those in flight; return
        the grace left."""
        deadline = time.monotonic() + grace
        with self._lock:
            self.stopping.set()
            self._lock.wait_for(lambda: self._calls == 0, timeout=grace)
        return max(0.0, deadline - time.monotonic())

    def _enter(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            if not self.stopping.is_set():
                self._calls += 1
                return
        context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down: retry")

    def _leave(self) -> None:
        with self._lock:
            self._calls -= 1
            self._lock.notify_all()

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or details.method.startswith("/grpc.health."):
            return handler
        if handler.response_streaming:
            kind = "stream_stream" if handler.request_streaming else "unary_stream"
            return handler._replace(**{kind: self._streaming(getattr(handler, kind))})
        kind = "stream_unary" if handler.request_streaming else "unary_unary"
        return handler._replace(**{kind: self._unary(getattr(handler, kind))})

    def _unary(self, behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def counted(request: Any, context: grpc.ServicerContext) -> Any:
            self._enter(context)
            try:
                return behaviour(request, context)
            finally:
                self._leave()
        return counted

    def _streaming(self, behaviour: Callable[[Any, Any], Iterator[Any]]
                   ) -> Callable[[Any, Any], Iterator[Any]]:
        def counted(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            self._enter(context)
            try:
                yield from behaviour(request, context)
            finally:
                self._leave()
        return counted


def _new_server(max_workers: int, drain: _Drain) -> grpc.Server:
    return grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[drain],
        options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
    )


@dataclass
class Running:
    """A started server; ``address`` is host:port with the port actually bound."""

    server: grpc.Server
    address: str
    stopping: threading.Event
    drain: _Drain
    health: HealthServicer | None = None
    ops: _ops.OpsServer | None = None
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        """The calls being handled now (health checks aside)."""
        return self.drain.in_flight

    def stop(self, grace: float = 5.0) -> None:
        """Say NOT_SERVING, refuse new calls, end watch streams, let in-flight calls
        finish (for up to ``grace`` seconds; then they are cancelled)."""
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        self.server.stop(self.drain.stop(grace)).wait()
        if self.ops is not None:
            self.ops.stop()
        for cleanup in self._cleanup:
            cleanup()

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM, then stop gracefully."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        done.wait()
        _log.info("shutting down", address=self.address)
        self.stop()


@dataclass(kw_only=True)
class RunningHub(Running):
    hub: Hub

    def stop(self, grace: float = 5.0) -> None:
        super().stop(grace)
        try:  # leave no event waiting in the queue: add them to the tree and sign
            self.hub.sign_if_due()
        except Exception:  # noqa: BLE001 - the next start adds them
            _log.exception("could not sign a last checkpoint")
        self.hub.close()


@dataclass(kw_only=True)
class RunningKeyService(Running):
    service: KeyService


def open_hub(settings: HubSettings, *, clock: Callable[[], datetime] | None = None) -> Hub:
    # A connection for every request thread and the two housekeeping threads: a request
    # never waits for another's connection.
    engine = make_engine(settings.database_url, pool_size=settings.max_workers + 2)
    if settings.migrate:
        migrate(engine, MIGRATIONS)
    check_current(engine, MIGRATIONS)
    signer = checkpoint.CheckpointSigner.load_or_create(settings.checkpoint_key, settings.origin)
    for name in ("max_signal_age_days", "archive_days"):
        if not 1 <= getattr(settings, name) <= 36600:
            raise ConfigError(f"{name} must be a whole number of days from 1 to 36600")
    limits = Limits(max_signal_age=timedelta(days=settings.max_signal_age_days),
                    archive_period=timedelta(days=settings.archive_days))
    for org in settings.oversight_organisations:
        vocab.slug(org, "oversight_organisations")
    if settings.log_retention_days < MIN_LOG_RETENTION.days:
        raise ConfigError(f"log_retention_days must be at least {MIN_LOG_RETENTION.days}")
    return Hub(engine, signer=signer, clock=clock, limits=limits,
               oversight=frozenset(settings.oversight_organisations),
               log_retention=timedelta(days=settings.log_retention_days),
               integrate_on_commit=settings.checkpoint_seconds <= 0)


def _identity(server_tls: tls.ServerTls | None, given: IdentityResolver | None,
              clock: Callable[[], datetime] | None) -> IdentityResolver:
    """Callers from their certificates with TLS; from request headers (loopback only)
    without."""
    if given is not None:
        return given
    return metadata_identity if server_tls is None else server_tls.identity(clock)


def start_hub(
    settings: HubSettings,
    *,
    clock: Callable[[], datetime] | None = None,
    identity: IdentityResolver | None = None,
) -> RunningHub:
    server_tls = settings.server_tls()
    resolver = _identity(server_tls, identity, clock)
    hub = open_hub(settings, clock=clock)
    stopping = threading.Event()
    drain = _Drain(stopping)
    server = _new_server(settings.max_workers, drain)
    add_services(server, hub, resolver, stopping)
    health = _ops.add_health(server, HUB_SERVICES)
    try:
        port = _bind(server, settings.listen, server_tls)
        ops = _ops_server(settings.ops_listen, lambda: not stopping.is_set()
                          and _ops.database_answers(hub.engine))
    except ConfigError:
        hub.close()
        raise
    server.start()
    if settings.sweep_seconds > 0:
        threading.Thread(target=_every, args=(hub.sweep, stopping, settings.sweep_seconds),
                         name="sweep", daemon=True).start()
    listener = threading.Thread(target=hub.listen_for_feed, args=(stopping,),
                                name="feed-listener", daemon=True)
    listener.start()
    if settings.checkpoint_seconds > 0:
        threading.Thread(target=_every, args=(hub.sign_if_due, stopping,
                                              settings.checkpoint_seconds),
                         name="checkpoints", daemon=True).start()
    address = f"{settings.listen.rsplit(':', 1)[0]}:{port}"
    _log.info("hub listening", address=address, database=redact_url(settings.database_url),
              checkpoint_key=crypto.fingerprint(hub.checkpoint_public_key).hex(),
              tls=server_tls is not None, ops=ops.address if ops else "")
    running = RunningHub(server, address, stopping, drain, health, ops, hub=hub)
    running._cleanup.append(lambda: listener.join(5))
    if ops is not None:
        running._cleanup.append(_ops.register_database(hub.engine))
    return running


def _every(job: Callable[[], object], stopping: threading.Event, seconds: float) -> None:
    """Run a housekeeping job every few seconds until the server stops."""
    while not stopping.wait(seconds):
        try:
            job()
        except Exception:  # noqa: BLE001 - keep going; the next run retries
            _log.exception("housekeeping failed", job=getattr(job, "__name__", "job"))


def load_oprf_key(path: Path) -> crypto.OprfKey:
    if not path.exists():
        raise ConfigError(f"no OPRF key at {path}: create one with "
                          "'samenloop keyservice keygen'")
    try:
        return crypto.OprfKey.load(path)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def start_keyservice(
    settings: KeyServiceSettings,
    *,
    key: crypto.OprfKey | None = None,
    previous: crypto.OprfKey | None = None,
    identity: IdentityResolver | None = None,
) -> RunningKeyService:
    """Start the key service with ``key`` (else key_file) and, during a rotation, the
    retiring ``previous`` key (else previous_key_file)."""
    server_tls = settings.server_tls()
    resolver = _identity(server_tls, identity, None)
    key = key or load_oprf_key(settings.key_file)
    for name in ("rate_per_minute", "rate_burst"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    stopping = threading.Event()
    drain = _Drain(stopping)
    server = _new_server(settings.max_workers, drain)
    if previous is None and settings.previous_key_file is not None:
        previous = load_oprf_key(settings.previous_key_file)
    if previous is not None and previous.key_id == key.key_id:
        raise ConfigError("previous_key_file holds the same key as key_file")
    service = KeyService(key, resolver, previous=previous,
                         rate_per_minute=settings.rate_per_minute, burst=settings.rate_burst)
    from exchange.v1 import keyservice_pb2_grpc

    keyservice_pb2_grpc.add_KeyServiceServicer_to_server(service, server)
    health = _ops.add_health(server, ["samenloop.v1.KeyService"])
    port = _bind(server, settings.listen, server_tls)
    ops = _ops_server(settings.ops_listen, lambda: not stopping.is_set())
    server.start()
    address = f"{settings.listen.rsplit(':', 1)[0]}:{port}"
    log.get("keyservice").info("key service listening", address=address, key_id=key.key_id,
                               previous_key_id=previous.key_id if previous else "",
                               tls=server_tls is not None, ops=ops.address if ops else "")
    return RunningKeyService(server, address, stopping, drain, health, ops, service=service)


def _ops_server(listen: str, ready: Callable[[], bool]) -> _ops.OpsServer | None:
    return _ops.OpsServer(listen, ready) if listen else None
