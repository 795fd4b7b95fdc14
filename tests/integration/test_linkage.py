"""Fuzzy linkage through the real path: mapped exports, the key service's OPRF, the hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from agent import Admin, AdminSettings
from exchange import crypto, linkage
from exchange.db import session_factory
from hub._models import SignalKey
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
