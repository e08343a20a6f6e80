"""Phones (issue 21, part 9): at 375 px every list is a stack of cards with no sideways scroll, a Manager
decides a request with a comment from the inbox, a rep completes a task from the list and picks a
customer in a form through the searchable input. Screenshots: phone-inbox, phone-tasks, phone-form."""

import uuid
from datetime import timedelta

import pytest

from models import ApprovalRequest, Task
from models.approval import ApprovalStatus
from models.base import utcnow
from models.task import TaskStatus

pytestmark = pytest.mark.browser
PHONE = {"width": 375, "height": 812}


def _no_sideways_scroll(page):
    """The page is no wider than the phone's screen."""
    width = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    assert width <= PHONE["width"], f"{page.url} is {width}px wide"


def test_manager_decides_a_request_with_a_comment_on_a_phone(browser_page, live_url, make, db, shot):
    req = make.approval("sales", amount=3_000_000, product_name=f"電話で承認{uuid.uuid4().hex[:6]}")
    page = browser_page("manager", **PHONE)
    page.goto(f"{live_url}/approvals/pending/")
    _no_sideways_scroll(page)
    card = page.locator(f"tr.approval-row[data-id='{req.id}']")
    assert card.count() == 1
    box = card.bounding_box()
    assert box["width"] <= PHONE["width"]
    assert "¥3,000,000" in card.inner_text()
    shot(page, "phone-inbox")
    card.locator("input[name=ids]").check()
    page.fill("#comment", "スマホから承認")
    page.locator("#approve-selected").scroll_into_view_if_needed()
    page.click("#approve-selected")
    page.wait_for_load_state()
    assert page.locator(".alert-success").count() >= 1
    assert page.locator(f"tr.approval-row[data-id='{req.id}']").count() == 0
    db.session.expire_all()
    decided = db.session.get(ApprovalRequest, req.id)
    step = min(decided.steps, key=lambda s: s.sequence)
    assert step.decision is not None and step.comment == "スマホから承認"
    assert decided.status in (ApprovalStatus.APPROVED, ApprovalStatus.PENDING)  # PENDING: Compliance decides next


def test_lists_are_cards_without_sideways_scroll_and_a_task_completes_from_its_card(browser_page, live_url, make, db, shot):
    customer = make.customer("sales", name=f"スマホ顧客{uuid.uuid4().hex[:6]}")
    task = make.task("sales", customer=customer, title=f"電話で完了{uuid.uuid4().hex[:6]}",
                     due_date=utcnow() - timedelta(days=3650))  # overdue, and the first open task of the shared database
    make.meeting("sales", customer=customer)
    make.approval("sales", customer=customer)
    page = browser_page("sales", **PHONE)
    for path in ("/customerview/list/", "/meetingview/list/", "/approvalrequestview/list/", "/notificationview/list/",
                 "/approvals/mine/", "/taskview/add", f"/customerview/show/{customer.id}"):
        page.goto(f"{live_url}{path}")
        assert page.locator(".alert-danger, .traceback").count() == 0, path
        _no_sideways_scroll(page)
    page.goto(f"{live_url}/taskview/list/")
    _no_sideways_scroll(page)
    card = page.locator("tr", has_text=task.title)
    assert "crm-row-overdue" in card.get_attribute("class")
    # A card, not a table row: its cells stack and carry their column's label.
    assert page.evaluate("getComputedStyle(document.querySelector('.crm-table thead')).display") == "none"
    assert card.locator("td[data-label]").first.evaluate("e => getComputedStyle(e, '::before').content") not in ("none", "normal")
    shot(page, "phone-tasks")
    card.locator("button", has_text="完了").click()
    page.wait_for_load_state()
    assert page.locator(".alert-success").count() >= 1
    db.session.expire_all()
    assert db.session.get(Task, task.id).status == TaskStatus.COMPLETED


def test_a_rep_picks_a_customer_by_typing_on_a_phone(browser_page, live_url, make, db, shot):
    tag = uuid.uuid4().hex[:6]
    mine = make.customer("sales", name=f"検索用{tag}自社")
    make.customer("sales2", name=f"検索用{tag}他社")
    page = browser_page("sales", **PHONE)
    page.goto(f"{live_url}/taskview/add")
    page.fill("input[name=title]", f"入力補完{tag}")
    # tom-select replaced the input: type into its control and pick the offered row.
    control = page.locator("#customer-ts-control")  # tom-select's own text box for the customer input
    control.click()
    control.type(f"検索用{tag}")
    option = page.locator(".ts-dropdown .option", has_text=mine.name)
    option.wait_for(timeout=5000)
    assert page.locator(".ts-dropdown .option", has_text="他社").count() == 0  # another rep's customer is never offered
    _no_sideways_scroll(page)
    shot(page, "phone-form")
    option.click()
    assert page.locator("input[name=customer]").input_value() == mine.id
    page.locator("#model_form [type=submit]").first.click()
    page.wait_for_load_state()
    db.session.expire_all()
    created = db.session.query(Task).filter_by(title=f"入力補完{tag}").one()
    assert created.customer_id == mine.id
