"""Database plumbing shared by the hub and the agent.

SQLAlchemy 2.x engines for SQLite (embedded default) and PostgreSQL (production),
timezone-safe datetimes, and the Alembic runner each package's migrations use.
"""

from __future__ import annotations

import functools
import operator
import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    and_,
    any_,
    create_engine,
    event,
    false,
    literal,
    or_,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from exchange.errors import ConfigError, FailedPrecondition, NotFound

P = ParamSpec("P")
T = TypeVar("T")

# Named constraints everywhere, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: datetime | None, dialect: Dialect  # noqa: ARG002 - SQLAlchemy API
    ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event below emit BEGIN, not pysqlite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


_READ_ONLY = "samenloop_read_only"


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get(_READ_ONLY):
        # Deferred: the first read fixes a snapshot (WAL) and writers go on meanwhile.
        conn.exec_driver_sql("BEGIN")
        return
    # Take the write lock at the start: read-modify-write transactions (the audit
    # log head, household merges) then never fail to upgrade their lock.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def snapshot(engine: Engine) -> Iterator[Session]:
    """A read-only session on one consistent state of the database, not blocking writers.

    For long reads that must not see later commits halfway (verifying the access log):
    REPEATABLE READ on PostgreSQL, a deferred transaction on SQLite in WAL mode. Writing
    in it fails on both.
    """
    options: dict[str, Any] = {_READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options.update(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with engine.connect() as conn:
        conn.execution_options(**options)
        with Session(bind=conn) as session:
            if engine.dialect.name == "sqlite":
                session.execute(text("PRAGMA query_only=ON"))
            try:
                yield session
            finally:
                session.rollback()
                if engine.dialect.name == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only=OFF")


def make_engine(url: str, *, must_exist: bool = False, **kwargs: Any) -> Engine:
    """An engine for a SQLAlchemy URL; only SQLite and PostgreSQL are supported.

    Statement parameters are never shown in errors or logs: they can hold personal data.
    With ``must_exist`` a SQLite file that does not exist is an error, not created.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError("database URL is not a valid SQLAlchemy URL") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ConfigError("use a SQLite file, not an in-memory database")
        path = Path(parsed.database).expanduser()
        if must_exist and not path.is_file():
            raise NotFound(f"there is no SQLite database at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, hide_parameters=True, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        try:
            import psycopg  # noqa: F401 - only to give a clear error when it is missing
        except ImportError:
            raise ConfigError("PostgreSQL needs the psycopg package: "
                              "pip install 'psycopg[binary]'") from None
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # psycopg prepares a statement run five times; PostgreSQL then keeps a generic
        # plan for it, made without the values. For lookups by an array of ids (one_of)
        # that plan is made once, while the tables are small, and stays a sequential scan
        # as they grow: planning each execution with its values halved ingest time.
        connect_args = dict(kwargs.pop("connect_args", {}))
        # (The caller's options come after, and win.)
        connect_args["options"] = " ".join(
            filter(None, ("-c plan_cache_mode=force_custom_plan", connect_args.get("options"))))
        engine = create_engine(parsed, hide_parameters=True, connect_args=connect_args,
                               **kwargs)
        event.listen(engine, "connect", _binary_arrays)
        _ping_when_idle(engine)
        return engine
    raise ConfigError(f"unsupported database backend '{backend}' (use sqlite or postgresql)")


def _binary_arrays(dbapi_connection: Any, _record: Any) -> None:
    """Send lists (one_of's arrays, the only list parameters) in binary: psycopg's text
    array dumper escapes each element in Python, a quarter of a lookup's cost by 200 ids
    (530 against 150 µs a query)."""
    from psycopg.types.array import ListBinaryDumper
    from psycopg.types.string import BytesBinaryDumper

    dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)
    # Binary COPY finds a column's dumper by type: for bytea, psycopg's DB-API module
    # registered a Python one (for its Binary wrapper); bytes need only the C one.
    dbapi_connection.adapters.register_dumper(None, BytesBinaryDumper)


# A pooled connection unused for longer than this is checked before it is handed out (the
# server may have restarted meanwhile). Checking every one, as pool_pre_ping does, costs a
# round trip per transaction: a fifth of what appending an access event costs.
PING_AFTER_IDLE_SECONDS = 5.0
_IDLE_SINCE = "samenloop.idle_since"


def _ping_when_idle(engine: Engine) -> None:
    def mark(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_IDLE_SINCE, 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and hands out a fresh one.
            raise DisconnectionError("the database connection was lost") from exc

    event.listen(engine, "connect", mark)
    event.listen(engine, "checkin", mark)
    event.listen(engine, "checkout", check)


# SQLSTATEs of a transaction that lost a race with another (PostgreSQL): a serialization
# failure or a deadlock. Running it again is safe: it was rolled back whole.
_CONFLICTS = frozenset({"40001", "40P01"})


def conflict(exc: BaseException) -> bool:
    """Whether a database error means "run the transaction again"."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in _CONFLICTS


def retried(method: Callable[P, T]) -> Callable[P, T]:
    """Run a whole-transaction operation again (up to 4 times, with a short random pause)
    when it lost a race with a concurrent transaction."""

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, 5):
            try:
                return method(*args, **kwargs)
            except DBAPIError as exc:
                if attempt == 4 or not conflict(exc):
                    raise
                time.sleep(random.uniform(0.005, 0.02) * attempt)  # noqa: S311 - jitter only
        raise AssertionError("unreachable")  # pragma: no cover

    return run


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def redact_url(url: str) -> str:
    """The URL without a password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<invalid url>"


def run_alembic_env(metadata: Any) -> None:
    """The body of a package's Alembic env.py: migrate the engine exchange.db.migrate gave."""
    from alembic import context

    engine: Engine = context.config.attributes["engine"]
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign
            # keys on, that drop would cascade-delete every row referring to the table.
            # The pragma only takes effect outside a transaction, hence the raw connection.
            assert raw is not None
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            # SQLite's DDL is transactional too: one transaction for the whole run, so
            # a migration that refuses halfway leaves the database as it was.
            context.configure(connection=connection, target_metadata=metadata,
                              render_as_batch=True, compare_type=True, transactional_ddl=True)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise FailedPrecondition(
                        "the migration would leave rows referring to missing rows; "
                        "nothing was changed")
            connection.commit()
        finally:
            if sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")


# Binary COPY formats, by column type: about a quarter of text COPY's cost per row
# (psycopg dumps each value by its declared type instead of looking one up per value).
_BINARY = ((Boolean, "bool"), (BigInteger, "int8"), (SmallInteger, "int2"),
           (Integer, "int4"), (LargeBinary, "bytea"), (String, "text"))


@functools.cache
def _binary_types(table: Table, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The binary COPY type of each column, or None when one has no binary format here
    (JSON): then the rows go as text. Strings go as ``text``, whose binary form every
    character type reads (a VARCHAR's length limit still applies)."""
    found: list[str] = []
    for name in names:
        kind = table.c[name].type
        if isinstance(kind, TypeDecorator):
            kind = kind.impl_instance
        if isinstance(kind, DateTime):
            found.append("timestamptz" if kind.timezone else "timestamp")
            continue
        match = next((pg for base, pg in _BINARY if isinstance(kind, base)), None)
        if match is None:
            return None
        found.append(match)
    return tuple(found)


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows of ``table``, each with the same columns (the others take their
    defaults): with COPY on PostgreSQL, a fraction of executemany's cost per row;
    executemany elsewhere. On PostgreSQL values go in as psycopg adapts them, without
    SQLAlchemy's type processing: times must be timezone-aware datetimes, each value of
    its column's Python type (str for strings, int for integers), and no column may need
    a TypeDecorator's conversion beyond that."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    names = tuple(c.name for c in table.columns if c.name in rows[0])
    columns = ", ".join(f'"{name}"' for name in names)
    types = _binary_types(table, names)
    binary = " (FORMAT BINARY)" if types else ""
    statement = f"COPY {table.name} ({columns}) FROM STDIN{binary}"
    raw = conn.connection.driver_connection
    assert raw is not None
    import psycopg

    # (itemgetter of one name gives the value, not a tuple of it)
    values = (operator.itemgetter(*names) if len(names) > 1
              else lambda row: (row[names[0]],))
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            if types:
                copy.set_types(types)
            for row in rows:
                copy.write_row(values(row))
    except psycopg.Error as exc:  # as SQLAlchemy raises it for any other statement
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc


def one_of(bind: Session | Connection, column: Any, values: Iterable[Any]) -> Any:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``, one parameter: the
    statement's text is the same for any number of values, so neither SQLAlchemy nor
    psycopg renders and parses a statement with hundreds of placeholders each time."""
    values = list(values)
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    if dialect.name != "postgresql":
        return column.in_(values)
    return column == any_(literal(values, ARRAY(column.type)))


def pairs_in(first: Any, second: Any, pairs: Iterable[tuple[Any, Any]],
             bind: Session | Connection | None = None) -> Any:
    """``(first, second) IN pairs`` written so that SQLite uses the index on them.

    SQLite scans the whole table for a row-value IN; one ``first = a AND second IN (...)``
    per distinct first value is an index search on SQLite and PostgreSQL alike. With
    ``bind``, each IN is :func:`one_of`.
    """
    grouped: dict[Any, list[Any]] = {}
    for a, b in pairs:
        grouped.setdefault(a, []).append(b)
    if not grouped:
        return false()
    return or_(*(and_(first == a, second.in_(bs) if bind is None else one_of(bind, second, bs))
                 for a, bs in grouped.items()))


def _alembic_config(script_location: Path, engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, script_location: Path, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` with the migrations at script_location."""
    command.upgrade(_alembic_config(script_location, engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision (None for an empty database)."""
    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None


def check_current(engine: Engine, script_location: Path) -> None:
    """FailedPrecondition unless the database is at the newest migration."""
    heads = set(ScriptDirectory.from_config(_alembic_config(script_location, engine)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current != heads:
        raise FailedPrecondition(
            "the database schema is not up to date: run the 'migrate' command first"
        )
