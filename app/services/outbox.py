"""Outbox health: how many events wait to be delivered, for /ready and `crm health`."""

import sqlalchemy as sa

from models.base import utcnow
from models.outbox import OutboxEvent


def outbox_backlog(session=None):
    """Return {"pending", "failing", "oldestAgeSeconds"} for unpublished outbox rows."""
    if session is None:
        from app.extensions import db

        session = db.session
    pending, failing, oldest = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(OutboxEvent.attempts > 0),
            sa.func.min(OutboxEvent.created_at),
        ).where(OutboxEvent.published_at.is_(None))
    ).one()
    if oldest is not None and oldest.tzinfo is None:
        from datetime import timezone

        oldest = oldest.replace(tzinfo=timezone.utc)
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return {"pending": int(pending), "failing": int(failing or 0), "oldestAgeSeconds": round(age, 3)}
