"""Notification rules shared by the screen, the /api blueprint and the event reactions."""

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import User

from app import live
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


def unread_count(user):
    """How many of `user`'s notifications are unread (one COUNT over their index)."""
    from app.extensions import db
    from app.scope import scope_clause

    return db.session.execute(
        sa.select(sa.func.count())
        .select_from(Notification)
        .where(scope_clause(Notification, user), Notification.is_read.is_(False))
    ).scalar_one()


def latest(user, limit=10):
    """`user`'s newest `limit` notifications, read or not, newest first."""
    from app.extensions import db
    from app.scope import scope_clause

    return db.session.execute(
        sa.select(Notification)
        .where(scope_clause(Notification, user))
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(limit)
    ).scalars().all()


def mark_all_read(user):
    """Mark every unread notification of `user` read (one UPDATE); return how many changed."""
    from app.extensions import db
    from app.scope import scope_clause

    return db.session.execute(
        sa.update(Notification)
        .where(scope_clause(Notification, user), Notification.is_read.is_(False))
        .values(is_read=True, read_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount


def notify(session, user_id, kind, title, message=None, link=None):
    """Store one in-app notification for an active user and queue its e-mail for after commit.

    The e-mail is sent only when SMTP is configured (app/delivery.py, app/mail.py); `link`
    must already be checked (app/links.py). Returns the notification, None when the user
    is unknown or inactive.
    """
    user = session.get(User, int(user_id)) if user_id not in (None, "") else None
    if user is None or not user.active:
        return None
    note = Notification(user_id=user.id, type=kind, title=title[:200], message=message, link=link)
    session.add(note)
    session.flush()
    live.note_added(session, note)  # the recipient's open bells hear of it after commit (bell)
    if user.email:
        session.info.setdefault("emails_after_commit", []).append(
            {"to": user.email, "subject": title[:200], "body": message or title}
        )
    return note
