"""Customer cards (app/services/cards.py): versions, staleness, the routing a card adds, the snapshot, elderly rules.

Through the service, /api, /api/v1 and the screens; a hypothesis run over random cards,
products and ages checks that submit always adds the steps and reasons the rules require.
"""

from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.context import acting_as
from app.services import approvals, business_days, cards
from app.services.errors import Forbidden, NotFound, ValidationFailed
from models import ApprovalRequest, CustomerCard, Product, ProductType
from models.base import utcnow
from tests.helpers import reload, unique_tag

FULL = {
    "dateOfBirth": "1970-05-01",
    "occupation": "会社員",
    "investmentPurpose": "growth",
    "investmentHorizon": "long",
    "incomeBand": "5m_10m",
    "financialAssetsBand": "10m_30m",
    "sourceOfFunds": "給与・貯蓄",
    "experience": {"stocks": {"years": 5, "frequency": "monthly"}},
    "riskTolerance": 6,
}


def birth_for_age(age, today=None):
    """A date of birth making someone exactly `age` today (Tokyo), birthday today."""
    today = today or business_days.local_date(utcnow())
    try:
        return today.replace(year=today.year - age)
    except ValueError:  # 29 February
        return today.replace(year=today.year - age, day=28)


def save_card(db, users, customer, owner="manager", **items):
    """A new card version for `customer` written by `owner` (full items unless overridden).

    A Manager by default: a Sales user's change of the tolerance or experience also brings
    the Compliance step back for APPROVAL_SUITABILITY_CHANGE_DAYS (app/services/suitability.py).
    """
    body = {**FULL, **items, "changeReason": items.pop("changeReason", "初回ヒアリング")}
    with acting_as(users[owner]):
        card = cards.save_version(customer.id, users[owner], body)
        db.session.commit()
    return card


def product(db, **fields):
    """A master product (unique code and name)."""
    tag = unique_tag("p")
    p = Product(
        code=fields.pop("code", tag.upper()),
        name=fields.pop("name", f"商品{tag}"),
        risk_rating=fields.pop("risk_rating", 3),
        product_type=fields.pop("product_type", ProductType.investment_trusts),
        complex=fields.pop("complex", False),
        principal_protected=fields.pop("principal_protected", False),
        min_experience_years=fields.pop("min_experience_years", {}),
        suitable_purposes=fields.pop("suitable_purposes", []),
        **fields,
    )
    db.session.add(p)
    db.session.commit()
    return p


def submit(db, users, customer, prod, owner="sales", amount=1_000_000):
    """Submit a request for `prod` to `customer` through the service."""
    with acting_as(users[owner]):
        req = ApprovalRequest(customer_id=customer.id, product_id=prod.id, amount=amount)
        approvals.submit(req, users[owner])
        db.session.commit()
    return reload(db, ApprovalRequest, req.id)


def steps(req):
    """(role, kind) of each step in order."""
    return [(s.required_role, s.kind) for s in sorted(req.steps, key=lambda s: s.sequence)]


# --- versions ------------------------------------------------------------------------------


def test_every_change_is_a_new_version_carrying_over_and_feeding_the_legacy_fields(make, db, users):
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    first = save_card(db, users, customer, owner="sales")
    second = save_card(db, users, customer, owner="sales", riskTolerance=3, occupation="自営業", changeReason="転職")
    assert (first.version, second.version) == (1, 2)
    rows = cards.history(customer.id)
    assert [c.version for c in rows] == [2, 1]
    old, new = cards.as_dict(rows[1]), cards.as_dict(rows[0])
    assert old["riskTolerance"] == 6 and old["occupation"] == "会社員"  # version 1 unchanged
    assert new["riskTolerance"] == 3 and new["occupation"] == "自営業" and new["incomeBand"] == "5m_10m"  # carried over
    assert new["changeReason"] == "転職" and new["changedById"] == str(users["sales"].id)
    fresh = reload(db, type(customer), customer.id)
    assert fresh.risk_tolerance == 3 and fresh.investment_experience.startswith("stocks 5y")
    assert cards.state_of(rows[0]).state == "current"


