"""Constraints and validation: every enum, range and required field is a 400 naming the field.

Tried through the generated API and, for the database's own CHECK constraints, straight
against PostgreSQL, so a rule holds even for a writer that skips the services.
"""

import json

import pytest
import sqlalchemy as sa

from models import ApprovalRequest, Customer, Task


@pytest.fixture()
def customer(make):
    return make.customer("sales", investment_profile="moderate")


CASES = [
    # resource, body (customer id filled in), field named in the answer
    ("customer", {}, "name"),
    ("customer", {"name": ""}, "name"),
    ("customer", {"name": "x" * 201}, "name"),
    ("customer", {"name": "A", "size": "HUGE"}, "size"),
    ("customer", {"name": "A", "investment_profile": "reckless"}, "investment_profile"),
    ("customer", {"name": "A", "risk_tolerance": 0}, "risk_tolerance"),
    ("customer", {"name": "A", "risk_tolerance": 11}, "risk_tolerance"),
    ("customer", {"name": "A", "risk_tolerance": "high"}, "risk_tolerance"),
    ("customer", {"name": "A", "email": "not-an-email"}, "email"),
    ("meeting", {"title": "x", "scheduled_at": "2026-12-01T10:00:00Z"}, "customer"),
    ("meeting", {"customer": "@C", "scheduled_at": "2026-12-01T10:00:00Z"}, "title"),
    ("meeting", {"customer": "@C", "title": "x"}, "scheduled_at"),
    ("meeting", {"customer": "@C", "title": "x", "scheduled_at": "tomorrow"}, "scheduled_at"),
    ("meeting", {"customer": "@C", "title": "x" * 201, "scheduled_at": "2026-12-01T10:00:00Z"}, "title"),
    ("meeting", {"customer": "no-such-id", "title": "x", "scheduled_at": "2026-12-01T10:00:00Z"}, "customer"),
    ("task", {}, "title"),
    ("task", {"title": "x" * 201}, "title"),
    ("task", {"title": "x", "status": "DONE"}, "status"),
    ("task", {"title": "x", "priority": "CRITICAL"}, "priority"),
    ("task", {"title": "x", "due_date": "next week"}, "due_date"),
    ("approval", {"product_name": "F", "amount": 100}, "customer"),
    ("approval", {"customer": "@C", "amount": 100}, "product_name"),
    ("approval", {"customer": "@C", "product_name": "F"}, "amount"),
    ("approval", {"customer": "@C", "product_name": "F", "amount": 0}, "amount"),
    ("approval", {"customer": "@C", "product_name": "F", "amount": -5}, "amount"),
    ("approval", {"customer": "@C", "product_name": "F", "amount": "lots"}, "amount"),
    ("approval", {"customer": "@C", "product_name": "F", "amount": 100, "product_risk": 0}, "product_risk"),
    ("approval", {"customer": "@C", "product_name": "F", "amount": 100, "product_risk": 11}, "product_risk"),
]


@pytest.mark.parametrize("resource,body,field", CASES, ids=[f"{r}-{f}-{i}" for i, (r, _, f) in enumerate(CASES)])
def test_invalid_input_is_400_naming_the_field(client, auth, customer, db, resource, body, field):
    body = {k: (customer.id if v == "@C" else v) for k, v in body.items()}
    model = {"customer": Customer, "task": Task, "approval": ApprovalRequest}.get(resource)
    before = db.session.query(model).count() if model else None
    resp = client.post(f"/api/v1/{resource}/", json=body, headers=auth("sales"))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert field in json.dumps(resp.json["message"]), resp.json
    if model:
        db.session.expire_all()
        assert db.session.query(model).count() == before  # nothing half written


def test_assigning_to_unknown_user_is_400(client, auth):
    resp = client.post("/api/v1/customer/", json={"name": "A", "assigned_sales": 999999}, headers=auth("admin"))
    assert resp.status_code == 400 and "assignedSalesId" in json.dumps(resp.json)


