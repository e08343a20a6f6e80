"""Imports (app/services/imports.py, /api/imports, workers/imports.py): each kind and encoding, the mapping
suggestions, each dedupe mode, bad files refused with nothing written, a killed job resumed without
duplicates, undo, and the scope rules (a Sales user's rows are their own; another rep's customer is refused)."""

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

from models import AuditLog, Customer, Import, ImportRow, Meeting, Task
from tests.helpers import unique_tag

ROOT = Path(__file__).resolve().parent.parent


# ---- helpers -------------------------------------------------------------------------------


def csv_bytes(rows, encoding="utf-8"):
    """`rows` (header first) as a CSV file in `encoding` (utf-8-sig writes the BOM)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue().encode(encoding)


def xlsx_bytes(rows, formula_at=None):
    """`rows` as an .xlsx workbook; `formula_at` ("B2") holds a real formula cell."""
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    if formula_at:
        sheet[formula_at] = "=1+2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rewrite_sheet(data, change):
    """The workbook `data` with its first sheet's XML passed through `change(xml) -> xml`."""
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                body = change(body.decode("utf-8")).encode("utf-8")
            target.writestr(info.filename, body)
    return out.getvalue()


@pytest.fixture()
def jobs(app, monkeypatch):
    """Import jobs on an RQ queue of this test; call it to run what is queued (a burst worker, in this process)."""
    import redis
    from rq import Queue, SimpleWorker

    from workers import runtime

    name = f"crm-imports-{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(app.config, "RQ_QUEUE", name)
    monkeypatch.setitem(app.config, "IMPORT_RUNNER", "rq")
    runtime.set_app(app)
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(name, connection=conn)

    def work():
        assert queue.count >= 1, "no import job was queued"
        SimpleWorker([queue], connection=conn).work(burst=True)

    work.queue = queue
    yield work
    queue.delete(delete_jobs=True)


def upload(client, headers, data, kind="customers", filename="customers.csv", **form):
    """POST the file to /api/imports (multipart)."""
    fields = {"file": (io.BytesIO(data), filename), "kind": kind}
    fields.update({k: json.dumps(v) if k == "mapping" else v for k, v in form.items()})
    return client.post("/api/imports", data=fields, headers=headers, content_type="multipart/form-data")


def run_import(client, headers, jobs, data, **kw):
    """Upload, start and run an import; return its final answer."""
    resp = upload(client, headers, data, **kw)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    import_id = resp.json["id"]
    started = client.post(f"/api/imports/{import_id}/start", headers=headers)
    assert started.status_code == 202, started.get_data(as_text=True)
    assert started.json["data"]["status"] == "queued"
    jobs()
    final = client.get(f"/api/imports/{import_id}", headers=headers)
    assert final.status_code == 200
    return final.json["data"]


def imports_of(db, user_id):
    db.session.rollback()
    return db.session.execute(sa.select(sa.func.count()).select_from(Import).where(Import.user_id == user_id)).scalar()


def customers_tagged(db, tag):
    db.session.rollback()
    return db.session.execute(
        sa.select(Customer).where(Customer.name.like(f"%{tag}%")).order_by(Customer.name)
    ).scalars().all()


def report_of(client, headers, import_id):
    resp = client.get(f"/api/imports/{import_id}/report.csv", headers=headers)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    text = resp.get_data(as_text=True)
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:])))


# ---- suggestions ---------------------------------------------------------------------------


def test_headers_in_japanese_and_english_are_mapped_to_fields(app):
    from app.services.imports import suggest_mapping

    ja = ["顧客名", "メールアドレス", "電話番号", "住所", "業種", "企業規模", "リスク許容度", "担当者", "備考欄"]
    assert suggest_mapping("customers", ja) == {
        "name": 0, "email": 1, "phone": 2, "address": 3, "industry": 4, "size": 5, "riskTolerance": 6,
        "assignedSalesId": 7,
    }
    en = ["Name", "E-mail", "Phone Number", "Address", "Owner"]
    assert suggest_mapping("customers", en) == {"name": 0, "email": 1, "phone": 2, "address": 3, "assignedSalesId": 4}
    # Full-width letters and a header merely containing a synonym ("会社名（正式）") still match.
    assert suggest_mapping("customers", ["会社名（正式）", "ＥＭＡＩＬ"]) == {"name": 0, "email": 1}
    assert suggest_mapping("meetings", ["顧客ID", "件名", "商談日時", "内容", "種別"]) == {
        "customerId": 0, "title": 1, "scheduledAt": 2, "description": 3, "type": 4,
    }
    assert suggest_mapping("tasks", ["タイトル", "期限", "優先度", "Customer ID"]) == {
        "title": 0, "dueDate": 1, "priority": 2, "customerId": 3,
    }


