"""The access log: append rate, proof size and time as the log grows, offline verification.

    python bench/auditlog.py [--database-url URL ...] [--sizes 10000,100000,1000000]

For each database: events appended per second, one event per transaction (the worst
case) and ten per transaction (a request that records a submission and its decisions),
while a checkpoint is signed every second; then, for each size, the time and size of
inclusion and consistency proofs served from the stored subtree hashes, and of proving a
page of 1,000 queried events at once (as `audit query` asks); finally the rate of offline
verification (`samenloop audit verify --database`), with a writer appending an event
every 10 ms meanwhile to show the snapshot holds up no one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from exchange import checkpoint, merkle
from exchange.db import make_engine, migrate, redact_url, session_factory, snapshot
from hub import _audit
from hub._logops import _prove
from hub._models import AuditEvent
from hub._server import MIGRATIONS

ACCESS = _audit.Access("jeugdzorg-noord", "agent", "partner", str(uuid.uuid4()), "ipv4:10.0.0.1")
EVENT = _audit.Event("signal.submit", "create", subject_ref="ab" * 16,
                     detail={"signal": str(uuid.uuid4()), "keys": 2, "envelopes": 1})


def _append(sessions: object, count: int, per_tx: int) -> float:
    start = time.perf_counter()
    done = 0
    while done < count:
        with sessions.begin() as s:  # type: ignore[attr-defined]
            for _ in range(min(per_tx, count - done)):
                _audit.append(s, ACCESS, EVENT, datetime.now(UTC))
                done += 1
    return count / (time.perf_counter() - start)


def _signer(sessions: object, signer: checkpoint.CheckpointSigner, stop: threading.Event,
            signed: list[int]) -> None:
    while not stop.wait(1.0):
        with sessions.begin() as s:  # type: ignore[attr-defined]
            if _audit.unsigned_events(s):
                signed.append(_audit.sign_checkpoint(s, signer, datetime.now(UTC)).size)


def _writer(sessions: object, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.wait(0.01):
        t = time.perf_counter()
        with sessions.begin() as s:  # type: ignore[attr-defined]
            _audit.append(s, ACCESS, EVENT, datetime.now(UTC))
        latencies.append(time.perf_counter() - t)


def bench(url: str, sizes: list[int], key: Path) -> None:
    engine = make_engine(url)
    migrate(engine, MIGRATIONS)
    sessions = session_factory(engine)
    signer = checkpoint.CheckpointSigner.load_or_create(key, "bench.example/hub")
    print(f"\n== {redact_url(url)}")
    stop, signed = threading.Event(), []
    thread = threading.Thread(target=_signer, args=(sessions, signer, stop, signed))
    thread.start()
    single = _append(sessions, 3000, 1)
    tenfold = _append(sessions, 10000, 10)
    stop.set()
    thread.join()
    print(f"append, 1 event per transaction:   {single:8,.0f} events/s")
    print(f"append, 10 events per transaction: {tenfold:8,.0f} events/s")
    print(f"checkpoints signed meanwhile (one per second with new events): {len(signed)}")
    _proofs(sessions, sizes)
    _verify_while_writing(engine, sessions)
    engine.dispose()


def _proofs(sessions: Any, sizes: list[int]) -> None:
    print(f"\n{'events':>10} {'incl. ms':>9} {'hashes':>7} {'bytes':>6} "
          f"{'cons. ms':>9} {'hashes':>7} {'bytes':>6} {'page of 1000 ms':>16}")
    with sessions() as s:
        size, _ = _audit.head(s)
    for target in sizes:
        if target > size:
            _append(sessions, target - size, 5000)
            size = target
        with sessions() as s:
            _, root = _audit.head(s)
            incl_t, incl_n, cons_t, cons_n = [], [], [], []
            rng = random.Random(target)
            for _ in range(50):
                index = rng.randrange(size)
                t = time.perf_counter()
                leaf, proof = _audit.inclusion_proof(s, index, size)
                incl_t.append(time.perf_counter() - t)
                merkle.verify_inclusion(index, size, leaf, proof, root)
                incl_n.append(len(proof))
                old = rng.randrange(1, size)
                t = time.perf_counter()
                cons = _audit.consistency_proof(s, old, size)
                cons_t.append(time.perf_counter() - t)
                cons_n.append(len(cons))
            page_t = []
            for _ in range(5):
                first = rng.randrange(size - 1000)
                page = list(s.scalars(select(AuditEvent).where(
                    AuditEvent.seq >= first, AuditEvent.seq < first + 1000)))
                t = time.perf_counter()
                proven = _prove(s, page, size)
                page_t.append(time.perf_counter() - t)
                merkle.verify_inclusion(proven[0].event.seq, size, proven[0].leaf_hash,
                                        proven[0].proof, root)
        print(f"{size:>10,} {statistics.median(incl_t) * 1000:9.2f} "
              f"{max(incl_n):7} {max(incl_n) * 32:6} {statistics.median(cons_t) * 1000:9.2f} "
              f"{max(cons_n):7} {max(cons_n) * 32:6} {statistics.median(page_t) * 1000:16.1f}")


def _verify_while_writing(engine: Engine, sessions: Any) -> None:
    stop, latencies = threading.Event(), []
    writer = threading.Thread(target=_writer, args=(sessions, stop, latencies))
    with snapshot(engine) as s:
        writer.start()
        start = time.perf_counter()
        result = _audit.verify(s)
        took = time.perf_counter() - start
    stop.set()
    writer.join()
    print(f"\noffline verification of {result.size:,} events: {took:.1f} s = "
          f"{result.size / took:,.0f} events/s ({'ok' if result.ok else result.describe()})")
    print(f"meanwhile {len(latencies)} events appended, slowest in "
          f"{max(latencies) * 1000:.0f} ms, median {statistics.median(latencies) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", action="append",
                        help="a database to run on, empty (repeatable; default a SQLite file)")
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="log sizes to measure proofs at (comma-separated)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        for url in args.database_url or [f"sqlite:///{tmp}/bench.db"]:
            bench(url, sizes, Path(tmp) / f"{uuid.uuid4().hex}.key")


if __name__ == "__main__":
    main()
