"""Request ids and request lines (app/requestlog.py): a real gunicorn in production's JSON format, and the test client.

The gunicorn server runs CRM_ENV=production without LOG_FORMAT (so production's default,
json) at DEBUG, against this run's database and the real Redis; every line it writes to
stderr must parse as one JSON object, and a request id sent in must come back on the
answer and on every line of that request, a fast-path cache hit (answered before Flask)
included.
"""

import json
import os
import secrets
import subprocess
import sys
import time
import uuid

import pytest
import requests

from tests.conftest import PASSWORD, RUN_ID
from tests.services import free_port

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST_Q = "/api/v1/customer/?q=(order_column:updated_at,order_direction:desc,page:0,page_size:100)"


def read_lines(path):
    """Every line gunicorn wrote so far, each parsed as JSON (a line that is not JSON fails the test)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not one JSON object per line: {line[:300]!r}")
    return parsed


@pytest.fixture(scope="module")
def json_server(database_url, redis_url, app, tmp_path_factory):
    """gunicorn (2 workers) with the production config, its stderr going to a file."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "stderr.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "SENTRY_", "CRM_"))}
    env.update({
        "CRM_ENV": "production",
        "LOG_LEVEL": "DEBUG",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RATELIMIT_KEY_PREFIX": f"crm_test_{RUN_ID}_rl_json",
        "JWT_BLOCKLIST_PREFIX": f"crm_test_{RUN_ID}_json_revoked:",
        "STREAM_ENABLED": "false",
    })
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    with open(log_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen([gunicorn, "--workers", "2", "--bind", f"127.0.0.1:{port}", "wsgi:app"],
                                env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("gunicorn did not start: " + log_path.read_text()[-2000:])
    yield base, log_path
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def lines_of(log_path, rid):
    """The lines logged while serving the request `rid`."""
    return [line for line in read_lines(log_path) if line.get("request_id") == rid]


def test_every_line_is_json_and_a_request_line_has_its_fields(json_server, users):
    """gunicorn's own lines and the app's: time, level, logger, message; a request's line: id, user, route, status, duration."""
    base, log_path = json_server
    token = requests.post(f"{base}/api/auth/login", json={"email": users["sales"].email, "password": PASSWORD}, timeout=10).json()["token"]
    rid = f"test-{uuid.uuid4().hex}"
    resp = requests.get(f"{base}/api/v1/customer/{10**9}", headers={"Authorization": f"Bearer {token}", "X-Request-ID": rid}, timeout=10)
    assert resp.status_code == 404 and resp.headers["X-Request-ID"] == rid
    time.sleep(0.2)  # the line is written after the last byte is sent
    lines = read_lines(log_path)
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "gunicorn.error" and line["message"].startswith("Booting worker") for line in lines)
    (request_line,) = [line for line in lines_of(log_path, rid) if line["logger"] == "crm.request"]
    assert request_line["status"] == 404 and request_line["level"] == "INFO"
    assert request_line["route"] == "/api/v1/customer/<pk>" and request_line["user_id"] == users["sales"].id
    assert isinstance(request_line["duration_ms"], float) and request_line["duration_ms"] > 0
    assert request_line["message"].startswith(f"GET /api/v1/customer/{10**9} 404 ")


def test_request_id_round_trip_on_a_fast_path_cache_hit(json_server, users):
    """A cached /api read answered before Flask returns the caller's id; its HIT line and request line carry it."""
    base, log_path = json_server
    token = requests.post(f"{base}/api/auth/login", json={"email": users["sales"].email, "password": PASSWORD}, timeout=10).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    hit = None
    for attempt in range(10):  # the first read stores the answer; a later one is served from it
        rid = f"fast-{attempt}-{uuid.uuid4().hex[:8]}"
        resp = requests.get(base + LIST_Q, headers={**headers, "X-Request-ID": rid}, timeout=10)
        assert resp.status_code == 200 and resp.headers["X-Request-ID"] == rid
        time.sleep(0.2)
        if any(line["message"].startswith("Cache HIT (fast path): ") for line in lines_of(log_path, rid)):
            hit = rid
            break
    assert hit is not None, "no fast-path hit in 10 reads"
    (request_line,) = [line for line in lines_of(log_path, hit) if line["logger"] == "crm.request"]
    assert request_line["status"] == 200 and request_line["route"] == "/api/v1/customer/"
    assert request_line["user_id"] == users["sales"].id


def test_an_insane_request_id_is_replaced_by_a_generated_one(json_server):
    """Spaces, markup or an overlong id are not echoed or logged: a fresh id is."""
    base, log_path = json_server
    for sent in ("two words", "<script>", "x" * 129):
        resp = requests.get(f"{base}/login/", headers={"X-Request-ID": sent}, timeout=10)
        rid = resp.headers["X-Request-ID"]
        assert rid != sent and len(rid) == 32 and int(rid, 16) >= 0
        time.sleep(0.2)
        (line,) = [line for line in lines_of(log_path, rid) if line["logger"] == "crm.request"]
        assert line["route"] == "/login/" and line["status"] == 200 and "user_id" not in line
    assert not any(line.get("request_id") == "two words" for line in read_lines(log_path))


def test_test_client_requests_get_an_id_and_a_text_line(app, client, caplog):
    """In-process (no gunicorn): the answer carries an id; the line is logged under crm.request with the rule and status."""
    import logging

    with caplog.at_level(logging.INFO, logger="crm.request"):
        resp = client.get("/no-such-page", headers={"X-Request-ID": "abc.DEF_1:2-3"})
    assert resp.headers["X-Request-ID"] == "abc.DEF_1:2-3"
    (record,) = [r for r in caplog.records if r.name == "crm.request" and r.request_id == "abc.DEF_1:2-3"]
    assert (record.status, record.route, record.method) == (404, None, "GET")
    resp = client.get("/health")
    assert len(resp.headers["X-Request-ID"]) == 32


def _request_record(caplog, rid):
    (record,) = [r for r in caplog.records if r.name == "crm.request" and r.request_id == rid]
    return record


def test_the_user_is_on_the_line_of_a_session_screen_an_api_key_and_a_login(app, users, browser_login, caplog):
    """Noted where the user is authenticated: the session loader, an API key, the form login (app/security.py, app/api_keys.py)."""
    import logging

    from app import api_keys
    from app.extensions import db

    with app.app_context():
        _row, raw = api_keys.create(f"log-{uuid.uuid4().hex[:8]}", users["manager"].id, "Manager", "read-only", 1)
        db.session.commit()
    screen = browser_login("sales")
    with caplog.at_level(logging.INFO, logger="crm.request"):
        assert screen.get("/customerview/list/", headers={"X-Request-ID": "screen-1"}).status_code == 200
        assert app.test_client().get("/api/customers?limit=5", headers={"X-API-Key": raw, "X-Request-ID": "key-1"}).status_code == 200
        fresh = app.test_client()
        resp = fresh.post("/login/", data={"username": users["sales2"].email, "password": PASSWORD}, headers={"X-Request-ID": "login-1"})
        assert resp.status_code == 302
    assert _request_record(caplog, "screen-1").user_id == users["sales"].id
    assert _request_record(caplog, "key-1").user_id == users["manager"].id
    assert _request_record(caplog, "login-1").user_id == users["sales2"].id


def test_a_request_nothing_authenticates_loads_no_user_for_its_line(app, browser_login, caplog, monkeypatch):
    """/health with a session cookie: no user row is loaded for the log line, and none is logged."""
    import logging

    screen = browser_login("sales")
    loads = []
    sm = app.appbuilder.sm
    real = sm.load_user
    monkeypatch.setattr(sm, "load_user", lambda pk: loads.append(pk) or real(pk))
    with caplog.at_level(logging.DEBUG, logger="crm.request"):
        assert screen.get("/health", headers={"X-Request-ID": "probe-1"}).status_code == 200
    assert loads == []
    assert _request_record(caplog, "probe-1").user_id is None
