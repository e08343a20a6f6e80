"""Dashboard figures: the trigger-maintained counters give exactly what count(*) over the rows gives."""

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from app.services.dashboard import SECTIONS, counter_counts, dashboard_figures, exact_counts, recount
from models.base import utcnow

TABLES = ("customers", "meetings", "tasks", "approval_requests")
OWNERS = ("sales", "sales2", "manager")
TASK_STATUSES = ("TODO", "IN_PROGRESS", "COMPLETED", "CANCELLED")
APPROVAL_STATUSES = ("PENDING", "APPROVED", "REJECTED", "RECALLED")
# Offsets from the figures' `now`: the window edges (now, now - 30 days) to the second, and beyond.
EDGES = [timedelta(seconds=s) for s in (0, 1, -1)] + [timedelta(days=-30, seconds=s) for s in (0, 1, -1)]
OFFSETS = st.one_of(
    st.sampled_from(EDGES + [timedelta(days=d) for d in (-400, -31, -29, -1, 1, 2, 400)]),
    st.integers(-40 * 86400, 40 * 86400).map(lambda s: timedelta(seconds=s)),
)


def viewers(users):
    """Every role's user, plus an anonymous one (sees nothing)."""
    return [*users.values(), None]


def assert_counters_exact(users, now):
    """The counter figures equal the count(*) figures for every user at `now`."""
    for user in viewers(users):
        assert counter_counts(user, SECTIONS, now) == exact_counts(user, SECTIONS, now), (user, now)


@pytest.fixture()
def anchor(make):
    """A committed customer the generated meetings, tasks and requests refer to."""
    return make.customer("sales")


