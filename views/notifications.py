"""The caller's own notifications: the list screen and the navbar bell."""

from flask import abort, current_app, g, jsonify, redirect, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _
from markupsafe import Markup, escape

from app.extensions import db
from app.roles import NOTIFICATION
from app.services import notifications as service
from app.services.errors import DomainError
from app.services.notifications import prepare_notification
from app.services.records import get_in_scope
from models.notification import Notification, NotificationType
from views.api.common import path_uuid
from views.approvals import _safe_next
from views.datamodels import CrmInterface
from views import display
from views.base import ScopedModelView, time_formatters
from views.display import local_time
from views.lists import may, post_button

TYPE_LABELS = {
    NotificationType.APPROVAL_REQUEST: _("Approval request"),
    NotificationType.APPROVAL_APPROVED: _("Request approved"),
    NotificationType.APPROVAL_REJECTED: _("Request rejected"),
    NotificationType.TASK_ASSIGNED: _("Task assigned"),
    NotificationType.TASK_DUE_SOON: _("Task due"),
    NotificationType.MEETING_REMINDER: _("Meeting reminder"),
    NotificationType.SYSTEM: _("System"),
}


def type_label(kind):
    """The readable label of a notification type (the code itself when unknown)."""
    try:
        return str(TYPE_LABELS[NotificationType(kind)])
    except ValueError:
        return str(kind or "")


def read_state(is_read):
    """「既読」 or 「未読」 (as a badge) for a notification's read flag."""
    if is_read:
        return Markup('<span class="label label-default">%s</span>') % escape(str(_("Read")))
    return Markup('<span class="label label-primary">%s</span>') % escape(str(_("Unread")))


def open_link(link):
    """The notification's link as an anchor to its record's screen."""
    if not link:
        return ""
    return Markup('<a href="%s">%s</a>') % (escape(link), escape(str(_("Open"))))


def type_choice_field():
    """The type filter of the list's search form, offering the readable labels."""
    from flask_appbuilder.fieldwidgets import Select2Widget
    from wtforms import SelectField

    return SelectField(
        _("Type"),
        choices=[(kind.value, label) for kind, label in TYPE_LABELS.items()],
        widget=Select2Widget(),
        validate_choice=False,
    )


class NotificationView(ScopedModelView):
    """Each user's own in-app notifications (the scope rule limits them to the caller); read-only here."""

    datamodel = CrmInterface(Notification)
    class_permission_name = NOTIFICATION
    prepare = staticmethod(prepare_notification)
    list_title = _("Notifications")
    show_title = _("Notification")
    label_columns = {
        "type": _("Type"),
        "title": _("Title"),
        "message": _("Message"),
        "link": _("Link"),
        "is_read": _("Read"),
        "read_at": _("Read at"),
        "created_at": _("Received"),
    }
    list_columns = ["created_at", "type", "title", "is_read", "link"]
    show_columns = ["created_at", "type", "title", "message", "link", "is_read", "read_at"]
    search_columns = ["type", "is_read", "created_at"]
    search_form_extra_fields = {"type": type_choice_field()}
    base_order = ("created_at", "desc")
    # No edit: a notification is marked read from the bell (POST), never edited in a form.
    base_permissions = ["can_read", "can_delete"]
    formatters_columns = {
        **time_formatters("created_at", "read_at"),
        "type": display.badge_formatter("notification_type"),
        "is_read": read_state,
        "link": open_link,
    }

    # --- lists: unread rows stand out; mark one read from its row (the bell's POST, back to this page) ---
    def row_class(self, item):
        """Unread notifications stand out."""
        return "" if item.get("is_read") else "crm-row-unread"

    def quick_actions(self, pk, item):
        """Mark an unread notification read from the list."""
        if item.get("is_read") or not may(self.appbuilder, "can_edit", NOTIFICATION):
            return ""
        return post_button("NotificationBellView.read", _("Mark read"), "fa-envelope-open-o", pk=pk)


class NotificationBellView(BaseView):
    """The navbar bell: the caller's unread count and newest notifications, and their read marks (POSTs only)."""

    route_base = "/notifications"
    class_permission_name = NOTIFICATION
    method_permission_name = {"bell": "read", "open": "edit", "read": "edit", "read_all": "edit"}
    default_view = "bell"

    @expose("/bell", methods=["GET"])
    @has_access
    def bell(self):
        """JSON for the bell: {count, items: the newest BELL_ITEMS} (changes nothing)."""
        limit = int(current_app.config["BELL_ITEMS"])
        user = g.user
        resp = jsonify(count=service.unread_count(user), items=[bell_item(n) for n in service.latest(user, limit)])
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @expose("/<pk>/open", methods=["POST"])
    @has_access
    def open(self, pk):
        """Mark one of the caller's notifications read and go to its record's screen."""
        note = _own(pk)
        if service.mark_read(note):
            db.session.commit()
        return redirect(note.link or url_for("NotificationView.show", pk=note.id), code=303)

    @expose("/<pk>/read", methods=["POST"])
    @has_access
    def read(self, pk):
        """Mark one of the caller's notifications read; JSON {count} for the bell's script, else back."""
        note = _own(pk)
        if service.mark_read(note):
            db.session.commit()
        return _answer()

    @expose("/read-all", methods=["POST"])
    @has_access
    def read_all(self):
        """Mark every unread notification of the caller read."""
        if service.mark_all_read(g.user):
            db.session.commit()
        return _answer()


def bell_stream_url():
    """The URL of the notification stream for this page's bell (app/stream.py)."""
    from app.stream import stream_url

    return stream_url(current_app.config, request)


def bell_item(note):
    """One notification as the bell's script shows it."""
    return {
        "id": note.id,
        "type": str(note.type),
        "typeLabel": type_label(note.type),
        "title": note.title,
        "message": note.message or "",
        "link": note.link,
        "isRead": bool(note.is_read),
        "createdAt": local_time(note.created_at),
    }


def _own(pk):
    """The caller's notification `pk`; anyone else's (or none) is 404."""
    try:
        return get_in_scope(Notification, path_uuid(pk, "Notification"), g.user)
    except DomainError:
        abort(404)


def _answer():
    """The bell's script gets the new unread count; a plain form goes back where it came from."""
    if request.accept_mimetypes.best == "application/json":
        return jsonify(count=service.unread_count(g.user))
    return redirect(_safe_next(url_for("NotificationView.list")), code=303)
