"""Reading a partner's export: CSV with the columns below (one row per signal),
separated by commas, semicolons or tabs (whichever the header uses).

Required: case_ref, category, region, professional_name and either professional_phone
or professional_email; and a BSN or an address (postcode + house_number), because a
signal needs at least one key. Optional: given_names, surname_prefix, surname,
date_of_birth, street, city, observed_on, expires_on.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent import _normalise as norm
from agent._identity import Identity
from exchange import crypto, vocab
from exchange.errors import InvalidInput

COLUMNS = (
    "case_ref", "bsn", "given_names", "surname_prefix", "surname", "date_of_birth",
    "street", "house_number", "postcode", "city", "category", "region",
    "professional_name", "professional_phone", "professional_email",
    "observed_on", "expires_on",
)
REQUIRED = ("case_ref", "category", "region", "professional_name")


@dataclass(frozen=True)
class Record:
    """One normalised row, ready to pseudonymise and seal."""

    row: int
    case_ref: str
    keys: tuple[tuple[crypto.KeyKind, bytes], ...]
    identity: Identity
    category: str
    region: str
    professional: tuple[str, str, str]
    observed_at: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field} {self.problem}"


def _date(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        parsed = datetime.strptime(value.strip(), "%Y-%m-%d")  # noqa: DTZ007 - made UTC below
    except ValueError:
        raise norm.FieldError("must be a date like 2026-05-01") from None
    return parsed.replace(tzinfo=UTC)


def _record(row: int, data: dict[str, str]) -> Record:
    field = ""
    try:
        for field in REQUIRED:
            if not data.get(field, "").strip():
                raise norm.FieldError("is required")
        field = "case_ref"
        case_ref = vocab.text(norm.text(data["case_ref"]), "case_ref", max_len=128)
        field = "category"
        category = vocab.category(data["category"].strip())
        field = "region"
        region = vocab.region(data["region"].strip())
        field = "professional_name"
        prof_name = vocab.text(norm.text(data["professional_name"]), field, max_len=200)
        field = "professional_phone"
        phone = vocab.phone(norm.text(data.get(field, "")), field)
        field = "professional_email"
        email = vocab.email(norm.text(data.get(field, "")), field)
        if not phone and not email:
            field = "professional_phone"
            raise norm.FieldError("or professional_email is required")
        keys: list[tuple[crypto.KeyKind, bytes]] = []
        bsn = ""
        field = "bsn"
        if data.get("bsn", "").strip():
            bsn = norm.bsn(data["bsn"])
            keys.append((crypto.KeyKind.PERSON, bsn.encode()))
        postcode = house = ""
        if data.get("postcode", "").strip() or data.get("house_number", "").strip():
            field = "postcode"
            postcode = norm.postcode(data.get("postcode", ""))
            field = "house_number"
            number = norm.house_number(data.get("house_number", ""))
            addition = number[1]
            house = number[0] + (addition if addition.isalpha() else f"-{addition}"
                                 if addition else "")
            keys.append((crypto.KeyKind.ADDRESS, norm.address_key(postcode, number).encode()))
        if not keys:
            field = "bsn"
            raise norm.FieldError("or an address (postcode and house_number) is required")
        field = "date_of_birth"
        dob = norm.birth_date(data["date_of_birth"]) if data.get(field, "").strip() else ""
        field = "observed_on"
        observed = _date(data.get(field, ""))
        field = "expires_on"
        expires = _date(data.get(field, ""))
    except (norm.FieldError, InvalidInput) as exc:
        problem = str(exc) if isinstance(exc, norm.FieldError) else "is not valid"
        raise _RowFailure(RowError(row, field, problem)) from None
    identity = Identity(
        bsn=bsn, given_names=norm.text(data.get("given_names", "")),
        surname_prefix=norm.text(data.get("surname_prefix", "")),
        surname=norm.text(data.get("surname", "")), date_of_birth=dob,
        street=norm.text(data.get("street", "")), house_number=house, postcode=postcode,
        city=norm.text(data.get("city", "")), case_reference=case_ref,
    )
    return Record(row, case_ref, tuple(keys), identity, category, region,
                  (prof_name, phone, email), observed, expires)


class _RowFailure(Exception):
    def __init__(self, error: RowError) -> None:
        self.error = error


def read_csv(path: Path) -> Iterator[Record | RowError]:
    """Yield a Record or a RowError per data row (row 1 is the first row after the header)."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        first = fh.readline()
        fh.seek(0)
        # Dutch spreadsheet exports often use semicolons; take what the header uses.
        delimiter = max(",;\t", key=first.count)
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = reader.fieldnames or []
        unknown = sorted(set(header) - set(COLUMNS))
        missing = sorted(set(REQUIRED) - set(header))
        if unknown or missing:
            raise InvalidInput(
                f"{path}: " + (f"unknown column '{unknown[0]}'" if unknown
                               else f"missing column '{missing[0]}'")
                + f"; the columns are: {', '.join(COLUMNS)}")
        try:
            for number, raw in enumerate(reader, start=1):
                data = {k: (v or "") for k, v in raw.items() if k is not None}
                if None in raw:
                    yield RowError(number, "row", "has more values than the header")
                    continue
                try:
                    yield _record(number, data)
                except _RowFailure as failure:
                    yield failure.error
        except (csv.Error, UnicodeDecodeError):
            raise InvalidInput(f"{path} is not a readable UTF-8 CSV file") from None
