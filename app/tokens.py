"""Which JWTs are still good, checked on FAB's own JWTManager for /api and /api/v1 alike.

Three things end a token before it expires:
- its jti on the blocklist: logout, and a refresh token once spent (each refresh token
  works once: /api/auth/refresh and FAB's /api/v1/security/refresh answer a new one);
- its family (claim `fam`): every access and refresh token descending from one login. Logout
  ends the family; so does a spent refresh token coming back (someone holds a copy);
- its token epoch (claim `te`): the user's epoch when it was issued. The epoch is durable
  (table token_epochs, absent meaning 0) and moves in the same transaction as any change
  of the user's password, deactivation or deletion, whatever the entry point (a session
  listener here: the screens, both APIs, `flask fab reset-password`, FAB's user API).

With Redis, the blocklist entry, the family entry and a copy of the epoch are read in the
request's one Redis round trip (`fastpath.mget_with_epoch`; the cached-answer path reads
the same keys in its own MGET). A missing copy is read from the database and stored; a
bump is copied after its commit. Without Redis (the embedded default) revocations live in
process memory and the epoch is read from the database on each check.
"""

import hashlib
import logging
import threading
import time
import uuid

import redis
import sqlalchemy as sa
from flask import current_app, has_app_context, has_request_context, jsonify, request
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token, decode_token, get_jwt, verify_jwt_in_request
from flask_jwt_extended.exceptions import RevokedTokenError

from app import compat
from app.extensions import redis_client, redis_script
from app.memo import remember
from app.throttle import log_throttled
from app.services.errors import Unavailable

log = logging.getLogger(__name__)

EPOCH_CLAIM = "te"
FAMILY_CLAIM = "fam"
# request.environ keys: the refresh token being spent (its successors keep its family and
# epoch), the epoch read before a login's password check, this request's new families, and
# the users whose epoch copy this request has seeded.
ROTATING = "crm.rotating_refresh"
LOGIN_EPOCH = "crm.login_epoch"
FAMILIES = "crm.token_families"
SEEDED = "crm.token_epoch_seeded"

_lock = threading.Lock()
_pending = {}  # epoch key -> epoch: copies to Redis that failed, retried before the next read


def _prefixes():
    """The app's key prefixes of revoked tokens, revoked families and epoch copies, built once per app.

    Epoch copies are per database (user ids are), so two deployments on one Redis never mix.
    """
    extensions = current_app.extensions
    found = extensions.get("crm_token_prefixes")
    if found is None:
        config = current_app.config
        prefix = config["JWT_BLOCKLIST_PREFIX"]
        tag = hashlib.sha1(str(config["SQLALCHEMY_DATABASE_URI"]).encode()).hexdigest()[:10]
        found = extensions["crm_token_prefixes"] = (prefix, f"{prefix}family:", f"{prefix}epoch:{tag}:u")
    return found


def blocklist_key(jti):
    """The Redis key marking token `jti` revoked."""
    return f"{_prefixes()[0]}{jti}"


def family_key(family):
    """The Redis key marking token family `family` revoked."""
    return f"{_prefixes()[1]}{family}"


def epoch_key(user_id):
    """The Redis key of the copy of `user_id`'s token epoch."""
    return f"{_prefixes()[2]}{user_id}"


def _local_blocklist():
    return current_app.extensions.setdefault("crm_revoked", {})


def _local_families():
    return current_app.extensions.setdefault("crm_revoked_families", {})


_LOCAL_PRUNE_SIZE = 4096
_pruned = {"at": 0.0}


def _remember(store, key, until):
    """Keep a revocation in process memory until `until`; entries past their time are dropped now and then."""
    now = time.time()
    if len(store) >= _LOCAL_PRUNE_SIZE and now - _pruned["at"] >= 60:
        _pruned["at"] = now
        for stale in [k for k, v in store.items() if v <= now]:
            store.pop(stale, None)
    store[key] = until


def _user_id(value):
    try:
        return int(getattr(value, "id", value))
    except (TypeError, ValueError):
        return None


