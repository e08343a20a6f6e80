"""List statements built once per shape, the request's values bound at execution (app/listquery.py)."""

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
    for query, page in listquery._shapes.values():
        for stmt in (query, page):
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
