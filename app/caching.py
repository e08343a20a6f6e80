"""Answer caching for lists, dashboards and reports, invalidated on commit.

Keys are `answer:<resources>:<scope>:<generations>:<query hash>`:
- resources: the tables the answer is read from (e.g. "customers", "tasks");
- scope: whose visibility the answer was computed for ("all" for Admin, Manager and
  Compliance, "u<id>" for a Sales user, always "u<id>" for notifications), so one user's
  rows are never served to another;
- generations: one counter per resource, replaced after every commit that wrote that table,
  whatever the entry point (screens, both APIs, CLI, workers, consumers), so a write makes
  every older key unreachable and nobody reads their own write stale;
- query hash: the normalised query (path, arguments, locale).

Redis (REDIS_URL) in production, an in-process SimpleCache in the embedded default, a
NullCache in tests unless a test switches it on. When the cache fails the answer is
computed from the database (fail open); the failure is logged once per interval, counted
(`stats()`), and the cache is skipped for a short while so an outage adds no latency.
"""

import hashlib
import json
import logging
import os
import threading
import time
from functools import wraps
from urllib.parse import parse_qsl

import sqlalchemy as sa
from flask import Response, current_app, has_app_context, has_request_context, request
from flask_appbuilder.security.sqla.models import User
from sqlalchemy.orm import MANYTOONE
from werkzeug.http import parse_etags

from app import metrics, tokens
from app.extensions import cache, redis_client
from app.memo import remember
from app.scope import cache_scope, role_names

log = logging.getLogger("crm.cache")

GEN_PREFIX = "gen:"
ANSWER_PREFIX = "answer:"
# FAB's tables that decide a permission check (app/security.py memoises on them).
AUTH_TABLES = (
    "ab_role",
    "ab_permission",
    "ab_view_menu",
    "ab_permission_view",
    "ab_permission_view_role",
    "ab_group",
    "ab_group_role",
)
# Writes to these change who a token's user is (roles, active flag): auth epochs move.
USER_AUTH_TABLES = ("ab_user", "ab_user_role", "ab_user_group")
# FAB user columns that change on every login; they never change a cached answer.
_USER_NOISE = frozenset({"last_login", "login_count", "fail_login_count", "changed_on", "changed_by_fk"})

_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0, "errors": 0, "bypassed": 0}
_state = {"down_until": 0.0, "last_log": 0.0, "pending": set(), "seq": 0}


class CacheDown(Exception):
    """The cache backend failed or is in its back-off window."""


class _NotCacheable(Exception):
    """The computed answer must not be cached (not a 200); carries the response."""

    def __init__(self, response):
        super().__init__("not cacheable")
        self.response = response


# ---------------------------------------------------------------- state and health


def stats():
    """Return this process's cache counters and whether the backend is considered down."""
    with _lock:
        out = dict(_stats)
        out["down"] = time.monotonic() < _state["down_until"]
        out["pending_invalidations"] = len(_state["pending"])
    return out


def reset_state():
    """Forget counters, back-off and pending invalidations (tests, after reconfiguring)."""
    with _lock:
        for key in _stats:
            _stats[key] = 0
        _state.update(down_until=0.0, last_log=0.0, pending=set())


_METRIC_RESULTS = {"hits": "hit", "misses": "miss", "errors": "error", "bypassed": "bypassed"}


def _count(name):
    with _lock:
        _stats[name] += 1
    metrics.count_cache(_METRIC_RESULTS[name])


def count_hit(key, fast=False):
    """Count and log (debug) a cache hit served outside `cached_value` (the fast path)."""
    _count("hits")
    log.debug("Cache HIT%s: %s", " (fast path)" if fast else "", key)


def stats_down():
    """True while the backend is in its back-off window after a failure."""
    return time.monotonic() < _state["down_until"]


def cache_backend():
    """Return the configured cache backend, or None when caching is off (NullCache, no app)."""
    if not has_app_context():
        return None
    try:
        backend = cache.cache
    except (KeyError, AttributeError, RuntimeError):
        return None
    if type(backend).__name__ == "NullCache":
        return None
    return backend


def _call(fn):
    """Run one backend operation; on failure count it, log it once per interval, back off."""
    now = time.monotonic()
    if now < _state["down_until"]:
        _count("bypassed")
        raise CacheDown()
    try:
        return fn()
    except Exception as exc:  # any backend error means "no cache", never a failed request
        config = current_app.config if has_app_context() else {}
        with _lock:
            _stats["errors"] += 1
            metrics.count_cache("error")
            _state["down_until"] = now + float(config["CACHE_RETRY_SECONDS"])
            should_log = now - _state["last_log"] >= float(config["CACHE_ERROR_LOG_SECONDS"])
            if should_log:
                _state["last_log"] = now
        if should_log:
            log.warning("Cache unavailable, answering from the database: %s: %s", type(exc).__name__, exc)
        raise CacheDown() from exc


