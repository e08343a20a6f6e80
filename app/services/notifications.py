"""Notification rules shared by the screen and the /api blueprint."""

import sqlalchemy as sa

from models.base import utcnow
from models.notification import Notification


def prepare_notification(notification, user, creating):
    """Keep readAt in step with isRead, whichever entry point changed it."""
    if notification.is_read:
        notification.read_at = notification.read_at or utcnow()
    else:
        notification.read_at = None


def mark_read(notification):
    """Mark `notification` read once: the first reader's time stays, whoever marks it again or at the same moment.

    A conditional UPDATE (`... WHERE is_read = false`) decides on every database; the row
    is then read back, so the caller answers with what is stored.
    """
    from app.extensions import db

    if notification.is_read:
        return False
    won = db.session.execute(
        sa.update(Notification)
        .where(Notification.id == notification.id, Notification.is_read.is_(False))
        .values(is_read=True, read_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(notification)
    return bool(won)