def test_bad_items_are_refused_naming_the_field_and_nothing_is_written(make, db, users):
    customer = make.customer("sales")
    for items, field in [
        ({"changeReason": " "}, "changeReason"),
        ({"investmentPurpose": "gamble"}, "investmentPurpose"),
        ({"riskTolerance": 11}, "riskTolerance"),
        ({"dateOfBirth": "1970-13-01"}, "dateOfBirth"),
        ({"experience": {"stocks": {"years": -1}}}, "experience"),
        ({"experience": {"crypto": {"years": 1}}}, "experience"),
    ]:
        with pytest.raises(ValidationFailed) as exc:
            save_card(db, users, customer, owner="sales", **items)
        assert exc.value.field == field
        db.session.rollback()
    assert cards.history(customer.id) == []


def test_scope_sales_only_their_own_customers_and_compliance_reads_only(make, db, users):
    theirs = make.customer("sales2")
    with pytest.raises(NotFound):
        cards.save_version(theirs.id, users["sales"], {**FULL, "changeReason": "x"})
    db.session.rollback()
    with pytest.raises(Forbidden):
        cards.save_version(theirs.id, users["compliance"], {**FULL, "changeReason": "x"})
    db.session.rollback()
    card = save_card(db, users, theirs, owner="manager")  # a Manager edits every customer
    assert card.version == 1


def test_api_current_history_and_new_version(client, auth, make, users):
    customer = make.customer("sales")
    url = f"/api/customers/{customer.id}/card"
    empty = client.get(url, headers=auth("sales")).json["data"]
    assert empty["card"] is None and empty["state"]["state"] == "missing"
    resp = client.post(url, json={**FULL, "changeReason": "初回"}, headers=auth("sales"))
    assert resp.status_code == 201, resp.json
    assert resp.json["data"]["card"]["version"] == 1 and resp.json["data"]["state"]["state"] == "current"
    resp = client.post(url, json={"riskTolerance": 2, "changeReason": "見直し"}, headers=auth("sales"))
    assert resp.json["data"]["card"]["version"] == 2 and resp.json["data"]["card"]["occupation"] == "会社員"
    history = client.get(url + "/history", headers=auth("manager")).json["data"]
    assert [v["version"] for v in history] == [2, 1] and history[0]["changeReason"] == "見直し"
    bad = client.post(url, json={"riskTolerance": 2}, headers=auth("sales"))
    assert bad.status_code == 400 and "changeReason" in bad.json["details"]
    assert client.post(url, json={**FULL, "changeReason": "x"}, headers=auth("sales2")).status_code == 404
    assert client.get(url, headers=auth("sales2")).status_code == 404
    assert client.post(url, json={**FULL, "changeReason": "x"}, headers=auth("compliance")).status_code == 403
    assert len(client.get(url + "/history", headers=auth("sales")).json["data"]) == 2


def test_screen_edit_posts_a_version_and_the_customer_page_shows_card_and_history(browser_login, make, db):
    customer = make.customer("sales")
    sales = browser_login("sales")
    form = sales.get(f"/customercard/{customer.id}/edit").get_data(as_text=True)
    assert 'name="csrf_token"' in form
    data = {k: v for k, v in FULL.items() if k != "experience"}
    data.update({"exp_stocks_years": "3", "exp_stocks_frequency": "yearly", "changeReason": "面談で確認", "reviewed": "on"})
    resp = sales.post(f"/customercard/{customer.id}/edit", data=data)
    assert resp.status_code == 302
    card = cards.current(customer.id)
    assert card.version == 1 and card.experience == {"stocks": {"years": 3, "frequency": "yearly"}}
    page = sales.get(f"/customerview/show/{customer.id}").get_data(as_text=True)
    assert 'data-card-state="current"' in page and 'data-version="1"' in page and "面談で確認" in page
    bad = sales.post(f"/customercard/{customer.id}/edit", data={**data, "riskTolerance": "99"})
    assert bad.status_code == 400 and "riskTolerance" in bad.get_data(as_text=True)
    other = make.customer("sales2")
    assert sales.post(f"/customercard/{other.id}/edit", data=data).status_code == 404
    assert cards.history(other.id) == []
    no_token = sales.post(f"/customercard/{customer.id}/edit", data=data, csrf=False)
    assert no_token.status_code == 400 and len(cards.history(customer.id)) == 1


