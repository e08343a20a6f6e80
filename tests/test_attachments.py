"""Attachments (app/services/attachments.py) through /api and the screens, on both storages.

Every test that stores bytes runs once on the local folder and once on S3 (moto's server
mode as a process, tests/conftest.py `attachment_storage`).
"""

import hashlib
import io
import zipfile

import pytest
import sqlalchemy as sa

from models import ApprovalStatus, Attachment, AuditLog, OutboxEvent
from models.attachment import OwnerType

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64))
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(200)
CSV_UTF8 = "\ufeff顧客名,メール\n株式会社テスト,a@example.jp\n".encode("utf-8")
CSV_SJIS = "顧客名,メール\n株式会社テスト,a@example.jp\n".encode("cp932")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def office_file(main_part):
    """A minimal Office zip whose [Content_Types].xml names `main_part` (None: a plain zip without one)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        if main_part:
            archive.writestr(
                "[Content_Types].xml",
                '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                f'<Override PartName="/main.xml" ContentType="{main_part}"/></Types>',
            )
        archive.writestr("main.xml", "<x/>")
    return buf.getvalue()


def xlsx_bytes():
    """A real workbook written by openpyxl."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["顧客名", "金額"])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


DOCX = office_file("application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml")
MACRO_XLSM = office_file("application/vnd.ms-excel.sheet.macroEnabled.main+xml")
PLAIN_ZIP = office_file(None)

PATHS = {"customer": "customers", "meeting": "meetings", "approval": "approvals"}


def owner_of(make, kind, owner="sales"):
    """A record of `kind` ("customer", "meeting", "approval") owned by the user key `owner`."""
    if kind == "customer":
        return make.customer(owner)
    if kind == "meeting":
        return make.meeting(owner)
    return make.approval(owner)


def url(kind, record_id, attachment_id=None):
    base = f"/api/{PATHS[kind]}/{record_id}/attachments"
    return f"{base}/{attachment_id}" if attachment_id else base


