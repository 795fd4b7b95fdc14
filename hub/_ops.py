"""Operations: health checks and Prometheus metrics, off the request path.

* gRPC health checking (``grpc.health.v1.Health``) on the service port, for load balancers
  that speak gRPC (over TLS they present a client certificate like anyone else);
* an HTTP endpoint (``ops_listen``) with ``/healthz`` (the process runs), ``/readyz``
  (it serves and its database answers; 503 otherwise) and ``/metrics`` (Prometheus).

Metrics hold counts, durations and ids of organisations — never a pseudonym, household
reference or anything about a person.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select, text

from exchange import log
from exchange.errors import ConfigError

_log = log.get("ops")

REQUESTS = Counter("samenloop_requests_total", "RPCs answered, by method and status code",
                   ["method", "code"])
LATENCY = Histogram("samenloop_request_seconds", "Time to answer an RPC that succeeded",
                    ["method"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                             5, 10))
EVALUATIONS = Counter("samenloop_oprf_elements_total",
                      "Blinded elements the key service evaluated, per organisation",
                      ["organisation"])
DEFERRED = Counter("samenloop_signals_deferred_total",
                   "New signals stored in a second transaction because a concurrent one "
                   "held their households' keys")
RATE_LIMITED = Counter("samenloop_oprf_rate_limited_total",
                       "Key service requests refused by the per-organisation rate limit",
                       ["organisation"])


def observe(method: str, code: str, seconds: float | None = None) -> None:
    """Count an answered RPC; time it when it succeeded."""
    REQUESTS.labels(method, code).inc()
    if seconds is not None:
        LATENCY.labels(method).observe(seconds)


class DatabaseCollector(Collector):
    """Gauges read from the hub database at each scrape: signals, alerts, matches, open
    tasks, and the access events waiting to be added to the Merkle tree."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from hub._models import Alert, AuditHead, AuditQueued, Match, Signal, Task

        try:
            with self._engine.connect() as conn:
                grouped = {
                    "signals": (Signal.state, "Signals by state"),
                    "alerts": (Alert.state, "Alerts by state"),
                    "matches": (Match.status, "Matches by status"),
                }
                for name, (column, doc) in grouped.items():
                    family = GaugeMetricFamily(f"samenloop_{name}", doc, labels=["state"])
                    for state, count in conn.execute(
                            select(column, func.count()).group_by(column)):
                        family.add_metric([str(state)], count)
                    yield family
                yield GaugeMetricFamily(
                    "samenloop_tasks_open", "Partners' open tasks and notices",
                    value=conn.execute(select(func.count()).select_from(Task).where(
                        Task.state == "open")).scalar_one())
                yield GaugeMetricFamily(
                    "samenloop_audit_queue_depth",
                    "Access events committed but not yet in the Merkle tree",
                    value=conn.execute(select(func.count()).select_from(AuditQueued))
                    .scalar_one())
                yield GaugeMetricFamily(
                    "samenloop_audit_log_size", "Access events in the Merkle tree",
                    value=conn.execute(select(AuditHead.size)).scalar() or 0)
        except Exception:  # noqa: BLE001 - a scrape must not fail the process
            _log.warning("could not read database metrics")


def add_health(server: grpc.Server, services: list[str]) -> health.HealthServicer:
    """Serve grpc.health.v1 for the server as a whole ("") and each service."""
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *services]:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


class OpsServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` over HTTP on ``listen``."""

    def __init__(self, listen: str, ready: Callable[[], bool]) -> None:
        host, _, port = listen.rpartition(":")
        try:
            address = (host.strip("[]"), int(port))
        except ValueError:
            raise ConfigError(f"ops_listen '{listen}' is not HOST:PORT") from None
        handler = _handler(ready)
        try:
            self._server = ThreadingHTTPServer(address, handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {listen} for operations: {exc.strerror}"
                              ) from None
        self._server.daemon_threads = True
        self.address = f"{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(ready: Callable[[], bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ok = _safely(ready)
                self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n",
                           "text/plain")
            elif self.path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the API's name
            pass  # probes every few seconds would drown the request log

    return Handler


def _safely(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:  # noqa: BLE001 - not ready is the answer to any failure
        return False


def database_answers(engine: Engine) -> bool:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return True


_collectors: dict[int, DatabaseCollector] = {}
_lock = threading.Lock()


def register_database(engine: Engine) -> Callable[[], None]:
    """Add the database gauges to /metrics; returns how to remove them again."""
    collector = DatabaseCollector(engine)
    with _lock:
        REGISTRY.register(collector)
        _collectors[id(engine)] = collector

    def unregister() -> None:
        with _lock:
            if _collectors.pop(id(engine), None) is not None:
                REGISTRY.unregister(collector)

    return unregister
