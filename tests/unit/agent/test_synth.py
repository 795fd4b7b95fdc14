"""``samenloop synth``: deterministic, valid, and exactly as corrupted as documented."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import _normalise as norm
from agent import _synth as synth
from exchange.cli import main
from exchange.errors import InvalidInput

HARDEST = synth.SynthSpec(households=2000, partners=6, level="hardest", seed=7)
SMALL = synth.SynthSpec(households=250, partners=6, level="hardest", seed=3)
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def data() -> synth.SynthData:
    return synth.generate(HARDEST)


@pytest.fixture(scope="module")
def files(data: synth.SynthData) -> dict[str, bytes]:
    return synth.render(data)


def _mapping(files: dict[str, bytes], partner: str) -> dict[str, Any]:
    return tomllib.loads(files[f"{partner}.mapping.toml"].decode())


def _lookup(row: dict[str, Any], path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path in a JSON object."""
    target: Any = row
    for part in path.split("."):
        if not isinstance(target, dict) or part not in target:
            return False, None
        target = target[part]
    return True, target


def _canonical_rows(files: dict[str, bytes], partner: str) -> list[dict[str, Any]]:
    """A partner file read the way its mapping says: profile field -> value ("" if none)."""
    mapping = _mapping(files, partner)
    source, fields = mapping["source"], mapping["fields"]
    text = files[source["file"]].decode(source["encoding"])
    rows: list[dict[str, Any]] = []
    if source["format"] == "csv":
        for raw in csv.DictReader(io.StringIO(text), delimiter=source["delimiter"]):
            row: dict[str, Any] = {f: raw[c] for f, c in fields.items()}
            if "related_bsns" in row:
                row["related_bsns"] = [b for b in row["related_bsns"].split(
                    source["list_separator"]) if b]
            rows.append(row)
    else:
        for line in text.splitlines():
            obj = json.loads(line)
            row = {}
            for name, path in fields.items():
                found, value = _lookup(obj, path)
                assert found, (partner, path)
                row[name] = ([] if name == "related_bsns" else "") if value is None else value
            rows.append(row)
    return rows


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


# -- determinism ---------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() -> None:
    first = synth.render(synth.generate(SMALL))
    again = synth.render(synth.generate(SMALL))
    other = synth.render(synth.generate(synth.SynthSpec(
        households=SMALL.households, partners=SMALL.partners, level=SMALL.level, seed=4)))
    assert first == again
    assert sorted(first) == sorted(other)
    for name in first:
        if name.startswith("partner") and not name.endswith(".toml"):
            assert first[name] != other[name], name
    assert first["truth.csv"] != other["truth.csv"]


def test_the_bytes_do_not_depend_on_the_interpreters_hash_seed() -> None:
    script = (
        "import hashlib, sys\n"
        "from agent import _synth as s\n"
        "files = s.render(s.generate(s.SynthSpec(households=120, partners=6, "
        "level='hardest', seed=5)))\n"
        "sys.stdout.write(hashlib.sha256(b''.join(k.encode() + v for k, v in "
        "sorted(files.items()))).hexdigest())\n")
    digests = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True)
        digests.add(done.stdout)
    files = synth.render(synth.generate(synth.SynthSpec(households=120, partners=6,
                                                        level="hardest", seed=5)))
    digests.add(hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items())))
                .hexdigest())
    assert len(digests) == 1


# -- people ----------------------------------------------------------------------------------


def test_every_bsn_passes_the_elfproef_and_belongs_to_one_person(data: synth.SynthData) -> None:
    bsns = [p.bsn for p in data.persons]
    assert len(bsns) == len(set(bsns)) > 4000
    for value in bsns:
        assert synth.bsn_valid(value)
        assert norm.bsn(value) == value  # the agent's own check agrees
        assert value[0] != "0"
    assert not synth.bsn_valid("111222334")


