"""Rate limits (flask-limiter on Redis, so every gunicorn worker shares the counts).

Limits are read from the config at request time, so they can be tuned by environment:
LOGIN_RATE_LIMIT_IP / LOGIN_RATE_LIMIT_ACCOUNT, REGISTER_RATE_LIMIT_IP /
REGISTER_RATE_LIMIT_ACCOUNT and API_RATE_LIMIT (per user, per IP when anonymous).
"""

from flask import current_app, request
from flask_jwt_extended import decode_token
from flask_limiter.util import get_remote_address

from app.extensions import limiter


def config_limit(name):
    """Return a callable reading limit `name` from the app config when a request comes."""
    return lambda: current_app.config[name]


def ip_key():
    """Key a limit by the client IP (ProxyFix has resolved X-Forwarded-For)."""
    return "ip:" + (get_remote_address() or "unknown")


def account_key():
    """Key a limit by the account named in the JSON body (email or FAB's username)."""
    body = request.get_json(silent=True) if request.is_json else None
    name = ""
    if isinstance(body, dict):
        name = body.get("email") or body.get("username") or ""
    if not isinstance(name, str) or not name.strip():
        return "account:-"
    return "account:" + name.strip().lower()[:254]


def user_key():
    """Key the API budget by the token's user; unauthenticated or forged tokens count per IP."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        try:
            return "user:" + str(decode_token(header[7:].strip())["sub"])
        except Exception:  # any invalid token: fall back to the IP; the view answers 401
            pass
    return ip_key()


def login_limits(view):
    """Per-IP and per-account limits for a login view; ours and FAB's share the counters."""
    view = limiter.shared_limit(config_limit("LOGIN_RATE_LIMIT_IP"), "login-ip", key_func=ip_key, methods=["POST"])(view)
    return limiter.shared_limit(
        config_limit("LOGIN_RATE_LIMIT_ACCOUNT"), "login-account", key_func=account_key, methods=["POST"]
    )(view)


def register_limits(view):
    """Per-IP and per-account limits for self-registration."""
    view = limiter.limit(config_limit("REGISTER_RATE_LIMIT_IP"), key_func=ip_key, scope="register-ip")(view)
    return limiter.limit(config_limit("REGISTER_RATE_LIMIT_ACCOUNT"), key_func=account_key, scope="register-account")(view)


# The per-user budget of the /api blueprint: one limit object, so an app built twice in a
# process (tests) does not register it twice on the shared limiter.
API_BUDGET = limiter.limit(config_limit("API_RATE_LIMIT"), key_func=user_key, scope="api-user")


@login_limits
def fab_api_login(*args, **kwargs):
    """FAB's POST /api/v1/security/login, behind the same login limits as /api/auth/login."""
    return current_app.extensions["crm_fab_login"](*args, **kwargs)


def install(app):
    """Put FAB's API login under the login limits (decorated once, at import, for every app)."""
    endpoint = "SecurityApi.login"
    if endpoint in app.view_functions and "crm_fab_login" not in app.extensions:
        app.extensions["crm_fab_login"] = app.view_functions[endpoint]
        app.view_functions[endpoint] = fab_api_login
