"""/api/reports: dashboards computed with aggregate SQL, and streamed CSV exports.

Every figure is scoped by the one scope rule (a Sales user gets their own figures); no
report loads rows into Python, and exports stream rows with a server-side cursor. The
dashboard reads trigger-maintained counters on PostgreSQL (app/services/dashboard.py).
"""

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, stream_with_context
from flask_appbuilder.security.sqla.models import User
from werkzeug.exceptions import MethodNotAllowed

from app import reads
from app.exports import BOM, csv_line
from app.extensions import db
from app.caching import cached_endpoint
from app.roles import APPROVAL, CUSTOMER, MEETING, READ, TASK
from app.scope import scope_clause
from app.serialize import json_value, to_camel
from app.services.dashboard import dashboard_figures, rate
from app.services.errors import Forbidden, NotFound, ValidationFailed
from models.approval import ApprovalRequest, ApprovalStatus
from models.base import utcnow
from models.customer import Customer
from models.meeting import Meeting
from models.task import Task, TaskStatus
from views.api.common import authenticated, can, current_user, query_int, requires

bp = Blueprint("crm_api_reports", __name__, url_prefix="/reports")

EXPORT_BATCH = 500
# Reports read these tables (and user names); their figures also move with the clock.
REPORT_TABLES = ("customers", "meetings", "tasks", "approval_requests", "ab_user")
REPORT_TIMEOUT = 60
# Dashboard sections and the permission each needs.
DASHBOARD_SECTIONS = (("customers", CUSTOMER), ("meetings", MEETING), ("tasks", TASK), ("approvals", APPROVAL))


@bp.get("/dashboard")
@authenticated
@cached_endpoint(*REPORT_TABLES, timeout=REPORT_TIMEOUT, by_roles=True)
def dashboard():
    """Customers, meetings, tasks (completion, overdue) and approvals (approval rate) in scope."""
    sections = [name for name, resource in DASHBOARD_SECTIONS if can(READ, resource)]
    return jsonify(success=True, data=dashboard_figures(current_user(), sections))


def amount_number(value):
    """A yen amount as a JSON number: an integer when whole (JPY), else a float of its two decimals."""
    value = Decimal(value or 0)
    return int(value) if value == value.to_integral_value() else float(value)


def _per_rep(model, owner_column, *figures):
    """{rep id: (figures...)} grouped by `owner_column` within the caller's scope."""
    column = getattr(model, owner_column)
    stmt = (
        sa.select(column, *figures)
        .select_from(model)
        .where(scope_clause(model, current_user()), column.is_not(None))
        .group_by(column)
    )
    return {row[0]: row[1:] for row in reads.rows(stmt)}


@bp.get("/sales-metrics")
@requires(READ, CUSTOMER)
@cached_endpoint(*REPORT_TABLES, timeout=REPORT_TIMEOUT, by_roles=True)
def sales_metrics():
    """Per rep: customers, meetings, tasks (completed, rate) and approvals (approved, amount)."""
    customers = _per_rep(Customer, "assigned_sales_id", sa.func.count())
    meetings = _per_rep(Meeting, "sales_id", sa.func.count())
    tasks = _per_rep(Task, "user_id", sa.func.count(), sa.func.count().filter(Task.status == TaskStatus.COMPLETED))
    approvals = _per_rep(
        ApprovalRequest,
        "requester_id",
        sa.func.count(),
        sa.func.count().filter(ApprovalRequest.status == ApprovalStatus.APPROVED),
        sa.func.coalesce(sa.func.sum(ApprovalRequest.amount).filter(ApprovalRequest.status == ApprovalStatus.APPROVED), 0),
    )
    rep_ids = set(customers) | set(meetings) | set(tasks) | set(approvals)
    names = {}
    if rep_ids:
        names = {
            uid: (first, last, email)
            for uid, first, last, email in reads.rows(
                sa.select(User.id, User.first_name, User.last_name, User.email).where(User.id.in_(rep_ids))
            )
        }
    data = []
    for uid in sorted(rep_ids):
        first, last, email = names.get(uid, ("", "", None))
        name = " ".join(p for p in (first, last) if p and p != "-")
        customer_count = customers.get(uid, (0,))[0]
        meeting_count = meetings.get(uid, (0,))[0]
        task_total, task_done = tasks.get(uid, (0, 0))
        ap_total, ap_done, ap_amount = approvals.get(uid, (0, 0, 0))
        data.append(
            {
                "salesId": str(uid),
                # The seed's spellings (salesName, salesEmail, *Count) beside ours; every figure a JSON number.
                "salesName": name,
                "salesEmail": email,
                "name": name,
                "email": email,
                "customers": customer_count,
                "customerCount": customer_count,
                "meetings": meeting_count,
                "meetingCount": meeting_count,
                "tasks": task_total,
                "taskCount": task_total,
                "tasksCompleted": task_done,
                "taskCompletionRate": rate(task_done, task_total),
                "approvals": ap_total,
                "approvalCount": ap_total,
                "approvalsApproved": ap_done,
                "approvedAmount": amount_number(ap_amount),
            }
        )
    return jsonify(success=True, data=data)


