"""API keys for service clients on /api and /api/v1: create, rotate with an overlap, revoke, verify.

A key is `crm_<key_id>_<secret>` (`secrets.token_hex(6)`, `secrets.token_urlsafe(32)`): 256
bits of secret, so its SHA-256 is what the table keeps (a slow hash adds nothing to a
random secret and would cost every request). It is shown once, when made.

A request presents it as `Authorization: Bearer crm_...` or `X-API-Key: crm_...`. It acts as
its user holding only the key's role, so FAB's permission matrix and app/scope.py apply as
to that user with that role; a read-only key is refused on anything but GET/HEAD/OPTIONS
(403 naming the scope).

What may change about a key is when it ends (revoked: now; rotated: after the overlap).
Each end is written to Redis first — `<API_KEY_REDIS_PREFIX><db tag>:end:<key_id>` holds
the time it ends — then to the database, and every request reads that entry (the cached
path in the same MGET as its answer). So a revocation is refused by every worker from the
next request; when Redis cannot take it, revocation answers 503 and changes nothing.
A process keeps what never changes about a key (hash, user, role, scope, expiry) in memory
for API_KEY_MEMO_SECONDS, with the user's auth epoch (app/tokens.py) of when it read them:
a change of the user's roles or active flag changes that epoch, and the key is read again.
Without Redis (the embedded single process) every request reads the row.

Every use is audited (API_KEY_USED, with the key's name), at most once per key per
API_KEY_AUDIT_SECONDS, which also moves `last_used_at`: a busy client writes one row a
minute, not one per request.
"""

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import redis
import sqlalchemy as sa
from flask import current_app, g, jsonify, request

from app import requestlog
from app.extensions import redis_client
from app.services.errors import Conflict, DomainError, NotFound, Unavailable, ValidationFailed
from models.api_key import ApiKey, ApiKeyScope
from models.audit import AuditAction, AuditLog
from models.base import new_id, utcnow

log = logging.getLogger(__name__)

KEY_PREFIX = "crm_"
HEADER = "X-API-Key"
ENVIRON = "crm.api_key"  # request.environ: the request's verified key (a `KeyState`)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_lock = threading.Lock()


class KeyRefused(DomainError):
    """A key that does not authenticate (401) or may not do this (403)."""

    def __init__(self, status, message):
        super().__init__(message, field="apiKey")
        self.status = status
        self.error = "Unauthorized" if status == 401 else "Forbidden"


@dataclass(frozen=True)
class KeyState:
    """What a process remembers of a key: everything but when it ends early."""

    id: str
    key_id: str
    name: str
    secret_hash: str
    user_id: int
    role: str
    scope: str
    expires_at: float  # unix time
    revoked: bool
    auth_epoch: str | None  # the user's auth epoch when read (None without Redis)
    read_at: float


# ---------------------------------------------------------------- keys and secrets


