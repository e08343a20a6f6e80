"""The CSP keeps FAB's screens working: a real Chromium reports no CSP violation or script error."""

import shutil
import threading

import pytest
from werkzeug.serving import make_server

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_url(app):
    """The test app served on a free port in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_screens_and_swagger_run_under_the_csp(live_url, users):
    """Login, a list, an add form and Swagger UI load with scripts running and no CSP report."""
    from playwright import sync_api as playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        pytest.fail("chromium is not installed (make browser installs it)")
    problems = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("console", lambda m: problems.append(f"{m.text} @ {m.location}") if "Content Security Policy" in m.text or m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        page.goto(f"{live_url}/login/")
        page.fill("input[name=username]", users["admin"].email)
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_load_state("networkidle")
        for path in ("/customerview/list/", "/customerview/add", "/taskview/list/"):
            page.goto(f"{live_url}{path}")
            page.wait_for_load_state("networkidle")
            assert page.evaluate("typeof window.jQuery") == "function", path
        page.goto(f"{live_url}/swagger/v1")
        page.wait_for_selector(".opblock", timeout=15000)
        browser.close()
    # The app has no favicon; everything else must load and run.
    assert not [m for m in problems if "favicon.ico" not in m], problems
