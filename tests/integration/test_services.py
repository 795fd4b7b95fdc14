"""The product over real gRPC: agents, key service, hub, coordinator, privacy officer."""

from __future__ import annotations

import queue
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import func, select

from agent import AgentSettings
from exchange import crypto, rpc
from exchange.db import make_engine, session_factory
from exchange.errors import (
    FailedPrecondition,
    PermissionDenied,
    SamenloopError,
    Unauthenticated,
    VerificationError,
)
from exchange.v1 import (
    audit_pb2,
    common_pb2,
    coordinator_pb2,
    keyservice_pb2,
    keyservice_pb2_grpc,
    signal_pb2,
    signal_pb2_grpc,
)
from hub import HubSettings, KeyServiceSettings, start_hub, start_keyservice
from hub._inputs import MAX_KEYS
from hub._keyservice import KeyService
from hub._models import AuditEvent, Signal
from hub._service import metadata_identity
from tests.integration.conftest import Services, person, write_csv
from tests.support import row_counts


def test_three_partners_one_alert_opened_by_the_coordinator(services: Services,
                                                            tmp_path: Path) -> None:
    a = write_csv(tmp_path / "a.csv", [person("A-1", "111222333", postcode="9711 AB",
                                              house="12", given="Sem", surname="Vries")])
    b = write_csv(tmp_path / "b.csv", [person("B-1", "123456782", category="housing",
                                              postcode="9711AB", house="12")])
    c = write_csv(tmp_path / "c.csv", [person("C-1", "123456782", category="debt")])
    for org, path in (("org-a", a), ("org-b", b), ("org-c", c)):
        summary = services.agent(org).submit_file(path)
        assert (summary.submitted, summary.invalid, summary.rejected) == (1, [], [])
    desk = services.desk()
    (alert,) = desk.alerts()
    assert {i.organisation_id for i in alert.involved} == {"org-a", "org-b", "org-c"}
    assert "youth_care" not in str(alert) and "housing" not in str(alert)
    _, opened = desk.open(alert.alert_id, services.coord_key)
    identities = {o.organisation_id: o.identity for o in opened}
    assert identities["org-a"] is not None and identities["org-a"].bsn == "111222333"
    assert identities["org-a"].display_name() == "Sem Vries"
    assert identities["org-c"] is not None and identities["org-c"].case_reference == "C-1"
    # a second coordinator key cannot open them
    _, wrong = desk.open(alert.alert_id, crypto.EnvelopeKey.generate())
    assert all(o.identity is None for o in wrong)


def test_rerunning_an_export_submits_nothing_twice(services: Services, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [person("A-1", "111222333"),
                                          person("A-2", "123456782")])
    agent = services.agent("org-a")
    assert agent.submit_file(path).submitted == 2
    again = agent.submit_file(path)
    assert (again.submitted, again.already_submitted) == (0, 2)
    with session_factory(services.engine)() as s:
        assert s.scalar(select(func.count()).select_from(Signal)) == 2


class LyingKeyService(KeyService):
    """Evaluates correctly but returns a proof with one bit flipped."""

    def Evaluate(self, request: Any, context: Any) -> keyservice_pb2.EvaluateResponse:
        response = super().Evaluate(request, context)
        proof = bytearray(response.proof)
        proof[0] ^= 1
        response.proof = bytes(proof)
        return response


def test_a_tampered_proof_stops_the_submission(services: Services, tmp_path: Path) -> None:
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
    keyservice_pb2_grpc.add_KeyServiceServicer_to_server(
        LyingKeyService(crypto.OprfKey.generate(), metadata_identity), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        agent = services.agent("org-a", keyservice=f"127.0.0.1:{port}")
        with pytest.raises(VerificationError, match="did not verify against its published key"):
            agent.submit_file(write_csv(tmp_path / "a.csv", [person("A-1", "111222333")]))
    finally:
        server.stop(0)
    with session_factory(services.engine)() as s:
        assert s.scalar(select(func.count()).select_from(Signal)) == 0


def test_the_agent_refuses_a_key_it_does_not_trust(services: Services, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'pinned.db'}"
    first = services.agent("org-a", state_database=state)
    _, trusted_id = first.oprf_key()
    other = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0"),
                             key=crypto.OprfKey.generate())
    try:
        agent = services.agent("org-a", state_database=state, keyservice=other.address)
        with pytest.raises(FailedPrecondition, match=f"not the key {re.escape(trusted_id)}"):
            agent.oprf_key()
        _, new_id = agent.oprf_key(trust_new=True)
        assert new_id != trusted_id
    finally:
        other.stop(0)


