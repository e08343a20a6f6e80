"""The navbar's global search in Chromium: type, see grouped hits in scope, ArrowDown, Enter opens the record."""

import uuid

import pytest

pytestmark = pytest.mark.browser


def test_type_arrow_down_enter_opens_the_record(browser_page, live_url, make, shot):
    t = "b" + uuid.uuid4().hex[:8]
    customer = make.customer("sales", name=f"検索商事{t}")
    task = make.task("sales", customer=customer, title=f"検索の件{t}")
    theirs = make.customer("sales2", name=f"他人商事{t}")
    page = browser_page("sales")
    errors = []  # console errors and uncaught page errors (a CSP refusal of the script shows up here)
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_url}/taskview/list/")
    box = page.locator("#crm-search-q")
    box.fill(t)
    results = page.locator("#crm-search-results")
    results.locator(".crm-search-option").first.wait_for()
    groups = results.locator(".crm-search-group")
    assert [groups.nth(i).get_attribute("data-kind") for i in range(groups.count())] == ["customers", "tasks"]
    text = results.inner_text()
    assert customer.name in text and task.title in text
    assert theirs.name not in text  # another rep's customer is never offered
    assert box.get_attribute("aria-expanded") == "true"
    box.press("ArrowDown")
    first = results.locator(".crm-search-option.active")
    assert first.inner_text().startswith(customer.name)
    box.press("ArrowDown")
    assert results.locator(".crm-search-option.active").inner_text().startswith(task.title)
    shot(page, "search")
    box.press("ArrowUp")
    with page.expect_navigation():
        box.press("Enter")
    assert page.url == f"{live_url}/customerview/show/{customer.id}"
    assert customer.name in page.content()
    assert errors == []


def test_enter_without_a_highlighted_hit_opens_the_results_page(browser_page, live_url, make):
    t = "b" + uuid.uuid4().hex[:8]
    meeting = make.meeting("sales", title=f"検索面談{t}")
    page = browser_page("sales")
    page.goto(f"{live_url}/customerview/list/")
    page.fill("#crm-search-q", t)
    with page.expect_navigation():
        page.press("#crm-search-q", "Enter")
    assert "/search/?q=" in page.url
    link = page.locator(f"a.crm-search-hit[href='/meetingview/show/{meeting.id}']")
    assert link.count() == 1
