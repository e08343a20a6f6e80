"""Cached /api GETs answered with one Redis round trip and no database query: the one place a hit is answered.

Access tokens carry two extra claims (FAB's JWTManager `additional_claims_loader`, so
/api/auth/login|refresh and FAB's /api/v1/security/login all add them):
- `roles`: the user's role names when the token was issued;
- `ae`: the user's "auth epoch" then ("<everyone>|<user>"), a value replaced after every
  commit that changes the user's roles or active flag, deletes the user, or writes the
  permission tables (app/caching.py's after-commit hook calls `tokens.bump`).

`answer(environ)` serves a GET on a `cached_endpoint` view with a bearer token: Flask's own
URL map routes it, the token's signature and expiry are verified, and ONE MGET reads the
blocklist entries of its jti and family and the copy of its user's token epoch
(app/tokens.py), both auth-epoch counters, the generations of FAB's permission tables and
of the answer's tables, and the answer itself. The answer is served only if the token is
not revoked and not older than its user's token epoch, its auth epoch is current (so its
roles and active flag are still true), the answer's generations are current, and FAB's
permission matrix grants the view's permission. Anything else — no Redis, Redis down, a
stale epoch, a miss — goes on to Flask's normal path, which loads the user from the
database and refuses, or computes and stores (`caching.cached_endpoint`) for the next
request.

Each request meets it once, at one of two doors: around the WSGI app (`Middleware`, before
Flask's request handling) when it can be answered without Flask (`before_flask`: no
cookie, no Origin, no FAB `_l_` locale argument), else as the /api blueprint's first
before_request (`before_request`), whose answer then gets Flask's session, locale and
CORS hooks. CACHE_WSGI_HITS=0 closes the first door: every hit takes the second.
"""

import logging

from flask import current_app, g, request
from flask_jwt_extended import get_jwt
from werkzeug.exceptions import HTTPException

from app import api_keys, budget, caching, metrics, requestlog, tokens
from app.extensions import redis_client

log = logging.getLogger("crm.cache")


# ---------------------------------------------------------------- principals


def _role_claims(claims):
    """(roles, groupRoles, auth epoch, subject) of a token issued with `token_claims`, else None."""
    roles, group_roles, epoch, sub = claims.get("roles"), claims.get("groupRoles"), claims.get("ae"), claims.get("sub")
    if not isinstance(roles, list) or not isinstance(group_roles, list) or not epoch or sub is None:
        return None
    return roles, group_roles, epoch, sub


def _epoch_current(values, epoch):
    """True when the two epoch counters read from Redis (`epoch_keys` order) equal the token's `epoch`."""
    return all(v is not None for v in values) and "|".join(v.decode() for v in values) == epoch


def _subject(claims):
    """The token's user id for the request's log line (an int when it is one)."""
    sub = claims.get("sub")
    return int(sub) if isinstance(sub, str) and sub.isdigit() else sub


def _epoch_reader(claims):
    """The user id whose auth epoch `principal_for` will read for this request, else None."""
    if caching.cacheable_read() is None:
        return None
    found = _role_claims(claims)
    try:
        return int(found[3]) if found is not None else None
    except (TypeError, ValueError):
        return None


def mget_with_epoch(client, keys, claims):
    """MGET `keys`, plus what the permission check of a cacheable read needs next, in one round trip.

    That is the user's auth epoch (`principal_for`) and, when the cache lives on the same
    Redis, the generations of FAB's permission tables (seeded into the request's
    generations, as `caching.memo` would read them).
    """
    user_id = _epoch_reader(claims)
    if user_id is None:
        return budget.mget(client, keys)
    tokens.flush_auth_epochs(client)
    backend = caching.cache_backend()
    names, gen_keys = caching.resource_names(caching.AUTH_TABLES), []
    if backend is not None and caching.same_redis(backend, client):
        try:
            caching.flush_pending_invalidations(backend)
            gen_keys = [backend.key_prefix + caching.GEN_PREFIX + n for n in names]
        except Exception:  # not read here: `caching.memo` reads them itself (and knows outages)
            gen_keys = []
    values = budget.mget(client, [*keys, *tokens.epoch_keys(user_id), *gen_keys])
    n = len(keys)
    g.crm_epoch_read = (user_id, values[n : n + 2])
    gens = values[n + 2 :]
    if gen_keys and all(v is not None for v in gens):
        try:
            generations = ",".join(str(backend.serializer.loads(v)) for v in gens)
        except Exception:  # an unreadable counter: `caching.memo` reads (and repairs) it itself
            generations = None
        if generations is not None:
            request.environ.setdefault("crm.cache_generations", {})[names] = generations
    return values[:n]


