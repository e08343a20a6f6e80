"""Approval request screens (request list and page, decision inbox, my requests) and API.

Every decision goes through app.services.approvals; these views only collect input,
call the service and show its answer (a flash on screens, 4xx JSON on the API).
"""

import hashlib
import io
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import selectinload
from flask import abort, flash, g, redirect, request, send_file, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.api import safe
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, permission_name, protect
from flask_babel import lazy_gettext as _
from marshmallow import validate

from app.extensions import db
from app.roles import API_METHOD_PERMISSIONS, APPROVAL, VIEW_METHOD_PERMISSIONS
from app.scope import role_names, sees_all
from app.services import approvals as service
from app.services import evidence
from app.services.errors import DomainError, ValidationFailed
from app.services.records import related_id
from models.approval import ApprovalRequest, ApprovalStatus
from models.evidence import EvidencePack
from views.datamodels import CrmInterface
from views import display
from views.base import ScopedModelApi, ScopedModelView, time_formatters
from views.display import local_time
from views.lists import InFilter, link_button

ADDABLE = ["customer", "product", "product_name", "product_risk", "amount", "comment"]
LABELS = {
    "customer": _("Customer"),
    "requester": _("Requested by"),
    "product": _("Product (master)"),
    "product_name": _("Product"),
    "executable_from": _("Executable from"),
    "suitability_snapshot": _("Suitability snapshot"),
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
STATUS_BADGES = {
    ApprovalStatus.PENDING: "warning",
    ApprovalStatus.APPROVED: "success",
    ApprovalStatus.REJECTED: "danger",
    ApprovalStatus.RECALLED: "default",
}
STATUS_LABELS = {
    ApprovalStatus.PENDING: _("Pending"),
    ApprovalStatus.APPROVED: _("Approved"),
    ApprovalStatus.REJECTED: _("Rejected"),
    ApprovalStatus.RECALLED: _("Recalled"),
}
REASON_LABELS = {
    "AMOUNT_AT_OR_ABOVE_THRESHOLD": _("Amount at or above the compliance threshold"),
    "PRODUCT_RISK_ABOVE_TOLERANCE": _("Product risk above the customer's risk tolerance"),
    "NO_INVESTMENT_PROFILE": _("Customer has no investment profile"),
    "SUITABILITY_CHANGED_RECENTLY": _("Sales changed the customer's suitability information recently"),
    "EXPERIENCE_BELOW_MINIMUM": _("Customer's experience below the product's minimum"),
    "PURPOSE_MISMATCH": _("Product does not suit the customer's investment purpose"),
    "CARD_STALE": _("Customer card is stale (review overdue or items missing)"),
    "NO_CUSTOMER_CARD": _("Customer has no customer card"),
}
KIND_LABELS = {"SUPERVISOR_PREAPPROVAL": _("Supervisor pre-approval (elderly customer)")}
DECISION_LABELS = {"APPROVED": _("Approved"), "REJECTED": _("Rejected")}
ROLE_LABELS = {"Manager": _("Manager"), "Compliance": _("Compliance")}


def yen(value):
    """Format a JPY amount: ¥1,234,567 (decimals only when there are any)."""
    if value is None:
        return ""
    return f"¥{value:,.0f}" if value == int(value) else f"¥{value:,.2f}"


def template_helpers():
    """Names every approval template uses (badges, labels, time formatting)."""
    return {
        "status_badges": STATUS_BADGES,
        "status_labels": STATUS_LABELS,
        "reason_labels": REASON_LABELS,
        "decision_labels": DECISION_LABELS,
        "role_labels": ROLE_LABELS,
        "kind_labels": KIND_LABELS,
        "local_time": local_time,
        "current_step": service.current_step,
        "decidable_step": service.decidable_step,
        "yen": yen,
        "profile_labels": display.enum_labels("profile"),
    }


def _safe_next(default):
    """Return the form's `next` when it is a local path, else `default` (no open redirects)."""
    target = request.form.get("next") or ""
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and not parts.scheme and not parts.netloc:
        return target
    return default


def _flash_error(item_id, exc):
    flash(f"{exc.error} ({exc.status}): {exc.message} [{item_id}]", "danger")


def _reasons_formatter(reasons):
    return ", ".join(str(REASON_LABELS.get(r, r)) for r in (reasons or [])) or "-"


class ApprovalRequestView(ScopedModelView):
    """Approval requests in the caller's scope; the page shows the full step history."""

    datamodel = CrmInterface(ApprovalRequest)
    class_permission_name = APPROVAL
    method_permission_name = {**VIEW_METHOD_PERMISSIONS, "decide": "decide", "recall": "recall",
                              "build_evidence": "read", "evidence_file": "read"}
    prepare = staticmethod(service.prepare_request)
    refuse_delete = staticmethod(service.refuse_delete)
    list_title = _("Approval Requests")
    show_title = _("Approval Request")
    add_title = _("New approval request")
    label_columns = LABELS
    list_columns = ["requested_at", "customer", "product_name", "amount", "status", "requester"]
    show_columns = ADDABLE + ["status", "requester", "approver", "requested_at", "processed_at", "executable_from", "compliance_reasons"]
    add_columns = ADDABLE
    edit_columns = ADDABLE
    search_columns = ["status", "customer", "product_name", "requester", "amount", "requested_at"]
    order_columns = ["requested_at", "amount", "status", "product_name"]
    base_order = ("requested_at", "desc")
    # Opened from the menu: what is still pending, the oldest first (the one waiting longest).
    default_filters = [["status", InFilter, (ApprovalStatus.PENDING,)]]
    default_note = _("Pending requests, oldest first")
    default_order = ("requested_at", "asc")
    formatters_columns = {
        **time_formatters("requested_at", "processed_at"),
        "compliance_reasons": _reasons_formatter,
        "amount": display.yen,
        "comment": lambda v: v or "",
        "status": display.badge_formatter("approval_status"),
        "product_risk": display.risk_badge,
        "approver": display.text_or_dash,  # nobody until decided: a dash, not "None"
        "executable_from": display.text_or_dash,
        "product": display.text_or_dash,
    }
    show_template = "approvals/show.html"

    def quick_actions(self, pk, item):
        """Open the request's page (where it is decided or recalled)."""
        return link_button("ApprovalRequestView.show", _("Open"), "fa-folder-open-o", "btn-primary", pk=pk)

    def pre_update(self, item):
        """Refuse edits (locked or final) and drop the form's changes from the session."""
        try:
            super().pre_update(item)
        except DomainError:
            db.session.rollback()
            raise

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        """The request page: details, suitability, step history and the caller's actions."""
        widgets = self._show(pk)
        item = self.datamodel.get(pk, self._base_filters)
        return self.render_template(
            self.show_template,
            pk=pk,
            title=self.show_title,
            widgets=widgets,
            related_views=self._related_views,
            item=item,
            user_roles=role_names(g.user),
            evidence_packs=evidence.packs_of(db.session, item.id) if item is not None and sees_all(g.user) else None,
            **template_helpers(),
        )

    @expose("/evidence/<pk>", methods=["POST"])
    @has_access
    @permission_name("build_evidence")
    def build_evidence(self, pk):
        """Build a new evidence pack of the request now (Manager, Compliance, Admin; CSRF POST)."""
        try:
            item = evidence.readable_request(db.session, pk, g.user)
            pack = evidence.build(db.session, item, g.user, trigger="manual")
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            abort(exc.status)
        flash(str(_("Evidence pack built: SHA-256 %(sha)s", sha=pack.json_sha256)), "success")
        return redirect(url_for("ApprovalRequestView.show", pk=pk))

    @expose("/evidence/<pk>/<pack_id>.<kind>", methods=["GET"])
    @has_access
    @permission_name("evidence_file")
    def evidence_file(self, pk, pack_id, kind):
        """Download one pack's JSON or PDF (Manager, Compliance, Admin), checked against its recorded SHA-256."""
        if kind not in ("json", "pdf"):
            abort(404)
        try:
            evidence.readable_request(db.session, pk, g.user)
        except DomainError:
            abort(404)
        pack = db.session.get(EvidencePack, pack_id)
        if pack is None or pack.approval_request_id != pk:
            abort(404)
        data = evidence.read(pack, kind)
        expected = pack.json_sha256 if kind == "json" else pack.pdf_sha256
        if hashlib.sha256(data).hexdigest() != expected:
            abort(409, description=f"{kind}: the stored file no longer matches its SHA-256")
        mimetype = "application/json" if kind == "json" else "application/pdf"
        return send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True,
                         download_name=f"evidence-{pk}-{pack.created_at:%Y%m%d%H%M%S}.{kind}")

    @expose("/decide", methods=["POST"])
    @has_access
    @permission_name("decide")
    def decide(self):
        """Approve or reject one or many requests (form: ids, decision, comment, next)."""
        ids = request.form.getlist("ids")
        decision = request.form.get("decision")
        comment = request.form.get("comment") or None
        back = _safe_next(url_for("PendingDecisionView.inbox"))
        if decision not in ("approve", "reject"):
            flash(str(_("Choose Approve or Reject.")), "danger")
            return redirect(back)
        if not ids:
            flash(str(_("Select at least one request.")), "warning")
            return redirect(back)
        fn = service.approve if decision == "approve" else service.reject
        done = 0
        for item_id in ids:
            try:
                fn(item_id, g.user, comment)
                done += 1
            except DomainError as exc:
                _flash_error(item_id, exc)
        if done:
            msg = _("Approved %(n)d request(s).", n=done) if decision == "approve" else _("Rejected %(n)d request(s).", n=done)
            flash(str(msg), "success")
        return redirect(back)

    @expose("/recall/<pk>", methods=["POST"])
    @has_access
    @permission_name("recall")
    def recall(self, pk):
        """Recall one of the caller's pending requests (form: comment, next)."""
        back = _safe_next(url_for("MyRequestsView.mine"))
        try:
            service.recall(pk, g.user, request.form.get("comment") or None)
            flash(str(_("Request recalled.")), "success")
        except DomainError as exc:
            _flash_error(pk, exc)
        return redirect(back)


