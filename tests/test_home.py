"""Role home pages (issue 21 part 1): each role's blocks, the scope rule, one-click complete, caching."""

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.services import approvals as approval_service
from app.services.dashboard import home_figures, home_kind, home_periods
from models import ApprovalRequest, ApprovalStatus, Task
from models.base import utcnow
from tests.helpers import cancel_tasks, long_ago



@pytest.fixture()
def leftovers(db):
    """Tasks this test leaves open: cancelled afterwards (tests/helpers.cancel_tasks)."""
    tasks = []
    yield tasks
    cancel_tasks(db, tasks)


def _page(client):
    resp = client.get("/")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return resp.get_data(as_text=True)


def _row(html, block, record_id):
    """The <tr> of `record_id` inside the home block `block`, or None."""
    start = html.find(f'data-block="{block}"')
    assert start >= 0, f"no {block} block"
    end = html.find('data-block="', start + 10)
    part = html[start : end if end > 0 else len(html)]
    match = re.search(rf'<tr[^>]*data-id="{record_id}"[^>]*>', part)
    return match.group(0) if match else None


def _task_status(db, task_id):
    db.session.expire_all()
    return db.session.get(Task, task_id).status.value


@pytest.fixture()
def overdue_pair(make, leftovers):
    """An overdue task for "sales" and one for "sales2"."""
    # Long overdue: the most overdue come first in the bounded list, whatever other tests left.
    mine = make.task("sales", title="期限切れ: 提案書", due_date=long_ago())
    theirs = make.task("sales2", title="他の担当者の期限切れ", due_date=long_ago())
    leftovers += [mine, theirs]
    return mine, theirs


def test_anonymous_home_goes_to_login(client):
    resp = client.get("/")
    assert resp.status_code == 302
    assert "/login" in resp.headers["Location"]


def test_home_kind_follows_the_role(users):
    assert [home_kind(users[k]) for k in ("sales", "manager", "compliance", "admin")] == ["sales", "manager", "compliance", "admin"]
    assert home_kind(None) is None


def test_sales_home_shows_own_overdue_today_meetings_requests_pipeline(browser_login, make, overdue_pair):
    mine, theirs = overdue_pair
    periods = home_periods(utcnow())
    # Due later today (display time zone), unless today ends within the hour: then tomorrow's list has it.
    today = make.task("sales", title="今日の電話", due_date=min(utcnow() + timedelta(minutes=30), periods["tomorrow"] - timedelta(seconds=1)))
    meeting = make.meeting("sales", title="週次の商談", scheduled_at=max(utcnow(), periods["week"]) + timedelta(seconds=1))
    html = _page(browser_login("sales"))
    row = _row(html, "overdue", mine.id)
    assert row is not None and "crm-overdue" in row
    assert _row(html, "overdue", theirs.id) is None
    assert theirs.id not in html and "他の担当者の期限切れ" not in html
    if today.due_date > utcnow():
        assert _row(html, "today", today.id) is not None
    assert f'data-id="{meeting.id}"' in html
    for block in ("overdue", "today", "meetings", "requests", "pipeline"):
        assert f'data-block="{block}"' in html
    # The complete button is a POST form carrying the CSRF token.
    form = re.search(rf'<form method="post" action="/home/tasks/{mine.id}/complete"[^>]*>\s*<input type="hidden" name="csrf_token" value="[^"]+"', html)
    assert form is not None


def test_sales_figures_count_own_requests_and_pipeline_only(app, users, make):
    before = home_figures(users["sales"])
    other_before = home_figures(users["sales2"])
    make.approval("sales", amount=1_234_567)
    make.approval("sales2", amount=7_654_321)
    after = home_figures(users["sales"])
    assert after["requests"]["PENDING"] == before["requests"]["PENDING"] + 1
    assert after["pipeline"]["requested"] - before["pipeline"]["requested"] == 1_234_567
    assert after["pipeline"]["requestedCount"] == before["pipeline"]["requestedCount"] + 1
    other = home_figures(users["sales2"])
    assert other["pipeline"]["requested"] - other_before["pipeline"]["requested"] == 7_654_321


def test_sales_overdue_list_never_holds_another_reps_task(users, db, overdue_pair):
    mine, theirs = overdue_pair
    figures = home_figures(users["sales"])
    ids = {t["id"] for t in figures["overdue"]}
    # The list is bounded: our fresh task may sit behind older ones, but another rep's never appears.
    assert mine.id in ids and theirs.id not in ids
    assert theirs.id in {t["id"] for t in home_figures(users["sales2"])["overdue"]}
    shown = [t["id"] for t in figures["overdue"] + figures["today"]]
    owners = db.session.execute(sa.select(Task.user_id, Task.created_by_id).where(Task.id.in_(shown))).all()
    assert len(owners) == len(shown) and all(users["sales"].id in row for row in owners)


