"""Access-log queue: events are appended here and integrated into the Merkle tree.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 09:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_queue",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_queue")),
    )


def downgrade() -> None:
    # Events still queued would be lost: refuse rather than drop them.
    bind = op.get_bind()
    waiting = bind.execute(sa.text("SELECT count(*) FROM audit_queue")).scalar_one()
    if waiting:
        raise RuntimeError(f"{waiting} access-log event(s) wait in audit_queue: start the "
                           "hub once (it integrates them) before downgrading")
    op.drop_table("audit_queue")
