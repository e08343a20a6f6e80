"""/api/approvals: submission through the service and the decision body's rules.

The transitions themselves are covered per role by test_api_matrix.py and, in depth, by
test_approvals.py (the service) and test_approval_views.py.
"""


def test_submit_routes_steps_via_the_service(client, auth, make):
    """POST /api/approvals runs the service's submit: PENDING with the routed steps and reasons."""
    customer = make.customer("sales", investment_profile=None, risk_tolerance=3)
    resp = client.post(
        "/api/approvals",
        json={"customerId": customer.id, "productName": "仕組債", "amount": "25000000.50", "productRisk": 8, "comment": "初回"},
        headers=auth("sales"),
    )
    assert resp.status_code == 201, resp.json
    data = resp.json["data"]
    assert data["status"] == "PENDING" and data["amount"] == "25000000.50"
    assert [s["requiredRole"] for s in data["steps"]] == ["Manager", "Compliance"]
    assert set(data["complianceReasons"]) == {"AMOUNT_AT_OR_ABOVE_THRESHOLD", "PRODUCT_RISK_ABOVE_TOLERANCE", "NO_INVESTMENT_PROFILE"}
    listed = client.get(f"/api/approvals?status=PENDING&customerId={customer.id}", headers=auth("manager")).json
    assert [r["id"] for r in listed["data"]] == [data["id"]]


def test_decision_status_must_be_approved_or_rejected(client, auth, make):
    """PUT {status} accepts only APPROVED or REJECTED (400 otherwise), reject needs a comment."""
    req = make.approval("sales")
    assert client.put(f"/api/approvals/{req.id}", json={"status": "PENDING"}, headers=auth("manager")).status_code == 400
    assert client.put(f"/api/approvals/{req.id}", json={"status": "MAYBE"}, headers=auth("manager")).status_code == 400
    assert client.put(f"/api/approvals/{req.id}", json={}, headers=auth("manager")).status_code == 400
    resp = client.put(f"/api/approvals/{req.id}", json={"status": "REJECTED"}, headers=auth("manager"))
    assert resp.status_code == 400 and "comment" in resp.json["details"]


def _pending_ids(client, auth_headers, customer_id):
    resp = client.get(f"/api/approvals/pending?customerId={customer_id}&limit=100", headers=auth_headers)
    assert resp.status_code == 200, resp.json
    assert set(resp.json["pagination"]) == {"page", "limit", "total", "totalPages"}
    return [r["id"] for r in resp.json["data"]]


def test_pending_is_the_inbox_of_the_callers_role(client, auth, make, redis_cache):
    """Manager: step 1 waiting; Compliance: step 2 once the manager approved; Sales: nothing. Cached, yet current."""
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    small = make.approval("sales", customer=customer, amount=1_000_000)
    large = make.approval("sales", customer=customer, amount=50_000_000)  # needs Compliance too
    assert _pending_ids(client, auth("manager"), customer.id) == [small.id, large.id]  # oldest first
    assert _pending_ids(client, auth("compliance"), customer.id) == []
    assert _pending_ids(client, auth("sales"), customer.id) == []
    assert _pending_ids(client, auth("admin"), customer.id) == []  # an Admin decides no step
    assert client.post(f"/api/approvals/{large.id}/approve", json={"comment": "ok"}, headers=auth("manager")).status_code == 200
    assert _pending_ids(client, auth("manager"), customer.id) == [small.id]
    assert _pending_ids(client, auth("compliance"), customer.id) == [large.id]
    row = client.get(f"/api/approvals/pending?customerId={customer.id}", headers=auth("compliance")).json["data"][0]
    assert row["customer"]["riskTolerance"] == 5 and row["requester"]["id"] == row["requesterId"]
    assert row["approver"]["id"] == row["approverId"]


def test_pending_never_shows_callers_own_requests_even_when_cached(app, client, make, db, redis_cache):
    """Two Admin + Manager users share a scope and roles, not an inbox: neither sees their own request."""
    from flask_jwt_extended import create_access_token

    import uuid

    from app.services.users import create_user
    from app.context import acting_as
    from app.services.approvals import submit
    from models import ApprovalRequest

    sm = app.appbuilder.sm
    both = create_user(f"am-{uuid.uuid4().hex[:8]}@example.com", "兼務 部長", "Admin", "Password123!")
    both.roles.append(sm.find_role("Manager"))
    db.session.commit()
    plain = create_user(f"pm-{uuid.uuid4().hex[:8]}@example.com", "兼務 次長", "Admin", "Password123!")
    plain.roles.append(sm.find_role("Manager"))
    db.session.commit()
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    with acting_as(both):
        own = ApprovalRequest(customer_id=customer.id, product_name="社債", product_risk=2, amount=500_000)
        submit(own, both)
        db.session.commit()
    tokens = {}
    for user in (both, plain):
        with app.test_request_context():
            tokens[user.id] = {"Authorization": f"Bearer {create_access_token(identity=str(user.id))}"}
    for _ in range(2):  # the second round from the cache
        assert _pending_ids(client, tokens[plain.id], customer.id) == [own.id]
        assert _pending_ids(client, tokens[both.id], customer.id) == []
