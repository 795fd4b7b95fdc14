from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agent import _source
from agent._identity import Identity, envelope_context
from exchange import crypto
from exchange.errors import InvalidInput, VerificationError

GOOD = {"case_ref": "C-1", "bsn": "111222333", "given_names": "Anna", "surname_prefix": "de",
        "surname": "Vries", "date_of_birth": "09-12-1986", "street": "Dorpsstraat",
        "house_number": "12a", "postcode": "9711 ab", "city": "Groningen",
        "category": "housing", "region": "GM0014", "professional_name": "A. Yilmaz",
        "professional_phone": "050 3652200", "professional_email": ""}


def _write(tmp_path: Path, rows: list[dict[str, str]],
           fields: list[str] | None = None) -> Path:
    path = tmp_path / "export.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(GOOD))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_good_row(tmp_path: Path) -> None:
    (record,) = _source.read_csv(_write(tmp_path, [GOOD]))
    assert isinstance(record, _source.Record)
    assert record.keys == ((crypto.KeyKind.PERSON, b"111222333"),
                           (crypto.KeyKind.ADDRESS, b"9711AB|12|A"))
    assert record.identity.date_of_birth == "1986-12-09"
    assert record.identity.house_number == "12A"
    assert record.professional == ("A. Yilmaz", "050 3652200", "")


def test_an_address_alone_is_enough(tmp_path: Path) -> None:
    (record,) = _source.read_csv(_write(tmp_path, [{**GOOD, "bsn": ""}]))
    assert isinstance(record, _source.Record)
    assert [k for k, _ in record.keys] == [crypto.KeyKind.ADDRESS]


@pytest.mark.parametrize(("change", "field", "problem"), [
    ({"bsn": "111222334"}, "bsn", "elfproef"),
    ({"bsn": "", "postcode": "", "house_number": ""}, "bsn", "or an address"),
    ({"postcode": "97111AB"}, "postcode", "four digits"),
    ({"category": "gossip"}, "category", "not valid"),
    ({"region": "Groningen"}, "region", "not valid"),
    ({"case_ref": ""}, "case_ref", "is required"),
    ({"professional_phone": ""}, "professional_phone", "is required"),
    ({"date_of_birth": "30-02-1986"}, "date_of_birth", "not a date"),
])
def test_bad_rows_name_row_and_field_never_the_value(tmp_path: Path, change: dict[str, str],
                                                     field: str, problem: str) -> None:
    rows = list(_source.read_csv(_write(tmp_path, [GOOD, {**GOOD, **change}])))
    assert isinstance(rows[0], _source.Record)
    error = rows[1]
    assert isinstance(error, _source.RowError)
    assert (error.row, error.field) == (2, field)
    assert problem in str(error)
    for value in change.values():
        if value:
            assert value not in str(error)


def test_unknown_or_missing_columns_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown column 'geboortedatum'"):
        list(_source.read_csv(_write(tmp_path, [], [*GOOD, "geboortedatum"])))
    with pytest.raises(InvalidInput, match="missing column 'case_ref'"):
        list(_source.read_csv(_write(tmp_path, [], [f for f in GOOD if f != "case_ref"])))
    with pytest.raises(InvalidInput, match="cannot read"):
        list(_source.read_csv(tmp_path / "missing.csv"))


def test_an_envelope_is_bound_to_its_signal_and_sender() -> None:
    identity = Identity("111222333", "Anna", "de", "Vries", "1986-12-09", "Dorpsstraat",
                        "12", "9711AB", "Groningen", "C-1")
    data = identity.to_bytes("s-1", "org-a")
    assert Identity.from_bytes(data, "s-1", "org-a") == identity
    with pytest.raises(VerificationError):
        Identity.from_bytes(data, "s-2", "org-a")
    with pytest.raises(VerificationError):
        Identity.from_bytes(data, "s-1", "org-b")
    with pytest.raises(VerificationError):
        Identity.from_bytes(b"not json", "s-1", "org-a")
    assert envelope_context("s", "o", "r") != envelope_context("s", "o", "r2")
    assert identity.display_name() == "Anna de Vries"


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_exports(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "export.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(GOOD), delimiter=delimiter)
        writer.writeheader()
        writer.writerow(GOOD)
    (record,) = _source.read_csv(path)
    assert isinstance(record, _source.Record)
    assert record.case_ref == "C-1"
