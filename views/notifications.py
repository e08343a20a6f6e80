"""The caller's own notifications: the list screen and the navbar bell."""

from flask_babel import lazy_gettext as _
from markupsafe import Markup, escape

from app.roles import NOTIFICATION
from app.services.notifications import prepare_notification
from models.notification import Notification, NotificationType
from views.datamodels import CrmInterface
from views.base import ScopedModelView, time_formatters

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
        "type": type_label,
        "is_read": read_state,
        "link": open_link,
    }
