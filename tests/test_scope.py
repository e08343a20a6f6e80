"""Related-field choices follow the scope rule (issue 18, item 2), from every place that lists them.

FAB's add, edit and search forms and /api/v1's `_info` offer a Sales user only their own
live customers and only themself as a user; the other roles every live customer, and as
an owner the active Sales and Manager users (and themselves). Soft-deleted customers are
never offered. The expected sets are read from the tables here, not through app/scope.py.
"""

import json
import re
import uuid

import pytest
import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import Role, User

from app.pagination import COUNT_EXACT_LIMIT
from models import Customer, Task
from models.base import utcnow
from tests.conftest import PASSWORD

INFO = "/api/v1/{resource}/_info?q=({key}:({column}:(page:{page},page_size:100)),keys:!({key}))"
# The issue's exact query.
ISSUE_QUERY = "/api/v1/meeting/_info?q=(add_columns:(customer:(page:0,page_size:100)),keys:!(add_columns))"
ROLES = ["admin", "manager", "compliance", "sales", "sales2"]


@pytest.fixture()
def book(make, db, users):
    """Customers of both reps, one soft-deleted, and an inactive Sales user."""
    from app.services.users import create_user

    own = make.customer("sales", name=f"自社{uuid.uuid4().hex[:6]}")
    other = make.customer("sales2", name=f"他社{uuid.uuid4().hex[:6]}")
    gone = make.customer("sales", name=f"削除済{uuid.uuid4().hex[:6]}")
    gone.deleted_at = utcnow()
    db.session.commit()
    inactive = create_user(f"left-{uuid.uuid4().hex[:8]}@example.com", "Left Company", "Sales", PASSWORD)
    inactive.active = False
    db.session.commit()
    return {"own": own.id, "other": other.id, "gone": gone.id, "inactive": inactive.id}


def live_customers(db, uid=None):
    """Ids of the live customers `uid` owns (assigned or created), or of all of them."""
    stmt = sa.select(Customer.id).where(Customer.deleted_at.is_(None))
    if uid is not None:
        stmt = stmt.where(sa.or_(Customer.assigned_sales_id == uid, Customer.created_by_id == uid))
    return set(db.session.execute(stmt).scalars())


def owner_choices(db, uid):
    """Ids of the active users holding Sales or Manager, and `uid`."""
    stmt = sa.select(User.id).where(User.active.is_(True), User.roles.any(Role.name.in_(["Sales", "Manager"])))
    return set(db.session.execute(stmt).scalars()) | {uid}


def expected_customers(db, users, role):
    return live_customers(db, users[role].id if role.startswith("sales") else None)


def counted(count, n):
    """True when `count` is the total answered for n rows: exact up to app/pagination.py's bound, beyond it only "more"."""
    return count == n if n <= COUNT_EXACT_LIMIT else count > COUNT_EXACT_LIMIT


def expected_owners(db, users, role):
    return {users[role].id} if role.startswith("sales") else owner_choices(db, users[role].id)


def _info_values(client, auth, role, resource, column):
    """{key: (count, every id offered)} for add_columns and edit_columns, read page by page."""
    out = {}
    for key in ("add_columns", "edit_columns"):
        offered, page, count, values = set(), 0, None, None
        while values is None or len(values) == 100:  # a short page is the last one
            resp = client.get(INFO.format(resource=resource, column=column, key=key, page=page), headers=auth(role))
            assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
            field = next(f for f in resp.json[key] if f["name"] == column)
            count, values = field["count"], [v["id"] for v in field["values"]]
            assert not set(values) & offered, "pages in a stable order: no id twice"
            offered |= set(values)
            page += 1
        out[key] = (count, offered)
    return out


@pytest.mark.parametrize("role", ROLES)
def test_the_issues_query_lists_only_customers_in_scope(client, auth, users, db, book, role):
    resp = client.get(ISSUE_QUERY, headers=auth(role))
    assert resp.status_code == 200
    field = resp.json["add_columns"][0]
    expected = expected_customers(db, users, role)
    assert counted(field["count"], len(expected))
    offered = {v["id"] for v in field["values"]}
    assert offered <= expected and len(offered) == min(100, len(expected))
    assert book["gone"] not in offered
    if role == "sales":
        assert book["other"] not in offered


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource", ["meeting", "task", "approval"])
def test_info_customer_choices_follow_the_scope_rule(client, auth, users, db, book, role, resource):
    expected = expected_customers(db, users, role)
    for count, offered in _info_values(client, auth, role, resource, "customer").values():
        assert counted(count, len(expected))
        assert offered == expected and book["gone"] not in offered
    if role == "sales2":
        assert book["own"] not in offered and book["other"] in offered


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("resource,column", [("customer", "assigned_sales"), ("meeting", "sales"), ("task", "user")])
def test_info_user_choices_offer_sales_only_themself(client, auth, users, db, book, role, resource, column):
    expected = expected_owners(db, users, role)
    for count, offered in _info_values(client, auth, role, resource, column).values():
        assert offered == expected and count == len(expected)
        assert book["inactive"] not in offered
        if not role.startswith("sales"):
            assert users["compliance"].id not in offered or role == "compliance"


