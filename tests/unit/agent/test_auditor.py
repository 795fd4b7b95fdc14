"""The privacy officer's client: what offline verification trusts from outside the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent._auditor import AuditSettings, offline_trust
from agent._witness import Seen
from exchange import checkpoint
from exchange.errors import FailedPrecondition, IntegrityError

ORIGIN = "samenloop.local/hub"


def _signer() -> checkpoint.CheckpointSigner:
    return checkpoint.CheckpointSigner(Ed25519PrivateKey.generate(), ORIGIN)


def _note(signer: checkpoint.CheckpointSigner, size: int, root: bytes) -> str:
    return signer.sign(checkpoint.Checkpoint(ORIGIN, size, root, datetime.now(UTC)))


def _settings(tmp_path: Path, hub_key: str = "") -> AuditSettings:
    return AuditSettings(organisation="org-a", hub_key=hub_key,
                         state_file=tmp_path / "state.json")


def _state(tmp_path: Path, signer: checkpoint.CheckpointSigner, size: int) -> None:
    note = _note(signer, size, bytes([size]) * 32)
    (tmp_path / "state.json").write_text(json.dumps({
        "hub_key": signer.public_key.hex(),
        "checkpoint": Seen(size, bytes([size]) * 32, note).to_json()}))


def test_the_state_file_gives_the_key_and_the_last_checkpoint(tmp_path: Path) -> None:
    signer = _signer()
    _state(tmp_path, signer, 7)
    (tmp_path / "other.note").write_text(_note(signer, 9, b"\x09" * 32))
    key, trusted = offline_trust(_settings(tmp_path), [tmp_path / "other.note"])
    assert key == signer.public_key
    assert trusted == [(7, b"\x07" * 32, str(tmp_path / "state.json")),
                       (9, b"\x09" * 32, str(tmp_path / "other.note"))]


def test_nothing_to_rest_on_without_a_state_file(tmp_path: Path) -> None:
    assert offline_trust(_settings(tmp_path), []) == (None, [])
    (tmp_path / "x.note").write_text(_note(_signer(), 3, b"\x03" * 32))
    with pytest.raises(FailedPrecondition, match="without the hub's key"):
        offline_trust(_settings(tmp_path), [tmp_path / "x.note"])


def test_a_key_that_conflicts_with_the_pinned_one_is_refused(tmp_path: Path) -> None:
    _state(tmp_path, _signer(), 7)
    with pytest.raises(IntegrityError, match="differs from the key pinned"):
        offline_trust(_settings(tmp_path, _signer().public_key.hex()), [])


def test_a_checkpoint_signed_by_another_key_is_refused(tmp_path: Path) -> None:
    signer = _signer()
    _state(tmp_path, signer, 7)
    (tmp_path / "forged.note").write_text(_note(_signer(), 9, b"\x09" * 32))
    with pytest.raises(IntegrityError, match=r"forged\.note is not signed by the hub's key"):
        offline_trust(_settings(tmp_path), [tmp_path / "forged.note"])


def test_the_state_file_only_moves_forward(tmp_path: Path) -> None:
    from agent._auditor import Auditor

    signer = _signer()
    _state(tmp_path, signer, 7)
    auditor = Auditor(_settings(tmp_path))  # no contact with any hub: only its state
    try:
        older = Seen(5, b"\x05" * 32, _note(signer, 5, b"\x05" * 32))
        auditor._remember(signer.public_key, older)
        assert json.loads((tmp_path / "state.json").read_text())["checkpoint"]["size"] == 7
        newer = Seen(9, b"\x09" * 32, _note(signer, 9, b"\x09" * 32))
        auditor._remember(signer.public_key, newer)
        assert json.loads((tmp_path / "state.json").read_text())["checkpoint"]["size"] == 9
        forked = Seen(9, b"\x0a" * 32, _note(signer, 9, b"\x0a" * 32))
        with pytest.raises(IntegrityError, match="two signed checkpoints of size 9"):
            auditor._remember(signer.public_key, forked)
    finally:
        auditor.close()