# ---------------------------------------------------------------- keys and generations


def resource_names(resources):
    """Normalise models, tables or names to a sorted tuple of table names."""
    if isinstance(resources, (str, type)) or hasattr(resources, "__table__"):
        resources = (resources,)
    names = set()
    for res in resources:
        if isinstance(res, str):
            names.add(res)
        elif hasattr(res, "__tablename__"):
            names.add(res.__tablename__)
        elif hasattr(res, "name"):
            names.add(res.name)
        else:
            raise TypeError(f"not a resource: {res!r}")
    return tuple(sorted(names))


def model_resources(model):
    """Return the tables a list of `model` reads: its own and those of its many-to-one relations."""
    mapper = sa.inspect(model)
    names = {t.name for t in mapper.tables}
    for rel in mapper.relationships:
        if rel.direction is MANYTOONE:
            names.update(t.name for t in rel.mapper.tables)
    return tuple(sorted(names))


def scope_key(user, resources=(), per_user=False):
    """Return the visibility key of `user` for `resources` ("all", "u<id>" or "anon"): the scope rule's (app/scope.py)."""
    return cache_scope(getattr(user, "id", None), role_names(user), resource_names(resources), per_user)


def endpoint_scope(spec, user_id, roles, group_roles):
    """The scope part of a `cached_endpoint` answer's key, from the caller's id, direct and group role names.

    The scope rule's visibility (`scope.cache_scope`); when the answer depends on the
    caller's permissions (`by_roles`), also every role name, those of the user's groups
    included, as FAB's permission checks count them.
    """
    scope = cache_scope(user_id, roles, spec["resources"], spec["per_user"])
    if spec["by_roles"]:
        scope = f"{scope}:{','.join(sorted(set(roles) | set(group_roles)))}"
    return scope


def user_scope(spec, user):
    """`endpoint_scope` of a loaded user (a FAB user, or a principal from token claims)."""
    groups = {r.name for group in getattr(user, "groups", None) or () for r in group.roles}
    return endpoint_scope(spec, getattr(user, "id", None), role_names(user), groups)


def role_scope(user, resources=(), per_user=False):
    """The visibility key of `user` plus every role name, for answers that depend on permissions (`endpoint_scope`)."""
    return user_scope({"resources": resource_names(resources), "by_roles": True, "per_user": per_user}, user)


def query_key(path_info, query_string, locale):
    """The normalised query of a request from its raw WSGI path and query string and its locale.

    The answer cache's reader (app/fastpath.py, before Flask parses anything) and its writer
    (the view) both call this on the same raw values, so they always agree.
    """
    raw = (path_info, query_string, locale)
    key = _query_keys.get(raw)
    if key is None:
        # An empty value means "not given" ("?search=" is no search), except a keyset cursor's
        # "?after=" which selects keyset paging from the start.
        args = sorted((k, v) for k, v in parse_qsl(query_string, keep_blank_values=True) if v != "" or k == "after")
        key = json.dumps([path_info, args, locale], ensure_ascii=False, separators=(",", ":"))
        remember(_query_keys, raw, key, _QUERY_KEYS_MAX)
    return key


def request_query_key():
    """Return the normalised query of the current request (`query_key` with the request's locale)."""
    environ = request.environ
    return query_key(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""), request_locale())


# The same raw path, query string and locale always normalise alike: built once per process.
_query_keys = {}
_QUERY_KEYS_MAX = 4096


def request_locale():
    """The request's locale name (e.g. "ja") as FAB's locale selector answers it; "" outside a request."""
    # FAB's locale selector itself (a name such as "ja"): flask-babel's get_locale parses
    # its answer into a babel Locale on every request, and the key needs only the name.
    try:
        return str(current_app.appbuilder.bm.get_locale() or "")
    except Exception:  # outside a request or without FAB's babel manager: one locale
        return ""


def new_token():
    """A generation value never used before (survives restarts and evictions)."""
    with _lock:
        _state["seq"] += 1
        seq = _state["seq"]
    return f"{time.time_ns():x}.{os.getpid():x}.{seq:x}"


