"""Reports: scoped aggregate figures and streamed CSV exports."""

import csv
import io
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from models.base import utcnow
from models.task import TaskStatus


@pytest.fixture()
def fresh_rep(app, db):
    """A new Sales user with a token, so its own figures start from zero."""
    from app.services.users import create_user

    email = f"rep-{uuid.uuid4().hex[:8]}@example.com"
    user = create_user(email, "Report Rep", "Sales", "Password123!")
    _ = (user.id, [r.name for r in user.roles])
    client = app.test_client()
    token = client.post("/api/auth/login", json={"email": email, "password": "Password123!"}).json["token"]
    return user, {"Authorization": f"Bearer {token}"}


def seed_figures(db, user):
    """Two customers, three tasks (one done, one overdue, one pending), one meeting for `user`."""
    from app.context import acting_as
    from models import Customer, Meeting, Task

    with acting_as(user):
        c1 = Customer(name="集計A", assigned_sales_id=user.id, created_by_id=user.id)
        c2 = Customer(name="集計B", assigned_sales_id=user.id, created_by_id=user.id)
        db.session.add_all([c1, c2])
        db.session.flush()
        now = utcnow()
        db.session.add_all([
            Task(title="done", user_id=user.id, status=TaskStatus.COMPLETED, completed_at=now, due_date=now),
            Task(title="late", user_id=user.id, due_date=now - timedelta(days=2)),
            Task(title="todo", user_id=user.id, due_date=now + timedelta(days=5)),
            Meeting(customer_id=c1.id, sales_id=user.id, title="面談", scheduled_at=now + timedelta(days=1)),
        ])
        db.session.commit()
    return c1, c2


def test_dashboard_own_figures_for_sales(client, db, fresh_rep):
    """A Sales user's dashboard counts exactly its own rows (checked against SQL written here).

    Automations (lead for a new user, first-contact task per customer) may add rows of this
    rep's own, so the expectation is computed, with the seeded rows as a floor.
    """
    from models import ApprovalRequest, Customer, Meeting, Task

    user, headers = fresh_rep
    seed_figures(db, user)
    uid, now = user.id, utcnow()
    db.session.expire_all()

    def count(model, *where):
        return db.session.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar()

    mine_task = sa.or_(Task.user_id == uid, Task.created_by_id == uid)
    open_task = Task.status.in_(["TODO", "IN_PROGRESS"])
    tasks_total = count(Task, mine_task)
    done = count(Task, mine_task, Task.status == "COMPLETED")
    data = client.get("/api/reports/dashboard", headers=headers).json["data"]
    assert data["customers"]["total"] == count(
        Customer, Customer.deleted_at.is_(None), sa.or_(Customer.assigned_sales_id == uid, Customer.created_by_id == uid)
    ) >= 2
    assert data["meetings"]["total"] == count(Meeting, sa.or_(Meeting.sales_id == uid, Meeting.created_by_id == uid)) >= 1
    assert data["tasks"] == {
        "total": tasks_total,
        "completed": done,
        "pending": count(Task, mine_task, open_task),
        "overdue": count(Task, mine_task, open_task, Task.due_date < now),
        "completionRate": round(done / tasks_total * 100, 1),
    }
    assert tasks_total >= 3 and done == 1 and data["tasks"]["overdue"] >= 1
    assert data["approvals"]["total"] == count(ApprovalRequest, ApprovalRequest.requester_id == uid) == 0
    metrics = client.get("/api/reports/sales-metrics", headers=headers).json["data"]
    assert [m["salesId"] for m in metrics] == [str(uid)]
    assert metrics[0]["customers"] == count(Customer, Customer.deleted_at.is_(None), Customer.assigned_sales_id == uid)
    assert metrics[0]["tasks"] == count(Task, mine_task, Task.user_id == uid) and metrics[0]["tasksCompleted"] == 1
    trends = client.get("/api/reports/task-trends?days=7", headers=headers).json["data"]
    assert sum(d["created"] for d in trends) == tasks_total and sum(d["completed"] for d in trends) == 1


def test_dashboard_totals_for_managers_match_the_database(client, auth, db, make):
    """A Manager's figures are the whole table's (checked against direct SQL)."""
    from models import ApprovalRequest, Customer, Task

    make.approval("sales")
    data = client.get("/api/reports/dashboard", headers=auth("manager")).json["data"]
    live = db.session.execute(sa.select(sa.func.count()).select_from(Customer).where(Customer.deleted_at.is_(None))).scalar()
    assert data["customers"]["total"] == live
    assert data["tasks"]["total"] == db.session.execute(sa.select(sa.func.count()).select_from(Task)).scalar()
    stats = client.get("/api/reports/approval-stats", headers=auth("manager")).json["data"]
    assert stats["total"] == db.session.execute(sa.select(sa.func.count()).select_from(ApprovalRequest)).scalar()
    assert {s["status"] for s in stats["byStatus"]} == {"PENDING", "APPROVED", "REJECTED", "RECALLED"}
    metrics = client.get("/api/reports/sales-metrics", headers=auth("manager")).json["data"]
    assert len({m["salesId"] for m in metrics}) >= 2


