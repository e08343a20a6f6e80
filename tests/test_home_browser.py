"""Role home pages in Chromium: each role's page (the Sales story is tests/test_sales_story_browser.py)."""

import pytest

from tests.helpers import long_ago, watch_console
from tests.test_home import leftovers  # noqa: F401  (the fixture: tasks cancelled after the test)

pytestmark = pytest.mark.browser



@pytest.mark.parametrize(
    "key, blocks, charts",
    [
        ("manager", ("waiting", "team", "task-trend", "approval-trend"), 2),
        ("compliance", ("queue", "reasons", "audit"), 1),
        ("admin", ("pipeline", "dead-letters", "users"), 0),
    ],
)
def test_role_home_pages_render_their_blocks_and_charts(browser_page, live_url, make, shot, leftovers, key, blocks, charts):
    leftovers.append(make.task("sales", title="ブラウザ: 期限切れ", due_date=long_ago()))
    make.approval("sales", amount=12_000_000)
    page = browser_page(key)
    errors = watch_console(page)
    page.goto(f"{live_url}/")
    for block in blocks:
        assert page.locator(f"[data-block='{block}']").count() == 1, block
    assert page.locator("canvas[data-chart]").count() == charts
    if charts:
        # home.js drew every chart with the vendored Chart.js (no CDN, nothing blocked by the CSP).
        page.wait_for_function(f"document.querySelectorAll('canvas[data-rendered]').length === {charts}", timeout=5000)
        assert page.evaluate("typeof window.Chart") == "function"
    shot(page, f"home-{key}")
    assert errors == []


def test_compliance_sees_the_request_in_its_queue_with_reasons(browser_page, live_url, make, users, db):
    from app.context import acting_as
    from app.services import approvals
    from models import ApprovalRequest

    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=2)
    with acting_as(users["sales"]):
        req = ApprovalRequest(customer_id=customer.id, product_name="新興国株式ファンド", product_risk=7, amount=20_000_000)
        # Back-dated: first in the oldest-first queue whatever other tests left waiting.
        approvals.submit(req, users["sales"], requested_at=long_ago())
        db.session.commit()
    approvals.approve(req.id, users["manager"], "上長確認済み")
    db.session.commit()
    page = browser_page("compliance")
    errors = watch_console(page)
    page.goto(f"{live_url}/")
    row = page.locator(f"[data-block=queue] tr[data-id='{req.id}']")
    assert row.count() == 1
    reasons = {el.get_attribute("data-reason") for el in row.locator("[data-reason]").all()}
    assert reasons == {"AMOUNT_AT_OR_ABOVE_THRESHOLD", "PRODUCT_RISK_ABOVE_TOLERANCE"}
    assert page.locator("[data-block=reasons] tr[data-reason='PRODUCT_RISK_ABOVE_TOLERANCE']").count() == 1
    row.locator("a").click()
    page.wait_for_load_state()
    assert f"/approvalrequestview/show/{req.id}" in page.url
    assert errors == []


def test_sales_home_at_phone_width_fits_and_keeps_one_click_complete(browser_page, live_url, make, shot, leftovers):
    task = make.task("sales", title="スマホ: 期限切れ", due_date=long_ago())
    leftovers.append(task)
    page = browser_page("sales", width=375, height=800)
    errors = watch_console(page)
    page.goto(f"{live_url}/")
    # Nothing wider than the screen: no sideways scrolling of the page.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    button = page.locator(f"[data-block=overdue] tr[data-id='{task.id}'] button[type=submit]")
    assert button.is_visible()
    shot(page, "home-sales-375")
    button.click()
    page.wait_for_load_state()
    assert page.locator(f"[data-block=overdue] tr[data-id='{task.id}']").count() == 0
    assert errors == []
