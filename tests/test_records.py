"""Rules of app/services/records.py: ownership and references judged on what will be written.

FAB's form and generated API change a relationship (`meeting.customer = <other>`) while the
id column keeps its old value until flush; the attacks of issue 18 item 5 are replayed
through /api/v1, the /api blueprint and the edit screens.
"""

import re
import uuid

import pytest
import sqlalchemy as sa

from models import Customer, Meeting, Task
from tests.helpers import reload


def form_token(client, url):
    """The CSRF token of the form at `url` ("" when the app does not put one in)."""
    page = client.get(url).get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', page)
    return match.group(1) if match else ""


# --- /api/v1 (FAB's generated API sets the relationship) -----------------------------------


def test_api_v1_put_cannot_move_a_meeting_to_another_reps_customer(client, auth, make, db):
    meeting = make.meeting("sales")
    own_customer = meeting.customer_id
    foreign = make.customer("sales2")
    resp = client.put(f"/api/v1/meeting/{meeting.id}", json={"customer": foreign.id}, headers=auth("sales"))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert "customer" in resp.get_data(as_text=True)
    assert reload(db, Meeting, meeting.id).customer_id == own_customer


def test_api_v1_put_cannot_hand_a_task_to_compliance(client, auth, make, users, db):
    task = make.task("sales")
    resp = client.put(f"/api/v1/task/{task.id}", json={"user": users["compliance"].id}, headers=auth("sales"))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert "userId" in resp.get_data(as_text=True)
    assert reload(db, Task, task.id).user_id == users["sales"].id


def test_api_v1_put_cannot_move_a_task_or_customer_to_another_rep(client, auth, make, users, db):
    task = make.task("sales")
    customer = make.customer("sales")
    assert client.put(f"/api/v1/task/{task.id}", json={"user": users["sales2"].id},
                      headers=auth("sales")).status_code == 400
    assert client.put(f"/api/v1/customer/{customer.id}", json={"assigned_sales": users["sales2"].id},
                      headers=auth("sales")).status_code == 400
    assert reload(db, Task, task.id).user_id == users["sales"].id
    assert reload(db, Customer, customer.id).assigned_sales_id == users["sales"].id


def test_api_v1_post_judges_the_relationship_too(client, auth, make, db):
    foreign = make.customer("sales2")
    before = db.session.query(Meeting).count()
    resp = client.post("/api/v1/meeting/", json={"customer": foreign.id, "title": "他人の顧客",
                                                 "scheduled_at": "2026-12-01T10:00:00Z"}, headers=auth("sales"))
    assert resp.status_code == 400
    assert db.session.query(Meeting).count() == before


def test_manager_may_reassign_to_a_rep_but_not_to_compliance(client, auth, make, users, db):
    task = make.task("sales")
    meeting = make.meeting("sales")
    customer = make.customer("sales")
    for url, body in ((f"/api/v1/task/{task.id}", {"user": users["compliance"].id}),
                      (f"/api/v1/meeting/{meeting.id}", {"sales": users["compliance"].id}),
                      (f"/api/v1/customer/{customer.id}", {"assigned_sales": users["compliance"].id})):
        resp = client.put(url, json=body, headers=auth("manager"))
        assert resp.status_code == 400 and "cannot own" in resp.get_data(as_text=True), (url, resp.json)
    resp = client.put(f"/api/v1/task/{task.id}", json={"user": users["sales2"].id}, headers=auth("manager"))
    assert resp.status_code == 200, resp.json
    assert reload(db, Task, task.id).user_id == users["sales2"].id
    # The /api blueprint sets the column instead: same rule.
    resp = client.put(f"/api/tasks/{task.id}", json={"userId": str(users["compliance"].id)}, headers=auth("manager"))
    assert resp.status_code == 400
    assert reload(db, Task, task.id).user_id == users["sales2"].id


def test_an_inactive_user_cannot_be_handed_records(app, client, auth, make, db):
    from app.services.users import create_user

    leaver = create_user(f"leaver-{uuid.uuid4().hex[:8]}@example.com", "Leaver Rep", "Sales", "pass-12345")
    leaver.active = False
    db.session.commit()
    task = make.task("sales")
    resp = client.put(f"/api/v1/task/{task.id}", json={"user": leaver.id}, headers=auth("manager"))
    assert resp.status_code == 400 and "no active user" in resp.get_data(as_text=True)


def test_a_row_held_by_an_impossible_owner_is_handed_on_at_its_next_edit(client, auth, make, users, db):
    """The owner is judged on every write: a row written past the rules gets a real owner when next edited."""
    task = make.task("compliance")  # written straight, past the rules
    resp = client.put(f"/api/v1/task/{task.id}", json={"title": "見直し"}, headers=auth("manager"))
    assert resp.status_code == 400 and "userId" in resp.get_data(as_text=True)
    resp = client.put(f"/api/v1/task/{task.id}", json={"title": "見直し", "user": users["sales2"].id},
                      headers=auth("manager"))
    assert resp.status_code == 200, resp.json
    fresh = reload(db, Task, task.id)
    assert (fresh.title, fresh.user_id) == ("見直し", users["sales2"].id)


