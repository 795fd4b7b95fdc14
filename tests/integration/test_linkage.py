"""Fuzzy linkage through the real path: mapped exports, the key service's OPRF, the hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from agent import Admin, AdminSettings
from exchange import crypto, linkage
from exchange.cli import main
from exchange.db import session_factory
from hub._models import Signal, SignalKey
from tests.integration.conftest import Services

PROFILE = 'id = "nl-household"\nname = "Dutch households"\n'


def _with_profile(services: Services, tmp_path: Path) -> None:
    (tmp_path / "profile.toml").write_text(PROFILE)
    covenant = (tmp_path / "covenant.toml").read_text().replace(
        'regions = ["GM0014"]\n', 'regions = ["GM0014"]\nlinkage_profile = "nl-household"\n')
    (tmp_path / "covenant.toml").write_text(covenant)
    with Admin(AdminSettings(organisation="gemeente", hub=services.hub.address)) as admin:
        admin.profile(tmp_path / "profile.toml")
        admin.covenant(tmp_path / "covenant.toml")


def test_partners_without_a_bsn_find_one_person_through_the_oprf(services: Services,
                                                                 tmp_path: Path) -> None:
    _with_profile(services, tmp_path)
    (tmp_path / "a.jsonl").write_text(json.dumps({
        "dossier": "A-1", "naam": {"voor": "Jan Pieter", "tussen": "van der", "achter": "Berg"},
        "geboren": "03-02-2001", "cat": "youth_care", "prof": "Pat", "tel": "050 1234567",
        "pc": "9711AB", "nr": "12"}) + "\n")
    (tmp_path / "a.toml").write_text(
        'profile = "nl-household"\n[source]\nformat = "jsonl"\ndate_format = "%d-%m-%Y"\n'
        '[fields]\ncase_ref = "dossier"\ngiven_names = "naam.voor"\n'
        'surname_prefix = "naam.tussen"\nsurname = "naam.achter"\ndate_of_birth = "geboren"\n'
        'category = "cat"\nprofessional_name = "prof"\nprofessional_phone = "tel"\n'
        'postcode = "pc"\nhouse_number = "nr"\n[constants]\nregion = "GM0014"\n')
    (tmp_path / "b.csv").write_text(
        "case;name;born;category\nB-1;Berg, van der, Jna P.;2001-02-03;housing\n")
    (tmp_path / "b.toml").write_text(
        'profile = "nl-household"\n[source]\nformat = "csv"\n[fields]\ncase_ref = "case"\n'
        'full_name = "name"\ndate_of_birth = "born"\ncategory = "category"\n'
        '[constants]\nregion = "GM0014"\nprofessional_name = "Sam"\n'
        'professional_email = "sam@example.org"\n')
    for org, export in (("org-a", "a.jsonl"), ("org-b", "b.csv")):
        summary = services.agent(org).submit_file(tmp_path / export,
                                                  mapping=tmp_path / f"{export[0]}.toml")
        assert (summary.submitted, summary.invalid) == (1, []), summary.describe()
    (alert,) = services.desk().alerts()
    assert {i.organisation_id for i in alert.involved} == {"org-a", "org-b"}

    # every token the hub holds came out of the key service: neither the clear value,
    # nor a hash of it, nor an OPRF under another key gives any of them
    with session_factory(services.engine)() as s:
        stored = set(s.scalars(select(SignalKey.value)))
    made = linkage.tokens(linkage.DEFAULT_PROFILE, linkage.name_parts(
        given_names="Jan Pieter", surname_prefix="van der", surname="Berg"), "2001-02-03")
    other = crypto.OprfKey.generate()
    recomputed = set()
    for kind, value in made:
        recomputed |= {value[:32].ljust(32, b"\0"), hashlib.sha256(value).digest(),
                       hashlib.sha256(crypto._oprf_input(kind, value)).digest()}
        recomputed |= set(crypto.pseudonymise([(kind, value)], public_key=other.public_key,
                                              evaluate=other.evaluate))
    assert len(stored) > len(made) and not stored & recomputed
    real = crypto.pseudonymise(made[:3], public_key=services.keyservice.service._key.public_key,
                               evaluate=services.keyservice.service._key.evaluate)
    assert set(real) <= stored  # with the key service's key they are the hub's tokens


def _profiles(services: Services) -> dict[str, str]:
    with session_factory(services.engine)() as s:
        return {sid: ref or "" for sid, ref in s.execute(select(Signal.id, Signal.profile))}


def test_rekey_moves_a_caseload_to_a_new_profile_version_and_token_scheme(
        services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens are compared only between signals made with one profile version and one
    token scheme; after a new version, 'rekey' re-submits the cases made otherwise, and
    they link again with the partners' new signals."""
    monkeypatch.delenv("SAMENLOOP_CONFIG", raising=False)
    _with_profile(services, tmp_path)
    mapping = tmp_path / "map.toml"
    mapping.write_text(
        'profile = "nl-household"\n[source]\nformat = "csv"\n[fields]\ncase_ref = "case"\n'
        'full_name = "name"\ndate_of_birth = "born"\ncategory = "category"\n'
        '[constants]\nregion = "GM0014"\nprofessional_name = "Sam"\n'
        'professional_email = "sam@example.org"\n')
    a_export = tmp_path / "a.csv"
    a_export.write_text("case;name;born;category\nA-1;Berg, van der, Jan P.;2001-02-03;"
                        "youth_care\nA-2;Vos, Mia;1999-09-09;youth_care\n")
    assert services.agent("org-a").submit_file(a_export, mapping=mapping).submitted == 2
    assert set(_profiles(services).values()) == {f"nl-household@v1/t{linkage.TOKEN_SCHEME}"}

    # a new version of the profile: org-b's tokens are made with it, org-a's are not
    (tmp_path / "profile.toml").write_text(PROFILE + "[score]\nthreshold = 9.5\n")
    with Admin(AdminSettings(organisation="gemeente", hub=services.hub.address)) as admin:
        admin.profile(tmp_path / "profile.toml")
    b_export = tmp_path / "b.csv"
    b_export.write_text("case;name;born;category\nB-1;Jna Pieter van der Berg;2001-02-03;"
                        "housing\n")
    assert services.agent("org-b").submit_file(b_export, mapping=mapping).submitted == 1
    assert services.desk().alerts() == []  # v1 and v2 tokens are not compared
    (tmp_path / "a-new.csv").write_text("case;name;born;category\nA-3;Kok, Ali;1988-08-08;"
                                        "youth_care\n")
    told = services.agent("org-a").submit_file(tmp_path / "a-new.csv", mapping=mapping)
    assert told.outdated == 2 and "2 earlier signals carry tokens of another linkage " \
        "profile version" in told.describe() and "agent rekey" in told.describe()

    before = set(_profiles(services))
    flags = ["--organisation", "org-a", "--hub", services.hub.address,
             "--keyservice", services.keyservice.address,
             "--state-database", f"sqlite:///{services.root / 'org-a'}-agent.db",
             "--input", str(a_export), "--mapping", str(mapping)]
    assert main(["agent", "rekey", *flags]) == 0
    assert ("2 rows read, 2 signals replaced with the current key and tokens, 0 already "
            "current") in capsys.readouterr().out
    after = _profiles(services)
    assert len(after) == 4 and len(set(after) - before) == 2  # replaced, not added
    assert set(after.values()) == {f"nl-household@v2/t{linkage.TOKEN_SCHEME}"}
    (alert,) = services.desk().alerts()
    assert {i.organisation_id for i in alert.involved} == {"org-a", "org-b"}
    again = services.agent("org-a")
    done = again.rekey(again.records(a_export, mapping))
    assert (done.submitted, done.outdated) == (0, 0)
    assert services.agent("org-a").submit_file(tmp_path / "a-new.csv",
                                               mapping=mapping).outdated == 0