def test_two_writers_at_once_get_consecutive_versions(app, make, db, users, monkeypatch):
    """The customer row lock serialises writers: versions 2 and 3, never two version 2s."""
    import threading
    import time

    customer = make.customer("sales")
    save_card(db, users, customer)
    monkeypatch.setattr(cards, "_after_read", lambda c: time.sleep(0.3))
    barrier, results = threading.Barrier(2), []
    cid = customer.id  # read here: the threads must not touch this session's objects

    def write(reason):
        with app.app_context():
            barrier.wait()
            try:
                with acting_as(users["manager"]):
                    results.append(cards.save_version(cid, users["manager"], {"changeReason": reason}).version)
                    db.session.commit()
            except Exception as exc:  # reported by the assertion below
                results.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=write, args=(r,)) for r in ("一人目", "二人目")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(map(str, results)) == ["2", "3"], results
    assert [c.version for c in cards.history(cid)] == [3, 2, 1]


# --- stale cards -------------------------------------------------------------------------


def test_a_card_missing_items_refuses_the_request_naming_them(make, db, users):
    customer = make.customer("sales", investment_profile="moderate")
    save_card(db, users, customer, occupation=None, sourceOfFunds="")
    with pytest.raises(ValidationFailed) as exc:
        submit(db, users, customer, product(db))
    db.session.rollback()
    assert exc.value.field == "customerCard"
    assert exc.value.details["missingItems"] == ["occupation", "sourceOfFunds"]
    assert "occupation" in exc.value.message and "sourceOfFunds" in exc.value.message


def test_a_review_older_than_the_setting_is_stale_and_the_policy_routes_or_refuses(app, make, db, users):
    customer = make.customer("sales", investment_profile="moderate")
    card = save_card(db, users, customer)
    months = app.config["CARD_REVIEW_MONTHS"]
    db.session.execute(sa.update(CustomerCard).where(CustomerCard.id == card.id).values(reviewed_at=utcnow() - timedelta(days=31 * months + 1)))
    db.session.commit()
    state = cards.state_of(cards.current(customer.id))
    assert state.state == "stale" and state.review_overdue and state.missing == []
    with pytest.raises(ValidationFailed) as exc:
        submit(db, users, customer, product(db))
    db.session.rollback()
    assert exc.value.details["reviewOverdue"] is True and "review overdue" in exc.value.message
    app.config["CARD_STALE_POLICY"] = "compliance"
    try:
        req = submit(db, users, customer, product(db))
    finally:
        app.config["CARD_STALE_POLICY"] = "refuse"
    assert req.compliance_reasons == ["CARD_STALE"] and steps(req) == [("Manager", None), ("Compliance", None)]


def test_customers_without_a_card_follow_the_missing_policy(app, make, db, users):
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    legacy = submit(db, users, customer, product(db, risk_rating=3))
    assert legacy.compliance_reasons is None and steps(legacy) == [("Manager", None)]
    app.config["CARD_MISSING_POLICY"] = "compliance"
    try:
        routed = submit(db, users, customer, product(db, risk_rating=3))
        app.config["CARD_MISSING_POLICY"] = "refuse"
        with pytest.raises(ValidationFailed) as exc:
            submit(db, users, customer, product(db))
        db.session.rollback()
    finally:
        app.config["CARD_MISSING_POLICY"] = "legacy"
    assert routed.compliance_reasons == ["NO_CUSTOMER_CARD"]
    assert exc.value.field == "customerCard" and exc.value.details["state"] == "missing"


def test_stale_card_refused_from_api_v1_and_the_screen(client, auth, browser_login, make, db, users):
    customer = make.customer("sales", investment_profile="moderate")
    save_card(db, users, customer, incomeBand=None)
    prod = product(db)
    resp = client.post("/api/approvals", json={"customerId": customer.id, "productId": prod.id, "amount": 1000}, headers=auth("sales"))
    assert resp.status_code == 400 and resp.json["details"]["missingItems"] == ["incomeBand"]
    v1 = client.post("/api/v1/approval/", json={"customer": customer.id, "product": prod.id, "amount": 1000}, headers=auth("sales"))
    assert v1.status_code == 400 and "incomeBand" in v1.get_data(as_text=True)
    page = browser_login("sales").post(
        f"/customerview/show/{customer.id}/add/request", data={"product_id": prod.id, "amount": "1000"}
    )
    assert page.status_code == 400 and "incomeBand" in page.get_data(as_text=True)
    count = db.session.execute(sa.select(sa.func.count()).select_from(ApprovalRequest).where(ApprovalRequest.customer_id == customer.id)).scalar()
    assert count == 0


