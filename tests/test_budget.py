"""The per-caller /api budget (app/budget.py) on `limited_app` (5 requests per LIMIT_WINDOW seconds).

Counts live in the real Redis under the module's private key prefix; every test spends the
budget of its own user or client IP, so tests never share a window. The app's answers are
cached on the same Redis, so cached reads take the fast path (app/fastpath.py).
"""

import time
import uuid

import pytest
import redis

from tests.conftest import LIMIT_WINDOW, from_ip, swap_cache_backend

LIST = "/api/customers?limit=1"
BUDGET = 5


def _token(app, user_id):
    from flask_jwt_extended import create_access_token

    with app.app_context():
        return create_access_token(identity=str(user_id))


@pytest.fixture(scope="module", autouse=True)
def answers_on_redis(limited_app, redis_url):
    """`limited_app`'s answer cache on the shared Redis (the fast path's condition), keys deleted after."""
    from flask_caching.backends.rediscache import RedisCache

    prefix = f"crm_test_budget_{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    old = swap_cache_backend(limited_app, RedisCache(host=client, key_prefix=prefix, default_timeout=300))
    yield
    swap_cache_backend(limited_app, old)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def fresh_user(limited_app):
    """A Sales user of this test only (its own budget window) and its bearer headers."""
    from app.services.users import create_user

    with limited_app.app_context():
        user_id = create_user(f"budget-{uuid.uuid4().hex[:8]}@example.com", "Budget Rep", "Sales", "Password123!").id
    return user_id, {"Authorization": f"Bearer {_token(limited_app, user_id)}"}


def remaining(resp):
    """The X-RateLimit-Remaining the answer carries."""
    return int(resp.headers["X-RateLimit-Remaining"])


