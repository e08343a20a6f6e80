"""Cache correctness (not speed): read-your-write for every kind of write, scope never
shared, fail open when Redis is down, ETag/304, bounded counts, keyset pages, no N+1.

The run's app uses NullCache; these tests switch its backend to a real Redis cache with a
private key prefix (fixture `redis_cache`) and restore it afterwards.
"""

import logging
import signal
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
import redis
import sqlalchemy as sa
from flask import g
from flask_caching.backends.rediscache import RedisCache
from sqlalchemy.orm import Session

from app import caching
from tests.conftest import swap_cache_backend

LIST_Q = "/api/v1/customer/?q=(order_column:updated_at,order_direction:desc,page:0,page_size:100)"


def names(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return {row["name"] for row in resp.json["result"]}


def test_api_list_hits_cache_and_reads_its_own_writes(client, auth, make, redis_cache):
    mine = make.customer("sales")
    first = client.get(LIST_Q, headers=auth("sales"))
    assert mine.name in names(first)
    before = caching.stats()
    again = client.get(LIST_Q, headers=auth("sales"))
    assert caching.stats()["hits"] == before["hits"] + 1
    assert again.get_data() == first.get_data()

    # POST
    resp = client.post("/api/v1/customer/", json={"name": "新規顧客API", "email": f"n-{uuid.uuid4().hex[:8]}@ex.jp", "size": "SMALL", "investment_profile": "moderate"}, headers=auth("sales"))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    new_id = resp.json["id"]
    assert "新規顧客API" in names(client.get(LIST_Q, headers=auth("sales")))

    # PUT
    resp = client.put(f"/api/v1/customer/{new_id}", json={"name": "改名済み顧客"}, headers=auth("sales"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    listed = names(client.get(LIST_Q, headers=auth("sales")))
    assert "改名済み顧客" in listed and "新規顧客API" not in listed

    # DELETE (soft; only Admin may delete customers)
    assert client.delete(f"/api/v1/customer/{new_id}", headers=auth("admin")).status_code == 200
    assert "改名済み顧客" not in names(client.get(LIST_Q, headers=auth("sales")))


def test_screen_form_write_invalidates_api_list(browser_login, client, auth, users, make, redis_cache):
    make.customer("sales")
    # Warm the "all" scope and the rep's own scope.
    assert client.get(LIST_Q, headers=auth("manager")).status_code == 200
    assert client.get(LIST_Q, headers=auth("sales")).status_code == 200
    screen = browser_login("sales")
    email = f"screen-{uuid.uuid4().hex[:8]}@ex.jp"
    resp = screen.post(
        "/customerview/add",
        data={
            "name": "画面から登録",
            "email": email,
            "size": "SMALL",
            "investment_profile": "moderate",
            "risk_tolerance": "5",
            "assigned_sales": str(users["sales"].id),
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    assert "画面から登録" in names(client.get(LIST_Q, headers=auth("manager")))
    assert "画面から登録" in names(client.get(LIST_Q, headers=auth("sales")))


def test_worker_write_in_its_own_session_invalidates(app, db, client, auth, users, make, redis_cache):
    from app.context import acting_as
    from models import Customer

    customer = make.customer("sales")
    old_name = customer.name
    assert old_name in names(client.get(LIST_Q, headers=auth("sales")))
    # A worker or consumer: its own session and connection, acting as a user, no request.
    with acting_as(users["sales"]), Session(db.engine) as worker:
        row = worker.get(Customer, customer.id)
        row.name = "ワーカーが更新"
        worker.commit()
    # The test client's requests reuse this test's app context and so its session, whose
    # identity map still holds the old row; a real request starts with a fresh session.
    db.session.expire_all()
    misses = caching.stats()["misses"]
    listed = names(client.get(LIST_Q, headers=auth("sales")))
    assert "ワーカーが更新" in listed and old_name not in listed
    assert caching.stats()["misses"] > misses  # recomputed, not served from the old key


def test_bulk_statement_write_invalidates(db, client, auth, make, redis_cache):
    from models import Customer

    customer = make.customer("sales")
    assert customer.name in names(client.get(LIST_Q, headers=auth("sales")))
    db.session.execute(sa.update(Customer).where(Customer.id == customer.id).values(name="一括更新"))
    db.session.commit()
    assert "一括更新" in names(client.get(LIST_Q, headers=auth("sales")))


def test_rolled_back_write_does_not_invalidate(db, client, auth, make, redis_cache):
    from models import Customer

    other = make.customer("sales2")
    client.get(LIST_Q, headers=auth("sales"))
    gens = redis_cache.get_many("gen:customers")
    db.session.get(Customer, other.id).name = "取り消し"
    db.session.flush()
    db.session.rollback()
    assert redis_cache.get_many("gen:customers") == gens


def test_scopes_never_share_answers(client, auth, make, redis_cache):
    own = make.customer("sales")
    other = make.customer("sales2")
    for _ in range(2):  # second round is served from cache
        sales = names(client.get(LIST_Q, headers=auth("sales")))
        sales2 = names(client.get(LIST_Q, headers=auth("sales2")))
        manager = names(client.get(LIST_Q, headers=auth("manager")))
        assert own.name in sales and other.name not in sales
        assert other.name in sales2 and own.name not in sales2
        assert {own.name, other.name} <= manager
    assert caching.stats()["hits"] >= 3


def test_etag_and_304(client, auth, make, redis_cache):
    make.customer("sales")
    first = client.get(LIST_Q, headers=auth("sales"))
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    not_modified = client.get(LIST_Q, headers={**auth("sales"), "If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.get_data() == b""
    # Another user's ETag check still runs their own scope: different body, so 200.
    other = client.get(LIST_Q, headers={**auth("sales2"), "If-None-Match": etag})
    assert other.status_code == 200
    make.customer("sales")
    changed = client.get(LIST_Q, headers={**auth("sales"), "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_permission_change_applies_at_once_with_memoised_checks(app, client, auth, make, redis_cache):
    """Permission checks are memoised per process; revoking a permission still bites at once."""
    from app.roles import CUSTOMER

    sm = app.appbuilder.sm
    make.customer("sales")
    assert client.get(LIST_Q, headers=auth("compliance")).status_code == 200
    assert client.get(LIST_Q, headers=auth("compliance")).status_code == 200  # memoised now
    role = sm.find_role("Compliance")
    pv = sm.find_permission_view_menu("can_read", CUSTOMER)
    sm.del_permission_role(role, pv)  # commits → FAB's permission tables' generation bumped
    try:
        assert client.get(LIST_Q, headers=auth("compliance")).status_code == 403
    finally:
        sm.add_permission_role(sm.find_role("Compliance"), sm.find_permission_view_menu("can_read", CUSTOMER))
    assert client.get(LIST_Q, headers=auth("compliance")).status_code == 200


def test_unauthenticated_never_reaches_the_cache(client, make, redis_cache):
    make.customer("sales")
    assert client.get(LIST_Q).status_code == 401


def test_redis_down_answers_200_from_the_database(app, client, auth, make, private_redis, caplog):
    old = swap_cache_backend(app, RedisCache(host=redis.Redis.from_url(private_redis.url, socket_connect_timeout=0.25, socket_timeout=0.5), key_prefix="t:"))
    try:
        make.customer("sales")
        client.get(LIST_Q, headers=auth("sales"))
        assert client.get(LIST_Q, headers=auth("sales")).status_code == 200
        assert caching.stats()["hits"] == 1
        private_redis.stop(signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="crm.cache"):
            fresh = make.customer("sales")  # the invalidation fails too: the write still commits
            resp = client.get(LIST_Q, headers=auth("sales"))
            assert resp.status_code == 200 and fresh.name in names(resp)
            assert client.get(LIST_Q, headers=auth("sales")).status_code == 200
        stats = caching.stats()
        assert stats["errors"] >= 1 and stats["down"]
        assert stats["pending_invalidations"] >= 1
        assert sum("Cache unavailable" in r.getMessage() for r in caplog.records) == 1  # once per interval
    finally:
        swap_cache_backend(app, old)


def test_hit_and_miss_logged_at_debug(client, auth, make, redis_cache, caplog):
    make.customer("sales")
    with caplog.at_level(logging.DEBUG, logger="crm.cache"):
        client.get(LIST_Q, headers=auth("sales"))
        client.get(LIST_Q, headers=auth("sales"))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any(line.startswith("Cache MISS: answer:") for line in lines)
    assert any(line.startswith("Cache HIT: answer:") for line in lines)


ROLE_OF = {"admin": "Admin", "manager": "Manager", "compliance": "Compliance", "sales": "Sales", "sales2": "Sales"}


def as_request_user(users, key):
    """A stand-in for g.user (the session fixture's users are detached and expire)."""
    return SimpleNamespace(id=users[key].id, is_authenticated=True, roles=[SimpleNamespace(name=ROLE_OF[key])])


def test_cached_response_helper_for_blueprint_handlers(app, db, users, make, redis_cache):
    """What the /api blueprint calls: one compute per generation and scope, 304 on match."""
    calls = []

    def compute():
        calls.append(1)
        return {"success": True, "data": [len(calls)]}

    def answer(user_key, headers=None):
        with app.test_request_context("/api/customers?page=1&limit=20", headers=headers or {}):
            g.user = as_request_user(users, user_key)
            return caching.cached_response(("customers",), compute)

    first = answer("sales")
    assert first.status_code == 200 and first.json == {"success": True, "data": [1]}
    assert answer("sales").json["data"] == [1] and len(calls) == 1
    assert answer("sales", {"If-None-Match": first.headers["ETag"]}).status_code == 304
    assert answer("sales2").json["data"] == [2]  # another Sales user: own key
    assert answer("manager").json["data"] == [3]
    assert answer("admin").json["data"] == [3]  # Admin shares the "all" scope with Manager
    make.customer("sales")  # commit → customers generation bumped
    assert answer("sales").json["data"] == [4]


def test_not_cacheable_answers_pass_through(app, users, redis_cache):
    from flask import jsonify

    calls = []

    def failing():
        calls.append(1)
        return jsonify(error="Bad Request"), 400

    with app.test_request_context("/api/customers?page=x"):
        g.user = as_request_user(users, "sales")
        resp = caching.cached_response(("customers",), lambda: app.make_response(failing()))
        again = caching.cached_response(("customers",), lambda: app.make_response(failing()))
    assert resp.status_code == 400 and again.status_code == 400 and len(calls) == 2


# ---------------------------------------------------------------- pagination and queries


def test_bounded_count_is_exact_below_the_limit_and_estimated_above(app, db, make):
    from app.pagination import bounded_count
    from models import Customer

    for _ in range(3):
        make.customer("sales2")
    query = db.session.query(Customer).filter(Customer.deleted_at.is_(None))
    exact = query.count()
    assert bounded_count(db.session, query) == exact
    estimated = bounded_count(db.session, query, exact_limit=1)
    assert estimated >= 2  # never reports fewer rows than it counted


def test_keyset_pages_walk_every_row_once(app, db, make):
    from app.listquery import keyset_statement, keyset_trim
    from models import Customer

    for _ in range(5):
        make.customer("sales2")
    query = sa.select(Customer).where(Customer.deleted_at.is_(None))
    order = (Customer.updated_at, Customer.id)
    expected = [c.id for c in db.session.execute(query.order_by(Customer.updated_at.desc(), Customer.id.desc())).scalars()]
    seen, cursor = [], None
    while True:
        rows = db.session.execute(keyset_statement(query, order, after=cursor, limit=2)).scalars().all()
        rows, cursor = keyset_trim(rows, order, 2)
        seen += [r.id for r in rows]
        if not cursor:
            break
    assert seen == expected


def test_page_args_and_bad_cursor_are_400s_naming_the_field():
    from app.listquery import decode_cursor
    from app.pagination import page_args
    from app.services.errors import ValidationFailed

    assert page_args("2", "500") == (2, 100)
    for page, limit, field in (("x", None, "page"), ("0", None, "page"), (None, "-1", "limit")):
        with pytest.raises(ValidationFailed) as exc:
            page_args(page, limit)
        assert exc.value.field == field
    with pytest.raises(ValidationFailed) as exc:
        decode_cursor("not-a-cursor!", 2)
    assert exc.value.field == "after"


def _approval(db, user, customer):
    """A pending request written directly (the approvals service is not under test here)."""
    from models import ApprovalRequest

    db.session.add(ApprovalRequest(requester_id=user.id, customer_id=customer.id, product_name="債券ファンド", amount=1_000_000))
    db.session.commit()


@pytest.mark.parametrize("resource", ["customer", "task", "meeting", "approval"])
def test_list_endpoints_have_no_n_plus_one(app, db, client, auth, users, make, resource):
    """The number of SQL statements of a list does not grow with the page size."""
    customer = make.customer("sales")
    for _ in range(6):
        make.task("sales", customer=customer)
        make.meeting("sales", customer=customer)
        _approval(db, users["sales"], customer)
        make.customer("sales")
    statements = []

    def count(conn, cursor, statement, params, context, executemany):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        sizes = {}
        for size in (6, 1, 6):  # the first call also warms per-process lookups
            statements.clear()
            resp = client.get(f"/api/v1/{resource}/?q=(page:0,page_size:{size})", headers=auth("manager"))
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
            assert len(resp.json["result"]) == size
            sizes[size] = len(statements)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert sizes[6] == sizes[1], sizes


def test_planner_estimate_is_remembered_for_a_minute(app, db, make, monkeypatch):
    """EXPLAIN runs once per statement and parameters within ESTIMATE_SECONDS; exact counts every time."""
    from app import pagination
    from models import Customer

    for _ in range(3):
        make.customer("sales2")
    monkeypatch.setattr(pagination, "_estimates", {})
    explains, counts = [], []

    def record(conn, cursor, statement, params, context, executemany):
        (explains if context.execution_options.get(pagination.EXPLAIN_OPTION) else counts).append(statement)

    query = db.session.query(Customer).filter(Customer.deleted_at.is_(None))
    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        first = pagination.bounded_count(db.session, query, exact_limit=1)
        assert pagination.bounded_count(db.session, query, exact_limit=1) == first
        assert len(explains) == 1 and len(counts) == 2
        page = query.order_by(Customer.id).limit(1).statement
        db.session.execute(page).all()
        pagination.estimate_count(db.session, query, key_source=page)
        pagination.estimate_count(db.session, query, key_source=page)
        assert len(explains) == 1  # keyed by the page statement, run under the query's own entry
        monkeypatch.setattr(pagination, "ESTIMATE_SECONDS", 0)
        monkeypatch.setattr(pagination, "_estimates", {})
        for _ in range(2):
            pagination.bounded_count(db.session, query, exact_limit=1)
        assert len(explains) == 3  # not remembered: planned again each time
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def test_estimates_keyed_by_stand_ins_of_values_that_move_every_request(app, db, make, monkeypatch):
    """A clock bound on every request is remembered by its minute, not planned again each time."""
    from datetime import timedelta

    from app import pagination
    from models import Task
    from models.base import utcnow

    for _ in range(3):
        make.task("sales", due_date=utcnow() - timedelta(days=1))
    monkeypatch.setattr(pagination, "_estimates", {})
    explains = []

    def record(conn, cursor, statement, params, context, executemany):
        if context.execution_options.get(pagination.EXPLAIN_OPTION):
            explains.append(params)

    query = sa.select(Task).where(Task.due_date < sa.bindparam("now"))
    minute = utcnow().replace(second=0, microsecond=0)
    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        for seconds in (1, 2, 3):
            moment = minute + timedelta(seconds=seconds)
            assert pagination.bounded_count(db.session, query, exact_limit=1, params=pagination.Bound({"now": moment}, {"now": minute})) >= 2
        assert len(explains) == 1
        for seconds in (1, 2):  # without a stand-in each new value is planned again
            pagination.bounded_count(db.session, query, exact_limit=1, params={"now": minute + timedelta(seconds=seconds)})
        assert len(explains) == 3
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)


def test_offset_pages_read_only_their_own_rows_and_match_a_plain_offset(db, make):
    """Deep pages walk primary keys in a CTE; the rows and their order equal a plain OFFSET."""
    from app.listquery import offset_statement
    from models import Customer, Task
    from models.base import utcnow

    customer = make.customer("sales2")
    for days in (3, None, 1, 3, None, 2):
        make.task("sales2", customer=customer, due_date=utcnow() + timedelta(days=days) if days else None)
    cases = [
        (db.session.query(Customer).filter(Customer.deleted_at.is_(None)), [Customer.updated_at.desc(), Customer.id.desc()]),
        (db.session.query(Task), [Task.due_date.asc().nulls_last(), Task.created_at.desc(), Task.id]),
    ]
    for query, order in cases:
        plain = [row.id for row in query.order_by(*order).all()]
        for offset in range(0, len(plain) + 2, 2):
            stmt = offset_statement(query, order, offset, 2)
            assert [row.id for row in db.session.execute(stmt).scalars()] == plain[offset : offset + 2]
            assert ("WITH crm_page AS MATERIALIZED" in str(stmt)) == bool(offset)


def test_query_key_names_the_locale(app):
    """Answers are keyed by the caller's locale (FAB's selector: `_l_`, else the session's), not only path and arguments."""
    from flask import session

    keys = {}
    for locale in ("ja", "en"):
        with app.test_request_context("/customers/list/?page=1"):
            session["locale"] = locale
            keys[locale] = caching.request_query_key()
    assert keys["ja"] != keys["en"] and '"ja"' in keys["ja"] and '"en"' in keys["en"]
    with app.test_request_context("/customers/list/?page=1&_l_=ja"):
        session["locale"] = "en"
        assert '"ja"' in caching.request_query_key()


def test_a_removed_permission_applies_in_every_process_within_the_memo_lifetime(app, config_class):
    """Two app instances on one database, each with its own in-process cache (the embedded default, no Redis):
    a permission removed through one is refused by the other from PERMISSION_MEMO_SECONDS after its memo was filled."""
    import time

    from flask_jwt_extended import create_access_token

    from app import create_app
    from app.roles import CUSTOMER, READ

    lifetime = 1
    embedded = type(
        "EmbeddedProcess",
        (config_class,),
        {"REDIS_URL": "", "RATELIMIT_STORAGE_URI": "memory://", "CACHE_TYPE": "SimpleCache", "PERMISSION_MEMO_SECONDS": lifetime},
    )
    worker, other = create_app(embedded), create_app(embedded)
    sm = app.appbuilder.sm
    role = sm.add_role(f"MemoProbe-{uuid.uuid4().hex[:6]}")
    sm.add_permission_role(role, sm.find_permission_view_menu(READ, CUSTOMER))
    email = f"memo-{uuid.uuid4().hex[:8]}@example.com"
    user = sm.add_user(email, "Memo", "Probe", email, role, password="memo-probe-pass")
    with worker.test_request_context():
        headers = {"Authorization": f"Bearer {create_access_token(identity=str(user.id))}"}
    client = worker.test_client()
    assert client.get("/api/customers?limit=1", headers=headers).status_code == 200
    assert client.get("/api/customers?limit=1", headers=headers).status_code == 200  # from the memo
    filled = time.monotonic()  # the memo entry was made before this
    with other.app_context():
        osm = other.appbuilder.sm
        osm.del_permission_role(osm.find_role(role.name), osm.find_permission_view_menu(READ, CUSTOMER))
    while time.monotonic() < filled + lifetime:  # wait for the bound to pass, not a guessed sleep
        time.sleep(filled + lifetime - time.monotonic())
    resp = client.get("/api/customers?limit=1", headers=headers)
    assert resp.status_code == 403, "the other process's change reached this one within PERMISSION_MEMO_SECONDS"


def test_a_far_page_of_a_never_analysed_table_runs_its_key_walk_once(app, db):
    """Freshly loaded, autovacuum off, never ANALYZEd: the page's key walk runs once, not once per row in scope."""
    import json as _json

    from sqlalchemy.orm import declarative_base

    from app.listquery import offset_statement

    name = f"fresh_customers_{uuid.uuid4().hex[:8]}"
    Base = declarative_base()

    class Fresh(Base):
        __tablename__ = name
        id = sa.Column(sa.String(36), primary_key=True)
        assigned_sales_id = sa.Column(sa.Integer)
        created_by_id = sa.Column(sa.Integer)
        deleted_at = sa.Column(sa.DateTime)
        updated_at = sa.Column(sa.DateTime, nullable=False)

    with db.engine.begin() as conn:
        Base.metadata.create_all(conn)
        conn.exec_driver_sql(f"ALTER TABLE {name} SET (autovacuum_enabled = off)")
        conn.exec_driver_sql(f"CREATE INDEX ON {name} (updated_at DESC, id DESC)")
        # ~1,100 rows per rep as in the soak, 20 reps.
        conn.exec_driver_sql(
            f"INSERT INTO {name} SELECT md5(i::text), mod(i, 20), mod(i, 20), NULL, now() - i * interval '1 minute'"
            " FROM generate_series(1, 22000) AS i"
        )
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables WHERE relname = '{name}'").one() == (None, None)
            scope = sa.or_(Fresh.assigned_sales_id == 7, Fresh.created_by_id == 7)
            query = sa.select(Fresh).where(Fresh.deleted_at.is_(None), scope)
            stmt = offset_statement(query, [Fresh.updated_at.desc(), Fresh.id.desc()], 1000, 20, deep=True)
            sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).scalar()
        plan = plan if isinstance(plan, list) else _json.loads(plan)

        def nodes(node):
            yield node
            for child in node.get("Plans", ()):
                yield from nodes(child)

        everything = list(nodes(plan[0]["Plan"]))
        shape = [(n["Node Type"], n.get("Parent Relationship"), n.get("Subplan Name"), n["Actual Loops"]) for n in everything]
        # The walk over the rows in scope (the scans that skip the first 1,000) runs once...
        walks = [n for n in everything if n.get("Relation Name") == name and n["Actual Loops"] == 1]
        assert walks, shape
        # ...and every other read of the table fetches at most the page's 20 rows, once each.
        for node in everything:
            if node.get("Relation Name") == name and node["Actual Loops"] > 1:
                assert node["Actual Loops"] <= 20 and node["Actual Rows"] <= 1, shape
        assert not [n for n in everything if n.get("Parent Relationship") == "SubPlan"], shape
        assert plan[0]["Execution Time"] < 200  # ms; the per-row re-run took seconds
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {name}")
