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
