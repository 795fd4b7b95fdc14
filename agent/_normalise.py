"""Normalisation of Dutch identifiers before pseudonymisation.

Each function returns the canonical form or raises :class:`FieldError` naming the
problem, never the value. Two records of the same person or address must normalise
to the same bytes, or their pseudonyms will not match.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime


class FieldError(ValueError):
    """A field cannot be normalised; the message never contains the value."""


_SPACES = re.compile(r"\s+")
_POSTCODE = re.compile(r"^([1-9][0-9]{3})\s*([A-Z]{2})$")
# A number, then optionally: a separator and any addition ("12-2", "12 / 3"), a letter-led
# addition ("12A", "12 bis", "12A 3"), or a space and digits ("12 2"). "1234567" is no address.
_HOUSE = re.compile(
    r"^([0-9]{1,5})(?:"
    r"\s*[-/]\s*([A-Z0-9]{1,6}(?:[ -]?[A-Z0-9]{1,6})?)"
    r"|\s*([A-Z][A-Z0-9]{0,5}(?:[ -]?[A-Z0-9]{1,6})?)"
    r"|\s+([0-9]{1,6})"
    r")?$")
_DATE_FORMATS = ("%Y-%m-%d", "%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y%m%d")


def text(value: str) -> str:
    """Trimmed, whitespace-collapsed, NFC text (for envelopes, not for keys)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", value)).strip()


def bsn(value: str) -> str:
    """A BSN as 9 digits that pass the elfproef (an 8-digit BSN gains a leading 0)."""
    digits = re.sub(r"[\s.-]", "", value)
    if not digits.isascii() or not digits.isdigit() or len(digits) not in (8, 9):
        raise FieldError("must be 8 or 9 digits")
    digits = digits.zfill(9)
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    total = sum(int(d) * w for d, w in zip(digits, weights, strict=True))
    if total % 11 != 0 or digits == "000000000":
        raise FieldError("fails the elfproef (11-check)")
    return digits


def postcode(value: str) -> str:
    """A Dutch postcode as '1234AB'."""
    match = _POSTCODE.fullmatch(text(value).upper())
    if not match:
        raise FieldError("must be four digits and two letters, like 1234 AB")
    return match.group(1) + match.group(2)


def house_number(value: str) -> tuple[str, str]:
    """(number, addition): '12', '12A', '12 a', '12-2', '12bis' -> ('12', 'A'|'2'|'BIS')."""
    match = _HOUSE.fullmatch(text(value).upper())
    if not match or int(match.group(1)) == 0:
        raise FieldError("must be a house number with an optional letter or addition")
    addition = re.sub(r"[\s-]", "", next((g for g in match.groups()[1:] if g), ""))
    return str(int(match.group(1))), addition


def birth_date(value: str) -> str:
    """An ISO date (YYYY-MM-DD) from the common Dutch and ISO spellings."""
    cleaned = text(value)
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(cleaned, fmt).date()  # noqa: DTZ007 - a date, no time
        except ValueError:
            continue
        if not date(1900, 1, 1) <= parsed <= datetime.now(UTC).date():
            raise FieldError("is not a plausible date of birth")
        return parsed.isoformat()
    raise FieldError("is not a date (use YYYY-MM-DD or DD-MM-YYYY)")


def address_key(postcode_value: str, house: tuple[str, str]) -> str:
    """The address key's input: postcode, number and addition."""
    return f"{postcode_value}|{house[0]}|{house[1]}"