class Scenario:
    """Random writes by ORM and raw SQL, remembering what was written so it can be changed."""

    def __init__(self, db, users, anchor, now, draw):
        self.db, self.users, self.anchor, self.now, self.draw = db, users, anchor.id, now, draw
        self.rows = []  # (table, id)

    def uid(self, owners=OWNERS, nullable=False):
        """A user id (or None) drawn from `owners`."""
        choices = list(owners) + ([None] if nullable else [])
        key = self.draw(st.sampled_from(choices))
        return None if key is None else self.users[key].id

    def at(self):
        """A timestamp near `now`."""
        return self.now + self.draw(OFFSETS)

    def fields(self, table):
        """Column values that decide a row's counter keys."""
        if table == "customers":
            return {
                "assigned_sales_id": self.uid(nullable=True),
                "created_by_id": self.uid(nullable=True),
                "created_at": self.at(),
                "deleted_at": self.draw(st.sampled_from([None, self.now])),
            }
        if table == "meetings":
            return {"sales_id": self.uid(nullable=True), "created_by_id": self.uid(nullable=True), "scheduled_at": self.at()}
        if table == "tasks":
            return {
                "user_id": self.uid(),
                "created_by_id": self.uid(nullable=True),
                "status": self.draw(st.sampled_from(TASK_STATUSES)),
                "due_date": self.draw(st.one_of(st.none(), st.just(self.now), OFFSETS.map(lambda d: self.now + d))),
            }
        return {"requester_id": self.uid(), "status": self.draw(st.sampled_from(APPROVAL_STATUSES))}

    def insert(self, table, orm):
        """Insert one row of `table`."""
        from models import ApprovalRequest, Customer, Meeting, Task

        values = self.fields(table)
        row_id = str(uuid.uuid4())
        if table == "customers":
            values.update(name=f"集計{row_id[:6]}")
        elif table == "meetings":
            values.update(customer_id=self.anchor, title="面談")
        elif table == "tasks":
            values.update(title="電話", priority="MEDIUM", customer_id=self.draw(st.sampled_from([None, self.anchor])))
        else:
            values.update(customer_id=self.anchor, product_name="投信", amount=1000)
            if orm:  # the ORM's guards (app/services/approvals.py) decide only through steps
                values["status"] = self.draw(st.sampled_from(["PENDING", "RECALLED"]))
        if orm:
            model = {"customers": Customer, "meetings": Meeting, "tasks": Task, "approval_requests": ApprovalRequest}[table]
            self.db.session.add(model(id=row_id, **values))
            self.db.session.flush()
        else:
            values.setdefault("created_at", self.now)
            values.update(id=row_id, updated_at=self.now)
            if table == "customers":
                values["risk_tolerance"] = 5
            if table == "approval_requests":
                values["requested_at"] = self.now
            names = ", ".join(values)
            self.db.session.execute(
                sa.text(f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + k for k in values)})"), values
            )
        self.rows.append((table, row_id))

    def update(self, orm):
        """Change some key columns of one written row (owner, creator, status, dates, soft delete)."""
        from models import ApprovalRequest, Customer, Meeting, Task

        table, row_id = self.draw(st.sampled_from(self.rows))
        orm = orm and table != "approval_requests"  # guarded in the ORM: raw SQL only
        fields = self.fields(table)
        changed = {k: v for k, v in fields.items() if self.draw(st.booleans())} or fields
        if orm:
            model = {"customers": Customer, "meetings": Meeting, "tasks": Task, "approval_requests": ApprovalRequest}[table]
            self.db.session.expire_all()
            obj = self.db.session.get(model, row_id)
            for k, v in changed.items():
                setattr(obj, k, v)
            self.db.session.flush()
        else:
            sets = ", ".join(f"{k} = :{k}" for k in changed)
            self.db.session.execute(sa.text(f"UPDATE {table} SET {sets} WHERE id = :id"), {**changed, "id": row_id})

    def delete(self, orm):
        """Hard-delete one written row."""
        table, row_id = self.draw(st.sampled_from(self.rows))
        self.rows.remove((table, row_id))
        if orm and table != "approval_requests":  # the ORM refuses to delete requests
            from models import ApprovalRequest, Customer, Meeting, Task

            model = {"customers": Customer, "meetings": Meeting, "tasks": Task, "approval_requests": ApprovalRequest}[table]
            self.db.session.expire_all()
            self.db.session.delete(self.db.session.get(model, row_id))
            self.db.session.flush()
        else:
            self.db.session.execute(sa.text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})

    def bulk(self):
        """One raw statement changing many rows at once (statuses, due dates, soft deletes)."""
        ids = [i for _, i in self.rows]
        statement = self.draw(st.sampled_from([
            "UPDATE tasks SET status = CASE WHEN status = 'COMPLETED' THEN 'TODO' ELSE 'COMPLETED' END WHERE id = ANY(:ids)",
            "UPDATE tasks SET due_date = due_date - interval '1 day' WHERE id = ANY(:ids)",
            "UPDATE tasks SET user_id = created_by_id WHERE created_by_id IS NOT NULL AND id = ANY(:ids)",
            "UPDATE customers SET deleted_at = CASE WHEN deleted_at IS NULL THEN now() END WHERE id = ANY(:ids)",
            "UPDATE meetings SET scheduled_at = scheduled_at + interval '12 hours' WHERE id = ANY(:ids)",
            "UPDATE approval_requests SET status = 'APPROVED' WHERE id = ANY(:ids)",
        ]))
        self.db.session.execute(sa.text(statement), {"ids": ids})


NOW_SHIFT = st.one_of(
    st.tuples(
        st.sampled_from(["hour", "day", "month"]),
        st.sampled_from([timedelta(0), timedelta(microseconds=-1), timedelta(days=30), timedelta(days=30, seconds=1)]),
    ),
    st.integers(-70 * 86400, 70 * 86400),
)