class _ApprovalPage(BaseView):
    """A plain, paginated page over approval requests (read permission on ApprovalRequest)."""

    class_permission_name = APPROVAL
    method_permission_name = {"inbox": "read", "mine": "read"}
    default_view = None
    page_size = 50

    def _page(self, stmt, where):
        """Run `stmt` for the `?page=` asked (1-based); return (rows, paging dict)."""
        total = db.session.execute(sa.select(sa.func.count()).select_from(ApprovalRequest).where(where)).scalar()
        pages = max(1, -(-total // self.page_size))
        page = request.args.get("page", "1")
        page = min(max(int(page), 1), pages) if page.isdigit() else 1
        stmt = stmt.options(selectinload(ApprovalRequest.steps)).offset((page - 1) * self.page_size).limit(self.page_size)
        rows = db.session.execute(stmt).unique().scalars().all()
        return rows, {"page": page, "pages": pages, "total": total}

    def _render(self, template, rows, paging, title):
        return self.render_template(
            template, rows=rows, paging=paging, title=title, user_roles=role_names(g.user), **template_helpers()
        )


class PendingDecisionView(_ApprovalPage):
    """承認待ち: requests whose current step needs the caller's role, not their own."""

    route_base = "/approvals/pending"
    default_view = "inbox"

    @expose("/")
    @has_access
    def inbox(self):
        """List what waits for the caller's decision (newest first), with single and bulk approve/reject."""
        stmt = service.pending_for(g.user).order_by(None).order_by(ApprovalRequest.requested_at.desc())
        rows, paging = self._page(stmt, service.pending_clause(g.user))
        return self._render("approvals/inbox.html", rows, paging, _("Pending My Decision"))


class MyRequestsView(_ApprovalPage):
    """The caller's own requests with status badges and Recall while pending."""

    route_base = "/approvals/mine"
    default_view = "mine"

    @expose("/")
    @has_access
    def mine(self):
        """List the caller's requests, newest first."""
        where = ApprovalRequest.requester_id == g.user.id
        stmt = sa.select(ApprovalRequest).where(where).order_by(ApprovalRequest.requested_at.desc())
        rows, paging = self._page(stmt, where)
        return self._render("approvals/mine.html", rows, paging, _("My Requests"))


DECISION_DOC = """
        ---
        post:
          summary: {summary}
          description: {description}
          parameters:
          - in: path
            name: pk
            schema:
              type: string
            description: the approval request id
          requestBody:
            required: {body_required}
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    comment:
                      type: string
                      description: {comment_doc}
          responses:
            200:
              description: the request after the transition, with its step history
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      id:
                        type: string
                      result:
                        type: object
            400:
              description: bad input (e.g. a missing comment on reject); `message` names the field
            401:
              $ref: '#/components/responses/401'
            403:
              description: the caller may not take this action (own request, wrong role, not the requester)
            404:
              description: no such request in the caller's scope
            409:
              description: already decided, or the request is no longer PENDING
"""


def _decision_doc(summary, description, comment_doc, body_required="false"):
    return DECISION_DOC.format(summary=summary, description=description, comment_doc=comment_doc, body_required=body_required)


class ApprovalRequestApi(ScopedModelApi):
    """Approval requests under /api/v1/approval, with approve / reject / recall actions."""

    resource_name = "approval"
    datamodel = CrmInterface(ApprovalRequest)
    class_permission_name = APPROVAL
    method_permission_name = {**API_METHOD_PERMISSIONS, "approve": "decide", "reject": "decide", "recall": "recall"}
    prepare = staticmethod(service.prepare_request)
    refuse_delete = staticmethod(service.refuse_delete)
    # A request naming its product by id gets its name from the product master.
    optional_add_columns = ("product_name",)
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
        "product_id",
        "executable_from",
        "suitability_snapshot",
    ]
    show_columns = list_columns
    add_columns = ADDABLE
    edit_columns = ADDABLE

    def pre_add(self, item):
        """Name the product the /api/v1 way when a request has neither `product` nor `product_name`."""
        if not (item.product_name or "").strip() and not related_id(item, "product_id", "product"):
            raise ValidationFailed("product_name is required (or product)", field="product_name")
        super().pre_add(item)
    search_columns = ["status", "customer", "product_name", "requester"]
    order_columns = ["requested_at", "amount", "status", "created_at"]
    validators_columns = {
        "product_risk": validate.Range(min=1, max=10),
        "amount": validate.Range(min=0, min_inclusive=False),
        "product_name": validate.Length(min=1, max=200),
    }

    def _transition(self, fn, pk):
        """Run one service transition with the body's comment; DomainError → 4xx."""
        try:
            body = request.get_json(silent=True) if request.get_data() else {}
            if body is None or not isinstance(body, dict):
                raise ValidationFailed("the body must be a JSON object like {\"comment\": \"...\"}")
            item = fn(pk, g.user, body.get("comment"))
        except DomainError as exc:
            db.session.rollback()
            return self.response(exc.status, message=exc.message, error=exc.error, details=exc.details)
        return self.response(200, id=item.id, result=service.payload(item))

    @expose("/<pk>/approve", methods=["POST"])
    @protect()
    @safe
    @permission_name("decide")
    def approve(self, pk):
        return self._transition(service.approve, pk)

    approve.__doc__ = "Approve the current step of a request" + _decision_doc(
        "Approve the current step",
        "The caller's role must be the current step's required role; nobody decides their own request. "
        "The last approval makes the request APPROVED.",
        "optional note kept in the history",
    )

    @expose("/<pk>/reject", methods=["POST"])
    @protect()
    @safe
    @permission_name("decide")
    def reject(self, pk):
        return self._transition(service.reject, pk)

    reject.__doc__ = "Reject the current step of a request" + _decision_doc(
        "Reject the current step (ends the request)",
        "Same rules as approve; a comment is required. The request becomes REJECTED.",
        "required - why the request is rejected",
        "true",
    )

    @expose("/<pk>/recall", methods=["POST"])
    @protect()
    @safe
    @permission_name("recall")
    def recall(self, pk):
        return self._transition(service.recall, pk)

    recall.__doc__ = "Recall a pending request" + _decision_doc(
        "Recall (withdraw) a pending request",
        "Only the requester, only while PENDING. The request becomes RECALLED.",
        "optional reason",
    )