def _options(client, html, name):
    """Every id the related-field input `name` in `html` offers: its scoped autocomplete (views/autocomplete.py), page by page.

    The screens no longer list the choices in a <select>; the input names the endpoint it
    asks as the user types, and an empty query pages through everything it would offer.
    """
    field = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)
    assert field, f"no input {name}"
    source = re.search(r'data-autocomplete="([^"]+)"', field.group(0))
    assert source, f"input {name} names no autocomplete endpoint"
    url = source.group(1).replace("&amp;", "&")
    offered, page = set(), 1
    while True:
        resp = client.get(f"{url}&limit=100&page={page}")
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        values = [row["value"] for row in resp.json["data"]]
        assert not set(values) & offered, "pages in a stable order: no id twice"
        offered |= set(values)
        if len(values) < 100:
            return offered
        page += 1


def _as_ids(values):
    return {int(v) if v.isdigit() else v for v in values}


@pytest.mark.parametrize("role", ["sales", "manager", "admin"])
def test_screen_add_and_edit_forms_offer_only_choices_in_scope(browser_login, make, users, db, book, role):
    c = browser_login(role)
    meeting = make.meeting("sales")
    task = make.task("sales")
    forms = [
        (f"/meetingview/edit/{meeting.id}", {"customer", "sales"}),
        (f"/taskview/edit/{task.id}", {"customer", "user"}),
        ("/customerview/edit/" + book["own"], {"assigned_sales"}),
    ]
    if role != "manager":  # Managers edit but add nothing
        forms += [
            ("/meetingview/add", {"customer", "sales"}),
            ("/taskview/add", {"customer", "user"}),
            ("/approvalrequestview/add", {"customer"}),
            ("/customerview/add", {"assigned_sales"}),
        ]
    for path, selects in forms:
        resp = c.get(path)
        assert resp.status_code == 200, path
        html = resp.get_data(as_text=True)
        for name in selects:
            offered = _as_ids(_options(c, html, name))
            if name == "customer":
                assert offered == expected_customers(db, users, role), (path, name)
                assert book["gone"] not in offered
            else:
                assert offered == expected_owners(db, users, role), (path, name)


def _search_widgets(html):
    """The search form's widgets FAB's list page hands its filter script ({column: html})."""
    decoder = json.JSONDecoder()
    at = html.index("'#filter_form',", html.index("new AdminFilters(")) + len("'#filter_form',")
    _labels, at = decoder.raw_decode(html, html.index("{", at))
    widgets, _ = decoder.raw_decode(html, html.index("{", at))
    return widgets


@pytest.mark.parametrize("role", ["sales", "manager"])
def test_list_search_widgets_offer_only_choices_in_scope(browser_login, users, db, book, role):
    """FAB's list page carries the search form's inputs (the filter widgets): their choices scoped too."""
    c = browser_login(role)
    widgets = _search_widgets(c.get("/meetingview/list/").get_data(as_text=True))
    assert _as_ids(_options(c, widgets["customer"], "customer")) == expected_customers(db, users, role)
    users_offered = _as_ids(_options(c, widgets["sales"], "sales"))
    if role == "sales":
        assert users_offered == {users["sales"].id}
    else:  # filtering history: every user, the inactive one too
        assert {users["sales"].id, users["sales2"].id, book["inactive"]} <= users_offered
    for path in ("/taskview/list/", "/approvalrequestview/list/"):
        offered = _as_ids(_options(c, _search_widgets(c.get(path).get_data(as_text=True))["customer"], "customer"))
        assert offered == expected_customers(db, users, role), path


def test_screen_refuses_a_choice_it_did_not_offer(browser_login, users, db, book):
    """A Sales user posting another rep's customer or user id gets the form back; nothing is written."""
    sales = browser_login("sales")
    for data in (
        {"title": "他社顧客のタスク", "customer": book["other"], "user": str(users["sales"].id), "status": "TODO", "priority": "LOW"},
        {"title": "削除済み顧客のタスク", "customer": book["gone"], "user": str(users["sales"].id), "status": "TODO", "priority": "LOW"},
        {"title": "他人に振るタスク", "customer": book["own"], "user": str(users["sales2"].id), "status": "TODO", "priority": "LOW"},
    ):
        resp = sales.post("/taskview/add", data=data)
        assert resp.status_code == 200  # the form again, with the field's error
        db.session.expire_all()
        assert db.session.query(Task).filter_by(title=data["title"]).count() == 0


