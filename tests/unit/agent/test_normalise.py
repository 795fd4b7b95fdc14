from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import _normalise as norm
from hub._demo import bsn_from


@pytest.mark.parametrize(("raw", "expected"), [
    ("111222333", "111222333"),
    ("111 222 333", "111222333"),
    ("111.222.333", "111222333"),
    ("12345672", "012345672"),  # an 8-digit BSN gains its leading zero
])
def test_valid_bsns(raw: str, expected: str) -> None:
    assert norm.bsn(raw) == expected


@pytest.mark.parametrize(("raw", "problem"), [
    ("111222334", "elfproef"),
    ("000000000", "elfproef"),
    ("12345", "8 or 9 digits"),
    ("1112223333", "8 or 9 digits"),
    ("11122233a", "8 or 9 digits"),
    ("١١١٢٢٢٣٣٣", "8 or 9 digits"),  # non-ASCII digits
])
def test_invalid_bsns_never_echo_the_value(raw: str, problem: str) -> None:
    with pytest.raises(norm.FieldError) as info:
        norm.bsn(raw)
    assert problem in str(info.value)
    assert raw not in str(info.value)


@given(st.integers(0, 10**6))
def test_generated_bsns_pass_and_a_changed_digit_fails(seed: int) -> None:
    value = bsn_from(seed)
    assert norm.bsn(value) == value
    changed = value[:4] + str((int(value[4]) + 1) % 10) + value[5:]
    with pytest.raises(norm.FieldError):
        norm.bsn(changed)


@pytest.mark.parametrize("raw", ["1234 AB", "1234AB", "1234ab", " 1234  ab "])
def test_postcodes(raw: str) -> None:
    assert norm.postcode(raw) == "1234AB"


@pytest.mark.parametrize("raw", ["0234AB", "123AB", "1234 A", "12345AB", "ABCD12"])
def test_invalid_postcodes(raw: str) -> None:
    with pytest.raises(norm.FieldError):
        norm.postcode(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("12", ("12", "")),
    ("12A", ("12", "A")),
    ("12 a", ("12", "A")),
    ("12-2", ("12", "2")),
    ("12 - 2", ("12", "2")),
    ("12bis", ("12", "BIS")),
    ("012", ("12", "")),
])
def test_house_numbers(raw: str, expected: tuple[str, str]) -> None:
    assert norm.house_number(raw) == expected


@pytest.mark.parametrize("raw", ["", "A", "0", "12 @", "1234567"])
def test_invalid_house_numbers(raw: str) -> None:
    with pytest.raises(norm.FieldError):
        norm.house_number(raw)


def test_same_address_written_differently_gives_one_key() -> None:
    keys = {norm.address_key(norm.postcode(p), norm.house_number(h))
            for p, h in [("9712 CD", "5-2"), ("9712cd", "5 - 2"), ("9712CD", "5-2")]}
    assert keys == {"9712CD|5|2"}


@pytest.mark.parametrize(("raw", "expected"), [
    ("2014-03-09", "2014-03-09"), ("09-03-2014", "2014-03-09"), ("9/3/2014", "2014-03-09"),
    ("09.03.2014", "2014-03-09"), ("20140309", "2014-03-09"),
])
def test_birth_dates(raw: str, expected: str) -> None:
    assert norm.birth_date(raw) == expected


@pytest.mark.parametrize("raw", ["31-02-2014", "tomorrow", "1850-01-01", "2999-01-01"])
def test_invalid_birth_dates(raw: str) -> None:
    with pytest.raises(norm.FieldError):
        norm.birth_date(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("12 2", ("12", "2")), ("12A 3", ("12", "A3")), ("12 / 3", ("12", "3")),
    ("122", ("122", "")),
])
def test_more_house_number_spellings(raw: str, expected: tuple[str, str]) -> None:
    assert norm.house_number(raw) == expected
