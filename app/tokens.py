"""Revocable JWTs on FAB's own JWTManager: a Redis blocklist keyed by the token's jti.

FAB creates the JWTManager (`appbuilder.sm.jwt_manager`); `install` adds the blocklist
check to it, so the /api blueprint and FAB's /api/v1 both refuse a revoked token.
"""

import logging
import time

import redis
from flask import current_app

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


def revoke(jwt_payload):
    """Block the token `jwt_payload` until it would have expired anyway."""
    ttl = max(1, int(jwt_payload.get("exp", time.time() + 1) - time.time()) + 1)
    client = redis_client()
    if client is not None:
        client.set(blocklist_key(jwt_payload["jti"]), "1", ex=ttl)
    else:
        # No Redis (the single-process SQLite demo): keep the blocklist in this process.
        memo = current_app.extensions.setdefault("crm_revoked", {})
        memo[jwt_payload["jti"]] = time.time() + ttl


def is_revoked(jwt_payload):
    """True when the token's jti is on the blocklist."""
    jti = jwt_payload.get("jti")
    if not jti:
        return True
    client = redis_client()
    if client is not None:
        return client.exists(blocklist_key(jti)) == 1
    memo = current_app.extensions.get("crm_revoked", {})
    return memo.get(jti, 0) > time.time()


def install(appbuilder):
    """Hook the blocklist into FAB's JWTManager (never a second manager)."""
    jwt_manager = appbuilder.sm.jwt_manager

    @jwt_manager.token_in_blocklist_loader
    def _check(_jwt_header, jwt_payload):
        return is_revoked(jwt_payload)
