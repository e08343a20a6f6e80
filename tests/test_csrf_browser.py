"""CSRF through a real Chromium (issue 18, item 1): another site's page changes nothing; the UI's own delete works.

The attacker's page is served by a second local HTTP server: from `localhost` (another
site: the SameSite=Lax session cookie stays home for its images and POSTs) and from
`127.0.0.1` on another port (same site, other origin: the cookie goes along, so only the
missing token and FAB's refusal of a GET delete stop it).
"""

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask_appbuilder.security.sqla.models import User

from models import Meeting
from tests.conftest import PASSWORD
from tests.helpers import reload

pytestmark = pytest.mark.browser


class AttackSite:
    """A second web server whose pages are set by the test (path -> HTML)."""

    def __init__(self):
        pages = self.pages = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path, "not found").encode()
                self.send_response(200 if self.path in pages else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, host, html):
        """Serve `html` and return its URL on `host` (localhost or 127.0.0.1)."""
        path = f"/{uuid.uuid4().hex}.html"
        self.pages[path] = html
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="module")
def attacker():
    site = AttackSite()
    yield site
    site.server.shutdown()


def _login(browser, live_url, user):
    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    page.goto(f"{live_url}/login/")
    page.fill("input[name=username]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url
    return context, page


@pytest.fixture()
def victims(app, db):
    """make() -> the id of a fresh Sales user nothing refers to (an Admin could delete it)."""
    from app.services.users import create_user

    def make_one():
        db.session.info["audit_disabled"] = True
        try:
            return create_user(f"victim-{uuid.uuid4().hex[:8]}@example.com", "Victim User", "Sales", PASSWORD).id
        finally:
            db.session.info.pop("audit_disabled", None)

    return make_one


def _attack(page, live_url, attacker, host, get_urls, post_url):
    """Load another site's page: an <img> and a clicked link GET `get_urls`, then a form auto-posts to `post_url`."""
    answered = []
    page.on("requestfinished", lambda req: answered.append(req.url))
    img_url, link_url = get_urls
    lure = page.goto(attacker.page(host, f'<img src="{img_url}" alt=""><a id="lure" href="{link_url}">win a prize</a>'))
    assert lure.status == 200
    page.wait_for_load_state("load")
    with page.expect_navigation():
        page.click("#lure")
    form = f'<form id="f" method="post" action="{post_url}"><input name="delete" value="1"></form>'
    with page.expect_navigation(url=lambda u: u.startswith(live_url)):
        page.goto(attacker.page(host, form + '<script>document.getElementById("f").submit()</script>'))
    # Each forged request reached the app (so "nothing changed" is the app's doing, not the browser's).
    assert img_url in answered and link_url in answered


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_another_sites_page_deletes_no_user_with_an_admin_session(browser, live_url, attacker, users, db, victims, host):
    by_img, by_link, by_post = victims(), victims(), victims()
    context, page = _login(browser, live_url, users["admin"])
    _attack(
        page, live_url, attacker, host,
        (f"{live_url}/users/delete/{by_img}", f"{live_url}/users/delete/{by_link}"),
        f"{live_url}/users/delete/{by_post}",
    )
    db.session.expire_all()
    assert all(db.session.get(User, uid) is not None for uid in (by_img, by_link, by_post))
    # The Admin's session is untouched and the screen still lists them.
    page.goto(f"{live_url}/users/list/?psize_UserDBModelView=100")
    assert "/login" not in page.url
    context.close()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_another_sites_page_deletes_no_meeting_with_a_sales_session(browser, live_url, attacker, users, make, db, host):
    by_img, by_link, by_post = (make.meeting("sales").id for _ in range(3))
    context, page = _login(browser, live_url, users["sales"])
    _attack(
        page, live_url, attacker, host,
        (f"{live_url}/meetingview/delete/{by_img}", f"{live_url}/meetingview/delete/{by_link}"),
        f"{live_url}/meetingview/delete/{by_post}",
    )
    assert all(reload(db, Meeting, mid) is not None for mid in (by_img, by_link, by_post))
    context.close()


def _delete_from_list(page, list_url, delete_path):
    page.goto(list_url)
    page.locator(f'[id="btn-delete-{delete_path}"]').click()
    page.locator("#modal-confirm-ok").wait_for(state="visible")
    with page.expect_navigation():
        page.click("#modal-confirm-ok")


def test_the_uis_own_delete_still_works(browser, live_url, users, make, db, victims):
    victim = victims()
    context, page = _login(browser, live_url, users["admin"])
    _delete_from_list(page, f"{live_url}/users/list/?psize_UserDBModelView=100", f"/users/delete/{victim}")
    db.session.expire_all()
    assert db.session.get(User, victim) is None
    context.close()

    meeting_id = make.meeting("sales", title="画面から削除する商談").id
    context, page = _login(browser, live_url, users["sales"])
    _delete_from_list(page, f"{live_url}/meetingview/list/?psize_MeetingView=100", f"/meetingview/delete/{meeting_id}")
    assert reload(db, Meeting, meeting_id) is None
    context.close()


def test_navbar_logout_posts_the_form(browser, live_url, users):
    context, page = _login(browser, live_url, users["manager"])
    page.goto(f"{live_url}/customerview/list/")
    page.click("a.dropdown-toggle:has(.fa-user)")
    with page.expect_navigation():
        page.click("#navbar-logout")
    resp = page.goto(f"{live_url}/customerview/list/")
    assert "/login" in page.url, resp.url
    context.close()
