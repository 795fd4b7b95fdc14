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


def _agent_flags(services: Services, state: Path, org: str = "org-a") -> list[str]:
    return ["--organisation", org, "--hub", services.hub.address,
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


def test_tasks_show_case_and_next_step_and_notices_can_be_dismissed(
        services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support import current_covenant

    text = current_covenant().replace('regions = ["GM0014"]\n', 'regions = ["GM0014"]\n'
                                      'match_notices = ["youth_care", "housing"]\n')
    (tmp_path / "notices.toml").write_text(text)
    services.admin().covenant(tmp_path / "notices.toml")
    flags = {org: _agent_flags(services, tmp_path / f"{org}.db", org)
             for org in ("org-a", "org-b")}
    write_csv(tmp_path / "a.csv", [person("A-1", "111222333"),
                                   person("A-2", "123456782", category="mental_health")])
    write_csv(tmp_path / "b.csv", [person("B-1", "111222333", category="housing"),
                                   person("B-2", "123456782", category="housing")])
    for org, export in (("org-a", "a.csv"), ("org-b", "b.csv")):
        assert main(["agent", "submit", "--input", str(tmp_path / export), *flags[org]]) == 0
    capsys.readouterr()

    assert main(["agent", "tasks", *flags["org-a"]]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["TASK", "KIND", "CASE", "AGE", "WHAT", "TO", "DO"]
    by_case = {row.split()[2]: row for row in rows}
    assert set(by_case) == {"A-1", "A-2"}
    assert "match_notice" in by_case["A-1"]
    assert "also involved: Organisation B: Pat Professional (050 1234567" in by_case["A-1"]
    assert "consent_needed" in by_case["A-2"] and "--case-ref A-2" in by_case["A-2"]
    assert "Organisation B" not in by_case["A-2"]  # consent needed names no one
    assert "housing" not in out and "mental_health" not in out

    notice = by_case["A-1"].split()[0]
    assert main(["agent", "dismiss", notice, *flags["org-a"]]) == 0
    assert "is done (dismissed)" in capsys.readouterr().out
    consent_task = by_case["A-2"].split()[0]
    assert main(["agent", "dismiss", consent_task, *flags["org-a"]]) == 1
    assert "closes itself" in capsys.readouterr().err
    assert main(["agent", "tasks", "--json", *flags["org-a"]]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert '"case_ref": "A-2"' in line and "CONSENT_NEEDED" in line
    assert main(["agent", "tasks", "--all", *flags["org-a"]]) == 0
    assert "done (dismissed)" in capsys.readouterr().out