def principal_for(claims):
    """A user made from the token's claims (app/security.py's `claims_user`) for a GET on a cacheable /api view whose token's roles are still true, else None.

    The same trust as `serve`: the signature and revocation are checked by flask-jwt-extended
    before this runs, and the auth epoch in the token equals the user's current one, which
    every commit changing the user's roles, groups or active flag replaces. Anything else
    (other views, writes, no Redis, a stale epoch) loads the user row as FAB does.
    """
    user_id = _epoch_reader(claims)
    if user_id is None:
        return None
    roles, group_roles, epoch, _sub = _role_claims(claims)
    read = g.pop("crm_epoch_read", None)
    if read is not None and read[0] == user_id:
        values = read[1]  # read with the blocklist entry (app/tokens.py)
    else:
        client = redis_client()
        if client is None:
            return None
        try:
            tokens.flush_auth_epochs(client)
            values = client.mget(tokens.epoch_keys(user_id))
        except Exception:  # Redis down: the database answers
            return None
    if not _epoch_current(values, epoch):
        return None
    return current_app.appbuilder.sm.claims_user(user_id, roles, group_roles)


# ---------------------------------------------------------------- uncached reads


def permitted(permission, view_name):
    """FAB's permission check for this request's user; from the token's role claims when the user came from them (`principal_for`)."""
    if getattr(getattr(g, "user", None), "from_claims", False):
        names = caching.resource_names(caching.AUTH_TABLES)
        # The generations read with the epoch in the same MGET (`mget_with_epoch`).
        auth_gens = request.environ.get("crm.cache_generations", {}).get(names)
        if auth_gens is not None:
            roles, group_roles, _epoch, _sub = _role_claims(get_jwt())
            return current_app.appbuilder.sm.roles_may(roles, group_roles, permission, view_name, auth_gens)
    return current_app.appbuilder.sm.has_access(permission, view_name)


# ---------------------------------------------------------------- serving


def bearer_claims(header=None):
    """(token, claims) of the request's bearer access token when valid, unexpired and carrying role claims, else None.

    `header`: the Authorization header, when not read from the current request. Any other
    token (invalid, expired, a refresh token, issued without the claims) gives None: the
    normal path answers it, with flask-jwt-extended's 401 and its reason.
    """
    if header is None:
        header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = header[7:].strip()
    claims = tokens.verified_claims(token)
    if claims is None or claims.get("type") != "access" or not claims.get("jti") or _role_claims(claims) is None:
        return None
    return token, claims


def _route(app, environ):
    """(cache spec, permission) of the `cached_endpoint` view Flask's URL map routes this GET to, else None."""
    try:
        rule, _args = app.create_url_adapter(app.request_class(environ)).match(method="GET", return_rule=True)
    except HTTPException:  # not found, a redirect, another method: Flask's path answers
        return None
    environ[metrics.ROUTE_KEY] = rule.rule  # the request's route template, for app/metrics.py and app/requestlog.py
    view = app.view_functions.get(rule.endpoint)
    spec = getattr(view, "crm_cache", None)
    return None if spec is None else (spec, getattr(view, "crm_permission", None))


def answer(environ, route, locale, pair=None):
    """The cached answer of this bearer GET when its token, epochs, generations and permission are current, else None.

    `route`: (cache spec, permission) of its view (`_route`); `locale`: the request's
    locale (part of the answer's key); `pair`: `caching.fast_clients()` when the caller
    has it already. Raises `budget.OverBudget` when the caller's budget, charged in the
    same Redis read, is spent.
    """
    pair = pair or caching.fast_clients()
    if pair is None:
        return None
    found = bearer_claims(environ.get("HTTP_AUTHORIZATION", ""))
    if found is None:
        # An API key this process has verified before (app/api_keys.py), checked in the same read.
        key_claims = api_keys.fast_claims(environ)
        if key_claims is None:
            return None
        found = (None, key_claims)
    requestlog.note(environ, user_id=_subject(found[1]))
    if route[0].get("budget", True) and environ.get(budget.STATE) is None:
        item = budget.limit()
        if item is not None:
            key = found[1].get("crm_api_key")
            environ[budget.STATE] = budget.Charge(item, budget.key_caller(key) if key else budget.user_caller(found[1]))
    query_key = caching.query_key(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""), locale)
    return _answer(pair, environ, found[1], *route, query_key)


def before_flask(environ):
    """True for a GET that `Middleware` answers (or leaves to Flask's normal path) itself: a bearer token, no cookie, Origin or `_l_`."""
    return (
        environ.get("REQUEST_METHOD") == "GET"
        and (environ.get("HTTP_AUTHORIZATION", "").startswith("Bearer ") or "HTTP_X_API_KEY" in environ)
        and "HTTP_COOKIE" not in environ
        and "HTTP_ORIGIN" not in environ
        and "_l_" not in environ.get("QUERY_STRING", "")
    )


