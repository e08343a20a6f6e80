"""The calendar on a phone in Chromium (the Sales story through the customer page is tests/test_sales_story_browser.py)."""

import pytest

from models.base import utcnow

pytestmark = pytest.mark.browser


def test_the_calendar_on_a_phone_lists_the_week(browser_page, live_url, make, shot):
    meeting = make.meeting("sales", title="電話幅の商談", scheduled_at=utcnow())  # inside the week shown
    page = browser_page("sales", width=375, height=740)
    page.goto(f"{live_url}/calendar/")
    page.locator(".fc-list").wait_for(timeout=10_000)
    page.locator(f".fc-event[data-event-id='meeting:{meeting.id}']").wait_for(timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375 + 1
    shot(page, "calendar-phone")
