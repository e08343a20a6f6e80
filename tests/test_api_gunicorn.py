"""Across gunicorn workers: a logout seen by one worker is honoured by all, and login limits are shared.

Starts `gunicorn wsgi:app` with several workers on a free port against this run's database
and the real Redis (private key prefixes), then talks HTTP to it.
"""

import os
import subprocess
import sys
import time
import uuid

import pytest
import requests

from tests.services import free_port
from tests.conftest import PASSWORD, RUN_ID

pytestmark = pytest.mark.slow
WORKERS = 2


@pytest.fixture(scope="module")
def server(database_url, redis_url, app):
    """gunicorn with WORKERS workers, rate limiting on, Redis shared."""
    port = free_port()
    env = {
        **os.environ,
        "CRM_ENV": "development",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": app.config["SECRET_KEY"],
        "RATELIMIT_ENABLED": "true",
        "RATELIMIT_KEY_PREFIX": f"crm_test_{RUN_ID}_gunicorn",
        "JWT_BLOCKLIST_PREFIX": f"crm_test_{RUN_ID}_revoked:",
        "CACHE_KEY_PREFIX": f"crm_test_{RUN_ID}_gc:",
        "LOGIN_RATE_LIMIT_ACCOUNT": "4 per minute",
        "LOGIN_RATE_LIMIT_IP": "1000 per minute",
    }
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    proc = subprocess.Popen(
        [gunicorn, "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}", "wsgi:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
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
        pytest.fail("gunicorn did not start: " + proc.stderr.read().decode()[-2000:])
    yield base
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_revoked_token_refused_by_every_worker(server, users, redis_url):
    """After logout, many fresh connections (spread over the workers) all answer 401, on /api and /api/v1."""
    login = requests.post(f"{server}/api/auth/login", json={"email": users["sales"].email, "password": PASSWORD}, timeout=10).json()
    headers = {"Authorization": f"Bearer {login['token']}", "Connection": "close"}
    assert all(requests.get(f"{server}/api/auth/me", headers=headers, timeout=10).status_code == 200 for _ in range(6))
    assert requests.post(f"{server}/api/auth/logout", headers=headers, timeout=10).status_code == 200
    after = [requests.get(f"{server}/api/auth/me", headers=headers, timeout=10).status_code for _ in range(12)]
    after += [requests.get(f"{server}/api/v1/customer/", headers=headers, timeout=10).status_code for _ in range(6)]
    assert after == [401] * 18, after
    # The revocation lives in Redis (shared by every worker), expiring with the token.
    import jwt
    import redis

    claims = jwt.decode(login["token"], options={"verify_signature": False})
    ttl = redis.Redis.from_url(redis_url).ttl(f"crm_test_{RUN_ID}_revoked:{claims['jti']}")
    assert 0 < ttl <= claims["exp"] - time.time() + 2, ttl


def test_login_limit_counts_across_workers(server, redis_url):
    """The per-account login limit is one counter for all workers (Redis storage)."""
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    statuses = [
        requests.post(f"{server}/api/auth/login", json={"email": email, "password": "wrong-pass"},
                      headers={"Connection": "close"}, timeout=10).status_code
        for _ in range(8)
    ]
    assert statuses[:4] == [401] * 4 and statuses[4:] == [429] * 4, statuses
    import redis

    keys = redis.Redis.from_url(redis_url).keys(f"*crm_test_{RUN_ID}_gunicorn*{email}*")
    assert keys, "the counter is in Redis, where every worker reads it"


def test_gunicorn_builds_no_access_line_of_its_own():
    """gunicorn.conf.py's logger skips gunicorn's access line (app/requestlog.py writes one per request), and keeps its error log."""
    import runpy

    from gunicorn import glogging

    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"the access log read {name}")

    saved = dict(os.environ)
    settings = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "gunicorn.conf.py"))
    os.environ.clear()
    os.environ.update(saved)
    settings["on_exit"](None)
    cls = settings["logger_class"]
    assert issubclass(cls, glogging.Logger) and cls.error is glogging.Logger.error
    # gunicorn's own `access` reads its config, the response, the request and the environ.
    assert cls.access(Untouchable(), Untouchable(), Untouchable(), {}, 0.01) is None
    assert "gunicorn.error" in settings["logconfig_dict"]["loggers"]


def test_workers_freeze_the_loaded_app_out_of_the_gc():
    """gunicorn.conf.py (read by every gunicorn started here) freezes what a worker loaded."""
    import gc
    import runpy

    saved = dict(os.environ)
    settings = runpy.run_path(os.path.join(os.path.dirname(os.path.dirname(__file__)), "gunicorn.conf.py"))
    os.environ.clear()
    os.environ.update(saved)  # the metrics directory it picked belongs to a gunicorn master, not to this run
    settings["on_exit"](None)
    assert gc.get_freeze_count() == 0
    try:
        settings["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