# ---- each kind and encoding ----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp932"])
def test_customers_csv_in_each_encoding_are_created_with_audit_and_first_contact_task(client, auth, db, users, jobs, encoding):
    tag = unique_tag("imp")
    rows = [["顧客名", "メール", "電話番号", "業種"],
            [f"株式会社{tag}一", f"{tag}-1@example.jp", "03-1234-5678", "製造業"],
            [f"合同会社{tag}二", f"{tag}-2@example.jp", "06-9876-5432", "小売"]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows, encoding))
    assert done["status"] == "done" and done["progress"] == "2/2" and done["counts"]["created"] == 2
    assert done["encoding"] == encoding
    made = customers_tagged(db, tag)
    assert [c.name for c in made] == sorted([f"株式会社{tag}一", f"合同会社{tag}二"])
    assert {c.assigned_sales_id for c in made} == {users["sales"].id}
    for customer in made:
        assert db.session.execute(sa.select(AuditLog).where(
            AuditLog.resource_type == "customer", AuditLog.resource_id == customer.id, AuditLog.action == "CREATE",
            AuditLog.user_id == users["sales"].id)).scalar_one()
        task = db.session.execute(sa.select(Task).where(Task.customer_id == customer.id)).scalar_one()
        assert task.title == f"初回コンタクト: {customer.name}" and task.user_id == users["sales"].id


def test_customers_xlsx_with_numbers_and_labels(client, auth, db, jobs):
    tag = unique_tag("xl")
    rows = [["Name", "Email", "Phone", "Size", "Risk Tolerance", "Investment Profile"],
            [f"{tag} Holdings", f"{tag}@example.com", 312345678, "大企業", 7, "積極的"]]
    done = run_import(client, auth("sales"), jobs, xlsx_bytes(rows), filename="list.xlsx")
    assert done["format"] == "xlsx" and done["counts"] == {"created": 1, "updated": 0, "skipped": 0, "rejected": 0}
    (customer,) = customers_tagged(db, tag)
    assert (customer.phone, customer.size.value, customer.risk_tolerance, customer.investment_profile.value) == (
        "312345678", "ENTERPRISE", 7, "aggressive")


def test_meetings_import_refuses_another_reps_customer(client, auth, db, users, make, jobs):
    mine, theirs = make.customer("sales"), make.customer("sales2")
    tag = unique_tag("mt")
    rows = [["顧客ID", "件名", "商談日時", "内容", "種別"],
            [mine.id, f"{tag} 初回訪問", "2026/12/10 10:00", "ヒアリング", "訪問"],
            [mine.email, f"{tag} 電話フォロー", "2026-12-11", "", "電話"],
            [theirs.id, f"{tag} よその顧客", "2026-12-12 15:00", "", ""]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows), kind="meetings", filename="meetings.csv")
    assert done["counts"] == {"created": 2, "updated": 0, "skipped": 0, "rejected": 1}
    db.session.rollback()
    made = db.session.execute(sa.select(Meeting).where(Meeting.title.like(f"{tag}%")).order_by(Meeting.title)).scalars().all()
    assert {m.customer_id for m in made} == {mine.id} and {m.sales_id for m in made} == {users["sales"].id}
    first = next(m for m in made if "初回訪問" in m.title)
    # A time without an offset is Tokyo's wall clock.
    assert first.scheduled_at.isoformat() == "2026-12-10T01:00:00+00:00" and first.type.value == "visit"
    report = report_of(client, auth("sales"), done["id"])
    assert [r["outcome"] for r in report] == ["created", "created", "rejected"]
    assert report[2]["row"] == "4" and report[2]["column"] == "顧客ID" and "customer not found" in report[2]["reason"]