# --- routing from the card (property test) --------------------------------------------------

TYPES = [t.value for t in ProductType]
PURPOSES = ["capital_preservation", "income", "growth", "speculation"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    tolerance=st.integers(1, 10),
    risk=st.integers(1, 10),
    age=st.integers(20, 95),
    complex_=st.booleans(),
    purpose=st.sampled_from(PURPOSES),
    suits=st.lists(st.sampled_from(PURPOSES), max_size=3, unique=True),
    have=st.dictionaries(st.sampled_from(TYPES), st.integers(0, 10), max_size=3),
    need=st.dictionaries(st.sampled_from(TYPES), st.integers(1, 10), max_size=2),
)
def test_routing_always_adds_the_steps_the_rules_require(make, db, users, tolerance, risk, age, complex_, purpose, suits, have, need):
    customer = make.customer("sales", investment_profile="moderate")
    save_card(
        db, users, customer,
        riskTolerance=tolerance, investmentPurpose=purpose, dateOfBirth=birth_for_age(age).isoformat(),
        experience={k: {"years": v, "frequency": "yearly"} for k, v in have.items()},
    )
    prod = product(db, risk_rating=risk, complex=complex_, suitable_purposes=suits, min_experience_years=need)
    req = submit(db, users, customer, prod)
    expected = set()
    if risk > tolerance:
        expected.add("PRODUCT_RISK_ABOVE_TOLERANCE")
    if any(have.get(k, 0) < v for k, v in need.items()):
        expected.add("EXPERIENCE_BELOW_MINIMUM")
    if suits and purpose not in suits:
        expected.add("PURPOSE_MISMATCH")
    assert set(req.compliance_reasons or []) == expected
    want = ([("Manager", cards.SUPERVISOR_KIND)] if age >= 75 and complex_ else []) + [("Manager", None)]
    want += [("Compliance", None)] if expected else []
    assert steps(req) == want
    snap = req.suitability_snapshot
    assert snap["elderly"]["ageAtProposal"] == age
    assert snap["elderly"]["nextBusinessDayRequired"] is (age >= 80)
    assert {r["code"] for r in snap["reasons"]} == expected


# --- snapshot --------------------------------------------------------------------------------


def test_snapshot_stays_fixed_after_the_card_changes(client, auth, browser_login, make, db, users):
    customer = make.customer("sales", investment_profile="moderate")
    save_card(db, users, customer, riskTolerance=8, investmentPurpose="growth")
    prod = product(db, risk_rating=7, suitable_purposes=["growth"])
    req = submit(db, users, customer, prod)
    assert req.compliance_reasons is None and req.suitability_snapshot["card"]["version"] == 1
    before = dict(req.suitability_snapshot)
    save_card(db, users, customer, owner="sales", riskTolerance=2, investmentPurpose="capital_preservation", changeReason="退職")
    after = reload(db, ApprovalRequest, req.id)
    assert after.suitability_snapshot == before and after.compliance_reasons is None
    assert steps(after) == [("Manager", None)]
    api = client.get(f"/api/approvals/{req.id}", headers=auth("manager")).json["data"]
    assert api["suitabilitySnapshot"]["card"]["riskTolerance"] == 8 and api["productId"] == prod.id
    page = browser_login("manager").get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert 'data-card-version="1"' in page
    # A new request judges the new card.
    later = submit(db, users, customer, prod)
    assert set(later.compliance_reasons) == {"PRODUCT_RISK_ABOVE_TOLERANCE", "PURPOSE_MISMATCH", "SUITABILITY_CHANGED_RECENTLY"}
    with pytest.raises(Exception):
        later.suitability_snapshot = {"tampered": True}
        db.session.commit()
    db.session.rollback()


# --- elderly customers -------------------------------------------------------------------


def _user(db, key_or_id, users):
    uid = users[key_or_id].id if isinstance(key_or_id, str) else key_or_id
    return db.session.get(User, uid)


