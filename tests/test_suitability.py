"""app/services/suitability.py: a rep cannot remove the Compliance step by changing the customer's suitability.

The attack of issue 18 item 7, through every entry point: a request routed to Compliance
(product risk 10 above tolerance 4) is recalled, the rep raises riskTolerance to 10 and
investmentProfile to aggressive, and resubmits: Compliance is still required, and says why.
"""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models import ApprovalRequest, AuditLog, Customer
from models.base import utcnow
from tests.helpers import reload
from tests.test_records import form_token

REASON = "SUITABILITY_CHANGED_RECENTLY"


def _submit(client, auth, customer_id, who="sales"):
    resp = client.post("/api/approvals", json={"customerId": customer_id, "productName": "ハイリスク債",
                                               "productRisk": 10, "amount": 1_000_000}, headers=auth(who))
    assert resp.status_code == 201, resp.json
    return resp.json["data"]


def _roles(data):
    return [s["requiredRole"] for s in data["steps"]]


@pytest.fixture()
def cautious(make):
    return make.customer("sales", investment_profile="moderate", risk_tolerance=4)


def _raise_suitability_via(via, client, auth, browser_login, customer):
    if via == "api":
        resp = client.put(f"/api/customers/{customer.id}", json={"riskTolerance": 10, "investmentProfile": "aggressive"},
                          headers=auth("sales"))
        assert resp.status_code == 200, resp.json
    elif via == "api_v1":
        resp = client.put(f"/api/v1/customer/{customer.id}", json={"risk_tolerance": 10, "investment_profile": "aggressive"},
                          headers=auth("sales"))
        assert resp.status_code == 200, resp.json
    else:
        sales = browser_login("sales")
        url = f"/customerview/edit/{customer.id}"
        sales.post(url, data={"name": customer.name, "email": customer.email, "risk_tolerance": "10",
                              "investment_profile": "aggressive", "assigned_sales": str(customer.assigned_sales_id),
                              "csrf_token": form_token(sales, url)})


@pytest.mark.parametrize("via", ["api", "api_v1", "screen"])
def test_raising_tolerance_and_resubmitting_still_needs_compliance(client, auth, browser_login, db, users, cautious, via):
    first = _submit(client, auth, cautious.id)
    assert _roles(first) == ["Manager", "Compliance"] and first["complianceReasons"] == ["PRODUCT_RISK_ABOVE_TOLERANCE"]
    assert client.post(f"/api/approvals/{first['id']}/recall", json={}, headers=auth("sales")).status_code == 200
    _raise_suitability_via(via, client, auth, browser_login, cautious)
    fresh = reload(db, Customer, cautious.id)
    assert (fresh.risk_tolerance, fresh.investment_profile.value) == (10, "aggressive")
    assert fresh.suitability_changed_at is not None
    again = _submit(client, auth, cautious.id)
    assert _roles(again) == ["Manager", "Compliance"] and again["complianceReasons"] == [REASON]
    # Audited: the rep's change, with the values before and after.
    row = db.session.execute(sa.select(AuditLog).where(
        AuditLog.resource_type == "customer", AuditLog.resource_id == cautious.id, AuditLog.action == "UPDATE")
        .order_by(AuditLog.timestamp.desc())).scalars().first()
    assert row.user_id == users["sales"].id
    assert row.changes["before"]["risk_tolerance"] == 4 and row.changes["after"]["risk_tolerance"] == 10
    assert "suitability_changed_at" not in row.changes["after"]  # derived, not the rep's change


def test_every_suitability_field_counts(client, auth, db, make):
    for body in ({"investmentExperience": "株式10年"}, {"investmentProfile": "aggressive"}, {"riskTolerance": 6}):
        customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
        assert client.put(f"/api/customers/{customer.id}", json=body, headers=auth("sales")).status_code == 200
        assert reload(db, Customer, customer.id).suitability_changed_at is not None, body
    other = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    assert client.put(f"/api/customers/{other.id}", json={"phone": "03-0000-1111", "riskTolerance": 5},
                      headers=auth("sales")).status_code == 200
    assert reload(db, Customer, other.id).suitability_changed_at is None  # nothing suitable changed


def test_a_managers_change_does_not_bring_compliance_back(client, auth, db, cautious):
    resp = client.put(f"/api/customers/{cautious.id}", json={"riskTolerance": 10}, headers=auth("manager"))
    assert resp.status_code == 200
    assert reload(db, Customer, cautious.id).suitability_changed_at is None
    assert _roles(_submit(client, auth, cautious.id)) == ["Manager"]


def test_the_window_ends_and_can_be_set(app, client, auth, db, cautious, monkeypatch):
    assert client.put(f"/api/customers/{cautious.id}", json={"riskTolerance": 10}, headers=auth("sales")).status_code == 200
    db.session.execute(sa.update(Customer).where(Customer.id == cautious.id)
                       .values(suitability_changed_at=utcnow() - timedelta(days=31)))
    db.session.commit()
    assert _roles(_submit(client, auth, cautious.id)) == ["Manager"]  # 31 days > the default 30
    monkeypatch.setitem(app.config, "APPROVAL_SUITABILITY_CHANGE_DAYS", 45)
    assert _submit(client, auth, cautious.id)["complianceReasons"] == [REASON]
    monkeypatch.setitem(app.config, "APPROVAL_SUITABILITY_CHANGE_DAYS", 0)
    assert _roles(_submit(client, auth, cautious.id)) == ["Manager"]


def test_a_writer_past_the_services_is_stamped_too(db, users, cautious):
    """A worker or import writing the ORM directly, as a rep or as nobody, sets the stamp as well."""
    from app.context import acting_as

    for actor in (users["sales"], None):
        db.session.execute(sa.update(Customer).where(Customer.id == cautious.id).values(suitability_changed_at=None))
        db.session.commit()
        row = reload(db, Customer, cautious.id)
        with acting_as(actor):
            row.risk_tolerance = row.risk_tolerance % 10 + 1
            db.session.commit()
        assert reload(db, Customer, cautious.id).suitability_changed_at is not None, actor


def test_approvers_see_the_reason(browser_login, client, auth, db, cautious):
    assert client.put(f"/api/customers/{cautious.id}", json={"riskTolerance": 10}, headers=auth("sales")).status_code == 200
    rid = _submit(client, auth, cautious.id)["id"]
    page = browser_login("manager").get(f"/approvalrequestview/show/{rid}").get_data(as_text=True)
    assert f'data-reason="{REASON}"' in page
    assert "担当営業が最近顧客の適合性情報を変更" in page
    assert db.session.get(ApprovalRequest, rid).compliance_reasons == [REASON]