def token_epoch(claims):
    """The token epoch a token was issued under (0 for tokens from before epochs existed)."""
    try:
        return int(claims.get(EPOCH_CLAIM) or 0)
    except (TypeError, ValueError):
        return -1  # unreadable: older than any epoch, so refused


# ---------------------------------------------------------------- epochs


def stored_epoch(user_id):
    """The user's token epoch as the database holds it (0 when it never moved)."""
    from app.extensions import db
    from models.token_epoch import TokenEpoch

    value = db.session.execute(sa.select(TokenEpoch.epoch).where(TokenEpoch.user_id == user_id)).scalar_one_or_none()
    return value or 0


def note_login_epoch(user_id):
    """Remember the user's epoch before a login checks the password: a change committed during the check ends the new tokens too."""
    if has_request_context():
        request.environ[LOGIN_EPOCH] = (user_id, stored_epoch(user_id))


def _bump(connection, user_id):
    """Move `user_id`'s epoch on by one in the current transaction; return the new value."""
    from models.base import utcnow
    from models.token_epoch import TokenEpoch

    table, now = TokenEpoch.__table__, utcnow()
    name = connection.dialect.name
    if name in ("postgresql", "sqlite"):
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(user_id=user_id, epoch=1, changed_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.user_id], set_={"epoch": table.c.epoch + 1, "changed_at": now})
        return connection.execute(stmt.returning(table.c.epoch)).scalar_one()
    moved = connection.execute(table.update().where(table.c.user_id == user_id).values(epoch=table.c.epoch + 1, changed_at=now))
    if not moved.rowcount:
        connection.execute(table.insert().values(user_id=user_id, epoch=1, changed_at=now))
    return connection.execute(sa.select(table.c.epoch).where(table.c.user_id == user_id)).scalar_one()


# Raise a copy, never lower it: of two bumps copied out of order the later value stays.
_RAISE_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""


def _copy_ttl():
    return max(1, int(current_app.config["TOKEN_EPOCH_CACHE_SECONDS"]))


def _publish(epochs):
    """Copy committed epochs ({user id: epoch}) to Redis; kept pending when Redis fails."""
    client = redis_client()
    if client is None:
        return
    with _lock:
        for user_id, epoch in epochs.items():
            key = epoch_key(user_id)
            _pending[key] = max(epoch, _pending.get(key, 0))
    try:
        flush_pending_epochs(client)
    except Exception as exc:  # after a commit: never fail the writer
        log.warning("Token epoch copy to Redis failed, pending: %s", exc)


def flush_pending_epochs(client):
    """Write the epoch copies that have not reached Redis yet (a dict check when there are none)."""
    if not _pending:
        return
    with _lock:
        pending = dict(_pending)
    script = redis_script(client, _RAISE_SCRIPT)
    ttl = _copy_ttl()
    for key, epoch in pending.items():
        script(keys=[key], args=[epoch, ttl])
    with _lock:
        for key, epoch in pending.items():
            if _pending.get(key) == epoch:
                del _pending[key]


def _epoch_of(client, claims):
    """The user's epoch from the database, stored as Redis's copy unless a newer one got there first."""
    user_id = _user_id(claims.get("sub"))
    epoch = stored_epoch(user_id)
    if client is not None:
        try:
            client.set(epoch_key(user_id), epoch, ex=_copy_ttl(), nx=True)
        except redis.RedisError:
            pass  # read from the database again next time
    return epoch


# ---------------------------------------------------------------- auth epochs
# Access tokens also carry their user's role names (`roles`, `groupRoles`) and "auth epoch"
# (`ae`: "<everyone>|<user>"), a value replaced after every commit that changes the user's
# roles or active flag, deletes the user, or writes the permission tables (app/caching.py's
# after-commit hook calls `bump`). While the epoch is current the roles in the token are
# still true, so a read can be authorised without loading the user row.

_auth_pending = {"everyone": False, "users": set()}
_auth_lock = threading.Lock()


