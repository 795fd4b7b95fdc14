"""Central services: the matching hub, the key service, storage and the access log.

Public surface: :class:`HubSettings`, :class:`KeyServiceSettings`, :func:`start_hub`,
:func:`start_keyservice`, :func:`migrate_database` and :func:`verify_database`.
"""

from __future__ import annotations

from hub._audit import VerifyResult
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


def verify_database(url: str, public_key: bytes | None = None,
                    origin: str | None = None) -> VerifyResult:
    """Recompute the access log of a hub database offline; see hub._audit.verify."""
    from exchange.db import check_current, make_engine, session_factory
    from hub import _audit

    engine = make_engine(url, must_exist=True)
    try:
        check_current(engine, MIGRATIONS)
        with session_factory(engine)() as session:
            return _audit.verify(session, public_key=public_key, origin=origin)
    finally:
        engine.dispose()


__all__ = [
    "MIGRATIONS",
    "HubSettings",
    "KeyServiceSettings",
    "RunningHub",
    "RunningKeyService",
    "VerifyResult",
    "migrate_database",
    "start_hub",
    "start_keyservice",
    "verify_database",
]
