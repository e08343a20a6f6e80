"""Revocable JWTs on FAB's own JWTManager: a Redis blocklist keyed by the token's jti.

FAB creates the JWTManager (`appbuilder.sm.jwt_manager`); `install` adds the blocklist
check to it, so the /api blueprint and FAB's /api/v1 both refuse a revoked token.
"""

import logging
import time

import redis
from flask import current_app

from app.services.errors import Unavailable

log = logging.getLogger(__name__)


def redis_client(app=None):
    """Return the app's shared Redis client (None when REDIS_URL is not set)."""
    app = app or current_app
    client = app.extensions.get("crm_redis")
    if client is None and app.config.get("REDIS_URL"):
        client = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=2, socket_connect_timeout=2)
        app.extensions["crm_redis"] = client
    return client


def blocklist_key(jti):
    """The Redis key marking token `jti` revoked."""
    return f"{current_app.config.get('JWT_BLOCKLIST_PREFIX', 'crm:jwt:revoked:')}{jti}"


def _local_blocklist():
    return current_app.extensions.setdefault("crm_revoked", {})


def revoke(jwt_payload):
    """Block the token `jwt_payload` until it would have expired anyway (503 if Redis is down)."""
    ttl = max(1, int(jwt_payload.get("exp", time.time() + 1) - time.time()) + 1)
    # This process refuses the token at once whatever happens to Redis.
    _local_blocklist()[jwt_payload["jti"]] = time.time() + ttl
    client = redis_client()
    if client is None:
        return  # no Redis: the single-process demo, where process memory is the blocklist
    try:
        client.set(blocklist_key(jwt_payload["jti"]), "1", ex=ttl)
    except redis.RedisError:
        log.error("Token revocation could not be stored: Redis is unavailable")
        raise Unavailable("logout could not be recorded for every server; try again") from None


def is_revoked(jwt_payload):
    """True when the token's jti is on the blocklist."""
    jti = jwt_payload.get("jti")
    if not jti:
        return True
    if _local_blocklist().get(jti, 0) > time.time():
        return True
    client = redis_client()
    if client is None:
        return False
    try:
        from app import fastpath

        # The same round trip reads the auth epoch the user lookup needs next.
        return fastpath.mget_with_epoch(client, [blocklist_key(jti)], jwt_payload)[0] is not None
    except redis.RedisError:
        # Fail open, like the cache: the API keeps serving through a Redis outage and
        # tokens are short-lived (JWT_ACCESS_MINUTES); a logout during the outage answers
        # 503, so no client believes a revocation that was not stored.
        log_outage(log, "Token blocklist unavailable (Redis down): accepting unexpired tokens until it is back")
        return False


_last_outage_logs = {}


def log_outage(logger, message, *args):
    """Log a Redis outage's `message` on `logger` at most once per EVENTS_LOG_INTERVAL seconds (each request meets it)."""
    now = time.monotonic()
    last = _last_outage_logs.get(message)
    if last is None or now - last >= current_app.config.get("EVENTS_LOG_INTERVAL", 30):
        _last_outage_logs[message] = now
        logger.error(message, *args)


_DECODED_MAX = 4096


def remember_signatures(jwt_manager):
    """Verify each token's signature once per process: later uses check only its expiry.

    An HMAC signature over the same bytes verifies the same way every time, and PyJWT's
    checks (three parses, every base64 character, the HMAC) are a large part of a cached
    answer's cost. Tokens with a CSRF value or decoded with `allow_expired` take the full
    path; revocation is checked on every request by the blocklist hook, after this.
    """
    decode = jwt_manager._decode_jwt_from_config  # the one method every decode goes through
    memo = {}

    def remembered(encoded_token, csrf_value=None, allow_expired=False):
        if csrf_value is not None or allow_expired:
            return decode(encoded_token, csrf_value, allow_expired)
        claims = memo.get(encoded_token)
        # Not-before has passed when it was verified; expiry is checked here, each time.
        if claims is not None and claims.get("exp", 0) > time.time():
            return dict(claims)
        claims = decode(encoded_token, csrf_value, allow_expired)  # raises what flask-jwt-extended expects
        if "exp" in claims:
            if len(memo) >= _DECODED_MAX:
                memo.clear()
            memo[encoded_token] = dict(claims)
        return claims

    jwt_manager._decode_jwt_from_config = remembered


def install(appbuilder):
    """Hook the blocklist into FAB's JWTManager (never a second manager)."""
    jwt_manager = appbuilder.sm.jwt_manager
    remember_signatures(jwt_manager)

    @jwt_manager.token_in_blocklist_loader
    def _check(_jwt_header, jwt_payload):
        return is_revoked(jwt_payload)