def _epoch_prefix():
    """Epoch keys are per database (user ids are), so two deployments on one Redis never mix."""
    app = current_app
    prefix = app.extensions.get("crm_epoch_prefix")
    if prefix is None:
        db_uri = str(app.config["SQLALCHEMY_DATABASE_URI"])
        prefix = f"{app.config['AUTH_EPOCH_PREFIX']}{hashlib.sha1(db_uri.encode()).hexdigest()[:10]}:"
        app.extensions["crm_epoch_prefix"] = prefix
    return prefix


def epoch_keys(user_id):
    """The Redis keys of the everyone-epoch and of `user_id`'s epoch."""
    prefix = _epoch_prefix()
    return [prefix + "all", f"{prefix}u{user_id}"]


def current_epoch(user_id):
    """Return the auth epoch of `user_id` ("<everyone>|<user>"), creating missing counters; None without Redis."""
    client = redis_client()
    if client is None:
        return None
    keys = epoch_keys(user_id)
    try:
        flush_auth_epochs(client)
        values = client.mget(keys)
        if any(v is None for v in values):
            for key, value in zip(keys, values):
                if value is None:
                    # A fresh value, never 0: a lost counter must not revive old tokens.
                    client.set(key, uuid.uuid4().hex, nx=True)
            values = client.mget(keys)
    except redis.RedisError:
        return None
    return "|".join(v.decode() for v in values)


def bump(user_ids=(), everyone=False):
    """Replace the epoch of `user_ids` (or everyone's): their tokens leave the fast path."""
    if not user_ids and not everyone:
        return
    with _auth_lock:
        _auth_pending["users"].update(user_ids)
        _auth_pending["everyone"] = _auth_pending["everyone"] or everyone
    client = redis_client()
    if client is None:
        return
    try:
        flush_auth_epochs(client)
    except Exception as exc:  # after a commit: never fail the writer
        # Kept pending: applied before this process serves or issues anything from Redis again.
        log.warning("Auth epoch bump failed, pending: %s", exc)


def flush_auth_epochs(client):
    """Write the auth-epoch bumps that have not reached Redis yet."""
    with _auth_lock:
        users, everyone = set(_auth_pending["users"]), _auth_pending["everyone"]
    if not users and not everyone:
        return
    prefix = _epoch_prefix()
    values = {f"{prefix}u{uid}": uuid.uuid4().hex for uid in users}
    if everyone:
        values[prefix + "all"] = uuid.uuid4().hex
    client.mset(values)
    with _auth_lock:
        _auth_pending["users"] -= users
        if everyone:
            _auth_pending["everyone"] = False


def role_claims(identity):
    """Additional JWT claims: the user's role names and current auth epoch."""
    try:
        user_id = int(getattr(identity, "id", identity))
    except (TypeError, ValueError):
        return {}
    # The epoch first: a role change after this read bumps it, so the roles read below
    # can never be newer than the epoch the token carries.
    epoch = current_epoch(user_id)
    user = current_app.appbuilder.sm.get_user_by_id(user_id)
    if user is None or epoch is None:
        return {}
    # Direct roles decide the scope (app/scope.py); FAB's permission check also counts the
    # roles of the user's groups.
    group_roles = sorted({r.name for group in user.groups for r in group.roles})
    return {"roles": sorted(r.name for r in user.roles), "groupRoles": group_roles, "ae": epoch}


# ---------------------------------------------------------------- checking


def revocation_keys(claims):
    """The Redis keys that decide whether `claims` still stand: its jti, its family, its user's epoch."""
    revoked, families, epochs = _prefixes()  # once: every request builds these keys
    jti = claims.get("jti")
    return [f"{revoked}{jti}", f"{families}{claims.get(FAMILY_CLAIM) or jti}", f"{epochs}{claims.get('sub')}"]


def judge(claims, values):
    """From the values of `revocation_keys`: True when revoked, False when good, None when the epoch copy is missing."""
    if values[0] is not None or values[1] is not None:
        return True
    if values[2] is None:
        return None
    return int(values[2]) > token_epoch(claims)


