"""/api/approvals: submit, list, read, decide (approve / reject) and recall.

Every transition is the approval service's (app/services/approvals.py): this module only
parses input, checks the permission matrix and scope, and shapes the answer.
"""

import hashlib

from flask import Blueprint, Response, jsonify, request

from app.extensions import db
from app.caching import cached_endpoint
from app.roles import ADD, APPROVAL, DECIDE, READ, RECALL
from app.listquery import ListQuery
from app.serialize import column_values
from app.services import approvals as service
from app.services import evidence
from app.services.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.services.records import get_in_scope
from models.approval import ApprovalRequest, ApprovalStatus
from models.evidence import EvidencePack
from views.api import nested
from views.api.common import (
    ApiError,
    Field,
    apply,
    can,
    current_user,
    item,
    json_body,
    page_answer,
    parse_fields,
    parse_enum,
    parse_uuid,
    path_uuid,
    query_enum,
    requires,
)

bp = Blueprint("crm_api_approvals", __name__, url_prefix="/approvals")

FIELDS = {
    "customerId": Field("customer_id", "uuid", required=True),
    # productId picks a product of the master; productName / productRisk (the seed's contract)
    # match one or make one (app/services/products.py).
    "productId": Field("product_id", "uuid"),
    "productName": Field("product_name", max_len=200),
    "productRisk": Field("product_risk", "int", minimum=1, maximum=10),
    "amount": Field("amount", "decimal", required=True),
    "comment": Field("comment", max_len=5000),
}


def answer(request_row, status=200):
    """One request as the approval service spells it (steps, current step), its customer, requester and approver nested."""
    return item(service.payload(request_row), status, model=ApprovalRequest)


def load(request_id):
    """The request `request_id` if the caller may see it (else 404)."""
    return get_in_scope(ApprovalRequest, path_uuid(request_id, "ApprovalRequest"), current_user())


def _transition(name, request_id, comment):
    """Call the approval service's `name` (approve, reject, recall) and commit; the service checks the comment."""
    fn = getattr(service, name, None)
    if fn is None:
        raise ApiError(501, f"{name} is not available in this build")
    row = load(request_id)
    fn(row.id, current_user(), comment)
    db.session.commit()
    db.session.expire_all()
    return answer(load(request_id))


@bp.get("")
@requires(READ, APPROVAL)
@cached_endpoint(*nested.resources(ApprovalRequest))
def list_approvals():
    """Requests in scope; ?status=, customerId=."""
    lq = ListQuery(ApprovalRequest, current_user())
    status = query_enum("status", ApprovalStatus)
    if status:
        lq.where("status", lambda p: ApprovalRequest.status == p, status)
    if request.args.get("customerId"):
        lq.where("customerId", lambda p: ApprovalRequest.customer_id == p, parse_uuid(request.args["customerId"], "customerId"))
    # Model objects, not plain rows: the raw-cursor path has no result processor for NUMERIC amounts.
    return page_answer(lq, keyset=(ApprovalRequest.requested_at, ApprovalRequest.id), serializer=column_values)


@bp.get("/pending")
@requires(READ, APPROVAL)
@cached_endpoint(*nested.resources(ApprovalRequest), "approval_steps", by_roles=True, per_user=True)
def pending_approvals():
    """The inbox: requests whose current step waits for one of the caller's roles (never their own), oldest first."""
    # The approval service's inbox rule, as the Pending My Decision screen uses it.
    lq = service.pending_filter(ListQuery(ApprovalRequest, current_user()), current_user())
    if request.args.get("customerId"):
        lq.where("customerId", lambda p: ApprovalRequest.customer_id == p, parse_uuid(request.args["customerId"], "customerId"))
    return page_answer(lq, keyset=(ApprovalRequest.requested_at, ApprovalRequest.id), descending=False, serializer=column_values)


@bp.post("")
@requires(ADD, APPROVAL)
def create_approval():
    """Submit a request for a product sale to a customer in scope (routed by the policy)."""
    row = apply(ApprovalRequest(), parse_fields(json_body(), FIELDS))
    service.submit(row, current_user())
    db.session.commit()
    return answer(row, 201)


@bp.get("/<request_id>")
@requires(READ, APPROVAL)
def get_approval(request_id):
    """One request with its step history."""
    return answer(load(request_id))