def test_reports_do_not_load_rows(client, auth, db, app):
    """Every report runs aggregate statements only: no statement selects a table's rows unaggregated."""
    statements = []

    def capture(conn, cursor, statement, *args):
        statements.append(statement)

    # Every engine: cacheable reads run on the read engine (app/reads.py).
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        for path in ("/api/reports/dashboard", "/api/reports/sales-metrics", "/api/reports/task-trends", "/api/reports/approval-stats"):
            assert client.get(path, headers=auth("manager")).status_code == 200
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    reads = [s for s in statements if any(t in s for t in ("FROM customers", "FROM tasks", "FROM meetings", "FROM approval_requests"))]
    assert reads and all("count(" in s.lower() or "sum(" in s.lower() for s in reads), reads


@pytest.mark.parametrize("kind", ["customers", "meetings", "tasks", "approvals"])
def test_export_csv_is_scoped_with_bom(client, auth, make, kind):
    """CSV with a UTF-8 BOM; a Sales user's export has its rows and not another rep's."""
    maker = {"customers": make.customer, "meetings": make.meeting, "tasks": make.task, "approvals": make.approval}[kind]
    own, other = maker("sales"), maker("sales2")
    resp = client.get(f"/api/reports/export/{kind}", headers=auth("sales"))
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    raw = resp.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    ids = {r["id"] for r in rows}
    assert own.id in ids and other.id not in ids
    everyone = client.get(f"/api/reports/export/{kind}", headers=auth("compliance")).get_data().decode("utf-8-sig")
    assert other.id in everyone


def test_export_streams_with_a_server_side_cursor(client, auth, db, make):
    """The export is a streamed response reading through yield_per (a named server-side cursor)."""
    for _ in range(3):
        make.customer("sales")
    executed = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        executed.append((statement, context.execution_options.get("yield_per"), type(cursor).__name__))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        resp = client.get("/api/reports/export/customers", headers=auth("admin"))
        # A streamed answer has no Content-Length: the body is produced while it is sent.
        assert "Content-Length" not in resp.headers
        body = resp.get_data()
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    assert body.count(b"\n") >= 4
    export = [e for e in executed if "FROM customers" in e[0]]
    assert export and export[0][1] == 500 and export[0][2] == "ServerCursor", export


def test_export_needs_read_permission(client, auth):
    """Unknown export types are 404; a token is required."""
    assert client.get("/api/reports/export/customers").status_code == 401
    assert client.get("/api/reports/export/secrets", headers=auth("admin")).status_code == 404


REPORTS = ["/api/reports/dashboard", "/api/reports/sales-metrics", "/api/reports/task-trends", "/api/reports/approval-stats",
           "/api/reports/export/customers", "/api/reports/export/meetings", "/api/reports/export/tasks", "/api/reports/export/approvals"]


@pytest.mark.parametrize("caller", ["admin", "manager", "compliance", "sales"])
@pytest.mark.parametrize("path", REPORTS)
def test_every_report_answers_every_role(client, auth, caller, path):
    """Every role reads every report (scoped); none answers an error."""
    resp = client.get(path, headers=auth(caller))
    assert resp.status_code == 200, (path, caller, resp.get_data(as_text=True)[:200])


def is_number(value):
    """A JSON number (int or float), not a string or a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def test_sales_metrics_rows_carry_the_seeds_fields_as_numbers(client, auth, db, make, fresh_rep):
    """salesId, salesName, salesEmail, meetingCount; every count and amount a JSON number, with or without approvals."""
    user, headers = fresh_rep
    seed_figures(db, user)
    approved = make.approval("sales", amount=1_250_000)
    resp = client.post(f"/api/approvals/{approved.id}/approve", json={"comment": "ok"}, headers=auth("manager"))
    assert resp.status_code == 200, resp.json
    rows = client.get("/api/reports/sales-metrics", headers=auth("manager")).json["data"]
    by_id = {r["salesId"]: r for r in rows}
    mine = by_id[str(user.id)]
    assert mine["salesName"] == mine["name"] == "Report Rep" and mine["salesEmail"] == mine["email"] == user.email
    assert mine["meetingCount"] == mine["meetings"] == 1
    assert mine["approvedAmount"] == 0 and mine["approvals"] == 0  # no approvals at all
    for row in rows:
        figures = {k: v for k, v in row.items() if k not in ("salesId", "salesName", "salesEmail", "name", "email")}
        assert figures and all(is_number(v) for v in figures.values()), row
    rep = by_id[next(k for k, r in by_id.items() if r["approvalsApproved"] >= 1)]
    assert rep["approvedAmount"] >= 1_250_000 and isinstance(rep["approvedAmount"], int)


def test_dashboard_rates_are_numbers(client, auth):
    for who in ("manager", "sales"):
        data = client.get("/api/reports/dashboard", headers=auth(who)).json["data"]
        assert is_number(data["tasks"]["completionRate"]) and is_number(data["approvals"]["approvalRate"])
        for section in data.values():
            assert all(is_number(v) for v in section.values()), section
