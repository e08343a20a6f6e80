"""The access matrix of design.md §3 through the screens (FAB ModelViews, form posts).

Same expectations as the API matrix; a screen answers a missing permission with 403, an
out-of-scope id with 404, and a refused rule with a flashed message — nothing is written.
"""

import pytest

from tests.helpers import reload
from models import AuditLog, Notification, NotificationType
from tests.test_access_api import EXPECTED, RESOURCES, ROLES, _record

ROUTES = {
    "customer": "/customerview",
    "meeting": "/meetingview",
    "task": "/taskview",
    "approval": "/approvalrequestview",
}


def _form(make, resource, role, users):
    owner = "sales" if role in ("sales", "manager", "compliance") else "admin"
    customer = make.customer(owner, investment_profile="moderate")
    uid = str(users[role].id)
    if resource == "customer":
        return {"name": "株式会社画面登録", "size": "SMALL", "risk_tolerance": "4"}
    if resource == "meeting":
        return {"customer": customer.id, "title": "画面から商談", "scheduled_at": "2026-12-01 10:00:00"}
    if resource == "task":
        return {"title": "画面からタスク", "customer": customer.id, "user": uid, "status": "TODO", "priority": "HIGH"}
    return {"customer": customer.id, "product_name": "画面から申請", "amount": "1000000", "product_risk": "3"}


def _edit_form(rec, resource):
    """A full edit form for `rec` with one field changed (FAB forms post every field)."""
    if resource == "customer":
        return {"name": rec.name, "email": rec.email, "risk_tolerance": str(rec.risk_tolerance),
                "assigned_sales": str(rec.assigned_sales_id), "phone": "03-1111-2222"}, ("phone", "03-1111-2222")
    if resource == "meeting":
        return {"customer": rec.customer_id, "title": rec.title, "sales": str(rec.sales_id),
                "scheduled_at": rec.scheduled_at.strftime("%Y-%m-%d %H:%M:%S"), "location": "画面会議室"}, ("location", "画面会議室")
    if resource == "task":
        return {"title": rec.title, "user": str(rec.user_id), "customer": rec.customer_id or "",
                "status": "IN_PROGRESS", "priority": "LOW"}, ("priority", "LOW")
    return {"customer": rec.customer_id, "product_name": "書き換え", "amount": str(rec.amount)}, ("product_name", "書き換え")


def _value(obj, field):
    value = getattr(obj, field)
    return value.value if hasattr(value, "value") else value


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
def test_list_and_show(browser_login, make, role, resource):
    own = _record(make, resource, "sales")
    other = _record(make, resource, "sales2")
    c = browser_login(role)
    resp = c.get(f"{ROUTES[resource]}/list/?psize_{ROUTES[resource][1:].replace('view', '')}view=100")
    assert resp.status_code == 200
    assert c.get(f"{ROUTES[resource]}/show/{own.id}").status_code == 200
    assert c.get(f"{ROUTES[resource]}/show/{other.id}").status_code == (404 if role == "sales" else 200)


def test_sales_list_hides_other_reps_customers(browser_login, make):
    own = make.customer("sales", name="株式会社自分の顧客")
    other = make.customer("sales2", name="株式会社他人の顧客")
    html = browser_login("sales").get("/customerview/list/?_flt_0_name=株式会社").get_data(as_text=True)
    assert own.name in html
    assert other.name not in html


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
def test_add(browser_login, make, users, db, role, resource):
    data = _form(make, resource, role, users)
    model = RESOURCES[resource]
    before = db.session.query(model).count()
    resp = browser_login(role).post(f"{ROUTES[resource]}/add", data=data)
    assert resp.status_code in (200, 302, 403)
    db.session.expire_all()
    created = db.session.query(model).count() - before
    assert created == (1 if EXPECTED[role][resource]["create"] == 201 else 0), resp.get_data(as_text=True)[:300]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("ownership", ["own", "other"])
def test_edit(browser_login, make, db, role, resource, ownership):
    rec = _record(make, resource, "sales" if ownership == "own" else "sales2")
    rec_id = rec.id
    expected = EXPECTED[role][resource]["edit"][0 if ownership == "own" else 1]
    data, (field, value) = _edit_form(rec, resource)
    resp = browser_login(role).post(f"{ROUTES[resource]}/edit/{rec.id}", data=data)
    if expected == 404:
        assert resp.status_code == 404
    db.session.expire_all()
    fresh = reload(db, RESOURCES[resource], rec_id)
    assert (_value(fresh, field) == value) == (expected == 200), resp.get_data(as_text=True)[:300]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("ownership", ["own", "other"])
def test_delete(browser_login, make, db, role, resource, ownership):
    rec = _record(make, resource, "sales" if ownership == "own" else "sales2")
    rec_id = rec.id
    expected = EXPECTED[role][resource]["delete"][0 if ownership == "own" else 1]
    resp = browser_login(role).post(f"{ROUTES[resource]}/delete/{rec.id}")
    if expected == 404:
        assert resp.status_code == 404
    db.session.expire_all()
    fresh = reload(db, RESOURCES[resource], rec_id)
    gone = fresh is None or getattr(fresh, "deleted_at", None) is not None
    assert gone == (expected == 200)