def test_children_are_younger_than_their_parents_and_parents_than_grandparents(
        data: synth.SynthData) -> None:
    def years(older: synth.Person, younger: synth.Person) -> float:
        return (younger.date_of_birth - older.date_of_birth).days / 365.25

    families = 0
    for hh in data.households:
        roles = defaultdict(list)
        for person in hh.members:
            roles[person.role].append(person)
            assert date(1900, 1, 1) <= person.date_of_birth <= HARDEST.reference_date
        for parent in roles["parent"]:
            for child in roles["child"]:
                assert years(parent, child) >= 16
                families += 1
            for grandparent in roles["grandparent"]:
                assert years(grandparent, parent) >= 16
        if roles["child"]:
            assert roles["parent"], hh.kind
            assert all(c.surname in {p.surname for p in hh.members if p.role == "parent"}
                       or hh.kind in ("single_parent", "multigenerational")
                       for c in roles["child"])
    assert families > 1000


def test_households_have_dutch_compositions_and_addresses(data: synth.SynthData) -> None:
    kinds = Counter(hh.kind for hh in data.households)
    assert set(kinds) == {"single", "couple", "couple_children", "single_parent",
                          "elderly_couple", "elderly_single", "multigenerational"}
    own_addresses = [hh.address.key for hh in data.households if not hh.address.institution]
    moved_to = [hh.new_address.key for hh in data.households if hh.new_address]
    assert len(set(own_addresses + moved_to)) == len(own_addresses) + len(moved_to)
    for hh in data.households:
        assert 1 <= len(hh.members) <= 8
        for address in (hh.address, hh.new_address):
            if address is None:
                continue
            assert norm.postcode(address.postcode) == address.postcode
            assert address.postcode[4:] not in ("SA", "SD", "SS")
            assert 1 <= address.number <= 300
            assert address.addition in ("", "A", "B", "C", "D", "1", "2", "3", "4", "bis", "hs")
            assert address.region.startswith("GM")
    persons = data.persons
    assert Counter(p.sex for p in persons)["X"] < len(persons) * 0.01
    assert any(p.surname_prefix == "van der" for p in persons)
    assert any(not "".join(p.given_names).isascii() for p in persons)
    assert sum(len(p.given_names) > 1 for p in persons) > len(persons) * 0.3


# -- files ------------------------------------------------------------------------------------


def test_each_partner_file_parses_as_its_mapping_declares(data: synth.SynthData,
                                                          files: dict[str, bytes]) -> None:
    assert {"truth.csv", "institutions.csv", "households.csv", "README.txt"} <= set(files)
    formats = set()
    for pf in data.partners:
        mapping = _mapping(files, pf.partner)
        source, fields = mapping["source"], mapping["fields"]
        assert mapping["profile"] == "nl-household"
        assert source["file"] == pf.filename and source["format"] in ("csv", "jsonl")
        assert set(fields) <= set(synth.PROFILE_FIELDS)
        assert {"case_ref", "date_of_birth", "category", "region", "observed_on"} <= set(fields)
        assert "full_name" in fields or {"given_names", "surname"} <= set(fields)
        text = files[pf.filename].decode("utf-8")
        if source["format"] == "csv":
            header = next(csv.reader(io.StringIO(text), delimiter=source["delimiter"]))
            assert set(fields.values()) <= set(header)
            assert len(header) == len(fields)
        formats.add((source["format"], source.get("delimiter"), source["date_format"]))
        rows = _canonical_rows(files, pf.partner)
        assert len(rows) == len(pf.records) > 0
        sexes = mapping["values"]["sex"]
        for row in rows:
            for name in ("date_of_birth", "observed_on"):
                if row[name]:
                    parsed = datetime.strptime(  # noqa: DTZ007 - a date, no time
                        row[name], source["date_format"]).date()
                    assert parsed <= HARDEST.reference_date
            assert row["sex"] == "" or row["sex"] in sexes
            assert row["category"] == pf.profile.category
            if row["postcode"]:
                norm.postcode(row["postcode"])  # every spelling is one the agent reads
                house = f"{row['house_number']} {row.get('house_addition') or ''}"
                norm.house_number(house.strip())
    assert len(formats) == len(data.partners)  # each partner writes its own way


