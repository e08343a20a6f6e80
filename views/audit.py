"""The audit log: read-only, for Admin, Manager and Compliance."""

from flask_babel import lazy_gettext as _
from markupsafe import Markup

from app.roles import AUDIT
from models.audit import AuditLog
from views.datamodels import CrmInterface
from views.base import ScopedModelView, time_formatters
from views.home import AUDIT_ACTION_LABELS, RESOURCE_LABELS

# lists: the colour an audit action's badge carries (failed logins and rejections stand out).
ACTION_COLOURS = {"LOGIN_FAILED": "danger", "REJECT": "danger", "DELETE": "warning", "APPROVE": "success", "CREATE": "info"}


def action_badge(code):
    """An audit action as its label in a coloured badge (the code itself when it has no label)."""
    if not code:
        return ""
    code = str(code)
    return Markup('<span class="label label-{} crm-badge crm-badge-audit-{}">{}</span>').format(
        ACTION_COLOURS.get(code, "default"), code, AUDIT_ACTION_LABELS.get(code, code)
    )


def resource_label(code):
    """A resource type (customer, task…) as its label."""
    return str(RESOURCE_LABELS.get(code, code or ""))


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
    formatters_columns = {**time_formatters("timestamp"), "action": action_badge, "resource_type": resource_label}
