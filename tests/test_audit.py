"""Audit: every create, update and delete through any entry point writes an AuditLog row
(before/after, user, client IP) and its outbox events in the same transaction."""

import pytest
import sqlalchemy as sa

from app.context import acting_as
from tests.helpers import reload
from models import AuditAction, AuditLog, Customer, OutboxEvent
from tests.conftest import PASSWORD


def _audit(db, resource_id):
    db.session.expire_all()
    return (
        db.session.query(AuditLog)
        .filter(AuditLog.resource_id == str(resource_id))
        .order_by(AuditLog.timestamp)
        .all()
    )


def _events(db, aggregate_id):
    db.session.expire_all()
    return (
        db.session.query(OutboxEvent)
        .filter(OutboxEvent.aggregate_id == str(aggregate_id))
        .order_by(OutboxEvent.sequence)
        .all()
    )


def test_api_create_update_delete_are_audited_with_user_and_ip(client, auth, users, db):
    headers = {**auth("sales"), "X-Forwarded-For": "203.0.113.7"}
    resp = client.post("/api/v1/customer/", json={"name": "監査商事", "risk_tolerance": 3}, headers=headers)
    assert resp.status_code == 201
    cid = resp.json["id"]
    assert client.put(f"/api/v1/customer/{cid}", json={"risk_tolerance": 8}, headers=headers).status_code == 200
    assert client.delete(f"/api/v1/customer/{cid}", headers={**auth("admin"), "X-Forwarded-For": "198.51.100.2"}).status_code == 200

    rows = _audit(db, cid)
    assert [r.action for r in rows] == [AuditAction.CREATE, AuditAction.UPDATE, AuditAction.DELETE]
    create, update, delete = rows
    assert create.user_id == users["sales"].id and create.ip_address == "203.0.113.7"
    assert create.resource_type == "customer"
    assert create.changes["after"]["name"] == "監査商事"
    assert update.changes["before"]["risk_tolerance"] == 3 and update.changes["after"]["risk_tolerance"] == 8
    assert set(update.changes["after"]) == {"risk_tolerance"}  # only what the caller changed
    assert delete.user_id == users["admin"].id and delete.ip_address == "198.51.100.2"
    assert delete.changes["before"]["deleted_at"] is None and delete.changes["after"]["deleted_at"]

    events = _events(db, cid)
    assert [e.type for e in events] == ["CUSTOMER_CREATED", "CUSTOMER_UPDATED", "CUSTOMER_DELETED"]
    assert [e.sequence for e in events] == [1, 2, 3]
    env = events[0].envelope
    assert env["id"] == events[0].id and env["aggregateType"] == "customer" and env["aggregateId"] == cid
    assert env["actorId"] == str(users["sales"].id) and env["payload"]["name"] == "監査商事"
    assert events[0].topic == "customer.events" and events[0].key == cid


def test_screen_edit_is_audited(browser_login, make, users, db):
    rec = make.customer("sales", phone="03-0000-0000")
    data = {"name": rec.name, "email": rec.email, "risk_tolerance": "5", "assigned_sales": str(users["sales"].id), "phone": "03-9999-9999"}
    browser_login("manager").post(f"/customerview/edit/{rec.id}", data=data)
    update = [r for r in _audit(db, rec.id) if r.action == AuditAction.UPDATE][-1]
    assert update.user_id == users["manager"].id
    assert update.ip_address == "127.0.0.1"
    assert update.changes["before"]["phone"] == "03-0000-0000"
    assert update.changes["after"]["phone"] == "03-9999-9999"


def test_worker_write_is_attributed_without_ip(db, users):
    with acting_as(users["sales2"]):
        c = Customer(name="ワーカー作成", assigned_sales_id=users["sales2"].id)
        db.session.add(c)
        db.session.commit()
    (row,) = _audit(db, c.id)
    assert row.user_id == users["sales2"].id and row.ip_address is None


def test_rolled_back_transaction_leaves_nothing(db, users):
    with acting_as(users["sales"]):
        c = Customer(name="取り消し", assigned_sales_id=users["sales"].id)
        db.session.add(c)
        db.session.flush()  # the audit row and the event are written inside the transaction
        cid = c.id
        assert db.session.query(OutboxEvent).filter_by(aggregate_id=cid).count() == 1
        db.session.rollback()
    assert _audit(db, cid) == [] and _events(db, cid) == []
    assert reload(db, Customer, cid) is None


def test_task_and_meeting_events_use_customer_key(make, db):
    customer = make.customer("sales")
    task = make.task("sales", customer=customer)
    meeting = make.meeting("sales", customer=customer)
    (task_event,) = _events(db, task.id)
    (meeting_event,) = _events(db, meeting.id)
    assert task_event.type == "TASK_CREATED" and task_event.key == customer.id
    assert task_event.topic == "sales-activity.events"
    assert meeting_event.type == "MEETING_CREATED" and meeting_event.key == customer.id
    loose = make.task("sales")
    assert _events(db, loose.id)[0].key == loose.id


