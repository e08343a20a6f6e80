"""views/api/nested.py: related records nested in /api answers, one statement per table, scoped."""

import uuid
from types import SimpleNamespace

import pytest

from tests.helpers import StatementLog

# A Sales user's 100-row page; every row nests a customer and the owner.
PAGE = 100


@pytest.fixture()
def hundred_tasks(app, db, users, make):
    """100 open tasks of a fresh Sales rep over 10 customers of theirs; (rep, token, customer ids)."""
    from app.services.users import create_user
    from app.context import acting_as
    from models import Customer, Task

    email = f"n1-{uuid.uuid4().hex[:8]}@example.com"
    rep = create_user(email, "一括 担当", "Sales", "Password123!")
    customers = []
    with acting_as(SimpleNamespace(id=rep.id, roles=[SimpleNamespace(name="Sales")], is_authenticated=True)):
        for i in range(10):
            c = Customer(name=f"株式会社一括{i}", email=f"n1-{uuid.uuid4().hex[:8]}@example.jp", assigned_sales_id=rep.id, created_by_id=rep.id)
            db.session.add(c)
            customers.append(c)
        db.session.flush()
        for i in range(PAGE):
            db.session.add(Task(user_id=rep.id, created_by_id=rep.id, customer_id=customers[i % 10].id, title=f"一括タスク{i}"))
        db.session.commit()
    token = app.test_client().post("/api/auth/login", json={"email": email, "password": "Password123!"}).json["token"]
    return rep, token, [c.id for c in customers]


def test_a_100_row_page_costs_one_statement_per_nested_table(app, client, hundred_tasks):
    """GET /api/tasks?limit=100: the page, one SELECT of its customers, one of its users, whatever the length.

    With the tests' cache off, the page without nested records was 4 statements (the
    token's role ids twice, the permission check, the page); with them it is 6. One query
    per row would have been 4 + 2 × 100.
    """
    _rep, token, customer_ids = hundred_tasks
    headers = {"Authorization": f"Bearer {token}"}
    with StatementLog(app) as log:
        resp = client.get(f"/api/tasks?limit={PAGE}", headers=headers)
        assert resp.status_code == 200, resp.json
        full = list(log.statements)
        log.clear()
        one = client.get("/api/tasks?limit=1", headers=headers)
        single = list(log.statements)
        customers, users = log.reading("customers"), log.reading("ab_user")
    rows = resp.json["data"]
    assert len(rows) == PAGE
    # (The rep's own lead and first-contact tasks, made by the automations, are among them.)
    assert set(customer_ids) <= {r["customer"]["id"] for r in rows}
    assert all(r["customer"]["id"] == r["customerId"] and r["user"]["name"] == "一括 担当" for r in rows)
    assert one.status_code == 200 and len(one.json["data"]) == 1
    print(f"\nstatements of a {PAGE}-row /api/tasks page: {len(full)}; of a 1-row page: {len(single)}")
    # The same statements for 1 row and for 100: nothing per row.
    assert len(full) == len(single), full
    with StatementLog(app) as log:
        client.get(f"/api/tasks?limit={PAGE}", headers=headers)
        assert len(log.reading("customers")) == 1 and len(log.reading("ab_user")) == 1 and len(log.reading("tasks")) == 1, log.statements
    assert len(customers) == 1 and len(users) == 1


@pytest.mark.parametrize(
    "path,model",
    [
        ("/api/customers", "customer"),
        ("/api/meetings", "meeting"),
        ("/api/meetings/upcoming", "meeting"),
        ("/api/approvals", "approval"),
        ("/api/approvals/pending", "approval"),
        ("/api/audit", "audit"),
    ],
)
def test_every_list_costs_the_same_statements_for_1_and_20_rows(app, client, auth, make, users, path, model):
    """Each nesting list: the statements of a 20-row page are those of a 1-row page."""
    caller = "manager"
    for i in range(20):
        owner = "sales" if i % 2 else "sales2"
        if model == "customer":
            make.customer(owner)
        elif model == "meeting":
            make.meeting(owner)
        elif model == "approval":
            make.approval(owner)
        else:
            make.task(owner)  # audit rows: CREATE task, by either rep
    # Past 1,000 rows (audit, late in a run) the first read plans the total's estimate, which
    # every later page reuses for a minute: read once before counting.
    assert client.get(f"{path}?limit=1", headers=auth(caller)).status_code == 200
    counts = []
    with StatementLog(app) as log:
        for limit in (20, 1):
            log.clear()
            resp = client.get(f"{path}?limit={limit}", headers=auth(caller))
            assert resp.status_code == 200 and len(resp.json["data"]) == limit, resp.json
            counts.append(len(log.statements))
    assert counts[0] == counts[1], counts


