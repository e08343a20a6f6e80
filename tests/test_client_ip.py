"""The client address (app/__init__.py's ProxyFix, TRUSTED_PROXY_COUNT) and the limits keyed by it (app/ratelimits.py).

X-Forwarded-For is anyone's to write. By default (no trusted proxy) the address is the
socket's, so rotating the header escapes neither the per-IP nor the per-account limits and
audit rows keep the real peer. The shared test app trusts one hop, as on Render
(tests/conftest.py), so `from_ip` there names genuinely different clients: the per-account
limit of the form login is tried from many addresses.
"""

import time
import uuid

import pytest
import sqlalchemy as sa

from models import AuditAction, AuditLog
from tests.conftest import LIMIT_WINDOW, PASSWORD, IsolatedClient, from_ip, rate_limited_config


@pytest.fixture(scope="module")
def direct_app(app, config_class, tokens):
    """Rate limits on and short windows, with the default TRUSTED_PROXY_COUNT (0): no proxy believed."""
    from app import create_app
    from app.extensions import limiter
    from config import Config

    default = getattr(Config, "TRUSTED_PROXY_COUNT", 0)
    assert default == 0  # what a deployment gets unless it says otherwise
    direct = create_app(rate_limited_config(config_class, TRUSTED_PROXY_COUNT=default))
    direct.test_client_class = IsolatedClient
    yield direct
    limiter.enabled = False


def peer(app):
    """A test client whose requests come from a socket address of their own (REMOTE_ADDR)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    return client


def test_rotating_forwarded_for_escapes_no_per_ip_limit(direct_app):
    """26 accounts tried through /api/auth/login with a new X-Forwarded-For each: the one peer's limit stops them."""
    client = peer(direct_app)
    statuses = [
        client.post("/api/auth/login", json={"email": f"spray-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 8}, headers=from_ip()).status_code
        for _ in range(8)
    ]
    assert statuses[:6] == [401] * 6 and statuses[6:] == [429, 429], statuses
    form = peer(direct_app)
    statuses = [
        form.post("/login/", data={"username": f"spray-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 8}, headers=from_ip()).status_code
        for _ in range(5)
    ]
    assert 429 not in statuses[:3] and statuses[3:] == [429, 429], statuses


def test_rotating_forwarded_for_escapes_no_per_account_limit(direct_app, new_user):
    """One account's wrong passwords on the form login from rotating headers meet 429; the right one is then refused too."""
    user = new_user()
    statuses = [
        peer(direct_app).post("/login/", data={"username": user.email, "password": f"guess-{i}"}, headers=from_ip()).status_code
        for i in range(6)
    ]
    assert 429 in statuses and statuses[-1] == 429, statuses
    right = peer(direct_app).post("/login/", data={"username": user.email, "password": PASSWORD}, headers=from_ip())
    assert right.status_code == 429


def test_form_login_has_a_per_account_limit_shared_with_the_api_logins(limited_app, new_user):
    """From six genuinely different clients (a trusted hop) the form login meets the account's limit, shared with /api and /api/v1."""
    client = limited_app.test_client()
    user = new_user()
    statuses = [client.post("/login/", data={"username": user.email, "password": f"guess-{i}"}, headers=from_ip()).status_code for i in range(6)]
    assert statuses[:3] == [302, 302, 302] and statuses[3:] == [429, 429, 429], statuses
    right = client.post("/login/", data={"username": user.email.upper(), "password": PASSWORD}, headers=from_ip())
    assert right.status_code == 429, "the right password is refused while the account's window lasts"
    assert client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD}, headers=from_ip()).status_code == 429
    assert 1 <= int(right.headers["Retry-After"]) <= LIMIT_WINDOW + 1
    time.sleep(int(right.headers["Retry-After"]) + 1)  # fixed windows start at the first hit
    ok = client.post("/login/", data={"username": user.email, "password": PASSWORD}, headers=from_ip())
    assert ok.status_code == 302 and "/login" not in ok.headers["Location"]

    other = new_user()  # guesses on the APIs spend the form login's allowance too
    for _ in range(2):
        assert client.post("/api/auth/login", json={"email": other.email, "password": "nope-nope"}, headers=from_ip()).status_code == 401
    body = {"username": other.email, "password": "nope-nope", "provider": "db"}
    assert client.post("/api/v1/security/login", json=body, headers=from_ip()).status_code == 401
    assert client.post("/login/", data={"username": other.email, "password": PASSWORD}, headers=from_ip()).status_code == 429


def _last_audit(db, user_id, action):
    db.session.expire_all()
    return db.session.execute(
        sa.select(AuditLog).where(AuditLog.resource_id == str(user_id), AuditLog.action == action).order_by(AuditLog.timestamp.desc()).limit(1)
    ).scalar_one()


def test_audit_rows_keep_the_socket_address_whatever_the_header_says(direct_app, db, new_user):
    """LOGIN and LOGIN_FAILED rows hold REMOTE_ADDR, not the address the client wrote in X-Forwarded-For."""
    user = new_user()
    client = peer(direct_app)
    real = client.environ_base["REMOTE_ADDR"]
    spoofed = {"X-Forwarded-For": "203.0.113.66"}
    assert client.post("/api/auth/login", json={"email": user.email, "password": "wrong-pass"}, headers=spoofed).status_code == 401
    assert client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD}, headers=spoofed).status_code == 200
    assert _last_audit(db, user.id, AuditAction.LOGIN_FAILED).ip_address == real
    assert _last_audit(db, user.id, AuditAction.LOGIN).ip_address == real


def test_a_trusted_hop_gives_the_address_that_proxy_saw(limited_app, db, new_user):
    """Behind one trusted proxy the client is the last X-Forwarded-For entry (the proxy's), not one the client prepended."""
    user = new_user()
    client = peer(limited_app)
    headers = {"X-Forwarded-For": "198.51.100.200, 203.0.113.77"}
    assert client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD}, headers=headers).status_code == 200
    assert _last_audit(db, user.id, AuditAction.LOGIN).ip_address == "203.0.113.77"
