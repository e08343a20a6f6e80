"""The elderly-customer story in Chromium: a rep proposes a complex product to an 82-year-old customer
and meets each rule in turn — the stale card refused, the card edited, the supervisor's pre-approval
before the decision, Compliance for the reasons, and executableFrom the next business day."""

import pytest
import sqlalchemy as sa

from app.services import business_days
from models import ApprovalRequest, ProductType
from tests.conftest import PASSWORD
from tests.helpers import reload, watch_console
from tests.test_cards import birth_for_age, product, save_card

pytestmark = pytest.mark.browser


def _decide(page, live_url, request_id, comment):
    """Approve the request's current step from its page, as the page's user."""
    page.goto(f"{live_url}/approvalrequestview/show/{request_id}")
    form = page.locator(".approval-decide-form")
    assert form.count() == 1, "no decision form for this user"
    form.locator("textarea[name=comment]").fill(comment)
    form.locator("button[value=approve]").click()
    page.wait_for_load_state()
    assert page.locator(".alert-success").count() >= 1, page.content()[:2000]


def test_rep_proposes_a_complex_product_to_an_82_year_old_and_meets_each_rule(
    browser, browser_page, live_url, make, db, users, dual_decider, shot
):
    customer = make.customer("sales", name="株式会社高齢物語", investment_profile="moderate")
    save_card(db, users, customer, dateOfBirth=birth_for_age(82).isoformat(), occupation=None, riskTolerance=9,
              experience={"bonds": {"years": 1, "frequency": "yearly"}})
    bond = product(db, risk_rating=7, complex=True, product_type=ProductType.structured_bonds, min_experience_years={"bonds": 3})
    page = browser_page("sales")
    problems = watch_console(page)

    # 1. The card lacks the occupation: the page says so, and a proposal is refused naming it.
    page.goto(f"{live_url}/customerview/show/{customer.id}")
    assert page.locator(".customer-card[data-card-state=stale] [data-missing=occupation]").count() == 1
    page.select_option("#request-product-id", bond.id)
    page.fill("#request-amount", "3000000")
    page.click(".quick-add-request button[type=submit]")
    page.wait_for_load_state()
    assert "occupation" in page.locator(".alert-danger").inner_text()
    assert db.session.execute(sa.select(sa.func.count()).select_from(ApprovalRequest).where(ApprovalRequest.customer_id == customer.id)).scalar() == 0
    # The refusal is the page's own 400 (the browser logs it): nothing else may have failed.
    assert all("400" in p for p in problems), problems
    problems.clear()

    # 2. The rep completes the card: version 2, current.
    page.click(".customer-card a.card-edit")
    page.wait_for_load_state()
    page.fill("#card-occupation", "無職(年金生活)")
    page.fill("#card-reason", "面談で職業を確認")
    page.click(".customer-card-form button[type=submit]")
    page.wait_for_load_state()
    assert page.locator(".customer-card[data-card-state=current] .card-version").inner_text() == "v2"
    shot(page, "card-current")

    # 3. The proposal goes through: a supervisor pre-approval first, Compliance for the reasons.
    page.select_option("#request-product-id", bond.id)
    page.fill("#request-amount", "3000000")
    page.click(".quick-add-request button[type=submit]")
    page.wait_for_load_state()
    req = db.session.execute(sa.select(ApprovalRequest).where(ApprovalRequest.customer_id == customer.id)).unique().scalar_one()
    page.goto(f"{live_url}/approvalrequestview/show/{req.id}")
    assert page.locator(".approval-step[data-sequence='1'] [data-kind=SUPERVISOR_PREAPPROVAL]").count() == 1
    assert page.locator("[data-elderly=supervisor]").count() == 1 and page.locator("[data-elderly=next-day]").count() == 1
    assert page.locator(".snapshot-reasons [data-reason=EXPERIENCE_BELOW_MINIMUM]").count() == 1
    assert page.locator(".approval-decide-form").count() == 0  # the rep decides nothing
    shot(page, "elderly-request")

    # 4. The supervisor (a Manager) pre-approves; then another Manager decides; then Compliance.
    context = browser.new_context(locale="ja-JP")
    try:
        supervisor = context.new_page()
        supervisor.goto(f"{live_url}/login/")
        supervisor.fill("input[name=username]", dual_decider.email)
        supervisor.fill("input[name=password]", PASSWORD)
        supervisor.click("input[type=submit], button[type=submit]")
        supervisor.wait_for_load_state()
        _decide(supervisor, live_url, req.id, "役席者として事前承認")
    finally:
        context.close()
    manager = browser_page("manager")
    _decide(manager, live_url, req.id, "販売を承認")
    compliance = browser_page("compliance")
    _decide(compliance, live_url, req.id, "適合性を確認")

    # 5. Approved, and not executable before the next business day after the approval.
    done = reload(db, ApprovalRequest, req.id)
    assert done.status.value == "APPROVED"
    expected = business_days.next_business_day(done.processed_at)
    assert done.executable_from == expected
    compliance.goto(f"{live_url}/approvalrequestview/show/{req.id}")
    assert compliance.locator(".executable-from").inner_text() == expected.isoformat()
    shot(compliance, "elderly-approved")
    assert problems == []