def test_every_kind_of_request_is_charged_once(limited_app, fresh_user):
    """Cache miss, cache hit, uncached read, write and not-found each spend exactly one unit of the user's budget."""
    client = limited_app.test_client()
    _user, headers = fresh_user
    answers = [client.get(LIST, headers=headers), client.get(LIST, headers=headers)]  # miss, then fast-path hit
    limited_app.config["CACHE_ANSWERS"] = False
    try:
        answers.append(client.get(LIST, headers=headers))  # uncached: the token check's read pays
    finally:
        limited_app.config["CACHE_ANSWERS"] = True
    answers.append(client.post("/api/customers", json={"name": f"Budget {uuid.uuid4().hex[:6]}"}, headers=headers))
    answers.append(client.get(f"/api/customers/{uuid.uuid4()}", headers=headers))
    assert [a.status_code for a in answers] == [200, 200, 200, 201, 404], [a.json for a in answers]
    assert [remaining(a) for a in answers] == [4, 3, 2, 1, 0]
    assert all(a.headers["X-RateLimit-Limit"] == str(BUDGET) for a in answers)
    reset = int(answers[-1].headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + LIMIT_WINDOW + 1


def test_a_spent_budget_refuses_hits_misses_and_writes(limited_app, fresh_user, db):
    """Over the budget: 429 with Retry-After and the envelope, for a cached answer too, and nothing is written."""
    from models import Customer

    client = limited_app.test_client()
    _user, headers = fresh_user
    for _ in range(BUDGET):
        assert client.get(LIST, headers=headers).status_code == 200
    hit = client.get(LIST, headers=headers)  # the answer is in the cache: the fast path must refuse it
    name = f"Over budget {uuid.uuid4().hex[:6]}"
    write = client.post("/api/customers", json={"name": name}, headers=headers)
    limited_app.config["CACHE_ANSWERS"] = False
    try:
        uncached = client.get(LIST, headers=headers)
    finally:
        limited_app.config["CACHE_ANSWERS"] = True
    for resp in (hit, write, uncached):
        assert resp.status_code == 429, resp.json
        assert set(resp.json) == {"error", "message", "details"}
        assert 1 <= int(resp.headers["Retry-After"]) <= LIMIT_WINDOW + 1
        assert remaining(resp) == 0
    assert db.session.query(Customer).filter_by(name=name).count() == 0


def test_budgets_are_per_user_and_bad_tokens_pay_per_ip(limited_app, fresh_user, tokens):
    """One user's spent budget leaves another's alone; requests with a bad token spend their IP's budget and get 429 too."""
    client = limited_app.test_client()
    _user, headers = fresh_user
    # Across client IPs: the user's budget, not the address's.
    statuses = [client.get(LIST, headers={**headers, **from_ip()}).status_code for _ in range(BUDGET + 1)]
    assert statuses == [200] * BUDGET + [429]
    assert client.get(LIST, headers={"Authorization": f"Bearer {tokens['admin']}"}).status_code == 200
    ip = from_ip()
    forged = {"Authorization": "Bearer not.a.token", **ip}
    statuses = [client.get(LIST, headers=forged).status_code for _ in range(BUDGET + 1)]
    assert statuses == [401] * BUDGET + [429], statuses
    assert client.get("/api/customers", headers=ip).status_code == 429, "the same IP without a token: same budget"


def test_login_keeps_its_own_limits(limited_app, users):
    """Login does not spend the /api budget of its IP: its own per-IP limit (6) applies, not the budget (5)."""
    client = limited_app.test_client()
    ip = from_ip()
    statuses = [
        client.post("/api/auth/login", json={"email": f"nobody{i}@example.com", "password": "x" * 8}, headers=ip).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 6, statuses
    assert "X-RateLimit-Remaining" in client.get("/api/customers", headers=ip).headers


def test_reads_pay_in_their_one_redis_round_trip(limited_app, fresh_user, redis_commands):
    """A cached hit and an uncached read each make ONE Redis command: the budget rides in it."""
    client = limited_app.test_client()
    _user, headers = fresh_user
    for _ in range(2):  # fills the answer, the permission memo and the role ids
        assert client.get(LIST, headers=headers).status_code == 200
    seen = redis_commands()
    hit = client.get(LIST, headers=headers)
    assert hit.status_code == 200 and seen == ["EVALSHA"], seen
    limited_app.config["CACHE_ANSWERS"] = False
    try:
        seen.clear()
        uncached = client.get(LIST, headers=headers)
    finally:
        limited_app.config["CACHE_ANSWERS"] = True
    assert uncached.status_code == 200 and seen == ["EVALSHA"], seen
    assert remaining(uncached) == remaining(hit) - 1


def test_redis_down_counts_per_process_and_answers(limited_app, fresh_user, private_redis, caplog):
    """With the budget's Redis gone: 200 from the database, the budget counted in the process (429 after it), logged."""
    from app.extensions import redis_client

    client = limited_app.test_client()
    _user, headers = fresh_user
    with limited_app.app_context():
        old = redis_client()
    limited_app.extensions["crm_redis"] = redis.Redis.from_url(private_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        assert client.get(LIST, headers=headers).status_code == 200
        private_redis.stop()
        with caplog.at_level("ERROR", logger="crm.budget"):
            answers = [client.get(LIST, headers=headers) for _ in range(BUDGET + 1)]
    finally:
        limited_app.extensions["crm_redis"] = old
    assert [a.status_code for a in answers] == [200] * BUDGET + [429]
    assert [remaining(a) for a in answers] == [4, 3, 2, 1, 0, 0]
    assert "counting per process" in caplog.text


def test_redis_down_login_is_limited_per_process(config_class, users, private_redis):
    """flask-limiter's login limits on a Redis that dies: answers, counted in the process (not a 500)."""
    from app import create_app
    from app.extensions import limiter
    from tests.conftest import PASSWORD, IsolatedClient

    cfg = type(
        "DownLimiterConfig",
        (config_class,),
        {"RATELIMIT_ENABLED": True, "RATELIMIT_STORAGE_URI": private_redis.url, "LOGIN_RATE_LIMIT_ACCOUNT": f"3 per {LIMIT_WINDOW} second"},
    )
    down = create_app(cfg)
    down.test_client_class = IsolatedClient
    try:
        client = down.test_client()
        email = users["compliance"].email
        assert client.post("/api/auth/login", json={"email": email, "password": PASSWORD}, headers=from_ip()).status_code == 200
        private_redis.stop()
        statuses = [
            client.post("/api/auth/login", json={"email": email, "password": "wrong-pass"}, headers=from_ip()).status_code
            for _ in range(4)
        ]
    finally:
        limiter.enabled = False
    assert statuses == [401, 401, 401, 429], statuses


def test_cors_preflights_spend_no_budget(limited_app, fresh_user):
    """OPTIONS (a browser's preflight, no token) is never charged to its IP: the writes after it still pass."""
    client = limited_app.test_client()
    _user, headers = fresh_user
    ip = from_ip()
    for _ in range(BUDGET * 2):
        pre = client.options("/api/tasks", headers={**ip, "Origin": "https://crm.example.jp", "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 200, pre.get_data(as_text=True)
    # The IP's budget is whole: a request without a valid token (charged per IP) is a 401, not a 429.
    assert client.get(LIST, headers=ip).status_code == 401
    assert client.get(LIST, headers={**headers, **ip}).status_code == 200
