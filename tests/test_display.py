"""Readable lists (issue 21, part 2): labels and badges, ¥, the display time zone, highlighted rows,
default filters and sorts, and quick actions that need the CSRF token and stay in scope."""

import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from models import Task
from models.base import utcnow
from models.notification import Notification, NotificationType
from models.task import TaskStatus
from views import display


def test_codes_become_labels_in_coloured_badges(app):
    with app.test_request_context("/", headers={"Accept-Language": "ja"}):
        html = str(display.badge("task_status", TaskStatus.TODO))
        assert 'class="label label-info crm-badge crm-badge-task-status-TODO"' in html and "未着手" in html
        assert "緊急" in str(display.badge("priority", "URGENT")) and "label-danger" in str(display.badge("priority", "URGENT"))
        assert "label-success" in str(display.badge("approval_status", "APPROVED"))
        assert "却下" in str(display.badge("decision", "REJECTED"))
        assert "安定型" in str(display.badge("profile", "conservative"))
        assert str(display.badge("priority", None)) == ""
        # An unknown code is shown as itself, escaped, never dropped.
        assert "&lt;b&gt;" in str(display.badge("priority", "<b>"))
        high = str(display.risk_badge(8))
        assert "label-danger" in high and "8" in high
        assert "label-success" in str(display.risk_badge(2))


def test_labels_follow_the_locale(app):
    with app.test_request_context("/?_l_=en"):
        from flask_babel import force_locale

        with force_locale("en"):
            assert display.label("task_status", "IN_PROGRESS") == "In progress"
            assert "Yes" in str(display.yes_no(True)) and "No" in str(display.yes_no(False))
        with force_locale("ja"):
            assert display.label("task_status", "IN_PROGRESS") == "進行中"
            assert "はい" in str(display.yes_no(True))
            assert "未読" in str(display.read_flag(False))


def test_yen_and_display_time_zone(app):
    assert display.yen(1234567) == "¥1,234,567"
    assert display.yen(Decimal("1500.50")) == "¥1,500.50"
    assert display.yen(None) == ""
    with app.app_context():
        stamp = datetime(2026, 3, 31, 16, 30, tzinfo=timezone.utc)
        assert display.local_time(stamp) == "2026-04-01 01:30"  # Asia/Tokyo is UTC+9
        old = app.config["DISPLAY_TIMEZONE"]
        app.config["DISPLAY_TIMEZONE"] = "Europe/London"
        try:
            assert display.local_time(stamp) == "2026-03-31 17:30"  # BST
        finally:
            app.config["DISPLAY_TIMEZONE"] = old


def test_due_state():
    now = utcnow()
    assert display.due_state(now - timedelta(hours=1), "TODO", now) == "overdue"
    assert display.due_state(now + timedelta(days=2), "IN_PROGRESS", now) == "due-soon"
    assert display.due_state(now + timedelta(days=10), "TODO", now) == ""
    assert display.due_state(now - timedelta(days=1), "COMPLETED", now) == ""
    assert display.due_state(None, "TODO", now) == ""


def _row(html, text):
    """The <tr> of the list table holding `text`."""
    for row in re.findall(r"<tr[^>]*>.*?</tr>", html, re.S):
        if text in row:
            return row
    raise AssertionError(f"no row with {text!r}")


@pytest.fixture()
def rep(app, db, new_user):
    """A Sales rep of this test alone (the session's database holds every other test's rows): (client, user, task factory)."""
    from app.context import acting_as
    from tests.conftest import PASSWORD

    user = new_user("Sales")
    client = app.test_client()
    assert client.post("/login/", data={"username": user.email, "password": PASSWORD}).status_code == 302

    def task(**fields):
        with acting_as(user):
            row = Task(user_id=user.id, created_by_id=user.id, title=fields.pop("title"), **fields)
            db.session.add(row)
            db.session.commit()
        return row

    return client, user, task


