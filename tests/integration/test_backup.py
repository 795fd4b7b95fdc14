"""Backup and restore on PostgreSQL: pg_dump of a live hub, pg_restore into an empty
database, and the restored access log still verifies against the checkpoint a privacy
officer kept — while an edit made after the dump would not."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url

from exchange import checkpoint
from exchange.db import make_engine, migrate, session_factory
from hub import Trusted, verify_database
from hub._core import Hub
from hub._models import AuditEvent
from hub._server import MIGRATIONS
from tests.support import ADMIN, access, setup_registry, signal

pytestmark = pytest.mark.postgres
PG_DUMP, PG_RESTORE = shutil.which("pg_dump"), shutil.which("pg_restore")


@pytest.fixture
def empty_database(postgres_url: str) -> Iterator[str]:
    """A second fresh database on the same server, to restore into."""
    url = make_url(postgres_url)
    name = f"samenloop_restore_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.skipif(PG_DUMP is None or PG_RESTORE is None,
                    reason="pg_dump and pg_restore (PostgreSQL's client tools) are needed")
def test_dump_and_restore_keep_a_log_that_verifies(postgres_url: str, empty_database: str,
                                                  tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    migrate(engine, MIGRATIONS)
    signer = checkpoint.CheckpointSigner.load_or_create(tmp_path / "cp.key", "backup.test/hub")
    hub = Hub(engine, signer=signer)
    setup_registry(hub)
    for i in range(5):
        hub.submit(access("org-a"), signal(hub, "org-a", person=f"p{i}"))
        hub.submit(access("org-b"), signal(hub, "org-b", person=f"p{i}", category="housing"))
    coordinator = access("gemeente", "coordinator", "coord-a")
    views, _ = hub.list_alerts(coordinator, ("new",), 10, "")
    hub.open_alert(coordinator, views[0].alert_id)
    kept = hub.checkpoint(ADMIN)  # what a privacy officer keeps
    trusted = [Trusted(kept.size, kept.root_hash, "the officer's checkpoint")]
    dump = tmp_path / "hub.dump"
    subprocess.run([str(PG_DUMP), "--format=custom", "--file", str(dump),
                    _libpq(postgres_url)], check=True, capture_output=True)
    hub.submit(access("org-c"), signal(hub, "org-c", person="p0", category="debt"))  # later
    hub.close()

    subprocess.run([str(PG_RESTORE), "--no-owner", "--dbname", _libpq(empty_database),
                    str(dump)], check=True, capture_output=True)
    restored = verify_database(empty_database, public_key=signer.public_key,
                               origin=signer.name, trusted=trusted)
    assert restored.ok, restored.describe()
    assert restored.size >= kept.size
    # the restored hub serves the same alerts
    again = Hub(make_engine(empty_database), signer=signer)
    try:
        assert len(again.list_alerts(coordinator, ("new", "seen"), 10, "")[0]) == 5
    finally:
        again.close()
    # and an edit of the restored copy is caught against the same checkpoint
    edited = make_engine(empty_database)
    with session_factory(edited).begin() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(reason="edited"))
    edited.dispose()
    assert not verify_database(empty_database, public_key=signer.public_key,
                               origin=signer.name, trusted=trusted).ok
