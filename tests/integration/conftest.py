"""Real servers on loopback port 0, real databases, real clients."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import Engine

from agent import (
    Admin,
    AdminSettings,
    Agent,
    AgentSettings,
    Auditor,
    AuditSettings,
    CoordinatorDesk,
    CoordinatorSettings,
)
from exchange import crypto
from exchange.db import make_engine
from hub import (
    HubSettings,
    KeyServiceSettings,
    RunningHub,
    RunningKeyService,
    start_hub,
    start_keyservice,
)
from hub._demo import FIELDS
from tests.support import current_covenant

PARTNERS = ("org-a", "org-b", "org-c", "org-d")


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows([{k: row.get(k, "") for k in FIELDS} for row in rows])
    return path


def person(case: str, bsn: str, *, category: str = "youth_care", postcode: str = "",
           house: str = "", given: str = "Test", surname: str = "Person") -> dict[str, str]:
    return {"case_ref": case, "bsn": bsn, "given_names": given, "surname": surname,
            "date_of_birth": "2001-02-03", "street": "Teststraat" if postcode else "",
            "house_number": house, "postcode": postcode, "city": "Groningen" if postcode else "",
            "category": category, "region": "GM0014", "professional_name": "Pat Professional",
            "professional_phone": "050 1234567", "professional_email": "pat@example.org"}


@dataclass
class Services:
    root: Path
    database_url: str
    keyservice: RunningKeyService
    hub: RunningHub
    coord_key: crypto.EnvelopeKey
    _clients: list[object] = field(default_factory=list)
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """An engine on the hub's database, for checks; disposed with the services."""
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    def agent(self, org: str, **kw: object) -> Agent:
        settings = AgentSettings(organisation=org, hub=self.hub.address,
                                 keyservice=self.keyservice.address,
                                 state_database=f"sqlite:///{self.root / org}-agent.db")
        for key, value in kw.items():
            settings = type(settings)(**{**settings.__dict__, key: value})
        agent = Agent(settings)
        self._clients.append(agent)
        return agent

    def desk(self, coordinator: str = "coord-a") -> CoordinatorDesk:
        desk = CoordinatorDesk(CoordinatorSettings(
            coordinator_id=coordinator, organisation="gemeente", hub=self.hub.address,
            key_file=self.root / "coordinator.key"))
        self._clients.append(desk)
        return desk

    def auditor(self, role: str = "privacy_officer", org: str = "gemeente") -> Auditor:
        auditor = Auditor(AuditSettings(organisation=org, hub=self.hub.address,
                                        hub_key=self.hub.hub.checkpoint_public_key.hex(),
                                        origin=self.hub.hub.origin,
                                        state_file=self.root / f"audit-{org}-{role}.json"),
                          role=role)
        self._clients.append(auditor)
        return auditor

    def admin(self) -> Admin:
        admin = Admin(AdminSettings(organisation="gemeente", hub=self.hub.address))
        self._clients.append(admin)
        return admin

    def close(self) -> None:
        for client in self._clients:
            client.close()  # type: ignore[attr-defined]
        if self._engine is not None:
            self._engine.dispose()


def start_services(root: Path, database_url: str) -> Services:
    key = crypto.OprfKey.generate()
    keyservice = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0"), key=key)
    hub = start_hub(HubSettings(listen="127.0.0.1:0", database_url=database_url,
                                checkpoint_key=root / "cp.key", migrate=True))
    coord_key = crypto.EnvelopeKey.generate()
    coord_key.save(root / "coordinator.key")
    services = Services(root, database_url, keyservice, hub, coord_key)
    admin = services.admin()
    admin.organisation("gemeente", "Gemeente")
    for org in PARTNERS:
        admin.organisation(org, f"Organisation {org[-1].upper()}")
    admin.coordinator("coord-a", "gemeente", "Coordinator A", "050 0000000", "",
                      coord_key.public_key)
    (root / "covenant.toml").write_text(current_covenant())
    admin.covenant(root / "covenant.toml")
    return services


@pytest.fixture
def services(tmp_path: Path, database_url: str) -> Iterator[Services]:
    running = start_services(tmp_path, database_url)
    yield running
    running.close()
    running.hub.stop(grace=1)
    running.keyservice.stop(grace=1)


def samenloop(*args: str, cwd: Path | None = None, timeout: float = 120,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `samenloop` entry point in a subprocess (``env`` added to ours)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    env.pop("SAMENLOOP_CONFIG", None)
    script = Path(sys.executable).parent / "samenloop"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "exchange.cli"]
    return subprocess.run([*command, *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of `samenloop demo` through the real command, shared by the demo tests."""
    root = tmp_path_factory.mktemp("demo") / "data"
    result = samenloop("demo", "--data-dir", str(root))
    (root.parent / "stdout.txt").write_text(result.stdout)
    (root.parent / "stderr.txt").write_text(result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    return root


class Server:
    def __init__(self, *args: str, cwd: Path) -> None:
        script = Path(sys.executable).parent / "samenloop"
        self.proc = subprocess.Popen([str(script), *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no address in {line!r}")
        self.address = match.group(1)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return code
