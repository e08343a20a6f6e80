"""CSRF (issue 18, item 1): every state change on a screen is a POST carrying the form's token.

A request another site makes with the victim's session — an image or a link (GET), a form
posted without the token — changes nothing; the screens' own forms still work. The
bearer-token APIs (/api, /api/v1) need no token and accept no session cookie.
"""

import uuid

import pytest
from flask_appbuilder.security.sqla.models import User

from config import ProductionConfig
from models import Meeting, Notification, NotificationType
from tests.conftest import PASSWORD
from tests.helpers import reload

EVIL = {"Origin": "http://evil.example", "Referer": "http://evil.example/page.html", "Sec-Fetch-Site": "cross-site"}


@pytest.fixture()
def victim(app, db):
    """A fresh Sales user nothing refers to (no audit row, no lead), so an Admin could delete it."""
    from app.services.users import create_user

    db.session.info["audit_disabled"] = True
    try:
        user = create_user(f"victim-{uuid.uuid4().hex[:8]}@example.com", "Victim User", "Sales", PASSWORD)
    finally:
        db.session.info.pop("audit_disabled", None)
    return user.id


def _user_exists(db, user_id):
    db.session.expire_all()
    return db.session.get(User, user_id) is not None


def _fresh_login(app, user):
    """A client with its own, newly made session (not the cached one browser_login shares)."""
    c = app.test_client()
    assert c.post("/login/", data={"username": user.email, "password": PASSWORD}).status_code == 302
    return c


def test_cross_site_get_of_user_delete_deletes_nothing(browser_login, db, victim):
    admin = browser_login("admin")
    resp = admin.get(f"/users/delete/{victim}", headers=EVIL)
    assert resp.status_code == 302  # FAB: "Access is Denied", back to the list
    assert _user_exists(db, victim)


def test_tokenless_post_with_foreign_origin_deletes_no_user(browser_login, db, victim):
    resp = browser_login("admin").post(f"/users/delete/{victim}", headers=EVIL, csrf=False)
    assert resp.status_code == 400
    assert _user_exists(db, victim)


def test_sales_meeting_survives_cross_site_get_and_tokenless_post(browser_login, make, db):
    meeting_id = make.meeting("sales").id
    sales = browser_login("sales")
    assert sales.get(f"/meetingview/delete/{meeting_id}", headers=EVIL).status_code == 302
    assert sales.post(f"/meetingview/delete/{meeting_id}", headers=EVIL, csrf=False).status_code == 400
    # A token from another session is no token for this one.
    other = browser_login("sales2").form_token()
    assert sales.post(f"/meetingview/delete/{meeting_id}", data={"csrf_token": other}).status_code == 400
    assert reload(db, Meeting, meeting_id) is not None


def test_screen_delete_with_the_forms_token_still_works(browser_login, make, db, victim):
    meeting_id = make.meeting("sales").id
    assert browser_login("sales").post(f"/meetingview/delete/{meeting_id}").status_code == 302
    assert reload(db, Meeting, meeting_id) is None
    assert browser_login("admin").post(f"/users/delete/{victim}").status_code == 302
    assert not _user_exists(db, victim)


def test_every_screen_form_carries_the_token(browser_login, make):
    """The pages that change state hold the token in each form: FAB's list (delete), add, edit, the navbar."""
    meeting = make.meeting("sales")
    sales = browser_login("sales")
    for path in ("/meetingview/list/", "/meetingview/add", f"/meetingview/edit/{meeting.id}", "/approvals/mine/"):
        page = sales.get(path).get_data(as_text=True)
        assert 'id="navbar-logout-form"' in page, path
        assert page.count('name="csrf_token"') >= 1, path
    listing = sales.get("/meetingview/list/").get_data(as_text=True)
    assert 'id="delete_form"' in listing or 'id="action_form"' in listing


def test_logout_is_a_post_with_the_token(app, db, users):
    from models import AuditAction, AuditLog

    c = _fresh_login(app, users["sales"])
    # A GET (a link or an image elsewhere) only shows the confirmation: still signed in.
    page = c.get("/logout/", headers=EVIL)
    assert page.status_code == 200 and 'class="logout-form"' in page.get_data(as_text=True)
    assert c.get("/meetingview/list/").status_code == 200
    assert c.post("/logout/", headers=EVIL, csrf=False).status_code == 400
    assert c.get("/meetingview/list/").status_code == 200
    before = db.session.query(AuditLog).filter_by(user_id=users["sales"].id, action=AuditAction.LOGOUT).count()
    assert c.post("/logout/").status_code == 302
    assert c.get("/meetingview/list/").status_code == 302  # to the login page
    db.session.expire_all()
    assert db.session.query(AuditLog).filter_by(user_id=users["sales"].id, action=AuditAction.LOGOUT).count() == before + 1


def test_logout_does_not_spend_the_login_limit(limited_app, users):
    """FAB limits every POST of its auth view's blueprint; logging out is not a login attempt."""
    c = limited_app.test_client()
    assert c.post("/login/", data={"username": users["manager"].email, "password": PASSWORD}).status_code == 302
    for _ in range(4):  # AUTH_RATE_LIMIT of limited_app: 3 per window
        assert c.post("/logout/").status_code == 302


def test_mark_read_without_the_token_changes_nothing(browser_login, users, db):
    note = Notification(user_id=users["sales"].id, type=NotificationType.SYSTEM, title="CSRF既読")
    db.session.add(note)
    db.session.commit()
    resp = browser_login("sales").post(f"/notifications/{note.id}/read", headers=EVIL, csrf=False)
    assert resp.status_code == 400
    assert reload(db, Notification, note.id).is_read is False


def test_recall_without_the_token_changes_nothing(browser_login, make, db):
    from models import ApprovalRequest, ApprovalStatus

    req = make.approval("sales")
    resp = browser_login("sales").post(f"/approvalrequestview/recall/{req.id}", data={"next": "/approvals/mine/"}, csrf=False)
    assert resp.status_code == 400
    assert reload(db, ApprovalRequest, req.id).status == ApprovalStatus.PENDING


def test_token_apis_need_no_form_token_and_take_no_session_cookie(client, auth, browser_login, make, db):
    customer = make.customer("sales")
    body = {"customer": customer.id, "title": "API商談", "scheduled_at": "2026-12-01T10:00:00+09:00"}
    assert client.post("/api/v1/meeting/", json=body, headers=auth("sales")).status_code == 201
    assert client.post("/api/meetings", json={"customerId": customer.id, "title": "API商談", "scheduledAt": "2026-12-01T10:00:00+09:00"}, headers=auth("sales")).status_code == 201
    # Exempt from CSRF, so a browser session alone must not be able to write through them.
    sales = browser_login("sales")
    assert sales.post("/api/v1/meeting/", json=body, headers=EVIL).status_code == 401
    assert sales.post("/api/meetings", json={"customerId": customer.id, "title": "x"}, headers=EVIL).status_code == 401


def test_session_cookie_is_samesite_lax_httponly_and_secure_in_production(app):
    resp = app.test_client().get("/login/")  # the form's token goes into the session: a cookie is set
    cookie = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("session="))
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie
    assert ProductionConfig.SESSION_COOKIE_SECURE is True and ProductionConfig.REMEMBER_COOKIE_SECURE is True
    assert ProductionConfig.SESSION_COOKIE_SAMESITE == "Lax" and ProductionConfig.REMEMBER_COOKIE_SAMESITE == "Lax"
