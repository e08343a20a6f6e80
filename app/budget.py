"""The per-caller /api request budget (API_RATE_LIMIT), charged in the request's one Redis round trip.

flask-limiter counted it with three Redis round trips of its own per request (the hit, then
the window's count and expiry for the X-RateLimit-* headers) and decoded the token once
more, on every /api request. Here the count
rides in the read every authenticated /api request already makes (app/fastpath.py and
app/tokens.py: the blocklist entry, the auth epoch, the cached answer): one Lua script
increments the caller's counter, reads its expiry and MGETs the request's keys. A request
that makes no such read (login, a write, a 401) is charged by the same script alone,
before its view runs or, if it ended before, after.

The semantics are flask-limiter's fixed window (the `limits` library's): a window starts at
the caller's first request and lasts the limit's period; the caller is the token's user
(`user:<id>`), or the client IP without a valid token. Without Redis (the embedded default)
or while it fails, each process counts in memory with `limits`' own fixed-window limiter:
the budget fails open to a per-process one, and the outage is logged.
"""

import logging
import os
import threading
import time

import redis
from flask import current_app, has_request_context, request
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

from app import tokens
from app.extensions import redis_client, redis_script
from app.ratelimits import ip_key
from app.throttle import log_throttled

log = logging.getLogger("crm.budget")

STATE = "crm.budget"  # request.environ key of the request's `Charge`

# KEYS[1] the caller's counter, KEYS[2..] the request's own reads; ARGV[1] the window in seconds.
SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
local values = {}
if #KEYS > 1 then
  values = redis.call('MGET', unpack(KEYS, 2))
end
return {count, ttl, values}
"""

_limits = {}
_memory = {"pid": None, "limiter": None}
_memory_lock = threading.Lock()


class OverBudget(TooManyRequests):
    """429: the caller spent its budget; `retry_after` seconds until its window resets."""

    def __init__(self, limit, retry_after):
        super().__init__(str(limit))
        self.retry_after = retry_after


class Charge:
    """What the request owes and, once charged, what its caller's window holds."""

    __slots__ = ("limit", "caller", "count", "reset_at", "redis_failed")

    def __init__(self, limit, who=None):
        self.limit = limit
        self.caller = who or caller()
        self.count = None  # None: not charged yet
        self.reset_at = None
        self.redis_failed = False

    def record(self, count, ttl):
        """Keep the window's count and expiry as the charge returned them."""
        self.count = int(count)
        self.reset_at = time.time() + max(0, int(ttl))


def limit():
    """The configured API_RATE_LIMIT as a `limits` item (parsed once per text), or None when limiting is off."""
    cfg = current_app.config
    text = cfg.get("API_RATE_LIMIT")
    if not cfg.get("RATELIMIT_ENABLED") or not text:
        return None
    item = _limits.get(text)
    if item is None:
        item = _limits[text] = parse(text)
    return item


def caller():
    """`user:<id>` for a request with a valid bearer token, else `ip:<client address>` (the login limits' key)."""
    key = request.environ.get("crm.api_key")  # app/api_keys.py: a verified key has a budget of its own
    if key is not None:
        return key_caller(key)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        claims = tokens.verified_claims(header[7:].strip())
        if claims is not None and claims.get("sub") is not None:
            return user_caller(claims)
    return ip_key()


def key_caller(state):
    """The budget's caller for a verified API key (app/api_keys.py's `KeyState`): the key."""
    return f"key:{state.id}"


def user_caller(claims):
    """The budget's caller for a verified token's `claims`: its user."""
    return f"user:{claims['sub']}"


def counter_key(charge):
    """The Redis key of the caller's counter; the limit is part of it, so a new limit starts new windows."""
    prefix = current_app.config["RATELIMIT_KEY_PREFIX"]
    return f"{prefix}:api-budget:{charge.caller}:{charge.limit.amount}/{charge.limit.get_expiry()}"


