from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from exchange import checkpoint
from exchange.db import make_engine, migrate
from hub._core import Hub
from hub._server import MIGRATIONS
from tests.support import Clock

DATA = Path(__file__).parent / "data"
POSTGRES_ENV = "SAMENLOOP_TEST_POSTGRES_URL"


def _postgres_database() -> Iterator[str]:
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests run when {POSTGRES_ENV} is set "
                    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test; .ci/run sets it)")
    url = make_url(base).set(drivername="postgresql+psycopg")
    name = f"samenloop_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, and a fresh PostgreSQL database when configured."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for what only PostgreSQL does."""
    yield from _postgres_database()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[Hub]:
    engine = make_engine(database_url)
    migrate(engine, MIGRATIONS)
    signer = checkpoint.CheckpointSigner.load_or_create(tmp_path / "cp.key", "test.example/hub")
    h = Hub(engine, signer=signer, clock=clock)
    yield h
    h.close()