def _secret_hash(secret):
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret():
    """(key_id, secret, the key a client holds)."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    return key_id, secret, f"{KEY_PREFIX}{key_id}_{secret}"


def parse(raw):
    """(key_id, secret) of a key string, else None."""
    if not isinstance(raw, str) or not raw.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = raw[len(KEY_PREFIX):].partition("_")
    if not sep or len(key_id) != 12 or not secret or len(secret) > 100:
        return None
    return key_id, secret


def presented(headers_or_environ):
    """The key string a request presents (X-API-Key, or a bearer value starting crm_), else None.

    Takes a WSGI environ (the fast path, before Flask) or request.headers.
    """
    get = headers_or_environ.get
    if hasattr(headers_or_environ, "getlist"):  # request.headers
        direct, auth = get(HEADER), get("Authorization", "")
    else:
        direct, auth = get("HTTP_X_API_KEY"), get("HTTP_AUTHORIZATION", "")
    if direct:
        return direct.strip()
    if auth.startswith("Bearer ") and auth[7:].strip().startswith(KEY_PREFIX):
        return auth[7:].strip()
    return None


def _prefix():
    extensions = current_app.extensions
    found = extensions.get("crm_api_key_prefix")
    if found is None:
        tag = hashlib.sha1(str(current_app.config["SQLALCHEMY_DATABASE_URI"]).encode()).hexdigest()[:10]
        found = extensions["crm_api_key_prefix"] = f"{current_app.config['API_KEY_REDIS_PREFIX']}{tag}:"
    return found


def end_key(key_id):
    """The Redis key holding when key `key_id` ends early (revoked or rotated)."""
    return f"{_prefix()}end:{key_id}"


def _used_key(key_id):
    return f"{_prefix()}used:{key_id}"


def _memo():
    return current_app.extensions.setdefault("crm_api_key_memo", {})


# ---------------------------------------------------------------- reading a key


def _read_state(key_id):
    """(the key's row as a `KeyState`, why its user cannot use it or None); (None, None) when there is no such key."""
    from app import tokens
    from app.extensions import db

    # The epoch first: a role or active-flag change after it changes it, so what is read below stays true while it holds.
    row = db.session.execute(sa.select(ApiKey.user_id).where(ApiKey.key_id == key_id)).scalar_one_or_none()
    if row is None:
        return None, None
    epoch = tokens.current_epoch(row) if redis_client() is not None else None
    row = db.session.execute(sa.select(ApiKey).where(ApiKey.key_id == key_id)).scalar_one()
    user = row.user
    why = None
    if user is None or not user.active:
        why = "the API key's user is inactive"
    elif row.role not in {r.name for r in user.roles}:
        why = f"the API key's user no longer holds its role {row.role}"
    return KeyState(
        id=row.id, key_id=row.key_id, name=row.name, secret_hash=row.secret_hash, user_id=row.user_id, role=row.role,
        scope=ApiKeyScope(row.scope).value, expires_at=row.expires_at.timestamp(), revoked=row.revoked_at is not None,
        auth_epoch=epoch, read_at=time.monotonic(),
    ), why


def remembered(key_id):
    """The process's `KeyState` of `key_id` while younger than API_KEY_MEMO_SECONDS, else None."""
    state = _memo().get(key_id)
    if state is not None and time.monotonic() - state.read_at < current_app.config["API_KEY_MEMO_SECONDS"]:
        return state
    return None


def _remember(state):
    memo = _memo()
    if len(memo) > 4096:
        memo.clear()
    memo[state.key_id] = state


def forget(key_id):
    """Drop the process's copy of `key_id` (after this process changed the key)."""
    _memo().pop(key_id, None)


def _check_secret(state, secret):
    if state is None or not hmac.compare_digest(state.secret_hash, _secret_hash(secret)):
        raise KeyRefused(401, "the API key is unknown")


def _ended(state, end_value, now):
    """Why the key no longer works, from its row and its Redis end entry; None while it does."""
    if state.revoked:
        return "the API key has been revoked"
    if end_value is not None:
        at, _, why = (end_value.decode() if isinstance(end_value, bytes) else str(end_value)).partition(":")
        if float(at) <= now:
            return "the API key has been revoked" if why == "revoked" else "the API key was rotated and its overlap has ended"
    if state.expires_at <= now:
        return "the API key has expired"
    return None


def authenticate(raw, method):
    """The `KeyState` of the key string `raw` for a request of `method`; KeyRefused (401/403) otherwise."""
    from app import tokens

    parsed = parse(raw)
    if parsed is None:
        raise KeyRefused(401, "the API key is malformed (expected crm_<id>_<secret>)")
    key_id, secret = parsed
    client = redis_client()
    now = time.time()
    if client is None:
        state, why = _read_state(key_id)  # one process, no shared store: the row is the truth
        _check_secret(state, secret)
        if why:
            raise KeyRefused(401, why)
        end_value = None
    else:
        state = remembered(key_id)
        try:
            values = client.mget([end_key(key_id), *(tokens.epoch_keys(state.user_id) if state else ())])
        except redis.RedisError:
            # Fail closed: without the end entry a revoked key cannot be told apart.
            raise Unavailable("API keys cannot be checked right now (Redis is unavailable); try again") from None
        end_value = values[0]
        if state is not None and "|".join(v.decode() if v else "" for v in values[1:]) != state.auth_epoch:
            state = None  # the user's roles or active flag changed since: read again
        if state is None:
            state, why = _read_state(key_id)
            _check_secret(state, secret)  # before saying anything about the key or its user
            if why:
                raise KeyRefused(401, why)
            _remember(state)
        else:
            _check_secret(state, secret)
    why = _ended(state, end_value, now)
    if why:
        raise KeyRefused(401, why)
    if method not in SAFE_METHODS and state.scope != ApiKeyScope.READ_WRITE.value:
        raise KeyRefused(403, f"the API key's scope is {state.scope}: it may not {method}")
    return state


def principal(state):
    """The user the key acts as: its user's id holding only the key's role (app/security.py's `Principal`)."""
    user = current_app.appbuilder.sm.claims_user(state.user_id, [state.role], [])
    if user is None:
        raise KeyRefused(401, f"the API key's role {state.role} does not exist")
    user.from_claims = False  # FAB's own permission check, through `g._api_key_user`
    user.api_key = state
    return user


def fast_claims(environ):
    """Claims-like values for app/fastpath.py when a GET presents a key this process remembers, else None.

    The fast path then reads the key's end entry and its user's auth epoch in its one MGET
    (`revocation_keys`, `judge`); anything else goes to Flask's path (`authenticate`).
    """
    raw = presented(environ)
    parsed = parse(raw) if raw else None
    if parsed is None:
        return None
    state = remembered(parsed[0])
    if state is None or state.auth_epoch is None or not hmac.compare_digest(state.secret_hash, _secret_hash(parsed[1])):
        return None
    return {"sub": str(state.user_id), "roles": [state.role], "groupRoles": [], "ae": state.auth_epoch, "crm_api_key": state}


def revocation_keys(claims):
    """The Redis keys deciding whether the fast path's key still stands: its end entry."""
    return [end_key(claims["crm_api_key"].key_id)]


def judge(claims, values):
    """From the values of `revocation_keys`: True when the key is refused now, False when good."""
    state = claims["crm_api_key"]
    return _ended(state, values[0], time.time()) is not None


# ---------------------------------------------------------------- audit of use


def note_use_fast(state, environ):
    """`note_use` for a cached answer served before Flask (no request context: the WSGI environ names the request)."""
    try:
        note_use(state, environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""), environ.get("REMOTE_ADDR"))
    except Exception:  # never cost the answer; the next use within the interval is not audited either
        log.exception("API key use could not be audited")


