"""The README's step-by-step walkthrough, run exactly as written."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.integration.conftest import Server, samenloop

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks() -> tuple[list[str], str]:
    """The server commands and the walkthrough block that follows them."""
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    marker = README.index("<!-- walkthrough:")
    walkthrough = re.search(r"```sh\n(.*?)```", README[marker:], re.DOTALL)
    assert walkthrough is not None
    servers = next(b for b in blocks if "hub serve" in b and "keyservice serve" in b)
    return servers.strip().splitlines(), walkthrough.group(1)


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "deploy" / "examples", tmp_path / "deploy" / "examples")
    covenant = tmp_path / "deploy" / "examples" / "covenant.toml"
    year = datetime.now(UTC).year
    covenant.write_text(re.sub(r"valid_until = \d{4}-", f"valid_until = {year + 2}-",
                               covenant.read_text()))
    server_lines, walkthrough = _blocks()
    running: list[Server] = []
    try:
        for line in server_lines:
            args = line.split()[1:]
            if "serve" in args:
                running.append(Server(*args, "--listen", "127.0.0.1:0", cwd=tmp_path))
            else:
                assert samenloop(*args, cwd=tmp_path).returncode == 0
        keyservice, hub = running
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        for role in ("ADMIN", "AGENT", "COORDINATOR", "AUDIT"):
            env[f"SAMENLOOP_{role}_HUB"] = hub.address
        env["SAMENLOOP_AGENT_KEYSERVICE"] = keyservice.address
        bash = shutil.which("bash") or "/bin/bash"
        result = subprocess.run([bash, "-euo", "pipefail", "-c", walkthrough], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=300,
                                check=False)
    finally:
        codes = [server.stop() for server in running]
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert codes == [0, 0]
    assert "covenant samen-sterk-noord version 1 registered" in out
    assert "2 signals submitted" in out
    assert "BSN 111222333" in out and "BSN 100000009" in out   # the opened envelopes
    assert "consent_needed  JZ-2" in out  # the task, before the family consents
    assert "recorded consent" in out
    assert "withdrew signal" in out
    assert "closed: dissolved" in out
    assert "the hub found all" in out and "intact" in out
    assert "access log verified:" in out and "checkpoint signatures valid" in out
    assert "extends the checkpoint you trust" in out  # the one her client kept
    assert "Joint controllers: jeugdzorg-noord, woonstad-noord" in out
    assert "signals_submitted" in out
    assert '"resourceType": "Bundle"' in (tmp_path / "audit.json").read_text()


def _commands(block: str) -> list[str]:
    """The block's commands, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.split("   #")[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_tls_walkthrough_runs_as_written(tmp_path: Path) -> None:
    marker = README.index("<!-- tls walkthrough:")
    block = re.search(r"```sh\n(.*?)```", README[marker:], re.DOTALL)
    assert block is not None
    env: dict[str, str] = {}
    running: list[Server] = []
    try:
        for command in _commands(block.group(1)):
            args = shlex.split(command.removesuffix("&"))[1:]
            if command.endswith("&"):  # a server: on loopback, on a free port, for the test
                running.append(Server(*args, "--listen", "127.0.0.1:0", cwd=tmp_path))
                env["SAMENLOOP_ADMIN_HUB"] = running[-1].address
                continue
            result = samenloop(*args, cwd=tmp_path, env=env)
            assert result.returncode == 0, (command, result.stderr[-2000:])
            if "add-organisation" in command:
                assert "gemeente-noord" in result.stdout
        # the revoked certificate is refused from then on
        again = samenloop("admin", "list", "--organisation", "gemeente-noord", "--user",
                          "beheerder", "--tls-ca", "pki/ca.pem", "--tls-cert",
                          "pki/beheerder.pem", "--tls-key", "pki/beheerder.key",
                          cwd=tmp_path, env=env)
        assert again.returncode == 1 and "revoked" in again.stderr
    finally:
        codes = [server.stop() for server in running]
    assert codes == [0, 0]
