"""Shared list statements executed on the DBAPI cursor (app/rawsql.py)."""

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import listquery, rawsql, reads
from models import Customer, Task
from models.base import utcnow
from models.task import OPEN_STATUSES


@pytest.fixture()
def read_conn(app):
    """An autocommit connection of the app's read engine."""
    with reads.engine(app).connect() as conn:
        yield conn


def customers_statement():
    """A shaped statement like the lists' own: columns, a bound filter, a bound limit."""
    return (
        sa.select(Customer.__table__.c)
        .where(Customer.name.like(sa.bindparam("f_name")), Customer.deleted_at.is_(None))
        .order_by(Customer.updated_at.desc(), Customer.id.desc())
        .limit(sa.bindparam("crm_limit", type_=sa.Integer))
    )


def test_rows_equal_sqlalchemys_value_for_value(read_conn, make):
    """Enums, UTC datetimes, integers, NULLs: the same values and keys as SQLAlchemy's own rows.

    The session's time zone is Tokyo's: PostgreSQL then sends +09:00 times, which the
    column type turns into UTC, and a naive parameter is taken as UTC by its bind processor.
    """
    tag = uuid.uuid4().hex[:8]
    sized = make.customer("sales", name=f"生{tag}-1", size="LARGE", investment_profile="moderate", risk_tolerance=7)
    make.customer("sales2", name=f"生{tag}-2", phone=None)
    read_conn.exec_driver_sql("SET TIME ZONE 'Asia/Tokyo'")
    since = (utcnow() - timedelta(hours=3)).replace(tzinfo=None)  # naive: UTC by the column's rule
    stmt = customers_statement().where(Customer.updated_at > sa.bindparam("f_since", type_=Customer.updated_at.type))
    params = {"f_name": f"生{tag}%", "crm_limit": 10, "f_since": since}
    raw = rawsql.rows(read_conn, stmt, params)
    expected = read_conn.execute(stmt, params).all()
    assert raw is not None and len(raw) == 2
    assert [tuple(r) for r in raw] == [tuple(r) for r in expected]
    assert raw[0]._fields == tuple(expected[0]._fields)
    row = next(r for r in raw if r.id == sized.id)
    assert row.updated_at.isoformat().endswith("+00:00") and row.size == expected[[r.id for r in expected].index(sized.id)].size
    assert type(row.size).__name__ == "CompanySize" and row.risk_tolerance == 7
    assert rawsql.rows(read_conn, stmt, {**params, "crm_limit": 1})[0].id == expected[0].id
    # Five hours ahead in UTC is the future (read in Tokyo's zone it would be four hours ago).
    later = {**params, "f_since": since + timedelta(hours=8)}
    assert rawsql.rows(read_conn, stmt, later) == [] == read_conn.execute(stmt, later).all()


def test_a_missing_parameter_is_an_error_never_a_stale_value(read_conn, make):
    stmt = customers_statement()
    # A prefix no other test's customer has: the session-wide database holds theirs too.
    nobody = f"無人{uuid.uuid4().hex}%"
    assert rawsql.rows(read_conn, stmt, {"f_name": nobody, "crm_limit": 5}) == []
    with pytest.raises(sa.exc.InvalidRequestError, match="f_name"):
        rawsql.rows(read_conn, stmt, {"crm_limit": 5})


def test_statements_it_cannot_run_go_back_to_sqlalchemy(read_conn, make):
    """IN lists expanded at execution: None, and the caller executes through SQLAlchemy."""
    make.task("sales", due_date=utcnow() - timedelta(days=1))
    stmt = sa.select(Task.__table__.c).where(Task.status.in_(OPEN_STATUSES)).limit(sa.bindparam("crm_limit", type_=sa.Integer))
    assert rawsql.compiled_for(stmt, read_conn.dialect) is None
    assert rawsql.rows(read_conn, stmt, {"crm_limit": 1}) is None


