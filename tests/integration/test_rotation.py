"""Rotating the OPRF key: the key service evaluates the retiring key on request, so agents
can carry old pseudonyms next to new ones while the caseload is re-submitted."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import (
    Admin,
    AdminSettings,
    Agent,
    AgentSettings,
    CoordinatorDesk,
    CoordinatorSettings,
    _source,
)
from agent._client import KeyServiceClient
from exchange import crypto, rpc
from exchange.errors import ConfigError, FailedPrecondition
from exchange.v1 import coordinator_pb2
from hub import HubSettings, KeyServiceSettings, start_hub, start_keyservice
from tests.integration.conftest import person, write_csv
from tests.support import current_covenant


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


def test_a_rotation_from_end_to_end(tmp_path: Path, database_url: str) -> None:
    """Old signals keep linking while partners move over; after every partner re-submitted
    and the old key is retired, a newcomer under the new key still finds the family."""
    old, new = crypto.OprfKey.generate(), crypto.OprfKey.generate()
    keyservice = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0"), key=old)
    hub = start_hub(HubSettings(listen="127.0.0.1:0", database_url=database_url,
                                checkpoint_key=tmp_path / "cp.key", migrate=True))
    coord_key = crypto.EnvelopeKey.generate()
    try:
        with Admin(AdminSettings(organisation="gemeente", hub=hub.address)) as admin:
            admin.organisation("gemeente", "Gemeente")
            for org in ("org-a", "org-b", "org-c"):
                admin.organisation(org, org.upper())
            admin.coordinator("coord-a", "gemeente", "C", "050 0000000", "",
                              coord_key.public_key)
            (tmp_path / "covenant.toml").write_text(current_covenant())
            admin.covenant(tmp_path / "covenant.toml")

        def agent(org: str) -> Agent:
            return Agent(AgentSettings(organisation=org, hub=hub.address,
                                       keyservice=keyservice.address, retry_seconds=0,
                                       state_database=f"sqlite:///{tmp_path / org}.db"))

        exports = {
            "org-a": write_csv(tmp_path / "a.csv", [person("A-1", "111222333")]),
            "org-b": write_csv(tmp_path / "b.csv", [
                person("B-1", "111222333", category="housing"),
                person("B-2", "123456782", category="housing")]),
        }
        for org, export in exports.items():
            with agent(org) as a:
                assert a.submit_file(export).submitted >= 1
        (alert,) = _alerts(hub.address)

        # the key service rotates: the new key, and the old one still evaluated by id
        keyservice.stop(grace=1)
        keyservice = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0"), key=new,
                                      previous=old)
        with agent("org-a") as a:
            with pytest.raises(FailedPrecondition, match="trust-key"):
                a.submit_file(write_csv(tmp_path / "a2.csv", [person("A-2", "123456782")]))
            changed = a.trust_current_keys()
            assert any("retiring OPRF key" in c for c in changed)
            # a new case of org-a links with org-b's old signal through the old pseudonym
            assert a.submit_file(tmp_path / "a2.csv").submitted == 1
            assert len(_alerts(hub.address)) == 2
            rekeyed = a.rekey(_source.read_csv(exports["org-a"]))
            assert (rekeyed.submitted, rekeyed.already_submitted) == (1, 0)
            assert a.rekey(_source.read_csv(exports["org-a"])).submitted == 0  # idempotent
        with agent("org-b") as b:
            b.trust_current_keys()
            assert b.rekey(_source.read_csv(exports["org-b"])).submitted == 2
        still = {x.alert_id: x for x in _alerts(hub.address)}
        assert alert.alert_id in still  # the replacements kept their place
        assert {i.organisation_id for i in still[alert.alert_id].involved} == {"org-a",
                                                                               "org-b"}

        # rotation done: the old key is gone; a newcomer pins the new key on first use
        keyservice.stop(grace=1)
        keyservice = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0"), key=new)
        with agent("org-c") as c:
            c.submit_file(write_csv(tmp_path / "c.csv", [
                person("C-1", "111222333", category="debt")]))
        after = {x.alert_id: x for x in _alerts(hub.address)}
        assert {i.organisation_id for i in after[alert.alert_id].involved} == {
            "org-a", "org-b", "org-c"}
    finally:
        hub.stop(grace=1)
        keyservice.stop(grace=1)


def _alerts(address: str) -> list[coordinator_pb2.Alert]:
    with CoordinatorDesk(CoordinatorSettings(coordinator_id="coord-a", organisation="gemeente",
                                             hub=address)) as desk:
        return desk.alerts()
