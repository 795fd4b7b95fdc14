"""Hub ingest: signals/s through the real gRPC path with matching on, against the same rows
inserted raw into the same tables, in one run on the same database server.

Both sides get the same pre-pseudonymised signals (three partners per family, so every
family becomes a match and an alert), the same number of concurrent writers and the same
200 signals per transaction. The hub runs as its own process (`samenloop hub serve`) and
does what it always does: households, the disclosure gate, alerts, the access log. The raw
side only inserts households, signals, their keys and envelopes with executemany.

    python bench/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test \
        [--signals 12000] [--writers 3] [--order lockstep|shuffled]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url

from agent import Admin, AdminSettings
from exchange import crypto, rpc
from exchange.db import make_engine, migrate
from exchange.v1 import common_pb2, signal_pb2, signal_pb2_grpc
from hub import MIGRATIONS
from hub._models import Envelope, Household, Signal, SignalKey

ORGS = {"org-a": "youth_care", "org-b": "housing", "org-c": "debt"}
CHUNK = 200
COVENANT = """\
id = "bench"
name = "Bench covenant"
legal_basis = "AVG art. 6(1)(e)"
valid_from = 2020-01-01
valid_until = 2099-12-31
coordinator = "coord-a"
parties = ["org-a", "org-b", "org-c"]
purposes = ["care_coordination"]
regions = ["GM0014"]

[categories]
youth_care = "covenant"
housing = "covenant"
debt = "covenant"
"""


@contextmanager
def fresh_database(base: str, label: str) -> Iterator[str]:
    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def signals(n: int, coord_key: bytes, *, shuffled: bool = False
            ) -> dict[str, list[signal_pb2.SubmitSignalRequest]]:
    """n signals, per organisation, about n/3 families: one per partner per family; in
    family order (the partners submit the same families at the same moment), or each
    partner's in its own seeded order."""
    fingerprint = crypto.fingerprint(coord_key)
    out: dict[str, list[signal_pb2.SubmitSignalRequest]] = {org: [] for org in ORGS}
    for i in range(n):
        org = list(ORGS)[i % 3]
        family = i // 3
        sid = str(uuid.uuid4())
        out[org].append(signal_pb2.SubmitSignalRequest(
            signal_id=sid, category=ORGS[org], region="GM0014",
            keys=[common_pb2.PseudonymousKey(
                kind=common_pb2.KEY_KIND_PERSON,
                value=hashlib.sha256(f"person-{family}".encode()).digest())],
            professional=common_pb2.Contact(name="Pat", phone="050 1234567"),
            envelopes=[common_pb2.SealedEnvelope(
                recipient_id="coord-a", key_fingerprint=fingerprint,
                scheme=crypto.ENVELOPE_SCHEME,
                ciphertext=crypto.seal(b'{"bsn": "x"}', coord_key, sid.encode()))]))
    if shuffled:
        for org, requests in out.items():
            random.Random(org).shuffle(requests)
    return out