def is_revoked(jwt_payload, read=None):
    """True when the token is blocklisted, its family revoked, or it predates its user's token epoch.

    `read(client, keys, claims)`: how the revocation keys are read (default: one MGET); the
    /api wiring passes app/fastpath.py's, which charges the request's budget and reads what
    the user lookup needs next in the same round trip.
    """
    jti = jwt_payload.get("jti")
    if not jti or _user_id(jwt_payload.get("sub")) is None:
        return True
    now = time.time()
    family = jwt_payload.get(FAMILY_CLAIM)
    if _local_blocklist().get(jti, 0) > now or (family and _local_families().get(family, 0) > now):
        return True
    client = redis_client()
    if client is None:
        return stored_epoch(_user_id(jwt_payload["sub"])) > token_epoch(jwt_payload)
    try:
        flush_pending_epochs(client)
        keys = revocation_keys(jwt_payload)
        verdict = judge(jwt_payload, read(client, keys, jwt_payload) if read is not None else client.mget(keys))
    except redis.RedisError:
        # Fail open on the blocklist, like the cache: the API keeps serving through a Redis
        # outage and tokens are short-lived (JWT_ACCESS_MINUTES); a logout during the outage
        # answers 503, so no client believes a revocation that was not stored. The epoch
        # is the database's and holds throughout.
        log_throttled(log, "token-blocklist", current_app.config["EVENTS_LOG_INTERVAL"],
                      "Token blocklist unavailable (Redis down): accepting unexpired tokens until it is back", level=logging.ERROR)
        return stored_epoch(_user_id(jwt_payload["sub"])) > token_epoch(jwt_payload)
    if verdict is None:
        return _epoch_of(client, jwt_payload) > token_epoch(jwt_payload)
    return verdict


# ---------------------------------------------------------------- revoking


def _remaining(jwt_payload):
    return max(1, int(jwt_payload.get("exp", time.time() + 1) - time.time()) + 1)


def _family_ttl():
    # Every token of a family expires within the longest lifetime from now.
    cfg = current_app.config
    return int(max(cfg["JWT_ACCESS_TOKEN_EXPIRES"], cfg["JWT_REFRESH_TOKEN_EXPIRES"]).total_seconds()) + 1


def _store(entries, message):
    """SET each (key, ttl) in Redis in one round trip; Unavailable (503) when Redis fails."""
    client = redis_client()
    if client is None:
        return  # no Redis: the single-process demo, where process memory is the blocklist
    try:
        pipe = client.pipeline(transaction=False)
        for key, ttl in entries:
            pipe.set(key, "1", ex=ttl)
        pipe.execute()
    except redis.RedisError:
        log.error("Token revocation could not be stored: Redis is unavailable")
        raise Unavailable(message) from None


def revoke(jwt_payload):
    """Block the token `jwt_payload` until it would have expired anyway (503 if Redis is down)."""
    ttl = _remaining(jwt_payload)
    # This process refuses the token at once whatever happens to Redis.
    _remember(_local_blocklist(), jwt_payload["jti"], time.time() + ttl)
    _store([(blocklist_key(jwt_payload["jti"]), ttl)], "logout could not be recorded for every server; try again")


def end_session(jwt_payload):
    """Revoke the token and its whole family (every access and refresh token of its login)."""
    entries = [(blocklist_key(jwt_payload["jti"]), _remaining(jwt_payload))]
    # This process refuses the whole login at once whatever happens to Redis.
    _remember(_local_blocklist(), jwt_payload["jti"], time.time() + entries[0][1])
    family = jwt_payload.get(FAMILY_CLAIM)
    if family:
        entries.append((family_key(family), _family_ttl()))
        _remember(_local_families(), family, time.time() + entries[1][1])
    _store(entries, "logout could not be recorded for every server; try again")


