"""EventCounter and Reminder: what the event reactions and schedules remember."""

import sqlalchemy as sa
from flask_appbuilder import Model

from models.base import UTCDateTime, utcnow


class EventCounter(Model):
    """How many events of one type happened on one UTC day (dashboard figures)."""

    __tablename__ = "event_counters"
    __audit_resource__ = None

    event_type = sa.Column(sa.String(64), primary_key=True)
    day = sa.Column(sa.Date, primary_key=True)
    count = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")


class Reminder(Model):
    """A reminder event already emitted for a task or meeting, so each is sent once."""

    __tablename__ = "reminders"
    __audit_resource__ = None

    subject_id = sa.Column(sa.String(36), primary_key=True)  # task or meeting id
    kind = sa.Column(sa.String(32), primary_key=True)  # TASK_DUE_SOON, TASK_OVERDUE, MEETING_REMINDER
    due_at = sa.Column(sa.String(40), primary_key=True)  # the due date reminded of (a new date reminds again)
    event_id = sa.Column(sa.String(36), nullable=False)
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
