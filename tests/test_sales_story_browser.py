"""The Sales story in Chromium, one session from login to calendar: an overdue task highlighted on
the home page and completed from there, then the customer page, a meeting added from it, seen in
the timeline and on the calendar, and moved there."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from models import Meeting, Task
from models.base import utcnow
from tests.helpers import long_ago, reload, watch_console
from tests.test_home import leftovers  # noqa: F401  (the fixture: tasks cancelled after the test)

pytestmark = pytest.mark.browser



def test_sales_completes_an_overdue_task_from_home_then_adds_a_meeting_from_the_customer_page(
    browser_page, live_url, make, db, shot, leftovers
):
    customer = make.customer("sales", name="株式会社カレンダー物語", investment_profile="moderate")
    other = make.customer("sales2", name="株式会社他人の物語")
    make.meeting("sales2", customer=other, title="他人の物語の商談", scheduled_at=utcnow() + timedelta(days=1))
    task = make.task("sales", customer=customer, title="ブラウザ: 期限切れの電話", due_date=long_ago())
    theirs = make.task("sales2", title="ブラウザ: 他の担当者", due_date=long_ago())
    leftovers += [task, theirs]
    page = browser_page("sales")
    problems = watch_console(page)

    # Home: the overdue task is highlighted, another rep's is absent; one click completes it.
    page.goto(f"{live_url}/")
    row = page.locator(f"[data-block=overdue] tr[data-id='{task.id}']")
    assert row.count() == 1
    assert "crm-overdue" in row.get_attribute("class")
    background = row.locator("td").first.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), background
    assert page.locator(f"tr[data-id='{theirs.id}']").count() == 0
    shot(page, "home-sales")
    row.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert page.url.rstrip("/") == live_url
    assert page.locator(".alert-success").count() >= 1
    assert page.locator(f"[data-block=overdue] tr[data-id='{task.id}']").count() == 0
    assert reload(db, Task, task.id).status.name == "COMPLETED"

    # The customer page: add a meeting with the customer filled in.
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

    # The calendar shows it (and nothing of another rep's).
    page.click(".customer-page-actions a[href='/calendar/']")
    event = page.locator(f".fc-event[data-event-id='meeting:{meeting.id}']")
    if event.count() == 0 and when.month != utcnow().astimezone(ZoneInfo("Asia/Tokyo")).month:
        page.click(".fc-next-button")
    event.wait_for(timeout=10_000)
    assert "物語の初回訪問" in event.inner_text()
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
