"""The answers the seed's frontend and test suite read: nested records and role codes, per resource and role.

Written from the issue's contract (design.md §6), independently of views/api/nested.py.
"""

import uuid

import pytest

from tests.conftest import PASSWORD

ROLE_CODES = {"admin": "ADMIN", "manager": "MANAGER", "compliance": "COMPLIANCE", "sales": "SALES", "sales2": "SALES"}
READERS = ["admin", "manager", "compliance", "sales"]
USER_KEYS = {"id", "name", "email"}


def expect_user(nested, users, key, with_role=False):
    """`nested` is exactly the small user record of `users[key]`."""
    expected = {"id": str(users[key].id), "name": f"{key.title()} User", "email": users[key].email}
    if with_role:
        expected["role"] = ROLE_CODES[key]
    assert nested == expected


@pytest.fixture()
def records(make):
    """One of each record, all the Sales rep's (so every reading role sees them)."""
    customer = make.customer("sales", name=f"契約商事{uuid.uuid4().hex[:6]}", investment_profile="moderate", risk_tolerance=6)
    return {
        "customer": customer,
        "task": make.task("sales", customer=customer),
        "meeting": make.meeting("sales", customer=customer),
        "approval": make.approval("sales", customer=customer),
    }


def _find(client, auth, caller, path, record_id):
    resp = client.get(path, headers=auth(caller))
    assert resp.status_code == 200, resp.json
    found = [r for r in resp.json["data"] if r["id"] == record_id]
    assert len(found) == 1, (path, resp.json)
    return found[0]


def _both(client, auth, caller, list_path, detail_path, record_id):
    """The record as its list answers it and as its detail answers it (which agree)."""
    listed = _find(client, auth, caller, list_path, record_id)
    detail = client.get(detail_path, headers=auth(caller))
    assert detail.status_code == 200 and detail.json["id"] == record_id, detail.json
    return listed, detail.json["data"]


@pytest.mark.parametrize("caller", READERS)
def test_customer_nests_its_sales_rep(client, auth, users, records, caller):
    c = records["customer"]
    for data in _both(client, auth, caller, f"/api/customers?search={c.name}", f"/api/customers/{c.id}", c.id):
        assert data["assignedSalesId"] == str(users["sales"].id) and data["name"] == c.name
        expect_user(data["assignedSales"], users, "sales")


@pytest.mark.parametrize("caller", READERS)
def test_task_nests_its_customer_and_owner_with_role(client, auth, users, records, caller):
    t, c = records["task"], records["customer"]
    for data in _both(client, auth, caller, f"/api/tasks?customerId={c.id}&limit=100", f"/api/tasks/{t.id}", t.id):
        assert data["customerId"] == c.id and data["userId"] == str(users["sales"].id) and data["title"] == t.title
        assert data["customer"] == {"id": c.id, "name": c.name}
        expect_user(data["user"], users, "sales", with_role=True)


@pytest.mark.parametrize("caller", READERS)
def test_task_without_customer_nests_null(client, auth, users, make, caller):
    t = make.task("sales")
    for data in _both(client, auth, caller, f"/api/tasks?userId={users['sales'].id}&limit=100", f"/api/tasks/{t.id}", t.id):
        assert data["customerId"] is None and data["customer"] is None
        expect_user(data["user"], users, "sales", with_role=True)


@pytest.mark.parametrize("caller", READERS)
def test_meeting_nests_its_customer_and_sales_rep(client, auth, users, records, caller):
    m, c = records["meeting"], records["customer"]
    for data in _both(client, auth, caller, f"/api/meetings?customerId={c.id}", f"/api/meetings/{m.id}", m.id):
        assert data["customerId"] == c.id and data["salesId"] == str(users["sales"].id)
        assert data["customer"] == {"id": c.id, "name": c.name, "email": c.email}
        expect_user(data["sales"], users, "sales")
        assert data["type"] == "visit" and data["status"] == "scheduled"


@pytest.mark.parametrize("caller", READERS)
def test_approval_nests_customer_requester_and_approver(client, auth, users, records, caller):
    a, c = records["approval"], records["customer"]
    for data in _both(client, auth, caller, f"/api/approvals?customerId={c.id}", f"/api/approvals/{a.id}", a.id):
        assert data["customerId"] == c.id and data["requesterId"] == str(users["sales"].id)
        assert data["customer"] == {"id": c.id, "name": c.name, "email": c.email, "riskTolerance": 6, "investmentProfile": "moderate"}
        expect_user(data["requester"], users, "sales")
        assert data["approver"] is None and data["approverId"] is None  # undecided
        assert data["amount"] == "1000000" and data["status"] == "PENDING"


def test_decided_approval_nests_its_approver(client, auth, users, records):
    a = records["approval"]
    decided = client.post(f"/api/approvals/{a.id}/approve", json={"comment": "適合性確認済み"}, headers=auth("manager"))
    assert decided.status_code == 200, decided.json
    expect_user(decided.json["data"]["approver"], users, "manager")
    for caller in READERS:
        listed = _find(client, auth, caller, f"/api/approvals?customerId={records['customer'].id}", a.id)
        expect_user(listed["approver"], users, "manager")
        assert listed["approverId"] == str(users["manager"].id)