def test_one_click_complete_is_a_csrf_post_back_to_home(browser_login, db, overdue_pair):
    mine, _ = overdue_pair
    client = browser_login("sales")
    # A GET does nothing (the route takes POST only).
    assert client.get(f"/home/tasks/{mine.id}/complete").status_code == 405
    assert _task_status(db, mine.id) == "TODO"
    # A POST without the token is refused.
    assert client.post(f"/home/tasks/{mine.id}/complete", csrf=False).status_code == 400
    assert _task_status(db, mine.id) == "TODO"
    resp = client.post(f"/home/tasks/{mine.id}/complete")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/")
    assert _task_status(db, mine.id) == "COMPLETED"
    html = _page(client)
    assert _row(html, "overdue", mine.id) is None
    # The task service wrote the completion time and its audit row.
    db.session.expire_all()
    assert db.session.get(Task, mine.id).completed_at is not None
    from models.audit import AuditLog

    changes = db.session.execute(
        sa.select(AuditLog.changes).where(AuditLog.resource_id == mine.id, AuditLog.action == "UPDATE")
    ).scalars().all()
    assert any((c or {}).get("after", {}).get("status") == "COMPLETED" for c in changes), changes


def test_one_click_complete_refuses_another_reps_task_and_read_only_roles(browser_login, db, overdue_pair, make):
    _, theirs = overdue_pair
    assert browser_login("sales").post(f"/home/tasks/{theirs.id}/complete").status_code == 404
    assert _task_status(db, theirs.id) == "TODO"
    # Compliance reads tasks but may not change them.
    assert browser_login("compliance").post(f"/home/tasks/{theirs.id}/complete").status_code == 403
    assert _task_status(db, theirs.id) == "TODO"
    assert browser_login("sales").post("/home/tasks/no-such-task/complete").status_code == 404


def test_manager_home_team_waiting_overdue_by_rep_and_trends(browser_login, users, make, overdue_pair):
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    before = home_figures(users["manager"])
    make.approval("sales", customer=customer, amount=2_000_000)
    make.task("sales2", title="新規")
    after = home_figures(users["manager"])
    assert after["waiting"]["count"] == before["waiting"]["count"] + 1
    assert after["waiting"]["oldest"] is not None and after["waiting"]["oldestAgeHours"] >= 0
    team = {r["id"]: r for r in after["team"]}
    assert team[users["sales"].id]["overdueTasks"] >= 1 and team[users["sales2"].id]["overdueTasks"] >= 1
    assert team[users["sales"].id]["pendingRequests"] == {r["id"]: r for r in before["team"]}.get(users["sales"].id, {"pendingRequests": 0})["pendingRequests"] + 1
    trends = after["trends"]
    assert len(trends["weeks"]) == 8 and all(len(trends[k]) == 8 for k in ("tasksCreated", "tasksCompleted", "approved", "rejected"))
    assert trends["tasksCreated"][-1] == before["trends"]["tasksCreated"][-1] + 1
    html = _page(browser_login("manager"))
    for block in ("waiting", "team", "task-trend", "approval-trend"):
        assert f'data-block="{block}"' in html
    assert f'data-rep="{users["sales2"].id}"' in html
    charts = re.findall(r'<canvas data-chart="([^"]+)" data-chart-kind="(\w+)"', html)
    assert {kind for _, kind in charts} == {"tasks", "approvals"}
    data = json.loads(charts[0][0].replace("&#34;", '"').replace("&quot;", '"'))
    assert data["weeks"] == trends["weeks"]
    assert 'src="/static/vendor/chart.umd.min.js' in html and "cdn" not in html.lower()


def _old_request(users, make, db, amount):
    """A request of "sales" submitted long ago (first in the oldest-first queue), past the Manager's step."""
    from app.context import acting_as
    from models import ApprovalRequest

    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    with acting_as(users["sales"]):
        req = ApprovalRequest(customer_id=customer.id, product_name="外国債券ファンド", product_risk=3, amount=amount)
        approval_service.submit(req, users["sales"], requested_at=long_ago())
        db.session.commit()
    return req


def test_compliance_home_queue_with_reasons_breakdown_and_audit(browser_login, users, make, db):
    req = _old_request(users, make, db, 15_000_000)
    before = home_figures(users["compliance"])
    manager_before = home_figures(users["manager"])["waiting"]["count"]
    approval_service.approve(req.id, users["manager"], "確認済み")
    db.session.commit()
    figures = home_figures(users["compliance"])
    row = next(r for r in figures["queue"] if r["id"] == req.id)
    assert row["reasons"] == ["AMOUNT_AT_OR_ABOVE_THRESHOLD"] and row["customerName"]
    assert figures["queueTotal"] == before["queueTotal"] + 1
    reasons, reasons_before = dict(figures["reasons"]), dict(before["reasons"])
    assert reasons["AMOUNT_AT_OR_ABOVE_THRESHOLD"] == reasons_before.get("AMOUNT_AT_OR_ABOVE_THRESHOLD", 0) + 1
    assert any(e["action"] == "APPROVE" and e["resourceId"] == req.id for e in figures["audit"])
    html = _page(browser_login("compliance"))
    for block in ("queue", "reasons", "audit"):
        assert f'data-block="{block}"' in html
    assert 'data-reason="AMOUNT_AT_OR_ABOVE_THRESHOLD"' in (_row(html, "queue", req.id) and html)
    assert re.search(r'<canvas data-chart="[^"]+" data-chart-kind="bar"', html)
    # The Manager decided: it no longer waits for them.
    assert home_figures(users["manager"])["waiting"]["count"] == manager_before - 1


