"""The access matrix of design.md §3 through FAB's generated API (/api/v1).

Each role × each resource × own and another rep's record × list, get, create, edit,
delete. "own" is a record of the `sales` user, "other" one of `sales2`; for Admin,
Manager and Compliance both are someone else's.
"""

from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import reload
from models import ApprovalRequest, Customer, Meeting, Task

RESOURCES = {
    "customer": Customer,
    "meeting": Meeting,
    "task": Task,
    "approval": ApprovalRequest,
}
ROLES = ["admin", "manager", "compliance", "sales"]

# role -> resource -> {action: expected status}; "own"/"other" split where scope matters.
EXPECTED = {
    "admin": {
        "customer": {"create": 201, "edit": (200, 200), "delete": (200, 200)},
        "meeting": {"create": 201, "edit": (200, 200), "delete": (200, 200)},
        "task": {"create": 201, "edit": (200, 200), "delete": (200, 200)},
        # A submitted request is locked and kept: even an Admin edit or delete is a conflict.
        "approval": {"create": 201, "edit": (409, 409), "delete": (409, 409)},
    },
    "manager": {
        "customer": {"create": 403, "edit": (200, 200), "delete": (403, 403)},
        "meeting": {"create": 403, "edit": (200, 200), "delete": (403, 403)},
        "task": {"create": 403, "edit": (200, 200), "delete": (403, 403)},
        "approval": {"create": 403, "edit": (403, 403), "delete": (403, 403)},
    },
    "compliance": {
        "customer": {"create": 403, "edit": (403, 403), "delete": (403, 403)},
        "meeting": {"create": 403, "edit": (403, 403), "delete": (403, 403)},
        "task": {"create": 403, "edit": (403, 403), "delete": (403, 403)},
        "approval": {"create": 403, "edit": (403, 403), "delete": (403, 403)},
    },
    "sales": {
        # Sales: own only; another rep's record is not found (404), never 403.
        "customer": {"create": 201, "edit": (200, 404), "delete": (403, 403)},
        "meeting": {"create": 201, "edit": (200, 404), "delete": (200, 404)},
        "task": {"create": 201, "edit": (200, 404), "delete": (200, 404)},
        "approval": {"create": 201, "edit": (403, 403), "delete": (403, 403)},
    },
}


def _record(make, resource, owner):
    if resource == "customer":
        return make.customer(owner)
    if resource == "meeting":
        return make.meeting(owner)
    if resource == "task":
        return make.task(owner, customer=make.customer(owner))
    return make.approval(owner)


def _create_body(make, resource, role, users):
    # The caller creates for a customer in its own scope (Sales: its own customer).
    owner = "sales" if role in ("sales", "manager", "compliance") else "admin"
    customer = make.customer(owner, investment_profile="moderate")
    if resource == "customer":
        return {"name": "株式会社新規", "size": "SMALL", "risk_tolerance": 4}
    if resource == "meeting":
        return {"customer": customer.id, "title": "商談", "scheduled_at": "2026-12-01T10:00:00+09:00"}
    if resource == "task":
        return {"title": "電話する", "customer": customer.id, "priority": "HIGH", "status": "TODO"}
    return {"customer": customer.id, "product_name": "国内株式ファンド", "amount": 1000000, "product_risk": 3}


