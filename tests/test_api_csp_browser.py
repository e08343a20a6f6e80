"""The CSP keeps FAB's screens working: a real Chromium reports no CSP violation or script error."""

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_screens_and_swagger_run_under_the_csp(browser, live_url, users):
    """Login, a list, an add form and Swagger UI load with scripts running and no CSP report."""
    problems = []
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
    page.close()
    # The app has no favicon; everything else must load and run.
    assert not [m for m in problems if "favicon.ico" not in m], problems
