"""Alembic migrations build exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, select, text

import agent._agent
import agent._models
import hub._models
import hub._models as hub_models
from exchange.db import check_current, make_engine, migrate, session_factory
from exchange.errors import FailedPrecondition
from hub._core import Hub
from hub._server import MIGRATIONS
from tests.support import COVENANT, Clock, access, row_counts, setup_registry, signal

COORD = access("gemeente", "coordinator", "coord-a")

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


def _alembic(engine: object) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def test_revision_0003_keeps_every_row_down_and_up(hub: Hub, clock: Clock) -> None:
    """Altering tables must not cascade-delete the rows that refer to them (SQLite copies
    and drops a table to alter it)."""
    setup_registry(hub)
    hub.submit(access("org-a"), signal(hub, "org-a", person="p"))
    hub.submit(access("org-b"), signal(hub, "org-b", person="p", category="housing"))
    gone, _ = hub.submit(access("org-c"), signal(hub, "org-c", person="q", category="debt"))
    hub.withdraw(access("org-c"), gone.id, "risk_gone")
    (alert,), _ = hub.list_alerts(COORD, ("new",), 10, "")
    hub.record_contact(COORD, alert.alert_id)
    before = row_counts(hub._engine)
    assert before["signal_keys"] and before["envelopes"] and before["alert_signals"]

    command.downgrade(_alembic(hub._engine), "0002")
    with hub._engine.connect() as conn:
        assert dict(conn.execute(text("SELECT id, state FROM signals")).all())[gone.id] == (
            "withdrawn")
        assert conn.execute(text("SELECT state FROM alerts")).scalar_one() == "acknowledged"
        kept = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("signal_keys", "envelopes", "alert_signals", "alert_feed")}
    assert kept == {t: before[t] for t in kept}

    migrate(hub._engine, MIGRATIONS)
    assert row_counts(hub._engine) == {**before, "tasks": 0}
    with session_factory(hub._engine)() as s:
        row = s.get_one(hub_models.Signal, gone.id)
        assert row.state == "archived" and row.archived_at is not None
        assert row.purge_after is not None
        assert row.purge_after - row.archived_at == timedelta(days=1826)
        assert s.scalar(select(hub_models.Alert.state)) == "contact_made"


def test_a_downgrade_that_would_hide_a_covenant_is_refused(hub: Hub) -> None:
    setup_registry(hub, covenant=COVENANT + "\n[escalation]\nreminder_days = 2\n")
    before = row_counts(hub._engine)
    with pytest.raises(RuntimeError, match="uses 'escalation'"):
        command.downgrade(_alembic(hub._engine), "0002")
    assert row_counts(hub._engine) == before
    check_current(hub._engine, MIGRATIONS)
