"""The agent's local state: what it submitted and the key it trusts.

Every signal is written here before it is sent, with the exact request, so a re-run
sends nothing twice and a pending request can be resent unchanged.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from exchange.db import NAMING, UTCDateTime

# A submission is written as "pending" (with its exact request) before it is sent, and
# becomes "submitted" or "rejected" only on the hub's answer; "withdrawn" later, or
# "replaced" by a submission of the same case with pseudonyms of a new OPRF key.
STATES = ("pending", "submitted", "rejected", "withdrawn", "replaced")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 - SQLAlchemy reads it


class Submission(Base):
    __tablename__ = "submissions"

    signal_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_ref: Mapped[str] = mapped_column(String(128))
    person_key: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    request: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    withdrawn_at: Mapped[datetime | None]
    # "risk_gone" or "unjustified"; unknown (None) for withdrawals before revision 0002.
    withdrawal_reason: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(300))
    # The OPRF key its pseudonyms were made with (and, in a rotation, the previous one).
    key_id: Mapped[str | None] = mapped_column(String(16))
    # After a key rotation: the submission of the same case that replaced this one.
    replaced_by: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'submitted', 'rejected', 'withdrawn', 'replaced')",
            name="state_known"),
        Index(None, "case_ref", "state"),
    )


class ConsentRecord(Base):
    __tablename__ = "consents"

    consent_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    case_ref: Mapped[str] = mapped_column(String(128), index=True)
    covenant_id: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Pin(Base):
    """Values pinned on first use and refused when they change.

    ``organisation`` binds the state to one organisation; ``key:oprf`` is the key
    service's public key; ``key:oprf:previous`` the key it replaced during a rotation
    (the agent adds its pseudonyms while the key service still evaluates it);
    ``key:coordinator:<id>`` each coordinator's envelope key.
    """

    __tablename__ = "pins"

    name: Mapped[str] = mapped_column(String(96), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    recorded_at: Mapped[datetime]