def test_nested_customer_follows_the_callers_scope(app, client, auth, db, users, make):
    """A rep's task whose customer went to another rep nests null for that rep, the customer for a manager."""
    from models import Customer

    customer = make.customer("sales2", name="移管先商事")
    customer_row = db.session.get(Customer, customer.id)
    customer_row.assigned_sales_id = users["sales"].id
    db.session.commit()
    task = make.task("sales", customer=customer)
    mine = client.get(f"/api/tasks/{task.id}", headers=auth("sales")).json["data"]
    assert mine["customer"] == {"id": customer.id, "name": "移管先商事"} and mine["customerId"] == customer.id

    # Reassigned to sales2 (who created it): outside the Sales rep's scope now.
    customer_row = db.session.get(Customer, customer.id)
    customer_row.assigned_sales_id = users["sales2"].id
    db.session.commit()
    assert client.get(f"/api/customers/{customer.id}", headers=auth("sales")).status_code == 404
    mine = client.get(f"/api/tasks/{task.id}", headers=auth("sales")).json["data"]
    assert mine["customer"] is None and mine["customerId"] == customer.id
    listed = [t for t in client.get(f"/api/tasks?customerId={customer.id}&limit=100", headers=auth("sales")).json["data"] if t["id"] == task.id]
    assert listed and listed[0]["customer"] is None
    seen = client.get(f"/api/tasks/{task.id}", headers=auth("manager")).json["data"]
    assert seen["customer"] == {"id": customer.id, "name": "移管先商事"}


def test_soft_deleted_customer_is_nested_as_null(client, auth, make):
    """A soft-deleted customer cannot be read by id, so nobody sees it nested either."""
    customer = make.customer("sales", name="削除予定商事")
    meeting = make.meeting("sales", customer=customer)
    assert client.get(f"/api/meetings/{meeting.id}", headers=auth("admin")).json["data"]["customer"]["name"] == "削除予定商事"
    assert client.delete(f"/api/customers/{customer.id}", headers=auth("admin")).status_code == 200
    for caller in ("admin", "manager", "sales"):
        data = client.get(f"/api/meetings/{meeting.id}", headers=auth(caller)).json["data"]
        assert data["customer"] is None and data["customerId"] == customer.id, caller


def test_nested_users_show_only_id_name_email_and_role(client, auth, users, make):
    """No password hash, login counters or other columns of FAB's user table."""
    task = make.task("sales")
    user = client.get(f"/api/tasks/{task.id}", headers=auth("admin")).json["data"]["user"]
    assert user == {"id": str(users["sales"].id), "name": "Sales User", "email": users["sales"].email, "role": "SALES"}
    customer = make.customer("sales")
    rep = client.get(f"/api/customers/{customer.id}", headers=auth("admin")).json["data"]["assignedSales"]
    assert rep == {"id": str(users["sales"].id), "name": "Sales User", "email": users["sales"].email}


def test_cached_lists_follow_renames_and_role_changes(app, client, auth, db, users, make, redis_cache):
    """With the answer cache on, a customer's new name and a user's new role reach the nested records."""
    from flask_appbuilder.security.sqla.models import User

    from app.services.users import create_user
    from app.context import acting_as
    from models import Customer, Task

    email = f"rc-{uuid.uuid4().hex[:8]}@example.com"
    rep = create_user(email, "役割 変更", "Sales", "Password123!")
    customer = make.customer("admin", name="旧社名")
    with acting_as(users["admin"]):
        db.session.add(Task(user_id=rep.id, created_by_id=users["admin"].id, customer_id=customer.id, title="引継ぎ"))
        db.session.commit()

    def nested():
        rows = client.get(f"/api/tasks?customerId={customer.id}&limit=100", headers=auth("admin")).json["data"]
        return [(r["customer"]["name"], r["user"]["role"]) for r in rows if r["title"] == "引継ぎ"]

    assert nested() == [("旧社名", "SALES")]
    assert nested() == [("旧社名", "SALES")]  # a cache hit
    db.session.get(Customer, customer.id).name = "新社名"
    db.session.commit()
    assert nested() == [("新社名", "SALES")]
    sm = app.appbuilder.sm
    user = db.session.get(User, rep.id)
    user.roles = [sm.find_role("Manager")]
    db.session.commit()
    assert nested() == [("新社名", "MANAGER")]
