"""Initial schema: submissions, consents and pinned values.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 10:55:49.709736
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("consent_id", sa.String(length=36), nullable=False),
        sa.Column("case_ref", sa.String(length=128), nullable=False),
        sa.Column("covenant_id", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_case_ref"), ["case_ref"], unique=False)

    op.create_table(
        "submissions",
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("case_ref", sa.String(length=128), nullable=False),
        sa.Column("person_key", sa.LargeBinary(length=32), nullable=True),
        sa.Column("request", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'submitted', 'rejected', 'withdrawn')",
            name=op.f("ck_submissions_state_known"),
        ),
        sa.PrimaryKeyConstraint("signal_id", name=op.f("pk_submissions")),
    )
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_submissions_case_ref_state"), ["case_ref", "state"], unique=False
        )

    op.create_table(
        "pins",
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pins")),
    )


def downgrade() -> None:
    op.drop_table("pins")
    with op.batch_alter_table("submissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_submissions_case_ref_state"))

    op.drop_table("submissions")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_case_ref"))

    op.drop_table("consents")
