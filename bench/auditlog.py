"""The access log: append rate, proof size and time as the log grows, offline verification.

    python bench/auditlog.py [--database-url URL ...] [--sizes 10000,100000,1000000]

For each database: events appended per second by 1, 4, 8 and 16 writers committing one
event per transaction each (the worst case), and by one writer committing ten per
transaction (a request that records a submission and its decisions), while a checkpointer
integrates the queue into the tree and signs a checkpoint every half second as the hub
server does, with how long until the last event was covered by a signature; then, for
each size, the time and size of inclusion and consistency proofs served from the stored
subtree hashes, and of proving a page of 1,000 queried events at once (as `audit query`
asks); finally the rate of offline verification (`samenloop audit verify --database`),
with a writer appending an event every 10 ms meanwhile to show the snapshot holds up no
one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from exchange import checkpoint, merkle
from exchange.db import make_engine, migrate, redact_url, session_factory, snapshot
from hub import _audit
from hub._core import Hub
from hub._logops import _prove
from hub._models import AuditEvent
from hub._server import MIGRATIONS, HubSettings

ACCESS = _audit.Access("jeugdzorg-noord", "agent", "partner", str(uuid.uuid4()), "ipv4:10.0.0.1")
EVENT = _audit.Event("signal.submit", "create", subject_ref="ab" * 16,
                     detail={"signal": str(uuid.uuid4()), "keys": 2, "envelopes": 1})
CHECKPOINT_SECONDS = HubSettings.checkpoint_seconds


def _append(sessions: Any, count: int, per_tx: int) -> float:
    """Append ``count`` events, ``per_tx`` per transaction; return events/s."""
    start = time.perf_counter()
    done = 0
    while done < count:
        with sessions.begin() as s:
            for _ in range(min(per_tx, count - done)):
                _audit.append(s, ACCESS, EVENT, datetime.now(UTC))
                done += 1
    return count / (time.perf_counter() - start)


def _fill(sessions: Any, count: int) -> None:
    """Grow the log fast: big transactions, each integrated at once."""
    while count > 0:
        _append(sessions, min(count, 5000), 5000)
        with sessions.begin() as s:
            _audit.integrate(s)
        count -= 5000


@dataclass
class _Checkpointer:
    """The hub server's checkpoint thread: Hub.sign_if_due every ``interval`` seconds."""

    hub: Hub
    interval: float
    stop: threading.Event = field(default_factory=threading.Event)
    signed: list[int] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            t = time.perf_counter()
            cp = self.hub.sign_if_due()
            if cp is not None:
                self.signed.append(cp.size)
            self.busy.append(time.perf_counter() - t)


def _concurrent(sessions: Any, hub: Hub, interval: float,
                threads: int, per_thread: int, per_tx: int) -> str:
    """Writers appending at once while the checkpointer integrates and signs."""
    with sessions() as s:
        start_size = _audit.head(s)[0] + _audit.queued(s)
    cp = _Checkpointer(hub, interval)
    signing = threading.Thread(target=cp.run)
    signing.start()
    writers = [threading.Thread(target=_append, args=(sessions, per_thread, per_tx))
               for _ in range(threads)]
    start = time.perf_counter()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    took = time.perf_counter() - start
    total = threads * per_thread
    # How long until a signed checkpoint covers the last event written.
    while not cp.signed or cp.signed[-1] < start_size + total:
        time.sleep(0.005)
    covered = time.perf_counter() - start - took
    cp.stop.set()
    signing.join()
    return (f"{threads:>8} {per_tx:>7} {total / took:10,.0f} {len(cp.signed):>12} "
            f"{max(cp.busy) * 1000:12.0f} {covered * 1000:13.0f}")


def _writer(sessions: object, stop: threading.Event, latencies: list[float]) -> None:
    while not stop.wait(0.01):
        t = time.perf_counter()
        with sessions.begin() as s:  # type: ignore[attr-defined]
            _audit.append(s, ACCESS, EVENT, datetime.now(UTC))
        latencies.append(time.perf_counter() - t)


def bench(url: str, sizes: list[int], key: Path, interval: float) -> None:
    engine = make_engine(url, pool_size=20)  # every writer and the checkpointer at once
    migrate(engine, MIGRATIONS)
    sessions = session_factory(engine)
    signer = checkpoint.CheckpointSigner.load_or_create(key, "bench.example/hub")
    hub = Hub(engine, signer=signer, integrate_on_commit=False)
    print(f"\n== {redact_url(url)}")
    print(f"appending while a checkpoint is signed every {interval} s")
    print(f"{'writers':>8} {'per tx':>7} {'events/s':>10} {'checkpoints':>12} "
          f"{'slowest ms':>12} {'signed in ms':>13}")
    for threads, per_thread, per_tx in ((1, 5000, 1), (4, 2500, 1), (8, 1250, 1),
                                        (16, 625, 1), (1, 20000, 10)):
        print(_concurrent(sessions, hub, interval, threads, per_thread, per_tx))
    print("(slowest: the longest integrate-and-sign transaction; signed in: from the last "
          "write until a checkpoint covered it)")
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
            _fill(sessions, target - size)
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
    stop, latencies = threading.Event(), list[float]()
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
    parser.add_argument("--checkpoint-seconds", type=float, default=CHECKPOINT_SECONDS,
                        help="how often the checkpointer integrates and signs (default: the "
                        "hub server's %(default)s)")
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="log sizes to measure proofs at (comma-separated)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        for url in args.database_url or [f"sqlite:///{tmp}/bench.db"]:
            bench(url, sizes, Path(tmp) / f"{uuid.uuid4().hex}.key", args.checkpoint_seconds)


if __name__ == "__main__":
    main()
