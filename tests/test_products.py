"""The product master (app/services/products.py): who maintains it, how a request picks a product, the reasons it adds."""

import sqlalchemy as sa

from models import ApprovalRequest, Product, ProductOrigin
from tests.helpers import reload, unique_tag


def _body(**fields):
    tag = unique_tag("P")
    return {"code": tag, "name": f"仕組債{tag}", "riskRating": 8, "productType": "structured_bonds", "complex": True,
            "minExperienceYears": {"bonds": 3}, "suitablePurposes": ["growth", "speculation"], **fields}


def test_compliance_maintains_the_master_others_read_it(client, auth):
    resp = client.post("/api/products", json=_body(), headers=auth("compliance"))
    assert resp.status_code == 201, resp.json
    pid = resp.json["data"]["id"]
    assert resp.json["data"]["complex"] is True and resp.json["data"]["origin"] == "master"
    assert client.post("/api/products", json=_body(), headers=auth("sales")).status_code == 403
    assert client.post("/api/products", json=_body(), headers=auth("manager")).status_code == 403
    assert client.get(f"/api/products/{pid}", headers=auth("sales")).json["data"]["riskRating"] == 8
    bad = client.post("/api/products", json=_body(riskRating=11), headers=auth("compliance"))
    assert bad.status_code == 400 and "riskRating" in bad.json["details"]
    bad = client.post("/api/products", json=_body(suitablePurposes=["luck"]), headers=auth("compliance"))
    assert bad.status_code == 400 and "suitablePurposes" in bad.json["details"]
    resp = client.put(f"/api/products/{pid}", json={"active": False}, headers=auth("compliance"))
    assert resp.status_code == 200 and resp.json["data"]["active"] is False


def test_api_v1_and_screen_go_through_the_same_rules(client, auth, browser_login, db):
    body = {"code": unique_tag("V"), "name": unique_tag("投信"), "risk_rating": 4, "product_type": "investment_trusts",
            "complex": False, "principal_protected": False, "min_experience_years": {}, "suitable_purposes": ["income"], "active": True}
    assert client.post("/api/v1/product/", json=body, headers=auth("sales")).status_code in (401, 403)
    resp = client.post("/api/v1/product/", json=body, headers=auth("compliance"))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    bad = client.post("/api/v1/product/", json={**body, "code": unique_tag("V"), "risk_rating": None}, headers=auth("compliance"))
    assert bad.status_code in (400, 422)
    code = unique_tag("S")
    page = browser_login("compliance").post(
        "/productview/add",
        data={"code": code, "name": f"株式{code}", "risk_rating": "5", "product_type": "stocks",
              "min_experience_years": "stocks=2", "suitable_purposes": ["growth"], "active": "y"},
    )
    assert page.status_code == 302, page.get_data(as_text=True)[:300]
    row = db.session.execute(sa.select(Product).where(Product.code == code)).scalar_one()
    assert row.min_experience_years == {"stocks": 2} and row.suitable_purposes == ["growth"]
    assert browser_login("sales").post("/productview/add", data={"code": unique_tag("S"), "name": "x", "risk_rating": "1"}).status_code in (302, 403)
    assert db.session.execute(sa.select(sa.func.count()).select_from(Product).where(Product.name == "x")).scalar() == 0


def test_a_request_by_name_matches_the_master_or_makes_a_product(client, auth, make, db):
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=9)
    master = client.post("/api/products", json=_body(riskRating=6, minExperienceYears={}, suitablePurposes=[]), headers=auth("compliance")).json["data"]
    resp = client.post("/api/approvals", json={"customerId": customer.id, "productName": master["name"].lower(), "amount": 1000}, headers=auth("sales"))
    assert resp.status_code == 201, resp.json
    assert resp.json["data"]["productId"] == master["id"] and resp.json["data"]["productRisk"] == 6
    clash = client.post("/api/approvals", json={"customerId": customer.id, "productName": master["name"], "productRisk": 2, "amount": 1000}, headers=auth("sales"))
    assert clash.status_code == 400 and "productRisk" in clash.json["details"]
    name = unique_tag("新商品")
    one = client.post("/api/approvals", json={"customerId": customer.id, "productName": name, "productRisk": 4, "amount": 1000}, headers=auth("sales")).json["data"]
    two = client.post("/api/approvals", json={"customerId": customer.id, "productName": name, "productRisk": 4, "amount": 1000}, headers=auth("sales")).json["data"]
    three = client.post("/api/approvals", json={"customerId": customer.id, "productName": name, "productRisk": 5, "amount": 1000}, headers=auth("sales")).json["data"]
    assert one["productId"] == two["productId"] != three["productId"]
    made = db.session.get(Product, one["productId"])
    assert made.origin == ProductOrigin.request and made.risk_rating == 4 and (one["productName"], one["productRisk"]) == (name, 4)
    bad = client.post("/api/approvals", json={"customerId": customer.id, "productId": "00000000-0000-4000-8000-000000000000", "amount": 1000}, headers=auth("sales"))
    assert bad.status_code == 400 and "productId" in bad.json["details"]
    none = client.post("/api/approvals", json={"customerId": customer.id, "amount": 1000}, headers=auth("sales"))
    assert none.status_code == 400 and "productName" in none.json["details"]


def test_card_reasons_are_stored_and_shown_on_screens_and_api(client, auth, browser_login, make, db, users):
    from tests.test_cards import save_card

    customer = make.customer("sales", investment_profile="moderate")
    save_card(db, users, customer, riskTolerance=5, investmentPurpose="capital_preservation", experience={"bonds": {"years": 1, "frequency": "yearly"}})
    master = client.post("/api/products", json=_body(), headers=auth("compliance")).json["data"]
    resp = client.post("/api/approvals", json={"customerId": customer.id, "productId": master["id"], "amount": 1000}, headers=auth("sales"))
    data = resp.json["data"]
    assert data["complianceReasons"] == ["PRODUCT_RISK_ABOVE_TOLERANCE", "EXPERIENCE_BELOW_MINIMUM", "PURPOSE_MISMATCH"]
    assert [s["requiredRole"] for s in data["steps"]] == ["Manager", "Compliance"]
    details = {r["code"]: r["detail"] for r in data["suitabilitySnapshot"]["reasons"]}
    assert details["EXPERIENCE_BELOW_MINIMUM"] == "bonds: 1 < 3 years"
    v1 = client.get(f"/api/v1/approval/{data['id']}", headers=auth("manager")).json["result"]
    assert v1["compliance_reasons"] == data["complianceReasons"] and v1["suitability_snapshot"]["product"]["complex"] is True
    page = browser_login("manager").get(f"/approvalrequestview/show/{data['id']}").get_data(as_text=True)
    for code in data["complianceReasons"]:
        assert f'data-reason="{code}"' in page
    assert "bonds: 1 &lt; 3 years" in page or "bonds: 1 < 3 years" in page
    # The screen's quick-add picks the product from the master.
    sales = browser_login("sales")
    assert master["name"] in sales.get(f"/customerview/show/{customer.id}").get_data(as_text=True)
    sales.post(f"/customerview/show/{customer.id}/add/request", data={"product_id": master["id"], "amount": "2000"})
    rows = db.session.execute(sa.select(ApprovalRequest).where(ApprovalRequest.customer_id == customer.id)).unique().scalars().all()
    assert len(rows) == 2 and all(r.product_id == master["id"] for r in rows)
    assert reload(db, ApprovalRequest, rows[0].id).product_name == master["name"]