def test_tasks_import_with_japanese_labels_and_bad_cells_named_by_column(client, auth, db, users, jobs):
    tag = unique_tag("tk")
    rows = [["タイトル", "期限", "優先度", "ステータス"],
            [f"{tag} 提案書送付", "2026-12-20", "高", "未着手"],
            [f"{tag} 期限がおかしい", "来週", "中", ""],
            [f"{tag} 優先度がおかしい", "2026-12-21", "最優先", ""]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows, "cp932"), kind="tasks", filename="tasks.csv")
    assert done["counts"]["created"] == 1 and done["counts"]["rejected"] == 2
    db.session.rollback()
    (task,) = db.session.execute(sa.select(Task).where(Task.title.like(f"{tag}%"))).scalars().all()
    assert (task.priority.value, task.status.value, task.user_id) == ("HIGH", "TODO", users["sales"].id)
    report = report_of(client, auth("sales"), done["id"])
    assert (report[1]["column"], report[2]["column"]) == ("期限", "優先度")
    assert "dueDate must be a date" in report[1]["reason"] and "priority must be one of" in report[2]["reason"]


# ---- dedupe --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,outcome", [("skip", "skipped"), ("update", "updated"), ("create", "rejected")])
def test_each_dedupe_mode_for_a_customer_whose_email_exists(client, auth, db, make, jobs, mode, outcome):
    tag = unique_tag("dd")
    existing = make.customer("sales", name=f"{tag} 旧名", email=f"{tag}@example.jp", phone="000")
    rows = [["顧客名", "メール", "電話番号"], [f"{tag} 新名", f"{tag.upper()}@Example.jp", "111"],
            [f"{tag} 別の顧客", f"{tag}-new@example.jp", ""]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows), dedupe=mode)
    assert done["dedupe"] == mode and done["counts"][outcome] == 1 and done["counts"]["created"] == 1
    db.session.rollback()
    again = db.session.get(Customer, existing.id)
    live = [c for c in customers_tagged(db, tag) if c.deleted_at is None]
    assert len(live) == 2  # never a second customer with the same address
    if mode == "update":
        assert (again.name, again.phone) == (f"{tag} 新名", "111")
        row = db.session.execute(sa.select(ImportRow).where(ImportRow.import_id == done["id"], ImportRow.row_number == 2)).scalar_one()
        assert row.record_id == existing.id and row.previous["name"] == f"{tag} 旧名" and row.previous["phone"] == "000"
    else:
        assert (again.name, again.phone) == (f"{tag} 旧名", "000")
    report = report_of(client, auth("sales"), done["id"])
    assert report[0]["outcome"] == outcome
    if mode == "create":
        assert report[0]["column"] == "メール" and "already exists" in report[0]["reason"]


def test_update_refuses_a_customer_outside_the_sales_users_scope(client, auth, db, make, jobs):
    tag = unique_tag("ds")
    theirs = make.customer("sales2", name=f"{tag} 他人", email=f"{tag}@example.jp")
    rows = [["顧客名", "メール"], [f"{tag} 乗っ取り", f"{tag}@example.jp"]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows), dedupe="update")
    assert done["counts"]["rejected"] == 1
    db.session.rollback()
    assert db.session.get(Customer, theirs.id).name == f"{tag} 他人"


# ---- scope ---------------------------------------------------------------------------------


def test_a_sales_import_is_assigned_to_the_sales_user_whatever_the_file_says(client, auth, db, users, jobs):
    tag = unique_tag("sc")
    rows = [["顧客名", "メール", "担当者"], [f"{tag} 一", f"{tag}-1@example.jp", users["sales2"].email],
            [f"{tag} 二", f"{tag}-2@example.jp", str(users["manager"].id)]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows))
    assert done["counts"]["created"] == 2
    assert {c.assigned_sales_id for c in customers_tagged(db, tag)} == {users["sales"].id}