def test_task_list_shows_badges_highlights_and_opens_on_my_open_tasks(rep, make):
    c, _user, task = rep
    tag = uuid.uuid4().hex[:6]
    late = task(title=f"期限切れ{tag}", due_date=utcnow() - timedelta(days=1), priority="URGENT")
    soon = task(title=f"もうすぐ{tag}", due_date=utcnow() + timedelta(days=1))
    task(title=f"完了済{tag}", status="COMPLETED", due_date=utcnow() - timedelta(days=3))
    other = make.task("sales2", title=f"他の担当{tag}", due_date=utcnow() - timedelta(days=2))
    html = c.get("/taskview/list/").get_data(as_text=True)
    assert "未完了のタスク（期限の近い順）" in html
    late_row = _row(html, late.title)
    assert "crm-row-overdue" in late_row and "緊急" in late_row and "未着手" in late_row
    assert "URGENT" not in re.sub(r'class="[^"]*"', "", late_row)  # the code only in a class name, never as text
    assert "crm-row-due-soon" in _row(html, soon.title)
    assert f"完了済{tag}" not in html  # open tasks only by default
    assert other.title not in html  # another rep's task never
    assert html.index(late.title) < html.index(soon.title)  # soonest due first
    # Asking for everything shows the completed one (still only the caller's own).
    everything = c.get("/taskview/list/?all=1").get_data(as_text=True)
    assert f"完了済{tag}" in everything and other.title not in everything
    # A filter of the user's own replaces the default.
    done = c.get("/taskview/list/?_flt_0_status=COMPLETED").get_data(as_text=True)
    assert f"完了済{tag}" in done and late.title not in done


def test_approval_list_opens_on_pending_oldest_first_with_yen(browser_login, make, db):
    first = make.approval("sales", amount=2_500_000, product_name=f"先の申請{uuid.uuid4().hex[:6]}")
    second = make.approval("sales", amount=1_000_000, product_name=f"後の申請{uuid.uuid4().hex[:6]}")
    first.requested_at = utcnow() - timedelta(days=4000)  # the oldest pending row of the whole table
    db.session.commit()
    html = browser_login("manager").get("/approvalrequestview/list/").get_data(as_text=True)
    assert "承認待ちの申請（古い順）" in html
    row = _row(html, first.product_name)
    assert "¥2,500,000" in row and "label-warning" in row and "承認待ち" in row
    assert f"/approvalrequestview/show/{first.id}" in row  # the Open quick action
    assert html.index(first.product_name) < html.find(second.product_name) or second.product_name not in html


def test_customer_and_meeting_lists_show_labels_not_codes(browser_login, make):
    customer = make.customer("sales", name=f"表示確認{uuid.uuid4().hex[:6]}", size="LARGE", investment_profile="aggressive", risk_tolerance=9)
    make.meeting("sales", customer=customer, title=f"訪問{uuid.uuid4().hex[:6]}")
    c = browser_login("sales")
    row = _row(c.get("/customerview/list/").get_data(as_text=True), customer.name)
    assert "大規模" in row and "積極型" in row and "label-danger" in row
    assert ">None<" not in row and "aggressive<" not in row
    meetings = c.get("/meetingview/list/?all=1").get_data(as_text=True)
    assert "crm-badge-meeting-type-visit" in meetings and "訪問" in meetings


