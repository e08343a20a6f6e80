"""Approval request screens and generated API."""

from flask_babel import lazy_gettext as _
from marshmallow import validate

from app.roles import APPROVAL
from app.services.approvals import prepare_request
from models.approval import ApprovalRequest
from views.datamodels import CrmInterface
from views.base import ScopedModelApi, ScopedModelView, time_formatters

ADDABLE = ["customer", "product_name", "product_risk", "amount", "comment"]
LABELS = {
    "customer": _("Customer"),
    "requester": _("Requested by"),
    "product_name": _("Product"),
    "product_risk": _("Product risk (1-10)"),
    "amount": _("Amount (JPY)"),
    "comment": _("Comment"),
    "status": _("Status"),
    "approver": _("Last decided by"),
    "requested_at": _("Requested"),
    "processed_at": _("Processed"),
    "compliance_reasons": _("Compliance review because"),
    "steps": _("History"),
}


class ApprovalRequestView(ScopedModelView):
    """Approval requests: every request in the caller's scope."""

    datamodel = CrmInterface(ApprovalRequest)
    class_permission_name = APPROVAL
    prepare = staticmethod(prepare_request)
    list_title = _("Approval Requests")
    label_columns = LABELS
    list_columns = ["requested_at", "customer", "product_name", "amount", "status", "requester"]
    show_columns = ADDABLE + ["status", "requester", "approver", "requested_at", "processed_at", "compliance_reasons", "steps"]
    add_columns = ADDABLE
    edit_columns = ADDABLE
    search_columns = ["status", "customer", "product_name", "requester", "amount", "requested_at"]
    order_columns = ["requested_at", "amount", "status", "product_name"]
    base_order = ("requested_at", "desc")
    formatters_columns = time_formatters("requested_at", "processed_at")


class ApprovalRequestApi(ScopedModelApi):
    """Approval requests under /api/v1/approval."""

    resource_name = "approval"
    datamodel = CrmInterface(ApprovalRequest)
    class_permission_name = APPROVAL
    prepare = staticmethod(prepare_request)
    list_columns = [
        "id",
        "requester_id",
        "customer_id",
        "product_name",
        "product_risk",
        "amount",
        "comment",
        "status",
        "approver_id",
        "requested_at",
        "processed_at",
        "compliance_reasons",
    ]
    show_columns = list_columns
    add_columns = ADDABLE
    edit_columns = ADDABLE
    search_columns = ["status", "customer", "product_name", "requester"]
    order_columns = ["requested_at", "amount", "status", "created_at"]
    validators_columns = {
        "product_risk": validate.Range(min=1, max=10),
        "amount": validate.Range(min=0, min_inclusive=False),
        "product_name": validate.Length(min=1, max=200),
    }