def test_the_truth_covers_every_record_exactly_once(data: synth.SynthData,
                                                    files: dict[str, bytes]) -> None:
    truth = list(csv.DictReader(io.StringIO(files["truth.csv"].decode())))
    keys = [(t["partner"], t["case_ref"]) for t in truth]
    assert len(keys) == len(set(keys))
    in_files = [(pf.partner, row["case_ref"]) for pf in data.partners
                for row in _canonical_rows(files, pf.partner)]
    assert sorted(in_files) == sorted(keys)
    households = {p.person_id: p.household_id for p in data.persons}
    assert all(households[t["person_id"]] == t["household_id"] for t in truth)
    person_links, household_links = data.links()
    people = Counter(t["person_id"] for t in truth)
    assert person_links == sum(n * (n - 1) // 2 for n in people.values()) > 1000
    assert household_links > person_links
    # many households are known to two or more partners, some to one
    spread = Counter(len(hh.partners) for hh in data.households)
    assert spread[1] > 300 and sum(n for k, n in spread.items() if k >= 2) > 1000


def test_a_bsn_in_a_file_is_the_persons_own_or_missing(data: synth.SynthData,
                                                       files: dict[str, bytes]) -> None:
    persons = {p.person_id: p for p in data.persons}
    members = {hh.household_id: {p.bsn for p in hh.members} for hh in data.households}
    related = 0
    for pf in data.partners:
        for record, row in zip(pf.records, _canonical_rows(files, pf.partner), strict=True):
            person = persons[record.person_id]
            assert _digits(row.get("bsn", "")) in ("", person.bsn)
            for value in row.get("related_bsns", []):
                assert _digits(value) in members[record.household_id] - {person.bsn}
                related += 1
    assert related > 1000


def test_corruption_rates_at_hardest_are_the_documented_rates(data: synth.SynthData,
                                                              files: dict[str, bytes]) -> None:
    level = synth.LEVELS["hardest"]
    records = data.records()
    persons = {p.person_id: p for p in data.persons}
    n = len(records)
    tags = Counter(t.split(":")[0] for r in records for t in r.corruptions)

    def near(share: float, rate: float, tolerance: float) -> None:
        assert abs(share - rate) <= tolerance, (share, rate)

    typos = tags["typo"] + tags["typo2"]
    near(typos / n, level.typo, 0.02)
    near(tags["typo2"] / typos, level.typo_second, 0.05)
    near(tags["swap_names"] / n, level.swap_names, 0.007)
    near(tags["initials"] / n, level.initials, 0.015)
    near(tags["case_noise"] / n, level.case_noise, 0.02)
    near(tags["sex_missing"] / n, level.sex_missing, 0.012)
    near(tags["postcode_variant"] / n, level.postcode_variant, 0.03)
    near(tags["duplicate"] / n, level.duplicate, 0.007)
    near(sum(t.startswith("dob_error") for r in records for t in r.corruptions) / n,
         level.dob_error, 0.01)
    several = [r for r in records
               if len(persons[r.person_id].given_names) > 1 and "initials" not in r.corruptions]
    near(sum("first_name_only" in r.corruptions for r in several) / len(several),
         level.first_name_only, 0.03)
    with_particle = [r for r in records if persons[r.person_id].surname_prefix
                     and "married_name" not in r.corruptions]
    near(sum(any(t.startswith("particle:") for t in r.corruptions) for r in with_particle)
         / len(with_particle), level.particle_variant, 0.04)

    def marked(record: synth.Record) -> bool:
        person = persons[record.person_id]
        given = person.given_names[:1] if "first_name_only" in record.corruptions else (
            person.given_names)
        text = " ".join([*given, person.surname_prefix, person.surname])
        return synth.ascii_fold(text) != text

    accented = [r for r in records if "married_name" not in r.corruptions and marked(r)]
    near(sum(any(t.startswith("diacritics") for t in r.corruptions) for r in accented)
         / len(accented), level.diacritics, 0.05)
    flats = [r for r in records if r.held_address.addition]
    near(sum("addition_variant" in r.corruptions for r in flats) / len(flats),
         level.addition_variant, 0.05)
    near(sum("addition_dropped" in r.corruptions for r in flats) / len(flats),
         level.addition_dropped, 0.025)

    # read from the files themselves: missing BSNs, dates of birth and addresses
    rows = {pf.partner: _canonical_rows(files, pf.partner) for pf in data.partners}
    everything = [row for partner_rows in rows.values() for row in partner_rows]
    near(sum(not row["date_of_birth"] for row in everything) / n, level.dob_missing, 0.01)
    for pf in data.partners:
        if pf.profile.key == "housing":
            assert "bsn" not in _mapping(files, pf.partner)["fields"]  # no BSN at all
            continue
        rate = level.bsn_missing_low if pf.profile.bsn_rate == "low" else (
            level.bsn_missing_high)
        near(sum(not row["bsn"] for row in rows[pf.partner]) / len(pf.records), rate, 0.04)
    with_bsn = [row for row in everything if row.get("bsn")]
    near(sum(not row["postcode"] for row in with_bsn) / len(with_bsn),
         level.address_missing, 0.01)
    assert all(row.get("bsn") or row["postcode"] for row in everything)

    # per household
    candidates = [hh for hh in data.households
                  if len(hh.partners) >= 2 and not hh.address.institution]
    near(sum(hh.new_address is not None for hh in candidates) / len(candidates),
         level.moved, 0.025)
    near(sum(bool(hh.address.institution) for hh in data.households) / len(data.households),
         level.institution, 0.01)


def test_particles_and_house_numbers_are_written_in_the_documented_ways(
        data: synth.SynthData) -> None:
    seen = Counter(t for r in data.records() for t in r.corruptions)
    for kind in ("in_surname", "capital", "abbrev", "after", "merged", "dropped", "lower"):
        assert seen[f"particle:{kind}"] > 0, kind
    for tag in ("diacritics:fold", "diacritics:nfd", "dob_error:swap", "dob_error:digit",
                "married_name", "sex_x", "address_missing", "addition_dropped"):
        assert seen[tag] > 0, tag
    house_numbers = {str(r.row.get("Huisnummer") or r.row.get("house_no")
                         or r.row.get("huisnummer") or "") for r in data.records()}
    assert any(h.endswith((" II", " III", " IV")) for h in house_numbers)
    assert any(h.endswith("bis") for h in house_numbers)
    assert any("-" in h for h in house_numbers)
    names = {str(r.row.get("tenant_name", "")) for r in data.records()}
    assert any(name.startswith(("vd ", "v.d. ", "V.d. ", "v/d ")) for name in names)


def test_moved_households_have_different_addresses_at_two_partners(
        data: synth.SynthData, files: dict[str, bytes]) -> None:
    rows = {(pf.partner, row["case_ref"]): row for pf in data.partners
            for row in _canonical_rows(files, pf.partner)}
    moved = [hh for hh in data.households if hh.new_address]
    assert len(moved) > 50
    by_household: dict[str, list[synth.Record]] = defaultdict(list)
    for record in data.records():
        by_household[record.household_id].append(record)
    for hh in moved:
        assert hh.new_address is not None and hh.new_address.key != hh.address.key
        assert 0 < len(hh.moved_partners) < len(hh.partners)
        written: set[str] = set()
        for record in by_household[hh.household_id]:
            expected = hh.new_address if record.partner in hh.moved_partners else hh.address
            assert record.held_address == expected
            row = rows[(record.partner, record.case_ref)]
            if row["postcode"]:
                written.add(norm.postcode(row["postcode"]))
        old_side = [r for r in by_household[hh.household_id]
                    if r.partner not in hh.moved_partners]
        new_side = [r for r in by_household[hh.household_id] if r.partner in hh.moved_partners]
        hidden = any(all("address_missing" in r.corruptions for r in side)
                     for side in (old_side, new_side))
        same_postcode = hh.address.postcode == hh.new_address.postcode
        assert len(written) == 2 or hidden or same_postcode


def test_institutions_are_shared_by_unrelated_households(data: synth.SynthData,
                                                         files: dict[str, bytes]) -> None:
    listed = list(csv.DictReader(io.StringIO(files["institutions.csv"].decode())))
    assert len(listed) == len(data.institutions) >= 4
    keys = {(row["postcode"], int(row["house_number"])) for row in listed}
    at: dict[tuple[str, int], set[str]] = defaultdict(set)
    for record in data.records():
        address = record.held_address
        if (address.postcode, address.number) in keys:
            at[(address.postcode, address.number)].add(record.household_id)
    assert max(len(households) for households in at.values()) >= 3
    surnames = {hh.household_id: {p.surname for p in hh.members} for hh in data.households}
    for households in at.values():
        if len(households) > 1:  # unrelated: different households, mostly different names
            assert len(set().union(*(surnames[h] for h in households))) > 1


def test_typos_always_change_a_name() -> None:
    rng = random.Random(1)  # noqa: S311 - the generator's own kind of randomness
    for word in ("Jan", "Bo", "Zoë", "El Amrani", "Tjin-A-Lim", "Yılmaz", "Ay"):  # noqa: RUF001
        for _ in range(200):
            typo = synth._typo(rng, word)
            assert typo and typo != word


# -- the command -----------------------------------------------------------------------------


def test_the_command_writes_the_files_and_refuses_a_non_empty_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    args = ["synth", "--households", "60", "--partners", "4", "--level", "hard",
            "--seed", "9", "--out", str(out)]
    assert main(args) == 0
    said = capsys.readouterr().out
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted([
        "README.txt", "households.csv", "institutions.csv", "persons.csv", "truth.csv",
        "partner1.csv", "partner2.csv", "partner3.jsonl", "partner4.csv",
        *(f"partner{i}.mapping.toml" for i in range(1, 5))])
    spec = synth.SynthSpec(households=60, partners=4, level="hard", seed=9)
    expected = synth.render(synth.generate(spec))
    assert all((out / name).read_bytes() == content for name, content in expected.items())
    data = synth.generate(spec)
    person_links, household_links = data.links()
    assert "60 households" in said and f"{person_links} person links" in said
    assert f"{household_links} household links" in said
    assert len(said.strip().splitlines()) == 1  # one paragraph
    for person in data.persons:  # counts only: no identities on the terminal
        assert person.bsn not in said and f"{person.given_names[0]} " not in said
    assert "seed=9" in (out / "README.txt").read_text()

    assert main(args) == 1
    assert "is not empty" in capsys.readouterr().err
    a_file = tmp_path / "plain"
    a_file.write_text("x")
    assert main([*args[:-1], str(a_file)]) == 1


def test_the_help_shows_the_rates_and_the_docstring_matches_them(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["synth", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    table = synth.rates_table()
    assert table.splitlines()[1] in out and table.splitlines()[-1] in out
    assert all(line in (synth.__doc__ or "") for line in table.splitlines())
    with pytest.raises(SystemExit):
        main(["synth", "--partners", "7", "--out", "x"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(("spec", "problem"), [
    (synth.SynthSpec(partners=1), "partners"),
    (synth.SynthSpec(partners=7), "partners"),
    (synth.SynthSpec(households=0), "households"),
    (synth.SynthSpec(level="extreme"), "level"),
])
def test_a_bad_spec_is_refused(spec: synth.SynthSpec, problem: str) -> None:
    with pytest.raises(InvalidInput, match=problem):
        synth.generate(spec)


def test_levels_corrupt_more_as_they_get_harder() -> None:
    order = [synth.LEVELS[name] for name in ("easy", "medium", "hard", "hardest")]
    for attr in (f for f in vars(order[0]) if f != "name"):
        values = [getattr(level, attr) for level in order]
        assert values == sorted(values), attr
    assert all(order[-1].__dict__[k] > order[0].__dict__[k] for k in ("typo", "moved"))