def _day(column):
    """The calendar day of a timestamp in the display time zone (PostgreSQL), else UTC."""
    if db.engine.dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone(current_app.config["DISPLAY_TIMEZONE"], column))
    return sa.func.date(column)


@bp.get("/task-trends")
@requires(READ, TASK)
@cached_endpoint(*REPORT_TABLES, timeout=REPORT_TIMEOUT, by_roles=True)
def task_trends():
    """Tasks created and completed per day over ?days= (default 30, at most 366)."""
    days = query_int("days", 30, minimum=1, maximum=366)
    since = utcnow() - timedelta(days=days)
    scope = scope_clause(Task, current_user())
    created = reads.rows(
        sa.select(_day(Task.created_at).label("d"), sa.func.count()).where(scope, Task.created_at >= since).group_by("d")
    )
    completed = reads.rows(
        sa.select(_day(Task.completed_at).label("d"), sa.func.count()).where(scope, Task.completed_at >= since).group_by("d")
    )
    by_day = {}
    for day, n in created:
        by_day.setdefault(str(day), {"date": str(day), "created": 0, "completed": 0})["created"] = n
    for day, n in completed:
        by_day.setdefault(str(day), {"date": str(day), "created": 0, "completed": 0})["completed"] = n
    return jsonify(success=True, data=[by_day[k] for k in sorted(by_day)], days=days)


@bp.get("/approval-stats")
@requires(READ, APPROVAL)
@cached_endpoint(*REPORT_TABLES, timeout=REPORT_TIMEOUT, by_roles=True)
def approval_stats():
    """Requests by status with counts and amounts, and the approval rate."""
    rows = reads.rows(
        sa.select(ApprovalRequest.status, sa.func.count(), sa.func.coalesce(sa.func.sum(ApprovalRequest.amount), 0))
        .where(scope_clause(ApprovalRequest, current_user()))
        .group_by(ApprovalRequest.status)
    )
    by_status = {s.value: {"status": s.value, "count": 0, "amount": "0"} for s in ApprovalStatus}
    for status, count, amount in rows:
        key = getattr(status, "value", status)
        by_status[key] = {"status": key, "count": count, "amount": json_value(amount)}
    approved = by_status["APPROVED"]["count"]
    rejected = by_status["REJECTED"]["count"]
    data = {
        "total": sum(v["count"] for v in by_status.values()),
        "byStatus": list(by_status.values()),
        "approvalRate": rate(approved, approved + rejected),
    }
    return jsonify(success=True, data=data)


EXPORTS = {
    "customers": (
        Customer,
        CUSTOMER,
        ["id", "name", "email", "phone", "address", "industry", "size", "investment_profile", "risk_tolerance",
         "investment_experience", "assigned_sales_id", "created_at", "updated_at"],
    ),
    "meetings": (
        Meeting,
        MEETING,
        ["id", "customer_id", "sales_id", "title", "description", "scheduled_at", "location", "next_action",
         "next_action_date", "created_at"],
    ),
    "tasks": (
        Task,
        TASK,
        ["id", "user_id", "customer_id", "title", "description", "due_date", "status", "priority", "completed_at",
         "created_at"],
    ),
    "approvals": (
        ApprovalRequest,
        APPROVAL,
        ["id", "requester_id", "customer_id", "product_name", "product_risk", "amount", "comment", "status",
         "approver_id", "requested_at", "processed_at"],
    ),
}