def before_request():
    """The app's first before_request: `answer` for a bearer GET on a cached view that `Middleware` did not see."""
    environ = request.environ
    spec = caching.cacheable_read()
    if spec is None or not (environ.get("HTTP_AUTHORIZATION", "").startswith("Bearer ") or "HTTP_X_API_KEY" in environ):
        return None
    if current_app.config["CACHE_WSGI_HITS"] and before_flask(environ):
        return None  # tried before Flask already: a miss or a refusal
    permission = getattr(current_app.view_functions.get(request.endpoint), "crm_permission", None)
    return answer(request.environ, (spec, permission), caching.request_locale())


def _answer(pair, environ, claims, spec, permission, query_key):
    """The cached answer of this GET when its token, epoch, generations and permission are all current, else None.

    `pair`: `caching.fast_clients()`, the cache backend and the raw client of the one Redis both live on;
    `claims`: the request's verified access token (`bearer_claims`).
    """
    if caching.stats_down():
        return None
    backend, client = pair
    roles, group_roles, epoch, sub = _role_claims(claims)
    names = spec["resources"]
    scope = caching.endpoint_scope(spec, sub, roles, group_roles)
    entry_key = caching.answer_key(names, scope, query_key)
    prefix = backend.key_prefix
    # The token's blocklist, family and token-epoch entries (app/tokens.py), or an API key's
    # end entry (app/api_keys.py); then the user's auth epoch.
    checks = api_keys if "crm_api_key" in claims else tokens
    revocation = checks.revocation_keys(claims)
    n_rev = len(revocation)
    keys = [*revocation, *tokens.epoch_keys(sub)]
    keys += [prefix + caching.GEN_PREFIX + n for n in caching.AUTH_TABLES]
    keys += [prefix + caching.GEN_PREFIX + n for n in names]
    keys.append(prefix + entry_key)
    try:
        tokens.flush_auth_epochs(client)
        tokens.flush_pending_epochs(client)
        caching.flush_pending_invalidations(backend)
        values = budget.mget(client, keys, environ)
    except Exception:  # Redis down: the normal path (database) answers
        return None
    budget.settle(environ=environ)  # paid in that read: 429 if the caller is over its budget
    # Revoked, or no copy of the token epoch yet: the normal path refuses or reads the database.
    if checks.judge(claims, values[:n_rev]) is not False or not _epoch_current(values[n_rev : n_rev + 2], epoch):
        log.debug("Fast path: token or key revoked, its token epoch unknown or its auth epoch stale")
        return None
    n_auth = len(caching.AUTH_TABLES)
    first = n_rev + 2
    gens = [backend.serializer.loads(v) if v is not None else None for v in values[first : first + n_auth + len(names)]]
    if any(v is None for v in gens):
        return None
    auth_gens = ",".join(str(v) for v in gens[:n_auth])
    answer_gens = ",".join(str(v) for v in gens[n_auth:])
    entry = backend.serializer.loads(values[-1]) if values[-1] is not None else None
    if not entry or entry[0] != answer_gens:
        log.debug("Fast path MISS: %s", entry_key)
        return None
    if permission is not None and not current_app.appbuilder.sm.roles_may(roles, group_roles, *permission, auth_gens):
        return None
    caching.count_hit(entry_key, fast=True)
    if checks is api_keys:
        api_keys.note_use_fast(claims["crm_api_key"], environ)
    body, etag = entry[1]
    return caching.etag_response(body, etag, environ=environ)


class Middleware:
    """WSGI: `answer` before Flask's request handling (CACHE_WSGI_HITS on), for `before_flask` requests.

    A hit costs one Redis call; Flask's request context, its before- and after-request
    hooks are most of the rest (half of a hit's CPU under load). Its answer carries what
    Flask's hooks would add: the X-RateLimit-* headers (`budget.finish`) and the security
    headers. Misses and refusals go to Flask, which neither charges the budget again nor
    repeats the Redis read.
    """

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        """Answer the request from the cache, or pass it to the wrapped app."""
        if before_flask(environ):
            response = self._hit(environ)
            if response is not None:
                return response(environ, start_response)
        return self.wsgi_app(environ, start_response)

    def _hit(self, environ):
        with self.app.app_context():
            try:
                return self._answer(environ)
            except budget.OverBudget:
                return None  # Flask's path answers the 429, with the charge already made
            except Exception:  # a fault here must not cost the request: Flask's path answers
                log.warning("Fast path middleware failed; Flask answers", exc_info=True)
                return None

    def _answer(self, environ):
        app = self.app
        pair = caching.fast_clients()
        if pair is None:  # no answer cache on Redis (CACHE_ANSWERS off, the embedded default): nothing to route for
            return None
        route = _route(app, environ)
        if route is None:
            return None
        # No session cookie and no `_l_`: FAB's locale selector answers its default.
        response = answer(environ, route, app.appbuilder.bm.babel_default_locale, pair)
        if response is None:
            return None
        budget.finish(response, environ)
        return app.extensions["crm_security_headers"](response)
