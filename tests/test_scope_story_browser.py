"""The scope story in Chromium: with another rep's records in place, Sales never sees any of them —
not on the home page, in the navbar search (dropdown and results page), in the calendar feed, on
the approvals board, in a customer's page and timeline, on the customer, task, meeting, request and
notification lists or their record pages (404), in the list exports (CSV and Excel), in the forms'
customer autocomplete, nor in the notification bell. Each
screen also shows Sales's own record of the same kind, so an empty or broken page cannot pass for
a scoped one."""

import csv
import io
import uuid
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from app.exports import BOM
from models.base import utcnow
from tests.helpers import long_ago

# Due dates and request times from long_ago(): further back than any earlier test's rows, so
# Sales's own lead the home page's overdue list and the board's columns (oldest first), and
# sales2's, made after them, are older still: first in line, were they ever let through.

pytestmark = pytest.mark.browser



def _texts(*records):
    """The titles and names of `records`, as a screen would show them."""
    return [getattr(r, "title", None) or getattr(r, "name", None) or r.product_name for r in records]


def _note(users, owner, title):
    """An in-app notification for `owner`, stored through the notification service."""
    from app.extensions import db
    from app.services.notifications import notify
    from models.notification import NotificationType

    note = notify(db.session, users[owner].id, NotificationType.SYSTEM, title)
    db.session.commit()
    return note


def _old_request(users, owner, customer, product_name, requested_at):
    """A pending request of `owner`'s submitted through the approvals service, back-dated to `requested_at`."""
    from app.context import acting_as
    from app.extensions import db
    from app.services.approvals import submit
    from models import ApprovalRequest

    user = users[owner]
    with acting_as(user):
        req = ApprovalRequest(customer_id=customer.id, product_name=product_name, product_risk=3, amount=1_000_000)
        submit(req, user, requested_at=requested_at)
        db.session.commit()
    return req


@pytest.fixture()
def world(make, users):
    """Sales's records and sales2's, each named with one tag; and a task of sales2's on a customer of Sales."""
    t = "s" + uuid.uuid4().hex[:8]
    soon = utcnow() + timedelta(hours=2)
    mine_customer = make.customer("sales", name=f"自社顧客{t}", investment_profile="moderate")
    their_customer = make.customer("sales2", name=f"他社顧客{t}", investment_profile="moderate")
    return {
        "tag": t,
        "mine": {
            "customer": mine_customer,
            "task": make.task("sales", customer=mine_customer, title=f"自分の電話{t}", due_date=long_ago()),
            "meeting": make.meeting("sales", customer=mine_customer, title=f"自分の面談{t}", scheduled_at=soon),
            "request": _old_request(users, "sales", mine_customer, f"自分の投信{t}", long_ago()),
            "note": _note(users, "sales", f"自分の通知{t}"),
        },
        "theirs": {
            "customer": their_customer,
            "task": make.task("sales2", customer=their_customer, title=f"他人の電話{t}", due_date=long_ago()),
            "meeting": make.meeting("sales2", customer=their_customer, title=f"他人の面談{t}", scheduled_at=soon),
            "request": _old_request(users, "sales2", their_customer, f"他人の投信{t}", long_ago()),
            # Another rep's task about Sales's own customer: it must stay off that customer's timeline.
            "cross": make.task("sales2", customer=mine_customer, title=f"他人の横入り{t}", due_date=long_ago()),
            "note": _note(users, "sales2", f"他人の通知{t}"),
        },
    }


def _assert_none_of_theirs(html, world, where):
    theirs = world["theirs"]
    for record in theirs.values():
        assert str(record.id) not in html, (where, record.id)
    for text in _texts(*theirs.values()):
        assert text not in html, (where, text)