def _stub(services: Services, org: str, role: str, user: str = "u") -> Any:
    channel = rpc.channel(services.hub.address, rpc.Caller(org, user, role))
    return channel, signal_pb2_grpc.SignalServiceStub(channel)


def _denials(services: Services) -> list[AuditEvent]:
    services.hub.hub.integrate()  # the server adds events to the tree within 0.5 s
    with session_factory(services.engine)() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.outcome == "denied")))


def test_roles_are_enforced_and_every_refusal_is_logged(services: Services) -> None:
    partner_as_coordinator = services.desk()
    partner_as_coordinator.hub.close()
    from agent._client import HubClient

    partner = HubClient(services.hub.address, rpc.Caller("org-a", "agent", "partner"))
    with pytest.raises(PermissionDenied, match="role partner may not"):
        partner.call(partner.coordinator.ListAlerts, coordinator_pb2.ListAlertsRequest())
    with pytest.raises(PermissionDenied):
        partner.call(partner.audit.QueryEvents, audit_pb2.QueryEventsRequest())
    coordinator = HubClient(services.hub.address, rpc.Caller("gemeente", "coord-a",
                                                             "coordinator"))
    with pytest.raises(PermissionDenied):
        coordinator.call(coordinator.signals.GetRecipients, signal_pb2.GetRecipientsRequest())
    unregistered = HubClient(services.hub.address, rpc.Caller("org-z", "agent", "partner"))
    with pytest.raises(PermissionDenied, match="org-z is not registered"):
        unregistered.call(unregistered.signals.GetRecipients, signal_pb2.GetRecipientsRequest())
    anonymous = grpc.insecure_channel(services.hub.address)
    with pytest.raises(grpc.RpcError) as info:
        signal_pb2_grpc.SignalServiceStub(anonymous).GetRecipients(
            signal_pb2.GetRecipientsRequest())
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    for client in (partner, coordinator, unregistered):
        client.close()
    anonymous.close()
    denials = _denials(services)
    assert len(denials) == 5
    assert {d.actor_role for d in denials} == {"partner", "coordinator", "anonymous"}
    assert all(d.action == "deny" for d in denials)
    # the privacy officer and the administrator may query the log
    assert list(services.auditor().query(limit=5))
    assert list(services.auditor(role="administrator").query(limit=5))


def _valid_request(services: Services) -> signal_pb2.SubmitSignalRequest:
    agent = services.agent("org-b")
    (recipient,) = agent.hub.call(agent.hub.signals.GetRecipients,
                                  signal_pb2.GetRecipientsRequest()).recipients
    signal_id = str(uuid.uuid4())
    return signal_pb2.SubmitSignalRequest(
        signal_id=signal_id,
        keys=[common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_PERSON, value=bytes(32))],
        category="housing", region="GM0014",
        professional=common_pb2.Contact(name="Pat", phone="050 1234567"),
        envelopes=[common_pb2.SealedEnvelope(
            recipient_id=recipient.coordinator_id, key_fingerprint=recipient.key_fingerprint,
            scheme=crypto.ENVELOPE_SCHEME,
            ciphertext=crypto.seal(b"{}", recipient.public_key, b"x"))])


def _mutations() -> list[tuple[str, Any]]:
    def m(**fields: Any) -> Any:
        def apply(req: signal_pb2.SubmitSignalRequest) -> None:
            for name, value in fields.items():
                if name == "keys":
                    del req.keys[:]
                    req.keys.extend(value)
                elif name == "envelopes":
                    del req.envelopes[:]
                    req.envelopes.extend(value)
                elif name == "professional":
                    req.professional.CopyFrom(value)
                else:
                    setattr(req, name, value)
        return apply

    key = common_pb2.PseudonymousKey
    return [
        ("signal_id", m(signal_id="not-a-uuid")),
        ("signal_id", m(signal_id=str(uuid.uuid4()).upper())),
        ("keys", m(keys=[])),
        ("keys", m(keys=[key(kind=common_pb2.KEY_KIND_PERSON, value=b"short")])),
        ("kind", m(keys=[key(kind=common_pb2.KEY_KIND_UNSPECIFIED, value=bytes(32))])),
        ("kind", m(keys=[key(kind=99, value=bytes(32))])),  # type: ignore[arg-type]
        ("keys", m(keys=[key(kind=1, value=bytes([i]) * 32) for i in range(MAX_KEYS + 1)])),
        ("twice", m(keys=[key(kind=1, value=bytes(32))] * 2)),
        ("category", m(category="gossip")),
        ("region", m(region="GM14")),
        ("professional", m(professional=common_pb2.Contact(name="", phone="050 1234567"))),
        ("professional", m(professional=common_pb2.Contact(name="Pat"))),
        ("email", m(professional=common_pb2.Contact(name="Pat", email="not-an-address"))),
        ("name", m(professional=common_pb2.Contact(name="P\x00at", phone="050 1234567"))),
        ("envelopes", m(envelopes=[common_pb2.SealedEnvelope(
            recipient_id="coord-a", key_fingerprint=bytes(16), scheme="rot13",
            ciphertext=bytes(64))])),
        ("envelopes", m(envelopes=[common_pb2.SealedEnvelope(
            recipient_id="coord-a", key_fingerprint=bytes(3), scheme=crypto.ENVELOPE_SCHEME,
            ciphertext=bytes(64))])),
    ]


