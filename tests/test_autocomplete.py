"""The related-field autocomplete (views/autocomplete.py, app/choices.py) honours the one scope rule.

A Sales user is offered only their own live customers and only themself as an owner, by
search and by id alike; soft-deleted customers are offered to nobody; bad parameters answer
400 naming the field; a form posting an id the caller may not pick is refused.
"""

import uuid

import pytest

from models import Task
from models.base import utcnow

URL = "/crm/autocomplete/{kind}"


@pytest.fixture()
def names(make, db):
    """A customer for each rep and a soft-deleted one, all sharing a searchable tag."""
    tag = f"補完{uuid.uuid4().hex[:6]}"
    own = make.customer("sales", name=f"{tag}自社")
    other = make.customer("sales2", name=f"{tag}他社")
    gone = make.customer("sales", name=f"{tag}削除済")
    gone.deleted_at = utcnow()
    db.session.commit()
    return {"tag": tag, "own": own.id, "other": other.id, "gone": gone.id}


def _values(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return {row["value"] for row in resp.json["data"]}


@pytest.mark.parametrize("purpose", ["assign", "filter"])
def test_sales_never_gets_another_reps_customers(browser_login, names, purpose):
    c = browser_login("sales")
    found = _values(c.get(URL.format(kind="customer"), query_string={"q": names["tag"], "purpose": purpose}))
    assert found == {names["own"]}
    assert _values(c.get(URL.format(kind="customer"), query_string={"id": names["other"], "purpose": purpose})) == set()
    # sales2 sees theirs and not the first rep's.
    c2 = browser_login("sales2")
    assert _values(c2.get(URL.format(kind="customer"), query_string={"q": names["tag"], "purpose": purpose})) == {names["other"]}


@pytest.mark.parametrize("role", ["manager", "compliance", "admin"])
def test_soft_deleted_customers_are_offered_to_nobody(browser_login, names, role):
    c = browser_login(role)
    found = _values(c.get(URL.format(kind="customer"), query_string={"q": names["tag"]}))
    assert found == {names["own"], names["other"]}
    assert _values(c.get(URL.format(kind="customer"), query_string={"id": names["gone"]})) == set()


def test_sales_is_offered_only_themself_as_assignee(browser_login, users):
    c = browser_login("sales")
    assert _values(c.get(URL.format(kind="user"))) == {str(users["sales"].id)}
    assert _values(c.get(URL.format(kind="user"), query_string={"id": users["sales2"].id})) == set()
    assert _values(c.get(URL.format(kind="user"), query_string={"q": "User", "purpose": "filter"})) == {str(users["sales"].id)}
    manager = browser_login("manager")
    for key in ("sales", "sales2"):
        offered = _values(manager.get(URL.format(kind="user"), query_string={"q": users[key].email}))
        assert offered == {str(users[key].id)}


def test_labels_are_names(browser_login, names):
    resp = browser_login("sales").get(URL.format(kind="customer"), query_string={"id": names["own"]})
    assert resp.json["data"] == [{"value": names["own"], "text": f"{names['tag']}自社"}]


@pytest.mark.parametrize(
    "query,field",
    [
        ({"purpose": "steal"}, "purpose"),
        ({"limit": "x"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"page": "-1"}, "page"),
        ({"q": "x" * 101}, "q"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_bad_params_answer_400_naming_the_field(browser_login, query, field):
    resp = browser_login("sales").get(URL.format(kind="customer"), query_string=query)
    assert resp.status_code == 400
    assert field in resp.json["details"] and field in resp.json["message"]


def test_unknown_kind_is_400_and_anonymous_is_refused(browser_login, client):
    resp = browser_login("sales").get(URL.format(kind="audit"))
    assert resp.status_code == 400 and "kind" in resp.json["details"]
    assert browser_login("sales").get(URL.format(kind="customer"), query_string={"id": "not-a-uuid"}).json["data"] == []
    assert client.get(URL.format(kind="customer")).status_code in (401, 302)


def test_like_wildcards_are_text(browser_login, make):
    tag = uuid.uuid4().hex[:6]
    make.customer("sales", name=f"百%{tag}")
    make.customer("sales", name=f"百x{tag}")
    found = browser_login("sales").get(URL.format(kind="customer"), query_string={"q": f"%{tag}"}).json["data"]
    assert [row["text"] for row in found] == [f"百%{tag}"]


def test_forms_take_an_id_in_scope_and_refuse_others(browser_login, names, users, db):
    c = browser_login("sales")
    page = c.get("/taskview/add").get_data(as_text=True)
    assert 'name="customer"' in page and "data-autocomplete=" in page and "<option" not in page.split('name="customer"')[1][:200]
    title = f"補完タスク{uuid.uuid4().hex[:6]}"
    base = {"title": title, "user": str(users["sales"].id), "status": "TODO", "priority": "LOW"}
    for customer in (names["other"], names["gone"], "nonsense"):
        resp = c.post("/taskview/add", data={**base, "customer": customer})
        assert resp.status_code == 200  # the form again, with the field's error
    db.session.expire_all()
    assert db.session.query(Task).filter_by(title=title).count() == 0
    resp = c.post("/taskview/add", data={**base, "customer": names["own"]})
    assert resp.status_code == 302
    db.session.expire_all()
    task = db.session.query(Task).filter_by(title=title).one()
    assert task.customer_id == names["own"]
    # The edit form shows the chosen customer's id and name on its input.
    edit = c.get(f"/taskview/edit/{task.id}").get_data(as_text=True)
    assert f'value="{names["own"]}"' in edit and f'data-label="{names["tag"]}自社"' in edit