def test_an_admin_may_import_for_a_rep_but_not_for_a_compliance_officer(client, auth, db, users, jobs):
    tag = unique_tag("ad")
    rows = [["Name", "Email", "Assignee"], [f"{tag} A", f"{tag}-a@example.jp", users["sales2"].email],
            [f"{tag} B", f"{tag}-b@example.jp", users["compliance"].email]]
    done = run_import(client, auth("admin"), jobs, csv_bytes(rows))
    assert done["counts"] == {"created": 1, "updated": 0, "skipped": 0, "rejected": 1}
    (made,) = customers_tagged(db, tag)
    assert made.assigned_sales_id == users["sales2"].id
    report = report_of(client, auth("admin"), done["id"])
    assert report[1]["column"] == "Assignee" and "cannot own" in report[1]["reason"]


def test_roles_without_add_and_other_users_imports(client, auth, users, jobs):
    data = csv_bytes([["顧客名"], ["x"]])
    assert upload(client, auth("compliance"), data).status_code == 403
    assert upload(client, auth("manager"), data).status_code == 403
    resp = upload(client, auth("sales"), data)
    assert resp.status_code == 201
    import_id = resp.json["id"]
    for path in ("", "/preview", "/report.csv"):
        assert client.get(f"/api/imports/{import_id}{path}", headers=auth("sales2")).status_code == 404
    assert client.post(f"/api/imports/{import_id}/start", headers=auth("sales2")).status_code == 404
    assert client.get(f"/api/imports/{import_id}", headers=auth("admin")).status_code == 200
    assert client.get(f"/api/imports/{import_id}").status_code == 401
    assert client.get("/api/imports/not-an-id", headers=auth("sales")).status_code == 404


# ---- preview -------------------------------------------------------------------------------


def test_preview_names_each_error_by_column_and_writes_nothing(client, auth, db):
    tag = unique_tag("pv")
    rows = [["顧客名", "メール", "リスク許容度"], [f"{tag} 良い", f"{tag}@example.jp", "5"],
            ["", "not-an-address", "11"], [f"{tag} 二", f"{tag}-2@example.jp", "３"]]
    resp = upload(client, auth("sales"), csv_bytes(rows))
    assert resp.status_code == 201
    assert resp.json["data"]["mapping"] == {"name": 0, "email": 1, "riskTolerance": 2}
    preview = client.get(f"/api/imports/{resp.json['id']}/preview", headers=auth("sales"))
    assert preview.status_code == 200
    shown = preview.json["data"]["rows"]
    assert [r["outcome"] for r in shown] == ["created", "rejected", "created"]
    assert set(shown[1]["errors"]) == {"顧客名", "リスク許容度"}
    assert shown[1]["errors"]["顧客名"] == "name is required"
    assert shown[0]["cells"]["メール"] == f"{tag}@example.jp"
    assert customers_tagged(db, tag) == []


def test_mapping_can_be_given_and_changed_before_start(client, auth):
    rows = [["A", "B"], ["名前だけ", "x@example.jp"]]
    resp = upload(client, auth("sales"), csv_bytes(rows), mapping={"name": "A", "email": 1})
    assert resp.status_code == 201 and resp.json["data"]["mapping"] == {"name": 0, "email": 1}
    import_id = resp.json["id"]
    bad = client.put(f"/api/imports/{import_id}/mapping", json={"mapping": {"email": "B", "phone": "Z"}}, headers=auth("sales"))
    assert bad.status_code == 400 and set(bad.json["details"]) == {"phone", "name"}
    ok = client.put(f"/api/imports/{import_id}/mapping", json={"mapping": {"name": "B"}, "dedupe": "update"},
                    headers=auth("sales"))
    assert ok.status_code == 200 and ok.json["data"]["mapping"] == {"name": 1} and ok.json["data"]["dedupe"] == "update"


# ---- bad files -----------------------------------------------------------------------------


def _refused(client, auth, db, users, data, filename="bad.csv", **form):
    before = imports_of(db, users["sales"].id)
    resp = upload(client, auth("sales"), data, filename=filename, **form)
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)
    assert imports_of(db, users["sales"].id) == before
    return resp


def test_wrong_encodings_are_refused_naming_the_file(client, auth, db, users):
    text = "顧客名,メール\n株式会社テスト,a@example.jp\n"
    for data in (text.encode("euc_jp"), text.encode("utf-16"), bytes(range(256)) * 8):
        resp = _refused(client, auth, db, users, data)
        assert resp.status_code == 400 and resp.json["details"] == {"file": [resp.json["message"]]}
        assert "UTF-8 or Shift_JIS" in resp.json["message"]


