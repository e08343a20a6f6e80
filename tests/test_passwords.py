"""Passwords: Argon2id for every new hash, all three logins, legacy werkzeug hashes upgraded on login."""

import uuid

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from werkzeug.security import generate_password_hash

from app import passwords

ARGON2_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
PW = "Password123!"


def new_user(app, password=PW, role="Sales"):
    """Create a user through the app (crm create-user's function); return its email."""
    from app.services.users import create_user

    email = f"pw-{uuid.uuid4().hex[:10]}@example.com"
    create_user(email, "Pass Word", role, password)
    return email


def stored_hash(app, db, email):
    """The password column of `email`, read afresh from the database."""
    user_model = app.appbuilder.sm.user_model
    db.session.expire_all()
    return db.session.execute(sa.select(user_model.password).where(user_model.email == email)).scalar_one()


def store_hash(app, db, email, value):
    """Overwrite the stored hash (as the production database holds it before the upgrade)."""
    user_model = app.appbuilder.sm.user_model
    db.session.execute(sa.update(user_model).where(user_model.email == email).values(password=value))
    db.session.commit()


def login_api(client, email, password):
    """POST /api/auth/login; True when it answered 200 with a token."""
    resp = client.post("/api/auth/login", json={"email": email, "password": password})
    assert resp.status_code in (200, 401), resp.get_data(as_text=True)
    return resp.status_code == 200 and bool(resp.json["token"])


def login_fab_api(client, email, password):
    """FAB's POST /api/v1/security/login; True when it answered 200 with a token."""
    resp = client.post("/api/v1/security/login", json={"username": email, "password": password, "provider": "db"})
    assert resp.status_code in (200, 401), resp.get_data(as_text=True)
    return resp.status_code == 200 and bool(resp.json["access_token"])


def login_form(client, email, password):
    """FAB's form POST /login/; True when it redirected away from the login page."""
    resp = client.post("/login/", data={"username": email, "password": password})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    return "/login" not in resp.location


LOGINS = {"api": login_api, "fab_api": login_fab_api, "form": login_form}


@pytest.fixture()
def no_werkzeug_hashing(monkeypatch):
    """Make FAB's own werkzeug hashing fail loudly: nothing may reach it any more."""
    import flask_appbuilder.security.manager as fab_manager
    import flask_appbuilder.security.sqla.apis.user.api as fab_user_api
    import flask_appbuilder.security.sqla.manager as fab_sqla_manager
    import flask_appbuilder.security.views as fab_views

    def refuse(*args, **kwargs):
        raise AssertionError("FAB's werkzeug password hashing was called")

    for module in (fab_manager, fab_sqla_manager, fab_views, fab_user_api):
        monkeypatch.setattr(module, "generate_password_hash", refuse)
    for module in (fab_manager, fab_sqla_manager):
        monkeypatch.setattr(module, "check_password_hash", refuse)


def test_new_users_get_argon2id(app, db, client, no_werkzeug_hashing):
    """create-user and /api/auth/register both store Argon2id at the configured cost."""
    email = new_user(app)
    assert stored_hash(app, db, email).startswith(ARGON2_PREFIX)

    registered = f"pw-reg-{uuid.uuid4().hex[:8]}@example.com"
    resp = client.post("/api/auth/register", json={"email": registered, "password": PW, "name": "Reg User"})
    assert resp.status_code == 201, resp.json
    assert stored_hash(app, db, registered).startswith(ARGON2_PREFIX)


@pytest.mark.parametrize("path", LOGINS)
def test_login_works_on_every_path(app, db, client, path, no_werkzeug_hashing):
    """An Argon2id user logs in through /api/auth/login, /api/v1/security/login and /login/."""
    email = new_user(app)
    before = stored_hash(app, db, email)
    assert LOGINS[path](client, email, PW)
    assert not LOGINS[path](app.test_client(), email, "wrong-password")
    assert stored_hash(app, db, email) == before  # current parameters: no rehash