def post_file(client, auth, kind, record_id, data, name, who="sales"):
    return client.post(url(kind, record_id), headers=auth(who), data={"file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def _user(db, uid):
    from flask_appbuilder.security.sqla.models import User

    return db.session.get(User, uid)


def rows_of(db, record_id):
    db.session.expire_all()
    return db.session.execute(sa.select(Attachment).where(Attachment.owner_id == str(record_id))).scalars().all()


def audit_rows(db, attachment_ids):
    return db.session.execute(
        sa.select(AuditLog.action, AuditLog.resource_id).where(
            AuditLog.resource_type == "attachment", AuditLog.resource_id.in_(list(attachment_ids))
        ).order_by(AuditLog.timestamp)
    ).all()


def attachment_events(db, customer_id):
    return db.session.execute(
        sa.select(OutboxEvent).where(OutboxEvent.type.like("ATTACHMENT_%"), OutboxEvent.key == str(customer_id))
        .order_by(OutboxEvent.created_at)
    ).scalars().all()


def stored_keys(storage):
    """Every key the test's storage holds (a private folder or bucket per test)."""
    import os

    if hasattr(storage, "root"):
        found = []
        for base, _dirs, files in os.walk(storage.root):
            found += [os.path.relpath(os.path.join(base, f), storage.root) for f in files]
        return found
    listed = storage.client.list_objects_v2(Bucket=storage.bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


# ---- the API, both storages ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["customer", "meeting"])
def test_upload_list_download_delete_through_the_api(client, auth, make, db, attachment_storage, kind):
    record = owner_of(make, kind)
    customer_id = record.id if kind == "customer" else record.customer_id
    resp = post_file(client, auth, kind, record.id, PDF, "提案書 2026.pdf")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    data = resp.json["data"]
    assert data["filename"] == "提案書 2026.pdf" and data["contentType"] == "application/pdf"
    assert data["size"] == len(PDF) and data["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert data["ownerType"] == OwnerType(kind).value and data["ownerId"] == record.id and data["customerId"] == customer_id
    assert "storageKey" not in data
    row = db.session.get(Attachment, data["id"])
    assert attachment_storage.exists(row.storage_key)

    listed = client.get(url(kind, record.id), headers=auth("sales"))
    assert listed.status_code == 200 and [f["id"] for f in listed.json["data"]] == [data["id"]]
    assert listed.json["pagination"]["total"] == 1

    got = client.get(url(kind, record.id, data["id"]), headers=auth("sales"))
    assert got.status_code == 200 and got.data == PDF
    assert got.mimetype == "application/pdf" and got.headers["Content-Length"] == str(len(PDF))
    assert got.headers["Content-Disposition"].startswith("attachment;") and "filename*=UTF-8''" in got.headers["Content-Disposition"]
    assert got.headers["X-Content-Type-Options"] == "nosniff" and got.headers["Content-Security-Policy"].startswith("default-src 'none'")

    gone = client.delete(url(kind, record.id, data["id"]), headers=auth("sales"))
    assert gone.status_code == 200 and gone.json["data"]["deletedAt"]
    assert client.get(url(kind, record.id), headers=auth("sales")).json["data"] == []
    assert client.get(url(kind, record.id, data["id"]), headers=auth("sales")).status_code == 404
    (kept,) = rows_of(db, record.id)
    assert kept.deleted_at is not None and kept.deleted_by_id is not None, "a soft delete keeps the row"

    assert [a for a, _ in audit_rows(db, [data["id"]])] == ["CREATE", "DELETE"]
    events = attachment_events(db, customer_id)
    assert [e.type for e in events] == ["ATTACHMENT_ADDED", "ATTACHMENT_DELETED"]
    assert events[0].envelope["payload"]["filename"] == "提案書 2026.pdf"
    assert all("storageKey" not in e.envelope["payload"] for e in events)
    assert events[0].topic.endswith("sales-activity.events")


def test_approval_request_files_are_locked_while_pending(client, auth, make, db, users, attachment_storage):
    from app.services import approvals

    req = make.approval("sales")
    assert req.status == ApprovalStatus.PENDING
    locked = post_file(client, auth, "approval", req.id, PDF, "申込書.pdf")
    assert locked.status_code == 409 and "status" in locked.json["details"], locked.json
    assert rows_of(db, req.id) == [] and stored_keys(attachment_storage) == []

    # A file that reached the request otherwise (written before it was submitted) cannot be removed while pending.
    row = Attachment(owner_type=OwnerType.approval_request, owner_id=req.id, customer_id=req.customer_id, filename="x.pdf",
                     content_type="application/pdf", size_bytes=1, sha256="0" * 64, storage_key=f"approval_request/{req.id}/x")
    db.session.add(row)
    db.session.commit()
    refused = client.delete(url("approval", req.id, row.id), headers=auth("sales"))
    assert refused.status_code == 409 and "status" in refused.json["details"]
    assert rows_of(db, req.id)[0].deleted_at is None

    approvals.recall(req.id, _user(db, users["sales"].id))
    signed = post_file(client, auth, "approval", req.id, PDF, "署名済み申込書.pdf")
    assert signed.status_code == 201, signed.json
    assert client.delete(url("approval", req.id, row.id), headers=auth("sales")).status_code == 200


def test_nothing_is_written_when_the_storage_refuses(client, auth, make, db, app, attachment_storage):
    """The storage fails for real: an S3 bucket that does not exist, a folder that is a file."""
    customer = make.customer("sales")
    if hasattr(attachment_storage, "root"):
        blocker = attachment_storage.root + "-blocked"
        open(blocker, "w").close()
        attachment_storage.root = blocker
    else:
        attachment_storage.bucket = attachment_storage.bucket + "-missing"
    resp = post_file(client, auth, "customer", customer.id, PDF, "提案書.pdf")
    assert resp.status_code == 503 and "file" in resp.json["details"], resp.json
    assert rows_of(db, customer.id) == []
    assert attachment_events(db, customer.id) == []
    assert db.session.execute(sa.select(sa.func.count()).select_from(AuditLog).where(
        AuditLog.resource_type == "attachment", AuditLog.changes["after"]["owner_id"].as_string() == customer.id)).scalar() == 0


def test_a_refused_commit_removes_the_stored_object(client, auth, make, db, attachment_storage, monkeypatch):
    from app.services import attachments

    customer = make.customer("sales")

    def refuse():
        raise sa.exc.OperationalError("COMMIT", {}, Exception("connection lost"))

    monkeypatch.setattr(attachments.db.session, "commit", refuse)
    resp = post_file(client, auth, "customer", customer.id, PDF, "提案書.pdf")
    monkeypatch.undo()
    assert resp.status_code == 500
    assert rows_of(db, customer.id) == []
    assert stored_keys(attachment_storage) == [], "the object stored before the refused commit is removed"


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_the_list_pages_newest_first(client, auth, make, attachment_storage):
    customer = make.customer("sales")
    for i in range(3):
        assert post_file(client, auth, "customer", customer.id, f"メモ{i}".encode(), f"memo{i}.txt").status_code == 201
    first = client.get(url("customer", customer.id) + "?limit=2", headers=auth("sales")).json
    second = client.get(url("customer", customer.id) + "?limit=2&page=2", headers=auth("sales")).json
    assert [f["filename"] for f in first["data"]] == ["memo2.txt", "memo1.txt"]
    assert [f["filename"] for f in second["data"]] == ["memo0.txt"]
    assert first["pagination"]["total"] == 3 and first["pagination"]["totalPages"] == 2


# ---- type by content -------------------------------------------------------------------


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
@pytest.mark.parametrize(
    "name,data,expected",
    [
        ("proposal.PDF", PDF, "application/pdf"),
        ("logo.png", PNG, "image/png"),
        ("photo.jpeg", JPEG, "image/jpeg"),
        ("顧客一覧.xlsx", xlsx_bytes(), XLSX_TYPE),
        ("契約書.docx", DOCX, DOCX_TYPE),
        ("顧客.csv", CSV_UTF8, "text/csv"),
        ("顧客_sjis.csv", CSV_SJIS, "text/csv"),
        ("memo.txt", "面談メモ\r\n".encode("utf-8"), "text/plain"),
    ],
    ids=["pdf", "png", "jpeg", "xlsx", "docx", "csv-utf8-bom", "csv-shift-jis", "text"],
)
def test_allowed_types_are_recognised_by_content(client, auth, make, attachment_storage, name, data, expected):
    customer = make.customer("sales")
    resp = post_file(client, auth, "customer", customer.id, data, name)
    assert resp.status_code == 201, resp.json
    assert resp.json["data"]["contentType"] == expected


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
@pytest.mark.parametrize(
    "name,data,status",
    [
        ("invoice.pdf", EXE, 415),  # an executable named .pdf
        ("report.xlsx", PLAIN_ZIP, 415),  # a zip without an Office parts list
        ("macro.xlsx", MACRO_XLSM, 415),  # a macro workbook
        ("logo.pdf", PNG, 415),  # an image named as a PDF
        ("proposal.exe", PDF, 415),  # a PDF named as a program
        ("notes.txt", "メモ".encode("utf-16"), 415),  # NUL bytes: not text we accept
        ("proposal", PDF, 415),  # no extension
        ("empty.pdf", b"", 400),
        ("", PDF, 400),  # no name
    ],
    ids=["exe-named-pdf", "zip-named-xlsx", "xlsm", "png-named-pdf", "pdf-named-exe", "utf16", "no-extension", "empty", "no-name"],
)
def test_content_outside_the_allow_list_is_refused_naming_the_field(client, auth, make, db, attachment_storage, name, data, status):
    customer = make.customer("sales")
    resp = post_file(client, auth, "customer", customer.id, data, name)
    assert resp.status_code == status, resp.json
    assert "file" in resp.json["details"], resp.json
    assert rows_of(db, customer.id) == [] and stored_keys(attachment_storage) == []


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_a_body_without_a_file_part_is_a_400_naming_it(client, auth, make, attachment_storage):
    customer = make.customer("sales")
    as_json = client.post(url("customer", customer.id), headers=auth("sales"), json={"file": "x"})
    assert as_json.status_code == 400 and "file" in as_json.json["details"]
    no_part = client.post(url("customer", customer.id), headers=auth("sales"), data={"other": "x"}, content_type="multipart/form-data")
    assert no_part.status_code == 400 and "file" in no_part.json["details"]


# ---- size limit ------------------------------------------------------------------------


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_the_size_limit_is_exact_and_named(client, auth, make, db, app, attachment_storage, monkeypatch):
    monkeypatch.setitem(app.config, "ATTACHMENT_MAX_MB", 1)
    customer = make.customer("sales")
    limit = 1024 * 1024
    at_limit = post_file(client, auth, "customer", customer.id, b"a" * limit, "full.txt")
    assert at_limit.status_code == 201, at_limit.json
    # One byte over: the body is within the request cap, the file is not (the streamed check).
    over = post_file(client, auth, "customer", customer.id, b"a" * (limit + 1), "over.txt")
    assert over.status_code == 413 and "file" in over.json["details"] and over.json["details"]["maxBytes"] == limit
    # Far over: refused from Content-Length, before the body is read.
    far = post_file(client, auth, "customer", customer.id, b"a" * (3 * limit), "far.txt")
    assert far.status_code == 413 and "file" in far.json["details"]
    assert [r.filename for r in rows_of(db, customer.id)] == ["full.txt"]
    assert len(stored_keys(attachment_storage)) == 1


def test_the_default_limit_is_20_mb_and_above_the_json_cap(app):
    from app.services import attachments
    from config import Config

    assert Config.ATTACHMENT_MAX_MB == 20
    with app.app_context():
        assert attachments.max_bytes() == app.config["ATTACHMENT_MAX_MB"] * 1024 * 1024
        assert attachments.body_limit() > app.config["API_MAX_CONTENT_LENGTH"]


# ---- scope and permissions -------------------------------------------------------------


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
@pytest.mark.parametrize("kind", ["customer", "meeting", "approval"])
def test_another_rep_cannot_list_download_upload_or_delete(client, auth, make, db, users, attachment_storage, kind):
    from app.services import approvals

    record = owner_of(make, kind, "sales")
    if kind == "approval":
        approvals.recall(record.id, _user(db, users["sales"].id))
    mine = post_file(client, auth, kind, record.id, PDF, "mine.pdf")
    assert mine.status_code == 201
    file_id = mine.json["data"]["id"]

    assert client.get(url(kind, record.id), headers=auth("sales2")).status_code == 404
    assert client.get(url(kind, record.id, file_id), headers=auth("sales2")).status_code == 404
    assert post_file(client, auth, kind, record.id, PDF, "theirs.pdf", who="sales2").status_code == 404
    assert client.delete(url(kind, record.id, file_id), headers=auth("sales2")).status_code == 404
    # A file id of the rep's own record does not open another record's file either.
    own = owner_of(make, kind, "sales2")
    assert client.get(url(kind, own.id, file_id), headers=auth("sales2")).status_code == 404
    assert [r.filename for r in rows_of(db, record.id)] == ["mine.pdf"] and rows_of(db, record.id)[0].deleted_at is None

    # Managers and Compliance read every record's files; Compliance changes none.
    for reader in ("manager", "compliance", "admin"):
        assert client.get(url(kind, record.id, file_id), headers=auth(reader)).data == PDF
    assert post_file(client, auth, kind, record.id, PDF, "c.pdf", who="compliance").status_code == 403


def test_ids_that_are_not_ids_are_404(client, auth):
    assert client.get("/api/customers/not-an-id/attachments", headers=auth("sales")).status_code == 404
    assert client.get("/api/meetings/00000000-0000-0000-0000-000000000000/attachments/zzz", headers=auth("sales")).status_code == 404
    assert client.get("/api/customers/x/attachments").status_code == 401


# ---- screens ---------------------------------------------------------------------------

SCREEN = {"customer": ("/attachments/customer", "/customerview/show"), "meeting": ("/attachments/meeting", "/meetingview/show"),
          "approval": ("/attachments/approval", "/approvalrequestview/show")}


def screen_upload(c, kind, record_id, data, name, **kwargs):
    return c.post(f"{SCREEN[kind][0]}/{record_id}/upload", data={"file": (io.BytesIO(data), name)},
                  content_type="multipart/form-data", **kwargs)


@pytest.mark.parametrize("kind", ["customer", "meeting", "approval"])
def test_the_panel_uploads_lists_downloads_and_deletes_on_each_page(browser_login, make, db, users, attachment_storage, kind):
    from app.services import approvals

    record = owner_of(make, kind)
    if kind == "approval":
        approvals.recall(record.id, _user(db, users["sales"].id))
    c = browser_login("sales")
    page = c.get(f"{SCREEN[kind][1]}/{record.id}").get_data(as_text=True)
    assert 'class="panel panel-default attachments-panel"' in page and 'enctype="multipart/form-data"' in page
    assert f'action="{SCREEN[kind][0]}/{record.id}/upload"' in page and 'name="csrf_token"' in page

    done = screen_upload(c, kind, record.id, PDF, "画面から.pdf")
    assert done.status_code == 302 and done.headers["Location"].endswith(f"{SCREEN[kind][1]}/{record.id}")
    (row,) = rows_of(db, record.id)
    page = c.get(f"{SCREEN[kind][1]}/{record.id}").get_data(as_text=True)
    link = f"{SCREEN[kind][0]}/{record.id}/{row.id}/download"
    assert "画面から.pdf" in page and link in page
    got = c.get(link)
    assert got.status_code == 200 and got.data == PDF and got.headers["Content-Disposition"].startswith("attachment;")

    assert c.post(f"{SCREEN[kind][0]}/{record.id}/{row.id}/delete", data={}).status_code == 302
    assert rows_of(db, record.id)[0].deleted_at is not None
    assert link not in c.get(f"{SCREEN[kind][1]}/{record.id}").get_data(as_text=True)
    assert [a for a, _ in audit_rows(db, [row.id])] == ["CREATE", "DELETE"]


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_another_rep_gets_404_on_every_screen_route(browser_login, make, db, attachment_storage):
    customer = make.customer("sales")
    owner = browser_login("sales")
    assert screen_upload(owner, "customer", customer.id, PDF, "mine.pdf").status_code == 302
    (row,) = rows_of(db, customer.id)
    other = browser_login("sales2")
    assert screen_upload(other, "customer", customer.id, PDF, "theirs.pdf").status_code == 404
    assert other.get(f"/attachments/customer/{customer.id}/{row.id}/download").status_code == 404
    assert other.post(f"/attachments/customer/{customer.id}/{row.id}/delete", data={}).status_code == 404
    # Their own customer's path with this file's id: still not found.
    own = make.customer("sales2")
    assert other.get(f"/attachments/customer/{own.id}/{row.id}/download").status_code == 404
    assert [(r.filename, r.deleted_at) for r in rows_of(db, customer.id)] == [("mine.pdf", None)]


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_screen_refusals_name_the_field_and_write_nothing(browser_login, make, db, app, attachment_storage, monkeypatch):
    customer = make.customer("sales")
    c = browser_login("sales")
    no_token = screen_upload(c, "customer", customer.id, PDF, "x.pdf", csrf=False)
    assert no_token.status_code == 400
    exe = screen_upload(c, "customer", customer.id, EXE, "invoice.pdf")
    assert exe.status_code == 415 and "file: this type of file is not accepted" in exe.get_data(as_text=True)
    monkeypatch.setitem(app.config, "ATTACHMENT_MAX_MB", 1)
    over = screen_upload(c, "customer", customer.id, b"a" * (1024 * 1024 + 1), "over.txt")
    assert over.status_code == 413 and "file: the file is larger than 1 MB" in over.get_data(as_text=True)
    far = screen_upload(c, "customer", customer.id, b"a" * (3 * 1024 * 1024), "far.txt")
    assert far.status_code == 413 and "file: the file is larger than 1 MB" in far.get_data(as_text=True)
    assert rows_of(db, customer.id) == [] and stored_keys(attachment_storage) == []


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_a_pending_request_shows_its_files_locked(browser_login, make, db, attachment_storage):
    req = make.approval("sales")
    c = browser_login("sales")
    page = c.get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert "attachments-locked" in page and 'class="attachment-upload' not in page
    refused = screen_upload(c, "approval", req.id, PDF, "申込書.pdf")
    assert refused.status_code == 409 and "status: a pending approval request is locked" in refused.get_data(as_text=True)
    assert rows_of(db, req.id) == []


def test_readers_see_the_panel_without_forms(browser_login, make):
    customer = make.customer("sales")
    page = browser_login("compliance").get(f"/customerview/show/{customer.id}").get_data(as_text=True)
    assert "attachments-panel" in page and 'class="attachment-upload' not in page
    assert browser_login("compliance").post(f"/attachments/customer/{customer.id}/upload", data={}).status_code == 403
