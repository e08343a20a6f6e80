"""The approvals board in Chromium: a Manager approves from a card, then Compliance finds the
request in its column with the reasons it needs review and approves it there with a comment."""

import pytest

from models import ApprovalRequest, ApprovalStatus

pytestmark = pytest.mark.browser


def _card(page, column, item_id):
    return page.locator(f".board-column[data-column={column}] .board-card[data-id='{item_id}']")


def test_compliance_approves_from_its_column_with_a_comment(browser_page, live_url, make, db, shot):
    customer = make.customer("sales", investment_profile=None, risk_tolerance=3)
    req = make.approval("sales", customer=customer, amount=12_000_000, product_risk=6)

    page = browser_page("manager")
    page.goto(f"{live_url}/approvals/board/?customer={customer.id}")
    card = _card(page, "manager", req.id)
    assert card.count() == 1 and "¥12,000,000" in card.inner_text()
    shot(page, "board-manager")
    card.locator("textarea[name=comment]").fill("一次確認済み")
    card.locator("button[name=decision][value=approve]").click()
    page.wait_for_load_state()
    assert page.locator(".alert-success").count() >= 1
    assert _card(page, "compliance", req.id).count() == 1  # moved on, no longer decidable here
    assert _card(page, "compliance", req.id).locator("button[name=decision]").count() == 0

    page = browser_page("compliance")
    page.goto(f"{live_url}/approvals/board/?customer={customer.id}")
    card = _card(page, "compliance", req.id)
    assert card.count() == 1
    reasons = {el.get_attribute("data-reason") for el in card.locator(".board-reasons [data-reason]").all()}
    assert reasons == {"AMOUNT_AT_OR_ABOVE_THRESHOLD", "PRODUCT_RISK_ABOVE_TOLERANCE", "NO_INVESTMENT_PROFILE"}
    assert "顧客の投資方針が未登録" in card.inner_text()  # the reasons in Japanese, not as codes
    shot(page, "board-compliance")
    card.locator("textarea[name=comment]").fill("適合性を確認しました")
    card.locator("button[name=decision][value=approve]").click()
    page.wait_for_load_state()
    assert page.locator(".alert-success").count() >= 1
    assert _card(page, "approved", req.id).count() == 1 and _card(page, "compliance", req.id).count() == 0

    # At phone width the columns stack, each as wide as the screen at most (board.css).
    page.set_viewport_size({"width": 375, "height": 800})
    boxes = [page.locator(f".board-column[data-column={key}]").bounding_box() for key in ("manager", "compliance")]
    assert boxes[1]["y"] > boxes[0]["y"] and max(b["x"] + b["width"] for b in boxes) <= 375

    db.session.expire_all()
    stored = db.session.get(ApprovalRequest, req.id)
    assert stored.status == ApprovalStatus.APPROVED
    assert [s.comment for s in sorted(stored.steps, key=lambda s: s.sequence)] == ["一次確認済み", "適合性を確認しました"]