@pytest.mark.parametrize("path", LOGINS)
@pytest.mark.parametrize("method", ["scrypt", "pbkdf2:sha256"])
def test_legacy_hash_logs_in_and_is_upgraded(app, db, client, path, method):
    """A werkzeug scrypt/pbkdf2 hash verifies; the login replaces it with Argon2id that still takes the password."""
    from models import AuditLog

    email = new_user(app)
    legacy = generate_password_hash(PW, method=method)
    store_hash(app, db, email, legacy)

    assert not LOGINS[path](client, email, "wrong-password")
    assert stored_hash(app, db, email) == legacy  # a failed login never rehashes

    assert LOGINS[path](app.test_client(), email, PW)
    upgraded = stored_hash(app, db, email)
    assert upgraded.startswith(ARGON2_PREFIX)
    assert not passwords.needs_rehash(upgraded)

    assert LOGINS[path](app.test_client(), email, PW)
    assert not LOGINS[path](app.test_client(), email, "wrong-password")
    assert stored_hash(app, db, email) == upgraded
    user_id = app.appbuilder.sm.find_user(email=email).id
    rows = db.session.query(AuditLog).filter(AuditLog.user_id == user_id, AuditLog.action != "CREATE").order_by(AuditLog.timestamp)
    # The rehash adds no UPDATE row of its own (the password column is not audited).
    assert [a.action.value for a in rows] == ["LOGIN_FAILED", "LOGIN", "LOGIN", "LOGIN_FAILED"]


def test_outdated_argon2_parameters_are_rehashed(app, db, client):
    """An Argon2id hash under older settings verifies and is rehashed at the configured ones."""
    email = new_user(app)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PW)
    store_hash(app, db, email, old)
    assert passwords.needs_rehash(old)
    assert login_api(client, email, PW)
    assert stored_hash(app, db, email).startswith(ARGON2_PREFIX)


def test_unknown_and_inactive_users_still_pay_a_hash_check(app, db, client, monkeypatch):
    """No account, or an inactive one: the fake check runs a real Argon2id verify; 401, audited."""
    from models import AuditLog

    checked = []
    real_verify = passwords.verify_password

    def spy(stored, password):
        checked.append(stored)
        return real_verify(stored, password)

    monkeypatch.setattr(passwords, "verify_password", spy)
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    assert not login_api(client, unknown, PW)
    assert len(checked) == 1 and checked[0].startswith(ARGON2_PREFIX)
    assert db.session.query(AuditLog).filter(AuditLog.changes["username"].as_string() == unknown).count() == 1

    email = new_user(app)
    user = app.appbuilder.sm.find_user(email=email)
    user.active = False
    db.session.commit()
    checked.clear()
    assert not login_fab_api(client, email, PW)  # the right password of an inactive account
    assert len(checked) == 1 and checked[0].startswith(ARGON2_PREFIX) and checked[0] != stored_hash(app, db, email)


