"""Flask extensions, created once and bound to an app in create_app()."""

import weakref

from flask_appbuilder.models.sqla.base import SQLA
from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

db = SQLA()
# Batch mode lets SQLite alter tables; compare_type catches column type drift.
migrate = Migrate(render_as_batch=True, compare_type=True)
cache = Cache()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
# Every screen POST carries the form's token; bearer-token APIs are exempt (views/api, FAB's BaseApi).
csrf = CSRFProtect()


def redis_client(app=None):
    """The app's one Redis client (cache, rate-limit budget, token revocations, RQ), or None without REDIS_URL.

    Made once per app and process, with the timeouts of config.py; redis-py's connection
    pool makes it safe to share between threads.
    """
    from flask import current_app

    app = app or current_app
    client = app.extensions.get("crm_redis")
    if client is None and app.config.get("REDIS_URL"):
        import redis

        cfg = app.config
        client = redis.Redis.from_url(
            cfg["REDIS_URL"], socket_timeout=cfg["REDIS_SOCKET_TIMEOUT"], socket_connect_timeout=cfg["REDIS_CONNECT_TIMEOUT"]
        )
        app.extensions["crm_redis"] = client
    return client


def file_storage(app=None):
    """The app's attachment storage (app/storage.py: local folder, or S3 when S3_BUCKET is set), made once per app."""
    from flask import current_app

    app = app or current_app
    store = app.extensions.get("crm_storage")
    if store is None:
        from app.storage import from_config

        store = app.extensions["crm_storage"] = from_config(app.config)
    return store


_scripts = weakref.WeakKeyDictionary()  # client -> {script text: redis-py Script}


def redis_script(client, text):
    """The Lua script `text` registered on `client` (redis-py's Script: EVALSHA, loaded on first use), made once per client."""
    per_client = _scripts.setdefault(client, {})
    script = per_client.get(text)
    if script is None:
        script = per_client[text] = client.register_script(text)
    return script


def shared_redis_cache(app, config, args, kwargs):
    """flask-caching's RedisCache on the app's one Redis client (CACHE_TYPE with REDIS_URL)."""
    from flask_caching.backends.rediscache import RedisCache

    kwargs.update(host=redis_client(app), key_prefix=config.get("CACHE_KEY_PREFIX"))
    return RedisCache(*args, **kwargs)
