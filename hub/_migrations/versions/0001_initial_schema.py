"""Initial schema: registry, signals, households, matches, alerts, consents, access log.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 10:52:14.722835
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_checkpoints")),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("actor_org", sa.String(length=64), nullable=False),
        sa.Column("actor_user", sa.String(length=128), nullable=False),
        sa.Column("actor_name", sa.String(length=200), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("requested", sa.Boolean(), nullable=False),
        sa.Column("owner_org", sa.String(length=64), nullable=False),
        sa.Column("on_behalf_of", sa.String(length=128), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("subject_ref", sa.String(length=64), nullable=False),
        sa.Column("basis", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=64), nullable=False),
        sa.Column("network_address", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_events_event_id")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_actor_org"), ["actor_org"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_events_occurred_at"), ["occurred_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_events_owner_org"), ["owner_org"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_events_subject_ref"), ["subject_ref"], unique=False
        )

    op.create_table(
        "audit_head",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("frontier", sa.LargeBinary(), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    audit_head = sa.table(
        "audit_head",
        sa.column("id", sa.SmallInteger()),
        sa.column("size", sa.BigInteger()),
        sa.column("root_hash", sa.LargeBinary()),
        sa.column("frontier", sa.LargeBinary()),
        sa.column("chain_hash", sa.LargeBinary()),
    )
    empty_root = hashlib.sha256(b"").digest()  # RFC 6962: the root of an empty tree
    op.bulk_insert(audit_head, [{"id": 1, "size": 0, "root_hash": empty_root,
                                 "frontier": b"", "chain_hash": bytes(32)}])
    op.create_table(
        "audit_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "index", name=op.f("pk_audit_nodes")),
    )
    op.create_table(
        "audit_pruned",
        sa.Column("upto", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("first", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pruned_by", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("upto", name=op.f("pk_audit_pruned")),
    )
    op.create_table(
        "households",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_into", sa.String(length=32), nullable=True),
        sa.Column("split_from", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["households.id"], name=op.f("fk_households_merged_into_households")
        ),
        sa.ForeignKeyConstraint(
            ["split_from"], ["households.id"], name=op.f("fk_households_split_from_households")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_households")),
    )
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("covenant_id", sa.String(length=64), nullable=False),
        sa.Column("covenant_version", sa.Integer(), nullable=False),
        sa.Column("organisations", sa.JSON(), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("evidence_reference", sa.String(length=128), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=128), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=128), nullable=True),
        sa.Column("content_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_consents_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    op.create_table(
        "coordinators",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("key_fingerprint", sa.LargeBinary(length=16), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_coordinators_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coordinators")),
    )
    with op.batch_alter_table("coordinators", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_coordinators_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "matches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("household_id", sa.String(length=32), nullable=False),
        sa.Column("covenant_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("basis", sa.String(length=512), nullable=True),
        sa.Column("withheld", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('held', 'disclosed', 'dissolved')", name=op.f("ck_matches_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["household_id"], ["households.id"], name=op.f("fk_matches_household_id_households")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_matches")),
        sa.UniqueConstraint(
            "household_id", "covenant_id", name=op.f("uq_matches_household_id_covenant_id")
        ),
    )
    op.create_table(
        "signals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("household_id", sa.String(length=32), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("professional_name", sa.String(length=200), nullable=False),
        sa.Column("professional_phone", sa.String(length=32), nullable=False),
        sa.Column("professional_email", sa.String(length=254), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawal_reason", sa.String(length=16), nullable=True),
        sa.Column("content_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.CheckConstraint("state IN ('active', 'withdrawn')", name=op.f("ck_signals_state_known")),
        sa.ForeignKeyConstraint(
            ["household_id"], ["households.id"], name=op.f("fk_signals_household_id_households")
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_signals_organisation_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signals")),
    )
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signals_household_id"), ["household_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_signals_organisation_id_state"),
            ["organisation_id", "state"],
            unique=False,
        )

    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("household_id", sa.String(length=32), nullable=False),
        sa.Column("covenant_id", sa.String(length=64), nullable=False),
        sa.Column("coordinator_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=128), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint(
            "state IN ('new', 'seen', 'acknowledged', 'closed')", name=op.f("ck_alerts_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["coordinator_id"],
            ["coordinators.id"],
            name=op.f("fk_alerts_coordinator_id_coordinators"),
        ),
        sa.ForeignKeyConstraint(
            ["household_id"], ["households.id"], name=op.f("fk_alerts_household_id_households")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alerts_coordinator_id_created_at"),
            ["coordinator_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "uq_alerts_open_household_coordinator",
            ["household_id", "coordinator_id"],
            unique=True,
            sqlite_where=sa.text("state <> 'closed'"),
            postgresql_where=sa.text("state <> 'closed'"),
        )

    op.create_table(
        "consent_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("consent_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.id"],
            name=op.f("fk_consent_keys_consent_id_consents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_keys")),
        sa.UniqueConstraint(
            "consent_id", "kind", "value", name=op.f("uq_consent_keys_consent_id_kind_value")
        ),
    )
    with op.batch_alter_table("consent_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_keys_value_kind"), ["value", "kind"], unique=False
        )

    op.create_table(
        "covenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("coordinator_id", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.String(length=128), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_covenants_version_positive")),
        sa.ForeignKeyConstraint(
            ["coordinator_id"],
            ["coordinators.id"],
            name=op.f("fk_covenants_coordinator_id_coordinators"),
        ),
        sa.PrimaryKeyConstraint("id", "version", name=op.f("pk_covenants")),
    )
    op.create_table(
        "envelopes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("recipient_id", sa.String(length=64), nullable=False),
        sa.Column("key_fingerprint", sa.LargeBinary(length=16), nullable=False),
        sa.Column("scheme", sa.String(length=64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["coordinators.id"],
            name=op.f("fk_envelopes_recipient_id_coordinators"),
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_envelopes_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_envelopes")),
        sa.UniqueConstraint(
            "signal_id", "recipient_id", name=op.f("uq_envelopes_signal_id_recipient_id")
        ),
    )
    op.create_table(
        "signal_keys",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("value", sa.LargeBinary(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_signal_keys_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signal_keys")),
        sa.UniqueConstraint(
            "signal_id", "kind", "value", name=op.f("uq_signal_keys_signal_id_kind_value")
        ),
    )
    with op.batch_alter_table("signal_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signal_keys_value_kind"), ["value", "kind"], unique=False
        )

    op.create_table(
        "alert_feed",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("coordinator_id", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_feed_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_alert_feed")),
    )
    with op.batch_alter_table("alert_feed", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_feed_coordinator_id_seq"), ["coordinator_id", "seq"], unique=False
        )

    op.create_table(
        "alert_signals",
        sa.Column("alert_id", sa.String(length=36), nullable=False),
        sa.Column("signal_id", sa.String(length=36), nullable=False),
        sa.Column("basis", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_signals_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signal_id"],
            ["signals.id"],
            name=op.f("fk_alert_signals_signal_id_signals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", "signal_id", name=op.f("pk_alert_signals")),
    )
    with op.batch_alter_table("alert_signals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_signals_signal_id"), ["signal_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alert_signals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_signals_signal_id"))

    op.drop_table("alert_signals")
    with op.batch_alter_table("alert_feed", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_feed_coordinator_id_seq"))

    op.drop_table("alert_feed")
    with op.batch_alter_table("signal_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signal_keys_value_kind"))

    op.drop_table("signal_keys")
    op.drop_table("envelopes")
    op.drop_table("covenants")
    with op.batch_alter_table("consent_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_keys_value_kind"))

    op.drop_table("consent_keys")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_alerts_open_household_coordinator",
            sqlite_where=sa.text("state <> 'closed'"),
            postgresql_where=sa.text("state <> 'closed'"),
        )
        batch_op.drop_index(batch_op.f("ix_alerts_coordinator_id_created_at"))

    op.drop_table("alerts")
    with op.batch_alter_table("signals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signals_organisation_id_state"))
        batch_op.drop_index(batch_op.f("ix_signals_household_id"))

    op.drop_table("signals")
    op.drop_table("matches")
    with op.batch_alter_table("coordinators", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_coordinators_organisation_id"))

    op.drop_table("coordinators")
    op.drop_table("consents")
    op.drop_table("organisations")
    op.drop_table("households")
    op.drop_table("audit_pruned")
    op.drop_table("audit_nodes")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_subject_ref"))
        batch_op.drop_index(batch_op.f("ix_audit_events_owner_org"))
        batch_op.drop_index(batch_op.f("ix_audit_events_occurred_at"))
        batch_op.drop_index(batch_op.f("ix_audit_events_actor_org"))

    op.drop_table("audit_events")
    op.drop_table("audit_checkpoints")
