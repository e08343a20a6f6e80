"""AuditLog: an append-only record of who changed what, from where."""

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

    user = relationship("User", foreign_keys=[user_id], lazy="joined")

    __table_args__ = (sa.Index("ix_audit_logs_resource", "resource_type", "resource_id"),)

    def __repr__(self):
        return f"{self.action} {self.resource_type} {self.resource_id}"