def test_admin_home_users_and_pipeline_health(browser_login, users):
    from app.services.outbox import outbox_backlog

    figures = home_figures(users["admin"])
    assert figures["users"]["total"] >= 5
    assert {r["role"] for r in figures["roles"]} >= {"Admin", "Manager", "Compliance", "Sales"}
    pipeline = figures["pipeline"]
    assert pipeline["outbox"].keys() == outbox_backlog().keys()
    assert pipeline["mode"] == "embedded"
    assert pipeline["queue"] is not None and "workers" in pipeline["queue"] and "failed" in pipeline["queue"]
    html = _page(browser_login("admin"))
    for block in ("pipeline", "dead-letters", "users"):
        assert f'data-block="{block}"' in html


def test_sales_cannot_get_another_roles_figures(users):
    figures = home_figures(users["sales"])
    assert figures["kind"] == "sales" and "team" not in figures and "queue" not in figures and "audit" not in figures
    assert set(figures["pipeline"]) == {"requested", "approved", "requestedCount", "approvedCount"}


def test_home_cached_per_caller_and_invalidated_on_change(redis_cache, users, make):
    from app import caching

    task = make.task("sales", title="キャッシュ確認", due_date=long_ago())
    first = home_figures(users["sales"])
    hits = caching.stats()["hits"]
    again = home_figures(users["sales"])
    assert caching.stats()["hits"] == hits + 1 and again == first
    # Another rep's home is its own entry, never this one.
    assert task.id in {t["id"] for t in first["overdue"]}
    other = home_figures(users["sales2"])
    assert task.id not in {t["id"] for t in other["overdue"]}
    # A commit writing tasks makes the cached home stale at once.
    from app.services.records import complete_task
    from app.extensions import db

    t = db.session.get(Task, task.id)
    complete_task(t)
    db.session.commit()
    fresh = home_figures(users["sales"])
    assert task.id not in {x["id"] for x in fresh["overdue"]}
    assert fresh["counts"]["tasks"]["completed"] == first["counts"]["tasks"]["completed"] + 1


def test_team_counts_from_counters_equal_the_rows(users, make):
    """The manager's per-rep figures (record_counters on PostgreSQL) equal count(*) over the rows, at any moment."""
    from app.services.dashboard import exact_team_counts, team_counts

    make.task("sales2", title="一時間以内", due_date=utcnow() + timedelta(minutes=5))
    make.task("sales2", title="来月", due_date=utcnow() + timedelta(days=40))
    make.task("sales2", title="期限なし", due_date=None)
    for offset in (timedelta(0), timedelta(minutes=10), timedelta(days=-1), timedelta(days=35)):
        now = utcnow() + offset
        for key in ("manager", "admin", "sales", "sales2"):
            assert team_counts(users[key], now) == exact_team_counts(users[key], now), (key, offset)


def test_manager_trend_weeks_are_utc_mondays(users):
    trends = home_figures(users["manager"])["trends"]
    from datetime import date

    weeks = [date.fromisoformat(w) for w in trends["weeks"]]
    assert all(w.weekday() == 0 for w in weeks) and weeks[-1] <= utcnow().date() < weeks[-1] + timedelta(days=7)


def test_own_request_counts_from_counters_equal_the_rows(users, make, db):
    from app.services.dashboard import own_request_counts

    make.approval("sales2", amount=3_000_000)
    for key in ("sales", "sales2", "manager"):
        rows = db.session.execute(
            sa.select(ApprovalRequest.status, sa.func.count()).where(ApprovalRequest.requester_id == users[key].id)
            .group_by(ApprovalRequest.status)
        ).all()
        expected = {s.value: 0 for s in ApprovalStatus} | {str(s): n for s, n in rows}
        assert own_request_counts(users[key]) == expected, key


def test_cached_home_page_is_per_caller_carries_the_sessions_token_and_follows_changes(redis_cache, browser_login, make, db):
    from app import caching

    task = make.task("sales", title="キャッシュされた画面", due_date=long_ago())
    client = browser_login("sales")
    first = _page(client)
    hits = caching.stats()["hits"]
    second = _page(client)
    assert caching.stats()["hits"] > hits  # the page's blocks came from the cache
    assert _row(second, "overdue", task.id) is not None
    assert "__crm_home_csrf_token__" not in second
    token = re.search(rf'action="/home/tasks/{task.id}/complete"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)"', second)
    assert token is not None
    # Another rep's page is their own, never this one.
    assert task.id not in _page(browser_login("sales2"))
    # The token served from the cache is this session's: the one-click complete works with it.
    resp = client.post(f"/home/tasks/{task.id}/complete", data={"csrf_token": token.group(1)}, csrf=False)
    assert resp.status_code == 302
    assert _task_status(db, task.id) == "COMPLETED"
    assert _row(_page(client), "overdue", task.id) is None
    assert first.count('data-block="') == second.count('data-block="')
