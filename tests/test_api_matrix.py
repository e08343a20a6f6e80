"""Each /api endpoint × each role × own and another rep's record.

Records belong to "sales" (the Sales caller's own) or "sales2" (another rep's). The
expected answer is: 403 when the role lacks the permission (design.md §3), 404 when the
record is outside the caller's scope (a Sales user and another rep's record), else the
endpoint's success status.
"""

import pytest

CALLERS = ["admin", "manager", "compliance", "sales"]
OWNERS = ["sales", "sales2"]

# Who may do what (design.md §3), written out independently of app/roles.py.
ALLOWED = {
    "customer:read": "admin manager compliance sales",
    "customer:edit": "admin manager sales",
    "customer:delete": "admin",
    "meeting:read": "admin manager compliance sales",
    "meeting:edit": "admin manager sales",
    "meeting:delete": "admin sales",
    "task:read": "admin manager compliance sales",
    "task:edit": "admin manager sales",
    "task:delete": "admin sales",
    "approval:read": "admin manager compliance sales",
    # An Admin holds every permission, but the service lets only the step's role decide.
    "approval:decide": "manager",
    # Only the requester recalls (design.md §4): an Admin may not recall a rep's request.
    "approval:recall": "sales",
}


def make_record(make, kind, owner):
    """A fresh record of `kind` owned by user key `owner`."""
    return {
        "customer": make.customer,
        "meeting": make.meeting,
        "task": make.task,
        "approval": make.approval,
    }[kind](owner)


# (kind, permission, method, path template, json body, success status)
CASES = [
    ("customer", "read", "get", "/api/customers/{id}", None, 200),
    ("customer", "edit", "put", "/api/customers/{id}", {"phone": "03-0000-0000"}, 200),
    ("customer", "delete", "delete", "/api/customers/{id}", None, 200),
    ("meeting", "read", "get", "/api/meetings/{id}", None, 200),
    ("meeting", "edit", "put", "/api/meetings/{id}", {"summary": "議事録"}, 200),
    ("meeting", "delete", "delete", "/api/meetings/{id}", None, 200),
    ("task", "read", "get", "/api/tasks/{id}", None, 200),
    ("task", "edit", "put", "/api/tasks/{id}", {"priority": "HIGH"}, 200),
    ("task", "edit", "patch", "/api/tasks/{id}/complete", None, 200),
    ("task", "delete", "delete", "/api/tasks/{id}", None, 200),
    ("approval", "read", "get", "/api/approvals/{id}", None, 200),
    ("approval", "decide", "post", "/api/approvals/{id}/approve", {"comment": "ok"}, 200),
    ("approval", "decide", "post", "/api/approvals/{id}/reject", {"comment": "リスク過大"}, 200),
    ("approval", "decide", "put", "/api/approvals/{id}", {"status": "APPROVED"}, 200),
    ("approval", "recall", "post", "/api/approvals/{id}/recall", None, 200),
    ("approval", "recall", "delete", "/api/approvals/{id}", None, 200),
]


def expected(caller, kind, permission, owner, success):
    """The one status the contract gives this combination."""
    if caller not in ALLOWED[f"{kind}:{permission}"].split():
        return {403}
    if caller == "sales" and owner != "sales":
        return {404}
    return {success}


@pytest.mark.parametrize("owner", OWNERS)
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("kind,permission,method,path,body,success", CASES, ids=[f"{c[2]} {c[3]}" for c in CASES])
def test_record_endpoint(client, auth, make, caller, owner, kind, permission, method, path, body, success):
    """One endpoint, one role, one owner: 403 / 404 / success as the contract says."""
    record = make_record(make, kind, owner)
    kwargs = {"headers": auth(caller)}
    if body is not None:
        kwargs["json"] = body
    resp = getattr(client, method)(path.format(id=record.id), **kwargs)
    want = expected(caller, kind, permission, owner, success)
    assert resp.status_code in want, resp.json
    if resp.status_code == 200:
        assert resp.json["success"] is True and resp.json["id"] == record.id
    else:
        assert set(resp.json) == {"error", "message", "details"}


LISTS = [
    ("customer", "/api/customers"),
    ("meeting", "/api/meetings"),
    ("task", "/api/tasks"),
    ("approval", "/api/approvals"),
]


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("kind,path", LISTS)
def test_lists_are_scoped(client, auth, make, caller, kind, path):
    """A Sales caller lists its own rows only; the other roles see both reps' rows."""
    own, other = make_record(make, kind, "sales"), make_record(make, kind, "sales2")
    ids = set()
    page = 1
    while True:
        resp = client.get(f"{path}?limit=100&page={page}", headers=auth(caller))
        assert resp.status_code == 200
        ids |= {row["id"] for row in resp.json["data"]}
        if page >= resp.json["pagination"]["totalPages"]:
            break
        page += 1
    assert own.id in ids
    assert (other.id in ids) is (caller != "sales")


