"""Reading a partner's export into records: a CSV with the columns below (one row per
signal, separated by commas, semicolons or tabs, whichever the header uses), or any
source a mapping file describes (agent._mapping: CSV, JSON Lines, an SQL query).

Required: case_ref, category, region, professional_name and either professional_phone
or professional_email; and something to link on: a BSN, an address (postcode +
house_number), or — when the covenant has a linkage profile — a name with a date of
birth. Optional: given_names, surname_prefix, surname (or full_name, initials),
date_of_birth, house_addition, street, city, observed_on, expires_on, and related_bsns
(BSNs of household members the partner knows, separated by ";").
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent import _normalise as norm
from agent._identity import Identity
from exchange import crypto, linkage, vocab
from exchange.errors import InvalidInput

COLUMNS = (
    "case_ref", "bsn", "given_names", "surname_prefix", "surname", "date_of_birth",
    "street", "house_number", "postcode", "city", "category", "region",
    "professional_name", "professional_phone", "professional_email",
    "observed_on", "expires_on", "full_name", "initials", "house_addition", "sex",
    "related_bsns",
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


def record(row: int, data: dict[str, str],
           profile: linkage.Profile | None = None) -> Record | RowError:
    """A row's record, or the first problem with it (by field, never the value)."""
    try:
        return _record(row, data, profile)
    except _RowFailure as failure:
        return failure.error


@dataclass
class _At:
    """The field being read, for the error report."""

    field: str = ""


def _record(row: int, data: dict[str, str], profile: linkage.Profile | None = None) -> Record:
    at = _At()
    try:
        case_ref, category, region, professional = _signal_fields(data, at)
        keys, bsn, postcode, house, dob = _keys(data, profile, at)
        at.field = "observed_on"
        observed = _date(data.get(at.field, ""))
        at.field = "expires_on"
        expires = _date(data.get(at.field, ""))
    except (norm.FieldError, InvalidInput) as exc:
        problem = str(exc) if isinstance(exc, norm.FieldError) else "is not valid"
        raise _RowFailure(RowError(row, at.field, problem)) from None
    given_names, surname = data.get("given_names", ""), data.get("surname", "")
    if not (given_names or surname) and data.get("full_name", ""):
        surname = data["full_name"]  # as the partner wrote it; the coordinator reads it
    identity = Identity(
        bsn=bsn, given_names=norm.text(given_names or data.get("initials", "")),
        surname_prefix=norm.text(data.get("surname_prefix", "")),
        surname=norm.text(surname), date_of_birth=dob,
        street=norm.text(data.get("street", "")), house_number=house, postcode=postcode,
        city=norm.text(data.get("city", "")), case_reference=case_ref,
    )
    return Record(row, case_ref, tuple(keys), identity, category, region, professional,
                  observed, expires)


def _signal_fields(data: dict[str, str],
                   at: _At) -> tuple[str, str, str, tuple[str, str, str]]:
    for at.field in REQUIRED:
        if not data.get(at.field, "").strip():
            raise norm.FieldError("is required")
    at.field = "case_ref"
    case_ref = vocab.text(norm.text(data["case_ref"]), "case_ref", max_len=128)
    at.field = "category"
    category = vocab.category(data["category"].strip())
    at.field = "region"
    region = vocab.region(data["region"].strip())
    at.field = "professional_name"
    name = vocab.text(norm.text(data["professional_name"]), at.field, max_len=200)
    at.field = "professional_phone"
    phone = vocab.phone(norm.text(data.get(at.field, "")), at.field)
    at.field = "professional_email"
    email = vocab.email(norm.text(data.get(at.field, "")), at.field)
    if not phone and not email:
        at.field = "professional_phone"
        raise norm.FieldError("or professional_email is required")
    return case_ref, category, region, (name, phone, email)


def _keys(data: dict[str, str], profile: linkage.Profile | None, at: _At
          ) -> tuple[list[tuple[crypto.KeyKind, bytes]], str, str, str, str]:
    """The keys to pseudonymise, and the BSN, postcode, house number and birth date."""
    keys: list[tuple[crypto.KeyKind, bytes]] = []
    bsn = ""
    at.field = "bsn"
    if data.get("bsn", "").strip():
        bsn = norm.bsn(data["bsn"])
        keys.append((crypto.KeyKind.PERSON, bsn.encode()))
    at.field = "related_bsns"
    for member in sorted({norm.bsn(b) for b in data.get(at.field, "").split(";")
                          if b.strip()} - {bsn}):
        keys.append((crypto.KeyKind.MEMBER, member.encode()))
    postcode = house = ""
    number = ("", "")
    if data.get("postcode", "").strip() or data.get("house_number", "").strip():
        at.field = "postcode"
        postcode = norm.postcode(data.get("postcode", ""))
        at.field = "house_number"
        number = norm.house_number(
            f"{data.get('house_number', '')} {data.get('house_addition', '')}".strip())
        addition = number[1]
        house = number[0] + (addition if addition.isalpha() else f"-{addition}"
                             if addition else "")
        keys.append((crypto.KeyKind.ADDRESS, norm.address_key(postcode, number).encode()))
    at.field = "date_of_birth"
    dob = norm.birth_date(data["date_of_birth"]) if data.get(at.field, "").strip() else ""
    name = linkage.name_parts(
        given_names=data.get("given_names", ""), surname_prefix=data.get("surname_prefix", ""),
        surname=data.get("surname", ""), full_name=data.get("full_name", ""),
        initials=data.get("initials", ""))
    building = (f"{postcode}|{number[0]}" if postcode else "")
    sex = {"M": "M", "F": "F", "V": "F"}.get(data.get("sex", "").strip().upper(), "")
    fuzzy = (linkage.tokens(profile, name, dob, address=building, sex=sex)
             if profile is not None else [])
    if not keys and not any(k is crypto.KeyKind.BLOCK for k, _ in fuzzy):
        at.field = "bsn"
        raise norm.FieldError(
            "or an address (postcode and house_number) is required"
            + (", or a name with a date of birth" if profile is not None else ""))
    return keys + fuzzy, bsn, postcode, house, dob


class _RowFailure(Exception):
    def __init__(self, error: RowError) -> None:
        self.error = error


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """The rows of any CSV (commas, semicolons or tabs), by header name."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        first = fh.readline()
        fh.seek(0)
        reader = csv.DictReader(fh, delimiter=max(",;\t", key=first.count))
        try:
            for number, raw in enumerate(reader, start=1):
                yield number, {k: (v or "") for k, v in raw.items() if isinstance(k, str)}
        except (csv.Error, UnicodeDecodeError):
            raise InvalidInput(f"{path} is not a readable UTF-8 CSV file") from None


def read_csv(path: Path, profile: linkage.Profile | None = None
             ) -> Iterator[Record | RowError]:
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
                yield record(number, data, profile)
        except (csv.Error, UnicodeDecodeError):
            raise InvalidInput(f"{path} is not a readable UTF-8 CSV file") from None
