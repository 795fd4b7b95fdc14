"""The `samenloop` command as users run it: servers as subprocesses, each role's commands."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exchange.cli import build_parser, main
from exchange.db import make_engine, migrate
from hub._server import MIGRATIONS
from tests.integration.conftest import Server, person, samenloop, write_csv
from tests.support import current_covenant


def _subcommands() -> list[list[str]]:
    found: list[list[str]] = []
    seen: set[int] = set()

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if id(sub) in seen:  # an alias: its help is the command's
                        continue
                    seen.add(id(sub))
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return found


@pytest.mark.parametrize("command", _subcommands(), ids=" ".join)
def test_every_subcommand_has_help(command: list[str], capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"samenloop {' '.join(command)}" in out
    assert len(out.splitlines()) >= 3


def test_the_roles_are_all_there() -> None:
    roles = {c[0] for c in _subcommands()}
    assert roles == {"hub", "keyservice", "agent", "coordinator", "audit", "admin", "pki",
                     "demo", "synth", "bench"}


def test_errors_are_one_line_and_tracebacks_need_verbose(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    config = tmp_path / "samenloop.toml"
    config.write_text('[agent]\norganisation = "org-a"\nhubb = "x"\n')
    assert main(["--config", str(config), "agent", "trust-key"]) == 1
    err = capsys.readouterr().err
    assert err == f"samenloop: error: config file {config}: unknown key 'hubb' in [agent]\n"
    assert main(["-v", "--config", str(config), "agent", "trust-key"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_offline_verification_of_a_missing_file_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    assert main(["audit", "verify", "--database", f"sqlite:///{missing}"]) == 1
    assert "there is no SQLite database at" in capsys.readouterr().err
    assert not missing.exists()


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = make_engine(url)
    migrate(engine, MIGRATIONS, "0001")  # a hub installed at the first release
    engine.dispose()
    first = samenloop("hub", "migrate", "--database-url", url)
    assert "from revision 0001 to 0004" in first.stdout
    again = samenloop("hub", "migrate", "--database-url", url)
    assert "was already at the newest schema (revision 0004)" in again.stdout
    fresh = samenloop("hub", "migrate", "--database-url", f"sqlite:///{tmp_path / 'new.db'}")
    assert "created the hub schema (revision 0004)" in fresh.stdout


def test_an_unreachable_service_is_a_clear_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["agent", "trust-key", "--organisation", "org-a", "--keyservice",
                 "127.0.0.1:9", "--state-database", f"sqlite:///{tmp_path / 'state.db'}"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("samenloop: error: the key service at 127.0.0.1:9 is unavailable")
    assert len(err.splitlines()) == 1


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    assert samenloop("keyservice", "keygen", "--key-file", "oprf.key", cwd=tmp_path
                     ).returncode == 0
    ks = Server("keyservice", "serve", "--listen", "127.0.0.1:0", "--key-file", "oprf.key",
                cwd=tmp_path)
    assert samenloop("hub", "migrate", "--database-url", "sqlite:///hub.db",
                     cwd=tmp_path).returncode == 0
    hub = Server("hub", "serve", "--listen", "127.0.0.1:0", "--oversight-organisation", "gemeente",
                 "--database-url", "sqlite:///hub.db",
                 cwd=tmp_path)
    yield ks, hub
    assert hub.stop() == 0
    assert ks.stop() == 0


def test_each_role_from_the_command_line(servers: tuple[Server, Server], tmp_path: Path) -> None:
    ks, hub = servers

    def run(*args: str) -> str:
        result = samenloop(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return result.stdout

    admin = ["--organisation", "gemeente", "--hub", hub.address]
    out = run("coordinator", "keygen", "--key-file", "coordinator.key")
    public_key = out.split("public key: ")[1].split()[0]
    assert (tmp_path / "coordinator.key.pub").read_text().strip() == public_key
    run("admin", "add-organisation", "gemeente", "--name", "Gemeente", *admin)
    for org in ("org-a", "org-b", "org-c"):
        run("admin", "add-organisation", org, "--name", org.upper(), *admin)
    run("admin", "add-coordinator", "coord-a", "--of", "gemeente", "--name", "Coordinator A",
        "--phone", "050 1234567", "--public-key", public_key, *admin)
    (tmp_path / "covenant.toml").write_text(current_covenant())
    assert "version 1 registered" in run("admin", "add-covenant", "covenant.toml", *admin)
    assert "is unchanged (still version 1)" in run("admin", "add-covenant", "covenant.toml",
                                                   *admin)
    assert "test-covenant" in run("admin", "list", *admin)

    write_csv(tmp_path / "a.csv", [person("A-1", "111222333", postcode="9711AB", house="12"),
                                   person("A-2", "111222334")])
    write_csv(tmp_path / "b.csv", [person("B-1", "123456782", category="housing",
                                          postcode="9711 ab", house="12")])
    for org, name in (("org-a", "a.csv"), ("org-b", "b.csv")):
        result = samenloop("agent", "submit", "--input", name, "--organisation", org,
                           "--hub", hub.address, "--keyservice", ks.address,
                           "--state-database", f"sqlite:///{org}.db", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        if org == "org-a":
            assert "1 signal submitted" in result.stdout
            assert "1 invalid row not submitted" in result.stdout
            assert "row 2: bsn fails the elfproef" in result.stderr
            assert "111222334" not in result.stdout + result.stderr

    desk = ["--coordinator-id", "coord-a", "--organisation", "gemeente", "--hub", hub.address]
    table = run("coordinator", "inbox", *desk)
    assert table.splitlines()[0].split() == ["ALERT", "STATE", "AGE", "ORGANISATIONS", "NEXT",
                                             "ACTION"]
    short_id = table.splitlines()[1].split()[0]
    (line,) = run("coordinator", "alerts", "--json", *desk).splitlines()
    alert = json.loads(line)
    assert alert["alert_id"].startswith(short_id) and "category" not in line
    opened = run("coordinator", "open", short_id, "--key-file", "coordinator.key", *desk)
    assert "BSN 111222333" in opened and "9711AB" in opened
    assert "contact_made" in run("coordinator", "contact", short_id, *desk)
    assert "contact_made" in run("coordinator", "ack", short_id, *desk)  # the old name
    history = run("coordinator", "show", short_id, *desk)
    assert "seen" in history and "contact made" in history and "coord-a" in history
    closed = run("coordinator", "close", short_id, "--reason", "no_action_needed", *desk)
    assert "closed (no_action_needed)" in closed
    assert run("coordinator", "inbox", *desk).strip() == "no alerts"

    agent_a = ["--organisation", "org-a", "--hub", hub.address, "--keyservice", ks.address,
               "--state-database", "sqlite:///org-a.db"]
    script = Path(sys.executable).parent / "samenloop"
    until = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()
    granted = subprocess.run(
        [str(script), "agent", "consent", "grant", "--bsn", "--covenant", "test-covenant",
         "--evidence", "TF-1", "--valid-until", until, *agent_a],
        input="111 222 333\n", capture_output=True, text=True, cwd=tmp_path, check=False)
    assert granted.returncode == 0, granted.stderr
    assert "recorded consent" in granted.stdout
    assert "withdrew signal" in run("agent", "withdraw", "--case-ref", "A-1",
                                    "--reason", "risk_gone", *agent_a)
    officer = ["--organisation", "gemeente", "--hub", hub.address]
    events = run("audit", "query", "--type", "alert.open", "--user", "po", *officer)
    assert "alert.open" in events and "covenant:test-covenant@v1" in events
    assert "signature valid" in run("audit", "checkpoint", "--save", "mine.note", *officer)
    assert "the hub found all" in run("audit", "verify", *officer)
    assert "lie on one history" in run("audit", "compare", "mine.note", "--state-file",
                                       "other-officer.json", *officer)
    # offline, while the hub runs: the key and checkpoint come from the officer's state file
    offline = run("audit", "verify", "--database", "sqlite:///hub.db", "--checkpoint",
                  "mine.note")
    assert "checkpoint signatures valid" in offline
    assert "extends the checkpoint you trust" in offline
    assert "(samenloop-audit-state.json)" in offline and "(mine.note)" in offline
    bare = run("audit", "verify", "--database", "sqlite:///hub.db", "--state-file", "none.json")
    assert "NO trusted checkpoint" in bare and "signatures NOT checked" in bare
    bundle = json.loads(run("audit", "export", "--format", "fhir", *officer))
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) > 10
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in bundle["entry"])
    assert "signal.submit" in run("audit", "export", "--format", "csv", *officer)
    register = run("audit", "register", *officer)
    assert "## Test covenant (test-covenant, version 1)" in register
    assert "Joint controllers: org-a, org-b, org-c" in register
    month = datetime.now(UTC).strftime("%Y-%m")
    report = run("audit", "report", "--since", month, "--until", month, *officer)
    assert "signals_submitted" in report and "<5" in report
    access = subprocess.run(
        [str(script), "audit", "subject-access", "--keyservice", ks.address, *officer],
        input="111222333\n", capture_output=True, text=True, cwd=tmp_path, check=False)
    assert access.returncode == 0, access.stderr
    assert "disclosure(s) about them or their household, each proven" in access.stdout
    assert "alert.open" in access.stdout
