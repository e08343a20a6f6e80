"""app/tokens.py: signatures verified once per process; expiry, revocation, token epochs and refresh rotation checked every time."""

import jwt
from flask_jwt_extended import create_access_token

from tests.helpers import used_before_expiry, wait_until_expired

LIST = "/api/customers?limit=5"


def _token(app, user_id, **kwargs):
    with app.test_request_context():
        return create_access_token(identity=str(user_id), **kwargs)


def _pyjwt_calls(monkeypatch):
    """Count PyJWT's signature checks (flask-jwt-extended decodes through jwt.decode)."""
    calls = []
    real = jwt.decode

    def counting(*args, **kwargs):
        if (kwargs.get("options") or {}).get("verify_signature", True):
            calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_token_is_verified_once_then_remembered(app, client, users, monkeypatch):
    token = _token(app, users["sales"].id)
    headers = {"Authorization": f"Bearer {token}"}
    calls = _pyjwt_calls(monkeypatch)
    for _ in range(3):
        assert client.get(LIST, headers=headers).status_code == 200
    assert len(calls) == 1


def test_a_changed_signature_is_checked_and_refused(app, client, users):
    token = _token(app, users["sales"].id)
    assert client.get(LIST, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    resp = client.get(LIST, headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401 and "invalid" in resp.json["message"]


def test_a_remembered_token_still_expires(app, client, users):
    def use(token):
        assert client.get(LIST, headers={"Authorization": f"Bearer {token}"}).status_code == 200

    token, expires, _ = used_before_expiry(app, users["sales"].id, use)
    wait_until_expired(expires)
    resp = client.get(LIST, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and "expired" in resp.json["message"]


def test_a_remembered_token_is_still_revocable(app, client, users):
    token = _token(app, users["sales"].id)
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(LIST, headers=headers).status_code == 200
    assert client.post("/api/auth/logout", headers=headers).status_code == 200
    resp = client.get(LIST, headers=headers)
    assert resp.status_code == 401 and "revoked" in resp.json["message"]


def test_an_uncached_read_makes_one_redis_round_trip(app, client, users, redis_cache, redis_commands):
    """Blocklist entry, auth epoch and permission-table generations: one MGET per list read."""
    app.config["CACHE_ANSWERS"] = False
    try:
        headers = {"Authorization": f"Bearer {_token(app, users['manager'].id)}"}
        for _ in range(2):  # the permission memo and the role ids are filled on the first
            assert client.get(LIST, headers=headers).status_code == 200
        commands = redis_commands()
        assert client.get(LIST, headers=headers).status_code == 200
    finally:
        app.config["CACHE_ANSWERS"] = True
    assert commands == ["MGET"]


# ---- issue 18 item 8: token epochs, refresh rotation and families ----------------------

import uuid  # noqa: E402

import pytest  # noqa: E402

from tests.conftest import PASSWORD  # noqa: E402

NEW_PASSWORD = "a-new-pass-456"


def bearer(token):
    """Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


def api_login(client, email, password=PASSWORD):
    """(access, refresh) from /api/auth/login."""
    resp = client.post("/api/auth/login", json={"email": email, "password": password})
    assert resp.status_code == 200, resp.json
    return resp.json["token"], resp.json["refreshToken"]


def fab_login(client, email, password=PASSWORD):
    """(access, refresh) from FAB's /api/v1/security/login."""
    resp = client.post("/api/v1/security/login", json={"username": email, "password": password, "provider": "db", "refresh": True})
    assert resp.status_code == 200, resp.json
    return resp.json["access_token"], resp.json["refresh_token"]


def answers(client, token):
    """The status codes of the token on /api and on FAB's /api/v1."""
    return client.get("/api/auth/me", headers=bearer(token)).status_code, client.get("/api/v1/customer/", headers=bearer(token)).status_code


def refreshes(client, refresh):
    """The status codes of the refresh token on /api/auth/refresh and FAB's /api/v1/security/refresh (each spends it)."""
    return (
        client.post("/api/auth/refresh", headers=bearer(refresh)).status_code,
        client.post("/api/v1/security/refresh", headers=bearer(refresh)).status_code,
    )


def change_own_password(app, user, _browser_login=None):
    """The user changes their password on FAB's own-password screen."""
    session = app.test_client()
    assert session.post("/login/", data={"username": user.email, "password": PASSWORD}).status_code == 302
    resp = session.post("/resetmypassword/form", data={"current_password": PASSWORD, "password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]


def admin_resets_password(app, user, browser_login):
    """An Admin sets a new password on FAB's reset screen."""
    resp = browser_login("admin").post(f"/resetpassword/form?pk={user.id}", data={"password": NEW_PASSWORD, "conf_password": NEW_PASSWORD})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]


def cli_resets_password(app, user, browser_login):
    """`flask fab reset-password` (FAB's command, as `flask --app wsgi fab reset-password` runs it)."""
    from flask_appbuilder.cli import reset_password

    result = app.test_cli_runner().invoke(reset_password, ["--username", user.email, "--password", NEW_PASSWORD])
    assert result.exit_code == 0 and "reseted" in result.output, result.output


def admin_deactivates(app, user, browser_login):
    """An Admin unticks "active" on the user's edit screen."""
    sm = app.appbuilder.sm
    form = {"first_name": "Deactivated", "last_name": "User", "username": user.email, "email": user.email, "roles": [sm.find_role("Sales").id]}
    resp = browser_login("admin").post(f"/users/edit/{user.id}", data=form)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    sm.session.expire_all()
    assert sm.get_user_by_id(user.id).active is False


@pytest.mark.parametrize("change", [change_own_password, admin_resets_password, cli_resets_password, admin_deactivates])
def test_every_token_issued_before_a_password_change_or_deactivation_is_refused(app, client, new_user, browser_login, change):
    """Access and refresh tokens of /api and FAB's /api/v1 logins, from before the change, answer 401 on both APIs."""
    user = new_user()
    api_access, api_refresh = api_login(client, user.email)
    fab_access, fab_refresh = fab_login(client, user.email)
    spare_refresh = api_login(client, user.email)[1]
    for token in (api_access, fab_access):
        assert answers(client, token) == (200, 200)
    change(app, user, browser_login)
    for token in (api_access, fab_access):
        assert answers(client, token) == (401, 401)
    assert client.post("/api/auth/refresh", headers=bearer(api_refresh)).status_code == 401
    assert client.post("/api/v1/security/refresh", headers=bearer(fab_refresh)).status_code == 401
    assert client.post("/api/v1/security/refresh", headers=bearer(spare_refresh)).status_code == 401
    if change is not admin_deactivates:
        assert client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD}).status_code == 401
        fresh, _ = api_login(client, user.email, NEW_PASSWORD)
        assert answers(client, fresh) == (200, 200)


def test_reactivating_a_user_does_not_revive_their_old_tokens(app, client, new_user, browser_login):
    """Deactivation ends the tokens for good: switching the account back on gives them no second life."""
    user = new_user()
    access, refresh = api_login(client, user.email)
    admin_deactivates(app, user, browser_login)
    sm = app.appbuilder.sm
    row = sm.get_user_by_id(user.id)
    row.active = True
    sm.update_user(row)
    assert answers(client, access) == (401, 401)
    assert client.post("/api/auth/refresh", headers=bearer(refresh)).status_code == 401
    assert answers(client, api_login(client, user.email)[0]) == (200, 200)


def test_password_change_through_fab_user_api_ends_tokens(config_class, new_user, tokens):
    """FAB's user API (FAB_ADD_SECURITY_API, off here by default) changing a password ends that user's tokens too."""
    from app import create_app

    with_user_api = create_app(type("UserApiConfig", (config_class,), {"FAB_ADD_SECURITY_API": True}))
    client = with_user_api.test_client()
    user = new_user()
    access, _refresh = api_login(client, user.email)
    assert answers(client, access) == (200, 200)
    sm = with_user_api.appbuilder.sm
    with with_user_api.app_context():  # `crm init` ran without this API: grant its one permission for the test
        admin, can_put = sm.find_role("Admin"), sm.add_permission_view_menu("can_put", "User")
        sm.add_permission_role(admin, can_put)
    try:
        resp = client.put(f"/api/v1/security/users/{user.id}", json={"password": NEW_PASSWORD}, headers=bearer(tokens["admin"]))
    finally:
        with with_user_api.app_context():
            sm.del_permission_role(sm.find_role("Admin"), sm.find_permission_view_menu("can_put", "User"))
    assert resp.status_code == 200, resp.json
    assert answers(client, access) == (401, 401)
    assert answers(client, api_login(client, user.email, NEW_PASSWORD)[0]) == (200, 200)


def test_a_changed_password_ends_tokens_on_the_fast_path_too(app, client, make, new_user, redis_cache, redis_commands):
    """Cached GETs answered from Redis alone read the token epoch in their one round trip and refuse old tokens."""
    user = new_user()
    access, _ = api_login(client, user.email)
    for _ in range(3):  # computed, stored, then served from the fast path
        assert client.get("/api/customers?limit=5", headers=bearer(access)).status_code == 200
    commands = redis_commands()
    assert client.get("/api/customers?limit=5", headers=bearer(access)).status_code == 200
    assert commands == ["MGET"], "the epoch rides in the read the fast path makes anyway"
    app.appbuilder.sm.reset_password(user.id, NEW_PASSWORD)
    assert client.get("/api/customers?limit=5", headers=bearer(access)).status_code == 401


def test_redis_keeps_a_copy_of_the_epoch_and_the_database_decides_when_it_is_gone(app, client, new_user):
    """The copy is written after the commit with a lifetime; a lost copy is read again from the database."""
    from app import tokens

    user = new_user()
    access, _ = api_login(client, user.email)
    app.appbuilder.sm.reset_password(user.id, NEW_PASSWORD)
    from app.extensions import redis_client as shared_client

    redis_client = shared_client(app)
    key = tokens.epoch_key(user.id)
    assert int(redis_client.get(key)) == tokens.stored_epoch(user.id) == 1
    assert 0 < redis_client.ttl(key) <= app.config["TOKEN_EPOCH_CACHE_SECONDS"]
    redis_client.delete(key)  # evicted, or Redis restarted empty
    assert answers(client, access) == (401, 401)
    assert int(redis_client.get(key)) == 1


def test_without_redis_the_database_epoch_holds_across_processes(config_class, new_user):
    """The embedded default (no REDIS_URL): a password changed by another process (or CLI) ends tokens here at once."""
    from app import create_app

    embedded = type("EmbeddedConfig", (config_class,), {"REDIS_URL": "", "RATELIMIT_STORAGE_URI": "memory://", "CACHE_TYPE": "SimpleCache"})
    here, other = create_app(embedded), create_app(embedded)
    client = here.test_client()
    user = new_user()
    access, refresh = api_login(client, user.email)
    assert answers(client, access) == (200, 200)
    with other.app_context():
        other.appbuilder.sm.reset_password(user.id, NEW_PASSWORD)
    assert answers(client, access) == (401, 401)
    assert client.post("/api/auth/refresh", headers=bearer(refresh)).status_code == 401


def test_a_password_rehashed_at_login_ends_no_session(app, db, client, new_user):
    """The login that upgrades an old hash stores a new hash of the same password: no epoch move, tokens keep working."""
    from werkzeug.security import generate_password_hash

    from app import tokens

    user = new_user()
    sm = app.appbuilder.sm
    row = sm.get_user_by_id(user.id)
    row.password = generate_password_hash(PASSWORD, method="scrypt")
    sm.update_user(row)
    before = tokens.stored_epoch(user.id)
    earlier, _ = api_login(client, user.email)  # the login that rehashes
    db.session.expire_all()
    assert sm.get_user_by_id(user.id).password.startswith("$argon2")
    assert tokens.stored_epoch(user.id) == before
    assert answers(client, earlier) == (200, 200)


def test_refresh_rotates_and_a_spent_refresh_token_is_refused(client, new_user):
    """/api/auth/refresh answers a new refresh token beside the access token; each refresh token works once."""
    user = new_user()
    _access, first = api_login(client, user.email)
    resp = client.post("/api/auth/refresh", headers=bearer(first))
    assert resp.status_code == 200
    body = resp.json
    assert body["success"] is True and body["token"] == body["data"]["token"]
    assert body["refreshToken"] == body["data"]["refreshToken"] and body["refreshToken"] != first
    assert answers(client, body["token"]) == (200, 200)
    second = body["refreshToken"]
    third = client.post("/api/auth/refresh", headers=bearer(second)).json["refreshToken"]
    # FAB's refresh rotates the same way, with FAB's spelling.
    fab = client.post("/api/v1/security/refresh", headers=bearer(third))
    assert fab.status_code == 200 and set(fab.json) == {"access_token", "refresh_token"}
    assert answers(client, fab.json["access_token"]) == (200, 200)
    assert client.post("/api/auth/refresh", headers=bearer(third)).status_code == 401
    assert client.post("/api/auth/refresh", headers=bearer(first)).status_code == 401


@pytest.mark.parametrize("reuse_at", ["/api/auth/refresh", "/api/v1/security/refresh"])
def test_reusing_a_spent_refresh_token_revokes_its_whole_family(client, new_user, reuse_at):
    """A spent refresh token coming back means a copy exists: every token of that login is refused, other logins are not."""
    user = new_user()
    access, first = api_login(client, user.email)
    other_access, other_refresh = fab_login(client, user.email)  # another device of the same user
    rotated = client.post("/api/auth/refresh", headers=bearer(first)).json
    assert answers(client, rotated["token"]) == (200, 200)
    assert client.post(reuse_at, headers=bearer(first)).status_code == 401  # the thief (or the victim) replays it
    for token in (access, rotated["token"]):
        assert answers(client, token) == (401, 401)
    assert refreshes(client, rotated["refreshToken"]) == (401, 401)
    assert answers(client, other_access) == (200, 200)
    assert client.post("/api/v1/security/refresh", headers=bearer(other_refresh)).status_code == 200


@pytest.mark.parametrize("with_refresh_in_body", [False, True])
def test_logout_ends_the_whole_family(client, new_user, with_refresh_in_body):
    """Logout refuses every access and refresh token of its login, rotated ones included, with or without `refreshToken`."""
    user = new_user()
    access, refresh = api_login(client, user.email)
    rotated = client.post("/api/auth/refresh", headers=bearer(refresh)).json
    other_access, other_refresh = fab_login(client, user.email)
    body = {"refreshToken": rotated["refreshToken"]} if with_refresh_in_body else {}
    assert client.post("/api/auth/logout", headers=bearer(access), json=body).status_code == 200
    for token in (access, rotated["token"]):
        assert answers(client, token) == (401, 401)
    assert refreshes(client, rotated["refreshToken"]) == (401, 401)
    assert answers(client, other_access) == (200, 200)  # another login of the same user stays
    assert client.post("/api/v1/security/refresh", headers=bearer(other_refresh)).status_code == 200


def test_logout_with_another_logins_refresh_token_ends_that_login_too(client, new_user):
    """`refreshToken` in the body of a logout names a login to end as well (the seed's client sends its own)."""
    user = new_user()
    access, _refresh = api_login(client, user.email)
    other_access, other_refresh = fab_login(client, user.email)
    assert client.post("/api/auth/logout", headers=bearer(access), json={"refreshToken": other_refresh}).status_code == 200
    assert answers(client, other_access) == (401, 401)
    assert refreshes(client, other_refresh) == (401, 401)


def test_logins_of_one_request_context_do_not_share_a_family(app, client, users):
    """Tokens made for two users in one request context (scripts, tests) belong to two families."""
    from flask_jwt_extended import decode_token

    with app.test_request_context():
        a = decode_token(create_access_token(identity=str(users["sales"].id)))
        b = decode_token(create_access_token(identity=str(users["sales2"].id)))
    assert a["fam"] and b["fam"] and a["fam"] != b["fam"]
    assert isinstance(a["te"], int)


def test_a_token_with_an_unknown_subject_is_refused(app, client):
    """A validly signed token naming no user id (not issued by this app) is refused, never a 500."""
    with app.test_request_context():
        odd = create_access_token(identity=f"not-a-user-{uuid.uuid4().hex[:6]}")
    assert client.get("/api/auth/me", headers=bearer(odd)).status_code == 401
    assert client.get("/api/v1/customer/", headers=bearer(odd)).status_code == 401


def test_without_redis_refresh_tokens_rotate_and_reuse_ends_the_family(config_class, new_user):
    """The embedded default keeps spent refresh tokens and revoked families in process memory: same rules."""
    from app import create_app

    embedded = create_app(type("EmbeddedConfig", (config_class,), {"REDIS_URL": "", "RATELIMIT_STORAGE_URI": "memory://", "CACHE_TYPE": "SimpleCache"}))
    client = embedded.test_client()
    user = new_user()
    _access, first = api_login(client, user.email)
    rotated = client.post("/api/auth/refresh", headers=bearer(first)).json
    assert answers(client, rotated["token"]) == (200, 200)
    assert client.post("/api/auth/refresh", headers=bearer(first)).status_code == 401
    assert answers(client, rotated["token"]) == (401, 401)
    assert client.post("/api/v1/security/refresh", headers=bearer(rotated["refreshToken"])).status_code == 401


def test_process_memory_of_revocations_forgets_what_has_expired(app, monkeypatch):
    """Revocations kept in process memory are dropped once their tokens would have expired anyway."""
    import time

    from app import tokens

    store = {f"old-{i}": time.time() - 1 for i in range(tokens._LOCAL_PRUNE_SIZE)}
    store["live"] = time.time() + 600
    monkeypatch.setitem(tokens._pruned, "at", 0.0)
    tokens._remember(store, "new", time.time() + 600)
    assert set(store) == {"live", "new"}
