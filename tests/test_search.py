"""Global search (app/services/search.py, views/search.py): grouped, scoped, bounded, literal, 400 for bad input."""

from datetime import timedelta

import pytest
import sqlalchemy as sa

from models.base import utcnow

from tests.helpers import mine_and_theirs, unique_tag


def tag():
    """A token of this module's own (tests/helpers.unique_tag)."""
    return unique_tag("q")


def suggest(client, q, **args):
    """GET /search/suggest as `client`; return (status, json)."""
    resp = client.get("/search/suggest", query_string={"q": q, **args})
    return resp.status_code, resp.get_json()


def ids(data, kind):
    """The ids of group `kind` in a suggest answer (absent group: empty)."""
    return [item["id"] for group in data["groups"] if group["kind"] == kind for item in group["items"]]


def test_customers_by_name_email_and_phone_only_in_scope(browser_login, make):
    t = tag()
    by_name = make.customer("sales", name=f"株式会社{t}")
    by_email = make.customer("sales", email=f"{t}@example.jp")
    by_phone = make.customer("sales", name="電話で探す", phone=f"03-{t}")
    other = make.customer("sales2", name=f"他社{t}")
    status, data = suggest(browser_login("sales"), t)
    assert status == 200, data
    assert set(ids(data, "customers")) == {by_name.id, by_email.id, by_phone.id}
    assert other.id not in ids(data, "customers")
    # The Manager sees every rep's customers.
    _status, data = suggest(browser_login("manager"), t)
    assert set(ids(data, "customers")) == {by_name.id, by_email.id, by_phone.id, other.id}
    # Each hit opens the customer's screen.
    urls = {item["id"]: item["url"] for group in data["groups"] for item in group["items"]}
    assert urls[other.id] == f"/customerview/show/{other.id}"


def test_meetings_and_tasks_by_title_grouped_and_scoped(browser_login, make):
    t = tag()
    mine_meeting, theirs_meeting = mine_and_theirs(make, "meeting", title=f"提案{t}")
    mine_task, theirs_task = mine_and_theirs(make, "task", title=f"資料送付{t}")
    _status, data = suggest(browser_login("sales"), t.upper())  # case does not matter
    assert [group["kind"] for group in data["groups"]] == ["customers", "meetings", "tasks"]
    assert ids(data, "meetings") == [mine_meeting.id]
    assert ids(data, "tasks") == [mine_task.id]
    assert ids(data, "customers") == []
    _status, data = suggest(browser_login("sales2"), t)
    assert ids(data, "meetings") == [theirs_meeting.id] and ids(data, "tasks") == [theirs_task.id]
    _status, data = suggest(browser_login("compliance"), t)
    assert set(ids(data, "meetings")) == {mine_meeting.id, theirs_meeting.id}
    assert set(ids(data, "tasks")) == {mine_task.id, theirs_task.id}
    meeting = next(item for group in data["groups"] for item in group["items"] if item["id"] == mine_meeting.id)
    assert meeting["url"] == f"/meetingview/show/{mine_meeting.id}"
    assert meeting["detail"]  # the customer's name
    assert meeting["when"]  # the date, in the display time zone


def test_soft_deleted_customers_and_their_records_are_left_out(browser_login, make, db):
    from app.services.records import soft_delete_customer
    from models.customer import Customer

    t = tag()
    gone = make.customer("sales", name=f"削除済{t}")
    meeting = make.meeting("sales", customer=gone, title=f"面談{t}")
    task = make.task("sales", customer=gone, title=f"電話{t}")
    loose = make.task("sales", title=f"顧客なし{t}")  # a task without a customer is still found
    row = db.session.get(Customer, gone.id)
    soft_delete_customer(row)
    db.session.commit()
    for key in ("sales", "manager", "admin"):
        _status, data = suggest(browser_login(key), t)
        assert ids(data, "customers") == [] and ids(data, "meetings") == [], key
        assert ids(data, "tasks") == [loose.id], key
    assert meeting.id and task.id


@pytest.mark.parametrize("wildcard", ["%", "_", "\\"])
def test_like_wildcards_are_literal(browser_login, make, wildcard):
    t = tag()
    literal = make.customer("sales", name=f"{t}1{wildcard}2")
    make.customer("sales", name=f"{t}1x2")
    make.customer("sales", name=f"{t}1xx2")
    _status, data = suggest(browser_login("sales"), f"{t}1{wildcard}2")
    assert ids(data, "customers") == [literal.id]


def test_results_are_bounded_and_say_there_are_more(browser_login, make):
    t = tag()
    for i in range(4):
        make.task("sales", title=f"{t} 件{i}")
    client = browser_login("sales")
    _status, data = suggest(client, t, limit=3)
    tasks = next(group for group in data["groups"] if group["kind"] == "tasks")
    assert len(tasks["items"]) == 3 and tasks["more"] is True
    _status, data = suggest(client, t, limit=4)
    tasks = next(group for group in data["groups"] if group["kind"] == "tasks")
    assert len(tasks["items"]) == 4 and tasks["more"] is False