def test_complete_a_task_from_the_list(rep, db):
    c, _user, make_task = rep
    task = make_task(title=f"一覧から完了{uuid.uuid4().hex[:6]}", due_date=utcnow() - timedelta(hours=2))
    html = c.get("/taskview/list/").get_data(as_text=True)
    assert f'action="/taskview/complete/{task.id}"' in _row(html, task.title)
    resp = c.post(f"/taskview/complete/{task.id}", data={"next": "/taskview/list/"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/taskview/list/")
    db.session.expire_all()
    done = db.session.get(Task, task.id)
    assert done.status == TaskStatus.COMPLETED and done.completed_at is not None
    # Once more: nothing changes, the user is told.
    assert c.post(f"/taskview/complete/{task.id}", data={}).status_code == 302


def test_quick_actions_need_the_csrf_token(browser_login, make, db):
    task = make.task("sales")
    resp = browser_login("sales").post(f"/taskview/complete/{task.id}", data={}, csrf=False)
    assert resp.status_code == 400
    db.session.expire_all()
    assert db.session.get(Task, task.id).status == TaskStatus.TODO


def test_quick_actions_refuse_another_reps_rows(browser_login, make, db, users):
    theirs = make.task("sales2")
    c = browser_login("sales")
    assert c.post(f"/taskview/complete/{theirs.id}", data={}).status_code == 404
    assert c.post("/taskview/complete/not-a-uuid", data={}).status_code == 404
    db.session.expire_all()
    assert db.session.get(Task, theirs.id).status == TaskStatus.TODO
    # Compliance reads tasks but may not change them.
    assert browser_login("compliance").post(f"/taskview/complete/{theirs.id}", data={}).status_code in (302, 403)
    db.session.expire_all()
    assert db.session.get(Task, theirs.id).status == TaskStatus.TODO


def _notification(db, user, title):
    row = Notification(user_id=user.id, type=NotificationType.SYSTEM, title=title, message="m", is_read=False)
    db.session.add(row)
    db.session.commit()
    return row


def test_mark_a_notification_read_from_the_list_only_ones_own(browser_login, users, db):
    mine = _notification(db, users["sales"], f"通知{uuid.uuid4().hex[:6]}")
    theirs = _notification(db, users["sales2"], f"通知{uuid.uuid4().hex[:6]}")
    c = browser_login("sales")
    html = c.get("/notificationview/list/").get_data(as_text=True)
    row = _row(html, mine.title)
    assert "crm-row-unread" in row and "未読" in row and f"/notifications/{mine.id}/read" in row
    assert "False" not in re.sub(r"<[^>]+>", "", row)
    resp = c.post(f"/notifications/{mine.id}/read", data={"next": "/notificationview/list/"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/notificationview/list/")
    assert c.post(f"/notifications/{theirs.id}/read", data={}).status_code == 404
    db.session.expire_all()
    assert db.session.get(Notification, mine.id).is_read is True
    assert db.session.get(Notification, theirs.id).is_read is False


@pytest.mark.parametrize(
    "path,column",
    [("/customerview/list/", "assigned_sales"), ("/taskview/list/", "customer"), ("/meetingview/list/", "customer"),
     ("/approvalrequestview/list/", "customer"), ("/taskview/list/", "user")],
)
def test_list_filters_search_related_rows_instead_of_listing_them(browser_login, make, path, column):
    """The filter form's related fields are search inputs: not one <option> per customer or user in the page."""
    from tests.test_scope import _search_widgets

    make.customer("sales")
    widget = _search_widgets(browser_login("manager").get(path).get_data(as_text=True))[column]
    assert "<option" not in widget
    assert "crm-autocomplete" in widget and "/crm/autocomplete/" in widget and "purpose=filter" in widget


def test_export_of_a_list_follows_its_default_filter(browser_login, make):
    """The CSV of the task list as opened holds what the screen shows: open tasks only, unless all=1."""
    tag = uuid.uuid4().hex[:6]
    make.task("sales", title=f"開いている{tag}")
    make.task("sales", title=f"済んだ{tag}", status="COMPLETED")
    c = browser_login("sales")
    shown = c.get("/taskview/export/csv").get_data(as_text=True)
    assert f"開いている{tag}" in shown and f"済んだ{tag}" not in shown
    everything = c.get("/taskview/export/csv?all=1").get_data(as_text=True)
    assert f"開いている{tag}" in everything and f"済んだ{tag}" in everything


def test_forms_offer_labels_not_codes(browser_login, make):
    c = browser_login("sales")
    task_form = c.get("/taskview/add").get_data(as_text=True)
    assert '<option selected value="TODO">未着手</option>' in task_form or ('value="TODO"' in task_form and ">未着手<" in task_form)
    assert 'value="URGENT"' in task_form and ">緊急<" in task_form
    customer_form = c.get("/customerview/add").get_data(as_text=True)
    assert 'value="ENTERPRISE"' in customer_form and ">大企業<" in customer_form and ">安定型<" in customer_form
    # The list's filter form too.
    from tests.test_scope import _search_widgets

    widgets = _search_widgets(c.get("/taskview/list/").get_data(as_text=True))
    assert "進行中" in widgets["status"] and "IN_PROGRESS" in widgets["status"]


def test_screen_errors_are_pages_in_the_apps_layout(browser_login, client):
    """No bare Werkzeug page: a 403 or 404 of a screen keeps the navbar and the theme; JSON callers keep JSON."""
    manager = browser_login("manager")
    refused = manager.get("/taskview/add")  # Managers add no tasks
    html = refused.get_data(as_text=True)
    assert refused.status_code == 403 and "crm/theme.css" in html and 'data-status="403"' in html
    assert "このページを開く権限がありません" in html
    missing = manager.get("/no-such-screen/")
    assert missing.status_code == 404 and 'data-status="404"' in missing.get_data(as_text=True)
    assert manager.get("/taskview/show/not-a-uuid").status_code == 404
    as_json = manager.get("/no-such-screen/", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and "crm/theme.css" not in as_json.get_data(as_text=True)
    assert client.get("/api/no-such-thing").is_json


def test_audit_log_shows_action_labels(browser_login):
    html = browser_login("manager").get("/auditlogview/list/?_flt_0_action=LOGIN").get_data(as_text=True)
    assert "crm-badge-audit-LOGIN" in html and ">LOGIN<" not in html


def test_inbox_and_request_page_show_the_profile_label(browser_login, make):
    customer = make.customer("sales", investment_profile="conservative", risk_tolerance=5)
    req = make.approval("sales", customer=customer)
    manager = browser_login("manager")
    page = manager.get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert "安定型" in page and ">conservative<" not in page
    inbox = manager.get("/approvals/pending/").get_data(as_text=True)
    assert ">conservative<" not in inbox


def test_customer_page_shows_labels_not_codes(browser_login, make):
    customer = make.customer("sales", investment_profile="moderate", size="SMALL")
    make.task("sales", customer=customer, title=f"顧客ページ{uuid.uuid4().hex[:6]}")
    make.meeting("sales", customer=customer)
    html = browser_login("sales").get(f"/customerview/show/{customer.id}").get_data(as_text=True)
    text = re.sub(r"<[^>]+>", " ", html)
    for code in ("moderate", "TODO", "MEDIUM", "URGENT", "SMALL", "visit"):
        assert f" {code} " not in f" {text} ".replace("\n", " "), code
    assert "未着手" in html and "中庸型" in html and ">緊急<" in html


def test_show_pages_show_labels_not_codes(browser_login, make):
    customer = make.customer("sales", investment_profile="aggressive", size="ENTERPRISE")
    task = make.task("sales", customer=customer, priority="URGENT")
    meeting = make.meeting("sales", customer=customer)
    c = browser_login("sales")
    for path, codes, labels in (
        (f"/taskview/show/{task.id}", ("TODO", "URGENT"), ("未着手", "緊急")),
        (f"/meetingview/show/{meeting.id}", ("visit", "scheduled"), ("訪問",)),
    ):
        html = c.get(path).get_data(as_text=True)
        text = " " + re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)) + " "
        for code in codes:
            assert f" {code} " not in text, (path, code)
        for label in labels:
            assert label in html, (path, label)
