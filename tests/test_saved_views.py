"""Saved views (app/services/saved_views.py, views/saved_views.py): save a list's filters and sort, open, delete; only one's own."""


import pytest
import sqlalchemy as sa

from tests.helpers import unique_tag

CONTAINS = 2  # FAB's "contains" filter of a string column: `_flt_2_<column>`


def tag():
    """A token of this module's own (tests/helpers.unique_tag)."""
    return unique_tag("v")


def saved(db, name):
    """The saved_views rows named `name` as (user_id, screen, query)."""
    from models.saved_view import SavedView

    db.session.rollback()  # see the other requests' commits
    return db.session.execute(sa.select(SavedView.user_id, SavedView.screen, SavedView.query).where(SavedView.name == name)).all()


def save(client, name, query, screen="CustomerView", **kw):
    """POST the save form as the list page sends it."""
    return client.post("/savedviews/save", data={"screen": screen, "name": name, "query": query}, **kw)


def test_save_keeps_the_filters_and_sort_then_opens_the_list(browser_login, users, db):
    name = tag()
    query = f"_flt_{CONTAINS}_name=abc&_oc_CustomerView=name&_od_CustomerView=asc&page_CustomerView=3&evil=1"
    resp = save(browser_login("sales"), name, query)
    assert resp.status_code == 302
    kept = f"_flt_{CONTAINS}_name=abc&_oc_CustomerView=name&_od_CustomerView=asc"
    assert resp.headers["Location"] == f"/customerview/list/?{kept}"
    # The page number and unknown arguments are dropped; the order is stable.
    assert saved(db, name) == [(users["sales"].id, "CustomerView", kept)]


def test_the_list_dropdown_and_the_menu_page_show_only_ones_own(browser_login, make):
    mine, theirs = tag(), tag()
    assert save(browser_login("sales"), mine, f"_flt_{CONTAINS}_name=x").status_code == 302
    assert save(browser_login("sales2"), theirs, f"_flt_{CONTAINS}_name=y").status_code == 302
    html = browser_login("sales").get("/customerview/list/").get_data(as_text=True)
    assert f'href="/customerview/list/?_flt_{CONTAINS}_name=x"' in html and mine in html
    assert theirs not in html
    page = browser_login("sales").get("/savedviews/").get_data(as_text=True)
    assert mine in page and theirs not in page
    # Another list's dropdown does not offer a customer view.
    assert mine not in browser_login("sales").get("/taskview/list/").get_data(as_text=True)


def test_saving_under_a_used_name_replaces_that_view(browser_login, db):
    name = tag()
    client = browser_login("sales")
    save(client, name, f"_flt_{CONTAINS}_name=first")
    save(client, name, f"_flt_{CONTAINS}_name=second")
    assert [row.query for row in saved(db, name)] == [f"_flt_{CONTAINS}_name=second"]


def test_delete_own_with_post_and_csrf_another_users_is_404(browser_login, db):
    from models.saved_view import SavedView

    name = tag()
    save(browser_login("sales"), name, "")
    view_id = db.session.execute(sa.select(SavedView.id).where(SavedView.name == name)).scalar_one()
    # Another rep cannot delete it (not found, as for any record outside one's scope).
    assert browser_login("sales2").post(f"/savedviews/delete/{view_id}").status_code == 404
    # Without the form's token nothing is deleted; a GET is not a delete.
    assert browser_login("sales").post(f"/savedviews/delete/{view_id}", csrf=False).status_code == 400
    assert browser_login("sales").get(f"/savedviews/delete/{view_id}").status_code == 405
    assert len(saved(db, name)) == 1
    resp = browser_login("sales").post(f"/savedviews/delete/{view_id}", data={"next": "/customerview/list/"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/customerview/list/"
    assert saved(db, name) == []
    # An outside `next` is not followed.
    save(browser_login("sales"), name, "")
    view_id = db.session.execute(sa.select(SavedView.id).where(SavedView.name == name)).scalar_one()
    resp = browser_login("sales").post(f"/savedviews/delete/{view_id}", data={"next": "//evil.example/"})
    assert resp.status_code == 302 and "evil" not in resp.headers["Location"]


def test_save_without_the_csrf_token_saves_nothing(browser_login, db):
    name = tag()
    assert save(browser_login("sales"), name, "", csrf=False).status_code == 400
    assert saved(db, name) == []


@pytest.mark.parametrize(
    "form, field",
    [
        ({"screen": "CustomerView", "name": "   ", "query": ""}, "name"),
        ({"screen": "CustomerView", "name": "n" * 101, "query": ""}, "name"),
        ({"screen": "CustomerView", "query": ""}, "name"),
        ({"screen": "UserDBModelView", "name": "x", "query": ""}, "screen"),
        ({"name": "x", "query": ""}, "screen"),
        ({"screen": "CustomerView", "name": "x", "query": "_flt_2_name=" + "a" * 2100}, "query"),
        ({"screen": "CustomerView", "name": "x\x00", "query": ""}, "name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(browser_login, form, field):
    resp = browser_login("sales").post("/savedviews/save", data=form)
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert f'class="alert alert-danger crm-saved-views-error" role="alert" data-field="{field}"' in html


def test_signed_out_callers_are_sent_to_log_in(client):
    resp = client.get("/savedviews/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_the_menu_offers_saved_views_to_every_role(browser_login):
    for key in ("sales", "manager", "compliance", "admin"):
        # A page without the list tools: the link is the menu's.
        html = browser_login(key).get("/search/", query_string={"q": "x"}).get_data(as_text=True)
        assert '<a tabindex="-1" href="/savedviews/">' in html, key
