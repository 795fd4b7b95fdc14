"""Database plumbing: connections the server dropped are replaced, without a ping per use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Integer, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

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


def _table() -> Any:
    from sqlalchemy import (
        BigInteger,
        Boolean,
        Column,
        LargeBinary,
        MetaData,
        SmallInteger,
        String,
        Table,
        Text,
        UniqueConstraint,
    )

    return Table("copied", MetaData(),
                 Column("id", BigInteger().with_variant(Integer(), "sqlite"),
                        primary_key=True, autoincrement=True),
                 Column("name", String(40)), Column("at", db.UTCDateTime()),
                 Column("flag", Boolean), Column("blob", LargeBinary),
                 Column("note", String(20), nullable=True),
                 Column("comma", String(40)), Column("count", Integer),
                 Column("small", SmallInteger), Column("body", Text),
                 UniqueConstraint("name", name="uq_copied_name"))


def test_insert_rows_stores_what_executemany_would(database_url: str) -> None:
    """COPY on PostgreSQL, executemany elsewhere: the rows read back are the rows given
    (times, booleans, bytes, NULLs, text COPY would have to escape), ids from the
    sequence; a constraint it breaks is the IntegrityError SQLAlchemy raises."""
    table = _table()
    engine = db.make_engine(database_url)
    table.metadata.create_all(engine)
    at = datetime(2026, 12, 6, 3, 0, 1, 250, tzinfo=UTC)
    rows = [{"name": f"n{i}", "at": at + timedelta(seconds=i), "flag": i % 2 == 0,
             "blob": bytes([i, 0, 92, 10, 9]), "note": None if i % 2 else "x\\y",
             "comma": 'a,b\t"c"\nd', "count": -2**31 + i, "small": 2**15 - 1 - i,
             "body": "Ærø ünïcødé 😀 " * i} for i in range(5)]
    with engine.begin() as conn:
        db.insert_rows(conn, table, rows)
    with engine.connect() as conn:
        back = [dict(r._mapping) for r in conn.execute(select(table).order_by(table.c.id))]
    assert [r.pop("id") for r in back] == [1, 2, 3, 4, 5]
    assert back == rows
    with pytest.raises(IntegrityError), engine.begin() as conn:
        db.insert_rows(conn, table, [{**rows[0], "name": "new"}, rows[1]])
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 5
    if engine.dialect.name == "postgresql":  # (SQLite has no length limits)
        # a string longer than its VARCHAR is refused: binary COPY keeps the limit
        with pytest.raises(DBAPIError), engine.begin() as conn:
            db.insert_rows(conn, table, [{**rows[0], "name": "x" * 41}])
    engine.dispose()


@pytest.mark.postgres
def test_insert_rows_copies_a_json_column_as_text(postgres_url: str) -> None:
    """A column with no binary COPY format here (JSON) sends the rows as text COPY."""
    from sqlalchemy import JSON, Column, Integer, MetaData, Table

    table = Table("copied_json", MetaData(), Column("id", Integer, primary_key=True),
                  Column("doc", JSON))
    engine = db.make_engine(postgres_url)
    table.metadata.drop_all(engine)
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        db.insert_rows(conn, table, [{"id": 1, "doc": '{"a": [1, "b\\t"]}'},
                                     {"id": 2, "doc": None}])
    with engine.connect() as conn:
        back = conn.execute(select(table.c.doc).order_by(table.c.id)).scalars().all()
    assert back == [{"a": [1, "b\t"]}, None]
    table.metadata.drop_all(engine)
    engine.dispose()


@pytest.mark.postgres
def test_postgresql_plans_each_execution_with_its_values(postgres_url: str) -> None:
    """A prepared lookup by an array must not keep a generic plan made while the tables
    were small; options given by the caller are kept, and win."""
    engine = db.make_engine(postgres_url, connect_args={"options": "-c work_mem=8MB"})
    with engine.connect() as conn:
        assert conn.execute(text("SHOW plan_cache_mode")).scalar_one() == "force_custom_plan"
        assert conn.execute(text("SHOW work_mem")).scalar_one() == "8MB"
    engine.dispose()
    engine = db.make_engine(postgres_url, connect_args={"options": "-c plan_cache_mode=auto"})
    with engine.connect() as conn:
        assert conn.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"
    engine.dispose()


def test_one_of_finds_exactly_the_rows_with_those_values(database_url: str) -> None:
    """Lookups by a list (an array parameter on PostgreSQL, sent in binary) find the rows
    whose text, integer or bytes value is in it, whatever characters the text holds."""
    table = _table()
    engine = db.make_engine(database_url)
    table.metadata.create_all(engine)
    names = ["plain", "a,b", 'q"uote', "back\\slash", "{brace}", "NULL", "", "Ærø 😀",
             " padded ", "tab\there", "0b1c5a52-5d4e-4f0a-9a0b-6b2b9d4c1e11", "org_a.b:c@d",
             "annulled", "x+y=z/w"]
    rows = [{"name": name, "at": datetime(2026, 12, 6, tzinfo=UTC), "flag": True,
             "blob": bytes([i, 0, 255]), "note": None, "comma": "", "count": 2**31 - 1 - i,
             "small": i, "body": ""} for i, name in enumerate(names)]
    with engine.begin() as conn:
        db.insert_rows(conn, table, rows)

    with engine.connect() as conn:
        def found(column: Any, values: list[Any]) -> list[str]:
            stmt = select(table.c.name).where(db.one_of(conn, column, values))
            return sorted(conn.execute(stmt).scalars())

        # (plain ids go as one array literal; the others element by element)
        for wanted in (names, names[1::2], names[:1], names[10:], names[10:12], []):
            assert found(table.c.name, [*wanted, "absent"]) == sorted(wanted)
        for column, values in (("count", [2**31 - 1, 2**31 - 4, 7]), ("small", [0, 2, 9999]),
                               ("blob", [bytes([1, 0, 255]), b"\x01"])):
            assert found(table.c[column], values) == sorted(
                r["name"] for r in rows if r[column] in values)
        assert found(table.c.id, []) == []
    engine.dispose()
