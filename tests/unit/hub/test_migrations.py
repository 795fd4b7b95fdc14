"""Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, select

import agent._agent
import agent._models
import hub._models
from exchange.db import check_current, make_engine, migrate
from exchange.errors import FailedPrecondition
from hub._server import MIGRATIONS

SCHEMAS = [
    pytest.param(MIGRATIONS, hub._models.Base.metadata, id="hub"),
    pytest.param(agent._agent.MIGRATIONS, agent._models.Base.metadata, id="agent"),
]


@pytest.mark.parametrize(("location", "metadata"), SCHEMAS)
def test_models_and_migrations_agree(database_url: str, location: Path,
                                     metadata: MetaData) -> None:
    engine = make_engine(database_url)
    migrate(engine, location)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}), metadata)
    engine.dispose()
    assert diff == [], "models and migrations differ: write a migration"


@pytest.mark.parametrize(("location", "metadata"), SCHEMAS)
def test_downgrade_to_empty_and_up_again(database_url: str, location: Path,
                                         metadata: MetaData) -> None:
    engine = make_engine(database_url)
    migrate(engine, location)
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["engine"] = engine
    command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate(engine, location)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_the_log_head_is_created_empty(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine, MIGRATIONS)
    with engine.connect() as conn:
        head = conn.execute(select(hub._models.AuditHead.__table__)).one()
    engine.dispose()
    assert (head.id, head.size, head.chain_hash) == (1, 0, bytes(32))


def test_an_unmigrated_database_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(FailedPrecondition, match="migrate"):
        check_current(engine, MIGRATIONS)
    migrate(engine, MIGRATIONS)
    check_current(engine, MIGRATIONS)
    engine.dispose()