def note_use(state, method, path, ip):
    """Audit a use of the key (API_KEY_USED) and move last_used_at, at most once per API_KEY_AUDIT_SECONDS per key."""
    from app.extensions import db

    interval = current_app.config["API_KEY_AUDIT_SECONDS"]
    client = redis_client()
    if client is not None:
        try:
            if not client.set(_used_key(state.key_id), "1", ex=max(1, interval), nx=True):
                return False
        except redis.RedisError:
            return False  # the request goes on; the next one after Redis returns is audited
    else:
        seen = current_app.extensions.setdefault("crm_api_key_used", {})
        now = time.monotonic()
        with _lock:
            if now - seen.get(state.key_id, -interval) < interval:
                return False
            seen[state.key_id] = now
    now = utcnow()
    # Its own transaction: a cached read writes nothing else, and a write's rollback keeps this.
    with db.engine.begin() as conn:
        conn.execute(AuditLog.__table__.insert().values(
            id=new_id(),
            user_id=state.user_id, action=AuditAction.API_KEY_USED.value, resource_type="api_key",
            resource_id=str(state.id), changes={"name": state.name, "method": method, "path": path[:200]},
            ip_address=ip, timestamp=now,
        ))
        conn.execute(ApiKey.__table__.update().where(ApiKey.__table__.c.id == state.id).values(last_used_at=now))
    return True


# ---------------------------------------------------------------- wiring


def before_request():
    """App-wide before_request: verify a key presented to /api or /api/v1 and act as its user; 401/403 answers otherwise.

    /api/auth/* (logins, tokens) never takes a key.
    """
    path = request.path
    if not (path == "/api" or path.startswith("/api/")) or path.startswith("/api/auth/"):
        return None
    raw = presented(request.headers)
    if raw is None:
        return None
    try:
        state = authenticate(raw, request.method)
        user = principal(state)
    except DomainError as exc:
        _charge_address()
        return jsonify(exc.to_dict()), exc.status  # the /api error shape (design.md §6)
    request.environ[ENVIRON] = state
    g.user = user
    requestlog.note_user(user)
    g._api_key_user = True  # FAB's has_access: the request's user is g.user
    try:
        from app.context import client_ip

        note_use(state, request.method, path, client_ip())
    except Exception:  # the audit row must not cost the request its answer; logged, retried next minute
        log.exception("API key use could not be audited")
    return None


