"""Bulk onboarding: whole caseloads through the product's own commands, end to end.

`samenloop synth` writes the partners' exports (about 2.95 records per household); the key
service and the hub run as their own processes (`samenloop keyservice serve`, `samenloop
hub serve`, on SQLite or PostgreSQL); the municipality registers the organisations, a
coordinator, the linkage profile and the covenant and excludes the institutions'
addresses; then every partner's agent runs `samenloop agent submit --mapping ...` at the
same time, as separate processes. Reported: the wall time from the first agent's start to
the last one's end, records per second, the CPU time the agents, the key service and the
hub each spent per record, and the person and household links scored against the truth
file.

    python bench/onboard.py --records 100000 [--level hardest] [--database-url URL]
        [--dir DIR] [--profile PROFILE.toml]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from exchange import linkage
from hub import _bench

SAMENLOOP = str(Path(sys.executable).parent / "samenloop")
MUNICIPALITY = _bench.MUNICIPALITY
RECORDS_PER_HOUSEHOLD = 2.88  # what synth's three partners hold (2.89 at 34,000 households)


def run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([SAMENLOOP, "--log-format", "json", *args], capture_output=True,
                          text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"samenloop {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a running process has used so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(stack: ExitStack, log: Path, *args: str) -> tuple[str, int]:
    """Start a server process; returns the address it listens on and its pid."""
    fh = stack.enter_context(log.open("w"))
    proc = subprocess.Popen([SAMENLOOP, "--log-format", "json", *args],
                            stdout=subprocess.PIPE, stderr=fh, text=True)

    def stop() -> None:
        proc.terminate()
        proc.wait(60)

    stack.callback(stop)
    assert proc.stdout is not None
    found = re.search(r"listening on (\S+)", proc.stdout.readline())
    if not found:
        raise SystemExit(f"{args[0]} did not start: see {log}")
    return found.group(1), proc.pid


def fresh_postgres(base: str) -> str:
    url = make_url(base).set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "bench_onboard" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "bench_onboard"'))
    admin.dispose()
    return url.set(database="bench_onboard").render_as_string(hide_password=False)


def onboard(root: Path, partners: list[_bench.Partner], agent: list[str],
            keyservice_pid: int, hub_pid: int) -> tuple[float, dict[str, float]]:
    """Every partner's agent at once; the wall time and the CPU seconds of each party."""
    start = time.perf_counter()
    servers_before = [cpu_seconds(keyservice_pid), cpu_seconds(hub_pid)]
    agents_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [subprocess.Popen(
        [SAMENLOOP, "--log-format", "json", "agent", "submit", "--mapping",
         str(p.mapping), "--organisation", p.label,
         "--state-database", f"sqlite:///{root}/{p.label}.db", *agent],
        stdout=(root / f"{p.label}.out").open("w"),
        stderr=(root / f"{p.label}.log").open("w")) for p in partners]
    codes = [p.wait() for p in procs]
    took = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"an agent failed ({codes}): see {root}/*.log")
    agents_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {"agents": agents_after.ru_utime + agents_after.ru_stime
           - agents_before.ru_utime - agents_before.ru_stime}
    for name, pid, before in (("key service", keyservice_pid, servers_before[0]),
                              ("hub", hub_pid, servers_before[1])):
        after = cpu_seconds(pid)
        if before is not None and after is not None:
            cpu[name] = after - before
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--level", default="hardest")
    parser.add_argument("--database-url",
                        help="a PostgreSQL server; the database bench_onboard is made on it "
                        "(default: SQLite in --dir)")
    parser.add_argument("--dir", type=Path, help="keep everything here (default: temporary)")
    parser.add_argument("--profile", type=Path, metavar="PROFILE.toml",
                        help="the linkage profile (default: the built-in nl-household; "
                             "docs/linkage.md suggests a threshold by caseload)")
    args = parser.parse_args()
    with ExitStack() as stack:
        root = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if root.exists() and any(root.iterdir()):
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        data = root / "data"
        households = max(1, round(args.records / RECORDS_PER_HOUSEHOLD))
        started = time.perf_counter()
        run("synth", "--households", str(households), "--level", args.level, "--out", str(data))
        print(f"synth: {households:,} households in {time.perf_counter() - started:.0f} s",
              flush=True)
        hub_url = fresh_postgres(args.database_url) if args.database_url else \
            f"sqlite:///{root}/hub.db"
        run("keyservice", "keygen", "--key-file", str(root / "oprf.key"))
        keyservice, keyservice_pid = serve(stack, root / "keyservice.log", "keyservice", "serve",
                           "--listen", "127.0.0.1:0", "--key-file", str(root / "oprf.key"))
        hub, hub_pid = serve(stack, root / "hub.log", "hub", "serve", "--listen", "127.0.0.1:0",
                    "--database-url", hub_url, "--migrate",
                    "--checkpoint-key", str(root / "checkpoint.key"),
                    "--oversight-organisation", MUNICIPALITY)
        partners = _bench.partners(data / "truth.csv")
        regions, categories, records = _bench.survey(partners)
        admin = ["--organisation", MUNICIPALITY, "--hub", hub]
        run("admin", "add-organisation", MUNICIPALITY, "--name", "Gemeente", *admin)
        for partner in partners:
            run("admin", "add-organisation", partner.label, "--name", partner.label, *admin)
        run("coordinator", "keygen", "--key-file", str(root / "coordinator.key"))
        run("admin", "add-coordinator", "regie", "--of", MUNICIPALITY, "--name", "Regie",
            "--phone", "050 1234567", "--public-key-file", str(root / "coordinator.key.pub"),
            *admin)
        profile = (args.profile.read_text(encoding="utf-8") if args.profile
                   else linkage.DEFAULT_PROFILE.source)
        (root / "profile.toml").write_text(profile)
        run("admin", "add-profile", str(root / "profile.toml"), *admin)
        (root / "covenant.toml").write_text(_bench._covenant(
            [p.label for p in partners], sorted(regions - {""}), sorted(categories - {""}),
            linkage.parse_profile(profile).id))
        run("admin", "add-covenant", str(root / "covenant.toml"), *admin)
        agent = ["--hub", hub, "--keyservice", keyservice]
        run("agent", "exclude-addresses", "--input", str(data / "institutions.csv"),
            "--organisation", MUNICIPALITY, "--state-database",
            f"sqlite:///{root}/{MUNICIPALITY}.db", *agent)
        print(f"{records:,} records from {len(partners)} partners; onboarding...", flush=True)
        took, cpu = onboard(root, partners, agent, keyservice_pid, hub_pid)
        print(f"onboarded {records:,} records in {took:,.0f} s = {records / took:,.1f} "
              f"records/s ({len(partners)} agents at once, hub on "
              f"{make_url(hub_url).get_backend_name()})", flush=True)
        print("CPU per record: " + ", ".join(
            f"{name} {seconds / records * 1000:.1f} ms" for name, seconds in cpu.items()),
            flush=True)
        persons, households_truth = _bench._truth(data / "truth.csv")
        person_of, household_of = _bench._predictions(root, partners, hub_url)
        for label, predicted, truth in (("persons", person_of, persons),
                                        ("households", household_of, households_truth)):
            s = _bench.Scores.of(predicted, truth)  # type: ignore[arg-type]
            print(f"{label:10} precision {s.precision:.4f} recall {s.recall:.4f} "
                  f"f1 {s.f1:.4f} ({s.predicted_pairs:,} links found, {s.true_pairs:,} true)")


if __name__ == "__main__":
    main()
