"""An event's canonical bytes stay what every log so far has hashed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exchange import auditlog, merkle

# Any text a field may hold: controls, quotes, backslashes, non-ASCII, astral planes,
# line and paragraph separators (json leaves those unescaped with ensure_ascii=False).
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# (hypothesis takes naive bounds and attaches the zone)
_MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2, tzinfo=UTC).replace(tzinfo=None),
                        max_value=datetime(2999, 1, 1, tzinfo=UTC).replace(tzinfo=None),
                        timezones=st.just(UTC))


def _reference(event: dict[str, Any]) -> bytes:
    """The definition the format was written with (json.dumps), before orjson did it."""
    body = {k: event[k] for k in auditlog.FIELDS}
    body["occurred_at"] = auditlog.iso(event["occurred_at"])
    body["v"] = auditlog.FORMAT_VERSION
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


@st.composite
def _events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {name: draw(_TEXT) for name in auditlog.FIELDS}
    event["seq"] = draw(st.integers(min_value=0, max_value=2**62))
    event["requested"] = draw(st.booleans())
    event["occurred_at"] = draw(_MOMENTS)
    return event


@given(_events())
def test_canonical_bytes_are_the_sorted_compact_json_of_the_fields(
        event: dict[str, Any]) -> None:
    assert auditlog.canonical(event) == _reference(event)
    assert auditlog.leaf_hash(event) == merkle.leaf_hash(_reference(event))


def test_fields_outside_the_format_are_not_hashed() -> None:
    event: dict[str, Any] = dict.fromkeys(auditlog.FIELDS, "x")
    event.update(seq=7, requested=False, occurred_at=datetime(2026, 1, 2, tzinfo=UTC))
    with_extra = {**event, "leaf_hash": b"\x00" * 32, "chain_hash": b"\x01" * 32}
    assert auditlog.canonical(with_extra) == auditlog.canonical(event)
    assert auditlog.canonical({**event, "seq": 8}) != auditlog.canonical(event)