EDIT_BODY = {
    "customer": {"phone": "03-0000-0000"},
    "meeting": {"location": "オンライン"},
    "task": {"priority": "URGENT"},
    "approval": {"amount": 5},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
def test_list_and_get(client, auth, make, role, resource):
    """Everyone may list and read; Sales sees only its own rows, another rep's is 404."""
    own = _record(make, resource, "sales")
    other = _record(make, resource, "sales2")
    resp = client.get(f"/api/v1/{resource}/?q=(page_size:100,order_column:created_at,order_direction:desc)", headers=auth(role))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    ids = set(resp.json["ids"])
    assert own.id in ids
    if role == "sales":
        assert other.id not in ids
        assert all(r.get("id") != other.id for r in resp.json["result"])
    else:
        assert other.id in ids
    assert client.get(f"/api/v1/{resource}/{own.id}", headers=auth(role)).status_code == 200
    expected_other = 404 if role == "sales" else 200
    assert client.get(f"/api/v1/{resource}/{other.id}", headers=auth(role)).status_code == expected_other


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
def test_create(client, auth, make, users, db, role, resource):
    """Create is allowed exactly where the matrix says; the row exists only then."""
    body = _create_body(make, resource, role, users)
    model = RESOURCES[resource]
    before = db.session.query(model).count()
    resp = client.post(f"/api/v1/{resource}/", json=body, headers=auth(role))
    assert resp.status_code == EXPECTED[role][resource]["create"], resp.get_data(as_text=True)
    db.session.expire_all()
    after = db.session.query(model).count()
    assert after == before + (1 if resp.status_code == 201 else 0)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("ownership", ["own", "other"])
def test_edit(client, auth, make, db, role, resource, ownership):
    """Edit by id: allowed, forbidden (403), out of scope (404) or locked (409)."""
    rec = _record(make, resource, "sales" if ownership == "own" else "sales2")
    rec_id = rec.id
    expected = EXPECTED[role][resource]["edit"][0 if ownership == "own" else 1]
    resp = client.put(f"/api/v1/{resource}/{rec.id}", json=EDIT_BODY[resource], headers=auth(role))
    assert resp.status_code == expected, resp.get_data(as_text=True)
    db.session.expire_all()
    fresh = reload(db, RESOURCES[resource], rec_id)
    field, value = next(iter(EDIT_BODY[resource].items()))
    changed = getattr(fresh, field)
    changed = changed.value if hasattr(changed, "value") else changed
    assert (changed == value) == (expected == 200)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", list(RESOURCES))
@pytest.mark.parametrize("ownership", ["own", "other"])
def test_delete(client, auth, make, db, role, resource, ownership):
    """Delete by id; customers are soft-deleted (the row stays, hidden from everyone)."""
    rec = _record(make, resource, "sales" if ownership == "own" else "sales2")
    rec_id = rec.id
    expected = EXPECTED[role][resource]["delete"][0 if ownership == "own" else 1]
    resp = client.delete(f"/api/v1/{resource}/{rec.id}", headers=auth(role))
    assert resp.status_code == expected, resp.get_data(as_text=True)
    db.session.expire_all()
    fresh = reload(db, RESOURCES[resource], rec_id)
    if resource == "customer":
        assert fresh is not None
        assert (fresh.deleted_at is not None) == (expected == 200)
        if expected == 200:
            assert client.get(f"/api/v1/customer/{rec_id}", headers=auth("admin")).status_code == 404
    else:
        assert (fresh is None) == (expected == 200)


def test_no_token_is_401(client, make):
    rec = make.customer("sales")
    assert client.get("/api/v1/customer/").status_code == 401
    assert client.get(f"/api/v1/customer/{rec.id}").status_code == 401
    assert client.post("/api/v1/customer/", json={"name": "x"}).status_code == 401


def test_sales_cannot_assign_customer_to_another_rep(client, auth, users, make):
    resp = client.post(
        "/api/v1/customer/",
        json={"name": "株式会社横取り", "assigned_sales": users["sales2"].id},
        headers=auth("sales"),
    )
    assert resp.status_code == 400
    assert "assignedSalesId" in resp.json["message"]
    own = make.customer("sales")
    resp = client.put(f"/api/v1/customer/{own.id}", json={"assigned_sales": users["sales2"].id}, headers=auth("sales"))
    assert resp.status_code == 400


def test_sales_cannot_attach_records_to_another_reps_customer(client, auth, make):
    other_customer = make.customer("sales2")
    resp = client.post(
        "/api/v1/meeting/",
        json={"customer": other_customer.id, "title": "x", "scheduled_at": "2026-12-01T10:00:00Z"},
        headers=auth("sales"),
    )
    assert resp.status_code == 400
    resp = client.post("/api/v1/task/", json={"customer": other_customer.id, "title": "x"}, headers=auth("sales"))
    assert resp.status_code == 400
    resp = client.post(
        "/api/v1/approval/",
        json={"customer": other_customer.id, "product_name": "x", "amount": 100},
        headers=auth("sales"),
    )
    assert resp.status_code == 400


def test_manager_can_reassign_customer(client, auth, users, make, db):
    own = make.customer("sales")
    resp = client.put(f"/api/v1/customer/{own.id}", json={"assigned_sales": users["sales2"].id}, headers=auth("manager"))
    assert resp.status_code == 200
    db.session.expire_all()
    assert reload(db, Customer, own.id).assigned_sales_id == users["sales2"].id
    # Assigned to sales2 now, so sales2 sees it; sales still does as its creator (design §3).
    assert client.get(f"/api/v1/customer/{own.id}", headers=auth("sales2")).status_code == 200
    assert client.get(f"/api/v1/customer/{own.id}", headers=auth("sales")).status_code == 200


def test_timestamps_are_timezone_aware_utc(client, auth, make):
    rec = make.meeting("sales", scheduled_at=datetime(2026, 12, 1, 1, 0, tzinfo=timezone(timedelta(hours=9))))
    body = client.get(f"/api/v1/meeting/{rec.id}", headers=auth("sales")).json["result"]
    parsed = datetime.fromisoformat(body["scheduled_at"])
    assert parsed.utcoffset() == timedelta(0)
    assert parsed == datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)