def test_fab_password_screens_hash_with_argon2(app, db, browser_login, no_werkzeug_hashing):
    """Admin's user screen (add, reset password) and FAB's reset_password store Argon2id."""
    sm = app.appbuilder.sm
    admin = browser_login("admin")
    email = f"pw-screen-{uuid.uuid4().hex[:8]}@example.com"
    resp = admin.post(
        "/users/add",
        data={
            "first_name": "Screen",
            "last_name": "User",
            "username": email,
            "email": email,
            "active": "y",
            "roles": [sm.find_role("Sales").id],
            "password": "screen-pass-1",
            "conf_password": "screen-pass-1",
        },
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    assert stored_hash(app, db, email).startswith(ARGON2_PREFIX)
    assert login_api(app.test_client(), email, "screen-pass-1")

    user_id = sm.find_user(email=email).id
    resp = admin.post(f"/resetpassword/form?pk={user_id}", data={"password": "reset-pass-22", "conf_password": "reset-pass-22"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    assert stored_hash(app, db, email).startswith(ARGON2_PREFIX)
    assert login_api(app.test_client(), email, "reset-pass-22")
    assert not login_api(app.test_client(), email, "screen-pass-1")


def test_register_request_and_user_api_hash_with_argon2(app, db, no_werkzeug_hashing):
    """add_register_user (self-registration, off here) and FAB's user API (off here) use Argon2id too."""
    from types import SimpleNamespace

    from app.security import UserApi

    sm = app.appbuilder.sm
    reg = sm.add_register_user(f"reg-{uuid.uuid4().hex[:8]}", "Reg", "User", f"reg-{uuid.uuid4().hex[:8]}@example.com", password=PW)
    assert reg.password.startswith(ARGON2_PREFIX) and passwords.verify_password(reg.password, PW)
    sm.del_register_user(reg)

    api = UserApi.__new__(UserApi)  # only the hooks are exercised: FAB_ADD_SECURITY_API is off
    api.appbuilder = SimpleNamespace(sm=SimpleNamespace(current_user=SimpleNamespace(id=1)))
    item = SimpleNamespace(password=PW)
    api.pre_add(item)
    assert item.password.startswith(ARGON2_PREFIX)
    api.pre_update(item, {"password": "other-pass-1"})
    assert passwords.verify_password(item.password, "other-pass-1") and item.changed_by_fk == 1
    kept = item.password
    api.pre_update(item, {"first_name": "x"})
    assert item.password == kept


def test_verify_password_refuses_junk(app):
    """Unknown formats, malformed and empty hashes are a failed check, never an exception."""
    for stored in (None, "", "plain-text", "md5$abc", "$argon2id$garbage", "scrypt:broken", "pbkdf2:sha256:1$x"):
        assert passwords.verify_password(stored, PW) is False
        assert passwords.needs_rehash(stored) is True
    assert passwords.verify_password(passwords.hash_password(PW), None) is False


# ---- issue 18 item 8: changing one's own password asks for the current one --------------


def _signed_in(app, email, password):
    session = app.test_client()
    assert session.post("/login/", data={"username": email, "password": password}).status_code == 302
    return session


def test_changing_ones_own_password_asks_for_the_current_one(app, db, new_user):
    """/resetmypassword/form changes nothing without the right current password (a stolen session is not enough)."""
    from tests.conftest import PASSWORD

    user = new_user()
    session = _signed_in(app, user.email, PASSWORD)
    page = session.get("/resetmypassword/form").get_data(as_text=True)
    assert 'name="current_password"' in page and page.index("current_password") < page.index('name="password"')
    before = stored_hash(app, db, user.email)
    for current in (None, "", "wrong-current-pass"):
        data = {"password": "taken-over-pass-1", "conf_password": "taken-over-pass-1"}
        if current is not None:
            data["current_password"] = current
        resp = session.post("/resetmypassword/form", data=data)
        assert resp.status_code == 200, current  # the form again, with the field's error
        assert stored_hash(app, db, user.email) == before
    assert "現在のパスワードが正しくありません" in resp.get_data(as_text=True)
    resp = session.post("/resetmypassword/form", data={"current_password": PASSWORD, "password": "my-new-pass-22", "conf_password": "my-new-pass-22"})
    assert resp.status_code == 302
    assert login_api(app.test_client(), user.email, "my-new-pass-22") and not login_api(app.test_client(), user.email, PASSWORD)


def test_guessing_the_current_password_meets_the_accounts_login_limit(limited_app, new_user):
    """Wrong current passwords count against the account's login limit: a stolen session cannot brute-force it."""
    from tests.conftest import PASSWORD, from_ip

    user = new_user()
    session = limited_app.test_client()
    assert session.post("/login/", data={"username": user.email, "password": PASSWORD}, headers=from_ip()).status_code == 302
    statuses = []
    for i in range(6):
        data = {"current_password": f"guess-{i}", "password": "taken-over-pass-1", "conf_password": "taken-over-pass-1"}
        statuses.append(session.post("/resetmypassword/form", data=data, headers=from_ip()).status_code)
        if statuses[-1] == 429:
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
    right = {"current_password": PASSWORD, "password": "taken-over-pass-1", "conf_password": "taken-over-pass-1"}
    assert session.post("/resetmypassword/form", data=right, headers=from_ip()).status_code == 429


def test_a_password_change_signs_out_the_users_other_browser_sessions(app, db, new_user, browser_login):
    """Browser sessions end like tokens: an Admin's reset signs the user out; the user's own change keeps only the session that made it."""
    from tests.conftest import PASSWORD

    user = new_user()
    laptop, phone = _signed_in(app, user.email, PASSWORD), _signed_in(app, user.email, PASSWORD)
    for session in (laptop, phone):
        assert session.get("/customerview/list/").status_code == 200
    resp = laptop.post("/resetmypassword/form", data={"current_password": PASSWORD, "password": "my-new-pass-33", "conf_password": "my-new-pass-33"})
    assert resp.status_code == 302
    assert laptop.get("/customerview/list/").status_code == 200, "the session that changed the password stays"
    signed_out = phone.get("/customerview/list/")
    assert signed_out.status_code == 302 and "/login" in signed_out.headers["Location"]
    admin = browser_login("admin").post(f"/resetpassword/form?pk={user.id}", data={"password": "admin-set-pass-4", "conf_password": "admin-set-pass-4"})
    assert admin.status_code == 302
    assert "/login" in laptop.get("/customerview/list/").headers.get("Location", "")
    assert _signed_in(app, user.email, "admin-set-pass-4").get("/customerview/list/").status_code == 200
