"""Two hub processes on one PostgreSQL database, hammered concurrently: one household, one
match and one alert per family, one consistent access log, and a watch stream on either
replica that misses and repeats nothing."""

from __future__ import annotations

import hashlib
import queue
import random
import threading
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agent import Admin, AdminSettings, CoordinatorDesk, CoordinatorSettings
from exchange import checkpoint, crypto, rpc
from exchange.db import make_engine, session_factory
from exchange.errors import SamenloopError
from exchange.v1 import common_pb2, coordinator_pb2, signal_pb2, signal_pb2_grpc
from hub import verify_database
from hub._models import Alert, AlertFeed, AlertSignal, Household, Match, Signal
from tests.integration.conftest import Server, samenloop
from tests.support import current_covenant

FAMILIES = 24
ORIGIN = "samenloop.local/hub"  # the servers' default
CATEGORIES = {"org-a": "youth_care", "org-b": "housing", "org-c": "debt"}


def _pseudonym(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _request(org: str, family: int, n: int,
             recipient: signal_pb2.Recipient) -> signal_pb2.SubmitSignalRequest:
    """A signal about a member of a family: the mother (a person key) and the family's
    address, so that signals arriving in any order link into one household."""
    keys = [common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_PERSON,
                                       value=_pseudonym(f"mother-{family}"))]
    if n % 2:
        keys.append(common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_ADDRESS,
                                               value=_pseudonym(f"home-{family}")))
    signal_id = str(uuid.uuid4())
    return signal_pb2.SubmitSignalRequest(
        signal_id=signal_id, keys=keys, category=CATEGORIES[org], region="GM0014",
        professional=common_pb2.Contact(name=f"Prof {org}", phone="050 1234567"),
        envelopes=[common_pb2.SealedEnvelope(
            recipient_id=recipient.coordinator_id, key_fingerprint=recipient.key_fingerprint,
            scheme=crypto.ENVELOPE_SCHEME,
            ciphertext=crypto.seal(b"{}", recipient.public_key, signal_id.encode()))])


@pytest.mark.postgres
def test_two_replicas_hammered_concurrently(postgres_url: str, tmp_path: Path) -> None:
    assert samenloop("hub", "migrate", "--database-url", postgres_url).returncode == 0
    key_file = tmp_path / "hub-checkpoint.key"
    signer = checkpoint.CheckpointSigner.load_or_create(key_file, ORIGIN)  # shared by both
    replicas = [Server("hub", "serve", "--listen", "127.0.0.1:0", "--database-url",
                       postgres_url, "--checkpoint-key", str(key_file), cwd=tmp_path)
                for _ in range(2)]
    engine = make_engine(postgres_url)
    try:
        coord_key = crypto.EnvelopeKey.generate()
        with Admin(AdminSettings(organisation="gemeente", hub=replicas[0].address)) as admin:
            admin.organisation("gemeente", "Gemeente")
            for org in CATEGORIES:
                admin.organisation(org, org.upper())
            admin.coordinator("coord-a", "gemeente", "Coordinator A", "050 0000000", "",
                              coord_key.public_key)
            (tmp_path / "covenant.toml").write_text(current_covenant())
            admin.covenant(tmp_path / "covenant.toml")

        # a coordinator watching on the second replica while both take submissions
        events: queue.Queue[coordinator_pb2.AlertEvent] = queue.Queue()
        desk = CoordinatorDesk(CoordinatorSettings(
            coordinator_id="coord-a", organisation="gemeente", hub=replicas[1].address,
            key_file=tmp_path / "none.key", state_file=tmp_path / "watch.json"))

        def watch() -> None:
            try:
                for event in desk.watch(0, reconnect=False):
                    events.put(event)
            except SamenloopError:
                return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        channels = {org: [rpc.channel(r.address, rpc.Caller(org, "agent", "partner"))
                          for r in replicas] for org in CATEGORIES}
        stubs = {org: [signal_pb2_grpc.SignalServiceStub(c) for c in chans]
                 for org, chans in channels.items()}
        recipient = {org: stubs[org][0].GetRecipients(signal_pb2.GetRecipientsRequest(),
                                                      timeout=10).recipients[0]
                     for org in CATEGORIES}
        work = [(org, family, n) for family in range(FAMILIES) for org in CATEGORIES
                for n in range(2)]
        random.Random(7).shuffle(work)  # noqa: S311 - a repeatable order, not a secret
        family_of: dict[str, int] = {}

        def send(item: tuple[str, int, int]) -> None:
            org, family, n = item
            request = _request(org, family, n, recipient[org])
            family_of[request.signal_id] = family
            stubs[org][(family + n) % 2].SubmitSignal(request, timeout=60)

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(send, work))

        with session_factory(engine)() as s:
            households = dict(s.execute(select(Signal.id, Signal.household_id)).all())
            by_family: dict[int, set[str]] = defaultdict(set)
            for sid, household in households.items():
                by_family[family_of[sid]].add(household)
            assert {f: len(h) for f, h in by_family.items()} == dict.fromkeys(
                range(FAMILIES), 1), "a family was split over households"
            live = {h for (h,) in by_family.values()}
            assert s.scalar(select(func.count()).select_from(Household).where(
                Household.merged_into.is_(None), Household.id.in_(live))) == FAMILIES
            matches = Counter(s.scalars(select(Match.household_id).where(
                Match.status == "disclosed")))
            assert matches == dict.fromkeys(live, 1)
            alerts = s.execute(select(Alert.id, Alert.household_id, Alert.state)).all()
            assert sorted(h for _, h, _ in alerts) == sorted(live), "one alert per family"
            assert {state for _, _, state in alerts} == {"new"}
            shown = Counter(s.scalars(select(AlertSignal.alert_id)))
            assert set(shown.values()) == {len(CATEGORIES) * 2}  # every signal shown once
            feed = list(s.scalars(select(AlertFeed.seq).where(
                AlertFeed.coordinator_id == "coord-a").order_by(AlertFeed.seq)))
            created = Counter(s.scalars(select(AlertFeed.alert_id).where(
                AlertFeed.change == "created")))
            assert set(created.values()) == {1} and len(created) == FAMILIES

        # the stream on the other replica saw every change once, in order
        received = []
        while len(received) < len(feed):
            received.append(events.get(timeout=30))
        desk.close()
        cursors = [e.cursor for e in received]
        assert cursors == feed
        assert events.empty()

        for chans in channels.values():
            for channel in chans:
                channel.close()
    finally:
        codes = [r.stop() for r in replicas]
        engine.dispose()
    assert codes == [0, 0]
    # one access log: every event of both replicas in one tree, checkpoints signed by both
    result = verify_database(postgres_url, public_key=signer.public_key, origin=ORIGIN)
    assert result.ok, result.describe()
    assert result.size > FAMILIES * len(CATEGORIES) * 2



