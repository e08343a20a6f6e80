"""Approval requests: submission and routing policy (design.md §4).

The state machine's decisions (approve, reject, recall) build on this module.
"""

from decimal import Decimal, InvalidOperation

from flask import current_app

from app import events
from app.serialize import column_values
from app.scope import COMPLIANCE, MANAGER
from app.services.errors import Conflict, ValidationFailed
from app.services.records import require_customer_in_scope
from models.approval import ApprovalStatus, ApprovalStep
from models.base import utcnow


def compliance_reasons(request, customer, threshold):
    """Return why this request needs a compliance step (empty when it does not)."""
    reasons = []
    if Decimal(request.amount) >= Decimal(threshold):
        reasons.append("AMOUNT_AT_OR_ABOVE_THRESHOLD")
    if request.product_risk is not None and request.product_risk > customer.risk_tolerance:
        reasons.append("PRODUCT_RISK_ABOVE_TOLERANCE")
    if customer.investment_profile is None:
        reasons.append("NO_INVESTMENT_PROFILE")
    return reasons


def _validate_business_fields(request):
    if not (request.product_name or "").strip():
        raise ValidationFailed("productName is required", field="productName")
    try:
        amount = Decimal(str(request.amount))
    except (InvalidOperation, TypeError, ValueError):
        raise ValidationFailed("amount must be a number", field="amount") from None
    if not amount.is_finite() or amount <= 0:
        raise ValidationFailed("amount must be greater than 0", field="amount")
    if amount != amount.quantize(Decimal("0.01")) or amount >= Decimal("1e16"):
        raise ValidationFailed("amount must have at most 2 decimals and 16 digits", field="amount")
    request.amount = amount
    if request.product_risk is not None and not 1 <= int(request.product_risk) <= 10:
        raise ValidationFailed("productRisk must be between 1 and 10", field="productRisk")


def prepare_request(request, user, creating):
    """Submit a new request (routing its steps) or refuse edits of a submitted one."""
    if not creating:
        raise Conflict("a submitted approval request cannot be edited", field="status")
    submit(request, user)


def submit(request, user):
    """Fill a new request for `user`, route its steps and write APPROVAL_REQUESTED."""
    from app.extensions import db

    _validate_business_fields(request)
    customer = require_customer_in_scope(request.customer_id or getattr(request.customer, "id", None), user)
    request.customer = customer
    request.requester_id = user.id
    request.status = ApprovalStatus.PENDING
    request.requested_at = utcnow()
    reasons = compliance_reasons(request, customer, current_app.config["APPROVAL_COMPLIANCE_THRESHOLD"])
    request.compliance_reasons = reasons or None
    request.steps = [ApprovalStep(sequence=1, required_role=MANAGER)]
    if reasons:
        request.steps.append(ApprovalStep(sequence=2, required_role=COMPLIANCE))
    db.session.add(request)
    db.session.flush()
    events.emit(db.session, "APPROVAL_REQUESTED", "approval", request.id, column_values(request))
    return request