def _charge_address():
    """A refused key pays one unit of its address's /api budget, as a bad token does (429 once it is spent)."""
    from app import budget

    item = budget.limit()
    if item is not None and request.environ.get(budget.STATE) is None:
        request.environ[budget.STATE] = budget.Charge(item)
        budget.settle()


def install(app):
    """Verify API keys before every /api and /api/v1 view: after FAB's hook setting g.user, before the /api blueprint's."""
    app.before_request(before_request)


# ---------------------------------------------------------------- managing keys


def _parse_expiry(days):
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise ValidationFailed("expires_in_days must be a whole number of days", field="expires_in_days") from None
    if not 1 <= days <= current_app.config["API_KEY_MAX_DAYS"]:
        raise ValidationFailed(f"expires_in_days must be between 1 and {current_app.config['API_KEY_MAX_DAYS']}", field="expires_in_days")
    return utcnow() + timedelta(days=days)


def create(name, user_id, role, scope, expires_in_days, created_by=None, rotated_from=None):
    """Make a key (not committed); return (row, the key string to show once). ValidationFailed names the bad field."""
    from app.extensions import db

    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed("name is required (at most 100 characters)", field="name")
    try:
        scope = ApiKeyScope(scope).value
    except ValueError:
        raise ValidationFailed("scope must be read-only or read-write", field="scope") from None
    try:
        user = current_app.appbuilder.sm.get_user_by_id(int(user_id))
    except (TypeError, ValueError):
        user = None
    if user is None or not user.active:
        raise ValidationFailed("user must be an active user", field="user")
    if role not in {r.name for r in user.roles}:
        raise ValidationFailed(f"role must be one of the user's roles ({', '.join(sorted(r.name for r in user.roles))})", field="role")
    expires_at = _parse_expiry(expires_in_days)
    key_id, secret, raw = new_secret()
    row = ApiKey(key_id=key_id, secret_hash=_secret_hash(secret), name=name, user_id=user.id, role=role, scope=scope,
                 expires_at=expires_at, created_by_id=getattr(created_by, "id", None), rotated_from_id=rotated_from)
    db.session.add(row)
    return row, raw


def _set_end(row, at, why):
    """Write when `row` ends to Redis before the database changes; Unavailable (503) when Redis cannot take it."""
    client = redis_client()
    forget(row.key_id)
    if client is None:
        return
    ttl = max(60, int(row.expires_at.timestamp() - time.time()) + 60)
    try:
        client.set(end_key(row.key_id), f"{at.timestamp()}:{why}", ex=ttl)
    except redis.RedisError:
        raise Unavailable("the change could not be recorded for every server (Redis is unavailable); nothing changed") from None


def _live(key_pk):
    from app.extensions import db

    row = db.session.get(ApiKey, key_pk)
    if row is None:
        raise NotFound("API key not found")
    if row.revoked_at is not None:
        raise Conflict("the API key is revoked already", field="key")
    return row


def revoke(key_pk):
    """Revoke a key now, on every worker (Redis first, then the row; not committed)."""
    row = _live(key_pk)
    now = utcnow()
    _set_end(row, now, "revoked")
    row.revoked_at = now
    return row


def rotate(key_pk, overlap_hours, expires_in_days, created_by=None):
    """A new key for the same user, role and scope; the old one works `overlap_hours` more (0: ends now). Not committed.

    Returns (new row, the new key string to show once).
    """
    row = _live(key_pk)
    try:
        hours = float(overlap_hours)
    except (TypeError, ValueError):
        raise ValidationFailed("overlap_hours must be a number of hours", field="overlap_hours") from None
    if not 0 <= hours <= current_app.config["API_KEY_MAX_OVERLAP_HOURS"]:
        raise ValidationFailed(f"overlap_hours must be between 0 and {current_app.config['API_KEY_MAX_OVERLAP_HOURS']}", field="overlap_hours")
    if row.expires_at <= utcnow():
        raise Conflict("the API key has expired: create a new one", field="key")
    new, raw = create(row.name, row.user_id, row.role, row.scope, expires_in_days, created_by=created_by, rotated_from=row.id)
    ends = min(row.expires_at, utcnow() + timedelta(hours=hours))
    _set_end(row, ends, "rotated")
    row.expires_at = ends
    return new, raw
