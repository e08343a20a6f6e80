"""OutboxEvent: events written in the same transaction as the change they describe."""

import sqlalchemy as sa
from flask_appbuilder import Model

from models.base import UTCDateTime, utcnow


class OutboxEvent(Model):
    """One event waiting to be (or already) published to its topic."""

    __tablename__ = "outbox_events"
    __audit_resource__ = None

    id = sa.Column(sa.String(36), primary_key=True)  # the event id, also sent as a header
    topic = sa.Column(sa.String(200), nullable=False)
    aggregate_type = sa.Column(sa.String(64), nullable=False)
    aggregate_id = sa.Column(sa.String(64), nullable=False)
    key = sa.Column(sa.String(64), nullable=False)
    type = sa.Column(sa.String(64), nullable=False)
    sequence = sa.Column(sa.Integer, nullable=False)
    envelope = sa.Column(sa.JSON, nullable=False)
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    published_at = sa.Column(UTCDateTime, nullable=True)
    attempts = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    last_error = sa.Column(sa.Text, nullable=True)

    __table_args__ = (
        sa.UniqueConstraint("aggregate_type", "aggregate_id", "sequence", name="uq_outbox_aggregate_sequence"),
        # The relay scans unpublished rows in creation order.
        sa.Index(
            "ix_outbox_unpublished",
            "created_at",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
    )


class ProcessedEvent(Model):
    """Idempotency record: a reaction to this event id has been applied by this handler."""

    __tablename__ = "processed_events"
    __audit_resource__ = None

    event_id = sa.Column(sa.String(36), primary_key=True)
    handler = sa.Column(sa.String(100), primary_key=True)
    processed_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