def test_a_literal_limit_is_written_into_the_text_and_keeps_one_plan(read_conn):
    """PostgreSQL plans a LIMIT it cannot see anew on every execution (a custom plan each
    time); written into the text, the prepared statement keeps one plan."""

    def page(label, limit):
        return (
            sa.select(Customer.__table__.c, sa.literal_column("1").label(label))
            .where(Customer.deleted_at.is_(None))
            .order_by(Customer.updated_at.desc(), Customer.id.desc())
            .limit(limit)
        )

    bound = page("plan_probe_bound", sa.bindparam("crm_limit", type_=sa.Integer))
    literal = page("plan_probe_literal", sa.bindparam("crm_limit", type_=sa.Integer, literal_execute=True))
    for _ in range(15):  # psycopg prepares at the 6th, PostgreSQL weighs a generic plan after 5 more
        rawsql.rows(read_conn, bound, {"crm_limit": 20})
        rawsql.rows(read_conn, literal, {"crm_limit": 20})
    plans = dict(
        read_conn.execute(
            sa.text("SELECT statement, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%plan_probe_%'")
        ).all()
    )
    by_label = {("literal" if "plan_probe_literal" in sql else "bound"): (sql, custom) for sql, custom in plans.items()}
    assert by_label["bound"][1] >= 5  # the premise: planned anew every time
    assert by_label["literal"][1] == 0 and "LIMIT 20" in by_label["literal"][0]


def test_only_integers_are_written_into_the_text(read_conn):
    texts = sa.select(Customer.id).where(Customer.name == sa.bindparam("f_name", type_=sa.String, literal_execute=True))
    assert rawsql.compiled_for(texts, read_conn.dialect) is None
    page = sa.select(Customer.id).limit(sa.bindparam("crm_limit", type_=sa.Integer, literal_execute=True))
    with pytest.raises(TypeError):
        rawsql.rows(read_conn, page, {"crm_limit": "1; DROP TABLE customers"})


def test_a_database_error_returns_none_and_leaves_the_connection_usable(read_conn):
    stmt = sa.select(sa.cast(sa.bindparam("v", type_=sa.String), sa.Integer).label("n"))
    assert rawsql.rows(read_conn, stmt, {"v": "12"})[0].n == 12
    assert rawsql.rows(read_conn, stmt, {"v": "not a number"}) is None
    assert read_conn.execute(sa.select(sa.literal(1))).scalar_one() == 1


def test_cursor_event_listeners_see_every_statement(read_conn):
    seen = []

    def record(conn, cursor, statement, params, context, executemany):
        seen.append((statement, params))

    stmt = customers_statement()
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        rawsql.rows(read_conn, stmt, {"f_name": "none-such%", "crm_limit": 3})
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    assert len(seen) == 1 and "FROM customers" in seen[0][0] and seen[0][1]["crm_limit"] == 3


@pytest.mark.parametrize(
    "path",
    [
        "/api/customers?page=1&limit=5",
        "/api/customers?page=2&limit=5",
        "/api/customers?after=&limit=5",
        "/api/customers?size=LARGE",
        "/api/tasks?page=1",
        "/api/tasks/overdue",
        "/api/notifications",
        "/api/audit?limit=5",
    ],
)
def test_list_answers_are_the_same_with_and_without_it(client, auth, make, monkeypatch, path):
    """Every /api list answers byte for byte what the SQLAlchemy execution answers."""
    for owner in ("sales", "sales2"):
        customer = make.customer(owner, size="LARGE")
        make.task(owner, customer=customer, due_date=utcnow() - timedelta(days=1))
    used = []
    original = rawsql.rows

    def counting(*args):
        found = original(*args)
        used.append(found is not None)
        return found

    for who in ("manager", "sales") if "audit" not in path else ("compliance",):
        monkeypatch.setattr(listquery.rawsql, "rows", counting)
        fast = client.get(path, headers=auth(who))
        monkeypatch.setattr(listquery.rawsql, "rows", lambda *args: None)
        slow = client.get(path, headers=auth(who))
        assert fast.status_code == 200 and fast.get_data() == slow.get_data(), (who, path)
    assert used and all(used), used  # every list on the cursor (the task lists' open statuses are constants)
