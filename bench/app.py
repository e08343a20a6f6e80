"""The production app plus benchmark-only routes: `gunicorn bench.app:app`.

- GET /bench/hello: a plain JSON answer, no auth, no database (the framework floor).
- GET /bench/tasks/overdue: the same for /api/tasks/overdue (FAB's generated filters have
  no IN, so its `status != X AND status != Y` form cannot use the open-tasks index).
- GET /bench/dashboard: a stand-in for /api/reports/dashboard until the /api blueprint is
  merged: JWT auth as the API does, the scope rule, the dashboard counts, wrapped in the
  answer cache in one line (`caching.cached_endpoint`), exactly how the /api handler will be.
Nothing here is registered by `create_app`, so production never serves these routes.
"""

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from flask import Blueprint, g, jsonify
from flask_jwt_extended import current_user, verify_jwt_in_request

from app import caching, create_app
from app.extensions import db
from app.scope import scope_clause
from models import ApprovalRequest, Customer, Meeting, Task
from models.approval import ApprovalStatus
from models.task import OPEN_STATUSES

bench = Blueprint("bench", __name__, url_prefix="/bench")


@bench.get("/hello")
def hello():
    """The framework floor: a constant JSON body."""
    return jsonify(success=True, data={"hello": "world"})


def jwt_user(fn):
    """Authenticate with the bearer token the way the /api blueprint does (401 otherwise)."""

    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        g.user = current_user
        return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    return wrapper


def dashboard_counts(user):
    """The dashboard's figures over the caller's scope (one round trip per table)."""
    now = datetime.now(timezone.utc)
    week = now + timedelta(days=7)
    s = db.session
    customers = s.execute(sa.select(sa.func.count()).select_from(Customer).where(scope_clause(Customer, user))).scalar_one()
    task_rows = s.execute(
        sa.select(
            sa.func.count().filter(Task.status.in_(OPEN_STATUSES)),
            sa.func.count().filter(Task.status.in_(OPEN_STATUSES), Task.due_date < now),
        ).where(scope_clause(Task, user), Task.status.in_(OPEN_STATUSES))
    ).one()
    meetings = s.execute(
        sa.select(sa.func.count()).select_from(Meeting).where(
            scope_clause(Meeting, user), Meeting.scheduled_at >= now, Meeting.scheduled_at < week
        )
    ).scalar_one()
    pending = s.execute(
        sa.select(sa.func.count()).select_from(ApprovalRequest).where(
            scope_clause(ApprovalRequest, user), ApprovalRequest.status == ApprovalStatus.PENDING
        )
    ).scalar_one()
    return {
        "customers": customers,
        "openTasks": task_rows[0],
        "overdueTasks": task_rows[1],
        "meetingsThisWeek": meetings,
        "pendingApprovals": pending,
    }


@bench.get("/dashboard")
@jwt_user
@caching.cached_endpoint(Customer, Task, Meeting, ApprovalRequest)
def dashboard():
    """Stand-in for /api/reports/dashboard (see module docstring)."""
    return jsonify(success=True, data=dashboard_counts(g.user))


@bench.get("/tasks/overdue")
@jwt_user
@caching.cached_endpoint(Task, Customer)
def overdue_tasks():
    """Stand-in for /api/tasks/overdue: open tasks past due, oldest first (ix_tasks_open_due)."""
    from app.serialize import column_values

    rows = db.session.execute(
        sa.select(Task)
        .where(scope_clause(Task, g.user), Task.status.in_(OPEN_STATUSES), Task.due_date < datetime.now(timezone.utc))
        .order_by(Task.due_date)
        .limit(20)
    ).scalars().all()
    return jsonify(success=True, data=[column_values(t) for t in rows])


app = create_app()
app.register_blueprint(bench)
