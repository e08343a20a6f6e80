"""The notification bell (issue 21 part 6): links to screens, the list screen, the bell's count,
dropdown and read marks, each scoped to the caller and changed only by POSTs with the CSRF token."""

import re
import uuid

import psycopg
import pytest
import sqlalchemy as sa

from app import links
from models import Notification
from models.notification import NotificationType
from tests.test_migrations import empty_database  # noqa: F401  (the fixture: a database of its own, dropped after)

LINKS_BEFORE = "f2a9c4e7b1d3"  # the head before the links moved to the screens


def _note(db, user, title=None, link=None, kind=NotificationType.SYSTEM, read=False):
    note = Notification(user_id=user.id, type=kind, title=title or f"通知 {uuid.uuid4().hex[:8]}", link=link, is_read=read)
    db.session.add(note)
    db.session.commit()
    return note


# --- links -----------------------------------------------------------------------------------


def test_links_open_the_screens_of_their_records():
    rid = str(uuid.uuid4())
    assert links.approval(rid) == f"/approvalrequestview/show/{rid}"
    assert links.task(rid) == f"/taskview/show/{rid}"
    assert links.meeting(rid) == f"/meetingview/show/{rid}"
    # An /api link (an event written before the move, still in the outbox) becomes its screen's.
    assert links.check(f"/api/approvals/{rid}") == f"/approvalrequestview/show/{rid}"
    assert links.check(f"/api/customers/{rid}") == f"/customerview/show/{rid}"
    with pytest.raises(links.InvalidLink):
        links.check(f"/api/approvals/{rid}/../../logout")


def test_a_request_notifies_its_manager_with_the_screen_link(app, db, make, users, browser_login):
    req = make.approval("sales", product_name=f"債券{uuid.uuid4().hex[:6]}")
    (note,) = db.session.execute(
        sa.select(Notification).where(Notification.user_id == users["manager"].id, Notification.title.contains(req.product_name))
    ).scalars().all()
    assert note.link == f"/approvalrequestview/show/{req.id}"
    page = browser_login("manager").get(note.link)
    assert page.status_code == 200 and "text/html" in page.content_type and req.product_name in page.get_data(as_text=True)


def test_the_migration_moves_stored_api_links_to_screens_and_back(empty_database, config_class):
    from flask_migrate import downgrade, upgrade

    from app import create_app
    from config import normalise_db_url

    cfg = type("BellMigConfig", (config_class,), {"SQLALCHEMY_DATABASE_URI": normalise_db_url(empty_database)})
    application = create_app(cfg)
    rid = str(uuid.uuid4())
    old = {
        "a": f"/api/approvals/{rid}",
        "t": f"/api/tasks/{rid}",
        "m": f"/api/meetings/{rid}",
        "c": f"/api/customers/{rid}",
        "p": "/approvals/pending/",
        "n": None,
    }
    new = {
        "a": f"/approvalrequestview/show/{rid}",
        "t": f"/taskview/show/{rid}",
        "m": f"/meetingview/show/{rid}",
        "c": f"/customerview/show/{rid}",
        "p": "/approvals/pending/",
        "n": None,
    }
    with application.app_context():
        upgrade(revision=LINKS_BEFORE)
    with psycopg.connect(empty_database) as conn:
        conn.execute("INSERT INTO ab_user (id, first_name, last_name, username, email, active) VALUES (1, 'a', 'b', 'u', 'u@example.com', true)")
        for key, link in old.items():
            conn.execute(
                "INSERT INTO notifications (id, user_id, type, title, link, is_read, created_at) VALUES (%s, 1, 'SYSTEM', %s, %s, false, now())",
                (str(uuid.uuid4()), key, link),
            )

    def stored():
        with psycopg.connect(empty_database) as conn:
            return dict(conn.execute("SELECT title, link FROM notifications").fetchall())

    with application.app_context():
        upgrade()
    assert stored() == new
    with application.app_context():
        downgrade(revision=LINKS_BEFORE)
    assert stored() == old


# --- the list screen ---------------------------------------------------------------------------


def test_the_list_shows_type_labels_and_read_state_and_no_edit(db, users, browser_login):
    rid = str(uuid.uuid4())
    unread = _note(db, users["sales"], kind=NotificationType.APPROVAL_APPROVED, link=f"/approvalrequestview/show/{rid}")
    _note(db, users["sales"], kind=NotificationType.TASK_DUE_SOON, read=True)
    c = browser_login("sales")
    html = c.get("/notificationview/list/").get_data(as_text=True)
    # What a reader sees: the table's text, not the filter's option values.
    table = re.sub(r'value=\\?"[^"\\]*\\?"', "", html[html.index("<table"):html.rindex("</table>")])
    assert "承認されました" in table and "タスク期限" in table and "未読" in table and "既読" in table
    assert "APPROVAL_APPROVED" not in table and "TASK_DUE_SOON" not in table and "False" not in table
    assert "/notificationview/edit/" not in html
    assert f'href="/approvalrequestview/show/{rid}"' in html
    assert c.get(f"/notificationview/edit/{unread.id}").status_code in (302, 403, 404, 405)
    db.session.expire_all()
    assert db.session.get(Notification, unread.id).is_read is False


