"""The caller's own notifications."""

from flask_babel import lazy_gettext as _

from app.roles import NOTIFICATION
from app.services.notifications import prepare_notification
from models.notification import Notification
from views.datamodels import CrmInterface
from views.base import ScopedModelView, time_formatters


class NotificationView(ScopedModelView):
    """Each user's own in-app notifications (the scope rule limits them to the caller)."""

    datamodel = CrmInterface(Notification)
    class_permission_name = NOTIFICATION
    prepare = staticmethod(prepare_notification)
    list_title = _("Notifications")
    label_columns = {
        "type": _("Type"),
        "title": _("Title"),
        "message": _("Message"),
        "link": _("Link"),
        "is_read": _("Read"),
        "created_at": _("Received"),
    }
    list_columns = ["created_at", "type", "title", "is_read"]
    show_columns = ["created_at", "type", "title", "message", "link", "is_read", "read_at"]
    edit_columns = ["is_read"]
    search_columns = ["type", "is_read", "created_at"]
    base_order = ("created_at", "desc")
    base_permissions = ["can_read", "can_edit", "can_delete"]
    formatters_columns = time_formatters("created_at", "read_at")