def _generations(backend, names):
    """Return the current generation string of `names`, creating missing counters.

    Read once per request and table set (a permission check and the answer share it); a
    commit inside the request forgets it.
    """
    # Kept on the request itself (flask.g belongs to the app context, which tests share).
    seen = request.environ.setdefault("crm.cache_generations", {}) if has_request_context() else None
    if seen is not None and names in seen:
        return seen[names]
    gens = _read_generations(backend, names)
    if seen is not None:
        seen[names] = gens
    return gens


def _read_generations(backend, names):
    flush_pending_invalidations(backend)
    keys = [GEN_PREFIX + n for n in names]
    values = backend.get_many(*keys)
    if any(v is None for v in values):
        for key, value in zip(keys, values):
            if value is None:
                # A fresh token, not 0: an evicted counter must not revive old keys.
                backend.add(key, new_token(), timeout=0)
        values = backend.get_many(*keys)
    return ",".join(str(v) for v in values)


def flush_pending_invalidations(backend):
    """Apply invalidations that failed while the backend was down."""
    if not _state["pending"]:
        return
    with _lock:
        pending, _state["pending"] = _state["pending"], set()
    try:
        backend.set_many({GEN_PREFIX + n: new_token() for n in pending}, timeout=0)
    except Exception:
        with _lock:
            _state["pending"] |= pending
        raise


def answer_key(names, scope, query_key):
    """Return the cache key of one answer; its entry is (generations, value), current while the generations are."""
    digest = hashlib.sha1(query_key.encode("utf-8")).hexdigest()[:20]
    return f"{ANSWER_PREFIX}{'+'.join(names)}:{scope}:{digest}"


# ---------------------------------------------------------------- reading


def answer_backend():
    """The backend that keeps answers and totals, or None when those are not cached.

    CACHE_ANSWERS=0 turns off only what is derived from table data (answers, list totals,
    the fast path) and keeps the permission memo: the benchmark's "uncached" server, i.e.
    every request as the first one after a write.
    """
    backend = cache_backend()
    if backend is None or not current_app.config["CACHE_ANSWERS"]:
        return None
    return backend


def _same_server(a, b):
    ka, kb = a.connection_pool.connection_kwargs, b.connection_pool.connection_kwargs
    return all(ka.get(k) == kb.get(k) for k in ("host", "port", "db", "path"))


def same_redis(backend, client):
    """True when the cache `backend` reads from the Redis server of `client` (decided once per app)."""
    read = getattr(backend, "_read_client", None)
    if read is None:
        return False
    same = current_app.extensions.get("crm_fast_same")
    if same is None or same[0] is not read:
        same = (read, _same_server(read, client))
        current_app.extensions["crm_fast_same"] = same
    return same[1]


def fast_clients():
    """(answer backend, raw client) when answers and token revocations share one Redis, else None.

    Only then does app/fastpath.py answer the hits of `cached_endpoint` views; without it
    (the embedded default's in-process cache) the views answer their own.
    """
    backend = answer_backend()
    client = redis_client() if backend is not None else None
    if client is None or not same_redis(backend, client):
        return None
    return backend, client


def cached_value(resources, scope, query_key, compute, timeout=None):
    """Return compute() cached under (resources, scope, query_key); any picklable value."""
    names = resource_names(resources)
    backend = answer_backend()
    if backend is None:
        return compute()
    key = answer_key(names, scope, query_key)
    try:
        # The generations before computing: a write meanwhile leaves the stored entry stale.
        gens = _call(lambda: _generations(backend, names))
        entry = _call(lambda: backend.get(key))
    except CacheDown:
        return compute()
    if entry is not None and entry[0] == gens:
        _count("hits")
        log.debug("Cache HIT: %s", key)
        return entry[1]
    _count("misses")
    log.debug("Cache MISS: %s", key)
    value = compute()
    try:
        _call(lambda: backend.set(key, (gens, value), timeout=timeout))
    except CacheDown:
        pass
    return value


_memo = {}
_MEMO_MAX = 4096


def memo_seconds():
    """How long a memoised permission answer is believed (PERMISSION_MEMO_SECONDS)."""
    return float(current_app.config["PERMISSION_MEMO_SECONDS"])


def memo(resources, key, compute):
    """Return compute() memoised in this process until a commit writes `resources`, for PERMISSION_MEMO_SECONDS at most.

    For small, hot, rarely written answers (permission checks): the value lives in process
    memory, and only the generations (one cache round trip) are read per call. A commit
    in this process, or in any process sharing the Redis cache, changes the generations at
    once; the in-process cache of the embedded default is not shared, so another process's
    change is seen when the memo's lifetime ends. With no cache backend, or when it is
    down, this is compute() every time.
    """
    names = resource_names(resources)
    backend = cache_backend()
    if backend is None:
        return compute()
    try:
        gens = _call(lambda: _generations(backend, names))
    except CacheDown:
        return compute()
    full_key = (names, key)
    found = _memo.get(full_key)
    now = time.monotonic()
    if found is not None and found[0] == gens and found[2] > now:
        return found[1]
    value = compute()
    remember(_memo, full_key, (gens, value, now + memo_seconds()), _MEMO_MAX)
    return value


