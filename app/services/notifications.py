"""Notification rules shared by the screen and the /api blueprint."""

from models.base import utcnow


def prepare_notification(notification, user, creating):
    """Keep readAt in step with isRead, whichever entry point changed it."""
    if notification.is_read:
        notification.read_at = notification.read_at or utcnow()
    else:
        notification.read_at = None