@pytest.mark.parametrize("caller", CALLERS)
def test_create_endpoints(client, auth, make, users, caller):
    """POST per resource: allowed roles create (201), others 403; a Sales user cannot use another rep's customer."""
    own_customer = make.customer("sales", investment_profile="moderate")
    other_customer = make.customer("sales2", investment_profile="moderate")
    may_add = caller in ("admin", "sales")
    posts = [
        ("/api/customers", {"name": "新規顧客", "size": "SMALL"}),
        ("/api/meetings", {"customerId": "{cid}", "title": "商談", "date": "2026-12-01T10:00:00+09:00"}),
        ("/api/tasks", {"title": "電話", "customerId": "{cid}", "dueDate": "2026-12-01"}),
        ("/api/approvals", {"customerId": "{cid}", "productName": "投資信託", "amount": 500000, "productRisk": 3}),
    ]
    for path, body in posts:
        for customer, in_scope in ((own_customer, True), (other_customer, caller != "sales")):
            data = {k: (v.format(cid=customer.id) if isinstance(v, str) else v) for k, v in body.items()}
            resp = client.post(path, json=data, headers=auth(caller))
            if not may_add:
                assert resp.status_code == 403, (path, resp.json)
            elif path == "/api/customers" or in_scope:
                assert resp.status_code == 201, (path, resp.json)
                assert resp.json["id"] == resp.json["data"]["id"]
            else:
                # Another rep's customer is "not found" to a Sales user, named by field.
                assert resp.status_code == 400 and "customerId" in resp.json["details"], (path, resp.json)


@pytest.mark.parametrize("caller", CALLERS + ["sales2"])
def test_notifications_are_own_only(client, auth, users, db, caller):
    """Every role reads, marks and deletes only its own notifications; anyone else's is 404."""
    from models.notification import Notification, NotificationType

    other_key = "sales2" if caller != "sales2" else "sales"
    mine = Notification(user_id=users[caller].id, type=NotificationType.SYSTEM, title="自分宛")
    mine2 = Notification(user_id=users[caller].id, type=NotificationType.SYSTEM, title="自分宛2")
    theirs = Notification(user_id=users[other_key].id, type=NotificationType.SYSTEM, title="他人宛")
    db.session.add_all([mine, mine2, theirs])
    db.session.commit()
    h = auth(caller)
    listed = {n["id"] for n in client.get("/api/notifications?limit=100", headers=h).json["data"]}
    assert mine.id in listed and theirs.id not in listed
    unread = client.get("/api/notifications/unread-count", headers=h).json["data"]["count"]
    assert unread >= 2
    assert client.put(f"/api/notifications/{mine.id}/read", headers=h).json["data"]["isRead"] is True
    assert client.put(f"/api/notifications/{theirs.id}/read", headers=h).status_code == 404
    assert client.get("/api/notifications/unread-count", headers=h).json["data"]["count"] == unread - 1
    assert client.put("/api/notifications/read-all", headers=h).status_code == 200
    assert client.get("/api/notifications/unread-count", headers=h).json["data"]["count"] == 0
    assert client.delete(f"/api/notifications/{theirs.id}", headers=h).status_code == 404
    assert client.delete(f"/api/notifications/{mine2.id}", headers=h).status_code == 200
    db.session.expire_all()
    assert db.session.get(Notification, theirs.id).is_read is False


@pytest.mark.parametrize("caller", CALLERS)
def test_audit_endpoints(client, auth, make, users, caller):
    """Admin, Manager and Compliance read the audit log; Sales gets 403 on every audit path."""
    customer = make.customer("sales")
    paths = [
        "/api/audit",
        "/api/audit/stats",
        f"/api/audit/entity/customer/{customer.id}",
        f"/api/audit/user/{users['sales'].id}",
    ]
    for path in paths:
        resp = client.get(path, headers=auth(caller))
        if caller == "sales":
            assert resp.status_code == 403, path
            continue
        assert resp.status_code == 200, (path, resp.json)
    if caller == "sales":
        return
    history = client.get(f"/api/audit/entity/customer/{customer.id}", headers=auth(caller)).json["data"]
    assert [h["action"] for h in history] == ["CREATE"] and history[0]["userId"] == str(users["sales"].id)
    one = client.get(f"/api/audit/{history[0]['id']}", headers=auth(caller))
    assert one.status_code == 200 and one.json["data"]["resourceId"] == customer.id
    filtered = client.get("/api/audit?action=CREATE&resourceType=customer&limit=5", headers=auth(caller)).json
    assert filtered["data"] and all(r["action"] == "CREATE" for r in filtered["data"])
    stats = client.get("/api/audit/stats", headers=auth(caller)).json["data"]
    assert stats["byAction"]["CREATE"] >= 1 and stats["total"] >= stats["byAction"]["CREATE"]
    assert client.get("/api/audit/not-a-uuid", headers=auth(caller)).status_code == 404
    assert client.get("/api/audit/user/abc", headers=auth(caller)).status_code == 404