@pytest.mark.parametrize(("label", "mutate"), _mutations())
def test_malformed_submissions_are_refused_and_change_nothing(
        services: Services, label: str, mutate: Any) -> None:
    request = _valid_request(services)
    mutate(request)
    engine = services.engine
    services.hub.hub.integrate()
    before = row_counts(engine)
    channel, stub = _stub(services, "org-b", "partner")
    with pytest.raises(grpc.RpcError) as info:
        stub.SubmitSignal(request, timeout=10)
    channel.close()
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, label
    assert info.value.details()
    services.hub.hub.integrate()
    after = row_counts(engine)
    assert after.pop("audit_queue") == before.pop("audit_queue") == 0
    assert after.pop("audit_events") == before.pop("audit_events") + 1  # the refusal is logged
    for grows in ("audit_nodes", "audit_checkpoints"):  # the log's tree, and its signing
        after.pop(grows)
        before.pop(grows)
    assert after == before


def test_the_valid_base_request_is_accepted(services: Services) -> None:
    channel, stub = _stub(services, "org-b", "partner")
    response = stub.SubmitSignal(_valid_request(services), timeout=10)
    channel.close()
    assert not response.duplicate and response.expires_at.seconds > 0


def test_bulk_submission_reports_each_bad_item(services: Services) -> None:
    good = [_valid_request(services) for _ in range(3)]
    bad = _valid_request(services)
    bad.region = "nowhere"
    channel, stub = _stub(services, "org-b", "partner")
    response = stub.SubmitSignals(iter([good[0], bad, good[1], good[2], good[0]]), timeout=10)
    channel.close()
    assert (response.accepted, response.duplicates) == (3, 1)
    (error,) = response.rejected
    assert (error.index, error.signal_id, error.code) == (1, bad.signal_id, "INVALID_ARGUMENT")
    assert "region" in error.message