def run_threads(work: dict[str, list[signal_pb2.SubmitSignalRequest]], job: object,
                writers: int) -> float:
    """Split each organisation's signals over the writers; returns the wall time."""
    parts = [(org, reqs[i::max(1, writers // len(work))])
             for org, reqs in work.items() for i in range(max(1, writers // len(work)))]
    threads = [threading.Thread(target=job, args=part) for part in parts]  # type: ignore[arg-type]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def through_grpc(url: str, work: dict[str, list[signal_pb2.SubmitSignalRequest]],
                 coord_key: bytes, writers: int, root: Path) -> float:
    engine = make_engine(url)
    migrate(engine, MIGRATIONS)
    engine.dispose()
    script = Path(sys.executable).parent / "samenloop"
    proc = subprocess.Popen([str(script), "hub", "serve", "--listen", "127.0.0.1:0",
                             "--database-url", url, "--checkpoint-key", str(root / "cp.key")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout is not None
        found = re.search(r"listening on (\S+)", proc.stdout.readline())
        assert found, "the hub did not start"
        address = found.group(1)
        with Admin(AdminSettings(organisation="gemeente", hub=address)) as adm:
            adm.organisation("gemeente", "Gemeente")
            for org in ORGS:
                adm.organisation(org, org)
            adm.coordinator("coord-a", "gemeente", "C", "050 1234567", "", coord_key)
            (root / "cov.toml").write_text(COVENANT)
            adm.covenant(root / "cov.toml")

        def submit(org: str, requests: list[signal_pb2.SubmitSignalRequest]) -> None:
            channel = rpc.channel(address, rpc.Caller(org, "agent", "partner"))
            stub = signal_pb2_grpc.SignalServiceStub(channel)
            for i in range(0, len(requests), CHUNK):
                response = stub.SubmitSignals(iter(requests[i:i + CHUNK]), timeout=600)
                assert response.accepted == len(requests[i:i + CHUNK]), response.rejected[:1]
            channel.close()

        return run_threads(work, submit, writers)
    finally:
        proc.terminate()
        proc.wait(60)


def raw(url: str, work: dict[str, list[signal_pb2.SubmitSignalRequest]],
        writers: int) -> float:
    engine = make_engine(url, pool_size=writers + 2)
    migrate(engine, MIGRATIONS)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO organisations (id, name, registered_at) VALUES "
                          "('org-a','a',now()),('org-b','b',now()),('org-c','c',now()),"
                          "('gemeente','g',now())"))
        conn.execute(text("INSERT INTO coordinators (id, organisation_id, name, phone, email, "
                          "public_key, key_fingerprint, registered_at) VALUES ('coord-a', "
                          "'gemeente', 'C', '', '', :k, :f, now())"),
                     {"k": bytes(32), "f": bytes(16)})
    now = datetime.now(UTC)

    def insert_rows(org: str, requests: list[signal_pb2.SubmitSignalRequest]) -> None:
        for i in range(0, len(requests), CHUNK):
            chunk = requests[i:i + CHUNK]
            households = [{"id": uuid.uuid4().hex, "created_at": now, "merged_into": None,
                           "split_from": None} for _ in chunk]
            with engine.begin() as conn:
                conn.execute(insert(Household), households)
                conn.execute(insert(Signal), [{
                    "id": r.signal_id, "organisation_id": org, "household_id": h["id"],
                    "category": r.category, "region": r.region, "professional_name": "Pat",
                    "professional_phone": "050 1234567", "professional_email": "",
                    "observed_at": now, "received_at": now,
                    "expires_at": now + timedelta(days=730), "state": "active",
                    "withdrawn_at": None, "withdrawal_reason": None,
                    "content_sha256": hashlib.sha256(r.SerializeToString()).digest(),
                    "archived_at": None, "archive_reason": None, "purge_after": None,
                    "notice_used_at": None} for r, h in zip(chunk, households, strict=True)])
                conn.execute(insert(SignalKey), [
                    {"signal_id": r.signal_id, "kind": k.kind, "value": k.value}
                    for r in chunk for k in r.keys])
                conn.execute(insert(Envelope), [
                    {"signal_id": r.signal_id, "recipient_id": e.recipient_id,
                     "key_fingerprint": e.key_fingerprint, "scheme": e.scheme,
                     "ciphertext": e.ciphertext} for r in chunk for e in r.envelopes])

    try:
        return run_threads(work, insert_rows, writers)
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True,
                        help="a PostgreSQL server URL; two scratch databases are made on it")
    parser.add_argument("--signals", type=int, default=12000)
    parser.add_argument("--order", choices=("lockstep", "shuffled"), default="lockstep",
                        help="lockstep: the partners submit the same families at the same "
                        "moment (the most lock contention); shuffled: each in its own order")
    parser.add_argument("--writers", type=int, default=3,
                        help="concurrent writers (a multiple of 3: one per partner or more)")
    args = parser.parse_args()
    coord = crypto.EnvelopeKey.generate()
    work = signals(args.signals, coord.public_key, shuffled=args.order == "shuffled")
    n = sum(len(v) for v in work.values())
    with tempfile.TemporaryDirectory() as tmp, \
            fresh_database(args.database_url, "grpc") as grpc_url, \
            fresh_database(args.database_url, "raw") as raw_url:
        took_raw = raw(raw_url, work, args.writers)
        took_grpc = through_grpc(grpc_url, work, coord.public_key, args.writers, Path(tmp))
    grpc_rate, raw_rate = n / took_grpc, n / took_raw
    print(f"{n} signals, {n // 3} families (every one a match and an alert), "
          f"{args.writers} writers, {CHUNK} signals per transaction, {args.order} order")
    print(f"through the hub over gRPC: {took_grpc:7.2f} s = {grpc_rate:8,.0f} signals/s")
    print(f"raw inserts, same tables:  {took_raw:7.2f} s = {raw_rate:8,.0f} signals/s")
    print(f"ratio hub / raw: {grpc_rate / raw_rate:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
