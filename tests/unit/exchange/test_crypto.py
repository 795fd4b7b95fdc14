from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import _oprf, crypto
from exchange.errors import InvalidInput, VerificationError

KEY = crypto.OprfKey.generate()
PERSON, ADDRESS = crypto.KeyKind.PERSON, crypto.KeyKind.ADDRESS


def _pseudonymise(items: list[tuple[crypto.KeyKind, bytes]], key: crypto.OprfKey = KEY,
                  **kw: object) -> list[bytes]:
    return crypto.pseudonymise(items, public_key=key.public_key, evaluate=key.evaluate, **kw)  # type: ignore[arg-type]


def test_pseudonyms_are_deterministic_despite_fresh_blinds() -> None:
    first = _pseudonymise([(PERSON, b"123456782")])
    second = _pseudonymise([(PERSON, b"123456782")])
    assert first == second
    assert len(first[0]) == crypto.PSEUDONYM_SIZE


def test_pseudonym_equals_the_unblinded_prf_of_the_domain_separated_input() -> None:
    sk = KEY._sk  # the test reaches into the key to compute the PRF without blinding
    expected = _oprf.Suite(_oprf.Mode.VOPRF).evaluate(sk, crypto._oprf_input(PERSON, b"42"))
    assert _pseudonymise([(PERSON, b"42")]) == [expected[:32]]


def test_kinds_are_domain_separated() -> None:
    person, address = _pseudonymise([(PERSON, b"1234AB|12|"), (ADDRESS, b"1234AB|12|")])
    assert person != address


def test_pseudonyms_depend_on_the_key_and_are_not_plain_hashes() -> None:
    value = b"123456782"
    ours = _pseudonymise([(PERSON, value)])[0]
    assert ours != _pseudonymise([(PERSON, value)], crypto.OprfKey.generate())[0]
    data = crypto._oprf_input(PERSON, value)
    for digest in (hashlib.sha256(value), hashlib.sha512(value), hashlib.sha256(data),
                   hashlib.sha512(data)):
        assert ours != digest.digest()[:32]


def test_batches_are_split_and_each_proof_checked() -> None:
    calls: list[int] = []

    def evaluate(blinded: Sequence[bytes]) -> tuple[list[bytes], bytes]:
        calls.append(len(blinded))
        return KEY.evaluate(blinded)

    items = [(PERSON, str(i).encode()) for i in range(600)]
    out = crypto.pseudonymise(items, public_key=KEY.public_key, evaluate=evaluate,
                              batch_size=256)
    assert calls == [256, 256, 88]
    assert out == _pseudonymise(items)


def test_a_key_service_using_another_key_is_caught() -> None:
    other = crypto.OprfKey.generate()
    with pytest.raises(VerificationError) as info:
        crypto.pseudonymise([(PERSON, b"1")], public_key=KEY.public_key,
                            evaluate=other.evaluate)
    assert str(info.value) == "verification failed"


def test_a_tampered_proof_stops_the_whole_call() -> None:
    def tampered(blinded: Sequence[bytes]) -> tuple[list[bytes], bytes]:
        evaluated, proof = KEY.evaluate(blinded)
        return evaluated, proof[:-1] + bytes([proof[-1] ^ 1])

    with pytest.raises(VerificationError):
        crypto.pseudonymise([(PERSON, b"1"), (PERSON, b"2")], public_key=KEY.public_key,
                            evaluate=tampered)


def test_a_short_answer_is_caught() -> None:
    with pytest.raises(VerificationError):
        crypto.pseudonymise([(PERSON, b"1"), (PERSON, b"2")], public_key=KEY.public_key,
                            evaluate=lambda b: (KEY.evaluate(b)[0][:1], KEY.evaluate(b)[1]))


def test_wrong_usage_fails_at_the_call() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        crypto.pseudonymise([(PERSON, b"1")], public_key=b"short", evaluate=KEY.evaluate)
    with pytest.raises(ValueError, match="valid"):
        crypto.pseudonymise([(PERSON, b"1")], public_key=bytes(32), evaluate=KEY.evaluate)
    with pytest.raises(ValueError, match="non-empty"):
        _pseudonymise([(PERSON, b"")])
    with pytest.raises(ValueError, match="batch_size"):
        _pseudonymise([(PERSON, b"1")], batch_size=0)
    with pytest.raises(TypeError):
        crypto.OprfKey("00" * 32)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="private key"):
        crypto.OprfKey(bytes(32))


def test_key_service_rejects_bad_batches() -> None:
    with pytest.raises(InvalidInput):
        KEY.evaluate([])
    with pytest.raises(InvalidInput):
        KEY.evaluate([os.urandom(32)] * (crypto.MAX_BATCH + 1))
    with pytest.raises(InvalidInput):
        KEY.evaluate([b"\xff" * 32])


def test_oprf_key_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "oprf.key"
    KEY.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.OprfKey.load(path).public_key == KEY.public_key
    with pytest.raises(FileExistsError):
        KEY.save(path)
    path.write_text("not a key")
    with pytest.raises(ValueError, match="does not hold"):
        crypto.OprfKey.load(path)
    assert "key_id" in repr(KEY) and KEY._sk.hex() not in repr(KEY)


ENVELOPE_KEY = crypto.EnvelopeKey.generate()
SEALED = crypto.seal(b'{"bsn": "123456782"}', ENVELOPE_KEY.public_key, b"context")


def test_envelope_round_trip() -> None:
    assert crypto.open(SEALED, ENVELOPE_KEY, b"context") == b'{"bsn": "123456782"}'
    assert b"123456782" not in SEALED


def test_envelope_fails_for_another_key_or_context() -> None:
    with pytest.raises(VerificationError):
        crypto.open(SEALED, crypto.EnvelopeKey.generate(), b"context")
    with pytest.raises(VerificationError):
        crypto.open(SEALED, ENVELOPE_KEY, b"other context")
    with pytest.raises(VerificationError):
        crypto.open(b"short", ENVELOPE_KEY, b"context")


@settings(max_examples=60)
@given(st.data())
def test_any_tampered_envelope_byte_fails(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(SEALED) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(SEALED)
    tampered[index] ^= flip
    with pytest.raises(VerificationError):
        crypto.open(bytes(tampered), ENVELOPE_KEY, b"context")


def test_envelope_key_file_and_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.key"
    ENVELOPE_KEY.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.EnvelopeKey.load(path).public_key == ENVELOPE_KEY.public_key
    with pytest.raises(ValueError, match="32 raw"):
        crypto.seal(b"x", b"short", b"c")
    with pytest.raises(TypeError):
        crypto.seal("text", ENVELOPE_KEY.public_key, b"c")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        crypto.open(SEALED, b"key", b"context")  # type: ignore[arg-type]
    (tmp_path / "bad.key").write_text("nope")
    with pytest.raises(ValueError, match="PEM"):
        crypto.EnvelopeKey.load(tmp_path / "bad.key")
