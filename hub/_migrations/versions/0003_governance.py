"""Disclosure governance: alert lifecycle, signal archive and purge, partner tasks.

* alerts: ``acknowledged`` becomes ``contact_made`` (the coordinator recorded that the
  professionals were brought together); who and when for seen, contact made and closed;
  reminder and escalation times.
* signals: ``withdrawn`` becomes ``archived`` (withdrawn as "risk gone", or expired),
  with when, why and when it is purged; the one-time notice an archived signal gave.
* tasks: consent-needed tasks and match notices for partners' agents.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 10:00:00.000000
"""

import tomllib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_OPEN_ALERT = "uq_alerts_open_household_coordinator"
# Covenant keys this revision introduced: a hub before it cannot read such a covenant.
_NEW_COVENANT_KEYS = {"coordinators", "groups", "escalation", "match_notices",
                      "linkage_profile"}


def _open_alert_index(where: str) -> None:
    op.create_index(_OPEN_ALERT, "alerts", ["household_id", "coordinator_id"], unique=True,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    op.drop_index(_OPEN_ALERT, table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_state_known"), type_="check")
        batch.alter_column("acknowledged_at", new_column_name="contact_made_at",
                           existing_type=_TS, existing_nullable=True)
        batch.alter_column("acknowledged_by", new_column_name="contact_made_by",
                           existing_type=sa.String(128), existing_nullable=True)
        batch.add_column(sa.Column("seen_at", _TS, nullable=True))
        batch.add_column(sa.Column("seen_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("reminded_at", _TS, nullable=True))
        batch.add_column(sa.Column("escalated_at", _TS, nullable=True))
        batch.add_column(sa.Column("escalated_to", sa.String(length=64), nullable=True))
    op.execute("UPDATE alerts SET state = 'contact_made' WHERE state = 'acknowledged'")
    with op.batch_alter_table("alerts") as batch:
        batch.create_check_constraint(
            op.f("ck_alerts_state_known"), "state IN ('new', 'seen', 'contact_made', 'closed')")
    _open_alert_index("state <> 'closed'")
    op.create_index(op.f("ix_alerts_state_created_at"), "alerts", ["state", "created_at"])
    op.create_index(op.f("ix_alerts_escalated_to"), "alerts", ["escalated_to"])
    op.create_index(op.f("ix_alerts_household_id_coordinator_id_closed_at"), "alerts",
                    ["household_id", "coordinator_id", "closed_at"])

    with op.batch_alter_table("signals") as batch:
        batch.drop_constraint(op.f("ck_signals_state_known"), type_="check")
        batch.add_column(sa.Column("archived_at", _TS, nullable=True))
        batch.add_column(sa.Column("archive_reason", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("purge_after", _TS, nullable=True))
        batch.add_column(sa.Column("notice_used_at", _TS, nullable=True))
        batch.create_index(batch.f("ix_signals_state_expires_at"), ["state", "expires_at"])
        batch.create_index(batch.f("ix_signals_state_purge_after"), ["state", "purge_after"])
    # Withdrawn ("risk gone") signals were kept: they are archived for five years from
    # their withdrawal (1826 days, the hub's default archive period).
    if op.get_bind().dialect.name == "sqlite":
        op.execute("UPDATE signals SET state = 'archived', archived_at = withdrawn_at, "
                   "archive_reason = withdrawal_reason, "
                   "purge_after = datetime(withdrawn_at, '+1826 days') "
                   "WHERE state = 'withdrawn'")
    else:
        op.execute("UPDATE signals SET state = 'archived', archived_at = withdrawn_at, "
                   "archive_reason = withdrawal_reason, "
                   "purge_after = withdrawn_at + interval '1826 days' "
                   "WHERE state = 'withdrawn'")
    with op.batch_alter_table("signals") as batch:
        batch.create_check_constraint(op.f("ck_signals_state_known"),
                                      "state IN ('active', 'archived')")

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("covenant_id", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=True),
        sa.Column("related", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("closed_at", _TS, nullable=True),
        sa.Column("closed_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint("kind IN ('consent_needed', 'match_notice', 'archived_match')",
                           name=op.f("ck_tasks_kind_known")),
        sa.CheckConstraint("state IN ('open', 'done')", name=op.f("ck_tasks_state_known")),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"],
                                name=op.f("fk_tasks_alert_id_alerts")),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"],
                                name=op.f("fk_tasks_organisation_id_organisations")),
        sa.ForeignKeyConstraint(["signal_id"], ["signals.id"],
                                name=op.f("fk_tasks_signal_id_signals"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_signal_id"), "tasks", ["signal_id"])
    op.create_index(op.f("ix_tasks_organisation_id_state"), "tasks",
                    ["organisation_id", "state"])
    op.create_index("uq_tasks_open_signal_kind_covenant", "tasks",
                    ["signal_id", "kind", "covenant_id"], unique=True,
                    sqlite_where=sa.text("state = 'open'"),
                    postgresql_where=sa.text("state = 'open'"))


def _refuse_new_covenants() -> None:
    versions = sa.table("covenants", sa.column("id", sa.String),
                        sa.column("version", sa.Integer), sa.column("source", sa.Text))
    for cov_id, version, source in op.get_bind().execute(
            sa.select(versions.c.id, versions.c.version, versions.c.source)).all():
        used = sorted(_NEW_COVENANT_KEYS & set(tomllib.loads(source)))
        if used:
            raise RuntimeError(
                f"covenant {cov_id} version {version} uses '{used[0]}', which a hub before "
                "revision 0003 cannot read: not downgrading")


def downgrade() -> None:
    _refuse_new_covenants()
    op.drop_table("tasks")
    with op.batch_alter_table("signals") as batch:
        batch.drop_constraint(op.f("ck_signals_state_known"), type_="check")
    # Before 0003 an expired signal stayed active (past its expires_at), and a signal
    # withdrawn as "risk gone" was 'withdrawn'.
    op.execute("UPDATE signals SET state = 'active' WHERE state = 'archived' "
               "AND withdrawn_at IS NULL")
    op.execute("UPDATE signals SET state = 'withdrawn' WHERE state = 'archived'")
    with op.batch_alter_table("signals") as batch:
        batch.drop_index(batch.f("ix_signals_state_purge_after"))
        batch.drop_index(batch.f("ix_signals_state_expires_at"))
        for name in ("notice_used_at", "purge_after", "archive_reason", "archived_at"):
            batch.drop_column(name)
        batch.create_check_constraint(op.f("ck_signals_state_known"),
                                      "state IN ('active', 'withdrawn')")
    op.drop_index(_OPEN_ALERT, table_name="alerts")
    for name in ("ix_alerts_household_id_coordinator_id_closed_at", "ix_alerts_escalated_to",
                 "ix_alerts_state_created_at"):
        op.drop_index(op.f(name), table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint(op.f("ck_alerts_state_known"), type_="check")
    op.execute("UPDATE alerts SET state = 'acknowledged' WHERE state = 'contact_made'")
    with op.batch_alter_table("alerts") as batch:
        for name in ("escalated_to", "escalated_at", "reminded_at", "closed_by", "seen_by",
                     "seen_at"):
            batch.drop_column(name)
        batch.alter_column("contact_made_at", new_column_name="acknowledged_at",
                           existing_type=_TS, existing_nullable=True)
        batch.alter_column("contact_made_by", new_column_name="acknowledged_by",
                           existing_type=sa.String(128), existing_nullable=True)
        batch.create_check_constraint(
            op.f("ck_alerts_state_known"), "state IN ('new', 'seen', 'acknowledged', 'closed')")
    _open_alert_index("state <> 'closed'")