def test_a_missing_required_column_is_refused_naming_the_field(client, auth, db, users):
    resp = _refused(client, auth, db, users, csv_bytes([["メール", "電話番号"], ["a@example.jp", "03"]]))
    assert resp.status_code == 400 and "name" in resp.json["details"]
    resp = _refused(client, auth, db, users, csv_bytes([["顧客ID", "件名"], [str(uuid.uuid4()), "x"]]), kind="meetings")
    assert set(resp.json["details"]) == {"scheduledAt"}


def test_a_60_mb_file_is_refused_before_it_is_read(client, auth, db, users, tmp_path):
    path = tmp_path / "big.csv"
    line = ("株式会社テスト," + "x" * 60 + "@example.jp\n").encode("utf-8")
    with path.open("wb") as fh:
        fh.write("顧客名,メール\n".encode("utf-8"))
        chunk = line * 10_000
        while fh.tell() < 60 * 1024 * 1024:
            fh.write(chunk)
    before = imports_of(db, users["sales"].id)
    with path.open("rb") as fh:
        resp = client.post("/api/imports", data={"file": (fh, "big.csv"), "kind": "customers"}, headers=auth("sales"),
                           content_type="multipart/form-data")
    assert resp.status_code == 413 and resp.json["details"] == {"file": [resp.json["message"]]}
    assert "IMPORT_MAX_MB (50 MB)" in resp.json["message"]
    assert imports_of(db, users["sales"].id) == before


def test_an_xlsx_declaring_a_bomb_sized_sheet_is_refused(client, auth, db, users):
    good = xlsx_bytes([["顧客名"], ["a"], ["b"]])
    huge = rewrite_sheet(good, lambda xml: re.sub(r'<dimension ref="A1:A3" ?/>', '<dimension ref="A1:XFD1048576"/>', xml))
    assert b"A1:XFD1048576" in zipfile.ZipFile(io.BytesIO(huge)).read("xl/worksheets/sheet1.xml")
    resp = _refused(client, auth, db, users, huge, filename="bomb.xlsx")
    assert resp.status_code == 400 and "declares 1048576 rows" in resp.json["message"]


def test_an_xlsx_that_unpacks_to_far_more_than_it_weighs_is_refused(client, auth, db, users, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_MB", 1)
    padding = " " * (12 * 1024 * 1024)  # compresses to a few kilobytes
    bomb = rewrite_sheet(xlsx_bytes([["顧客名"], ["a"]]), lambda xml: xml.replace("<sheetData>", padding + "<sheetData>"))
    assert len(bomb) < 1024 * 1024
    resp = _refused(client, auth, db, users, bomb, filename="bomb.xlsx")
    assert resp.status_code == 400 and "unpacks to 12 MB" in resp.json["message"]


def test_too_many_rows_are_refused(client, auth, db, users, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_ROWS", 3)
    rows = [["顧客名"]] + [[f"c{i}"] for i in range(4)]
    for data, name in ((csv_bytes(rows), "many.csv"), (xlsx_bytes(rows), "many.xlsx")):
        resp = _refused(client, auth, db, users, data, filename=name)
        assert "IMPORT_MAX_ROWS (3)" in resp.json["message"]


def test_an_xlsx_with_formula_cells_is_refused_and_formula_looking_text_is_stored_as_text(client, auth, db, users, jobs):
    tag = unique_tag("fx")
    resp = _refused(client, auth, db, users, xlsx_bytes([["顧客名", "電話番号"], [tag, "03"]], formula_at="B2"),
                    filename="formula.xlsx")
    assert resp.status_code == 400 and "cell B2 holds a formula" in resp.json["message"]
    rows = [["顧客名", "住所"], [f"{tag}=1+2", '=HYPERLINK("http://evil.example","x")']]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows))
    assert done["counts"]["created"] == 1
    (customer,) = customers_tagged(db, tag)
    assert customer.address == '=HYPERLINK("http://evil.example","x")'  # kept as the text it was, never evaluated
    export = client.get("/api/reports/export/customers", headers=auth("sales"))
    assert export.status_code == 200 and "'=HYPERLINK(" in export.get_data(as_text=True)  # inert on the way out


