"""A frontend on another origin drives /api from a real Chromium: CORS preflights, cached answers, nested records.

The API runs on one local port with CORS_ORIGINS naming a second one, which serves a small
page (like the seed's Next.js frontend) that logs in through /api, lists tasks, reads
`task.customer.name` and changes a task with PUT, PATCH and DELETE, each preflighted. A
page on a third, unlisted origin is refused by the browser.
"""

import json
import threading
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import redis

from app import caching
from tests.conftest import PASSWORD, swap_cache_backend

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>seed frontend</title></head>
<body><pre id="out">running</pre>
<script>
const API = %(api)s, EMAIL = %(email)s, PASSWORD = %(password)s, TASK = %(task)s, CUSTOMER = %(customer)s;
// The rep's tasks of one customer: the shared test database holds many more of theirs.
const LIST = "/api/tasks?limit=100" + (CUSTOMER ? "&customerId=" + CUSTOMER : "");
async function call(method, path, token, body) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(API + path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  return {status: resp.status, body: await resp.json()};
}
async function run() {
  const out = {};
  try {
    const login = await call("POST", "/api/auth/login", null, {email: EMAIL, password: PASSWORD});
    out.login = login.status;
    out.role = login.body.data.user.role;
    const token = login.body.data.token;
    const first = await call("GET", LIST, token);
    const again = await call("GET", LIST, token);
    out.list = [first.status, again.status];
    const task = first.body.data.find(t => t.id === TASK);
    out.customerName = task.customer.name;
    out.ownerRole = task.user.role;
    out.sameAgain = JSON.stringify(first.body) === JSON.stringify(again.body);
    const put = await call("PUT", "/api/tasks/" + TASK, token, {priority: "HIGH"});
    out.put = [put.status, put.body.data.priority, put.body.data.customer.name];
    const patch = await call("PATCH", "/api/tasks/" + TASK + "/complete", token);
    out.patch = [patch.status, patch.body.data.status];
    const del = await call("DELETE", "/api/tasks/" + TASK, token);
    out.del = del.status;
    const gone = await call("GET", "/api/tasks/" + TASK, token);
    out.gone = gone.status;
  } catch (e) {
    out.error = String(e);
  }
  window.results = out;
  document.getElementById("out").textContent = JSON.stringify(out);
}
run();
</script></body></html>
"""


class Recorder:
    """WSGI middleware keeping (method, path, Origin) of every request the API served."""

    def __init__(self, wsgi_app):
        self.wsgi_app, self.seen = wsgi_app, []

    def __call__(self, environ, start_response):
        self.seen.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO"), environ.get("HTTP_ORIGIN")))
        return self.wsgi_app(environ, start_response)


def serve_page(directory):
    """Serve `directory` on a free local port in a thread; return (server, origin)."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


@pytest.fixture()
def frontend(tmp_path):
    """The page's origin, served before the API exists (its origin goes into CORS_ORIGINS)."""
    server, origin = serve_page(tmp_path)
    yield tmp_path, origin
    server.shutdown()


@pytest.fixture()
def cors_api(config_class, frontend, redis_url):
    """The app with CORS_ORIGINS = the frontend's origin and answers cached on Redis, served on a free port."""
    from flask_caching.backends.rediscache import RedisCache
    from werkzeug.serving import make_server

    from app import create_app

    _dir, origin = frontend
    cors_app = create_app(type("CorsConfig", (config_class,), {"CORS_ORIGINS": origin}))
    prefix = f"crm_test_cors_{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    swap_cache_backend(cors_app, RedisCache(host=client, key_prefix=prefix, default_timeout=300))
    recorder = Recorder(cors_app.wsgi_app)
    cors_app.wsgi_app = recorder
    server = make_server("127.0.0.1", 0, cors_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", recorder
    server.shutdown()
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


def write_page(directory, api, email, task_id, customer_id=""):
    """The frontend's page, pointed at `api`."""
    fields = {"api": api, "email": email, "password": PASSWORD, "task": task_id, "customer": customer_id}
    values = {k: json.dumps(v) for k, v in fields.items()}
    (directory / "index.html").write_text(PAGE % values, encoding="utf-8")


def run_page(browser, url):
    """Open `url` in a fresh context and return the page's `window.results`."""
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(url)
        page.wait_for_function("window.results !== undefined", timeout=30000)
        return page.evaluate("window.results")
    finally:
        context.close()


def test_a_frontend_on_another_origin_logs_in_lists_and_changes_tasks(browser, frontend, cors_api, users, make):
    directory, origin = frontend
    api, recorder = cors_api
    customer = make.customer("sales", name="越境商事")
    task = make.task("sales", customer=customer)
    write_page(directory, api, users["sales"].email, task.id, customer.id)
    hits = caching.stats()["hits"]

    results = run_page(browser, f"{origin}/index.html")

    assert "error" not in results, results
    assert results["login"] == 200 and results["role"] == "SALES"
    # The second list came from the answer cache, CORS headers and all.
    assert results["list"] == [200, 200] and results["sameAgain"] and caching.stats()["hits"] > hits
    assert results["customerName"] == "越境商事" and results["ownerRole"] == "SALES"
    assert results["put"] == [200, "HIGH", "越境商事"]
    assert results["patch"] == [200, "COMPLETED"]
    assert results["del"] == 200 and results["gone"] == 404
    # Every non-simple request was preflighted, and the preflights came from the frontend's origin.
    preflights = {(path, o) for method, path, o in recorder.seen if method == "OPTIONS"}
    for path in ("/api/auth/login", "/api/tasks", f"/api/tasks/{task.id}", f"/api/tasks/{task.id}/complete"):
        assert (path, origin) in preflights, (path, recorder.seen)


def test_an_origin_not_listed_is_refused_by_the_browser(browser, cors_api, users, make, tmp_path):
    """The same page from an origin outside CORS_ORIGINS: the browser refuses the login call."""
    api, recorder = cors_api
    task = make.task("sales")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    server, other_origin = serve_page(other_dir)
    try:
        write_page(other_dir, api, users["sales"].email, task.id)
        results = run_page(browser, f"{other_origin}/index.html")
    finally:
        server.shutdown()
    assert "Failed to fetch" in results.get("error", ""), results
    # The preflight reached the server, which answered it without allowing the origin: no login happened.
    assert ("POST", "/api/auth/login", other_origin) not in recorder.seen
