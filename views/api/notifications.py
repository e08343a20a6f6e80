"""/api/notifications: the caller's own in-app notifications."""

import sqlalchemy as sa
from flask import Blueprint, jsonify, request

from app.extensions import db
from app.caching import cached_endpoint, model_resources
from app.roles import DELETE, EDIT, NOTIFICATION, READ
from app.listquery import ListQuery
from app.scope import scope_clause
from app.services.errors import ValidationFailed
from app.services.notifications import mark_all_read as mark_all_notifications_read
from app.services.notifications import mark_read as mark_notification_read
from app.services.records import get_in_scope
from models.notification import Notification, NotificationType
from views.api.common import current_user, item, page_answer, path_uuid, query_enum, requires

bp = Blueprint("crm_api_notifications", __name__, url_prefix="/notifications")


def load(notification_id):
    """The caller's notification `notification_id` (anyone else's is 404)."""
    return get_in_scope(Notification, path_uuid(notification_id, "Notification"), current_user())


@bp.get("")
@requires(READ, NOTIFICATION)
@cached_endpoint(*model_resources(Notification))
def list_notifications():
    """The caller's notifications, newest first; ?isRead=true|false, type=."""
    lq = ListQuery(Notification, current_user())
    flag = request.args.get("isRead") or request.args.get("unread")
    if flag is not None:
        if flag.lower() not in ("true", "false"):
            raise ValidationFailed("isRead must be true or false", field="isRead")
        want_read = (flag.lower() == "true") if "isRead" in request.args else (flag.lower() != "true")
        lq.where("isRead", lambda p: Notification.is_read == p, want_read)
    kind = query_enum("type", NotificationType)
    if kind:
        lq.where("type", lambda p: Notification.type == p, kind)
    return page_answer(lq, keyset=(Notification.created_at, Notification.id))


@bp.get("/unread-count")
@requires(READ, NOTIFICATION)
@cached_endpoint(*model_resources(Notification))
def unread_count():
    """How many of the caller's notifications are unread (one COUNT)."""
    count = db.session.execute(
        sa.select(sa.func.count())
        .select_from(Notification)
        .where(scope_clause(Notification, current_user()), Notification.is_read.is_(False))
    ).scalar_one()
    return jsonify(success=True, data={"count": count}, count=count)


@bp.put("/<notification_id>/read")
@bp.patch("/<notification_id>/read")
@requires(EDIT, NOTIFICATION)
def mark_read(notification_id):
    """Mark one notification read."""
    row = load(notification_id)
    if mark_notification_read(row):
        db.session.commit()
    else:
        db.session.rollback()
        row = load(notification_id)
    return item(row)


@bp.put("/read-all")
@bp.patch("/read-all")
@requires(EDIT, NOTIFICATION)
def mark_all_read():
    """Mark every unread notification of the caller read (one UPDATE)."""
    updated = mark_all_notifications_read(current_user())
    db.session.commit()
    return jsonify(success=True, data={"updated": updated}, updated=updated)


@bp.delete("/<notification_id>")
@requires(DELETE, NOTIFICATION)
def delete_notification(notification_id):
    """Delete one of the caller's notifications."""
    row = load(notification_id)
    data = item(row)
    db.session.delete(row)
    db.session.commit()
    return data
