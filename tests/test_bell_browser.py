"""The notification bell in Chromium: the count, the dropdown, opening a record from it (at 1280 and
375 px), and the Manager story: the bell rises live when a rep submits, the Manager opens and approves."""

import uuid

import pytest

from models import Notification
from models.notification import NotificationType

pytestmark = pytest.mark.browser


def _note(db, user, title, link=None):
    note = Notification(user_id=user.id, type=NotificationType.APPROVAL_REQUEST, title=title, link=link)
    db.session.add(note)
    db.session.commit()
    return note


@pytest.mark.parametrize("width", [1280, 375])
def test_the_bell_opens_a_record_and_marks_it_read(browser_page, live_url, make, users, db, shot, width):
    req = make.approval("sales", product_name=f"ベル{uuid.uuid4().hex[:6]}")
    page = browser_page("manager", width=width)
    note = db.session.query(Notification).filter(
        Notification.user_id == users["manager"].id, Notification.title.contains(req.product_name)
    ).one()
    page.goto(f"{live_url}/customerview/list/")
    bell = page.locator("#crm-bell")
    # On a phone the collapsed navbar's toggle carries the count.
    badge = page.locator(".navbar-toggle .crm-bell-count" if width < 768 else "#crm-bell .crm-bell-count")
    badge.wait_for(state="visible", timeout=5000)
    assert int(badge.inner_text().rstrip("+")) >= 1
    if width < 768:
        page.click(".navbar-toggle")
        bell.locator(".crm-bell-count").wait_for(state="visible", timeout=5000)
    bell.locator(".crm-bell-toggle").click()
    item = bell.locator(f".crm-bell-item[data-id='{note.id}']")
    item.wait_for(state="visible", timeout=5000)
    assert req.product_name in item.inner_text()
    box = item.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= width + 1, box
    shot(page, f"bell-open-{width}")
    item.locator(".crm-bell-open button").click()
    page.wait_for_url(f"**/approvalrequestview/show/{req.id}")
    assert req.product_name in page.content()
    db.session.expire_all()
    assert db.session.get(Notification, note.id).is_read
