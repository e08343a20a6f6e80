"""The seed's REST contract under /api (design.md §6): one blueprint, one module per resource.

`init_api(app, appbuilder)` registers the blueprint, its error answers, the per-user API
budget, the JWT blocklist on FAB's JWTManager, the login limits on FAB's own login,
CORS and the security headers.
"""

import logging
import time

from flask import Blueprint, current_app, request, session
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from app import api_keys, budget, caching, fastpath, http, ratelimits, tokens
from app.extensions import csrf, db, limiter
from app.services import errors
from app.services.errors import DomainError
from views.api import (
    approvals, attachments, audit, auth, customers, health, imports, meetings, notifications, openapi, products, reports,
    screening, tasks,
)
from views.api.common import error_response

log = logging.getLogger(__name__)

RESOURCES = (auth, customers, meetings, tasks, approvals, products, notifications, reports, audit, screening, openapi, attachments, imports)


def create_blueprint():
    """A fresh /api blueprint holding every resource module's blueprint."""
    bp = Blueprint("crm_api", __name__, url_prefix="/api")
    # Bearer tokens only (no cookie a cross-site form could ride on): exempt from CSRF. Flask-WTF
    # looks a nested blueprint up by its own object, so each child is exempted, not only the parent.
    csrf.exempt(bp)
    for module in RESOURCES:
        bp.register_blueprint(module.bp)
        csrf.exempt(module.bp)
    bp.register_error_handler(Exception, handle_error)
    bp.before_request(limit_body_size)
    # The per-caller budget, paid in the request's one Redis read (app/budget.py); login and
    # register carry their own stricter limits (app/ratelimits.py).
    bp.before_request(lambda: budget.start(deferred=caching.cacheable_read() is not None))
    bp.after_request(budget.finish)
    bp.after_request(no_session_cookie)
    return bp


def no_session_cookie(response):
    """Token-authenticated answers never write the session cookie.

    FAB's locale lookup stores the default locale in the session the first time a request
    asks for it (the answer cache keys on the locale), which would sign and send a cookie
    with every answer to a client that never asked for one.
    """
    session.modified = False
    return response


def limit_body_size():
    """JSON bodies under /api are small: a tighter cap than the app-wide MAX_CONTENT_LENGTH (→ 413)."""
    request.max_content_length = current_app.config.get("API_MAX_CONTENT_LENGTH") or request.max_content_length


def is_api_path(path):
    """True for the seed's /api paths and FAB's /api/v1 (both answer JSON)."""
    return path == "/api" or path.startswith("/api/")


def handle_error(exc):
    """Answer any exception raised under /api with `{error, message, details}`, never a bare 500."""
    if isinstance(exc, DomainError):
        db.session.rollback()
        return error_response(exc.status, exc.message, exc.details, exc.error)
    refused = errors.from_database(exc) if isinstance(exc, SQLAlchemyError) else None
    if refused is not None:
        db.session.rollback()
        return error_response(refused.status, refused.message, refused.details, refused.error)
    if isinstance(exc, HTTPException):
        return http_error(exc)
    db.session.rollback()
    if isinstance(exc, SQLAlchemyError):
        log.exception("database error under /api")
    else:
        log.exception("unhandled error under /api")
    return error_response(500, "internal error", {})


def http_error(exc):
    """Werkzeug's HTTP errors (404, 405, 413, 429...) in the /api envelope."""
    status = exc.code or 500
    if status == 413:
        limit = request.max_content_length
        return error_response(413, f"the body is larger than {limit} bytes", {"maxBytes": limit})
    if status == 429:
        return rate_limited(exc)
    if status == 400:
        return error_response(400, exc.description or "bad request", {})
    response, code = error_response(status, exc.description or exc.name, {})
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response, code


def rate_limited(exc):
    """429 with Retry-After (seconds until the breached window resets)."""
    retry_after = getattr(exc, "retry_after", None) or 60  # app/budget.py's OverBudget carries it
    current = getattr(limiter, "current_limit", None)
    if current is not None and not isinstance(exc, budget.OverBudget):
        retry_after = max(1, int(current.reset_at - time.time()))
    response, code = error_response(
        429, "too many requests; try again later", {"limit": str(getattr(exc, "description", "")), "retryAfter": retry_after}
    )
    response.headers["Retry-After"] = str(retry_after)
    return response, code


def share_read_path(app, appbuilder):
    """FAB's generated /api/v1 list reads take the /api read path: app/fastpath.py answers their hits.

    Each ScopedModelApi's list endpoint carries the cache spec and permission the fast path
    reads (as `cached_endpoint` and `requires` give the /api views); the list stores its
    answers under the same key (views/base.py).
    """
    from views.base import ScopedModelApi

    for view in appbuilder.baseviews:
        endpoint = f"{type(view).__name__}.get_list"
        if not isinstance(view, ScopedModelApi) or endpoint not in app.view_functions:
            continue
        bound = app.view_functions[endpoint]

        def v1_list(*args, _bound=bound, **kwargs):
            return _bound(*args, **kwargs)

        v1_list.__name__ = v1_list.__qualname__ = "get_list"
        v1_list.__doc__ = bound.__doc__
        v1_list.crm_cache = view.list_cache_spec()
        v1_list.crm_permission = (f"can_{view.method_permission_name['get_list']}", view.class_permission_name)
        app.view_functions[endpoint] = v1_list

    @app.after_request
    def v1_no_session_cookie(response):
        """FAB's /api/v1 answers token clients: no session cookie either (`no_session_cookie`), so its reads meet the fast path before Flask."""
        return no_session_cookie(response) if request.path.startswith("/api/v1/") else response


def init_api(app, appbuilder):
    """Register /api, /ready, the JWT blocklist, login limits, CORS, security headers and the fast path."""
    tokens.install(appbuilder, read=fastpath.mget_with_epoch)
    app.register_blueprint(create_blueprint())
    app.register_blueprint(health.bp)
    share_read_path(app, appbuilder)
    # Cached GETs with a good token that did not meet app/fastpath.py before Flask: one Redis
    # round trip, no database; first, so the /api budget's own hook sees the charge it made.
    app.before_request_funcs.setdefault(None, []).insert(0, fastpath.before_request)
    # API keys (app/api_keys.py), verified right after: a key's user for both APIs' views.
    api_keys.install(app)
    ratelimits.install(app)
    http.install(app)
    # Cache hits answered before Flask's dispatch (app/fastpath.py).
    if app.config["CACHE_WSGI_HITS"]:
        app.wsgi_app = fastpath.Middleware(app, app.wsgi_app)

    @app.errorhandler(HTTPException)
    def api_http_errors(exc):
        """Unrouted /api paths, 405s, 413s and 429s answer the envelope; screens get a page in their layout."""
        if is_api_path(request.path):
            return http_error(exc)
        from views.errors import screen_error_page  # lists: 4xx pages in the app's layout

        return screen_error_page(exc)