def test_approval_amount_is_exact_decimal(client, auth, customer, db):
    resp = client.post(
        "/api/v1/approval/",
        json={"customer": customer.id, "product_name": "F", "amount": "12345678.9"},
        headers=auth("sales"),
    )
    assert resp.status_code == 201, resp.json
    row = db.session.get(ApprovalRequest, resp.json["id"])
    assert str(row.amount) == "12345678.90"
    resp = client.post(
        "/api/v1/approval/",
        json={"customer": customer.id, "product_name": "F", "amount": "1.234"},
        headers=auth("sales"),
    )
    assert resp.status_code == 400 and "amount" in json.dumps(resp.json)


@pytest.mark.parametrize(
    "payload,content_type",
    [("{bad json", "application/json"), ("name=x", "application/x-www-form-urlencoded"), ("[1, 2]", "application/json")],
)
def test_malformed_bodies_are_400(client, auth, payload, content_type):
    resp = client.post("/api/v1/customer/", data=payload, content_type=content_type, headers=auth("sales"))
    assert resp.status_code == 400


def test_unknown_field_is_400(client, auth):
    resp = client.post("/api/v1/customer/", json={"name": "A", "deleted_at": "2020-01-01"}, headers=auth("sales"))
    assert resp.status_code == 400 and "deleted_at" in json.dumps(resp.json)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "0", "' OR 1=1 --", "%00"])
def test_bad_ids_are_404(client, auth, bad_id):
    for method in ("get", "put", "delete"):
        resp = getattr(client, method)(f"/api/v1/customer/{bad_id}", headers=auth("admin"), json={"name": "x"})
        assert resp.status_code == 404, (method, resp.status_code)


def test_bad_list_query_is_400(client, auth):
    assert client.get("/api/v1/customer/?q=(page_size:abc", headers=auth("sales")).status_code == 400
    assert client.get("/api/v1/customer/?q=(order_column:password)", headers=auth("sales")).status_code == 400


def test_duplicate_live_email_is_409_but_deleted_frees_it(client, auth, make, db):
    first = make.customer("sales", email="dup@example.jp")
    resp = client.post("/api/v1/customer/", json={"name": "B", "email": "DUP@example.jp"}, headers=auth("sales"))
    assert resp.status_code == 409 and "email" in json.dumps(resp.json)
    assert client.delete(f"/api/v1/customer/{first.id}", headers=auth("admin")).status_code == 200
    resp = client.post("/api/v1/customer/", json={"name": "B", "email": "dup@example.jp"}, headers=auth("sales"))
    assert resp.status_code == 201


def test_screen_rejects_out_of_range_without_writing(browser_login, db):
    before = db.session.query(Customer).count()
    resp = browser_login("sales").post(
        "/customerview/add", data={"name": "範囲外", "risk_tolerance": "11"}, follow_redirects=True
    )
    assert resp.status_code == 200
    assert "riskTolerance must be between 1 and 10" in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.query(Customer).count() == before


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO customers (id, name, risk_tolerance, created_at, updated_at) VALUES ('x1', 'n', 11, now(), now())",
        "INSERT INTO customers (id, name, risk_tolerance, size, created_at, updated_at) VALUES ('x2', 'n', 5, 'HUGE', now(), now())",
        "INSERT INTO tasks (id, user_id, title, status, priority, created_at, updated_at) "
        "VALUES ('x3', (SELECT min(id) FROM ab_user), 't', 'DONE', 'LOW', now(), now())",
        "INSERT INTO approval_requests (id, requester_id, customer_id, product_name, amount, status, requested_at, created_at, updated_at) "
        "VALUES ('x4', (SELECT min(id) FROM ab_user), (SELECT min(id) FROM customers), 'p', 0, 'PENDING', now(), now(), now())",
        "INSERT INTO approval_requests (id, requester_id, customer_id, product_name, amount, product_risk, status, requested_at, created_at, updated_at) "
        "VALUES ('x5', (SELECT min(id) FROM ab_user), (SELECT min(id) FROM customers), 'p', 10, 11, 'PENDING', now(), now(), now())",
    ],
)
def test_database_check_constraints(db, customer, sql):
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.text(sql))
    db.session.rollback()