@pytest.mark.parametrize("role,allowed", [("admin", True), ("manager", True), ("compliance", True), ("sales", False)])
def test_audit_log_screen(browser_login, make, role, allowed):
    make.customer("sales")
    c = browser_login(role)
    resp = c.get("/auditlogview/list/")
    assert (resp.status_code == 200) == allowed
    if not allowed:
        assert resp.status_code == 403
    # Read-only for everyone: no add, edit or delete routes answer with a form or an effect.
    assert c.get("/auditlogview/add").status_code in (403, 404)


def test_audit_log_rows_cannot_be_edited_or_deleted(browser_login, make, db):
    make.customer("sales")
    row = db.session.query(AuditLog).order_by(AuditLog.timestamp.desc()).first()
    c = browser_login("admin")
    c.post(f"/auditlogview/edit/{row.id}", data={"action": "LOGIN"})
    c.post(f"/auditlogview/delete/{row.id}")
    db.session.expire_all()
    fresh = reload(db, AuditLog, row.id)
    assert fresh is not None and fresh.action == row.action


def test_notifications_are_own_only(browser_login, users, db):
    mine = Notification(user_id=users["manager"].id, type=NotificationType.SYSTEM, title="自分宛て")
    theirs = Notification(user_id=users["sales"].id, type=NotificationType.SYSTEM, title="他人宛て")
    db.session.add_all([mine, theirs])
    db.session.commit()
    c = browser_login("manager")
    html = c.get("/notificationview/list/").get_data(as_text=True)
    assert "自分宛て" in html and "他人宛て" not in html
    assert c.get(f"/notificationview/show/{theirs.id}").status_code == 404
    assert c.get(f"/notificationview/show/{mine.id}").status_code == 200


def test_customer_page_shows_its_meetings_tasks_and_requests(browser_login, make):
    customer = make.customer("sales", investment_profile="moderate")
    make.meeting("sales", customer=customer, title="関連商談ABC")
    make.task("sales", customer=customer, title="関連タスクXYZ")
    make.approval("sales", customer=customer, product_name="関連申請ファンド")
    html = browser_login("sales").get(f"/customerview/show/{customer.id}").get_data(as_text=True)
    for text in ("関連商談ABC", "関連タスクXYZ", "関連申請ファンド"):
        assert text in html


def test_marking_read_on_the_screen_sets_read_at_like_the_api(browser_login, users, db):
    note = Notification(user_id=users["sales"].id, type=NotificationType.SYSTEM, title="既読テスト")
    db.session.add(note)
    db.session.commit()
    note_id = note.id
    # The bell's mark (a POST); the list screen has no edit form any more.
    browser_login("sales").post(f"/notifications/{note_id}/read")
    fresh = reload(db, Notification, note_id)
    assert fresh.is_read and fresh.read_at is not None
    # Unread again (the rule itself, whichever entry point changes the flag).
    from app.services.notifications import prepare_notification

    fresh.is_read = False
    prepare_notification(fresh, users["sales"], creating=False)
    assert fresh.read_at is None


# Each list screen, by what it lists: both reps' records match the filter, the scope decides.
LIST_SCREENS = {
    "customer": ("/customerview/list/?_flt_0_name={tag}", "name"),
    "meeting": ("/meetingview/list/?_flt_0_title={tag}", "title"),
    "task": ("/taskview/list/?_flt_0_title={tag}", "title"),
    "approval": ("/approvalrequestview/list/?_flt_0_product_name={tag}", "product_name"),
}


def _marked(make, resource, owner, text):
    customer = make.customer(owner, name=text if resource == "customer" else f"株式会社{text}", investment_profile="moderate", risk_tolerance=5)
    if resource == "customer":
        return customer
    if resource == "meeting":
        return make.meeting(owner, customer=customer, title=text)
    if resource == "task":
        return make.task(owner, customer=customer, title=text)
    return make.approval(owner, customer=customer, product_name=text)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(LIST_SCREENS))
def test_list_screens_list_what_the_scope_allows(browser_login, make, role, resource):
    """A list screen shows a Sales user their own rows only, every other role both reps' rows."""
    import uuid

    tag = f"一覧{uuid.uuid4().hex[:8]}"
    own, other = f"{tag}自分", f"{tag}他人"
    _marked(make, resource, "sales", own)
    _marked(make, resource, "sales2", other)
    path, _field = LIST_SCREENS[resource]
    resp = browser_login(role).get(path.format(tag=tag))
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert own in html
    assert (other in html) is (role != "sales"), (role, resource)


def test_approval_pages_list_the_callers_own_requests_and_inbox(browser_login, make):
    """My Requests lists the caller's requests only; the Manager's inbox lists both reps' pending ones, a rep's none."""
    import uuid

    tag = uuid.uuid4().hex[:8]
    own = make.approval("sales", product_name=f"自分の申請{tag}")
    other = make.approval("sales2", product_name=f"他人の申請{tag}")
    mine = browser_login("sales").get("/approvals/mine/").get_data(as_text=True)
    assert own.product_name in mine and other.product_name not in mine
    inbox = browser_login("manager").get("/approvals/pending/").get_data(as_text=True)
    assert own.product_name in inbox and other.product_name in inbox
    rep_inbox = browser_login("sales2").get("/approvals/pending/").get_data(as_text=True)
    assert own.product_name not in rep_inbox and other.product_name not in rep_inbox