def figures_now(shift):
    """A `now` for the figures: near the real one, or on the edge of a UTC hour, day or month (so
    the window's partial hour, its remaining hours or days, or its first month is empty or whole)."""
    real = utcnow()
    if isinstance(shift, int):
        return real + timedelta(seconds=shift)
    edge, offset = shift
    hour = real.replace(minute=0, second=0, microsecond=0)
    midnight = hour.replace(hour=0)
    return {"hour": hour, "day": midnight, "month": midnight.replace(day=1)}[edge] + offset


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), shift=NOW_SHIFT)
def test_counters_match_exact_counts_after_random_writes(db, users, anchor, data, shift):
    """Inserts, updates, soft and hard deletes, bulk statements, by ORM and raw SQL: same figures for every role."""
    now = figures_now(shift)
    nested = db.session.begin_nested()
    try:
        scenario = Scenario(db, users, anchor, now, data.draw)
        for _ in range(data.draw(st.integers(1, 12), label="steps")):
            action = data.draw(st.sampled_from(["insert", "update", "delete", "bulk"] if scenario.rows else ["insert"]))
            orm = data.draw(st.booleans(), label="orm")
            if action == "insert":
                scenario.insert(data.draw(st.sampled_from(TABLES)), orm)
            elif action == "update":
                scenario.update(orm)
            elif action == "delete":
                scenario.delete(orm)
            else:
                scenario.bulk()
        assert_counters_exact(users, now)
    finally:
        nested.rollback()


@pytest.fixture()
def rep(app, db):
    """A new Sales user (committed), whose counter keys no other test touches."""
    from app.services.users import create_user

    user = create_user(f"dash-{uuid.uuid4().hex[:8]}@example.com", "Dash Rep", "Sales", "Password123!")
    _ = [r.name for r in user.roles]
    db.session.commit()
    return user


def _mine(db, rep, anchor, now):
    """Rows of `rep` on the window edges of `now` (customers 30 days back, meetings and tasks now)."""
    from models import Customer, Meeting, Task

    edge = now - timedelta(days=30)
    for i, at in enumerate((edge - timedelta(seconds=1), edge, edge + timedelta(seconds=1))):
        db.session.add(Customer(name=f"境界{i}", assigned_sales_id=rep.id, created_by_id=rep.id, created_at=at))
    for at in (now - timedelta(seconds=1), now, now + timedelta(seconds=1)):
        db.session.add(Meeting(customer_id=anchor.id, sales_id=rep.id, created_by_id=rep.id, title="m", scheduled_at=at))
    for due in (now - timedelta(seconds=1), now, now + timedelta(seconds=1), None):
        db.session.add(Task(user_id=rep.id, created_by_id=rep.id, title="t", due_date=due))
    db.session.add(Task(user_id=rep.id, created_by_id=rep.id, title="done", due_date=now - timedelta(days=1), status="COMPLETED"))
    db.session.flush()


@pytest.mark.parametrize("where", ["now", "hour", "hour-1us", "midnight", "midnight-1us"])
def test_window_edges_to_the_second(db, users, rep, anchor, where):
    """Created exactly 30 days ago counts, a second earlier does not; due exactly now is not overdue.

    A new user gets automated rows (a lead and its first-contact task), so the edges are checked
    as the change they make to the rep's figures.
    """
    real = utcnow()
    hour = real.replace(minute=0, second=0, microsecond=0)
    midnight = hour.replace(hour=0)
    now = {
        "now": real,
        "hour": hour,
        "hour-1us": hour - timedelta(microseconds=1),
        "midnight": midnight,
        "midnight-1us": midnight - timedelta(microseconds=1),
    }[where]
    before = counter_counts(rep, SECTIONS, now)
    _mine(db, rep, anchor, now)
    after = counter_counts(rep, SECTIONS, now)
    change = {k: tuple(a - b for a, b in zip(after[k], before[k])) for k in SECTIONS}
    assert change == {
        "customers": (3, 2),  # total, created since now - 30 days
        "meetings": (3, 2),  # total, scheduled from now on
        "tasks": (5, 1, 4, 1),  # total, completed, open, overdue (due a second ago)
        "approvals": (0, 0, 0, 0),
    }
    assert after == exact_counts(rep, SECTIONS, now)
    assert_counters_exact(users, now)


