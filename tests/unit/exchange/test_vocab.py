from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange import vocab
from exchange.errors import InvalidInput


@pytest.mark.parametrize(("check", "good"), [
    (vocab.slug, "org-a"), (vocab.code, "care_coordination"), (vocab.region, "GM0014"),
    (vocab.phone, "050 367 1100"), (vocab.email, "a@b.example"),
])
def test_a_trailing_newline_is_never_accepted(check: object, good: str) -> None:
    assert check(good, "field") == good  # type: ignore[operator]
    for bad in (good + "\n", "\n" + good, good + " "):
        with pytest.raises(InvalidInput, match="field"):
            check(bad, "field")  # type: ignore[operator]


def test_text_refuses_control_characters_and_length() -> None:
    assert vocab.text("Pat Jansen", "name", max_len=20) == "Pat Jansen"
    with pytest.raises(InvalidInput, match="control"):
        vocab.text("Pat\nJansen", "name", max_len=20)
    with pytest.raises(InvalidInput, match="longer"):
        vocab.text("x" * 21, "name", max_len=20)
    with pytest.raises(InvalidInput, match="required"):
        vocab.text("  ", "name", max_len=20)


def test_uuids_must_be_canonical() -> None:
    value = "0b1c5a52-5d4e-4f0a-9a0b-6b2b9d4c1e11"
    assert vocab.uuid_str(value, "id") == value
    for bad in (value.upper(), value + "\n", "{" + value + "}", value.replace("-", "")):
        with pytest.raises(InvalidInput):
            vocab.uuid_str(bad, "id")


@given(st.uuids().map(str), st.integers(0, 40))
def test_every_prefix_of_8_to_36_characters_of_a_uuid_is_a_uuid_prefix(whole: str,
                                                                      n: int) -> None:
    prefix = whole[:n]
    if n >= 8:
        assert vocab.uuid_prefix(prefix, "id") == prefix
    else:
        with pytest.raises(InvalidInput, match="8 to 36 characters"):
            vocab.uuid_prefix(prefix, "id")


@pytest.mark.parametrize("bad", [
    "ABCDEF01", "0123456g", "0123456789", "01234567-01234", "01234567 ", "01234567-%",
    "01234567-0123-0123-0123-0123456789abc", "01234567-0123-0123-0123-0123456789ab\n",
])
def test_what_is_no_uuid_prefix_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        vocab.uuid_prefix(bad, "id")


@given(st.one_of(st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                 st.uuids().map(lambda u: u.hex), st.text(max_size=40),
                 st.uuids().map(lambda u: str(u)[:-1] + "\n")))
def test_a_uuid_is_accepted_exactly_when_it_is_its_canonical_form(value: str) -> None:
    def canonical(v: str) -> bool:
        try:
            return str(uuid.UUID(v)) == v
        except ValueError:
            return False

    if canonical(value):
        assert vocab.uuid_str(value, "id") == value
    else:
        with pytest.raises(InvalidInput):
            vocab.uuid_str(value, "id")