# --- the bell --------------------------------------------------------------------------------


def _reload(db, note):
    db.session.expire_all()
    return db.session.get(Notification, note.id)


def test_every_page_has_the_bell_and_its_script_with_the_nonce(browser_login):
    c = browser_login("sales")
    for path in ("/", "/customerview/list/", "/approvals/mine/", "/notificationview/list/"):
        resp = c.get(path)
        html = resp.get_data(as_text=True)
        assert resp.status_code == 200 and 'id="crm-bell"' in html, path
        nonce = re.search(r"'nonce-([^']+)'", resp.headers["Content-Security-Policy"]).group(1)
        assert re.search(r'<script src="/static/crm/bell\.js" nonce="' + re.escape(nonce) + '"', html), path
        assert "crm/bell.css" in html and " onclick=" not in html


def test_the_bell_counts_and_lists_only_the_callers_own(db, users, browser_login):
    c = browser_login("sales2")
    before = c.get("/notifications/bell").json["count"]
    mine = _note(db, users["sales2"], title="自分宛て", link="/approvals/mine/")
    theirs = _note(db, users["sales"], title="他人宛て")
    feed = c.get("/notifications/bell").json
    assert feed["count"] == before + 1
    ids = [n["id"] for n in feed["items"]]
    assert mine.id in ids and theirs.id not in ids
    (item,) = [n for n in feed["items"] if n["id"] == mine.id]
    assert item["link"] == "/approvals/mine/" and item["typeLabel"] == "システム" and item["isRead"] is False


def test_opening_from_the_bell_marks_read_and_goes_to_the_screen(db, users, browser_login):
    rid = str(uuid.uuid4())
    note = _note(db, users["sales"], link=f"/approvalrequestview/show/{rid}")
    c = browser_login("sales")
    resp = c.post(f"/notifications/{note.id}/open")
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/approvalrequestview/show/{rid}")
    fresh = _reload(db, note)
    assert fresh.is_read and fresh.read_at is not None


def test_get_changes_nothing(db, users, browser_login):
    note = _note(db, users["sales"])
    c = browser_login("sales")
    for path in (f"/notifications/{note.id}/open", f"/notifications/{note.id}/read", "/notifications/read-all"):
        assert c.get(path).status_code == 405, path
    assert _reload(db, note).is_read is False


def test_read_marks_need_the_csrf_token(db, users, browser_login):
    note = _note(db, users["sales"])
    c = browser_login("sales")
    for path in (f"/notifications/{note.id}/open", f"/notifications/{note.id}/read", "/notifications/read-all"):
        assert c.post(path, csrf=False).status_code == 400, path
    assert _reload(db, note).is_read is False
    # The script's way: the token in the X-CSRFToken header, JSON back.
    resp = c.post(f"/notifications/{note.id}/read", csrf=False, headers={"X-CSRFToken": c.form_token(), "Accept": "application/json"})
    assert resp.status_code == 200 and "count" in resp.json
    assert _reload(db, note).is_read is True


def test_nobody_opens_or_marks_anothers_notification(db, users, browser_login):
    theirs = _note(db, users["sales"], link="/approvals/mine/")
    for key in ("sales2", "manager", "admin"):
        c = browser_login(key)
        assert c.post(f"/notifications/{theirs.id}/open").status_code == 404, key
        assert c.post(f"/notifications/{theirs.id}/read").status_code == 404, key
        assert c.post("/notifications/read-all").status_code == 303, key
    assert c.post("/notifications/not-a-uuid/read").status_code == 404
    assert _reload(db, theirs).is_read is False


def test_mark_all_read_marks_only_the_callers_own(db, users, browser_login):
    mine = [_note(db, users["sales2"]) for _ in range(2)]
    theirs = _note(db, users["sales"])
    c = browser_login("sales2")
    resp = c.post("/notifications/read-all", headers={"Accept": "application/json"})
    assert resp.status_code == 200 and resp.json["count"] == 0
    assert all(_reload(db, n).is_read for n in mine)
    assert _reload(db, theirs).is_read is False


def test_anonymous_gets_no_feed(client):
    resp = client.get("/notifications/bell")
    assert resp.status_code in (302, 401) and "count" not in resp.get_data(as_text=True)