def test_completing_a_task_emits_task_completed(client, auth, make, db):
    task = make.task("sales")
    assert client.put(f"/api/v1/task/{task.id}", json={"status": "COMPLETED"}, headers=auth("sales")).status_code == 200
    types = [e.type for e in _events(db, task.id)]
    assert types == ["TASK_CREATED", "TASK_COMPLETED"]
    db.session.expire_all()
    assert reload(db, type(task), task.id).completed_at is not None


def test_user_creation_is_audited_without_password_and_emits_user_created(app, db):
    from app.services.users import create_user

    user = create_user("audited-user@example.com", "監査 次郎", "Sales", "s3cret-pass")
    (row,) = _audit(db, user.id)
    assert row.resource_type == "user" and row.action == AuditAction.CREATE
    assert "password" not in row.changes["after"]
    (event,) = _events(db, user.id)
    assert event.type == "USER_CREATED" and event.topic == "user.events"
    assert event.envelope["payload"]["email"] == "audited-user@example.com"
    assert event.envelope["payload"]["roles"] == ["Sales"]


@pytest.mark.parametrize("good", [True, False])
def test_logins_are_audited(client, users, db, good):
    before = db.session.execute(sa.select(sa.func.count()).select_from(AuditLog)).scalar()
    resp = client.post(
        "/api/v1/security/login",
        json={"username": users["compliance"].email, "password": PASSWORD if good else "wrong-password", "provider": "db"},
    )
    assert resp.status_code == (200 if good else 401)
    db.session.expire_all()
    last = db.session.query(AuditLog).order_by(AuditLog.timestamp.desc()).first()
    assert db.session.execute(sa.select(sa.func.count()).select_from(AuditLog)).scalar() > before
    assert last.action == (AuditAction.LOGIN if good else AuditAction.LOGIN_FAILED)
    assert last.user_id == users["compliance"].id


def test_unknown_user_login_failure_is_audited(client, db):
    resp = client.post("/api/v1/security/login", json={"username": "nobody@example.com", "password": "whatever1", "provider": "db"})
    assert resp.status_code == 401
    db.session.expire_all()
    last = db.session.query(AuditLog).order_by(AuditLog.timestamp.desc()).first()
    assert last.action == AuditAction.LOGIN_FAILED and last.user_id is None
    assert last.changes == {"username": "nobody@example.com"}


# ---- issue 18 item 9: password changes are audited, never with the hash -----------------


def _user_rows(db, user_id):
    db.session.expire_all()
    return db.session.query(AuditLog).filter(AuditLog.resource_type == "user", AuditLog.resource_id == str(user_id)).order_by(AuditLog.timestamp).all()


def test_password_changes_are_audited_without_the_hash(app, db, new_user, browser_login, users):
    """Own change: PASSWORD_CHANGED by the user; an Admin's or the CLI's reset: PASSWORD_RESET by them; a login's rehash: nothing."""
    from flask_appbuilder.cli import reset_password

    user = new_user()
    session = app.test_client()
    assert session.post("/login/", data={"username": user.email, "password": PASSWORD}).status_code == 302
    own = session.post("/resetmypassword/form", data={"current_password": PASSWORD, "password": "own-new-pass-1", "conf_password": "own-new-pass-1"})
    assert own.status_code == 302
    admin = browser_login("admin").post(f"/resetpassword/form?pk={user.id}", data={"password": "admin-set-pass-2", "conf_password": "admin-set-pass-2"})
    assert admin.status_code == 302
    result = app.test_cli_runner().invoke(reset_password, ["--username", user.email, "--password", "cli-set-pass-3"])
    assert result.exit_code == 0, result.output
    rows = [r for r in _user_rows(db, user.id) if r.action in (AuditAction.PASSWORD_CHANGED, AuditAction.PASSWORD_RESET)]
    assert [(r.action, r.user_id) for r in rows] == [
        (AuditAction.PASSWORD_CHANGED, user.id),
        (AuditAction.PASSWORD_RESET, users["admin"].id),
        (AuditAction.PASSWORD_RESET, None),  # the CLI acts as the system
    ]
    assert rows[0].ip_address and rows[2].ip_address is None
    stored = app.appbuilder.sm.get_user_by_id(user.id).password
    for row in _user_rows(db, user.id):  # no row of this user, of any action, holds a hash
        text = repr(row.changes)
        assert "password" not in text and "$argon2" not in text and stored not in text, (row.action, text)


def test_a_login_that_rehashes_an_old_hash_is_not_a_password_change(app, db, client, new_user):
    """The upgrade of a legacy hash at login writes a new hash of the same password: no PASSWORD_* row."""
    from werkzeug.security import generate_password_hash

    user = new_user()
    sm = app.appbuilder.sm
    row = sm.get_user_by_id(user.id)
    row.password = generate_password_hash(PASSWORD, method="scrypt")
    sm.update_user(row)  # itself a reset (by the system), as any write of a new hash is
    before = len(_user_rows(db, user.id))
    assert client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD}).status_code == 200
    db.session.expire_all()
    assert sm.get_user_by_id(user.id).password.startswith("$argon2")
    assert [r.action for r in _user_rows(db, user.id)[before:]] == [AuditAction.LOGIN]
