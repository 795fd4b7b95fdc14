"""Database plumbing: connections the server dropped are replaced, without a ping per use."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from exchange import db


def _drop_connections(url: str, pid: int) -> None:
    """What a server restart does to a pooled connection."""
    admin = db.make_engine(url)
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def _backend(engine: object) -> int:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.postgres
def test_an_idle_connection_the_server_dropped_is_replaced(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.make_engine(postgres_url)
    first = _backend(engine)
    _drop_connections(postgres_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has been idle long enough
    assert _backend(engine) != first  # checked, found dead, replaced: no error
    engine.dispose()


@pytest.mark.postgres
def test_a_connection_in_steady_use_is_not_pinged(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = db.make_engine(postgres_url)
    first = _backend(engine)
    _drop_connections(postgres_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with pytest.raises(OperationalError):  # no round trip spent checking it
        _backend(engine)
    assert _backend(engine) != first  # the pool replaced it after the failure
    engine.dispose()
