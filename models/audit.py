"""AuditLog: an append-only record of who changed what, from where, linked into one hash chain.

A row is inserted without its link (`seq`, `prev_hash`, `row_hash` NULL); the sealer
(app/audit_chain.py) links committed rows in one order and records the chain's head in
AuditChain. On PostgreSQL a trigger (migration 3c1d5e7f9a2b) refuses UPDATE and DELETE except
that one-time link and the retention job's own path.
"""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, UTCDateTime, enum_column, id_column, utcnow


class AuditAction(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    LOGIN = "LOGIN"
    LOGOUT = "LOGOUT"
    LOGIN_FAILED = "LOGIN_FAILED"
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    RECALL = "RECALL"
    PASSWORD_CHANGED = "PASSWORD_CHANGED"  # by the user themself
    PASSWORD_RESET = "PASSWORD_RESET"  # by someone else (an Admin, `flask fab reset-password`)
    API_KEY_USED = "API_KEY_USED"  # a service client's key was used (app/api_keys.py: at most once a minute per key)


class AuditLog(Model):
    """One audited action; rows are only ever inserted."""

    __tablename__ = "audit_logs"
    __audit_resource__ = None

    id = id_column()
    user_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    action = enum_column(AuditAction, "audit_action", nullable=False, index=True)
    resource_type = sa.Column(sa.String(64), nullable=False)
    resource_id = sa.Column(sa.String(64), nullable=True)
    changes = sa.Column(sa.JSON, nullable=True)
    ip_address = sa.Column(sa.String(64), nullable=True)
    timestamp = sa.Column(UTCDateTime, nullable=False, default=utcnow, index=True)

    # The chain (app/audit_chain.py): position, the previous row's hash, SHA-256 of this row's
    # canonical content with both. NULL until sealed.
    seq = sa.Column(sa.BigInteger, nullable=True)
    prev_hash = sa.Column(sa.String(64), nullable=True)
    row_hash = sa.Column(sa.String(64), nullable=True)

    user = relationship("User", foreign_keys=[user_id], lazy="joined")

    __table_args__ = (
        sa.Index("ix_audit_logs_resource", "resource_type", "resource_id"),
        # One row per position: a second sealer's fork is refused by the database itself.
        sa.Index("ix_audit_logs_seq", "seq", unique=True),
        # The sealer reads the rows still waiting for their link, oldest first.
        sa.Index(
            "ix_audit_logs_unsealed",
            "timestamp",
            "id",
            postgresql_where=sa.text("seq IS NULL"),
            sqlite_where=sa.text("seq IS NULL"),
        ),
    )

    def __repr__(self):
        return f"{self.action} {self.resource_type} {self.resource_id}"


class AuditChain(Model):
    """The chain's one state row: its head (last sealed position and hash), the sealers' lock."""

    __tablename__ = "audit_chain"
    __audit_resource__ = None

    id = sa.Column(sa.Integer, primary_key=True)
    last_seq = sa.Column(sa.BigInteger, nullable=False, default=0, server_default="0")
    last_hash = sa.Column(sa.String(64), nullable=False)
    updated_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