# --- the edit screens (FAB's form sets the relationship) --------------------------------------


def _task_form(task, **changes):
    data = {"title": task.title, "user": str(task.user_id), "customer": task.customer_id or "",
            "status": "TODO", "priority": "MEDIUM"}
    data.update(changes)
    return data


def test_task_edit_screen_cannot_save_a_foreign_customer(browser_login, make, db):
    own = make.customer("sales")
    task = make.task("sales", customer=own)
    foreign = make.customer("sales2")
    sales = browser_login("sales")
    url = f"/taskview/edit/{task.id}"
    sales.post(url, data={**_task_form(task, customer=foreign.id), "csrf_token": form_token(sales, url)})
    assert reload(db, Task, task.id).customer_id == own.id
    # The same form with one of the rep's own customers is saved (the refusal above was the rule).
    second = make.customer("sales")
    sales.post(url, data={**_task_form(task, customer=second.id), "csrf_token": form_token(sales, url)})
    assert reload(db, Task, task.id).customer_id == second.id


def test_task_edit_screen_cannot_hand_the_task_to_compliance(browser_login, make, users, db):
    task = make.task("sales")
    url = f"/taskview/edit/{task.id}"
    for role in ("sales", "manager"):
        c = browser_login(role)
        c.post(url, data={**_task_form(task, user=str(users["compliance"].id)), "csrf_token": form_token(c, url)})
        assert reload(db, Task, task.id).user_id == users["sales"].id, role


def test_meeting_edit_screen_cannot_move_to_a_foreign_customer(browser_login, make, db):
    meeting = make.meeting("sales")
    own_customer = meeting.customer_id
    foreign = make.customer("sales2")
    sales = browser_login("sales")
    url = f"/meetingview/edit/{meeting.id}"
    data = {"customer": foreign.id, "title": meeting.title, "sales": str(meeting.sales_id),
            "scheduled_at": meeting.scheduled_at.strftime("%Y-%m-%d %H:%M:%S"), "csrf_token": form_token(sales, url)}
    sales.post(url, data=data)
    assert reload(db, Meeting, meeting.id).customer_id == own_customer


# --- the service itself (workers, imports) -------------------------------------------------


def test_related_id_prefers_a_changed_relationship(make, db):
    from app.services.records import related_id

    meeting = reload(db, Meeting, make.meeting("sales").id)
    other = make.customer("sales2")
    assert related_id(meeting, "customer_id", "customer") == meeting.customer_id
    meeting.customer = db.session.get(Customer, other.id)
    assert meeting.customer_id != other.id  # what FAB leaves behind until flush
    assert related_id(meeting, "customer_id", "customer") == other.id
    db.session.rollback()
    meeting = reload(db, Meeting, meeting.id)
    meeting.customer_id = other.id  # the /api blueprint's way: the column, relationship untouched
    assert related_id(meeting, "customer_id", "customer") == other.id
    db.session.rollback()


def test_prepare_task_refuses_a_relationship_change_from_any_caller(app, make, users, db):
    from app.services.errors import ValidationFailed
    from app.services.records import prepare_task

    own, foreign = make.customer("sales"), make.customer("sales2")
    task = reload(db, Task, make.task("sales", customer=own).id)
    foreign = db.session.get(Customer, foreign.id)
    assert task.customer_id == own.id
    task.customer = foreign
    with pytest.raises(ValidationFailed):
        prepare_task(task, users["sales"], creating=False)
    db.session.rollback()


# --- e-mail addresses (issue 18 item 12) ----------------------------------------------------

BAD_EMAILS = ["a@x, b@y", "a@x.jp, b@y.jp", "not-an-email", "a b@example.jp", "<a@example.jp>",
              "Taro <a@example.jp>", "a@localhost", "a@@example.jp", "a@example..jp", "@example.jp", "a@"]


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_customer_email_is_one_real_address_on_every_entry_point(client, auth, make, db, email):
    before = db.session.query(Customer).count()
    resp = client.post("/api/customers", json={"name": "宛先検証", "email": email}, headers=auth("sales"))
    assert resp.status_code == 400 and resp.json["details"].get("email"), resp.json
    resp = client.post("/api/v1/customer/", json={"name": "宛先検証", "email": email}, headers=auth("sales"))
    assert resp.status_code == 400 and "email" in resp.get_data(as_text=True)
    customer = make.customer("sales")
    resp = client.put(f"/api/customers/{customer.id}", json={"email": email}, headers=auth("sales"))
    assert resp.status_code == 400 and resp.json["details"].get("email")
    assert db.session.query(Customer).count() == before + 1
    assert reload(db, Customer, customer.id).email == customer.email


