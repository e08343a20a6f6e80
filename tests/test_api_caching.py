"""The /api blueprint's answer cache and its Redis-only fast path (app/fastpath.py).

Correctness, not speed: read-your-write after every kind of write, scopes never shared,
revoked tokens, role changes and deactivation bite at once even when the answer is
cached, Redis down answers 200 from the database, ETag/304, no COUNT(*) per page and
keyset pages that walk every row once.
"""

import json
import logging
import re
import time
import uuid
import warnings

import pytest
import redis
import sqlalchemy as sa
from flask_caching.backends.rediscache import RedisCache
from flask_jwt_extended import create_access_token, decode_token
from sqlalchemy.orm import Session

from app import caching
from tests.conftest import PASSWORD
from tests.conftest import swap_cache_backend
from tests.helpers import used_before_expiry, wait_until_expired

LIST = "/api/customers?limit=100"


def issue(app, user_id):
    """An access token as login issues it (the same JWTManager, so the same claims)."""
    with app.test_request_context():
        return {"Authorization": f"Bearer {create_access_token(identity=str(user_id), fresh=True)}"}


@pytest.fixture()
def bearer(app, users):
    """bearer("sales") -> headers with a fresh token (issued after any earlier epoch bump)."""
    return lambda key: issue(app, users[key].id)


def listed(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return {row["name"] for row in resp.json["data"]}


class Statements:
    """SQL statements run while active, on every engine (the app's and its read engine, app/reads.py)."""

    def __init__(self, engine=sa.engine.Engine):
        self.engine, self.seen = engine, []

    def _record(self, conn, cursor, statement, params, context, executemany):
        self.seen.append(statement)

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self.seen

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._record)


def auth_reads(seen):
    """The statements of `seen` but a page's read of its nested users (one `ab_user.id IN (...)`,
    views/api/nested.py): data of the answer, not a lookup of the caller or their permissions."""
    return [s for s in seen if "WHERE ab_user.id IN (" not in s]


def fresh_user(app, role="Sales"):
    """A user of this test only (its roles and active flag may be changed freely)."""
    from app.services.users import create_user

    with app.app_context():
        user = create_user(f"fp-{uuid.uuid4().hex[:8]}@example.com", "Fast Path", role, PASSWORD)
        return user.id