def test_not_a_workbook_and_no_data_rows(client, auth, db, users):
    assert "not a readable .xlsx" in _refused(client, auth, db, users, b"PK\x03\x04junk", filename="x.xlsx").json["message"]
    assert "no data rows" in _refused(client, auth, db, users, csv_bytes([["顧客名"]])).json["message"]
    assert _refused(client, auth, db, users, csv_bytes([["顧客名"], ["a"]]), kind="contracts").json["details"] == {
        "kind": ["kind must be one of customers, meetings, tasks"]}
    resp = client.post("/api/imports", data={"kind": "customers"}, headers=auth("sales"), content_type="multipart/form-data")
    assert resp.status_code == 400 and "file" in resp.json["details"]


# ---- cancel, undo ---------------------------------------------------------------------------


def test_undo_soft_deletes_what_was_created_and_restores_what_was_updated(client, auth, db, users, make, jobs):
    tag = unique_tag("ud")
    existing = make.customer("sales", name=f"{tag} 元の名前", email=f"{tag}-old@example.jp", industry="金融")
    rows = [["顧客名", "メール", "業種"], [f"{tag} 新規", f"{tag}-new@example.jp", "IT"],
            [f"{tag} 更新後", f"{tag}-old@example.jp", "保険"]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows), dedupe="update")
    assert done["counts"] == {"created": 1, "updated": 1, "skipped": 0, "rejected": 0}
    assert client.post(f"/api/imports/{done['id']}/undo", headers=auth("sales2")).status_code == 404
    resp = client.post(f"/api/imports/{done['id']}/undo", headers=auth("sales"))
    assert resp.status_code == 200 and resp.json["data"]["status"] == "undone"
    db.session.rollback()
    restored = db.session.get(Customer, existing.id)
    assert (restored.name, restored.industry, restored.deleted_at) == (f"{tag} 元の名前", "金融", None)
    created = next(c for c in customers_tagged(db, tag) if c.id != existing.id)
    assert created.deleted_at is not None
    audit_rows = db.session.execute(sa.select(AuditLog.action, AuditLog.resource_id).where(
        AuditLog.resource_id.in_([created.id, existing.id, done["id"]]), AuditLog.user_id == users["sales"].id)).all()
    assert {("DELETE", created.id), ("UPDATE", existing.id), ("UPDATE", done["id"])} <= {(a.value, r) for a, r in audit_rows}
    again = client.post(f"/api/imports/{done['id']}/undo", headers=auth("sales"))
    assert again.status_code == 400 and "status" in again.json["details"]


def test_undo_of_meetings_cancels_them(client, auth, db, make, jobs):
    customer = make.customer("sales")
    tag = unique_tag("um")
    rows = [["顧客ID", "件名", "日時"], [customer.id, f"{tag} 面談", "2026-12-24 11:00"]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows), kind="meetings")
    assert client.post(f"/api/imports/{done['id']}/undo", headers=auth("sales")).status_code == 200
    db.session.rollback()
    (meeting,) = db.session.execute(sa.select(Meeting).where(Meeting.title == f"{tag} 面談")).scalars().all()
    assert meeting.status.value == "cancelled"


def test_cancel_before_the_job_runs(client, auth, db, jobs):
    tag = unique_tag("cn")
    resp = upload(client, auth("sales"), csv_bytes([["顧客名"], [f"{tag} 1"]]))
    import_id = resp.json["id"]
    assert client.post(f"/api/imports/{import_id}/start", headers=auth("sales")).status_code == 202
    assert client.post(f"/api/imports/{import_id}/cancel", headers=auth("sales")).json["data"]["status"] == "cancelled"
    jobs()
    assert client.get(f"/api/imports/{import_id}", headers=auth("sales")).json["data"]["done"] == 0
    assert customers_tagged(db, tag) == []
    assert client.post(f"/api/imports/{import_id}/start", headers=auth("sales")).status_code == 400


# ---- a killed job resumes --------------------------------------------------------------------


