"""A real Chromium (Debian's, driven by Playwright) against a live server on the test database."""

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def login(browser, live_url, email):
    page = browser.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def test_sales_logs_in_and_sees_only_own_customers(browser, live_url, users, make):
    own = make.customer("sales", name="株式会社ブラウザ自社")
    other = make.customer("sales2", name="株式会社ブラウザ他社")
    page = login(browser, live_url, users["sales"].email)
    assert "/login" not in page.url
    page.goto(f"{live_url}/customerview/list/?_flt_2_name=ブラウザ")
    body = page.content()
    assert own.name in body and other.name not in body
    resp = page.goto(f"{live_url}/customerview/show/{other.id}")
    assert resp.status == 404
    resp = page.goto(f"{live_url}/customerview/show/{own.id}")
    assert resp.status == 200 and own.name in page.content()
    page.close()


def test_wrong_password_stays_on_login(browser, live_url, users):
    page = browser.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", users["manager"].email)
    page.fill("input[name=password]", "wrong-password")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/login" in page.url
    page.close()


def test_assets_are_served_locally(browser, live_url, users):
    """Every request the page makes goes to our own server: the app works offline."""
    page = browser.new_page()
    hosts = set()
    page.on("request", lambda req: hosts.add(req.url.split("/")[2]))
    page.goto(f"{live_url}/login/")
    page.wait_for_load_state("networkidle")
    assert hosts == {live_url.split("/")[2]}
    page.close()