def _to_bytes(value):
    """Turn a computed answer into JSON bytes; a non-200 Response is not cacheable."""
    if isinstance(value, tuple):  # a view's (response, status) pair
        response, status = value[0], value[1]
        if status != 200:
            raise _NotCacheable(value)
        value = response
    if isinstance(value, Response):
        if value.status_code != 200:
            raise _NotCacheable(value)
        return value.get_data()
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def etag_of(body):
    """Return the strong ETag of `body` (quoted)."""
    return '"' + hashlib.sha1(body).hexdigest()[:24] + '"'


def cached_json(resources, scope, query_key, compute, timeout=None):
    """Return (body bytes, etag) of compute() (bytes, str, JSON data or a 200 Response), cached (`cached_value`)."""

    def build():
        body = _to_bytes(compute())
        return body, etag_of(body)

    return cached_value(resources, scope, query_key, build, timeout=timeout)


def etag_response(body, etag, status=200, mimetype="application/json", environ=None):
    """Return `body` with its ETag, or an empty 304 when the client already has it.

    `environ`: the request's WSGI environ, for a caller outside a request context (app/fastpath.py).
    """
    if environ is None and has_request_context():
        environ = request.environ
    # If-None-Match parsed only when sent: most API reads carry none, and werkzeug's
    # parsed header sets (Vary, If-None-Match) cost more than the rest of a cache hit's reply.
    sent = environ.get("HTTP_IF_NONE_MATCH") if environ is not None else None
    if sent and parse_etags(sent).contains(etag.strip('"')):
        resp = Response(status=304)
    else:
        resp = Response(body, status=status, mimetype=mimetype)
    resp.headers.extend((("ETag", etag), *_ETAG_HEADERS))
    return resp


# Private and revalidated each time: scope and permission checks run on every request.
_ETAG_HEADERS = (("Cache-Control", "private, no-cache"), ("Vary", "Authorization, Cookie, Accept-Language"))


def cached_response(resources, compute, scope=None, query=None, timeout=None):
    """Answer the current request from cache or compute(); ETag/304; non-200 answers pass through.

    `scope` defaults to the visibility of the acting user, `query` to the normalised request.
    """
    from app.context import current_user_obj

    if answer_backend() is None:
        # Nothing kept: no key to build, only the ETag of the fresh answer.
        try:
            body = _to_bytes(compute())
        except _NotCacheable as exc:
            return exc.response
        return etag_response(body, etag_of(body))
    if scope is None:
        scope = scope_key(current_user_obj(), resources)
    if query is None:
        query = request_query_key()
    try:
        body, etag = cached_json(resources, scope, query, compute, timeout=timeout)
    except _NotCacheable as exc:
        return exc.response
    return etag_response(body, etag)


def cacheable_read():
    """The `cached_endpoint` spec of the view this GET request routes to, else None (not a GET, not cached)."""
    if not has_request_context() or request.method != "GET":
        return None
    return getattr(current_app.view_functions.get(request.endpoint), "crm_cache", None)


def endpoint_spec(resources, by_roles=False, per_user=False, timeout=None, budget=True):
    """What app/fastpath.py needs to answer a view's hits: its tables, how its key is scoped, its timeout.

    `budget`: a hit spends the caller's /api request budget (app/budget.py), as the /api
    blueprint's requests do; FAB's /api/v1 has none.
    """
    return {"resources": resource_names(resources), "by_roles": by_roles, "per_user": per_user, "timeout": timeout, "budget": budget}


def store_answer(spec, compute):
    """Answer the current request with compute(), stored under the key app/fastpath.py reads for the caller (`spec`)."""
    scope = None
    if answer_backend() is not None:
        from app.context import current_user_obj

        scope = user_scope(spec, current_user_obj())
    # The view runs only when app/fastpath.py did not answer: a miss, or a token it could not
    # judge alone (a stale auth epoch). The latter's answer may well be stored under the
    # scope of the user just loaded, so look before computing.
    return cached_response(spec["resources"], compute, scope=scope, timeout=spec["timeout"])