@bp.put("/<request_id>")
@bp.patch("/<request_id>")
@requires(DECIDE, APPROVAL)
def decide(request_id):
    """The seed's decision call: {status: APPROVED or REJECTED, comment}."""
    body = json_body()
    raw = body.get("status")
    if raw is None:
        raise ValidationFailed("status is required (APPROVED or REJECTED)", field="status")
    status = parse_enum(raw, ApprovalStatus, "status")
    if status == ApprovalStatus.APPROVED:
        return _transition("approve", request_id, body.get("comment"))
    if status == ApprovalStatus.REJECTED:
        return _transition("reject", request_id, body.get("comment"))
    raise ValidationFailed("status must be APPROVED or REJECTED", field="status")


@bp.post("/<request_id>/approve")
@bp.put("/<request_id>/approve")
@requires(DECIDE, APPROVAL)
def approve(request_id):
    """Approve the current step (Manager or Compliance, never one's own request)."""
    return _transition("approve", request_id, json_body().get("comment"))


@bp.post("/<request_id>/reject")
@bp.put("/<request_id>/reject")
@requires(DECIDE, APPROVAL)
def reject(request_id):
    """Reject the request at its current step (comment required)."""
    return _transition("reject", request_id, json_body().get("comment"))


@bp.post("/<request_id>/recall")
@bp.put("/<request_id>/recall")
@requires(RECALL, APPROVAL)
def recall(request_id):
    """The requester takes back a pending request."""
    return _transition("recall", request_id, json_body().get("comment"))


@bp.delete("/<request_id>")
@requires(READ, APPROVAL)
def delete_approval(request_id):
    """DELETE keeps the history: it recalls a pending request (requires can_recall)."""
    if not can(RECALL, APPROVAL):
        raise Forbidden("your role may not recall approval requests")
    return _transition("recall", request_id, None)


# --- evidence packs (app/services/evidence.py): Manager, Compliance, Admin ----------------


def _pack_answer(pack):
    data = column_values(pack)
    for key in ("jsonKey", "pdfKey"):
        data.pop(key, None)  # where the storage keeps it is not the caller's business
    return data


def _evidence_pack(request_id, pack_id):
    row = evidence.readable_request(db.session, path_uuid(request_id, "ApprovalRequest"), current_user())
    pack = db.session.get(EvidencePack, str(path_uuid(pack_id, "EvidencePack")))
    if pack is None or pack.approval_request_id != row.id:
        raise NotFound("EvidencePack not found")
    return pack


@bp.get("/<request_id>/evidence")
@requires(READ, APPROVAL)
def list_evidence(request_id):
    """The request's evidence packs, newest first."""
    row = evidence.readable_request(db.session, path_uuid(request_id, "ApprovalRequest"), current_user())
    packs = evidence.packs_of(db.session, row.id)
    return jsonify(success=True, data=[_pack_answer(p) for p in packs])


@bp.post("/<request_id>/evidence")
@requires(READ, APPROVAL)
def build_evidence(request_id):
    """Build a new evidence pack of the request now."""
    row = evidence.readable_request(db.session, path_uuid(request_id, "ApprovalRequest"), current_user())
    pack = evidence.build(db.session, row, current_user(), trigger="manual")
    db.session.commit()
    return jsonify(success=True, data=_pack_answer(pack), id=pack.id), 201


@bp.get("/<request_id>/evidence/<pack_id>/verify")
@requires(READ, APPROVAL)
def verify_evidence(request_id, pack_id):
    """Whether the stored JSON and PDF still have the SHA-256 recorded when they were built."""
    pack = _evidence_pack(request_id, pack_id)
    checked = evidence.verify(pack)
    return jsonify(success=True, data={**checked, "intact": all(checked.values()), "jsonSha256": pack.json_sha256})


@bp.get("/<request_id>/evidence/<pack_id>/<kind>")
@requires(READ, APPROVAL)
def evidence_file(request_id, pack_id, kind):
    """One pack's file, `json` or `pdf`; 409 when it no longer matches its recorded SHA-256."""
    if kind not in ("json", "pdf"):
        raise NotFound("kind must be json or pdf")
    pack = _evidence_pack(request_id, pack_id)
    data = evidence.read(pack, kind)
    expected = pack.json_sha256 if kind == "json" else pack.pdf_sha256
    if hashlib.sha256(data).hexdigest() != expected:
        raise Conflict(f"the stored {kind} no longer matches its SHA-256", field=kind)
    mimetype = "application/json" if kind == "json" else "application/pdf"
    return Response(data, mimetype=mimetype, headers={"X-Content-SHA256": expected})
