"""Notification: an in-app message for one user."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, UTCDateTime, enum_column, id_column, utcnow


class NotificationType(StrEnum):
    APPROVAL_REQUEST = "APPROVAL_REQUEST"
    APPROVAL_APPROVED = "APPROVAL_APPROVED"
    APPROVAL_REJECTED = "APPROVAL_REJECTED"
    TASK_ASSIGNED = "TASK_ASSIGNED"
    TASK_DUE_SOON = "TASK_DUE_SOON"
    MEETING_REMINDER = "MEETING_REMINDER"
    SYSTEM = "SYSTEM"


class Notification(Model):
    """An in-app notification; each user sees only their own."""

    __tablename__ = "notifications"
    __audit_resource__ = None  # high-volume system output, not audited

    id = id_column()
    user_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=False)
    type = enum_column(NotificationType, "notification_type", nullable=False)
    title = sa.Column(sa.String(200), nullable=False)
    message = sa.Column(sa.Text)
    link = sa.Column(sa.String(500))
    is_read = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    read_at = sa.Column(UTCDateTime, nullable=True)
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)

    user = relationship("User", foreign_keys=[user_id])

    __table_args__ = (sa.Index("ix_notifications_user_read_created", "user_id", "is_read", "created_at"),)

    def __repr__(self):
        return self.title
