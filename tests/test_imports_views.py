"""The import screen (views/imports.py): upload through the form (CSRF), mapping, preview with errors by column, start, report, undo."""

import io
import re

import sqlalchemy as sa

from models import Customer
from tests.helpers import unique_tag


def _csv(rows):
    return "\n".join(",".join(r) for r in rows).encode("utf-8")


def test_the_screen_steps_through_an_import(app, browser_login, db, users, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_RUNNER", "thread")
    client = browser_login("sales")
    page = client.get("/imports/")
    assert page.status_code == 200 and 'name="file"' in page.get_data(as_text=True)
    tag = unique_tag("scr")
    data = {"kind": "customers", "dedupe": "skip",
            "file": (io.BytesIO(_csv([["顧客名", "メール"], [f"{tag} 一", f"{tag}@example.jp"], ["", "bad"]])), "c.csv")}
    # Without the CSRF token the upload is refused and nothing is stored.
    refused = client.post("/imports/upload", data=dict(data, file=(io.BytesIO(b"x"), "c.csv")), csrf=False,
                          content_type="multipart/form-data")
    assert refused.status_code == 400
    resp = client.post("/imports/upload", data=data, content_type="multipart/form-data")
    assert resp.status_code == 302
    show_url = resp.headers["Location"]
    page = client.get(show_url).get_data(as_text=True)
    assert 'id="map-name"' in page and re.search(r'<option value="0" selected>顧客名</option>', page)
    assert "crm-import-cell-error" in page and "name is required" in page
    import_id = show_url.rstrip("/").split("/")[-1]
    assert client.post(f"/imports/{import_id}/mapping", data={"map-email": "1"}).status_code == 400  # name left out
    assert client.post(f"/imports/{import_id}/mapping", data={"map-name": "0", "map-email": "1", "dedupe": "skip"}).status_code == 302
    assert client.post(f"/imports/{import_id}/start").status_code == 302
    import time

    deadline = time.monotonic() + 60
    state = client.get(f"/imports/{import_id}/status").json
    while state["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        state = client.get(f"/imports/{import_id}/status").json
    assert state["status"] == "done" and state["counts"]["created"] == 1 and state["counts"]["rejected"] == 1
    report = client.get(f"/imports/{import_id}/report.csv").get_data(as_text=True)
    assert "rejected" in report and "name is required" in report
    assert browser_login("sales2").get(f"/imports/{import_id}/").status_code == 404
    assert client.post(f"/imports/{import_id}/undo").status_code == 302
    db.session.rollback()
    (made,) = db.session.execute(sa.select(Customer).where(Customer.name == f"{tag} 一")).scalars().all()
    assert made.deleted_at is not None


def test_a_bad_upload_answers_a_4xx_page_naming_the_problem(browser_login):
    client = browser_login("sales")
    resp = client.post("/imports/upload", data={"kind": "customers", "file": (io.BytesIO("顧客名\nx\n".encode("utf-16")), "c.csv")},
                       content_type="multipart/form-data")
    assert resp.status_code == 400 and "UTF-8 or Shift_JIS" in resp.get_data(as_text=True)
    assert browser_login("compliance").get("/imports/").status_code in (302, 403)


def test_an_import_left_running_by_a_stopped_worker_is_started_again_from_its_page(app, browser_login, db, users, monkeypatch):
    import time

    from app.services import imports
    from models import Import

    monkeypatch.setitem(app.config, "IMPORT_RUNNER", "thread")
    tag = unique_tag("res")
    from flask_appbuilder.security.sqla.models import User

    owner = db.session.get(User, users["sales"].id)
    imp = imports.create_import(owner, "customers", "r.csv", _csv([["顧客名"], [f"{tag} 一"], [f"{tag} 二"]]))
    imp.status = "running"  # as a worker killed before its first batch leaves it
    db.session.commit()
    client = browser_login("sales")
    page = client.get(f"/imports/{imp.id}/").get_data(as_text=True)
    assert "crm-import-progress" in page and "crm-import-resume" in page
    assert client.post(f"/imports/{imp.id}/start").status_code == 302
    deadline = time.monotonic() + 60
    state = client.get(f"/imports/{imp.id}/status").json
    while state["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        state = client.get(f"/imports/{imp.id}/status").json
    assert state["status"] == "done" and state["counts"]["created"] == 2
    db.session.rollback()
    assert db.session.get(Import, imp.id).done == 2