def _due(environ=None):
    if environ is None:
        if not has_request_context():
            return None
        environ = request.environ
    charge = environ.get(STATE)
    return charge if charge is not None and charge.count is None and not charge.redis_failed else None


def mget(client, keys, environ=None):
    """MGET `keys` on `client`; a request that still owes its budget is charged in the same round trip.

    `environ`: the request's WSGI environ, for a caller outside a request context (app/fastpath.py).
    """
    charge = _due(environ)
    if charge is None:
        return client.mget(keys)
    try:
        count, ttl, values = redis_script(client, SCRIPT)(keys=[counter_key(charge), *keys], args=[charge.limit.get_expiry()])
    except redis.RedisError as exc:
        charge.redis_failed = True  # counted in memory by `settle`; the caller has its own fallback
        log_throttled(log, "api-budget", current_app.config["EVENTS_LOG_INTERVAL"],
                      "API budget counters unavailable (Redis: %s): counting per process until it is back", exc, level=logging.ERROR)
        raise
    charge.record(count, ttl)
    return [*values, *[None] * (len(keys) - len(values))]


def _memory_limiter():
    # Made in the process that counts: a gunicorn worker, not the master before the fork.
    with _memory_lock:
        if _memory["pid"] != os.getpid():
            _memory.update(pid=os.getpid(), limiter=FixedWindowRateLimiter(MemoryStorage()))
        return _memory["limiter"]


def _charge_in_memory(charge):
    limiter = _memory_limiter()
    allowed = limiter.hit(charge.limit, "api-budget", charge.caller)
    reset, remaining = limiter.get_window_stats(charge.limit, "api-budget", charge.caller)
    charge.record(charge.limit.amount - remaining if allowed else charge.limit.amount + 1, reset - time.time())


def settle(enforce=True, environ=None):
    """Charge the request if it still owes its budget; with `enforce`, 429 when the caller is over it."""
    environ = request.environ if environ is None else environ
    charge = environ.get(STATE)
    if charge is None:
        return
    if charge.count is None:
        client = None if charge.redis_failed else redis_client()
        if client is not None:
            try:
                mget(client, [], environ)
            except redis.RedisError:
                pass  # logged by `mget`; counted in memory below
        if charge.count is None:
            _charge_in_memory(charge)
    if enforce and charge.count > charge.limit.amount:
        raise OverBudget(charge.limit, max(1, int(charge.reset_at - time.time() + 0.999)))


def start(deferred=False):
    """before_request of /api: the request owes one unit of its caller's budget.

    `deferred`: the request is a GET on a cacheable view, which with a valid bearer token
    pays in the token check's read (tokens.is_revoked; its `authenticated` decorator then
    enforces it); any other request, one with a bad token included, pays now.
    Login and register are left to their own stricter limits, as flask-limiter's route limits
    replaced the blueprint's.
    """
    if request.environ.get(STATE) is not None:
        return  # made by the fast path before the request reached Flask (app/fastpath.py)
    if request.method == "OPTIONS":
        # A browser's CORS preflight: answered by Flask without a view, the database or Redis,
        # and sent without a token, so it would spend its IP's budget (a whole office behind
        # one address) before every cross-origin write.
        return
    item = limit()
    view = current_app.view_functions.get(request.endpoint)
    if item is None or getattr(view, "crm_own_limits", False):  # login, register: stricter limits of their own
        return
    charge = request.environ[STATE] = Charge(item)
    if not deferred or not charge.caller.startswith("user:"):
        settle()


def finish(response, environ=None):
    """after_request of /api: charge a request that ended before paying (a 401), and add the X-RateLimit-* headers."""
    environ = request.environ if environ is None else environ
    charge = environ.get(STATE)
    if charge is None:
        return response
    settle(enforce=False, environ=environ)
    response.headers["X-RateLimit-Limit"] = str(charge.limit.amount)
    response.headers["X-RateLimit-Remaining"] = str(max(0, charge.limit.amount - charge.count))
    response.headers["X-RateLimit-Reset"] = str(int(charge.reset_at))
    return response