def test_a_job_killed_halfway_resumes_without_duplicates(app, client, auth, db, users, jobs, database_url, redis_url):
    tag = unique_tag("kill")
    total = 40
    rows = [["顧客名", "メール"]] + [[f"{tag} {i:03d}", f"{tag}-{i}@example.jp"] for i in range(total)]
    resp = upload(client, auth("sales"), csv_bytes(rows))
    import_id = resp.json["id"]
    assert client.post(f"/api/imports/{import_id}/start", headers=auth("sales")).status_code == 202
    jobs.queue.empty()  # this test runs the job itself: first in a process it kills
    env = {**os.environ, "CRM_ENV": "test", "TEST_DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "IMPORT_BATCH_SIZE": "5", "IMPORT_FAULT_PAUSE_AFTER_BATCH": "0.5", "STREAM_ENABLED": "0"}
    code = f"from workers.imports import run_import_job; run_import_job({import_id!r})"
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while done < 10 and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
            db.session.rollback()
            done = db.session.execute(sa.select(Import.done).where(Import.id == import_id)).scalar()
        assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    db.session.rollback()
    killed = db.session.get(Import, import_id)
    assert killed.status.value == "running" and 10 <= killed.done < total and killed.done % 5 == 0
    written = db.session.execute(sa.select(sa.func.count()).select_from(ImportRow).where(ImportRow.import_id == import_id)).scalar()
    assert written == killed.done == len(customers_tagged(db, tag))
    # Started again, the job walks on from the last committed batch.
    assert client.post(f"/api/imports/{import_id}/start", headers=auth("sales")).status_code == 202
    jobs()
    final = client.get(f"/api/imports/{import_id}", headers=auth("sales")).json["data"]
    assert final["status"] == "done" and final["progress"] == f"{total}/{total}" and final["counts"]["created"] == total
    made = customers_tagged(db, tag)
    assert len(made) == total and len({c.email for c in made}) == total
    numbers = db.session.execute(sa.select(ImportRow.row_number).where(ImportRow.import_id == import_id)
                                 .order_by(ImportRow.row_number)).scalars().all()
    assert numbers == list(range(2, total + 2))


def test_a_row_the_database_refuses_is_rejected_alone(client, auth, db, make, jobs, monkeypatch):
    from app.services import imports

    tag = unique_tag("race")
    make.customer("sales2", name=f"{tag} 先客", email=f"{tag}@example.jp")
    # As if another user took the address between the batch's look-up and its flush.
    monkeypatch.setattr(imports.Context, "live_customer", lambda self, email: None)
    rows = [["顧客名", "メール"], [f"{tag} 一", f"{tag}-1@example.jp"], [f"{tag} 二", f"{tag}@example.jp"],
            [f"{tag} 三", f"{tag}-3@example.jp"]]
    done = run_import(client, auth("sales"), jobs, csv_bytes(rows))
    assert done["counts"] == {"created": 2, "updated": 0, "skipped": 0, "rejected": 1}
    report = report_of(client, auth("sales"), done["id"])
    assert [r["outcome"] for r in report] == ["created", "rejected", "created"]
    assert "conflicts with an existing record" in report[1]["reason"]
    assert len([c for c in customers_tagged(db, tag) if c.deleted_at is None]) == 3


def test_cancel_while_running_stops_after_the_batch_in_hand(app, client, auth, db, monkeypatch):
    for key, value in {"IMPORT_RUNNER": "thread", "IMPORT_BATCH_SIZE": 5, "IMPORT_FAULT_PAUSE_AFTER_BATCH": 0.3}.items():
        monkeypatch.setitem(app.config, key, value)
    tag = unique_tag("cr")
    rows = [["顧客名"]] + [[f"{tag} {i:02d}"] for i in range(60)]
    import_id = upload(client, auth("sales"), csv_bytes(rows)).json["id"]
    assert client.post(f"/api/imports/{import_id}/start", headers=auth("sales")).status_code == 202
    deadline = time.monotonic() + 60
    state = client.get(f"/api/imports/{import_id}", headers=auth("sales")).json["data"]
    while state["done"] < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
        state = client.get(f"/api/imports/{import_id}", headers=auth("sales")).json["data"]
    assert client.post(f"/api/imports/{import_id}/cancel", headers=auth("sales")).status_code == 200
    while state["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        state = client.get(f"/api/imports/{import_id}", headers=auth("sales")).json["data"]
    assert state["status"] == "cancelled" and 5 <= state["done"] < 60 and state["done"] % 5 == 0
    assert len(customers_tagged(db, tag)) == state["done"]
