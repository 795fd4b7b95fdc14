"""Alembic environment for the hub's database (run through exchange.db.migrate)."""

from exchange.db import run_alembic_env
from hub._models import Base

run_alembic_env(Base.metadata)