def test_tokens_carry_roles_and_auth_epoch(app, client, users):
    for path, body in (
        ("/api/auth/login", {"email": users["sales"].email, "password": PASSWORD}),
        ("/api/v1/security/login", {"username": users["sales"].email, "password": PASSWORD, "provider": "db"}),
    ):
        resp = client.post(path, json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        token = resp.json.get("token") or resp.json["access_token"]
        with app.test_request_context():
            claims = decode_token(token)
        assert claims["roles"] == ["Sales"] and claims["ae"].count("|") == 1


def test_fast_path_hit_runs_no_sql_and_answers_304(db, client, bearer, make, redis_cache):
    mine = make.customer("sales")
    headers = bearer("sales")
    first = client.get(LIST, headers=headers)  # computes the answer (creates the generations)
    assert mine.name in listed(first)
    assert client.get(LIST, headers=headers).get_data() == first.get_data()  # stores the fast entry
    # The first fast hit of a role set asks FAB's permission matrix (memoised per process).
    assert client.get(LIST, headers=headers).get_data() == first.get_data()
    hits = caching.stats()["hits"]
    with Statements() as seen:
        again = client.get(LIST, headers=headers)
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert seen == [] and caching.stats()["hits"] == hits + 1
    with Statements() as seen:
        not_modified = client.get(LIST, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.get_data() == b"" and seen == []


def test_read_your_write_after_every_kind_of_write(app, db, client, auth, bearer, users, browser_login, make, redis_cache):
    from app.context import acting_as
    from models import Customer

    headers = bearer("sales")
    listed(client.get(LIST, headers=headers))
    listed(client.get(LIST, headers=headers))  # served by the fast path from here on

    # /api
    resp = client.post("/api/customers", json={"name": "API経由", "email": f"a-{uuid.uuid4().hex[:8]}@ex.jp"}, headers=headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert "API経由" in listed(client.get(LIST, headers=headers))
    # /api/v1 (FAB's generated API)
    resp = client.post("/api/v1/customer/", json={"name": "FAB経由", "email": f"f-{uuid.uuid4().hex[:8]}@ex.jp", "size": "SMALL", "investment_profile": "moderate"}, headers=auth("sales"))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert "FAB経由" in listed(client.get(LIST, headers=headers))
    # a screen form post
    screen = browser_login("sales")
    resp = screen.post(
        "/customerview/add",
        data={"name": "画面経由", "email": f"s-{uuid.uuid4().hex[:8]}@ex.jp", "size": "SMALL",
              "investment_profile": "moderate", "risk_tolerance": "5", "assigned_sales": str(users["sales"].id)},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    assert "画面経由" in listed(client.get(LIST, headers=headers))
    # a consumer / worker: its own session, acting as the user, no request
    customer = make.customer("sales")
    old_name = customer.name
    assert old_name in listed(client.get(LIST, headers=headers))
    with acting_as(users["sales"]), Session(db.engine) as worker:
        worker.get(Customer, customer.id).name = "ワーカー経由"
        worker.commit()
    db.session.expire_all()  # the test client shares this test's session (see test_caching)
    names = listed(client.get(LIST, headers=headers))
    assert "ワーカー経由" in names and old_name not in names


def test_sales_sales2_manager_never_share_answers(client, bearer, make, redis_cache):
    own, other = make.customer("sales"), make.customer("sales2")
    headers = {key: bearer(key) for key in ("sales", "sales2", "manager")}
    hits = caching.stats()["hits"]
    for _ in range(3):  # rounds 2 and 3 come from the cache (fast path)
        sales, sales2, manager = (listed(client.get(LIST, headers=headers[k])) for k in ("sales", "sales2", "manager"))
        assert own.name in sales and other.name not in sales
        assert other.name in sales2 and own.name not in sales2
        assert {own.name, other.name} <= manager
    assert caching.stats()["hits"] >= hits + 6


def test_revoked_token_is_refused_even_when_cached(client, bearer, make, redis_cache):
    make.customer("sales")
    headers = bearer("sales")
    listed(client.get(LIST, headers=headers))
    listed(client.get(LIST, headers=headers))
    assert client.post("/api/auth/logout", headers=headers).status_code == 200
    resp = client.get(LIST, headers=headers)
    assert resp.status_code == 401 and "revoked" in resp.json["message"]


def test_token_expiry_bites_on_the_fast_path(app, client, users, make, redis_cache):
    """The fast path remembers verified signatures, never past the token's expiry."""
    make.customer("sales")

    def use(token):
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(3):  # compute, store, then served (and the signature remembered)
            listed(client.get(LIST, headers=headers))
        hits = caching.stats()["hits"]
        listed(client.get(LIST, headers=headers))
        assert caching.stats()["hits"] == hits + 1

    token, expires, _ = used_before_expiry(app, users["sales"].id, use, seconds=3)
    wait_until_expired(expires)
    resp = client.get(LIST, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and "expired" in resp.json["message"]


def test_role_change_and_deactivation_apply_at_once(app, db, client, make, redis_cache):
    from flask_appbuilder.security.sqla.models import User

    uid = fresh_user(app)
    others = make.customer("sales2")
    headers = issue(app, uid)
    assert others.name not in listed(client.get(LIST, headers=headers))
    assert others.name not in listed(client.get(LIST, headers=headers))  # cached for "u<uid>"
    sm = app.appbuilder.sm
    user = db.session.get(User, uid)
    user.roles = [sm.find_role("Manager")]
    db.session.commit()
    assert others.name in listed(client.get(LIST, headers=headers))  # the old token, new roles
    assert others.name in listed(client.get(LIST, headers=headers))
    user = db.session.get(User, uid)
    user.active = False
    db.session.commit()
    assert client.get(LIST, headers=headers).status_code == 401


def test_a_token_with_a_stale_auth_epoch_still_reads_the_cached_answer(app, client, make, redis_cache):
    """The fast path leaves a stale-epoch token to Flask, which loads the user and then reads the cache."""
    from app import tokens

    uid = fresh_user(app)
    headers = issue(app, uid)
    first = client.get(LIST, headers=headers)
    assert listed(first) is not None
    assert client.get(LIST, headers=headers).get_data() == first.get_data()  # stored, now a fast hit
    with app.app_context():
        tokens.bump([uid])  # roles unchanged: the same answer, but the token's epoch is stale
    hits = caching.stats()["hits"]
    with Statements() as seen:
        again = client.get(LIST, headers=headers)
    assert again.status_code == 200 and again.get_data() == first.get_data()
    assert caching.stats()["hits"] == hits + 1
    assert [s for s in seen if "FROM ab_user" in s], "the stale epoch makes the user row decide"
    assert not [s for s in auth_reads(seen) if "FROM customers" in s], seen


def test_uncached_reads_take_the_user_from_a_current_token(app, db, client, make, redis_cache):
    """A read on a cacheable view with a current token skips the user row; role changes still bite."""
    from flask_appbuilder.security.sqla.models import User

    uid = fresh_user(app)
    others = make.customer("sales2")
    headers = issue(app, uid)
    app.config["CACHE_ANSWERS"] = False
    try:
        with Statements() as seen:
            assert others.name not in listed(client.get(LIST, headers=headers))
        assert not [s for s in auth_reads(seen) if "FROM ab_user" in s], seen
        sm = app.appbuilder.sm
        user = db.session.get(User, uid)
        user.roles = [sm.find_role("Manager")]
        db.session.commit()
        # The token still says Sales: its epoch is stale, so the user row decides (Manager).
        with Statements() as seen:
            assert others.name in listed(client.get(LIST, headers=headers))
        assert [s for s in seen if "FROM ab_user" in s]
        user = db.session.get(User, uid)
        user.active = False
        db.session.commit()
        assert client.get(LIST, headers=headers).status_code == 401
        # Writes and non-cacheable reads always load the user.
        fresh = issue(app, fresh_user(app))
        with Statements() as seen:
            assert client.get("/api/auth/me", headers=fresh).status_code == 200
        assert [s for s in seen if "FROM ab_user" in s]
    finally:
        app.config["CACHE_ANSWERS"] = True


def test_uncached_reads_check_permission_and_revocation_from_the_token(app, client, make, users, redis_cache):
    """Answer cache off: the token's claims give user and permission (no FAB table read); refusals still bite."""
    from app.roles import CUSTOMER

    sm = app.appbuilder.sm
    make.customer("sales")
    headers, sales = issue(app, users["compliance"].id), issue(app, users["sales"].id)
    app.config["CACHE_ANSWERS"] = False
    try:
        listed(client.get(LIST, headers=headers))  # memoises the role ids and the permission
        assert client.get("/api/audit", headers=sales).status_code == 403
        with Statements() as seen:
            listed(client.get(LIST, headers=headers))
            resp = client.get("/api/audit", headers=sales)  # Sales may not read the audit log
            assert resp.status_code == 403 and "read" in resp.json["message"]
        assert not [s for s in auth_reads(seen) if "ab_" in s], seen  # decided from the claims, memoised
        assert client.post("/api/auth/logout", headers=headers).status_code == 200
        resp = client.get(LIST, headers=headers)
        assert resp.status_code == 401 and "revoked" in resp.json["message"]
        short, expires, _ = used_before_expiry(app, users["compliance"].id, lambda t: listed(client.get(LIST, headers={"Authorization": f"Bearer {t}"})))
        wait_until_expired(expires)
        resp = client.get(LIST, headers={"Authorization": f"Bearer {short}"})
        assert resp.status_code == 401 and "expired" in resp.json["message"]
        # A refresh token carries no role claims and is not an access token: refused.
        refresh = client.post("/api/auth/login", json={"email": users["compliance"].email, "password": PASSWORD}).json["refreshToken"]
        assert client.get(LIST, headers={"Authorization": f"Bearer {refresh}"}).status_code == 401
        headers = issue(app, users["compliance"].id)
        listed(client.get(LIST, headers=headers))
        sm.del_permission_role(sm.find_role("Compliance"), sm.find_permission_view_menu("can_read", CUSTOMER))
        try:
            assert client.get(LIST, headers=headers).status_code == 403
            assert client.get(LIST, headers=issue(app, users["compliance"].id)).status_code == 403
        finally:
            sm.add_permission_role(sm.find_role("Compliance"), sm.find_permission_view_menu("can_read", CUSTOMER))
    finally:
        app.config["CACHE_ANSWERS"] = True


def test_permission_change_applies_on_the_fast_path(app, client, make, users, redis_cache):
    from app.roles import CUSTOMER

    sm = app.appbuilder.sm
    make.customer("sales")
    headers = issue(app, users["compliance"].id)
    listed(client.get(LIST, headers=headers))
    listed(client.get(LIST, headers=headers))
    sm.del_permission_role(sm.find_role("Compliance"), sm.find_permission_view_menu("can_read", CUSTOMER))
    try:
        assert client.get(LIST, headers=headers).status_code == 403
    finally:
        sm.add_permission_role(sm.find_role("Compliance"), sm.find_permission_view_menu("can_read", CUSTOMER))
    listed(client.get(LIST, headers=issue(app, users["compliance"].id)))


def test_cache_redis_down_answers_200_from_the_database(app, client, bearer, make, private_redis, caplog):
    """The answer cache on a Redis that dies: 200 from the database, fast path skipped."""
    backend = RedisCache(host=redis.Redis.from_url(private_redis.url, socket_connect_timeout=0.25, socket_timeout=0.5), key_prefix="t:")
    old = swap_cache_backend(app, backend)
    try:
        make.customer("sales")
        headers = bearer("sales")
        listed(client.get(LIST, headers=headers))
        assert client.get(LIST, headers=headers).status_code == 200
        private_redis.stop()
        with caplog.at_level(logging.WARNING, logger="crm.cache"):
            fresh = make.customer("sales")
            assert fresh.name in listed(client.get(LIST, headers=headers))
            assert fresh.name in listed(client.get(LIST, headers=headers))
        assert caching.stats()["errors"] >= 1
    finally:
        swap_cache_backend(app, old)


def test_dashboard_cached_per_scope_and_roles(client, bearer, make, redis_cache):
    make.customer("sales")
    answers = {}
    for _ in range(2):
        for key in ("sales", "manager", "compliance"):
            resp = client.get("/api/reports/dashboard", headers=bearer(key))
            assert resp.status_code == 200
            assert answers.setdefault(key, resp.json) == resp.json
    assert answers["sales"]["data"]["customers"]["total"] < answers["manager"]["data"]["customers"]["total"]


def test_one_bounded_statement_per_page(db, client, bearer, make):
    """A page and its total are one statement, the count bounded; past the end counts on its own."""
    from models import Customer

    for _ in range(3):
        make.customer("sales")
    headers = bearer("manager")
    total = db.session.execute(sa.select(sa.func.count()).select_from(Customer).where(Customer.deleted_at.is_(None))).scalar_one()
    for page in (1, 2):
        with Statements() as seen:
            resp = client.get(f"/api/customers?page={page}&limit=2", headers=headers)
        reads = [s for s in seen if "FROM customers" in s]
        assert len(reads) == 1 and "count(" in reads[0].lower() and len(re.findall(r"\bLIMIT\b", reads[0], re.I)) == 2, reads
        assert len(resp.json["data"]) == 2 and resp.json["pagination"]["total"] == total
    with Statements() as seen:
        resp = client.get(f"/api/customers?page={total // 2 + 2}&limit=2", headers=headers)
    assert resp.json["data"] == [] and resp.json["pagination"]["total"] == total
    counts = [s for s in seen if "count(" in s.lower()]
    assert counts and all("LIMIT" in s.upper() for s in counts)  # bounded, never a bare COUNT(*)
    for path in ("/api/tasks/overdue", "/api/meetings", "/api/approvals", "/api/audit"):
        assert client.get(path + "?page=x", headers=headers).json["details"].keys() == {"page"}
        assert client.get(path + "?limit=x", headers=headers).json["details"].keys() == {"limit"}


def test_pages_past_the_exact_limit_skip_the_count(app, db, client):
    """At OFFSET >= 1,000 a row on the page already puts the total beyond the exact limit:
    no capped count in the statement, the total at least what is seen, exact on a short last page.
    """
    from app.pagination import COUNT_EXACT_LIMIT
    from models import Customer, Task

    uid = fresh_user(app)
    headers = issue(app, uid)
    many = COUNT_EXACT_LIMIT + 37
    db.session.execute(Customer.__table__.insert(), [{"id": str(uuid.uuid4()), "name": f"遠頁{i:04d}", "assigned_sales_id": uid, "created_by_id": uid} for i in range(many)])
    db.session.commit()
    try:
        mine = sa.select(Customer.id).where(Customer.deleted_at.is_(None), sa.or_(Customer.assigned_sales_id == uid, Customer.created_by_id == uid))
        visible = db.session.scalar(sa.select(sa.func.count()).select_from(mine.subquery()))  # also what the user's creation made
        order = mine.order_by(Customer.updated_at.desc(), Customer.id.desc())
        with Statements() as seen:
            resp = client.get(f"/api/customers?page={COUNT_EXACT_LIMIT // 20 + 1}&limit=20", headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        page = [s for s in seen if "FROM customers" in s and not s.startswith("EXPLAIN")]
        assert len(page) == 1 and "count(" not in page[0].lower(), page
        # LIMIT and OFFSET written into the text (one plan per page size, app/rawsql.py).
        assert re.search(r"LIMIT 20 OFFSET 1000\b", page[0]), page[0]
        expected = db.session.execute(order.offset(COUNT_EXACT_LIMIT).limit(20)).scalars().all()
        assert [row["id"] for row in resp.json["data"]] == expected
        assert resp.json["pagination"]["total"] >= COUNT_EXACT_LIMIT + 20
        # Another full far page reuses the estimate just made: it is the list's, not the page's.
        with Statements() as seen:
            following = client.get(f"/api/customers?page={COUNT_EXACT_LIMIT // 10 + 2}&limit=10", headers=headers).json
        assert len(following["data"]) == 10 and not [s for s in seen if s.startswith("EXPLAIN")], seen
        # The short last page: its end is the exact total, as a count would give it.
        size = next(n for n in (50, 49, 47) if visible % n)
        last = client.get(f"/api/customers?page={visible // size + 1}&limit={size}", headers=headers).json
        assert len(last["data"]) == visible % size and last["pagination"]["total"] == visible
        # A page below the limit still counts in the same statement.
        with Statements() as seen:
            assert client.get("/api/customers?page=3&limit=20", headers=headers).json["pagination"]["total"] > COUNT_EXACT_LIMIT
        assert any("count(" in s.lower() and "LIMIT 1001" in s for s in seen if "FROM customers" in s), seen
    finally:
        # Gone again, with the first-contact tasks their creation made, so other tests' totals stay exact.
        db.session.rollback()
        made = sa.select(Customer.id).where(Customer.name.like("遠頁%"), Customer.assigned_sales_id == uid)
        db.session.execute(sa.delete(Task).where(Task.customer_id.in_(made)))
        db.session.execute(sa.delete(Customer).where(Customer.id.in_(made)))
        db.session.commit()


def test_keyset_pagination_walks_every_row_once(db, client, bearer, make):
    from models import Customer

    for _ in range(7):
        make.customer("sales2")
    headers = bearer("manager")
    expected = db.session.execute(sa.select(sa.func.count()).select_from(Customer).where(Customer.deleted_at.is_(None))).scalar_one()
    seen, cursor, pages = [], "", 0
    while cursor is not None:
        resp = client.get(f"/api/customers?limit=5&after={cursor}", headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        seen += [row["id"] for row in resp.json["data"]]
        cursor = resp.json["pagination"]["nextCursor"]
        pages += 1
    assert len(seen) == len(set(seen)) == expected and pages >= 2
    bad = client.get("/api/customers?after=junk!", headers=headers)
    assert bad.status_code == 400 and bad.json["details"].keys() == {"after"}


def test_overdue_uses_open_statuses_and_due_order(db, client, bearer, make):
    from datetime import timedelta

    from models.base import utcnow
    from models.task import TaskStatus

    customer = make.customer("sales")
    late = make.task("sales", customer=customer, due_date=utcnow() - timedelta(days=3))
    done = make.task("sales", customer=customer, due_date=utcnow() - timedelta(days=4), status=TaskStatus.COMPLETED)
    with Statements() as seen:
        resp = client.get("/api/tasks/overdue?limit=100", headers=bearer("sales"))
    ids = [row["id"] for row in resp.json["data"]]
    assert late.id in ids and done.id not in ids
    assert any("IN (" in s and "ORDER BY tasks.due_date" in s for s in seen)


def test_estimated_total_of_an_in_list_query_keeps_the_transaction(db, make):
    """The planner estimate of an IN (...) query over enums: no failed EXPLAIN, no aborted transaction."""
    from app.pagination import bounded_count, estimate_count
    from models.base import utcnow
    from models.task import OPEN_STATUSES, Task

    customer = make.customer("sales")
    for _ in range(3):
        make.task("sales", customer=customer)
    query = db.session.query(Task).filter(Task.status.in_(OPEN_STATUSES), Task.due_date > utcnow())
    assert estimate_count(db.session, query) >= 1
    assert bounded_count(db.session, query, exact_limit=1) >= 2
    assert db.session.execute(sa.select(1)).scalar_one() == 1  # the transaction is still usable


def test_cache_answers_off_computes_every_answer_but_keeps_the_permission_memo(app, db, client, bearer, make, redis_cache):
    """CACHE_ANSWERS=0 (the benchmark's uncached server): every request reads the tables."""
    mine = make.customer("sales")
    headers = bearer("sales")
    app.config["CACHE_ANSWERS"] = False
    try:
        assert mine.name in listed(client.get(LIST, headers=headers))
        with Statements() as seen:
            assert mine.name in listed(client.get(LIST, headers=headers))
        customer_reads = [s for s in seen if "FROM customers" in s]
        # The page and its total (one statement), every time; FAB's permission tables only on the first request.
        assert len(customer_reads) == 1 and "LIMIT" in customer_reads[0] and "count(" in customer_reads[0].lower()
        assert not [s for s in seen if "ab_permission" in s]
        assert not any(k.startswith(redis_cache.key_prefix.encode() + b"fast:") for k in redis_cache._write_client.keys("*"))
    finally:
        app.config["CACHE_ANSWERS"] = True


def test_list_pages_load_columns_only(db, client, bearer, make):
    """The /api lists serialise columns: the models' joined eager loads are skipped."""
    customer = make.customer("sales")
    make.task("sales", customer=customer)
    make.meeting("sales", customer=customer)
    for path in ("/api/customers", "/api/tasks", "/api/meetings", "/api/approvals"):
        with Statements() as seen:
            assert client.get(path, headers=bearer("manager")).status_code == 200
        pages = [s for s in seen if "LIMIT" in s]
        assert pages and not [s for s in pages if "JOIN" in s.upper()], (path, pages)


def test_customer_search_has_an_index_path(db):
    """Search is one LIKE on search_text: it needs a trigram index there, or it reads the whole table.

    Checked in the catalogue: on a test-sized table the planner rightly prefers other plans.
    """
    defs = db.session.execute(
        sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = 'customers' AND indexdef LIKE '%gin_trgm_ops%'")
    ).scalars().all()
    # search_text for /api's search; name and email for the screens' "contains" filters.
    for column in ("search_text", "name", "email"):
        assert any(f"USING gin ({column} gin_trgm_ops)" in d for d in defs), defs


def test_cacheable_reads_run_outside_a_transaction_and_writes_inside(app, db, client, bearer, make, redis_cache):
    """List reads skip BEGIN/ROLLBACK (which also drop psycopg's prepared statements); writes stay atomic.

    Column lists run on the read engine's autocommit connections (app/reads.py), lists of
    model objects on the Session's connection switched to autocommit, and the write after
    them in a transaction on the Session's pooled connection.
    """
    from app import reads

    make.customer("sales")
    make.approval("sales")
    headers, seen = bearer("sales"), []

    def record(conn, cursor, statement, params, context, executemany):
        # The list statements; without a shared cache the permission checks also read FAB's tables.
        if "FROM customers" in statement or "FROM approval_requests" in statement:
            seen.append((conn.engine is reads.engine(app), conn.connection.driver_connection.autocommit))

    app.config["CACHE_ANSWERS"] = False  # every read reaches the database
    for path in ("/api/customers", "/api/approvals"):  # the first one loads role ids and permissions (memoised)
        assert client.get(path, headers=headers).status_code == 200
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        assert client.get("/api/customers", headers=headers).status_code == 200
        columns = list(seen)
        seen.clear()
        assert client.get("/api/approvals", headers=headers).status_code == 200
        objects = list(seen)
        seen.clear()
        body = {"name": "取引先トランザクション", "email": f"tx-{uuid.uuid4().hex[:8]}@example.jp"}
        assert client.post("/api/customers", json=body, headers=headers).status_code == 201
        writes = list(seen)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
        app.config["CACHE_ANSWERS"] = True
    assert columns and all(on_reads and autocommit for on_reads, autocommit in columns), columns
    pages = [autocommit for on_reads, autocommit in objects if not on_reads]
    assert pages and all(pages), objects
    # The pooled connection the object list used is back in transaction mode for the write.
    assert writes and not any(autocommit or on_reads for on_reads, autocommit in writes), writes


def test_api_answers_set_no_session_cookie(client, bearer, make):
    make.customer("sales")
    for path in ("/api/customers", "/api/reports/dashboard", "/api/auth/me"):
        resp = client.get(path, headers=bearer("sales"))
        assert resp.status_code == 200 and "Set-Cookie" not in resp.headers, path


def test_cacheable_read_keeps_a_transaction_begun_earlier_in_the_request(app, db, client, bearer, make):
    """A statement before the view (the fast path loading role ids, say) began a transaction: it is kept."""
    approval = make.approval("sales")
    headers, seen = bearer("sales"), []

    def read_first():
        db.session.execute(sa.select(1))

    def record(conn, cursor, statement, params, context, executemany):
        seen.append(conn.connection.driver_connection.autocommit)

    hooks = app.before_request_funcs.setdefault(None, [])
    hooks.insert(0, read_first)
    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", sa.exc.SAWarning)  # no "execution options ignored"
            resp = client.get("/api/approvals", headers=headers)  # model objects: the Session's connection
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
        hooks.remove(read_first)
    assert resp.status_code == 200 and approval.id in {row["id"] for row in resp.json["data"]}
    assert seen and not any(seen)


# ---------------------------------------------------------------- fastpath.Middleware


class Dispatches:
    """Requests that reached Flask's dispatch (its `request_started` signal) while active."""

    def __init__(self, app):
        self.app, self.paths = app, []

    def _record(self, sender, **extra):
        from flask import request

        self.paths.append(request.path)

    def __enter__(self):
        from flask import request_started

        request_started.connect(self._record, self.app)
        return self.paths

    def __exit__(self, *exc):
        from flask import request_started

        request_started.disconnect(self._record, self.app)


def warm(client, path, headers):
    """Requests until Flask's own fast path has answered `path` once (miss, store, hit); its body."""
    hits, body = caching.stats()["hits"], None
    for _ in range(4):
        resp = client.get(path, headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        if caching.stats()["hits"] > hits:
            return resp
        body = resp
    raise AssertionError(f"{path} never became a cache hit: {body.json}")


@pytest.mark.parametrize("path", [LIST, "/api/reports/dashboard", "/api/tasks/overdue"])
def test_middleware_answers_a_repeat_hit_before_flask_with_the_same_answer(app, client, bearer, make, redis_cache, path):
    """Once Flask has routed a path and query, the next hit never reaches Flask's dispatch: same body, headers, no SQL."""
    make.customer("sales")
    headers = bearer("manager")
    via_flask = warm(client, path, headers)
    hits = caching.stats()["hits"]
    with Dispatches(app) as dispatched, Statements() as seen:
        before_flask = client.get(path, headers=headers)
    assert dispatched == [] and seen == [] and caching.stats()["hits"] == hits + 1
    assert before_flask.status_code == 200 and before_flask.get_data() == via_flask.get_data()
    # Every header Flask's hooks add to a hit (security headers, ETag, Vary, Cache-Control).
    # Each answer carries its own request id (app/requestlog.py); the rest is the same.
    ids = before_flask.headers["X-Request-ID"], via_flask.headers["X-Request-ID"]
    assert ids[0] != ids[1] and all(len(i) == 32 for i in ids)
    assert {**before_flask.headers, "X-Request-ID": ""} == {**via_flask.headers, "X-Request-ID": ""}
    assert before_flask.headers["X-Frame-Options"] == "DENY" and before_flask.headers["Content-Security-Policy"]
    with Dispatches(app) as dispatched:
        not_modified = client.get(path, headers={**headers, "If-None-Match": via_flask.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.get_data() == b"" and dispatched == []


def test_middleware_leaves_to_flask_what_it_cannot_decide(app, client, bearer, make, redis_cache):
    """A cookie, an Origin, FAB's `_l_` locale, another query, HEAD, a stale or bad token: Flask answers, correctly."""
    make.customer("sales")
    headers = bearer("sales")
    expected = warm(client, LIST, headers).get_data()
    client.set_cookie("session", "x")  # the test client sends its own cookie jar, not a Cookie header
    with Dispatches(app) as dispatched:
        assert client.get(LIST, headers=headers).status_code == 200 and dispatched == ["/api/customers"]
    client.delete_cookie("session")
    for extra, path, method in (
        ({"Origin": "https://elsewhere.example"}, LIST, "GET"),
        ({}, LIST + "&_l_=en", "GET"),
        ({}, LIST + "&page=2", "GET"),
        ({}, LIST, "HEAD"),
    ):
        with Dispatches(app) as dispatched:
            resp = client.open(path, method=method, headers={**headers, **extra})
        assert resp.status_code == 200 and dispatched == [path.split("?")[0]], (extra, path, method)
    assert client.get(LIST, headers=headers).get_data() == expected
    # Bad input seen before (its query key is known): still Flask's 400 naming the field, every time.
    for _ in range(3):
        with Dispatches(app) as dispatched:
            bad = client.get("/api/customers?page=x", headers=headers)
        assert bad.status_code == 400 and bad.json["details"].keys() == {"page"} and dispatched == ["/api/customers"]
    with Dispatches(app) as dispatched:
        forged = client.get(LIST, headers={"Authorization": headers["Authorization"][:-4] + "AAAA"})
    assert forged.status_code == 401 and dispatched == ["/api/customers"]


def test_middleware_hits_stop_at_revocation_role_change_and_scope(app, db, client, bearer, users, make, redis_cache):
    """Served before Flask, answers still honour revocation, the caller's scope and a changed role at once."""
    own, other = make.customer("sales"), make.customer("sales2")
    sales, sales2 = bearer("sales"), bearer("sales2")
    warm(client, LIST, sales)
    with Dispatches(app) as dispatched:
        mine = listed(client.get(LIST, headers=sales))
        theirs = listed(client.get(LIST, headers=sales2))  # the same path and query, another scope: a miss, Flask computes
    assert dispatched == ["/api/customers"]
    assert own.name in mine and other.name not in mine and other.name in theirs and own.name not in theirs
    user_id = fresh_user(app)
    headers = issue(app, user_id)
    warm(client, LIST, headers)
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.get_user_by_id(user_id)
        user.roles = [sm.find_role("Compliance")]
        sm.update_user(user)
    with Dispatches(app) as dispatched:
        resp = client.get(LIST, headers=headers)  # the token's roles are no longer true: the user row decides
    assert dispatched == ["/api/customers"] and resp.status_code == 200
    assert client.post("/api/auth/logout", headers=sales).status_code == 200
    resp = client.get(LIST, headers=sales)
    assert resp.status_code == 401 and "revoked" in resp.json["message"]


def test_a_fault_in_the_middleware_falls_back_to_flask(app, client, bearer, make, redis_cache, monkeypatch, caplog):
    """An unexpected error before Flask costs the request nothing: Flask answers it, and the fault is logged."""
    from app import fastpath

    make.customer("sales")
    headers = bearer("sales")
    expected = warm(client, LIST, headers).get_data()

    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(fastpath.Middleware, "_answer", broken)
    with caplog.at_level(logging.WARNING, logger="crm.cache"), Dispatches(app) as dispatched:
        resp = client.get(LIST, headers=headers)
    assert resp.status_code == 200 and resp.get_data() == expected and dispatched == ["/api/customers"]
    assert "Fast path middleware failed" in caplog.text


# ---------------------------------------------------------------- every cached answer, per caller

# Every `cached_endpoint` of /api, plus a detail read. Each caller's answer with the cache
# on (a miss, then hits from the fast path and its middleware) must equal what the database
# answers that caller with the cache off: a key missing a scope, a user or a role set hands
# one caller's answer to another.
CACHED_READS = [
    "/api/customers?limit=100",
    "/api/meetings?limit=100",
    "/api/meetings/upcoming?limit=100",
    "/api/tasks?limit=100",
    "/api/tasks/overdue?limit=100",
    "/api/tasks/upcoming?limit=100",
    "/api/approvals?limit=100",
    "/api/approvals/pending?limit=100",
    "/api/notifications?limit=100",
    "/api/notifications/unread-count",
    "/api/reports/dashboard",
    "/api/reports/sales-metrics",
    "/api/reports/task-trends",
    "/api/reports/approval-stats",
    "/api/audit?limit=100",
    "/api/audit/stats",
    "/api/customers/{own}",
]
CALLERS = ("sales", "sales2", "manager", "compliance")


@pytest.fixture()
def two_books(app, db, users, make):
    """For each rep: a customer, an upcoming meeting, an overdue and an upcoming task, a request; a notification per caller.

    Sales holds one customer (and request) more than sales2, so even their figures (dashboard, reports) differ.
    """
    from datetime import timedelta

    from models import Notification, NotificationType
    from models.base import utcnow

    marks = {}
    for rep, extra in (("sales", 2), ("sales2", 1)):
        tag = f"{rep}-{uuid.uuid4().hex[:6]}"
        customers = [make.customer(rep, name=f"株式会社{tag}-{i}", investment_profile="moderate", risk_tolerance=5) for i in range(extra)]
        make.meeting(rep, customer=customers[0], title=f"商談{tag}", scheduled_at=utcnow() + timedelta(hours=3))
        make.task(rep, customer=customers[0], title=f"期限切れ{tag}", due_date=utcnow() - timedelta(days=1))
        make.task(rep, customer=customers[0], title=f"今週{tag}", due_date=utcnow() + timedelta(days=1))
        for i, customer in enumerate(customers):
            make.approval(rep, customer=customer, product_name=f"ファンド{tag}-{i}", amount=20_000_000)
        marks[rep] = tag
    for key in CALLERS:
        marks.setdefault(key, f"{key}-{uuid.uuid4().hex[:6]}")
        db.session.add(Notification(user_id=users[key].id, type=NotificationType.SYSTEM, title=f"お知らせ{marks[key]}"))
    db.session.commit()
    marks["own"] = db.session.execute(
        sa.text("SELECT id FROM customers WHERE name = :n"), {"n": f"株式会社{marks['sales']}-0"}
    ).scalar_one()
    return marks


def _answers(client, bearer, path):
    """{caller: (status, body)} of one GET per caller, in CALLERS order (sales first: it stores first)."""
    out = {}
    for key in CALLERS:
        resp = client.get(path, headers=bearer(key))
        out[key] = (resp.status_code, resp.get_json())
    return out


@pytest.mark.parametrize("template", CACHED_READS)
def test_every_cached_answer_is_the_callers_own(app, client, bearer, two_books, redis_cache, monkeypatch, template):
    """Two reps, a Manager and Compliance: with the cache on, each gets what the database answers them, round after round."""
    path = template.format(**two_books)
    with monkeypatch.context() as off:
        off.setitem(app.config, "CACHE_ANSWERS", False)
        expected = _answers(client, bearer, path)
    # The reference itself tells the callers apart where their rows differ.
    text = {k: json.dumps(body, ensure_ascii=False) for k, (_status, body) in expected.items()}
    if "notifications" in path:
        assert all(two_books[k] in text[k] for k in CALLERS) or "unread" in path
        assert two_books["manager"] not in text["compliance"] and two_books["sales"] not in text["sales2"]
    elif not path.startswith("/api/audit") and "/pending" not in path:
        assert expected["sales"] != expected["sales2"], path
    hits = caching.stats()["hits"]
    for _ in range(3):  # round 1 stores, rounds 2 and 3 are hits (Flask's before_request, then the middleware)
        assert _answers(client, bearer, path) == expected, path
    cacheable = all(status == 200 for status, _body in expected.values())
    if "{own}" not in template:
        assert caching.stats()["hits"] >= hits + (2 * len(CALLERS) if cacheable else 2 * 2), path