def cached_endpoint(*resources, timeout=None, by_roles=False, per_user=False):
    """Decorate an /api view function (placed under its auth decorator) to store its 200 answers.

    Their hits are answered by app/fastpath.py alone, before the view: the view runs on a
    miss and stores its answer under the key fastpath reads (`endpoint_scope`,
    `request_query_key`); without a shared Redis (`fast_clients`) the view answers them.
    `by_roles`: the answer also depends on the caller's permissions (e.g. a dashboard showing
    only the sections the roles may read), so the role names join the scope of the key.
    `per_user`: the answer depends on who calls, whatever the role (`scope.cache_scope`).
    """
    spec = endpoint_spec(resources, by_roles=by_roles, per_user=per_user, timeout=timeout)

    def decorator(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            return store_answer(spec, lambda: fn(*args, **kwargs))

        # Read by app/fastpath.py (copied onto the auth decorators' wrappers by functools.wraps).
        wrapper.crm_cache = spec

        return wrapper

    return decorator


# ---------------------------------------------------------------- invalidation


def invalidate(*resources):
    """Make every cached answer over `resources` unreachable (call after a commit)."""
    names = resource_names(resources) if resources else ()
    if not names:
        return
    if has_request_context():
        request.environ.pop("crm.cache_generations", None)
    backend = cache_backend()
    if backend is None:
        return
    try:
        _call(lambda: backend.set_many({GEN_PREFIX + n: new_token() for n in names}, timeout=0))
    except CacheDown:
        # Retried on the next successful contact; answers also expire (CACHE_DEFAULT_TIMEOUT).
        with _lock:
            _state["pending"].update(names)


def _tables_of(obj):
    return [t.name for t in sa.inspect(obj).mapper.tables]


def _dirty_tables(obj):
    """Tables an update of `obj` writes: its own for column changes, link tables for collections."""
    state = sa.inspect(obj)
    tables = set()
    for rel in state.mapper.relationships:
        if rel.secondary is not None and state.attrs[rel.key].history.has_changes():
            tables.add(rel.secondary.name)  # many-to-many: e.g. ab_permission_view_role
    changed = {a.key for a in state.mapper.column_attrs if state.attrs[a.key].history.has_changes()}
    if changed and not (isinstance(obj, User) and changed <= _USER_NOISE):
        tables.update(_tables_of(obj))
    return tables


def _after_flush(session, flush_context):
    touched = session.info.setdefault("cache_touched", set())
    auth_users = session.info.setdefault("auth_users", set())
    for obj in list(session.new) + list(session.deleted):
        tables = set(_tables_of(obj))
        for rel in sa.inspect(obj).mapper.relationships:
            if rel.secondary is not None:
                tables.add(rel.secondary.name)
        touched.update(tables)
        if isinstance(obj, User):
            if obj in session.deleted and obj.id is not None:
                auth_users.add(obj.id)  # a new user has no token yet
        elif tables & {"ab_user_role", "ab_user_group"}:
            session.info["auth_everyone"] = True
    for obj in session.dirty:
        tables = _dirty_tables(obj)
        touched.update(tables)
        if isinstance(obj, User) and tables & set(USER_AUTH_TABLES):
            auth_users.add(obj.id)
        elif not isinstance(obj, User) and tables & {"ab_user_role", "ab_user_group"}:
            session.info["auth_everyone"] = True  # memberships changed from the role's side


def _do_orm_execute(state):
    """Bulk UPDATE/DELETE/INSERT statements through the session touch their table too."""
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if table is not None and getattr(table, "name", None):
            state.session.info.setdefault("cache_touched", set()).add(table.name)
            if table.name in USER_AUTH_TABLES:
                state.session.info["auth_everyone"] = True  # bulk: which users is unknown


def _after_commit(session):
    touched = session.info.pop("cache_touched", None)
    users = session.info.pop("auth_users", None)
    everyone = session.info.pop("auth_everyone", False) or bool(touched and set(AUTH_TABLES) & touched)
    if touched:
        invalidate(*touched)
    if (users or everyone) and has_app_context():
        tokens.bump(users or (), everyone=everyone)


def _after_rollback(session):
    for key in ("cache_touched", "auth_users", "auth_everyone"):
        session.info.pop(key, None)


def install(session_class):
    """Attach the invalidation listeners to every session of `session_class`."""
    for name, fn in (
        ("after_flush", _after_flush),
        ("do_orm_execute", _do_orm_execute),
        ("after_commit", _after_commit),
        ("after_rollback", _after_rollback),
    ):
        if not sa.event.contains(session_class, name, fn):
            sa.event.listen(session_class, name, fn)
