from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange import checkpoint
from exchange.errors import VerificationError

ORIGIN = "test.example/hub"
CP = checkpoint.Checkpoint(ORIGIN, 42, hashlib.sha256(b"root").digest(),
                           datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC))


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> checkpoint.CheckpointSigner:
    return checkpoint.CheckpointSigner.load_or_create(
        tmp_path_factory.mktemp("keys") / "cp.key", ORIGIN)


def test_sign_and_verify(signer: checkpoint.CheckpointSigner) -> None:
    note = signer.sign(CP)
    assert note.startswith(f"{ORIGIN}\n42\n")
    assert "\n\n\u2014 " + ORIGIN + " " in note
    assert checkpoint.verify(note, signer.public_key, ORIGIN) == CP


def test_key_file_is_reused(tmp_path: Path) -> None:
    first = checkpoint.CheckpointSigner.load_or_create(tmp_path / "k", ORIGIN)
    again = checkpoint.CheckpointSigner.load_or_create(tmp_path / "k", ORIGIN)
    assert first.public_key == again.public_key


def test_wrong_key_or_name_fails(signer: checkpoint.CheckpointSigner, tmp_path: Path) -> None:
    note = signer.sign(CP)
    other = checkpoint.CheckpointSigner.load_or_create(tmp_path / "other", ORIGIN)
    with pytest.raises(VerificationError):
        checkpoint.verify(note, other.public_key, ORIGIN)
    with pytest.raises(VerificationError):
        checkpoint.verify(note, signer.public_key, "other.example/hub")
    with pytest.raises(VerificationError):
        checkpoint.verify("garbage", signer.public_key, ORIGIN)


@given(st.data())
def test_any_changed_character_fails(signer: checkpoint.CheckpointSigner,
                                     data: st.DataObject) -> None:
    note = signer.sign(CP)
    index = data.draw(st.integers(0, len(note) - 1))
    replacement = data.draw(st.sampled_from("0123456789abcdefABCDEF+/= \n-x"))
    if note[index] == replacement:
        return
    changed = note[:index] + replacement + note[index + 1:]
    with pytest.raises(VerificationError):
        checkpoint.verify(changed, signer.public_key, ORIGIN)


def test_invalid_checkpoints_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="origin"):
        checkpoint.Checkpoint("two words", 1, bytes(32), CP.time)
    with pytest.raises(ValueError, match="size"):
        checkpoint.Checkpoint(ORIGIN, -1, bytes(32), CP.time)
    with pytest.raises(ValueError, match="timezone"):
        checkpoint.Checkpoint(ORIGIN, 1, bytes(32), datetime(2026, 1, 1))  # noqa: DTZ001