@pytest.mark.postgres
def test_a_change_on_one_replica_wakes_watchers_on_the_other(
        postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub import HubSettings, start_hub
    from hub._service import CoordinatorService

    # without the database's notification a watcher would wait a minute for its next look
    monkeypatch.setattr(CoordinatorService, "POLL_SECONDS", 60.0)
    settings = HubSettings(listen="127.0.0.1:0", database_url=postgres_url,
                           checkpoint_key=tmp_path / "cp.key", migrate=True)
    first = start_hub(settings)
    second = start_hub(settings)
    try:
        coord_key = crypto.EnvelopeKey.generate()
        with Admin(AdminSettings(organisation="gemeente", hub=first.address)) as admin:
            admin.organisation("gemeente", "Gemeente")
            for org in CATEGORIES:
                admin.organisation(org, org.upper())
            admin.coordinator("coord-a", "gemeente", "Coordinator A", "050 0000000", "",
                              coord_key.public_key)
            (tmp_path / "covenant.toml").write_text(current_covenant())
            admin.covenant(tmp_path / "covenant.toml")
        events: queue.Queue[coordinator_pb2.AlertEvent] = queue.Queue()
        desk = CoordinatorDesk(CoordinatorSettings(
            coordinator_id="coord-a", organisation="gemeente", hub=second.address,
            key_file=tmp_path / "none.key", state_file=tmp_path / "watch.json"))

        def watch() -> None:
            try:
                for event in desk.watch(None, reconnect=False):
                    events.put(event)
            except SamenloopError:
                return

        threading.Thread(target=watch, daemon=True).start()
        with pytest.raises(queue.Empty):
            events.get(timeout=1.0)  # the stream is open and idle
        for org in ("org-a", "org-b"):
            channel = rpc.channel(first.address, rpc.Caller(org, "agent", "partner"))
            stub = signal_pb2_grpc.SignalServiceStub(channel)
            (recipient,) = stub.GetRecipients(signal_pb2.GetRecipientsRequest(),
                                              timeout=10).recipients
            stub.SubmitSignal(_request(org, 1, 0, recipient), timeout=10)
            channel.close()
        event = events.get(timeout=10)
        assert event.change == coordinator_pb2.ALERT_CHANGE_CREATED
        desk.close()
    finally:
        second.stop(grace=1)
        first.stop(grace=1)