def test_sales_never_sees_another_reps_records(browser_page, live_url, world, shot):
    mine, t = world["mine"], world["tag"]
    page = browser_page("sales")

    # Home: Sales's own overdue task is listed; sales2's (older still) is not.
    page.goto(f"{live_url}/")
    assert page.locator(f"[data-block=overdue] tr[data-id='{mine['task'].id}']").count() == 1
    _assert_none_of_theirs(page.content(), world, "home")
    shot(page, "home")

    # Navbar search: the tag finds Sales's customer, meeting and task, nothing of sales2's.
    page.fill("#crm-search-q", t)
    results = page.locator("#crm-search-results")
    results.locator(".crm-search-option").first.wait_for()
    text = results.inner_text()
    for own in _texts(mine["customer"], mine["meeting"], mine["task"]):
        assert own in text, own
    _assert_none_of_theirs(results.inner_html(), world, "search dropdown")
    shot(page, "search")
    with page.expect_navigation():
        page.press("#crm-search-q", "Enter")  # nothing highlighted: the results page
    assert page.locator(f"a.crm-search-hit[href='/customerview/show/{mine['customer'].id}']").count() == 1
    _assert_none_of_theirs(page.content(), world, "search page")

    # Calendar: the month Sales opens shows their meeting, not sales2's; then the feed it reads,
    # for mine and (refused or kept to their own) the team's.
    page.goto(f"{live_url}/calendar/")
    page.locator(f"[data-event-id='meeting:{mine['meeting'].id}']").first.wait_for()
    assert page.locator(f"[data-event-id='meeting:{world['theirs']['meeting'].id}']").count() == 0
    _assert_none_of_theirs(page.content(), world, "calendar page")
    start = (utcnow() - timedelta(days=1)).date().isoformat()
    end = (utcnow() + timedelta(days=6)).date().isoformat()
    for who in ("mine", "team"):
        resp = page.request.get(f"{live_url}/calendar/feed", params={"start": start, "end": end, "who": who})
        body = resp.text()
        if resp.ok:
            ids = {item["extendedProps"]["recordId"] for item in resp.json()}
            assert mine["meeting"].id in ids, who
        _assert_none_of_theirs(body, world, f"calendar feed {who}")
    shot(page, "calendar")

    # Approvals board: Sales's own pending request has its card; sales2's (older still) has none.
    page.goto(f"{live_url}/approvals/board/")
    assert page.locator(f".board-card[data-id='{mine['request'].id}']").count() == 1
    _assert_none_of_theirs(page.content(), world, "board")
    shot(page, "board")

    # Customer timeline: Sales's customer shows its own task, not sales2's task about it;
    # sales2's customer page is not found at all.
    page.goto(f"{live_url}/customerview/show/{mine['customer'].id}")
    html = page.content()
    assert mine["task"].title in html
    _assert_none_of_theirs(html, world, "customer page")
    shot(page, "timeline")
    resp = page.goto(f"{live_url}/customerview/show/{world['theirs']['customer'].id}")
    assert resp.status == 404

    # Exports: the customer list filtered by the tag, downloaded from its own links.
    page.goto(f"{live_url}/customerview/list/?_flt_2_name={t}")
    with page.expect_download() as download:
        page.click("a.crm-export-csv")
    data = open(download.value.path(), "rb").read().decode("utf-8")
    assert data.startswith(BOM)
    rows = list(csv.reader(io.StringIO(data.removeprefix(BOM))))
    assert [row[0] for row in rows[1:]] == [mine["customer"].name]
    _assert_none_of_theirs(data, world, "CSV export")
    with page.expect_download() as download:
        page.click("a.crm-export-xlsx")
    sheet = load_workbook(io.BytesIO(open(download.value.path(), "rb").read())).active
    cells = [str(c.value) for row in sheet.iter_rows() for c in row]
    assert mine["customer"].name in cells
    _assert_none_of_theirs("\n".join(cells), world, "Excel export")
    _assert_none_of_theirs(page.content(), world, "customer list")
    # The task list and its export (every task in Sales's scope with the tag in its title).
    page.goto(f"{live_url}/taskview/list/?_flt_2_title={t}")
    assert mine["task"].title in page.content()
    _assert_none_of_theirs(page.content(), world, "task list")
    with page.expect_download() as download:
        page.click("a.crm-export-csv")
    data = open(download.value.path(), "rb").read().decode("utf-8")
    assert mine["task"].title in data
    _assert_none_of_theirs(data, world, "task export")
    shot(page, "exports")

    # The meeting, request and notification lists (filtered by the tag where they filter), an Excel
    # export of the requests, and the record pages of sales2's records: not found.
    for path, own in (
        (f"/meetingview/list/?_flt_2_title={t}", mine["meeting"].title),
        (f"/approvalrequestview/list/?_flt_2_product_name={t}", mine["request"].product_name),
        ("/notificationview/list/?_oc_NotificationView=created_at&_od_NotificationView=desc", mine["note"].title),
    ):
        page.goto(f"{live_url}{path}")
        assert own in page.content(), path
        _assert_none_of_theirs(page.content(), world, path)
    page.goto(f"{live_url}/approvalrequestview/list/?_flt_2_product_name={t}")
    with page.expect_download() as download:
        page.click("a.crm-export-xlsx")
    sheet = load_workbook(io.BytesIO(open(download.value.path(), "rb").read())).active
    cells = "\n".join(str(c.value) for row in sheet.iter_rows() for c in row)
    assert mine["request"].product_name in cells
    _assert_none_of_theirs(cells, world, "request export")
    theirs = world["theirs"]
    for view, record in (("meetingview", theirs["meeting"]), ("taskview", theirs["task"]), ("taskview", theirs["cross"]),
                         ("approvalrequestview", theirs["request"]), ("notificationview", theirs["note"])):
        assert page.goto(f"{live_url}/{view}/show/{record.id}").status == 404, (view, record.id)

    # The customer autocomplete of the forms (assign and filter) and the notification bell.
    for purpose in ("assign", "filter"):
        resp = page.request.get(f"{live_url}/crm/autocomplete/customer", params={"q": t, "purpose": purpose})
        assert resp.ok, resp.text()
        assert [row["value"] for row in resp.json()["data"]] == [mine["customer"].id], purpose
    resp = page.request.get(f"{live_url}/notifications/bell")
    assert resp.ok and mine["note"].title in resp.text()
    _assert_none_of_theirs(resp.text(), world, "bell")
