"""Hub ingest: signals/s through the real gRPC path with matching on, against the same rows
inserted raw into the same tables, in one run on the same database server.

The hub gets pre-pseudonymised signals (three partners per family, so every family
becomes a match and an alert) from concurrent writers, 200 signals per transaction. It
runs as its own process (`samenloop hub serve`) and does what it always does: households,
the disclosure gate, alerts, the access log. Then every row it wrote (households,
signals, keys, envelopes, matches, alerts, their links and feed, the access log's events,
tree nodes and checkpoints) is inserted raw into the same tables of a fresh database with
executemany: as many transactions, each holding whole households, the same writers.

    python bench/ingest.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test \
        [--signals 12000] [--writers 3] [--order lockstep|shuffled] [--replicas 1] \
        [--rounds 1]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from agent import Admin, AdminSettings
from exchange import crypto, rpc
from exchange.db import insert_rows, make_engine, migrate
from exchange.v1 import common_pb2, signal_pb2, signal_pb2_grpc
from hub import MIGRATIONS
from hub._models import Base

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


def timed(jobs: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> float:
    """Run each (function, args) in its own thread; the wall time until all are done.
    A job that failed fails the run."""
    failed: list[BaseException] = []

    def run(job: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            job(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller's thread
            failed.append(exc)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    if failed:
        raise failed[0]
    return took


def run_threads(work: dict[str, list[signal_pb2.SubmitSignalRequest]],
                job: Callable[[str, list[signal_pb2.SubmitSignalRequest]], None],
                writers: int) -> float:
    """Split each organisation's signals over the writers; returns the wall time."""
    per_org = max(1, writers // len(work))
    return timed([(job, (org, reqs[i::per_org]))
                  for org, reqs in work.items() for i in range(per_org)])


def start_hub(url: str, root: Path, index: int) -> tuple[subprocess.Popen[str], str]:
    """A hub process on the database (one of several replicas); its address."""
    script = Path(sys.executable).parent / "samenloop"
    proc = subprocess.Popen([str(script), "hub", "serve", "--listen", "127.0.0.1:0",
                             "--database-url", url, "--checkpoint-key", str(root / "cp.key"),
                             ],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    found = re.search(r"listening on (\S+)", proc.stdout.readline())
    assert found, f"hub {index} did not start"
    return proc, found.group(1)


def through_grpc(url: str, work: dict[str, list[signal_pb2.SubmitSignalRequest]],
                 coord_key: bytes, writers: int, replicas: int, root: Path) -> float:
    engine = make_engine(url)
    migrate(engine, MIGRATIONS)
    engine.dispose()
    hubs: list[subprocess.Popen[str]] = []
    try:
        addresses = []
        for index in range(replicas):
            proc, address = start_hub(url, root, index)
            hubs.append(proc)
            addresses.append(address)
        with Admin(AdminSettings(organisation="gemeente", hub=addresses[0])) as adm:
            adm.organisation("gemeente", "Gemeente")
            for org in ORGS:
                adm.organisation(org, org)
            adm.coordinator("coord-a", "gemeente", "C", "050 1234567", "", coord_key)
            (root / "cov.toml").write_text(COVENANT)
            adm.covenant(root / "cov.toml")
        turn = itertools.count()

        def submit(org: str, requests: list[signal_pb2.SubmitSignalRequest]) -> None:
            # writers take the replicas in turn, as a load balancer would spread them
            channel = rpc.channel(addresses[next(turn) % len(addresses)],
                                  rpc.Caller(org, "agent", "partner"))
            stub = signal_pb2_grpc.SignalServiceStub(channel)
            for i in range(0, len(requests), CHUNK):
                response = stub.SubmitSignals(iter(requests[i:i + CHUNK]), timeout=600)
                assert response.accepted == len(requests[i:i + CHUNK]), response.rejected[:1]
            channel.close()

        return run_threads(work, submit, writers)
    finally:
        for proc in hubs:
            proc.terminate()
        for proc in hubs:
            proc.wait(60)


def settle(url: str) -> None:
    """Start a timed run from a quiet server: write out what earlier runs left dirty."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()


def rollbacks(url: str) -> tuple[int, int]:
    """Transactions rolled back (refused requests, conflicts retried) and deadlocks in
    the database, from PostgreSQL's statistics."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_stat_force_next_flush()"))
            row = conn.execute(text("SELECT xact_rollback, deadlocks FROM pg_stat_database "
                                    "WHERE datname = current_database()")).one()
            return int(row[0]), int(row[1])
    finally:
        engine.dispose()


# Written once before either side is timed (the same on both), or kept by the hub in one
# row it updates (audit_head); every other table's rows are what ingesting wrote.
REGISTRY = ("organisations", "coordinators", "covenants", "linkage_profiles",
            "excluded_keys")
NOT_ROWS = ("audit_head", "audit_queue")  # one head row updated; a queue emptied again


def written(url: str) -> dict[str, list[dict[str, object]]]:
    """Every row of every table in the database, by table."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {table.name: [dict(row._mapping) for row in conn.execute(select(table))]
                    for table in Base.metadata.sorted_tables if table.name not in NOT_ROWS}
    finally:
        engine.dispose()


def raw(url: str, rows: dict[str, list[dict[str, object]]], transactions: int,
        writers: int, *, copy: bool = False) -> float:
    """Insert the rows the hub wrote into the same tables of a fresh database: in as
    many transactions as the hub used, each holding whole households (the household,
    its signals, keys, envelopes, matches, alerts, alert links and feed entries) and an
    equal share of the access log (events, tree nodes, checkpoints), by ``writers``
    threads with executemany (or, with ``copy``, PostgreSQL's COPY, as the hub writes its
    signals, keys, envelopes, households, feed and log). Returns the wall time."""
    # PostgreSQL's default plan caching (the hub plans each lookup with its values; for
    # prepared inserts that would only cost)
    engine = make_engine(url, pool_size=writers + 2,
                         connect_args={"options": "-c plan_cache_mode=auto"})
    migrate(engine, MIGRATIONS)
    with engine.begin() as conn:
        for name in REGISTRY:
            if rows[name]:
                conn.execute(insert(Base.metadata.tables[name]), rows[name])
    home = {r["id"]: r["id"] for r in rows["households"]}
    home |= {r["id"]: r["household_id"] for r in rows["signals"]}
    home |= {r["id"]: r["household_id"] for r in rows["alerts"]}
    order = {h: i % transactions for i, h in enumerate(sorted(map(str, home.values())))}
    parts: list[dict[str, list[dict[str, object]]]] = [
        defaultdict(list) for _ in range(transactions)]
    for table in Base.metadata.sorted_tables:
        if table.name in REGISTRY or table.name in NOT_ROWS:
            continue
        for i, row in enumerate(rows[table.name]):
            owner = next((row[c] for c in ("household_id", "signal_id", "alert_id")
                          if c in row), row["id"] if table.name == "households" else None)
            part = order[str(home[owner])] if owner is not None else i % transactions
            parts[part][table.name].append(row)

    def write(mine: list[dict[str, list[dict[str, object]]]]) -> None:
        for part in mine:
            with engine.begin() as conn:
                for table in Base.metadata.sorted_tables:
                    if not part.get(table.name):
                        continue
                    if copy:
                        insert_rows(conn, table, part[table.name])
                    else:
                        conn.execute(insert(table), part[table.name])

    try:
        return timed([(write, (parts[w::writers],)) for w in range(writers)])
    finally:
        engine.dispose()


@dataclass
class Round:
    """One timed run of each side: the hub, then the rows it wrote, raw (best of three
    with executemany and with COPY, the most favourable to raw, each in a fresh
    database after a checkpoint)."""

    took_grpc: float
    rows: dict[str, list[dict[str, object]]]
    rolled_back: int
    deadlocks: int
    took_raw: list[float]
    took_copy: list[float]


def one_round(args: argparse.Namespace, work: dict[str, list[signal_pb2.SubmitSignalRequest]],
              coord_key: bytes, transactions: int) -> Round:
    with tempfile.TemporaryDirectory() as tmp, \
            fresh_database(args.database_url, "grpc") as grpc_url:
        settle(grpc_url)
        took_grpc = through_grpc(grpc_url, work, coord_key, args.writers, args.replicas,
                                 Path(tmp))
        rows = written(grpc_url)
        rolled_back, deadlocks = rollbacks(grpc_url)
    took: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):
        for copy in (False, True):
            with fresh_database(args.database_url, "raw") as raw_url:
                settle(raw_url)
                took[copy].append(raw(raw_url, rows, transactions, args.writers, copy=copy))
    return Round(took_grpc, rows, rolled_back, deadlocks, took[False], took[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True,
                        help="a PostgreSQL server URL; two scratch databases are made on it")
    parser.add_argument("--signals", type=int, default=12000)
    parser.add_argument("--order", choices=("lockstep", "shuffled"), default="lockstep",
                        help="lockstep: the partners submit the same families at the same "
                        "moment (the most lock contention); shuffled: each in its own order")
    parser.add_argument("--replicas", type=int, default=1,
                        help="hub processes on the one database; the writers take them in "
                        "turn (a load balancer in front of hub replicas)")
    parser.add_argument("--writers", type=int, default=3,
                        help="concurrent writers (a multiple of 3: one per partner or more)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run both sides this many times, one after the other, and "
                        "report each round's ratio and their median (a shared machine's "
                        "speed drifts: a ratio compares sides timed minutes apart)")
    args = parser.parse_args()
    coord = crypto.EnvelopeKey.generate()
    work = signals(args.signals, coord.public_key, shuffled=args.order == "shuffled")
    n = sum(len(v) for v in work.values())
    transactions = sum(-(-len(reqs) // CHUNK) for reqs in work.values())
    print(f"{n} signals, {n // 3} families (every one a match and an alert), "
          f"{args.writers} writers, {CHUNK} signals per transaction, {args.order} order, "
          f"{args.replicas} hub process{'es' if args.replicas > 1 else ''}")
    ratios: list[float] = []
    for number in range(1, max(1, args.rounds) + 1):
        r = one_round(args, work, coord.public_key, transactions)
        took_raw, took_copy = min(r.took_raw), min(r.took_copy)
        grpc_rate, raw_rate, copy_rate = n / r.took_grpc, n / took_raw, n / took_copy
        ratios.append(grpc_rate / raw_rate)
        if number == 1:
            counts = {name: len(rows) for name, rows in r.rows.items()
                      if rows and name not in REGISTRY}
            print(f"rows the hub wrote: {sum(counts.values()):,} in {len(counts)} tables ("
                  + ", ".join(f"{name} {count:,}" for name, count in counts.items()) + ")")
        if args.rounds > 1:
            print(f"round {number}:")
        print(f"through the hub over gRPC: {r.took_grpc:7.2f} s = {grpc_rate:8,.0f} signals/s "
              f"({r.rolled_back} transactions rolled back, {r.deadlocks} deadlocks)")
        print(f"the same rows raw:         {took_raw:7.2f} s = {raw_rate:8,.0f} signals/s "
              f"({transactions} transactions; best of "
              f"{', '.join(f'{t:.2f}' for t in r.took_raw)} s)")
        print(f"the same rows with COPY:   {took_copy:7.2f} s = {copy_rate:8,.0f} signals/s "
              f"(best of {', '.join(f'{t:.2f}' for t in r.took_copy)} s)")
        print(f"ratio hub / raw: {grpc_rate / raw_rate:.2f} (target >= 0.5); "
              f"hub / COPY: {grpc_rate / copy_rate:.2f}")
    if len(ratios) > 1:
        print(f"ratio hub / raw over {len(ratios)} rounds: median "
              f"{statistics.median(ratios):.2f}, from {min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
