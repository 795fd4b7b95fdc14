"""Operations on real servers: health checks, readiness, metrics, graceful shutdown and
the key service's rate limit."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent._client import HubClient, KeyServiceClient
from exchange import crypto, rpc
from exchange.errors import InvalidInput, PermissionDenied, RateLimited, SamenloopError
from exchange.v1 import keyservice_pb2, signal_pb2
from hub import HubSettings, KeyServiceSettings, start_hub, start_keyservice
from hub._keyservice import RateLimit
from tests.integration.conftest import Services, person, write_csv


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own server
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def ops_hub(tmp_path: Path, database_url: str) -> Iterator[tuple[str, str]]:
    running = start_hub(HubSettings(listen="127.0.0.1:0", database_url=database_url,
                                    checkpoint_key=tmp_path / "cp.key", migrate=True,
                                    ops_listen="127.0.0.1:0"))
    assert running.ops is not None
    yield running.address, f"http://{running.ops.address}"
    running.stop(grace=1)


def test_health_readiness_and_metrics(ops_hub: tuple[str, str], tmp_path: Path) -> None:
    address, ops = ops_hub
    assert _get(f"{ops}/healthz") == (200, "ok\n")
    assert _get(f"{ops}/readyz") == (200, "ready\n")
    assert _get(f"{ops}/nothing")[0] == 404
    channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "samenloop.v1.SignalService", "samenloop.v1.CoordinatorService"):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()
    with (HubClient(address, rpc.Caller("org-a", "agent", "partner")) as hub,
          pytest.raises(PermissionDenied, match="not registered")):
        hub.call(hub.signals.GetRecipients, signal_pb2.GetRecipientsRequest())
    status, text = _get(f"{ops}/metrics")
    assert status == 200
    assert ('samenloop_requests_total{code="PERMISSION_DENIED",method="recipients.read"}'
            in text)
    assert "samenloop_audit_queue_depth" in text and "samenloop_audit_log_size" in text


def test_metrics_count_what_the_hub_holds_and_name_no_one(services: Services,
                                                           tmp_path: Path) -> None:
    running = start_hub(HubSettings(listen="127.0.0.1:0", database_url=services.database_url,
                                    checkpoint_key=tmp_path / "cp2.key",
                                    ops_listen="127.0.0.1:0"))
    try:
        assert running.ops is not None
        for org, category in (("org-a", "youth_care"), ("org-b", "housing")):
            services.agent(org).submit_file(write_csv(
                tmp_path / f"{org}.csv", [person(f"{org}-1", "111222333", category=category)]))
        _, text = _get(f"http://{running.ops.address}/metrics")
        assert 'samenloop_signals{state="active"} 2.0' in text
        assert 'samenloop_alerts{state="new"} 1.0' in text
        assert 'samenloop_matches{state="disclosed"} 1.0' in text
        assert "111222333" not in text and "youth_care" not in text
    finally:
        running.stop(grace=1)


def test_not_ready_while_stopping(tmp_path: Path) -> None:
    running = start_hub(HubSettings(listen="127.0.0.1:0",
                                    database_url=f"sqlite:///{tmp_path / 'h.db'}",
                                    checkpoint_key=tmp_path / "cp.key", migrate=True,
                                    ops_listen="127.0.0.1:0"))
    assert running.ops is not None
    url = f"http://{running.ops.address}"
    running.stopping.set()  # what SIGTERM sets first
    assert _get(f"{url}/readyz") == (503, "not ready\n")
    assert _get(f"{url}/healthz")[0] == 200
    running.stop(grace=1)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{url}/healthz", timeout=2)  # noqa: S310 - our own server


def test_graceful_shutdown_finishes_a_request_in_flight(services: Services) -> None:
    """A bulk submission that is still streaming when the hub is told to stop completes."""
    recipients = HubClient(services.hub.address, rpc.Caller("org-a", "agent", "partner"))
    sent = threading.Event()
    result: list[signal_pb2.SubmitSignalsResponse] = []

    def items() -> Iterator[signal_pb2.SubmitSignalRequest]:
        yield _bad_signal()
        deadline = time.monotonic() + 10
        while services.hub.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the hub is handling this call
        sent.set()
        time.sleep(1.0)  # the hub is stopping meanwhile
        yield _bad_signal()

    def submit() -> None:
        result.append(recipients.submit_many(items(), timeout=30))

    worker = threading.Thread(target=submit)
    worker.start()
    assert sent.wait(10)
    services.hub.stop(grace=10)
    worker.join(30)
    recipients.close()
    (response,) = result
    assert len(response.rejected) == 2  # both items were answered (refused: no keys)
    assert services.hub.in_flight == 0


def test_a_stopping_hub_refuses_new_calls_while_it_finishes_those_in_flight(
        services: Services) -> None:
    """While a call is in flight, a stopping hub answers new calls UNAVAILABLE (a client
    retries them elsewhere) and health checks NOT_SERVING; the call in flight completes."""
    first = HubClient(services.hub.address, rpc.Caller("org-a", "agent", "partner"))
    second = HubClient(services.hub.address, rpc.Caller("org-a", "agent", "partner"))
    release = threading.Event()
    result: list[signal_pb2.SubmitSignalsResponse] = []

    def items() -> Iterator[signal_pb2.SubmitSignalRequest]:
        yield _bad_signal()
        release.wait(20)
        yield _bad_signal()

    worker = threading.Thread(target=lambda: result.append(first.submit_many(items(),
                                                                               timeout=30)))
    worker.start()
    deadline = time.monotonic() + 10
    while services.hub.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopper = threading.Thread(target=services.hub.stop, kwargs={"grace": 20})
    stopper.start()
    while not services.hub.stopping.is_set():
        time.sleep(0.01)
    with grpc.insecure_channel(services.hub.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="samenloop.v1.SignalService"), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(SamenloopError, match="shutting down"):
        second.submit_many(iter([_bad_signal()]), timeout=5)
    assert services.hub.in_flight == 1
    release.set()
    worker.join(30)
    stopper.join(30)
    first.close()
    second.close()
    (response,) = result
    assert len(response.rejected) == 2


def _bad_signal() -> signal_pb2.SubmitSignalRequest:
    return signal_pb2.SubmitSignalRequest(signal_id=str(uuid.uuid4()), category="youth_care")


def test_the_key_service_limits_each_organisation(tmp_path: Path) -> None:
    running = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0", rate_per_minute=60,
                                                  rate_burst=10, ops_listen="127.0.0.1:0"),
                               key=crypto.OprfKey.generate())
    try:
        elements = [crypto.OprfKey.generate().public_key for _ in range(8)]
        a = KeyServiceClient(running.address, rpc.Caller("org-a", "agent", "partner"))
        b = KeyServiceClient(running.address, rpc.Caller("org-b", "agent", "partner"))
        request = keyservice_pb2.EvaluateRequest(blinded_elements=elements)
        assert len(a.call(a._stub.Evaluate, request).evaluated_elements) == 8
        with pytest.raises(RateLimited, match=r"org-a is over its rate limit.*retry in"):
            a.call(a._stub.Evaluate, request)
        assert len(b.call(b._stub.Evaluate, request).evaluated_elements) == 8
        assert running.ops is not None
        _, text = _get(f"http://{running.ops.address}/metrics")
        assert 'samenloop_oprf_rate_limited_total{organisation="org-a"} 1.0' in text
        assert running.service.usage == {"org-a": 8, "org-b": 8}
        with pytest.raises(InvalidInput, match=r"batch of 11 elements is more than the "
                           r"rate limit's burst \(10\)"):
            a.call(a._stub.Evaluate, keyservice_pb2.EvaluateRequest(
                blinded_elements=elements + elements[:3]))
        # a refused request costs nothing: org-b's 2 elements left are still there
        bad = keyservice_pb2.EvaluateRequest(blinded_elements=[bytes(32)] * 2)
        with pytest.raises(InvalidInput, match="not a valid ristretto255 element"):
            b.call(b._stub.Evaluate, bad)
        two = keyservice_pb2.EvaluateRequest(blinded_elements=elements[:2])
        assert len(b.call(b._stub.Evaluate, two).evaluated_elements) == 2
        a.close()
        b.close()
    finally:
        running.stop(grace=1)


def test_the_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limit = RateLimit(per_minute=600, burst=100, clock=lambda: now[0])
    assert limit.take("org-a", 100) == 0.0
    assert limit.take("org-a", 10) == pytest.approx(1.0)  # 10 per second
    now[0] = 0.5
    assert limit.take("org-a", 5) == 0.0
    assert limit.take("org-a", 20) == pytest.approx(2.0)
    now[0] = 1000.0
    assert limit.take("org-a", 100) == 0.0  # never more than the burst
    assert limit.take("org-a", 1) > 0
    limit.give_back("org-a", 30)  # a refused request's elements
    assert limit.take("org-a", 30) == 0.0 and limit.take("org-a", 1) > 0
    limit.give_back("org-a", 500)
    assert limit.take("org-a", 101) > 0  # still never more than the burst
    assert limit.take("org-a", 100) == 0.0
    with pytest.raises(ValueError, match="positive"):
        RateLimit(per_minute=0, burst=1)
