"""/api/audit: the audit log for Admin, Manager and Compliance (can_read on AuditLog)."""

import sqlalchemy as sa
from flask import Blueprint, jsonify, request

from app import reads
from app.caching import cached_endpoint
from app.extensions import db
from app.listquery import ListQuery
from app.roles import AUDIT, READ
from app.services.errors import NotFound
from models.audit import AuditAction, AuditLog
from views.api import nested
from views.api.common import current_user, item, page_answer, path_uuid, query_datetime, query_enum, query_int, requires

bp = Blueprint("crm_api_audit", __name__, url_prefix="/audit")


def _filtered(lq):
    """`lq` (a ListQuery over AuditLog) with the query string's filters."""
    action = query_enum("action", AuditAction)
    if action:
        lq.where("action", lambda p: AuditLog.action == p, action)
    if request.args.get("resourceType"):
        lq.where("resourceType", lambda p: AuditLog.resource_type == p, request.args["resourceType"])
    if request.args.get("resourceId"):
        lq.where("resourceId", lambda p: AuditLog.resource_id == p, request.args["resourceId"])
    if request.args.get("userId"):
        lq.where("userId", lambda p: AuditLog.user_id == p, query_int("userId", None))
    start, end = query_datetime("from") or query_datetime("startDate"), query_datetime("to") or query_datetime("endDate")
    if start:
        lq.where("from", lambda p: AuditLog.timestamp >= p, start)
    if end:
        lq.where("to", lambda p: AuditLog.timestamp <= p, end)
    return lq


def _audit_rows():
    # The audit log is for roles that see all of it (the permission decides who), unscoped.
    return ListQuery(AuditLog, current_user(), scoped=False)


def _page(lq):
    return page_answer(_filtered(lq), keyset=(AuditLog.timestamp, AuditLog.id))


@bp.get("")
@requires(READ, AUDIT)
@cached_endpoint(*nested.resources(AuditLog))
def list_audit():
    """Audit rows, newest first; ?action=, resourceType=, resourceId=, userId=, from=, to=."""
    return _page(_audit_rows())


@bp.get("/stats")
@requires(READ, AUDIT)
@cached_endpoint(*nested.resources(AuditLog))
def audit_stats():
    """Counts by action and by resource type (aggregate SQL), within the same filters."""
    lq = _filtered(_audit_rows())
    base = lq.statement().subquery()
    by_action = reads.rows(sa.select(base.c.action, sa.func.count()).group_by(base.c.action), lq.params)
    by_resource = reads.rows(sa.select(base.c.resource_type, sa.func.count()).group_by(base.c.resource_type), lq.params)
    total = sum(n for _, n in by_action)
    data = {
        "total": total,
        "byAction": {str(getattr(a, "value", a)): n for a, n in by_action},
        "byResourceType": {r: n for r, n in by_resource},
    }
    return jsonify(success=True, data=data)


@bp.get("/entity/<resource_type>/<resource_id>")
@requires(READ, AUDIT)
def entity_history(resource_type, resource_id):
    """The history of one record."""
    lq = _audit_rows().where("path_resourceType", lambda p: AuditLog.resource_type == p, resource_type)
    return _page(lq.where("path_resourceId", lambda p: AuditLog.resource_id == p, resource_id))


@bp.get("/user/<user_id>")
@requires(READ, AUDIT)
def user_history(user_id):
    """What one user did."""
    if not user_id.isdigit() or len(user_id) > 18:
        raise NotFound("User not found")
    return _page(_audit_rows().where("path_userId", lambda p: AuditLog.user_id == p, int(user_id)))


@bp.get("/<audit_id>")
@requires(READ, AUDIT)
def get_audit(audit_id):
    """One audit row."""
    row = db.session.get(AuditLog, path_uuid(audit_id, "AuditLog"))
    if row is None:
        raise NotFound("AuditLog not found")
    return item(row)
