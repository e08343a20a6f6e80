"""Saved views in Chromium: filter a list, save it under a name, open it again from the list's dropdown, delete it."""

import uuid

import pytest

pytestmark = pytest.mark.browser


def test_save_open_and_delete_a_view_from_the_list(browser_page, live_url, make, shot):
    t = "w" + uuid.uuid4().hex[:8]
    wanted = make.customer("sales", name=f"保存ビュー{t}")
    page = browser_page("sales")
    page.goto(f"{live_url}/customerview/list/?_flt_2_name={t}&_oc_CustomerView=name&_od_CustomerView=asc")
    page.fill("#crm-save-view-name", f"私の顧客 {t}")
    with page.expect_navigation():
        page.click(".crm-save-view button[type=submit]")
    assert page.locator(".alert-success").count() >= 1
    # Somewhere else, then back through the dropdown: the same filter and sort.
    page.goto(f"{live_url}/customerview/list/")
    page.click(".crm-saved-views .dropdown-toggle")
    link = page.locator(".crm-saved-views-menu a.crm-saved-view-open", has_text=t)
    assert link.is_visible()
    shot(page, "dropdown")
    with page.expect_navigation():
        link.click()
    assert f"_flt_2_name={t}" in page.url and "_od_CustomerView=asc" in page.url
    assert wanted.name in page.content()
    # The menu page lists it; delete it there (a POST with the form's token).
    page.goto(f"{live_url}/savedviews/")
    row = page.locator(".crm-saved-views-table tr.crm-saved-view", has_text=t)
    assert row.count() == 1
    with page.expect_navigation():
        row.locator("button[type=submit]").click()
    assert page.locator(".crm-saved-views-table tr.crm-saved-view", has_text=t).count() == 0
