"""Alert latency: from a partner's submission to the coordinator's watch stream, with a
growing number of signals already stored (PostgreSQL, the hub as its own process).

For each size the database is filled with signals of distinct people (inserted raw, as
in bench/ingest.py), the hub starts, a coordinator watches, and then, one family at a
time, partner A submits a signal and partner B one about the same person: the time from
B's call to the ALERT_CHANGE_CREATED event on the coordinator's stream is measured.

    python bench/alert_latency.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test \
        [--sizes 10000,100000,1000000] [--alerts 200]
"""

from __future__ import annotations

import argparse
import hashlib
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

from agent import Admin, AdminSettings, CoordinatorDesk, CoordinatorSettings
from exchange import crypto, rpc
from exchange.db import make_engine, migrate
from exchange.v1 import common_pb2, coordinator_pb2, signal_pb2, signal_pb2_grpc
from hub import MIGRATIONS
from hub._models import Envelope, Household, Signal, SignalKey

sys.path.insert(0, str(Path(__file__).parent))
from ingest import COVENANT, fresh_database

BATCH = 5000


def prefill(url: str, n: int, coord_key: bytes) -> float:
    """n signals of n distinct people, straight into the tables; returns the seconds."""
    engine = make_engine(url)
    migrate(engine, MIGRATIONS)
    now = datetime.now(UTC)
    fingerprint = crypto.fingerprint(coord_key)
    sealed = crypto.seal(b'{"bsn": "x"}', coord_key, b"prefill")
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO organisations (id, name, registered_at) VALUES "
                          "('org-a','A',now()),('org-b','B',now()),('org-c','C',now()),"
                          "('gemeente','G',now())"))
        conn.execute(text("INSERT INTO coordinators (id, organisation_id, name, phone, email, "
                          "public_key, key_fingerprint, registered_at) VALUES ('coord-a', "
                          "'gemeente', 'C', '050 1234567', '', :k, :f, now())"),
                     {"k": coord_key, "f": fingerprint})
    for first in range(0, n, BATCH):
        rows = range(first, min(n, first + BATCH))
        households = {i: uuid.uuid4().hex for i in rows}
        ids = {i: str(uuid.uuid4()) for i in rows}
        with engine.begin() as conn:
            conn.execute(insert(Household), [{"id": households[i], "created_at": now,
                                              "merged_into": None, "split_from": None}
                                             for i in rows])
            conn.execute(insert(Signal), [{
                "id": ids[i], "organisation_id": ("org-a", "org-b", "org-c")[i % 3],
                "household_id": households[i], "category": "youth_care", "region": "GM0014",
                "professional_name": "Pat", "professional_phone": "050 1234567",
                "professional_email": "", "observed_at": now, "received_at": now,
                "expires_at": now + timedelta(days=700), "state": "active",
                "withdrawn_at": None, "withdrawal_reason": None,
                "content_sha256": bytes(32), "archived_at": None, "archive_reason": None,
                "purge_after": None, "notice_used_at": None} for i in rows])
            conn.execute(insert(SignalKey), [
                {"signal_id": ids[i], "kind": 1,
                 "value": hashlib.sha256(f"stored-{i}".encode()).digest()} for i in rows])
            conn.execute(insert(Envelope), [
                {"signal_id": ids[i], "recipient_id": "coord-a",
                 "key_fingerprint": fingerprint, "scheme": crypto.ENVELOPE_SCHEME,
                 "ciphertext": sealed} for i in rows])
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    engine.dispose()
    return time.perf_counter() - start


def request(person: str, category: str,
            recipient: signal_pb2.Recipient) -> signal_pb2.SubmitSignalRequest:
    sid = str(uuid.uuid4())
    return signal_pb2.SubmitSignalRequest(
        signal_id=sid, category=category, region="GM0014",
        keys=[common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_PERSON,
                                         value=hashlib.sha256(person.encode()).digest())],
        professional=common_pb2.Contact(name="Pat", phone="050 1234567"),
        envelopes=[common_pb2.SealedEnvelope(
            recipient_id=recipient.coordinator_id, key_fingerprint=recipient.key_fingerprint,
            scheme=crypto.ENVELOPE_SCHEME,
            ciphertext=crypto.seal(b"{}", recipient.public_key, sid.encode()))])


def measure(url: str, alerts: int, root: Path) -> list[float]:
    script = Path(sys.executable).parent / "samenloop"
    proc = subprocess.Popen([str(script), "hub", "serve", "--listen", "127.0.0.1:0",
                             "--database-url", url, "--checkpoint-key", str(root / "cp.key")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        found = re.search(r"listening on (\S+)", proc.stdout.readline())
        assert found, "the hub did not start"
        address = found.group(1)
        with Admin(AdminSettings(organisation="gemeente", hub=address)) as adm:
            (root / "cov.toml").write_text(COVENANT)
            adm.covenant(root / "cov.toml")
        events: queue.Queue[tuple[float, coordinator_pb2.AlertEvent]] = queue.Queue()
        desk = CoordinatorDesk(CoordinatorSettings(
            coordinator_id="coord-a", organisation="gemeente", hub=address,
            key_file=root / "none.key", state_file=root / "watch.json"))

        def watch() -> None:
            for event in desk.watch(None, reconnect=False):
                events.put((time.perf_counter(), event))

        threading.Thread(target=watch, daemon=True).start()
        time.sleep(0.5)
        stubs = {}
        for org in ("org-a", "org-b"):
            stub = signal_pb2_grpc.SignalServiceStub(
                rpc.channel(address, rpc.Caller(org, "agent", "partner")))
            (recipient,) = stub.GetRecipients(signal_pb2.GetRecipientsRequest()).recipients
            stubs[org] = (stub, recipient)
        latencies = []
        for i in range(alerts):
            person = f"new-{uuid.uuid4()}"
            stub, recipient = stubs["org-a"]
            stub.SubmitSignal(request(person, "youth_care", recipient), timeout=30)
            stub, recipient = stubs["org-b"]
            second = request(person, "housing", recipient)
            start = time.perf_counter()
            stub.SubmitSignal(second, timeout=30)
            while True:
                at, event = events.get(timeout=30)
                if event.change == coordinator_pb2.ALERT_CHANGE_CREATED:
                    break
            if i >= 5:  # the first few warm the caches
                latencies.append((at - start) * 1000)
        desk.close()
        return latencies
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--alerts", type=int, default=200)
    args = parser.parse_args()
    coord = crypto.EnvelopeKey.generate()
    print("signals stored | fill (s) | alerts | p50 ms | p99 ms | max ms")
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp, \
                fresh_database(args.database_url, "latency") as url:
            filled = prefill(url, size, coord.public_key)
            ms = sorted(measure(url, args.alerts, Path(tmp)))
            p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
            print(f"{size:>14,} | {filled:8.1f} | {len(ms):6} | {statistics.median(ms):6.1f} "
                  f"| {p99:6.1f} | {ms[-1]:6.1f}", flush=True)


if __name__ == "__main__":
    main()
