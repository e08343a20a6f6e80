"""views/rq_admin.py: rq-dashboard at /admin/rq for Admins only, behind FAB's login, with CSRF and the CSP kept.

Real Redis: each test makes a queue of its own with a job in it (rq's public API) and
removes it afterwards.
"""

import re
import uuid

import pytest
import redis
from rq import Queue

PREFIX = "/admin/rq"


@pytest.fixture()
def own_queue(redis_url):
    """An RQ queue named for this test holding one job (never run: no worker listens to it)."""
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(f"rqadmin-{uuid.uuid4().hex[:8]}", connection=conn)
    queue.enqueue("os.getpid")
    yield queue
    queue.delete(delete_jobs=True)


def test_anonymous_callers_are_sent_to_the_login_and_come_back(client, own_queue):
    """Every dashboard path, pages and JSON, redirects to FAB's login with `next` naming it."""
    for path in ("/", "/0/view/jobs", "/0/data/queues.json", f"/queue/{own_queue.name}/queued/empty"):
        resp = client.get(PREFIX + path) if not path.endswith("empty") else client.post(PREFIX + path, csrf=False)
        if path.endswith("empty"):
            assert resp.status_code == 400  # CSRFProtect refuses a POST without the token before anything else
            continue
        assert resp.status_code == 302, (path, resp.status_code)
        assert "/login/" in resp.headers["Location"] and "next=" in resp.headers["Location"]
        assert PREFIX.replace("/", "%2F") in resp.headers["Location"] or PREFIX in resp.headers["Location"]
    assert own_queue.count == 1


@pytest.mark.parametrize("role", ["sales", "manager", "compliance"])
def test_every_other_role_gets_403(browser_login, own_queue, role):
    """Sales, Manager and Compliance (signed in through the form) are refused the pages, the JSON and the actions."""
    c = browser_login(role)
    assert c.get(f"{PREFIX}/").status_code == 403
    assert c.get(f"{PREFIX}/0/data/queues.json").status_code == 403
    token = c.form_token()
    resp = c.post(f"{PREFIX}/queue/{own_queue.name}/queued/empty", headers={"X-CSRFToken": token})
    assert resp.status_code == 403 and own_queue.count == 1


def test_a_bearer_token_is_no_way_in(client, auth, own_queue):
    """The dashboard is a screen: an /api token, even an Admin's, is not a session (sent to the login)."""
    resp = client.get(f"{PREFIX}/0/data/queues.json", headers=auth("admin"))
    assert resp.status_code == 302 and "/login/" in resp.headers["Location"]


def test_an_admin_sees_the_queues_and_acts_with_the_csrf_token(browser_login, own_queue):
    """The page (nonce'd script under the screens' CSP), the queue's JSON, and an action: refused without the token, done with it."""
    c = browser_login("admin")
    home = c.get("/").get_data(as_text=True)
    assert f'href="{PREFIX}/" data-link="rq-dashboard"' in home  # from the home page's event pipeline
    page = c.get(f"{PREFIX}/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    assert f'<script type="text/javascript" nonce="{nonce}">' in html and "X-CSRFToken" in html
    token = re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)

    queues = c.get(f"{PREFIX}/0/data/queues.json").json["queues"]
    (mine,) = [q for q in queues if q["name"] == own_queue.name]
    assert mine["count"] == 1
    jobs = c.get(f"{PREFIX}/0/data/jobs/{own_queue.name}/queued/8/asc/1.json").json
    assert [j["id"] for j in jobs["jobs"]] == own_queue.job_ids

    empty = f"{PREFIX}/queue/{own_queue.name}/queued/empty"
    assert c.post(empty, csrf=False).status_code == 400 and own_queue.count == 1
    assert c.post(empty, headers={"X-CSRFToken": token}, csrf=False).status_code == 200
    assert own_queue.count == 0


def test_requeue_all_answers_only_a_post(browser_login, own_queue):
    """rq-dashboard also requeues on GET; here a GET changes nothing (405)."""
    c = browser_login("admin")
    assert c.get(f"{PREFIX}/requeue/{own_queue.name}").status_code == 405


@pytest.mark.browser
def test_the_dashboard_runs_in_chromium_for_an_admin(browser_page, live_url, own_queue, shot):
    """Its scripts run under the CSP (the queue table fills in from the JSON), no console or CSP error."""
    page = browser_page("admin")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{live_url}{PREFIX}/")
    row = page.locator("table tr", has_text=own_queue.name)
    row.first.wait_for(timeout=15000)
    assert errors == [], errors
    shot(page, "queues")
