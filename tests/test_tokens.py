"""app/tokens.py: signatures verified once per process, expiry and revocation checked every time."""

import time
from datetime import timedelta

import jwt
from flask_jwt_extended import create_access_token

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
    token = _token(app, users["sales"].id, expires_delta=timedelta(seconds=2))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(LIST, headers=headers).status_code == 200
    time.sleep(2.1)
    resp = client.get(LIST, headers=headers)
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
