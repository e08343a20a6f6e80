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
    customers = set(page.eval_on_selector_all("select#customer option", "els => els.map(e => e.value)")) - {"__None", ""}
    assert customers == expected and own.id in customers
    assert other.id not in customers and gone.id not in customers
    reps = set(page.eval_on_selector_all("select#sales option", "els => els.map(e => e.value)")) - {"__None", ""}
    assert reps == {str(uid)}
    # The select2 dropdown a user actually types into offers the same names.
    page.locator("select#customer + .select2-container").click()
    page.locator(".select2-search__field").fill("ブラウザ選択")
    page.locator(".select2-results__option", has_text="自社").wait_for()
    results = page.locator(".select2-results__option").all_inner_texts()
    assert any("自社" in r for r in results) and not any("他社" in r or "削除済" in r for r in results)
    context.close()
