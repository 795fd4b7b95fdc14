"""No lost signals: the outbox, retries and exactly-once delivery, with real servers.

The agent runs as the real ``samenloop`` command in a subprocess, is killed with SIGKILL
in the middle of a run, and meets a hub that goes away and comes back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agent._agent import Agent, Undelivered
from agent._client import HubClient
from agent._models import Submission
from exchange.cli import main
from exchange.db import make_engine, session_factory
from exchange.errors import FailedPrecondition
from hub import HubSettings, start_hub
from hub._models import Signal
from tests.integration.conftest import Services, person, write_csv


def valid_bsns(count: int, start: int = 20_000_000) -> Iterator[str]:
    """``count`` distinct BSNs that pass the elfproef."""
    base = start
    while count:
        base += 1
        digits = f"{base:08d}"
        check = sum(int(d) * w for d, w in zip(digits, range(9, 1, -1), strict=True)) % 11
        if check < 10:
            count -= 1
            yield digits + str(check)


def export(path: Path, rows: int, prefix: str) -> Path:
    return write_csv(path, [person(f"{prefix}-{i}", bsn)
                            for i, bsn in enumerate(valid_bsns(rows))])


def hub_signal_ids(services: Services, org: str = "org-a") -> set[str]:
    with session_factory(services.engine)() as s:
        return set(s.scalars(select(Signal.id).where(Signal.organisation_id == org)))


def outbox(state: Path) -> list[tuple[str, str, str]]:
    """(signal id, case reference, state) of every submission in the agent's outbox."""
    engine = make_engine(f"sqlite:///{state}", must_exist=True)
    try:
        with session_factory(engine)() as s:
            return [(sub.signal_id, sub.case_ref, sub.state)
                    for sub in s.scalars(select(Submission))]
    finally:
        engine.dispose()


def in_state(rows: list[tuple[str, str, str]], *states: str) -> set[str]:
    return {signal_id for signal_id, _, state in rows if state in states}


class Command:
    """The real ``samenloop`` entry point in a subprocess, output to files."""

    def __init__(self, root: Path, name: str, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("SAMENLOOP_CONFIG", None)
        script = Path(sys.executable).parent / "samenloop"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "exchange.cli"]
        self._out, self._err = root / f"{name}.out", root / f"{name}.err"
        with self._out.open("w") as out, self._err.open("w") as err:
            self.proc = subprocess.Popen([*command, *args], stdout=out, stderr=err,
                                         cwd=root, env=env)

    def wait(self, timeout: float = 60) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        return code, self._out.read_text(), self._err.read_text()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def flags(services: Services, state: Path, *extra: str) -> list[str]:
    return ["--organisation", "org-a", "--hub", services.hub.address,
            "--state-database", f"sqlite:///{state}", *extra]


def assert_exactly_once(services: Services, state: Path, rows: int) -> None:
    """One signal per row at the hub, the same ids the outbox holds, all submitted."""
    held = outbox(state)
    assert len(held) == rows
    assert len({case for _, case, _ in held}) == rows  # one signal id per case row
    assert {s for _, _, s in held} == {"submitted"}
    with session_factory(services.engine)() as s:
        at_hub = list(s.scalars(select(Signal.id).where(Signal.organisation_id == "org-a")))
    assert len(at_hub) == len(set(at_hub)) == rows
    assert set(at_hub) == {signal_id for signal_id, _, _ in held}