def test_customer_email_is_normalised(client, auth, db):
    resp = client.post("/api/customers", json={"name": "正規化", "email": f"  Taro.{uuid.uuid4().hex[:6]}@Example.JP "},
                       headers=auth("sales"))
    assert resp.status_code == 201, resp.json
    assert re.fullmatch(r"taro\.[0-9a-f]{6}@example\.jp", resp.json["data"]["email"])


def test_customer_screen_refuses_a_list_of_addresses(browser_login, db):
    before = db.session.query(Customer).count()
    sales = browser_login("sales")
    resp = sales.post("/customerview/add", data={"name": "画面宛先", "email": "a@x.jp, b@y.jp", "risk_tolerance": "5",
                                                 "csrf_token": form_token(sales, "/customerview/add")},
                      follow_redirects=True)
    assert resp.status_code == 200
    assert db.session.query(Customer).count() == before


@pytest.mark.parametrize("email", ["a@x, b@y", "a@x.jp, b@y.jp", "x@localhost", "a b@example.jp"])
def test_register_refuses_non_addresses(client, db, email):
    from flask_appbuilder.security.sqla.models import User

    resp = client.post("/api/auth/register", json={"email": email, "password": "pass-12345", "name": "Bad Address"})
    assert resp.status_code == 400 and resp.json["details"].get("email"), resp.json
    assert db.session.execute(sa.select(User).where(User.email == email.lower())).first() is None


def test_create_user_command_refuses_non_addresses(app):
    result = app.test_cli_runner().invoke(args=["crm", "create-user", "--email", "a@x, b@y", "--name", "N",
                                                "--role", "Sales", "--password", "pass-12345"])
    assert result.exit_code != 0 and "--email" in result.output, result.output


# --- task completion at the same moment (issue 18 item 14) ---------------------------------------


def test_two_completions_at_once_complete_the_task_once_on_every_database(every_db):
    import threading

    from app.context import acting_as
    from app.extensions import db as _db
    from app.services.records import complete_task
    from models import AuditLog, OutboxEvent
    from models.base import utcnow

    application, people = every_db
    with application.app_context():
        with acting_as(people["sales"]):
            task = Task(user_id=people["sales"].id, created_by_id=people["sales"].id, title="同時に完了", due_date=utcnow())
            _db.session.add(task)
            _db.session.commit()
            task_id = task.id
        _db.session.remove()
    barrier, outcomes = threading.Barrier(2), []

    def complete():
        with application.app_context():
            with acting_as(people["sales"]):
                row = _db.session.get(Task, task_id)
                assert row.status.value == "TODO"
                barrier.wait()  # both read the open task before either writes
                outcomes.append(complete_task(row))
                _db.session.commit()
            _db.session.remove()

    threads = [threading.Thread(target=complete) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == [False, True]
    with application.app_context():
        completed = _db.session.execute(sa.select(sa.func.count()).select_from(OutboxEvent).where(
            OutboxEvent.aggregate_id == task_id, OutboxEvent.type == "TASK_COMPLETED")).scalar()
        updates = _db.session.execute(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.resource_id == task_id, AuditLog.action == "UPDATE")).scalar()
        row = _db.session.get(Task, task_id)
        assert (completed, updates, row.status.value) == (1, 1, "COMPLETED") and row.completed_at is not None
        _db.session.remove()


def test_completing_a_completed_task_changes_nothing(client, auth, make, db):
    task = make.task("sales")
    first = client.put(f"/api/tasks/{task.id}/complete", headers=auth("sales"))
    assert first.status_code == 200
    again = client.put(f"/api/tasks/{task.id}/complete", headers=auth("sales"))
    assert again.status_code == 200 and again.json["data"]["completedAt"] == first.json["data"]["completedAt"]


def test_admin_user_screen_refuses_a_list_of_addresses(app, browser_login, db):
    from flask_appbuilder.security.sqla.models import User

    admin = browser_login("admin")
    role = app.appbuilder.sm.find_role("Sales")

    def add(email):
        username = f"screen-{uuid.uuid4().hex[:6]}"
        admin.post("/users/add", data={"first_name": "Screen", "last_name": "User", "username": username,
                                       "active": "y", "email": email, "roles": str(role.id), "password": "pass-12345",
                                       "conf_password": "pass-12345", "csrf_token": form_token(admin, "/users/add")})
        db.session.expire_all()
        return db.session.execute(sa.select(User).where(User.username == username)).scalar_one_or_none()

    assert add("a@x.jp, b@y.jp") is None
    made = add(f"Screen.{uuid.uuid4().hex[:6]}@Example.JP")  # the same form with one address is saved
    assert made is not None and made.email == made.email.lower()