def _spend(jwt_payload):
    """Mark a refresh token used; False when it already was (by this or another process)."""
    jti, ttl = jwt_payload["jti"], _remaining(jwt_payload)
    client = redis_client()
    if client is None:
        # The single-process demo: process memory is the record of spent tokens.
        local = _local_blocklist()
        with _lock:
            if local.get(jti, 0) > time.time():
                return False
            _remember(local, jti, time.time() + ttl)
        return True
    try:
        # Atomic: of two uses of one token at once, in any processes, exactly one wins.
        return bool(client.set(blocklist_key(jti), "1", ex=ttl, nx=True))
    except redis.RedisError:
        log.error("Refresh could not be recorded: Redis is unavailable")
        raise Unavailable("the refresh could not be recorded for every server; try again") from None


def spend_refresh_token():
    """Verify the request's refresh token and spend it; return its claims (the new tokens keep its family and epoch).

    Raises flask-jwt-extended's errors (missing, invalid, expired, revoked, an access token),
    and RevokedTokenError for a refresh token spent before, after revoking its family:
    whoever presents it again holds a copy, and so may whoever holds its successors.
    """
    try:
        verify_jwt_in_request(refresh=True)
    except RevokedTokenError as exc:
        if exc.jwt_data.get("type") == "refresh":
            end_session(exc.jwt_data)
        raise
    claims = get_jwt()
    if not _spend(claims):
        end_session(claims)
        raise RevokedTokenError({}, claims)
    request.environ[ROTATING] = claims
    return claims


def refreshed_tokens(claims):
    """(access token, refresh token) succeeding the spent refresh token `claims`."""
    return create_access_token(identity=claims["sub"], fresh=False), create_refresh_token(identity=claims["sub"])


def fab_refresh():
    """FAB's POST /api/v1/security/refresh, rotating like /api/auth/refresh: `{"access_token", "refresh_token"}`."""
    try:
        claims = spend_refresh_token()
    except Unavailable as exc:
        return jsonify(message=exc.message), 503
    access, refresh = refreshed_tokens(claims)
    return jsonify(access_token=access, refresh_token=refresh)


# ---------------------------------------------------------------- issuing


def session_claims(identity):
    """The claims every token carries: its user's token epoch (`te`) and its family (`fam`)."""
    user_id = _user_id(identity)
    if user_id is None:
        return {}
    if not has_request_context():
        return {EPOCH_CLAIM: stored_epoch(user_id), FAMILY_CLAIM: uuid.uuid4().hex}
    environ = request.environ
    seeded = environ.setdefault(SEEDED, set())
    if user_id not in seeded:
        seeded.add(user_id)
        _seed_copy(user_id)
    rotating = environ.get(ROTATING)
    if rotating is not None and _user_id(rotating.get("sub")) == user_id:
        return {EPOCH_CLAIM: token_epoch(rotating), FAMILY_CLAIM: rotating.get(FAMILY_CLAIM) or uuid.uuid4().hex}
    # The access and refresh token of one login share a family (FAB's login makes them apart).
    family = environ.setdefault(FAMILIES, {}).setdefault(user_id, uuid.uuid4().hex)
    return {EPOCH_CLAIM: epoch_at_login(user_id), FAMILY_CLAIM: family}


def epoch_at_login(user_id):
    """The user's epoch as this request's login read it before checking the password, else as stored now."""
    noted = request.environ.get(LOGIN_EPOCH) if has_request_context() else None
    return noted[1] if noted is not None and noted[0] == user_id else stored_epoch(user_id)


def _seed_copy(user_id):
    """Give Redis a copy of the user's epoch when it has none, so the new tokens' first requests read no database."""
    client = redis_client()
    if client is None:
        return
    try:
        flush_pending_epochs(client)
        # As stored now (not as a login noted it): a raise by a concurrent change wins anyway.
        client.set(epoch_key(user_id), stored_epoch(user_id), ex=_copy_ttl(), nx=True)
    except redis.RedisError:
        pass  # the first check reads the database instead


def install_claims(appbuilder, *more):
    """Make every token FAB's JWTManager issues carry `session_claims` and the claims of each loader in `more`."""

    def claims(identity):
        out = {}
        for loader in more:
            out.update(loader(identity))
        out.update(session_claims(identity))
        return out

    appbuilder.sm.jwt_manager.additional_claims_loader(claims)