def test_dashboard_is_one_statement_and_sections_follow_permissions(db, users):
    """One statement reads counters and the partial hours; only the requested sections are computed."""
    statements = []

    def capture(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        data = dashboard_figures(users["sales"], ["tasks"])
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    assert list(data) == ["tasks"]
    assert len(statements) == 1 and "record_counters" in statements[0] and "FROM customers" not in statements[0]
    assert dashboard_figures(users["sales"], []) == {}
    with pytest.raises(ValueError):
        dashboard_figures(users["sales"], ["users"])


def test_triggers_cover_every_write_and_truncate(db):
    """Each counted table has its insert, update, delete and truncate triggers, enabled."""
    rows = db.session.execute(sa.text(
        "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname LIKE 'record_counters_%' AND t.tgenabled = 'O'"
    )).all()
    expected = {(t, f"record_counters_{e}") for t in TABLES for e in ("insert", "update", "delete", "truncate")}
    assert set(map(tuple, rows)) == expected


def _counter_rows(db):
    return db.session.execute(sa.text(
        "SELECT table_name, span, day::text, hour, owner_id, creator_id, status, n FROM record_counters WHERE n <> 0"
        " ORDER BY 1, 2, 3, 4, 5, 6, 7"
    )).all()


def test_recount_reproduces_the_trigger_maintained_table(db, users, make):
    """After writes of every kind, a rebuild from the rows gives the same non-zero counters."""
    make.approval("sales")
    make.meeting("sales2")
    task = make.task("sales")
    task.status = "COMPLETED"
    db.session.commit()
    before = _counter_rows(db)
    assert before
    assert recount() > 0
    assert _counter_rows(db) == before


def test_recount_repairs_writes_that_skipped_the_triggers(db, users):
    """A write with triggers off (as bench/load_data.py's COPY) drifts; recount restores exact figures."""
    now = utcnow()
    sales = users["sales"]
    db.session.execute(sa.text("SET LOCAL session_replication_role = replica"))
    db.session.execute(sa.text(
        "INSERT INTO tasks (id, user_id, created_by_id, title, status, priority, due_date, created_at, updated_at)"
        " VALUES (:id, :uid, :uid, 'bulk', 'TODO', 'LOW', :due, :now, :now)"
    ), {"id": str(uuid.uuid4()), "uid": sales.id, "due": now - timedelta(days=3), "now": now})
    db.session.execute(sa.text("SET LOCAL session_replication_role = origin"))
    assert counter_counts(sales, ["tasks"], now) != exact_counts(sales, ["tasks"], now)
    recount()
    assert_counters_exact(users, now)


def test_recount_command(app, db, users):
    """`crm recount` rebuilds in one transaction and says how many keys it wrote."""
    result = app.test_cli_runner().invoke(args=["crm", "recount"])
    assert result.exit_code == 0, result.output
    assert "Dashboard counters rebuilt" in result.output
    assert_counters_exact(users, utcnow())


def _task_insert(conn, uid, due):
    conn.execute(sa.text(
        "INSERT INTO tasks (id, user_id, created_by_id, title, status, priority, due_date, created_at, updated_at)"
        " VALUES (:id, :uid, :uid, 'race', 'TODO', 'LOW', :due, now(), now()) RETURNING id"
    ), {"id": str(uuid.uuid4()), "uid": uid, "due": due})


def _key_n(db, uid, span, status, day):
    with db.engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT COALESCE(sum(n), 0) FROM record_counters WHERE table_name = 'tasks' AND owner_id = :uid"
            " AND creator_id = :uid AND span = :span AND status = :status AND day = CAST(:day AS date)"
        ), {"uid": uid, "span": span, "status": status, "day": day}).scalar()


