"""Alembic environment for the agent's database (run through exchange.db.migrate)."""

from agent._models import Base
from exchange.db import run_alembic_env

run_alembic_env(Base.metadata)