# ---------------------------------------------------------------- epochs move with the user


def _deactivated(user):
    hist = sa.inspect(user).attrs.active.history
    return bool(hist.added) and not hist.added[0] and (not hist.deleted or bool(hist.deleted[0]))


def _after_flush(session, flush_context):
    from flask_appbuilder.security.sqla.models import User

    from app import passwords

    ended = {obj.id for obj in session.dirty if isinstance(obj, User) and (passwords.changed(obj) or _deactivated(obj))}
    ended |= {obj.id for obj in session.deleted if isinstance(obj, User) and obj.id is not None}
    moved = session.info.setdefault("crm_token_epochs", {})
    ended -= moved.keys()  # once per transaction is enough: no token saw the first move
    if ended:
        connection = session.connection()
        for user_id in sorted(ended):
            moved[user_id] = _bump(connection, user_id)


def _after_commit(session):
    moved = session.info.pop("crm_token_epochs", None)
    if moved and has_app_context():
        _publish(moved)


def _after_rollback(session):
    session.info.pop("crm_token_epochs", None)


def install_listeners(session_class):
    """Move a user's token epoch with every password change, deactivation or deletion, in the same transaction."""
    for name, fn in (("after_flush", _after_flush), ("after_commit", _after_commit), ("after_rollback", _after_rollback)):
        if not sa.event.contains(session_class, name, fn):
            sa.event.listen(session_class, name, fn)


# ---------------------------------------------------------------- wiring

_DECODED_MAX = 4096


class SignatureMemoJWTManager(JWTManager):
    """FAB's JWT manager verifying each token's signature once per process: later uses check only its expiry.

    An HMAC signature over the same bytes verifies the same way every time, and PyJWT's
    checks (three parses, every base64 character, the HMAC) are a large part of a cached
    answer's cost. Tokens with a CSRF value or decoded with `allow_expired` take the full
    path; revocation is checked on every request by the blocklist hook, after this.
    flask-jwt-extended offers loaders for keys, claims and users, none for the decode
    itself, so this overrides the one method every decode goes through (pinned by
    tests/test_compat.py).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.verified_signatures = {}

    def _decode_jwt_from_config(self, encoded_token, csrf_value=None, allow_expired=False):
        decode = super()._decode_jwt_from_config
        return _remembered(decode, self.verified_signatures, encoded_token, csrf_value, allow_expired)


def _remembered(decode, memo, encoded_token, csrf_value, allow_expired):
    """`decode`'s claims of a token, from `memo` when its signature was verified before and it has not expired."""
    if csrf_value is not None or allow_expired:
        return decode(encoded_token, csrf_value, allow_expired)
    claims = memo.get(encoded_token)
    # Not-before has passed when it was verified; expiry is checked here, each time.
    if claims is not None and claims.get("exp", 0) > time.time():
        return dict(claims)
    claims = decode(encoded_token, csrf_value, allow_expired)  # raises what flask-jwt-extended expects
    if "exp" in claims:
        remember(memo, encoded_token, dict(claims), _DECODED_MAX)
    return claims


def verified_claims(token):
    """The claims of a valid, unexpired token as FAB's JWT manager decodes it (`decode_token`), else None.

    Revocation is not decided here: the blocklist loader (`is_revoked`) and the fast path's
    read do.
    """
    try:
        return decode_token(token)
    except Exception:  # invalid, expired, malformed: not a caller's token
        return None


def install(appbuilder, read=None):
    """Hook the checks and claims into FAB's JWTManager (never a second manager); make FAB's refresh rotate.

    `read`: how `is_revoked` reads its keys (see there).
    """
    jwt_manager = appbuilder.sm.jwt_manager
    install_claims(appbuilder, role_claims)

    @jwt_manager.token_in_blocklist_loader
    def _check(_jwt_header, jwt_payload):
        return is_revoked(jwt_payload, read)

    app = current_app
    if "SecurityApi.refresh" in app.view_functions:
        app.view_functions["SecurityApi.refresh"] = fab_refresh
