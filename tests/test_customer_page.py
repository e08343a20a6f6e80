"""The customer page: profile, suitability, related records, timeline, quick-add forms, scope."""

import sqlalchemy as sa

from app.context import acting_as
from models import AuditLog, Meeting, Task
from models.approval import ApprovalRequest
from models.outbox import OutboxEvent
from tests.helpers import reload


def _page(client, customer_id, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return client.get(f"/customerview/show/{customer_id}" + (f"?{query}" if query else ""))


def test_page_shows_profile_suitability_related_records_and_timeline(browser_login, make, users, db):
    customer = make.customer("sales", investment_profile=None, risk_tolerance=4, industry="製造業")
    make.meeting("sales", customer=customer, title="関連商談ABC")
    make.task("sales", customer=customer, title="関連タスクXYZ")
    make.approval("sales", customer=customer, product_name="関連申請ファンド")
    # Another rep's task on the same customer (a Manager handed it over): not in the Sales user's scope.
    make.task("sales2", customer=customer, title="他人のタスクQQQ")
    resp = _page(browser_login("sales"), customer.id)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    for text in ("関連商談ABC", "関連タスクXYZ", "関連申請ファンド", "製造業", 'data-suitability="no-profile"'):
        assert text in html, text
    assert "他人のタスクQQQ" not in html
    # The timeline: the customer's creation and each related record's, never the foreign task.
    assert 'data-resource="customer"' in html and 'data-action="CREATE"' in html
    assert 'data-resource="meeting"' in html and 'data-resource="approval_request"' in html
    # The Manager sees every record on the customer.
    assert "他人のタスクQQQ" in _page(browser_login("manager"), customer.id).get_data(as_text=True)


def test_another_reps_customer_is_not_found_and_cannot_be_added_to(browser_login, make, db):
    theirs = make.customer("sales2")
    c = browser_login("sales")
    assert _page(c, theirs.id).status_code == 404
    before = db.session.execute(sa.select(sa.func.count()).select_from(Meeting).where(Meeting.customer_id == theirs.id)).scalar()
    for kind, data in (
        ("meeting", {"title": "偽の商談", "scheduled_at": "2026-12-24T10:00"}),
        ("task", {"title": "偽のタスク"}),
        ("request", {"product_name": "偽の申請", "amount": "1000000"}),
    ):
        assert c.post(f"/customerview/show/{theirs.id}/add/{kind}", data=data).status_code == 404
    db.session.expire_all()
    assert db.session.execute(sa.select(sa.func.count()).select_from(Meeting).where(Meeting.customer_id == theirs.id)).scalar() == before
    assert db.session.execute(sa.select(Task.id).where(Task.customer_id == theirs.id, Task.title == "偽のタスク")).first() is None
    assert db.session.execute(sa.select(ApprovalRequest.id).where(ApprovalRequest.customer_id == theirs.id)).first() is None
    # A soft-deleted customer of one's own is gone too.
    from models.base import utcnow

    mine = make.customer("sales")
    mine.deleted_at = utcnow()
    db.session.commit()
    assert _page(c, mine.id).status_code == 404


def test_quick_add_meeting_writes_through_the_service_with_audit_and_event(browser_login, make, users, db):
    customer = make.customer("sales")
    c = browser_login("sales")
    resp = c.post(
        f"/customerview/show/{customer.id}/add/meeting",
        data={"title": "ページから商談", "scheduled_at": "2026-12-24T10:30", "type": "online", "location": "Zoom"},
    )
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/customerview/show/{customer.id}")
    meeting = db.session.execute(sa.select(Meeting).where(Meeting.customer_id == customer.id)).scalar_one()
    assert meeting.title == "ページから商談" and meeting.sales_id == users["sales"].id and meeting.type.value == "online"
    # 10:30 in Tokyo is 01:30 UTC.
    assert meeting.scheduled_at.isoformat().startswith("2026-12-24T01:30")
    assert db.session.execute(sa.select(AuditLog).where(AuditLog.resource_id == meeting.id, AuditLog.action == "CREATE")).scalar_one()
    assert db.session.execute(
        sa.select(OutboxEvent).where(OutboxEvent.aggregate_id == meeting.id, OutboxEvent.type == "MEETING_CREATED")
    ).scalar_one()
    html = _page(c, customer.id).get_data(as_text=True)
    assert f'data-resource-id="{meeting.id}"' in html and "ページから商談" in html


def test_quick_add_task_and_request(browser_login, make, users, db):
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    c = browser_login("sales")
    assert c.post(f"/customerview/show/{customer.id}/add/task", data={"title": "資料送付", "priority": "HIGH", "due_date": "2026-12-25T09:00"}).status_code == 302
    task = db.session.execute(sa.select(Task).where(Task.customer_id == customer.id, Task.title == "資料送付")).scalar_one()
    assert task.user_id == users["sales"].id and task.priority.value == "HIGH"
    assert c.post(f"/customerview/show/{customer.id}/add/request", data={"product_name": "外国債券", "amount": "¥2,000,000", "product_risk": "4"}).status_code == 302
    req = db.session.execute(sa.select(ApprovalRequest).where(ApprovalRequest.customer_id == customer.id)).scalar_one()
    assert req.status.value == "PENDING" and req.requester_id == users["sales"].id and int(req.amount) == 2_000_000
    assert db.session.execute(
        sa.select(OutboxEvent).where(OutboxEvent.aggregate_id == req.id, OutboxEvent.type == "APPROVAL_REQUESTED")
    ).scalar_one()


def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(browser_login, make, db):
    customer = make.customer("sales")
    c = browser_login("sales")
    cases = [
        ("meeting", {"title": "x", "scheduled_at": "明日"}, "scheduled_at"),
        ("meeting", {"title": "x"}, "scheduled_at"),
        ("meeting", {"title": "x", "scheduled_at": "2026-12-24T10:00", "type": "teleport"}, "type"),
        ("task", {"title": ""}, "title"),
        ("task", {"title": "x", "due_date": "2026-13-40T99:00"}, "due_date"),
        ("request", {"product_name": "x", "amount": "-5"}, "amount"),
        ("request", {"product_name": "x", "amount": "100", "product_risk": "high"}, "product_risk"),
    ]
    for kind, data, field in cases:
        resp = c.post(f"/customerview/show/{customer.id}/add/{kind}", data=data)
        assert resp.status_code == 400, (kind, data, resp.status_code)
        assert field in resp.get_data(as_text=True), (kind, field)
    assert c.post(f"/customerview/show/{customer.id}/add/nonsense", data={}).status_code == 404
    db.session.expire_all()
    for model in (Meeting, ApprovalRequest):
        assert db.session.execute(sa.select(model.id).where(model.customer_id == customer.id)).first() is None
    # Only the first-contact task the CUSTOMER_CREATED reaction made.
    assert db.session.execute(sa.select(sa.func.count()).select_from(Task).where(Task.customer_id == customer.id)).scalar() == 1


def test_quick_add_needs_the_csrf_token(browser_login, make, db):
    customer = make.customer("sales")
    resp = browser_login("sales").post(
        f"/customerview/show/{customer.id}/add/task", data={"title": "トークンなし"}, csrf=False
    )
    assert resp.status_code == 400
    assert db.session.execute(sa.select(Task.id).where(Task.customer_id == customer.id, Task.title == "トークンなし")).first() is None


def test_roles_without_the_add_permission_get_no_forms_and_403(browser_login, make, db):
    customer = make.customer("sales")
    for key in ("manager", "compliance"):
        c = browser_login(key)
        html = _page(c, customer.id).get_data(as_text=True)
        assert "quick-add-meeting" not in html and "quick-add-request" not in html
        assert c.post(f"/customerview/show/{customer.id}/add/meeting", data={"title": "x", "scheduled_at": "2026-12-24T10:00"}).status_code == 403
    assert "quick-add-meeting" in _page(browser_login("sales"), customer.id).get_data(as_text=True)
    assert db.session.execute(sa.select(Meeting.id).where(Meeting.customer_id == customer.id)).first() is None


def test_timeline_shows_changed_fields_before_and_after_and_who(browser_login, make, users, db):
    customer = make.customer("sales", phone="03-0000-0000")
    c = browser_login("manager")
    fresh = reload(db, type(customer), customer.id)
    with acting_as(users["manager"]):
        fresh.phone = "03-1234-5678"
        db.session.commit()
    html = _page(c, customer.id).get_data(as_text=True)
    assert 'data-action="UPDATE"' in html and 'data-field="phone"' in html
    assert "03-0000-0000" in html and "03-1234-5678" in html and "Manager User" in html
