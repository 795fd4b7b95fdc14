"""The hub's tables. Alembic migrations in hub/_migrations must match these exactly
(tests/unit/hub/test_migrations.py compares them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from exchange.db import NAMING, UTCDateTime

# SQLite only auto-increments INTEGER PRIMARY KEY columns.
AutoBigInt = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - SQLAlchemy reads it


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    registered_at: Mapped[datetime]


class Coordinator(Base):
    __tablename__ = "coordinators"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(32))
    email: Mapped[str] = mapped_column(String(254))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16))
    registered_at: Mapped[datetime]


class CovenantVersion(Base):
    """Each registered version of a covenant; the TOML text is the source of truth."""

    __tablename__ = "covenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    coordinator_id: Mapped[str] = mapped_column(ForeignKey("coordinators.id"))
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    source: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    registered_at: Mapped[datetime]
    registered_by: Mapped[str] = mapped_column(String(128))

    __table_args__ = (CheckConstraint("version >= 1", name="version_positive"),)


class LinkageProfileVersion(Base):
    """Each registered version of a linkage profile (exchange.linkage); TOML is the source."""

    __tablename__ = "linkage_profiles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    source_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    registered_at: Mapped[datetime]
    registered_by: Mapped[str] = mapped_column(String(128))

    __table_args__ = (CheckConstraint("version >= 1", name="version_positive"),)


class ExcludedKey(Base):
    """An address key that links no household: a shelter, care home or student house,
    registered (as its pseudonym) by the municipality."""

    __tablename__ = "excluded_keys"

    kind: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    registered_at: Mapped[datetime]
    registered_by: Mapped[str] = mapped_column(String(128))


class Household(Base):
    __tablename__ = "households"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime]
    # Set when merged into another household; references in the log stay valid.
    merged_into: Mapped[str | None] = mapped_column(ForeignKey("households.id"))
    # Set when split off another household (a withdrawal left two parts).
    split_from: Mapped[str | None] = mapped_column(ForeignKey("households.id"))


class Signal(Base):
    __tablename__ = "signals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"), index=True)
    category: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(6))
    professional_name: Mapped[str] = mapped_column(String(200))
    professional_phone: Mapped[str] = mapped_column(String(32))
    professional_email: Mapped[str] = mapped_column(String(254))
    observed_at: Mapped[datetime]
    received_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    # active, or archived (withdrawn as "risk gone", or expired) until purge_after.
    state: Mapped[str] = mapped_column(String(16))
    withdrawn_at: Mapped[datetime | None]
    withdrawal_reason: Mapped[str | None] = mapped_column(String(16))
    content_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))
    archived_at: Mapped[datetime | None]
    archive_reason: Mapped[str | None] = mapped_column(String(16))
    purge_after: Mapped[datetime | None]
    # When this archived signal gave a new reporter its one-time notice.
    notice_used_at: Mapped[datetime | None]
    # The linkage profile (id@vN) its fuzzy tokens were made with, or None.
    profile: Mapped[str | None] = mapped_column(String(80))

    keys: Mapped[list[SignalKey]] = relationship(
        back_populates="signal", cascade="all, delete-orphan", passive_deletes=True
    )
    envelopes: Mapped[list[Envelope]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint("state IN ('active', 'archived')", name="state_known"),
        Index(None, "organisation_id", "state"),
        Index(None, "state", "expires_at"),
        Index(None, "state", "purge_after"),
    )


class SignalKey(Base):
    __tablename__ = "signal_keys"

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    signal_id: Mapped[str] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"))
    kind: Mapped[int] = mapped_column(SmallInteger)
    value: Mapped[bytes] = mapped_column(LargeBinary(32))

    signal: Mapped[Signal] = relationship(back_populates="keys")

    __table_args__ = (
        UniqueConstraint("signal_id", "kind", "value"),
        Index(None, "value", "kind"),
    )


class Envelope(Base):
    __tablename__ = "envelopes"

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    signal_id: Mapped[str] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"))
    recipient_id: Mapped[str] = mapped_column(ForeignKey("coordinators.id"))
    key_fingerprint: Mapped[bytes] = mapped_column(LargeBinary(16))
    scheme: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (UniqueConstraint("signal_id", "recipient_id"),)


class Consent(Base):
    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    covenant_id: Mapped[str] = mapped_column(String(64))
    # The covenant version consented under, and its parties then: the consent's scope.
    covenant_version: Mapped[int] = mapped_column(Integer)
    organisations: Mapped[list[str]] = mapped_column(JSON)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    evidence_reference: Mapped[str] = mapped_column(String(128))
    valid_from: Mapped[datetime]
    valid_until: Mapped[datetime]
    recorded_at: Mapped[datetime]
    recorded_by: Mapped[str] = mapped_column(String(128))
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(128))
    content_sha256: Mapped[bytes] = mapped_column(LargeBinary(32))

    keys: Mapped[list[ConsentKey]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class ConsentKey(Base):
    __tablename__ = "consent_keys"

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    consent_id: Mapped[str] = mapped_column(ForeignKey("consents.id", ondelete="CASCADE"))
    kind: Mapped[int] = mapped_column(SmallInteger)
    value: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (
        UniqueConstraint("consent_id", "kind", "value"),
        Index(None, "value", "kind"),
    )


class Match(Base):
    """Two or more parties of a covenant with active signals on one household."""

    __tablename__ = "matches"

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"))
    covenant_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(64))
    # Every basis in use, joined with "+"; per signal in alert_signals.basis.
    basis: Mapped[str | None] = mapped_column(String(512))
    # How many of the parties' signals have no basis (their involvement is withheld).
    withheld: Mapped[int] = mapped_column(Integer)
    decided_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("household_id", "covenant_id"),
        CheckConstraint("status IN ('held', 'disclosed', 'dissolved')", name="status_known"),
    )


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.id"))
    covenant_id: Mapped[str] = mapped_column(String(64))
    coordinator_id: Mapped[str] = mapped_column(ForeignKey("coordinators.id"))
    # new -> seen -> contact_made -> closed; who and when for each step.
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    seen_at: Mapped[datetime | None]
    seen_by: Mapped[str | None] = mapped_column(String(128))
    contact_made_at: Mapped[datetime | None]
    contact_made_by: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(128))
    closed_reason: Mapped[str | None] = mapped_column(String(32))
    # No contact recorded in time: the coordinator was reminded, then the covenant's
    # escalation contact (a coordinator id) was told.
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    escalated_to: Mapped[str | None] = mapped_column(String(64))

    signals: Mapped[list[AlertSignal]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        CheckConstraint(
            "state IN ('new', 'seen', 'contact_made', 'closed')", name="state_known"
        ),
        Index(None, "coordinator_id", "created_at"),
        Index(None, "state", "created_at"),  # reminders and escalations
        Index(None, "escalated_to"),
        Index(None, "household_id", "coordinator_id", "closed_at"),
        # One open alert per household per coordinator.
        Index(
            "uq_alerts_open_household_coordinator",
            "household_id",
            "coordinator_id",
            unique=True,
            sqlite_where=text("state <> 'closed'"),
            postgresql_where=text("state <> 'closed'"),
        ),
    )


class AlertSignal(Base):
    __tablename__ = "alert_signals"

    alert_id: Mapped[str] = mapped_column(
        ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True
    )
    signal_id: Mapped[str] = mapped_column(
        ForeignKey("signals.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    # The basis on which this signal's involvement is shown to the coordinator.
    basis: Mapped[str] = mapped_column(String(256))


class AlertFeed(Base):
    """Every change of every alert, in order: the cursor of WatchAlerts."""

    __tablename__ = "alert_feed"

    seq: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    coordinator_id: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    change: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]

    __table_args__ = (Index(None, "coordinator_id", "seq"),)


class Task(Base):
    """Something a partner's agent must hear about one of its own signals.

    * ``consent_needed``: a match on this signal is held for want of a basis; asking the
      household for consent would release it. Says nothing of the other organisations.
    * ``match_notice``: the covenant lets involved professionals know each other; the
      others' contact details are read from the alert when the agent lists its tasks.
    * ``archived_match``: a one-time notice that this new signal matches only archived
      signals (``related``), with their reporters' contact details.

    At most one open task per signal, kind and covenant; it is updated, not duplicated.
    """

    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    signal_id: Mapped[str] = mapped_column(
        ForeignKey("signals.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    covenant_id: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[str | None] = mapped_column(ForeignKey("alerts.id"))
    related: Mapped[list[str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    closed_reason: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        CheckConstraint(
            "kind IN ('consent_needed', 'match_notice', 'archived_match')", name="kind_known"),
        CheckConstraint("state IN ('open', 'done')", name="state_known"),
        Index(None, "organisation_id", "state"),
        Index(
            "uq_tasks_open_signal_kind_covenant",
            "signal_id",
            "kind",
            "covenant_id",
            unique=True,
            sqlite_where=text("state = 'open'"),
            postgresql_where=text("state = 'open'"),
        ),
    )


class AuditEvent(Base):
    """One access-log entry. Every column is covered by leaf_hash (see hub._audit)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    actor_org: Mapped[str] = mapped_column(String(64), index=True)
    actor_user: Mapped[str] = mapped_column(String(128))
    actor_name: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str] = mapped_column(String(32))
    # Whether the actor asked for this themselves (false: the hub's own decision).
    requested: Mapped[bool] = mapped_column(Boolean)
    # The organisation whose data the event concerns ("" for none): its privacy
    # officer sees the event. Decisions about several organisations are one event each.
    owner_org: Mapped[str] = mapped_column(String(64), index=True)
    on_behalf_of: Mapped[str] = mapped_column(String(128))
    purpose: Mapped[str] = mapped_column(String(64))
    subject_ref: Mapped[str] = mapped_column(String(64), index=True)
    basis: Mapped[str] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(String(64))
    source_system: Mapped[str] = mapped_column(String(64))
    network_address: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(36))
    detail: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    def as_dict(self) -> dict[str, Any]:
        return {c.name: getattr(self, c.key) for c in self.__table__.columns}