def test_info_descriptions_are_empty_not_the_catalogue_header(client, auth):
    """gettext("") answers the catalogue's header; an absent description must stay empty (item 12)."""
    for resource in ("customer", "meeting", "task", "approval"):
        for lang in ("ja", "en"):
            resp = client.get(f"/api/v1/{resource}/_info?_l_={lang}", headers={**auth("manager"), "Accept-Language": lang})
            assert resp.status_code == 200
            for key in ("add_columns", "edit_columns"):
                for field in resp.json[key]:
                    assert "Project-Id-Version" not in field["description"] and "Content-Type" not in field["description"]
                    assert field["description"] == ""
                    assert field["label"] and "Content-Type" not in field["label"]
        listing = client.get(f"/api/v1/{resource}/?q=(page_size:1)", headers=auth("manager")).json
        assert "Content-Type" not in str(listing.get("description_columns", {}))


# ---------------------------------------------------------------- creator and assignee apart

OWNED = {
    # model name: (/api path, /api/v1 path, screen route, title field)
    "task": ("/api/tasks", "/api/v1/task/", "/taskview", "title"),
    "meeting": ("/api/meetings", "/api/v1/meeting/", "/meetingview", "title"),
}


def _created_for_another(db, users, kind, creator, assignee):
    """A task or meeting created by `creator` and assigned to `assignee` (the factories make the two the same user)."""
    from datetime import timedelta

    from app.context import acting_as
    from models import Meeting

    title = f"代理登録{uuid.uuid4().hex[:8]}"
    customer = Customer(name=f"株式会社{title}", assigned_sales_id=users[assignee].id, created_by_id=users[creator].id)
    db.session.add(customer)
    db.session.flush()
    if kind == "task":
        row = Task(title=title, user_id=users[assignee].id, created_by_id=users[creator].id, customer_id=customer.id,
                   due_date=utcnow() + timedelta(days=1))
    else:
        row = Meeting(title=title, sales_id=users[assignee].id, created_by_id=users[creator].id, customer_id=customer.id,
                      scheduled_at=utcnow() + timedelta(days=1))
    with acting_as(users[creator]):
        db.session.add(row)
        db.session.commit()
    return row.id, title, customer.id


@pytest.mark.parametrize("kind", list(OWNED))
def test_creator_and_assignee_both_see_a_record_and_nobody_else(client, auth, browser_login, users, db, new_user, redis_cache, kind):
    """Created by one rep for another: both see it from every entry point (cache on), a third rep from none."""
    from tests.conftest import PASSWORD

    api, v1, screen, field = OWNED[kind]
    record_id, title, customer_id = _created_for_another(db, users, kind, "sales", "sales2")
    third = new_user("Sales")
    login = client.post("/api/auth/login", json={"email": third.email, "password": PASSWORD})
    assert login.status_code == 200, login.get_data(as_text=True)
    headers = {"sales": auth("sales"), "sales2": auth("sales2"), "third": {"Authorization": f"Bearer {login.json['token']}"}}
    for key, sees in (("sales", True), ("sales2", True), ("third", False)):
        for _ in range(2):  # the second read is a cache hit
            listed = client.get(f"{api}?limit=100&customerId={customer_id}", headers=headers[key])
            assert listed.status_code == 200, listed.get_data(as_text=True)
            assert (title in json.dumps(listed.json, ensure_ascii=False)) is sees, (key, api)
            assert client.get(f"{api}/{record_id}", headers=headers[key]).status_code == (200 if sees else 404), key
        v1_list = client.get(v1 + "?q=(page_size:100,filters:!((col:title,opr:eq,value:'" + title + "')))", headers=headers[key])
        assert v1_list.status_code == 200, v1_list.get_data(as_text=True)
        assert v1_list.json["count"] == (1 if sees else 0), (key, v1)
        assert client.get(f"{v1}{record_id}", headers=headers[key]).status_code == (200 if sees else 404), key
    for key in ("sales", "sales2"):
        page = browser_login(key)
        html = page.get(f"{screen}/list/?_flt_0_{field}={title}").get_data(as_text=True)
        assert title in html, (key, screen)
        assert page.get(f"{screen}/show/{record_id}").status_code == 200