def test_an_agent_killed_mid_run_delivers_every_signal_exactly_once_when_rerun(
        services: Services, tmp_path: Path) -> None:
    rows = 1000
    path = export(tmp_path / "export.csv", rows, "K")
    state = tmp_path / "agent.db"
    submit = ["agent", "submit", "--input", str(path), "--keyservice",
              services.keyservice.address, *flags(services, state, "--batch-size", "16")]
    first = Command(tmp_path, "first", *submit)
    until(lambda: len(hub_signal_ids(services)) >= rows // 4, 60, "the first signals")
    assert first.proc.poll() is None, "the agent finished before it could be killed"
    first.kill()
    assert first.proc.returncode == -9

    at_hub, held = hub_signal_ids(services), outbox(state)
    assert rows // 4 <= len(at_hub) < rows
    # Stored before sent: the hub has nothing the outbox lacks. Marked submitted only on
    # the hub's answer: nothing is submitted that the hub does not have.
    assert at_hub <= in_state(held, "pending", "submitted")
    assert in_state(held, "submitted") <= at_hub
    waiting = in_state(held, "pending")

    code, out, err = Command(tmp_path, "rerun", *submit).wait()
    assert code == 0, err
    assert f"{rows} rows read" in out
    if waiting:
        assert f"{len(waiting)} pending resent" in out
    assert_exactly_once(services, state, rows)
    # what the outbox held (pending or submitted) kept its signal id
    assert in_state(held, "pending", "submitted") <= in_state(outbox(state), "submitted")


def test_a_hub_outage_leaves_the_rest_in_the_outbox_and_deliver_sends_it_once(
        services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = 240
    path = export(tmp_path / "export.csv", rows, "H")
    state = tmp_path / "agent.db"
    quick = ["--retry-seconds", "1.5"]
    submit = Command(tmp_path, "submit", "agent", "submit", "--input", str(path),
                     "--keyservice", services.keyservice.address,
                     *flags(services, state, "--batch-size", "10", *quick))
    until(lambda: len(hub_signal_ids(services)) >= 30, 60, "the first signals")
    address = services.hub.address
    services.hub.stop(grace=0.2)
    code, out, err = submit.wait()
    assert code == 1, err
    error = err.strip().splitlines()[-1]
    assert error.startswith(f"samenloop: error: the hub at {address} is unavailable")
    assert "still unavailable after" in error
    assert ("wait in the outbox; 'samenloop agent deliver' (or the next 'agent submit') "
            "sends them") in error
    assert "service unavailable, retrying" in err and '"service": "hub"' in err
    assert f"{rows} rows read" in out  # the summary still comes, on stdout
    held = outbox(state)
    assert len(held) == rows  # every row was prepared into the outbox
    waiting = in_state(held, "pending")
    assert waiting and in_state(held, "submitted") | waiting == {s for s, _, _ in held}
    assert f"{len(waiting)} signals wait" in error
    assert not any(bsn in out + err for bsn in valid_bsns(rows))

    # The same commands in this process from here on (a subprocess costs seconds).
    status = ["agent", "status", "--organisation", "org-a",
              "--state-database", f"sqlite:///{state}"]
    capsys.readouterr()
    assert main([*status, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pending"] == len(waiting)

    # The hub is still down: deliver retries, gives up, and leaves them pending.
    assert main(["agent", "deliver", *flags(services, state, *quick)]) == 1
    err = capsys.readouterr().err
    assert f"{len(waiting)} signals wait in the outbox" in err.strip().splitlines()[-1]
    assert in_state(outbox(state), "pending") == waiting

    services.hub = start_hub(HubSettings(listen=address, database_url=services.database_url,
                                         checkpoint_key=services.root / "cp.key"))
    assert main(["agent", "deliver", *flags(services, state, "--batch-size", "25",
                                            *quick)]) == 0
    assert f"{len(waiting)} waiting signals sent" in capsys.readouterr().out
    assert_exactly_once(services, state, rows)
    assert main(["agent", "deliver", *flags(services, state)]) == 0
    assert capsys.readouterr().out.strip() == "nothing waits in the outbox"
    assert main(status) == 0
    table = {line.split()[0]: line.split()[1]
             for line in capsys.readouterr().out.splitlines()[1:]}
    assert table == {"pending": "0", "submitted": str(rows), "rejected": "0",
                     "withdrawn": "0", "replaced": "0"}


class Crash(BaseException):
    """The process dying at a chosen point (not an error the agent could handle)."""


@pytest.mark.parametrize("where", ["after the hub stored a batch", "while pseudonymising"])
def test_a_crash_at_any_point_gives_no_case_a_second_signal(
        services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        where: str) -> None:
    rows = 40
    path = export(tmp_path / "export.csv", rows, "C")
    calls = {"n": 0}

    def third(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kw: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3 and where == "while pseudonymising":
                raise Crash
            result = real(*args, **kw)
            if calls["n"] == 3:
                raise Crash  # the hub has the batch; the agent never hears its answer
            return result
        return wrapped

    if where == "while pseudonymising":
        monkeypatch.setattr(Agent, "pseudonymise", third(Agent.pseudonymise))
    else:
        monkeypatch.setattr(HubClient, "submit_many", third(HubClient.submit_many))
    with pytest.raises(Crash):
        services.agent("org-a", batch_size=5).submit_file(path)
    monkeypatch.undo()
    state = services.root / "org-a-agent.db"
    held = outbox(state)
    assert len(in_state(held, "submitted")) == 10
    if where == "while pseudonymising":
        assert len(held) == 10  # the batch being prepared left no trace
    else:
        assert len(in_state(held, "pending")) == 5
        assert in_state(held, "pending") <= hub_signal_ids(services)  # the hub has them
        case = next(case for _, case, state in held if state == "pending")
        with pytest.raises(FailedPrecondition, match="waits in the outbox"):
            services.agent("org-a").withdraw(reason="risk_gone", case_ref=case)

    summary = services.agent("org-a", batch_size=5).submit_file(path)
    if where == "while pseudonymising":
        assert (summary.resent, summary.duplicates, summary.already_submitted,
                summary.submitted) == (0, 0, 10, rows - 10)
    else:  # the pending batch is sent first, and the hub counts it once
        assert (summary.resent, summary.duplicates, summary.already_submitted,
                summary.submitted) == (5, 5, 15, rows - 15)
    assert_exactly_once(services, state, rows)


def test_a_hub_down_from_the_start_reads_nothing_and_says_so(
        services: Services, tmp_path: Path) -> None:
    path = export(tmp_path / "export.csv", 3, "D")
    agent = services.agent("org-a", hub="127.0.0.1:9", retry_seconds=0.0)
    with pytest.raises(Undelivered) as stopped:
        agent.submit_file(path)
    message = str(stopped.value)
    assert message.startswith("the hub at 127.0.0.1:9 is unavailable")
    assert message.endswith(". Nothing waits in the outbox; the input was not read: "
                            "submit it again later")
    assert stopped.value.summary.rows == 0
    assert outbox(services.root / "org-a-agent.db") == []
