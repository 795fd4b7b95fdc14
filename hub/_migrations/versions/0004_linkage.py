"""Fuzzy linkage: linkage profiles, the profile a signal's tokens were made with, and the
address keys that link no household (institutions).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "linkage_profiles",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("registered_at", _TS, nullable=False),
        sa.Column("registered_by", sa.String(length=128), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_linkage_profiles_version_positive")),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_linkage_profiles")),
    )
    op.create_table(
        "excluded_keys",
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.LargeBinary(length=32), nullable=False),
        sa.Column("registered_at", _TS, nullable=False),
        sa.Column("registered_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", name=op.f("pk_excluded_keys")),
    )
    with op.batch_alter_table("signals") as batch:
        batch.add_column(sa.Column("profile", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signals") as batch:
        batch.drop_column("profile")
    op.drop_table("excluded_keys")
    op.drop_table("linkage_profiles")