def test_open_tasks_come_before_finished_ones(browser_login, make):
    t = tag()
    done = make.task("sales", title=f"{t} 済", status="COMPLETED", due_date=utcnow() - timedelta(days=9))
    later = make.task("sales", title=f"{t} 後", due_date=utcnow() + timedelta(days=5))
    soon = make.task("sales", title=f"{t} 先", due_date=utcnow() + timedelta(days=1))
    _status, data = suggest(browser_login("sales"), t)
    assert ids(data, "tasks") == [soon.id, later.id, done.id]


@pytest.mark.parametrize(
    "args, field",
    [
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({}, "q"),
        ({"q": "x" * 101}, "q"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "abc", "limit": "many"}, "limit"),
        ({"q": "abc", "limit": "0"}, "limit"),
        ({"q": "abc", "limit": "51"}, "limit"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(browser_login, args, field):
    resp = browser_login("sales").get("/search/suggest", query_string=args)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert field in body["details"], body
    assert body["error"] == "Bad Request" and body["message"]


def test_the_results_page_lists_the_groups_and_refuses_bad_input(browser_login, make):
    t = tag()
    customer = make.customer("sales", name=f"結果<b>{t}</b>")
    task = make.task("sales", title=f"結果タスク{t}")
    hidden = make.customer("sales2", name=f"他人{t}")
    client = browser_login("sales")
    resp = client.get("/search/", query_string={"q": t})
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert f'href="/customerview/show/{customer.id}"' in html
    assert f'href="/taskview/show/{task.id}"' in html
    assert hidden.id not in html and "他人" not in html
    assert "<b>" + t not in html  # names are escaped
    resp = client.get("/search/", query_string={"q": ""})
    assert resp.status_code == 400
    assert 'class="alert alert-danger crm-search-error"' in resp.get_data(as_text=True)


def test_signed_out_callers_get_the_login_page_or_401(client):
    resp = client.get("/search/", query_string={"q": "abc"})
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    resp = client.get("/search/suggest", query_string={"q": "abc"})
    assert resp.status_code == 401


def test_every_page_has_the_navbar_search_box(browser_login):
    html = browser_login("sales").get("/customerview/list/").get_data(as_text=True)
    assert 'class="navbar-form crm-search-form"' in html and 'data-suggest-url="/search/suggest"' in html


def test_the_same_search_on_sqlite(sqlite_app, sqlite_users):
    """The embedded default: the same statements find the same rows (search_text is a virtual column there)."""
    from app.extensions import db
    from app.services import search as service
    from models.customer import Customer
    from models.meeting import Meeting
    from models.task import Task

    t = tag()
    sales, sales2 = sqlite_users["sales"], sqlite_users["sales2"]
    with sqlite_app.app_context():
        now = utcnow()
        mine = Customer(name=f"{t}%商事", email=f"{t}@example.jp", phone="03-1", assigned_sales_id=sales.id, created_by_id=sales.id)
        near = Customer(name=f"{t}x商事", assigned_sales_id=sales.id, created_by_id=sales.id)
        theirs = Customer(name=f"{t}%物産", assigned_sales_id=sales2.id, created_by_id=sales2.id)
        gone = Customer(name=f"{t}%削除", assigned_sales_id=sales.id, created_by_id=sales.id, deleted_at=now)
        db.session.add_all([mine, near, theirs, gone])
        db.session.flush()
        meeting = Meeting(customer_id=mine.id, sales_id=sales.id, created_by_id=sales.id, title=f"面談 {t.upper()}", scheduled_at=now)
        task = Task(user_id=sales.id, created_by_id=sales.id, title=f"電話 {t}", due_date=now)
        other_task = Task(user_id=sales2.id, created_by_id=sales2.id, title=f"電話 {t}", due_date=now)
        db.session.add_all([meeting, task, other_task])
        db.session.commit()
        found = {group.kind: [hit.id for hit in group.hits] for group in service.search(sales, f"{t}%", 10)}
        # CUSTOMER_CREATED made each live customer of Sales a first-contact task named after it.
        first_contact = {row.id for row in db.session.execute(sa.select(Task.id).where(Task.customer_id.in_([mine.id, near.id])))}
        found = {group.kind: [hit.id for hit in group.hits] for group in service.search(sales, f"{t}%", 10)}
        assert found["customers"] == [mine.id] and found["meetings"] == []
        assert set(found["tasks"]) < first_contact
        found = {group.kind: [hit.id for hit in group.hits] for group in service.search(sales, t, 10)}
        assert sorted(found["customers"]) == sorted([mine.id, near.id])
        assert found["meetings"] == [meeting.id] and set(found["tasks"]) == first_contact | {task.id}
        assert other_task.id not in found["tasks"]
        assert db.session.execute(sa.select(sa.func.count()).select_from(Customer).where(Customer.name.like(f"{t}%"))).scalar() == 4
