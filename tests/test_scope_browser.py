"""Related-field choices in a real Chromium (issue 18, item 2): the meeting form of a Sales user."""

import pytest
import sqlalchemy as sa

from models import Customer
from models.base import utcnow
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_sales_meeting_form_offers_only_their_customers(browser, live_url, users, make, db):
    own = make.customer("sales", name="株式会社ブラウザ選択自社")
    other = make.customer("sales2", name="株式会社ブラウザ選択他社")
    gone = make.customer("sales", name="株式会社ブラウザ選択削除済")
    gone.deleted_at = utcnow()
    db.session.commit()
    uid = users["sales"].id
    expected = set(
        db.session.execute(
            sa.select(Customer.id).where(
                Customer.deleted_at.is_(None), sa.or_(Customer.assigned_sales_id == uid, Customer.created_by_id == uid)
            )
        ).scalars()
    )

    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", users["sales"].email)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    page.goto(f"{live_url}/meetingview/add")
    # The form's related fields are searchable inputs (views/autocomplete.py): every choice the
    # customer input can offer, read page by page from the scoped endpoint it names, as this browser.
    customers = _offered(page, live_url, "customer")
    assert customers == expected and own.id in customers
    assert other.id not in customers and gone.id not in customers
    assert _offered(page, live_url, "sales") == {str(uid)}
    # The tom-select a user actually types into offers the same names.
    control = page.locator("#customer-ts-control")  # tom-select's own text box for the customer input
    control.click()
    control.type("ブラウザ選択")
    page.locator(".ts-dropdown .option", has_text="自社").wait_for()
    results = page.locator(".ts-dropdown .option").all_inner_texts()
    assert any("自社" in r for r in results) and not any("他社" in r or "削除済" in r for r in results)
    context.close()


def _offered(page, live_url, name):
    """Every id the input `name` of the page offers: its autocomplete endpoint, paged with the browser's session."""
    source = page.get_attribute(f"input[name={name}]", "data-autocomplete")
    assert source, f"input {name} names no autocomplete endpoint"
    offered, number = set(), 1
    while True:
        rows = page.request.get(f"{live_url}{source}&limit=100&page={number}").json()["data"]
        offered |= {row["value"] for row in rows}
        if len(rows) < 100:
            return offered
        number += 1
