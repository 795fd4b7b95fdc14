"""Rotating the OPRF key: the key service evaluates the retiring key on request, so agents
can carry old pseudonyms next to new ones while the caseload is re-submitted."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent._client import KeyServiceClient
from exchange import crypto, rpc
from exchange.errors import ConfigError, FailedPrecondition
from hub import KeyServiceSettings, start_keyservice


def test_the_key_service_serves_the_retiring_key_by_id(tmp_path: Path) -> None:
    old, new = crypto.OprfKey.generate(), crypto.OprfKey.generate()
    old.save(tmp_path / "old.key")
    new.save(tmp_path / "new.key")
    running = start_keyservice(KeyServiceSettings(
        listen="127.0.0.1:0", key_file=tmp_path / "new.key",
        previous_key_file=tmp_path / "old.key"))
    try:
        with KeyServiceClient(running.address, rpc.Caller("org-a", "agent", "partner")) as ks:
            announced = ks.public_key()
            assert (announced.key_id, announced.previous_key_id) == (new.key_id, old.key_id)
            assert bytes(announced.previous_public_key) == old.public_key
            item = [(crypto.KeyKind.PERSON, b"111222333")]
            by_old = crypto.pseudonymise(item, public_key=old.public_key,
                                         evaluate=ks.evaluator(old.key_id))
            by_new = crypto.pseudonymise(item, public_key=new.public_key,
                                         evaluate=ks.evaluator(new.key_id))
            assert by_old != by_new
            # the same pseudonym the old key service gave: old signals still link
            assert by_old == crypto.pseudonymise(item, public_key=old.public_key,
                                                 evaluate=old.evaluate)
            with pytest.raises(FailedPrecondition, match="not the current key"):
                crypto.pseudonymise(item, public_key=new.public_key,
                                    evaluate=ks.evaluator("0" * 16))
    finally:
        running.stop(grace=1)
    with pytest.raises(ConfigError, match="same key"):
        start_keyservice(KeyServiceSettings(listen="127.0.0.1:0", key_file=tmp_path / "new.key",
                                            previous_key_file=tmp_path / "new.key"))