@bp.get("/export/<kind>")
@authenticated
def export(kind):
    """Stream a CSV (UTF-8 with BOM, for Excel in Japan) of one resource, in scope."""
    if kind not in EXPORTS:
        raise NotFound(f"unknown export {kind!r}; choose one of {', '.join(EXPORTS)}")
    model, resource, columns = EXPORTS[kind]
    if not can(READ, resource):
        raise Forbidden(f"your role may not read {resource}")
    stmt = (
        sa.select(*(getattr(model, c) for c in columns))
        .where(scope_clause(model, current_user()))
        .order_by(model.created_at, model.id)
        # yield_per streams from a server-side cursor (psycopg named cursor) in batches.
        .execution_options(yield_per=EXPORT_BATCH)
    )

    def generate():
        yield BOM + csv_line([to_camel(c) for c in columns])
        result = db.session.execute(stmt)
        try:
            for partition in result.partitions():
                # Every cell through app/exports.py: text starting a formula is neutralised.
                yield "".join(csv_line(row) for row in partition)
        finally:
            result.close()
            db.session.rollback()

    filename = f"{kind}-{utcnow().strftime('%Y%m%d-%H%M%S')}.csv"
    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


# --- reports: Excel and PDF reports built by a worker (app/services/reports.py) ----------

#: The GET routes above whose names the POST /<kind> route would otherwise take.
GET_ONLY = ("dashboard", "sales-metrics", "task-trends", "approval-stats", "runs")


def _report_kind(kind):
    """The report `kind` of the path (404 when there is none) the caller's role may read (403 otherwise)."""
    from app.services import reports

    if kind not in reports.KINDS:
        raise NotFound(f"unknown report {kind!r}; choose one of {', '.join(reports.KINDS)}")
    report = reports.KINDS[kind]
    if not can(READ, report.resource):
        raise Forbidden(f"your role may not read {report.resource}")
    return report


@bp.post("/<kind>")
@authenticated
def request_report(kind):
    """Ask for a report: `{"format": "xlsx"|"pdf", "params": {...}}`; 202 with the run, built by a worker."""
    from app.services import reports

    from views.api.common import json_body

    if kind in GET_ONLY:
        # The seed's read-only figures (GET /api/reports/dashboard, ...): a POST is the wrong method, not an unknown report.
        raise MethodNotAllowed(valid_methods=["GET", "HEAD", "OPTIONS"])
    _report_kind(kind)
    body = json_body()
    for key in body:
        if key not in ("format", "params"):
            raise ValidationFailed(f"unknown field {key!r}; send format and params", field=key)
    run = reports.request_report(db.session, current_user(), kind, body.get("format", "xlsx"), body.get("params"))
    return jsonify(success=True, data=reports.as_dict(run), id=run.id), 202


@bp.get("/runs")
@authenticated
def my_reports():
    """The caller's newest report runs with their status and progress."""
    from app.services import reports

    return jsonify(success=True, data=[reports.as_dict(r) for r in reports.mine(db.session, current_user())])


@bp.get("/<kind>/<run_id>")
@authenticated
def report_status(kind, run_id):
    """One run's status and progress (the asker's own, or any for an Admin; 404 otherwise)."""
    from app.services import reports

    run = reports.visible_run(db.session, run_id, current_user())
    if run.kind != kind:
        raise NotFound("report not found")
    return jsonify(success=True, data=reports.as_dict(run), id=run.id)


@bp.get("/<kind>/<run_id>/download")
@authenticated
def report_download(kind, run_id):
    """The finished file (the asker's own, or any for an Admin; 404 otherwise, 409 while building)."""
    from flask import send_file

    from app.services import reports

    run = reports.visible_run(db.session, run_id, current_user())
    if run.kind != kind:
        raise NotFound("report not found")
    path, name, mimetype = reports.download(db.session, run_id, current_user())
    response = send_file(path, mimetype=mimetype, as_attachment=True, download_name=name, max_age=0)
    response.headers["Cache-Control"] = "no-store"
    return response
