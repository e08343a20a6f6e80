"""The audit log: read-only, for Admin, Manager and Compliance."""

from flask_babel import lazy_gettext as _

from app.roles import AUDIT
from models.audit import AuditLog
from views.datamodels import CrmInterface
from views.base import ScopedModelView, time_formatters


class AuditLogView(ScopedModelView):
    """Who changed what, when and from where. Nobody may add, edit or delete rows."""

    datamodel = CrmInterface(AuditLog)
    class_permission_name = AUDIT
    base_permissions = ["can_read"]
    list_title = _("Audit Log")
    label_columns = {
        "timestamp": _("Time"),
        "user": _("User"),
        "action": _("Action"),
        "resource_type": _("Resource"),
        "resource_id": _("Resource id"),
        "changes": _("Changes"),
        "ip_address": _("IP address"),
    }
    list_columns = ["timestamp", "user", "action", "resource_type", "resource_id", "ip_address"]
    show_columns = ["timestamp", "user", "action", "resource_type", "resource_id", "changes", "ip_address"]
    search_columns = ["action", "resource_type", "resource_id", "user", "timestamp"]
    base_order = ("timestamp", "desc")
    formatters_columns = time_formatters("timestamp")