class AuditQueued(Base):
    """An event appended and committed but not yet in the Merkle tree.

    Appending writes here, without touching the tree, so concurrent requests never wait
    for one another; the integrator (hub._audit.integrate) moves queued events into
    ``audit_events`` in one locked transaction, giving each its index, leaf and chain
    hash. ``payload`` is the event's fields as JSON: no personal data, as for events.
    """

    __tablename__ = "audit_queue"

    id: Mapped[int] = mapped_column(AutoBigInt, primary_key=True, autoincrement=True)
    payload: Mapped[str] = mapped_column(Text)


class AuditHead(Base):
    """The single row holding the log's size, Merkle root and latest chain hash.

    ``frontier`` holds the roots of the perfect subtrees that make up the tree (one per
    set bit of the size, largest first): appending needs nothing else.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    frontier: Mapped[bytes] = mapped_column(LargeBinary)
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class AuditNode(Base):
    """The hash of the perfect subtree over leaves [index * 2**level, (index+1) * 2**level).

    Levels from 1 are stored as they complete; level 0 (a leaf) is the event's leaf_hash,
    or is kept here once the event itself was pruned.
    """

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditPruned(Base):
    """A range of events removed after their retention, with what keeps it verifiable."""

    __tablename__ = "audit_pruned"

    upto: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first: Mapped[int] = mapped_column(BigInteger)
    # The chain hash after event upto - 1, where verification of the rest starts.
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    pruned_at: Mapped[datetime]
    pruned_by: Mapped[str] = mapped_column(String(128))


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text)