def test_key_service_refuses_bad_batches(services: Services) -> None:
    channel = rpc.channel(services.keyservice.address, rpc.Caller("org-a", "a", "partner"))
    stub = keyservice_pb2_grpc.KeyServiceStub(channel)
    for elements in ([], [b"\xff" * 32], [b"short"]):
        with pytest.raises(grpc.RpcError) as info:
            stub.Evaluate(keyservice_pb2.EvaluateRequest(blinded_elements=elements))
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.Evaluate(keyservice_pb2.EvaluateRequest(blinded_elements=[bytes(32)], key_id="x"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.Evaluate(keyservice_pb2.EvaluateRequest(blinded_elements=[bytes(32)],
                                                     key_id="0" * 16))
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "0000000000000000 is not the current key" in (info.value.details() or "")
    channel.close()
    coordinator = rpc.channel(services.keyservice.address,
                              rpc.Caller("gemeente", "c", "coordinator"))
    with pytest.raises(grpc.RpcError) as info:
        keyservice_pb2_grpc.KeyServiceStub(coordinator).GetPublicKey(
            keyservice_pb2.GetPublicKeyRequest())
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    coordinator.close()
    assert services.keyservice.service.usage == {}


def test_consent_released_and_revoked_over_grpc(services: Services, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    write = write_csv
    services.agent("org-a").submit_file(write(tmp_path / "a.csv", [
        person("A-1", "111222333", category="mental_health")]))
    services.agent("org-b").submit_file(write(tmp_path / "b.csv", [
        person("B-1", "111222333", category="housing")]))
    desk = services.desk()
    assert desk.alerts() == []
    agent = services.agent("org-a")
    record = agent.grant_consent(covenant_id="test-covenant", evidence="form-7",
                                 valid_until=datetime.now(UTC) + timedelta(days=30),
                                 purposes=["care_coordination"], case_ref="A-1")
    (alert,) = desk.alerts()
    desk.open(alert.alert_id, services.coord_key)
    agent.revoke_consent(record.consent_id)
    assert desk.alerts() == []
    with pytest.raises(PermissionDenied, match="closed"):
        desk.open(alert.alert_id, services.coord_key)


def test_watch_resumes_across_a_hub_restart_without_loss_or_repeat(
        services: Services, tmp_path: Path) -> None:
    events: queue.Queue[coordinator_pb2.AlertEvent] = queue.Queue()
    desk = services.desk()
    stop = threading.Event()

    def watch() -> None:
        try:
            for event in desk.watch(0, reconnect=True, max_backoff=0.2):
                events.put(event)
                if stop.is_set():
                    return
        except SamenloopError:
            return

    def match(n: int) -> None:
        for org, category in (("org-a", "youth_care"), ("org-b", "housing")):
            services.agent(org).submit_file(write_csv(
                tmp_path / f"{org}-{n}.csv",
                [person(f"{org}-{n}", ["111222333", "123456782", "100000009"][n],
                        category=category)]))

    def take(count: int) -> list[coordinator_pb2.AlertEvent]:
        return [events.get(timeout=15) for _ in range(count)]

    threading.Thread(target=watch, daemon=True).start()
    match(0)
    first = take(1)
    address = services.hub.address
    services.hub.stop(grace=1)
    services.hub = start_hub(HubSettings(listen=address, database_url=services.database_url,
                                         checkpoint_key=services.root / "cp.key"))
    match(1)
    match(2)
    later = take(2)
    stop.set()
    desk.close()
    cursors = [e.cursor for e in first + later]
    assert cursors == sorted(set(cursors)) and len(cursors) == 3
    assert len({e.alert.alert_id for e in first + later}) == 3
    time.sleep(0.3)
    assert events.empty()


def test_unauthenticated_key_service_calls_are_refused(services: Services) -> None:
    channel = grpc.insecure_channel(services.keyservice.address)
    with pytest.raises(grpc.RpcError) as info:
        keyservice_pb2_grpc.KeyServiceStub(channel).GetPublicKey(
            keyservice_pb2.GetPublicKeyRequest())
    channel.close()
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert issubclass(Unauthenticated, SamenloopError)


def test_servers_refuse_non_loopback_addresses(tmp_path: Path) -> None:
    from exchange.errors import ConfigError

    with pytest.raises(ConfigError, match="only loopback"):
        start_keyservice(KeyServiceSettings(listen="0.0.0.0:0"), key=crypto.OprfKey.generate())
    settings = AgentSettings(organisation="org-a")
    assert settings.hub.startswith("127.0.0.1")


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("[::1]", True),
    ("0.0.0.0", False),  # noqa: S104 - the address that must be refused
    ("10.1.2.3", False), ("192.168.1.10", False), ("no-such-host.invalid", False),
])
def test_loopback_is_decided_by_address(host: str, loopback: bool) -> None:
    from hub._server import _is_loopback

    assert _is_loopback(host) is loopback


def test_the_agent_pins_coordinator_keys(services: Services, tmp_path: Path) -> None:
    agent = services.agent("org-a")
    export = write_csv(tmp_path / "a.csv", [person("A-1", "111222333")])
    assert agent.submit_file(export).submitted == 1
    new_key = crypto.EnvelopeKey.generate()
    services.admin().coordinator("coord-a", "gemeente", "Coordinator A", "050 0000000", "",
                                 new_key.public_key)
    second = write_csv(tmp_path / "b.csv", [person("A-2", "123456782")])
    with pytest.raises(FailedPrecondition, match="envelope key of coordinator coord-a changed"):
        agent.submit_file(second)
    assert agent.trust_current_keys() == [
        f"coordinator coord-a key {crypto.fingerprint(new_key.public_key).hex()}"]
    assert agent.submit_file(second).submitted == 1


def test_an_agent_state_belongs_to_one_organisation(services: Services, tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'shared.db'}"
    services.agent("org-a", state_database=state)
    with pytest.raises(FailedPrecondition, match="belongs to organisation org-a"):
        services.agent("org-b", state_database=state)


def test_the_auditor_pins_and_remembers(services: Services, tmp_path: Path) -> None:
    import json

    from agent import Auditor, AuditSettings
    from exchange.errors import IntegrityError

    state = tmp_path / "po.json"
    settings = AuditSettings(organisation="gemeente", hub=services.hub.address,
                             origin=services.hub.hub.origin, state_file=state)
    with Auditor(settings) as auditor:
        _, signed = auditor.checkpoint()
        assert "pinned the hub's checkpoint key" in auditor.notices[0]
    saved = json.loads(state.read_text())
    assert saved["hub_key"] == services.hub.hub.checkpoint_public_key.hex()
    assert saved["checkpoint"]["size"] == signed.size
    with Auditor(settings) as auditor:
        auditor.checkpoint()
        assert auditor.notices == []
    saved = json.loads(state.read_text())
    saved["checkpoint"]["size"] = 10_000  # as if the log had been longer before
    state.write_text(json.dumps(saved))
    with Auditor(settings) as auditor, pytest.raises(IntegrityError, match="shrank"):
        auditor.checkpoint()
    saved["hub_key"] = "00" * 32
    state.write_text(json.dumps(saved))
    with Auditor(settings) as auditor, pytest.raises(IntegrityError, match="trusted key"):
        auditor.checkpoint()
    other = AuditSettings(organisation="gemeente", hub=services.hub.address,
                          origin="other.example/hub", state_file=tmp_path / "x.json")
    with Auditor(other) as auditor, pytest.raises(FailedPrecondition, match="signs as origin"):
        auditor.checkpoint()


def test_evidence_must_be_a_reference_code(services: Services, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from exchange.errors import InvalidInput

    agent = services.agent("org-a")
    agent.submit_file(write_csv(tmp_path / "a.csv", [person("A-1", "111222333")]))
    with pytest.raises(InvalidInput, match="reference code"):
        agent.grant_consent(covenant_id="test-covenant", evidence="Jan Jansen",
                            valid_until=datetime.now(UTC) + timedelta(days=3),
                            purposes=["care_coordination"], case_ref="A-1")


def test_watch_from_now_and_the_seen_change(services: Services, tmp_path: Path) -> None:
    services.agent("org-a").submit_file(write_csv(tmp_path / "a.csv",
                                                  [person("A-1", "111222333")]))
    services.agent("org-b").submit_file(write_csv(tmp_path / "b.csv", [
        person("B-1", "111222333", category="housing")]))
    desk = services.desk()
    events: queue.Queue[coordinator_pb2.AlertEvent] = queue.Queue()

    def watch() -> None:
        try:
            for event in desk.watch(None, reconnect=False):
                events.put(event)
        except SamenloopError:
            return

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(0.5)
    assert events.empty()  # the alert made before watching is not replayed
    (alert,) = desk.alerts()
    desk.open(alert.alert_id, services.coord_key)
    seen = events.get(timeout=10)
    assert (seen.change, seen.alert.state) == (coordinator_pb2.ALERT_CHANGE_UPDATED,
                                               coordinator_pb2.ALERT_STATE_SEEN)
    desk.close()


def test_newest_first_and_repeated_withdrawal(services: Services, tmp_path: Path) -> None:
    agent = services.agent("org-a")
    agent.submit_file(write_csv(tmp_path / "a.csv", [person("A-1", "111222333")]))
    agent.withdraw(reason="risk_gone", case_ref="A-1")
    with pytest.raises(FailedPrecondition, match="already withdrawn on"):
        agent.withdraw(reason="risk_gone", case_ref="A-1")
    # judged unjustified after all: the archived signal is deleted at the hub
    (sid,) = agent.withdraw(reason="unjustified", case_ref="A-1")
    with session_factory(services.engine)() as s:
        assert s.get(Signal, sid) is None
    with pytest.raises(FailedPrecondition, match="already withdrawn on"):
        agent.withdraw(reason="unjustified", case_ref="A-1")
    auditor = services.auditor(role="administrator")
    newest = [e.index for e in auditor.query(limit=5, newest_first=True)]
    assert newest == sorted(newest, reverse=True) and len(newest) == 5
    oldest = [e.index for e in auditor.query(limit=5)]
    assert oldest == [0, 1, 2, 3, 4]


def test_a_checkpoint_is_signed_within_a_second_of_a_write(services: Services,
                                                           tmp_path: Path) -> None:
    from hub import _audit

    services.agent("org-a").submit_file(write_csv(tmp_path / "a.csv",
                                                  [person("A-1", "111222333")]))
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        with session_factory(services.engine)() as s:
            if _audit.unsigned_events(s) == _audit.queued(s) == 0:
                break
        time.sleep(0.05)
    with session_factory(services.engine)() as s:
        assert _audit.queued(s) == 0  # every event is in the tree
        assert _audit.unsigned_events(s) == 0
        latest = _audit.latest_checkpoint(s)
        assert latest is not None and latest.size == _audit.head(s)[0] > 0


def test_a_stopping_hub_adds_waiting_events_and_signs_them(tmp_path: Path) -> None:
    from agent import Admin, AdminSettings
    from hub import _audit

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    running = start_hub(HubSettings(listen="127.0.0.1:0", database_url=url, migrate=True,
                                    checkpoint_key=tmp_path / "cp.key",
                                    checkpoint_seconds=3600))  # the thread never runs
    admin = Admin(AdminSettings(organisation="gemeente", hub=running.address))
    admin.organisation("gemeente", "Gemeente")
    admin.close()
    engine = make_engine(url)
    try:
        with session_factory(engine)() as s:
            assert (_audit.queued(s), _audit.head(s)[0]) == (1, 0)  # waiting
        running.stop()
        with session_factory(engine)() as s:
            assert (_audit.queued(s), _audit.head(s)[0], _audit.unsigned_events(s)) == (0, 1, 0)
    finally:
        engine.dispose()


def test_subject_access_end_to_end(services: Services, tmp_path: Path) -> None:
    from agent import Auditor, AuditSettings

    services.agent("org-a").submit_file(write_csv(tmp_path / "a.csv", [
        person("A-1", "111222333"), person("A-2", "123456782")]))
    services.agent("org-b").submit_file(write_csv(tmp_path / "b.csv", [
        person("B-1", "111222333", category="housing")]))
    desk = services.desk()
    (alert,) = desk.alerts()
    desk.open(alert.alert_id, services.coord_key)
    settings = AuditSettings(organisation="org-a", hub=services.hub.address,
                             keyservice=services.keyservice.address,
                             origin=services.hub.hub.origin, state_file=tmp_path / "po.json")
    with Auditor(settings) as officer:
        signals, found = officer.subject_access("111222333")
        assert signals == 1
        assert [(d.event.event_type, d.recipient) for d in found] == [
            ("alert.create", "coord-a"), ("alert.open", "coord-a (gemeente)")]
        assert all(d.event.owner_organisation_id == "org-a" for d in found)
        assert officer.subject_access("123456782") == (1, [])  # known, never disclosed
        assert officer.subject_access("100000009") == (0, [])  # unknown to org-a


def test_the_agent_refuses_a_log_that_shrank(services: Services, tmp_path: Path) -> None:
    import json

    from agent._models import Pin
    from exchange.errors import IntegrityError

    state = f"sqlite:///{tmp_path / 'a.db'}"
    agent = services.agent("org-a", state_database=state)
    agent.submit_file(write_csv(tmp_path / "a.csv", [person("A-1", "111222333")]))
    with session_factory(agent._engine).begin() as s:
        pin = s.get_one(Pin, "log:checkpoint")
        seen = json.loads(pin.value)
        seen["size"] += 1000
        pin.value = json.dumps(seen).encode()
    again = services.agent("org-a", state_database=state)
    with pytest.raises(IntegrityError, match="shrank"):
        again.submit_file(write_csv(tmp_path / "b.csv", [person("A-2", "123456782")]))


def test_a_query_proves_every_event_and_refuses_one_the_log_does_not_hold(
        services: Services, tmp_path: Path) -> None:
    from exchange import auditlog
    from exchange.errors import IntegrityError
    from hub._models import AuditEvent

    services.agent("org-a").submit_file(write_csv(tmp_path / "a.csv", [
        person("A-1", "111222333")]))
    events = list(services.auditor(org="org-a").query(limit=1000))
    assert any(e.event_type == "signal.submit" for e in events)
    assert [e.index for e in events] == sorted(e.index for e in events)
    # someone with database access rewrites who submitted, and the leaf hash to match
    with session_factory(services.engine).begin() as s:
        row = s.scalar(select(AuditEvent).where(AuditEvent.event_type == "signal.submit"))
        assert row is not None
        row.actor_user = "someone-else"
        row.leaf_hash = auditlog.leaf_hash(row.as_dict())
        edited = row.seq
    with pytest.raises(IntegrityError, match=f"event #{edited} is not proven"):
        list(services.auditor(org="org-a").query(limit=1000, event_type="signal.submit"))