def _wait_until_blocked(db, pid, seconds=5):
    deadline = time.monotonic() + seconds
    with db.engine.connect() as probe:
        while time.monotonic() < deadline:
            state = probe.execute(
                sa.text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar()
            if state == "Lock":
                return
            probe.rollback()
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited on a lock")


@pytest.mark.parametrize("key_exists", [False, True])
def test_concurrent_writers_on_one_key_both_land(db, users, key_exists):
    """Two sessions adding to the same key: the second waits for the first, neither update is lost."""
    uid = users["sales2"].id
    # A due day nobody else uses, so the key is new (or made to exist first).
    due = datetime(2090, 1, 1, tzinfo=timezone.utc) + timedelta(days=uuid.uuid4().int % 3000)
    day = due.date().isoformat()
    made = []
    with db.engine.connect() as setup:
        if key_exists:
            made.append(_task_insert(setup, uid, due))
            setup.commit()
    total0, day0 = _key_n(db, uid, "total", "TODO", "-infinity"), _key_n(db, uid, "day", "OPEN", day)
    first, second = db.engine.connect(), db.engine.connect()
    errors = []
    try:
        _task_insert(first, uid, due)
        pid = second.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        second.rollback()

        def write():
            try:
                _task_insert(second, uid, due)
                second.commit()
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        _wait_until_blocked(db, pid)
        first.commit()
        thread.join(10)
        assert not thread.is_alive() and not errors, errors
        assert _key_n(db, uid, "total", "TODO", "-infinity") == total0 + 2
        assert _key_n(db, uid, "day", "OPEN", day) == day0 + 2
    finally:
        first.close()
        second.close()
        with db.engine.connect() as cleanup:
            cleanup.execute(sa.text("DELETE FROM tasks WHERE title = 'race' AND user_id = :uid"), {"uid": uid})
            cleanup.commit()


def _run(engine, sql, params, errors):
    """Run `sql` and commit on a new connection in a thread; return (thread, backend pid)."""
    conn = engine.connect()
    pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    conn.rollback()

    def work():
        try:
            conn.execute(sa.text(sql), params)
            conn.commit()
        except Exception as exc:  # noqa: BLE001 - reported by the caller's assertion
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=work)
    thread.start()
    return thread, pid


ADD_TASK = (
    "INSERT INTO tasks (id, user_id, created_by_id, title, status, priority, created_at, updated_at)"
    " VALUES (gen_random_uuid()::text, :uid, :uid, 'order', :status, 'LOW', now(), now())"
)


@pytest.mark.parametrize("held", ["CANCELLED", "COMPLETED"])
def test_a_statement_locks_its_keys_in_key_order(db, rep, held):
    """Keys are taken in ascending order, so writers moving rows in opposite directions cannot deadlock.

    A task going COMPLETED <-> CANCELLED touches two total keys, CANCELLED's sorting first. A third
    session holds one of them; the mover waits on it: holding nothing yet if the held key is the
    first (a writer of the second key goes through), holding the first if it is the second.
    """
    engine, uid, errors = db.engine, rep.id, []
    other = "COMPLETED" if held == "CANCELLED" else "CANCELLED"  # the mover goes other -> held
    with engine.connect() as setup:
        for status in ("CANCELLED", "COMPLETED"):  # both keys exist
            setup.execute(sa.text(ADD_TASK), {"uid": uid, "status": status})
        task = setup.execute(sa.text(
            "SELECT id FROM tasks WHERE user_id = :uid AND title = 'order' AND status = :status LIMIT 1"
        ), {"uid": uid, "status": other}).scalar()
        setup.commit()
    holder = engine.connect()
    try:
        holder.execute(sa.text(ADD_TASK), {"uid": uid, "status": held})
        mover, mover_pid = _run(engine, "UPDATE tasks SET status = :to WHERE id = :id", {"to": held, "id": task}, errors)
        _wait_until_blocked(db, mover_pid)
        writer, writer_pid = _run(engine, ADD_TASK, {"uid": uid, "status": other}, errors)
        if held == "CANCELLED":
            writer.join(5)  # the mover waits on CANCELLED before touching COMPLETED
            assert not writer.is_alive(), "the mover took the later key before the earlier one"
        else:
            _wait_until_blocked(db, writer_pid)  # the mover holds CANCELLED while it waits on COMPLETED
        holder.commit()
        mover.join(10)
        writer.join(10)
        assert not mover.is_alive() and not writer.is_alive() and not errors, errors
        db.session.rollback()
        assert counter_counts(rep, ["tasks"], utcnow()) == exact_counts(rep, ["tasks"], utcnow())
    finally:
        holder.close()
        with engine.connect() as cleanup:
            cleanup.execute(sa.text("DELETE FROM tasks WHERE title = 'order' AND user_id = :uid"), {"uid": uid})
            cleanup.commit()
