"""API keys for service clients (app/api_keys.py, views/api_keys.py): scope, rotation, revocation, audit, the fast path."""

import re
import uuid

import sqlalchemy as sa

from app import api_keys, caching
from models.api_key import ApiKey
from models.audit import AuditAction, AuditLog
from tests.helpers import StatementLog

LIST = "/api/customers?limit=100"


def _key(app, users, owner="sales", role="Sales", scope="read-write", days=30, name=None):
    """(key row id, key string) made as the Admin screen makes them."""
    from app.extensions import db

    with app.app_context():
        row, raw = api_keys.create(name or f"svc-{uuid.uuid4().hex[:8]}", users[owner].id, role, scope, days)
        db.session.commit()
        return row.id, raw


def _names(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return {row["name"] for row in resp.json["data"]}


def test_a_key_acts_as_its_user_with_its_role_on_both_apis(app, users, client, make):
    mine, theirs = make.customer("sales"), make.customer("sales2")
    _pk, raw = _key(app, users)
    for headers in ({"X-API-Key": raw}, {"Authorization": f"Bearer {raw}"}):
        names = _names(client.get(LIST, headers=headers))
        assert mine.name in names and theirs.name not in names  # app/scope.py: a Sales key sees its user's rows
        assert client.get(f"/api/customers/{theirs.id}", headers=headers).status_code == 404
        assert client.get(f"/api/customers/{mine.id}", headers=headers).status_code == 200
        v1 = client.get(f"/api/v1/customer/{mine.id}", headers=headers)
        assert v1.status_code == 200, v1.get_data(as_text=True)[:300]
        assert client.get(f"/api/v1/customer/{theirs.id}", headers=headers).status_code == 404
    # A Sales key may not do what Sales may not: delete a customer.
    assert client.delete(f"/api/v1/customer/{mine.id}", headers={"X-API-Key": raw}).status_code == 403


def test_a_manager_key_sees_every_row_and_writes_with_read_write(app, users, client, make):
    theirs = make.customer("sales2")
    _pk, raw = _key(app, users, owner="manager", role="Manager")
    assert theirs.name in _names(client.get(LIST, headers={"X-API-Key": raw}))
    resp = client.put(f"/api/customers/{theirs.id}", json={"industry": "金融"}, headers={"X-API-Key": raw})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    v1 = client.put(f"/api/v1/customer/{theirs.id}", json={"industry": "小売"}, headers={"X-API-Key": raw})
    assert v1.status_code == 200, v1.get_data(as_text=True)[:300]
    from app.extensions import db

    db.session.expire_all()
    assert db.session.get(type(theirs), theirs.id).industry == "小売"


def test_read_only_key_is_refused_on_writes_naming_the_scope(app, users, client, make):
    mine = make.customer("sales")
    _pk, raw = _key(app, users, scope="read-only")
    headers = {"X-API-Key": raw}
    assert client.get(f"/api/customers/{mine.id}", headers=headers).status_code == 200
    for resp in (
        client.put(f"/api/customers/{mine.id}", json={"industry": "IT"}, headers=headers),
        client.post("/api/customers", json={"name": "x", "email": "x@example.jp"}, headers=headers),
        client.put(f"/api/v1/customer/{mine.id}", json={"industry": "IT"}, headers=headers),
    ):
        assert resp.status_code == 403 and "scope is read-only" in resp.json["message"], resp.get_data(as_text=True)
    from app.extensions import db

    assert db.session.get(type(mine), mine.id).industry != "IT"  # nothing written


def test_unknown_malformed_and_expired_keys_are_refused(app, users, client, db):
    pk, raw = _key(app, users)
    key_id = raw.split("_")[1]
    for bad, reason in (("crm_nope", "malformed"), (f"crm_{key_id}_{'x' * 43}", "unknown"), ("crm_aaaaaaaaaaaa_" + "y" * 43, "unknown")):
        resp = client.get(LIST, headers={"X-API-Key": bad})
        assert resp.status_code == 401 and reason in resp.json["message"]
    db.session.execute(sa.update(ApiKey).where(ApiKey.id == pk).values(expires_at=sa.func.now() - sa.text("interval '1 minute'")))
    db.session.commit()
    api_keys_forget(app, raw)
    resp = client.get(LIST, headers={"X-API-Key": raw})
    assert resp.status_code == 401 and "expired" in resp.json["message"]


def api_keys_forget(app, raw):
    with app.app_context():
        api_keys.forget(raw.split("_")[1])


def test_key_auth_does_not_open_the_token_endpoints(app, users, client):
    _pk, raw = _key(app, users)
    resp = client.post("/api/auth/logout", headers={"X-API-Key": raw})
    assert resp.status_code == 401


def test_revoked_key_is_refused_at_once_by_another_worker(app, second_app, users, client):
    pk, raw = _key(app, users)
    other = second_app.test_client()
    headers = {"X-API-Key": raw}
    # Both "workers" have verified the key and remember it.
    assert client.get(LIST, headers=headers).status_code == 200
    assert other.get(LIST, headers=headers).status_code == 200
    with app.app_context():
        from app.extensions import db

        api_keys.revoke(pk)
        db.session.commit()
    resp = other.get(LIST, headers=headers)
    assert resp.status_code == 401 and "revoked" in resp.json["message"]
    assert client.get(LIST, headers=headers).status_code == 401


def test_rotation_keeps_both_keys_for_the_overlap_then_refuses_the_old(app, second_app, users, client, db):
    pk, old = _key(app, users)
    other = second_app.test_client()
    assert other.get(LIST, headers={"X-API-Key": old}).status_code == 200
    with app.app_context():
        from app.extensions import db as _db

        new_row, new = api_keys.rotate(pk, 24, 30)
        _db.session.commit()
        new_pk = new_row.id
    for c in (client, other):
        assert c.get(LIST, headers={"X-API-Key": old}).status_code == 200
        assert c.get(LIST, headers={"X-API-Key": new}).status_code == 200
    rotated = db.session.get(ApiKey, new_pk)
    assert rotated.rotated_from_id == pk and rotated.name == db.session.get(ApiKey, pk).name
    # Rotating the new key with no overlap ends it at once, everywhere; its successor works.
    with app.app_context():
        from app.extensions import db as _db

        _newest, newest = api_keys.rotate(new_pk, 0, 30)
        _db.session.commit()
    resp = other.get(LIST, headers={"X-API-Key": new})
    assert resp.status_code == 401 and "rotated" in resp.json["message"]
    assert other.get(LIST, headers={"X-API-Key": newest}).status_code == 200


def test_every_use_is_audited_once_a_minute_with_the_key_name(app, users, client, db):
    name = f"erp-sync-{uuid.uuid4().hex[:6]}"
    pk, raw = _key(app, users, name=name)
    for _ in range(3):
        assert client.get(LIST, headers={"X-API-Key": raw}).status_code == 200
    rows = db.session.execute(
        sa.select(AuditLog).where(AuditLog.action == AuditAction.API_KEY_USED, AuditLog.resource_id == str(pk))
    ).scalars().all()
    assert len(rows) == 1
    assert rows[0].changes["name"] == name and rows[0].user_id == users["sales"].id and rows[0].changes["path"] == "/api/customers"
    assert db.session.get(ApiKey, pk).last_used_at is not None


def test_deactivating_the_keys_user_refuses_the_key(app, users, client, db, new_user):
    from flask_appbuilder.security.sqla.models import User

    person = new_user("Sales")
    with app.app_context():
        from app.extensions import db as _db

        row, raw = api_keys.create("svc-deact", person.id, "Sales", "read-write", 30)
        _db.session.commit()
    assert client.get(LIST, headers={"X-API-Key": raw}).status_code == 200
    user = db.session.get(User, person.id)
    user.active = False
    db.session.commit()
    resp = client.get(LIST, headers={"X-API-Key": raw})
    assert resp.status_code == 401 and "inactive" in resp.json["message"]


def test_the_cached_fast_path_verifies_keys_and_refuses_a_revoked_one(app, users, client, make, redis_cache):
    make.customer("sales")
    pk, raw = _key(app, users)
    headers = {"X-API-Key": raw}
    first = client.get(LIST, headers=headers)
    for _ in range(2):  # stores the fast entry; the first fast hit asks the permission matrix
        assert client.get(LIST, headers=headers).get_data() == first.get_data()
    hits = caching.stats()["hits"]
    with StatementLog(app) as log:
        again = client.get(LIST, headers=headers)
    assert again.status_code == 200 and again.get_data() == first.get_data()
    # Served by app/fastpath.py: no database (the use was audited on the first request of the minute).
    assert log.statements == [] and caching.stats()["hits"] == hits + 1
    with StatementLog(app) as log:
        bearer = client.get(LIST, headers={"Authorization": f"Bearer {raw}"})
    assert bearer.get_data() == first.get_data() and log.statements == []
    # A wrong secret with a remembered key id is never served from the cache.
    forged = raw[: raw.rindex("_") + 1] + "z" * 43
    assert client.get(LIST, headers={"X-API-Key": forged}).status_code == 401
    with app.app_context():
        from app.extensions import db

        api_keys.revoke(pk)
        db.session.commit()
    resp = client.get(LIST, headers=headers)
    assert resp.status_code == 401 and "revoked" in resp.json["message"]


def test_admin_screen_creates_shows_once_rotates_and_revokes(app, users, browser_login, client, db):
    admin = browser_login("admin")
    page = admin.get("/apikeys/")
    assert page.status_code == 200 and "crm-api-key-create" in page.get_data(as_text=True)
    name = f"screen-{uuid.uuid4().hex[:6]}"
    made = admin.post("/apikeys/create", data={"name": name, "user": users["manager"].id, "role": "Manager",
                                               "scope": "read-only", "expires_in_days": "30"})
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    raw = re.search(r'crm-api-key-value"[^>]*>(crm_[^<]+)<', made.get_data(as_text=True)).group(1)
    assert client.get(LIST, headers={"X-API-Key": raw}).status_code == 200
    row = db.session.execute(sa.select(ApiKey).where(ApiKey.name == name)).scalar_one()
    assert raw.split("_", 2)[2] not in str(vars(row))  # only the hash is stored
    listing = admin.get("/apikeys/").get_data(as_text=True)
    assert name in listing and raw not in listing  # shown once

    rotated = admin.post(f"/apikeys/{row.id}/rotate", data={"overlap_hours": "2", "expires_in_days": "30"})
    assert rotated.status_code == 201
    new = re.search(r'crm-api-key-value"[^>]*>(crm_[^<]+)<', rotated.get_data(as_text=True)).group(1)
    assert client.get(LIST, headers={"X-API-Key": raw}).status_code == 200
    assert client.get(LIST, headers={"X-API-Key": new}).status_code == 200

    assert admin.post(f"/apikeys/{row.id}/revoke", data={}).status_code == 200
    assert client.get(LIST, headers={"X-API-Key": raw}).status_code == 401
    assert admin.post(f"/apikeys/{row.id}/revoke", data={}).status_code == 409  # already revoked


def test_admin_screen_refuses_bad_input_naming_the_field(app, users, browser_login, db):
    admin = browser_login("admin")
    before = db.session.execute(sa.select(sa.func.count()).select_from(ApiKey)).scalar_one()
    for data, field in (
        ({"name": "", "user": users["sales"].id, "role": "Sales", "scope": "read-only", "expires_in_days": "30"}, "name"),
        ({"name": "x", "user": users["sales"].id, "role": "Admin", "scope": "read-only", "expires_in_days": "30"}, "role"),
        ({"name": "x", "user": "nobody", "role": "Sales", "scope": "read-only", "expires_in_days": "30"}, "user"),
        ({"name": "x", "user": users["sales"].id, "role": "Sales", "scope": "everything", "expires_in_days": "30"}, "scope"),
        ({"name": "x", "user": users["sales"].id, "role": "Sales", "scope": "read-only", "expires_in_days": "9999"}, "expires_in_days"),
    ):
        resp = admin.post("/apikeys/create", data=data)
        assert resp.status_code == 400 and f'data-field="{field}"' in resp.get_data(as_text=True), (field, resp.status_code)
    assert admin.post(f"/apikeys/{uuid.uuid4()}/revoke", data={}).status_code == 404
    assert db.session.execute(sa.select(sa.func.count()).select_from(ApiKey)).scalar_one() == before


def test_only_admins_reach_the_screen_and_every_change_needs_the_csrf_token(app, users, browser_login):
    for who in ("sales", "manager", "compliance"):
        c = browser_login(who)
        assert c.get("/apikeys/").status_code in (302, 403)
        resp = c.post("/apikeys/create", data={"name": "x", "user": users[who].id, "role": "Sales", "scope": "read-write", "expires_in_days": "1"})
        assert resp.status_code in (302, 403)
    admin = browser_login("admin")
    no_token = admin.post("/apikeys/create", data={"name": "x", "user": users["admin"].id, "role": "Admin",
                                                   "scope": "read-write", "expires_in_days": "1"}, csrf=False)
    assert no_token.status_code == 400
    assert admin.get("/apikeys/create").status_code == 405


def _user_and_key(application, role="Sales", scope="read-write"):
    from app.extensions import db
    from app.services.users import create_user
    from tests.conftest import PASSWORD

    with application.app_context():
        user = create_user(f"svc-{uuid.uuid4().hex[:8]}@example.com", "Service", role, PASSWORD)
        row, raw = api_keys.create("svc", user.id, role, scope, 30)
        db.session.commit()
        return row.id, raw


def test_without_redis_the_row_decides_on_every_request(fresh_app, tmp_path):
    """The embedded default (SQLite, no Redis, one process): keys work, revocation bites at once, uses are throttled."""
    embedded = fresh_app("sqlite", tmp_dir=str(tmp_path), REDIS_URL="", RATELIMIT_STORAGE_URI="memory://")
    pk, raw = _user_and_key(embedded)
    client = embedded.test_client()
    for _ in range(2):
        assert client.get(LIST, headers={"X-API-Key": raw}).status_code == 200
    assert client.post("/api/customers", json={}, headers={"X-API-Key": raw}).status_code == 400  # read-write: the view answers
    from app.extensions import db

    with embedded.app_context():
        used = db.session.execute(sa.select(sa.func.count()).select_from(AuditLog).where(
            AuditLog.action == AuditAction.API_KEY_USED, AuditLog.resource_id == pk)).scalar_one()
        assert used == 1
        api_keys.revoke(pk)
        db.session.commit()
    resp = client.get(LIST, headers={"X-API-Key": raw})
    assert resp.status_code == 401 and "revoked" in resp.json["message"]


def test_redis_down_refuses_key_checks_and_revocation_changes_nothing(fresh_app, private_redis):
    """Fail closed: without the end entries a revoked key cannot be told apart; revoking answers 503 and writes nothing."""
    from app.services.errors import Unavailable

    isolated = fresh_app(REDIS_URL=private_redis.url, RATELIMIT_STORAGE_URI="memory://", REDIS_SOCKET_TIMEOUT=0.5, REDIS_CONNECT_TIMEOUT=0.25)
    pk, raw = _user_and_key(isolated)
    client = isolated.test_client()
    assert client.get(LIST, headers={"X-API-Key": raw}).status_code == 200
    private_redis.stop()
    resp = client.get(LIST, headers={"X-API-Key": raw})
    assert resp.status_code == 503 and "Redis" in resp.json["message"]
    from app.extensions import db

    with isolated.app_context():
        try:
            api_keys.revoke(pk)
            raise AssertionError("revoke succeeded without Redis")
        except Unavailable:
            db.session.rollback()
        assert db.session.get(ApiKey, pk).revoked_at is None


# Last in the module: `limited_app` switches the shared limiter on until the module ends.
def test_a_key_has_its_own_budget_and_refused_keys_pay_per_address(limited_app, users):
    from tests.conftest import from_ip

    budget = int(limited_app.config["API_RATE_LIMIT"].split()[0])
    _pk, raw = _key(limited_app, users, owner="sales2", role="Sales")
    client = limited_app.test_client()
    statuses = [client.get(LIST, headers={"X-API-Key": raw, **from_ip()}).status_code for _ in range(budget + 1)]
    assert statuses == [200] * budget + [429], statuses
    ip = from_ip()
    forged = {"X-API-Key": raw[: raw.rindex("_") + 1] + "q" * 43, **ip}
    statuses = [client.get(LIST, headers=forged).status_code for _ in range(budget + 1)]
    assert statuses == [401] * budget + [429], statuses
