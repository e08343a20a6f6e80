"""/api/audit: the audit log for Admin, Manager and Compliance (can_read on AuditLog)."""

import sqlalchemy as sa
from flask import Blueprint, jsonify, request

from app.extensions import db
from app.caching import cached_endpoint, model_resources
from app.roles import AUDIT, READ
from app.services.errors import NotFound
from models.audit import AuditAction, AuditLog
from views.api.common import item, page_answer, path_uuid, query_datetime, query_enum, query_int, requires

bp = Blueprint("crm_api_audit", __name__, url_prefix="/audit")


def _filtered(query):
    action = query_enum("action", AuditAction)
    if action:
        query = query.filter(AuditLog.action == action)
    if request.args.get("resourceType"):
        query = query.filter(AuditLog.resource_type == request.args["resourceType"])
    if request.args.get("resourceId"):
        query = query.filter(AuditLog.resource_id == request.args["resourceId"])
    if request.args.get("userId"):
        query = query.filter(AuditLog.user_id == query_int("userId", None))
    start, end = query_datetime("from") or query_datetime("startDate"), query_datetime("to") or query_datetime("endDate")
    if start:
        query = query.filter(AuditLog.timestamp >= start)
    if end:
        query = query.filter(AuditLog.timestamp <= end)
    return query


def _page(query):
    return page_answer(_filtered(query), keyset=(AuditLog.timestamp, AuditLog.id))


@bp.get("")
@requires(READ, AUDIT)
@cached_endpoint(*model_resources(AuditLog))
def list_audit():
    """Audit rows, newest first; ?action=, resourceType=, resourceId=, userId=, from=, to=."""
    return _page(db.session.query(AuditLog))


@bp.get("/stats")
@requires(READ, AUDIT)
@cached_endpoint(*model_resources(AuditLog))
def audit_stats():
    """Counts by action and by resource type (aggregate SQL), within the same filters."""
    base = _filtered(db.session.query(AuditLog)).subquery()
    by_action = db.session.execute(sa.select(base.c.action, sa.func.count()).group_by(base.c.action)).all()
    by_resource = db.session.execute(
        sa.select(base.c.resource_type, sa.func.count()).group_by(base.c.resource_type)
    ).all()
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
    query = db.session.query(AuditLog).filter(
        AuditLog.resource_type == resource_type, AuditLog.resource_id == resource_id
    )
    return _page(query)


@bp.get("/user/<user_id>")
@requires(READ, AUDIT)
def user_history(user_id):
    """What one user did."""
    if not user_id.isdigit() or len(user_id) > 18:
        raise NotFound("User not found")
    return _page(db.session.query(AuditLog).filter(AuditLog.user_id == int(user_id)))


@bp.get("/<audit_id>")
@requires(READ, AUDIT)
def get_audit(audit_id):
    """One audit row."""
    row = db.session.get(AuditLog, path_uuid(audit_id, "AuditLog"))
    if row is None:
        raise NotFound("AuditLog not found")
    return item(row)