def test_75_and_over_with_a_complex_product_needs_a_supervisor_before_the_decision(client, auth, browser_login, make, db, users, new_user):
    customer = make.customer("sales", investment_profile="moderate")
    save_card(db, users, customer, dateOfBirth=birth_for_age(75).isoformat(), riskTolerance=9)
    req = submit(db, users, customer, product(db, risk_rating=5, complex=True, product_type=ProductType.structured_bonds))
    assert steps(req) == [("Manager", cards.SUPERVISOR_KIND), ("Manager", None)]
    api = client.get(f"/api/approvals/{req.id}", headers=auth("sales")).json["data"]
    assert api["currentStepKind"] == cards.SUPERVISOR_KIND and api["nextRequiredRole"] == "Manager"
    page = browser_login("manager").get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert 'data-kind="SUPERVISOR_PREAPPROVAL"' in page and 'data-elderly="supervisor"' in page
    with pytest.raises(Forbidden):
        approvals.approve(req.id, _user(db, "compliance", users), "x")  # the supervisor is a Manager
    v1 = client.post(f"/api/v1/approval/{req.id}/approve", json={"comment": "役席者承認"}, headers=auth("manager"))
    assert v1.status_code == 200 and v1.json["result"]["currentStepKind"] is None
    db.session.expire_all()
    with pytest.raises(Forbidden):
        approvals.approve(req.id, _user(db, "manager", users), "again")  # one person, one step
    second = new_user("Manager")
    done = approvals.approve(req.id, _user(db, second.id, users), "承認")
    assert done.status.value == "APPROVED" and done.executable_from is None  # 75-79: no next-day rule
    young = make.customer("sales", investment_profile="moderate")
    save_card(db, users, young, dateOfBirth=(birth_for_age(75) + timedelta(days=1)).isoformat(), riskTolerance=9)
    assert steps(submit(db, users, young, product(db, complex=True))) == [("Manager", None)]  # 74 until tomorrow


def test_80_and_over_executable_from_the_next_business_day_after_approval(client, auth, make, db, users):
    customer = make.customer("sales", investment_profile="moderate")
    save_card(db, users, customer, dateOfBirth=birth_for_age(82).isoformat(), riskTolerance=9)
    req = submit(db, users, customer, product(db, risk_rating=3))
    assert steps(req) == [("Manager", None)] and req.suitability_snapshot["elderly"]["nextBusinessDayRequired"]
    resp = client.post(f"/api/approvals/{req.id}/approve", json={"comment": "ok"}, headers=auth("manager"))
    data = resp.json["data"]
    approved_on = business_days.local_date(reload(db, ApprovalRequest, req.id).processed_at)
    expected = business_days.next_business_day(approved_on)
    assert data["executableFrom"] == expected.isoformat() and expected > approved_on
    assert business_days.is_business_day(expected)


@pytest.mark.parametrize(
    "moment, expected",
    [
        (date(2026, 11, 20), date(2026, 11, 24)),  # Friday → Saturday, Sunday, Monday 23rd (勤労感謝の日) → Tuesday
        (date(2026, 12, 30), date(2027, 1, 4)),  # 12/31-1/3: the exchange's year-end closure
        (date(2026, 5, 1), date(2026, 5, 7)),  # Golden Week: 5/2-5/6 weekend, holidays and the substitute day
        (date(2026, 11, 25), date(2026, 11, 26)),  # an ordinary Wednesday
    ],
)
def test_next_business_day_across_weekends_and_japanese_holidays(app, moment, expected):
    assert business_days.next_business_day(moment) == expected


def test_the_business_date_is_tokyos(app):
    from datetime import datetime, timezone

    # 2026-11-20 16:00 UTC is Saturday 21st 01:00 in Tokyo: the next business day is Tuesday 24th.
    assert business_days.next_business_day(datetime(2026, 11, 20, 16, tzinfo=timezone.utc)) == date(2026, 11, 24)
    assert business_days.next_business_day(datetime(2026, 11, 20, 14, tzinfo=timezone.utc)) == date(2026, 11, 24)
    assert business_days.next_business_day(datetime(2026, 11, 19, 14, tzinfo=timezone.utc)) == date(2026, 11, 20)


def test_age_counts_whole_years_at_the_proposal_date():
    assert cards.age_on(date(1950, 6, 15), date(2026, 6, 14)) == 75
    assert cards.age_on(date(1950, 6, 15), date(2026, 6, 15)) == 76
    assert cards.age_on(date(1948, 2, 29), date(2026, 2, 28)) == 77
    assert cards.age_on(date(1948, 2, 29), date(2026, 3, 1)) == 78
