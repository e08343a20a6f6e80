"""Login and register limits (app/ratelimits.py) on `limited_app` (tests/conftest.py).

Counts live in the real Redis under this run's private key prefix; each test uses its own
client IP (X-Forwarded-For through ProxyFix) and account, so runs and tests never share
counters. Windows are short so the "later" in "the right password works later" is seconds.
"""

import time
import uuid

from tests.conftest import LIMIT_WINDOW as WINDOW, PASSWORD, from_ip


def test_login_brute_force_stopped_then_right_password_works(limited_app, users):
    """Wrong passwords for one account hit 429 (with Retry-After and the envelope); later the right one works."""
    client = limited_app.test_client()
    headers = from_ip()
    email = users["sales"].email
    statuses = [
        client.post("/api/auth/login", json={"email": email, "password": f"guess-{i}"}, headers=headers).status_code
        for i in range(5)
    ]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429], statuses
    blocked = client.post("/api/auth/login", json={"email": email, "password": PASSWORD}, headers=from_ip())
    assert blocked.status_code == 429, "the per-account limit holds from another IP too"
    assert set(blocked.json) == {"error", "message", "details"}
    assert 1 <= int(blocked.headers["Retry-After"]) <= WINDOW + 1
    time.sleep(int(blocked.headers["Retry-After"]) + 1)  # fixed windows start at the first hit
    ok = client.post("/api/auth/login", json={"email": email, "password": PASSWORD}, headers=headers)
    assert ok.status_code == 200 and ok.json["token"]


def test_login_per_ip_limit_across_accounts(limited_app):
    """One IP spraying many accounts is stopped by the per-IP limit."""
    client = limited_app.test_client()
    headers = from_ip()
    statuses = [
        client.post("/api/auth/login", json={"email": f"nobody{i}@example.com", "password": "x" * 8}, headers=headers).status_code
        for i in range(8)
    ]
    assert statuses.count(401) == 6 and statuses[-2:] == [429, 429], statuses


def test_fab_api_login_is_limited_too(limited_app, users):
    """FAB's POST /api/v1/security/login carries the per-account limit, shared with /api/auth/login."""
    client = limited_app.test_client()
    body = {"username": users["compliance"].email, "password": "wrong-pass", "provider": "db"}
    answers = [client.post("/api/v1/security/login", json=body, headers=from_ip()) for _ in range(5)]
    statuses = [a.status_code for a in answers]
    assert statuses == [401, 401, 401, 429, 429], [a.json for a in answers]
    assert answers[-1].headers["Retry-After"] and set(answers[-1].json) == {"error", "message", "details"}
    # One counter per account across both login endpoints.
    email = users["manager"].email
    for _ in range(3):
        assert client.post("/api/auth/login", json={"email": email, "password": "nope-nope"}, headers=from_ip()).status_code == 401
    shared = client.post("/api/v1/security/login", json={"username": email, "password": PASSWORD, "provider": "db"}, headers=from_ip())
    assert shared.status_code == 429


def test_register_limited_per_ip(limited_app):
    """Registration from one IP is limited."""
    client = limited_app.test_client()
    headers = from_ip()
    statuses = [
        client.post(
            "/api/auth/register",
            json={"email": f"rl-{uuid.uuid4().hex[:8]}@example.com", "password": "Password123!", "name": "RL"},
            headers=headers,
        ).status_code
        for _ in range(5)
    ]
    assert statuses[:3] == [201, 201, 201] and statuses[3:] == [429, 429], statuses


def test_fab_form_login_is_limited(limited_app, users):
    """FAB's form login (AUTH_RATE_LIMIT, on the app's one limiter) answers 429 once its per-IP limit is spent.

    Each guess names another account, so only the per-IP limit counts them (the per-account
    one has tests of its own, tests/test_proxy.py); another IP and account still get through.
    """
    client = limited_app.test_client()
    headers = from_ip()
    statuses = [
        client.post("/login/", data={"username": f"guess-{uuid.uuid4().hex[:8]}@example.com", "password": f"guess-{i}"}, headers=headers).status_code
        for i in range(5)
    ]
    assert 429 not in statuses[:3] and statuses[3:] == [429, 429], statuses
    assert client.post("/login/", data={"username": users["sales2"].email, "password": PASSWORD}, headers=from_ip()).status_code != 429




def test_limiter_checks_every_blueprint_that_carries_a_limit_and_no_other_request(limited_app):
    """flask-limiter's check runs in the hooks of each blueprint it holds a limit for, not app-wide (app/ratelimits.py).

    A blueprint limit added anywhere without its blueprint in `limited_blueprints` would be
    counted by nothing: this fails then.
    """
    from app.extensions import limiter

    def is_check(hook):
        return getattr(hook, "__self__", None) is limiter

    with limited_app.app_context():
        limited = {name for name in limited_app.blueprints if limiter.limit_manager.blueprint_limits(limited_app, name)}
    assert {"AuthDBView", "ResetMyPasswordView"} <= limited
    for name in limited:
        assert any(is_check(h) for h in limited_app.before_request_funcs.get(name, [])), name
    assert not any(is_check(h) for h in limited_app.before_request_funcs.get(None, []))
