"""Central services: the matching hub, the key service, storage and the access log.

Public surface: :class:`HubSettings`, :class:`KeyServiceSettings`, :func:`start_hub`,
:func:`start_keyservice`, :func:`migrate_database` and :func:`verify_database` (with
:class:`Trusted` checkpoints).
"""

from __future__ import annotations

from collections.abc import Sequence

from hub._audit import Trusted, VerifyResult
from hub._server import (
    MIGRATIONS,
    HubSettings,
    KeyServiceSettings,
    RunningHub,
    RunningKeyService,
    start_hub,
    start_keyservice,
)


def migrate_database(url: str) -> None:
    """Bring a hub database to the newest schema."""
    from exchange.db import make_engine, migrate

    migrate(make_engine(url), MIGRATIONS)


def verify_database(url: str, public_key: bytes | None = None, origin: str | None = None,
                    trusted: Sequence[Trusted] = ()) -> VerifyResult:
    """Recompute the access log of a hub database offline, in one read-only snapshot that
    does not hold up a running hub; see hub._audit.verify."""
    from exchange.db import check_current, make_engine, snapshot
    from hub import _audit

    engine = make_engine(url, must_exist=True)
    try:
        check_current(engine, MIGRATIONS)
        with snapshot(engine) as session:
            return _audit.verify(session, public_key=public_key, origin=origin,
                                 trusted=trusted)
    finally:
        engine.dispose()


__all__ = [
    "MIGRATIONS",
    "HubSettings",
    "KeyServiceSettings",
    "RunningHub",
    "RunningKeyService",
    "Trusted",
    "VerifyResult",
    "migrate_database",
    "start_hub",
    "start_keyservice",
    "verify_database",
]
