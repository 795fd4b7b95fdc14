"""Key rotation: which OPRF key made each submission, and which signal replaced it.

Submissions made before this revision were made with the key the agent trusts now (a new
key needs 'agent trust-key', and this revision comes before any rotation support).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:30:00.000000
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("ck_submissions_state_known"), type_="check")
        batch.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("replaced_by", sa.String(length=36), nullable=True))
        batch.create_check_constraint(
            op.f("ck_submissions_state_known"),
            "state IN ('pending', 'submitted', 'rejected', 'withdrawn', 'replaced')")
    pins = sa.table("pins", sa.column("name", sa.String), sa.column("value", sa.LargeBinary))
    key = op.get_bind().execute(sa.select(pins.c.value).where(pins.c.name == "key:oprf")).scalar()
    if key is not None:
        submissions = sa.table("submissions", sa.column("key_id", sa.String))
        op.execute(submissions.update().values(key_id=hashlib.sha256(key).hexdigest()[:16]))


def downgrade() -> None:
    op.execute("UPDATE submissions SET state = 'withdrawn' WHERE state = 'replaced'")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_constraint(op.f("ck_submissions_state_known"), type_="check")
        batch.drop_column("replaced_by")
        batch.drop_column("key_id")
        batch.create_check_constraint(
            op.f("ck_submissions_state_known"),
            "state IN ('pending', 'submitted', 'rejected', 'withdrawn')")