@pytest.mark.parametrize("caller", ["admin", "manager", "compliance"])
def test_audit_rows_nest_their_user_with_role(client, auth, users, records, caller):
    t = records["task"]
    rows = client.get(f"/api/audit?resourceId={t.id}", headers=auth(caller)).json["data"]
    assert rows and all(r["userId"] == str(users["sales"].id) for r in rows)
    for row in rows:
        expect_user(row["user"], users, "sales", with_role=True)
        detail = client.get(f"/api/audit/{row['id']}", headers=auth(caller)).json["data"]
        expect_user(detail["user"], users, "sales", with_role=True)
    history = client.get(f"/api/audit/entity/task/{t.id}", headers=auth(caller)).json["data"]
    assert [r["user"]["role"] for r in history] == ["SALES"] * len(history)


def test_audit_rows_of_other_roles_and_of_the_system(client, auth, users, db):
    """A Compliance user's own row nests role COMPLIANCE (the frontend's audit card); a system row nests null."""
    from app import audit
    from models.audit import AuditAction

    assert client.post("/api/auth/login", json={"email": users["compliance"].email, "password": PASSWORD}).status_code == 200
    rows = client.get(f"/api/audit?userId={users['compliance'].id}&action=LOGIN", headers=auth("admin")).json["data"]
    assert rows and rows[0]["user"]["role"] == "COMPLIANCE"
    audit.record(db.session, AuditAction.UPDATE, "system", "nightly", None, user_id=None)
    db.session.commit()
    rows = client.get("/api/audit?resourceType=system&resourceId=nightly", headers=auth("admin")).json["data"]
    assert rows and rows[0]["userId"] is None and rows[0]["user"] is None


def test_sales_reads_no_audit(client, auth):
    assert client.get("/api/audit", headers=auth("sales")).status_code == 403


@pytest.mark.parametrize("key", ["admin", "manager", "compliance", "sales"])
def test_login_refresh_and_me_answer_the_seeds_role_codes(client, users, key):
    """user.role is ADMIN, MANAGER, COMPLIANCE or SALES in every auth answer (FAB's names stay in /api/v1)."""
    login = client.post("/api/auth/login", json={"email": users[key].email, "password": PASSWORD})
    assert login.status_code == 200, login.json
    body = login.json
    assert body["user"]["role"] == body["data"]["user"]["role"] == ROLE_CODES[key]
    assert body["user"]["roles"] == [ROLE_CODES[key]]
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['token']}"}).json
    assert me["data"]["role"] == me["user"]["role"] == ROLE_CODES[key]
    refreshed = client.post("/api/auth/refresh", headers={"Authorization": f"Bearer {body['refreshToken']}"})
    assert refreshed.status_code == 200, refreshed.json
    assert refreshed.json["user"]["role"] == refreshed.json["data"]["user"]["role"] == ROLE_CODES[key]
    assert refreshed.json["token"]


def test_register_answers_role_codes_and_takes_them_from_an_admin(client, auth):
    made = client.post(
        "/api/auth/register", json={"email": f"rc-{uuid.uuid4().hex[:8]}@example.com", "password": "Password123!", "name": "新人"}
    )
    assert made.status_code == 201 and made.json["role"] == made.json["user"]["role"] == "SALES"
    made = client.post(
        "/api/auth/register",
        json={"email": f"rc-{uuid.uuid4().hex[:8]}@example.com", "password": "Password123!", "name": "審査", "role": "COMPLIANCE"},
        headers=auth("admin"),
    )
    assert made.status_code == 201 and made.json["role"] == "COMPLIANCE" and made.json["data"]["user"]["role"] == "COMPLIANCE"


def test_fab_api_keeps_fabs_role_names(client, auth, users):
    """/api/v1's user info and FAB's login keep FAB's names."""
    resp = client.get("/api/v1/security/users/", headers=auth("admin"))
    if resp.status_code == 404:  # FAB's user API off: the token's claims name the role
        import jwt

        login = client.post("/api/v1/security/login", json={"username": users["compliance"].email, "password": PASSWORD, "provider": "db"})
        claims = jwt.decode(login.json["access_token"], options={"verify_signature": False})
        assert claims["roles"] == ["Compliance"]
    else:
        names = {r["name"] for u in resp.json["result"] for r in u["roles"]}
        assert "Compliance" in names and "COMPLIANCE" not in names


def test_a_wrong_login_says_invalid_email_or_password(client, users):
    for body in ({"email": users["sales"].email, "password": "wrong-password"}, {"email": "nobody@example.com", "password": "whatever1"}):
        resp = client.post("/api/auth/login", json=body)
        assert resp.status_code == 401
        assert resp.json == {"error": "Unauthorized", "message": "Invalid email or password", "details": {}}
