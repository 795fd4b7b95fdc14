"""The agent's commands tell the operator what its witness noticed, as the officer's do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent._cli import print_notices
from exchange.cli import main
from tests.integration.conftest import Services, person, start_services, write_csv


@pytest.fixture
def services(tmp_path: Path, database_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    monkeypatch.delenv("SAMENLOOP_CONFIG", raising=False)
    running = start_services(tmp_path, database_url)
    yield running
    running.close()
    running.hub.stop(grace=1)
    running.keyservice.stop(grace=1)


def _agent_flags(services: Services, state: Path) -> list[str]:
    return ["--organisation", "org-a", "--hub", services.hub.address,
            "--keyservice", services.keyservice.address,
            "--state-database", f"sqlite:///{state}"]


def _notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note: ")]


def test_print_notices_writes_note_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    print_notices(["first thing", "second thing"])
    assert capsys.readouterr() == ("", "note: first thing\nnote: second thing\n")


def test_the_agent_says_it_pinned_the_hubs_key(services: Services, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    key = services.hub.hub.checkpoint_public_key.hex()
    flags = _agent_flags(services, tmp_path / "org-a.db")
    export = write_csv(tmp_path / "a.csv", [person("A-1", "111222333")])
    assert main(["agent", "submit", "--input", str(export), *flags]) == 0
    out, err = capsys.readouterr()
    assert "1 signal submitted" in out
    assert _notes(err) == [f"note: pinned the hub's checkpoint key {key} on first use: "
                           "compare it with the key 'samenloop hub serve' prints"]
    assert "111222333" not in out + err
    # said once: the next contact checks against the pinned key
    assert main(["agent", "withdraw", "--case-ref", "A-1", "--reason", "risk_gone",
                 *flags]) == 0
    assert _notes(capsys.readouterr().err) == []


def test_the_notice_is_shown_when_the_command_then_fails(services: Services, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    key = services.hub.hub.checkpoint_public_key.hex()
    flags = _agent_flags(services, tmp_path / "org-a.db")
    assert main(["agent", "withdraw", "--case-ref", "NOPE-1", "--reason", "risk_gone",
                 *flags]) == 1
    err = capsys.readouterr().err
    (note,) = _notes(err)
    assert f"pinned the hub's checkpoint key {key} on first use" in note
    assert "samenloop: error: no submitted signal for that case reference" in err
    for command in (["consent", "revoke", "--consent-id",
                     "00000000-0000-4000-8000-000000000000"],
                    ["withdraw", "--case-ref", "NOPE-1", "--reason", "risk_gone"]):
        assert main(["agent", *command, *flags]) == 1  # pinned now: nothing more to say
        assert _notes(capsys.readouterr().err) == []
