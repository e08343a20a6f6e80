"""List statements built once per shape, the request's values bound at execution (app/listquery.py)."""

import json
import uuid

import pytest
import sqlalchemy as sa

from app import listquery
from app.listquery import SCOPE_UID, ListQuery
from models import Customer, Task


def names(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return {row["name"] for row in resp.json["data"]}


@pytest.fixture()
def builds(monkeypatch):
    """The shape keys built while the test runs (the memo starts empty)."""
    monkeypatch.setattr(listquery, "_shapes", {})
    built = []
    original = listquery.shaped

    def counting(key, build):
        def recorded():
            built.append(key)
            return build()

        return original(key, recorded)

    monkeypatch.setattr(listquery, "shaped", counting)
    return built


def test_one_statement_per_shape_serves_every_caller_with_their_own_rows(client, auth, make, builds):
    tag = uuid.uuid4().hex[:8]
    mine = make.customer("sales", name=f"自社A-{tag}")
    theirs = make.customer("sales2", name=f"他社B-{tag}")
    url = f"/api/customers?search={tag}&limit=100"
    assert names(client.get(url, headers=auth("sales"))) == {mine.name}
    assert names(client.get(url, headers=auth("sales2"))) == {theirs.name}
    assert names(client.get(url, headers=auth("manager"))) == {mine.name, theirs.name}
    # Two Sales users share one "own" shape; the Manager's "all" is another.
    assert len(builds) == 2 and len(set(builds)) == 2
    # Other values in the same shape: the statement is reused, the answer follows the values.
    assert names(client.get(f"/api/customers?search=自社A-{tag}&limit=100", headers=auth("manager"))) == {mine.name}
    assert names(client.get(f"/api/customers?search=nothing-{tag}&limit=100", headers=auth("sales"))) == set()
    assert len(builds) == 2


def test_pages_and_cursors_bind_their_values(client, auth, make, builds):
    tag = uuid.uuid4().hex[:8]
    made = {make.customer("sales", name=f"頁{i}-{tag}").name for i in range(5)}
    seen = set()
    for page in (1, 2, 3):
        seen |= names(client.get(f"/api/customers?search={tag}&limit=2&page={page}", headers=auth("sales")))
    assert seen == made
    cursor, walked = "", set()
    for _ in range(3):
        resp = client.get(f"/api/customers?search={tag}&limit=2&after={cursor}", headers=auth("sales"))
        walked |= names(resp)
        cursor = resp.json["pagination"]["nextCursor"]
    assert walked == made and cursor is None
    # first, deep and cursor pages: three statements for five requests.
    assert len(builds) == 3


def test_shared_statements_hold_no_request_values(client, auth, make, builds):
    tag = uuid.uuid4().hex[:8]
    make.task("sales", title=f"t-{tag}")
    client.get(f"/api/customers?search={tag}&page=2", headers=auth("sales"))
    client.get("/api/tasks/overdue?priority=HIGH", headers=auth("sales"))
    assert builds
    # Shapes are a list's (query, page) pair or, from other callers of listquery.shaped, one statement.
    for shape in listquery._shapes.values():
        for stmt in shape if isinstance(shape, tuple) else (shape,):
            for param in stmt._generate_cache_key().bindparams:
                if param.key == SCOPE_UID or param.key.startswith(("f_", "crm_")):
                    assert param.value is None and param.required, param.key


def test_a_value_left_out_is_an_error_not_another_callers_value(db, users):
    lq = ListQuery(Customer, users["sales"]).where("industry", lambda p: Customer.industry == p, "金融")
    with pytest.raises(sa.exc.StatementError, match=SCOPE_UID):
        db.session.execute(lq.statement(), {"f_industry": "金融"}).all()
    assert db.session.execute(lq.statement(), lq.params).all() is not None


def test_filters_need_a_value_and_a_name_of_their_own(users):
    lq = ListQuery(Task, users["sales"])
    with pytest.raises(ValueError, match="no value"):
        lq.where("userId", lambda p: Task.user_id == p, None)
    lq.where("userId", lambda p: Task.user_id == p, 1)
    with pytest.raises(ValueError, match="twice"):
        lq.where("userId", lambda p: Task.user_id == p, 2)


def test_the_scope_kind_is_part_of_the_shape(users):
    own = ListQuery(Customer, users["sales"])
    same = ListQuery(Customer, users["sales2"])
    everyone = ListQuery(Customer, users["manager"])
    assert own.key == same.key != everyone.key
    assert own.params[SCOPE_UID] != same.params[SCOPE_UID]


def _plan_nodes(node):
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def test_a_far_offset_page_walks_its_keys_once_on_a_never_analysed_table(app, db, client, auth, users, monkeypatch):
    """GET /api/customers?page=51 (past the exact count) as a Sales rep: the statement app/listquery.py builds and runs,
    EXPLAIN ANALYZEd against a freshly loaded copy of the customers table in a private schema (autovacuum off,
    never ANALYZEd, ~1,100 rows per rep): the page's key walk runs once, no subquery is re-run per row."""
    monkeypatch.setitem(app.config, "CACHE_ANSWERS", False)  # the statement must run, not a stored answer
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "crm_page" in statement:
            seen.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        resp = client.get("/api/customers?page=51&limit=20", headers=auth("sales"))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert len(seen) == 1, [s for s, _ in seen]
    statement, parameters = seen[0]
    assert "WITH crm_page AS MATERIALIZED" in statement

    schema = f"fresh_{uuid.uuid4().hex[:8]}"
    rep, other = users["sales"].id, users["sales2"].id
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE {schema}.customers (LIKE customers INCLUDING ALL)")
            conn.exec_driver_sql(f"ALTER TABLE {schema}.customers SET (autovacuum_enabled = false)")
            # 20 reps' worth of rows, one rep in twenty is the caller: ~1,100 rows in scope.
            conn.exec_driver_sql(
                f"INSERT INTO {schema}.customers (id, name, risk_tolerance, assigned_sales_id, created_by_id, created_at, updated_at)"
                f" SELECT md5(i::text), 'c' || i, 5, CASE WHEN mod(i, 20) = 0 THEN {rep} ELSE {other} END, {other},"
                " now() - i * interval '1 minute', now() - i * interval '1 minute' FROM generate_series(1, 22000) AS i"
            )
        with db.engine.connect() as conn:
            analysed = conn.exec_driver_sql(
                f"SELECT last_analyze, last_autoanalyze FROM pg_stat_user_tables WHERE schemaname = '{schema}'"
            ).one()
            assert analysed == (None, None)
            conn.exec_driver_sql(f"SET search_path TO {schema}, public")
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()
            conn.rollback()
        plan = plan if isinstance(plan, list) else json.loads(plan)
        nodes = list(_plan_nodes(plan[0]["Plan"]))
        shape = [(n["Node Type"], n.get("Relation Name"), n.get("Parent Relationship"), n.get("Subplan Name"), n["Actual Loops"]) for n in nodes]
        assert plan[0]["Plan"]["Actual Rows"] == 20, shape  # the page's rows, from the private table
        # The CTE that walks the keys is computed once and scanned once...
        walk = [n for n in nodes if n.get("Subplan Name") == "CTE crm_page"]
        assert len(walk) == 1 and walk[0]["Actual Loops"] == 1, shape
        scans = [n for n in nodes if n["Node Type"] == "CTE Scan" and n.get("CTE Name") == "crm_page"]
        assert len(scans) == 1 and scans[0]["Actual Loops"] == 1, shape
        # ...no subquery is re-run per row, and the table is read again only for the page's 20 rows, one each.
        assert not [n for n in nodes if n.get("Parent Relationship") == "SubPlan"], shape
        for node in nodes:
            if node.get("Relation Name") == "customers" and node["Actual Loops"] > 1:
                assert node["Actual Loops"] <= 20 and node["Actual Rows"] <= 1, shape
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
