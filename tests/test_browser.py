"""A real Chromium (Debian's, driven by Playwright) against a live server on the test database."""

import threading

import pytest
from werkzeug.serving import make_server

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def login(browser, live_server, email):
    page = browser.new_page()
    page.goto(f"{live_server}/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def test_sales_logs_in_and_sees_only_own_customers(browser, live_server, users, make):
    own = make.customer("sales", name="株式会社ブラウザ自社")
    other = make.customer("sales2", name="株式会社ブラウザ他社")
    page = login(browser, live_server, users["sales"].email)
    assert "/login" not in page.url
    page.goto(f"{live_server}/customerview/list/?_flt_2_name=ブラウザ")
    body = page.content()
    assert own.name in body and other.name not in body
    resp = page.goto(f"{live_server}/customerview/show/{other.id}")
    assert resp.status == 404
    resp = page.goto(f"{live_server}/customerview/show/{own.id}")
    assert resp.status == 200 and own.name in page.content()
    page.close()


def test_wrong_password_stays_on_login(browser, live_server, users):
    page = browser.new_page()
    page.goto(f"{live_server}/login/")
    page.fill("input[name=username]", users["manager"].email)
    page.fill("input[name=password]", "wrong-password")
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/login" in page.url
    page.close()


def test_assets_are_served_locally(browser, live_server, users):
    """Every request the page makes goes to our own server: the app works offline."""
    page = browser.new_page()
    hosts = set()
    page.on("request", lambda req: hosts.add(req.url.split("/")[2]))
    page.goto(f"{live_server}/login/")
    page.wait_for_load_state("networkidle")
    assert hosts == {live_server.split("/")[2]}
    page.close()
