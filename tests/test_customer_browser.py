"""Sales works from the customer page in Chromium: adds a meeting, sees it in the timeline and on the calendar."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from models import Meeting
from models.base import utcnow
from tests.helpers import reload

pytestmark = pytest.mark.browser


def test_sales_adds_a_meeting_from_the_customer_page_and_finds_it_on_the_calendar(browser_page, live_url, make, db, shot):
    customer = make.customer("sales", name="株式会社カレンダー物語", investment_profile="moderate")
    other = make.customer("sales2", name="株式会社他人の物語")
    make.meeting("sales2", customer=other, title="他人の物語の商談", scheduled_at=utcnow() + timedelta(days=1))
    page = browser_page("sales")
    # A CSP refusal (an inline script, a CDN) or a script error shows here.
    problems = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"{live_url}/customerview/show/{customer.id}")
    assert page.locator("h2.customer-name").inner_text() == customer.name

    # Tomorrow 10:00 in the display zone: inside the month view the calendar opens on (or its trailing week).
    when = (utcnow() + timedelta(days=1)).astimezone(ZoneInfo("Asia/Tokyo")).replace(hour=10, minute=0, second=0, microsecond=0)
    page.fill("#meeting-title", "物語の初回訪問")
    page.fill("#meeting-at", when.strftime("%Y-%m-%dT%H:%M"))
    page.select_option("#meeting-type", "visit")
    page.fill("#meeting-location", "本社会議室")
    page.click(".quick-add-meeting button[type=submit]")
    page.wait_for_load_state()
    assert page.url.endswith(f"/customerview/show/{customer.id}")
    assert page.locator(".alert-success").count() >= 1

    meeting = db.session.execute(sa.select(Meeting).where(Meeting.customer_id == customer.id)).scalar_one()
    assert meeting.scheduled_at == when
    item = page.locator(f".timeline-item[data-resource-id='{meeting.id}'][data-action='CREATE']")
    assert item.count() == 1 and "物語の初回訪問" in item.inner_text()
    assert page.locator(f".related-meeting[data-id='{meeting.id}']").count() == 1
    shot(page, "customer-page")

    page.click(".customer-page-actions a[href='/calendar/']")
    event = page.locator(f".fc-event[data-event-id='meeting:{meeting.id}']")
    if event.count() == 0 and when.month != utcnow().astimezone(ZoneInfo("Asia/Tokyo")).month:
        page.click(".fc-next-button")
    event.wait_for(timeout=10_000)
    assert "物語の初回訪問" in event.inner_text()
    assert page.locator(".fc-event").count() >= 1
    assert "他人の物語" not in page.content()
    shot(page, "calendar")

    # Drag the meeting one day along its week row (back on a Saturday, the row's last day):
    # the move goes through the service and keeps the time of day.
    shift = -1 if when.weekday() == 5 else 1
    source = event.bounding_box()
    width = page.locator(f"td.fc-day[data-date='{when.date().isoformat()}']").bounding_box()["width"]
    x, y = source["x"] + 5, source["y"] + source["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + shift * width / 2, y, steps=5)
    page.mouse.move(x + shift * width, y, steps=5)
    page.mouse.up()
    # calendar.js marks the calendar once the server accepted the move (no eval under the CSP).
    page.wait_for_selector("#crm-calendar[data-last-move]", timeout=10_000)
    assert page.locator(".crm-calendar-error.hidden").count() == 1
    assert reload(db, Meeting, meeting.id).scheduled_at == when + timedelta(days=shift)
    assert problems == []


def test_the_calendar_on_a_phone_lists_the_week(browser_page, live_url, make, shot):
    meeting = make.meeting("sales", title="電話幅の商談", scheduled_at=utcnow())  # inside the week shown
    page = browser_page("sales", width=375, height=740)
    page.goto(f"{live_url}/calendar/")
    page.locator(".fc-list").wait_for(timeout=10_000)
    page.locator(f".fc-event[data-event-id='meeting:{meeting.id}']").wait_for(timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375 + 1
    shot(page, "calendar-phone")
