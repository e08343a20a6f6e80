"""The approvals "done when" story in a real Chromium against a live server on PostgreSQL."""

import os
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser
# Set APPROVAL_SCREENSHOTS=/some/dir to keep screenshots of the pages for a human look.
SHOT_DIR = Path(os.environ["APPROVAL_SCREENSHOTS"]) if os.environ.get("APPROVAL_SCREENSHOTS") else None


def _login(browser, live_url, user):
    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url
    return context, page


def test_manager_approves_in_browser_then_compliance_and_stale_second_decision_409(browser, live_url, make, users, db):
    req = make.approval("sales", amount=15_000_000, product_risk=3)
    ctx, page = _login(browser, live_url, users["manager"])
    # A second tab holding the same inbox: it will try to decide again after the first one did.
    stale = ctx.new_page()
    stale.goto(f"{live_url}/approvals/pending/")
    page.goto(f"{live_url}/approvals/pending/")
    if SHOT_DIR:
        page.screenshot(path=SHOT_DIR / "inbox.png", full_page=True)
    row = page.locator(f"tr.approval-row[data-id='{req.id}']")
    assert row.count() == 1
    assert "¥15,000,000" in row.inner_text()
    row.locator("input[name=ids]").check()
    page.fill("#comment", "資産状況を確認済み")
    page.click("#approve-selected")
    page.wait_for_load_state()
    assert page.locator(".alert-success").count() >= 1
    assert page.locator(f"tr.approval-row[data-id='{req.id}']").count() == 0

    stale.locator(f"tr.approval-row[data-id='{req.id}'] input[name=ids]").check()
    stale.click("#approve-selected")
    stale.wait_for_load_state()
    assert "(409)" in stale.locator(".alert-danger").inner_text()
    ctx.close()

    ctx, page = _login(browser, live_url, users["compliance"])
    page.goto(f"{live_url}/approvals/pending/")
    assert page.locator(f"tr.approval-row[data-id='{req.id}']").count() == 1
    page.goto(f"{live_url}/approvalrequestview/show/{req.id}")
    assert page.locator(".compliance-reasons [data-reason='AMOUNT_AT_OR_ABOVE_THRESHOLD']").count() == 1
    page.fill(".approval-decide-form textarea[name=comment]", "適合性を確認")
    page.click(".approval-decide-form button[value=approve]")
    page.wait_for_load_state()
    assert page.locator(".approval-status").first.get_attribute("data-status") == "APPROVED"
    if SHOT_DIR:
        page.screenshot(path=SHOT_DIR / "show-approved.png", full_page=True)
    history = page.locator("table.approval-history").inner_text()
    assert "Manager User" in history and "資産状況を確認済み" in history
    assert "Compliance User" in history and "適合性を確認" in history
    ctx.close()
