"""Login and register limits (flask-limiter on Redis, so every gunicorn worker shares the counts).

Limits are read from the config at request time, so they can be tuned by environment:
LOGIN_RATE_LIMIT_IP / LOGIN_RATE_LIMIT_ACCOUNT, REGISTER_RATE_LIMIT_IP /
REGISTER_RATE_LIMIT_ACCOUNT. One per-account counter serves every way of trying a password:
/api/auth/login, FAB's /api/v1/security/login, FAB's form login and its own-password form. The per-caller budget of every /api request (API_RATE_LIMIT)
is app/budget.py's: it is paid in the request's one Redis read.
"""

from flask import current_app, request
from flask_limiter.util import get_remote_address

from app.extensions import limiter


def config_limit(name):
    """Return a callable reading limit `name` from the app config when a request comes."""
    return lambda: current_app.config[name]


def ip_key():
    """Key a limit by the client IP (the socket's, or TRUSTED_PROXY_COUNT hops back in X-Forwarded-For)."""
    return "ip:" + (get_remote_address() or "unknown")


def _account(name):
    if not isinstance(name, str) or not name.strip():
        return "account:-"
    return "account:" + name.strip().lower()[:254]


def account_key():
    """Key a limit by the account named in the body: JSON `email` or `username`, or the form login's `username`."""
    body = request.get_json(silent=True) if request.is_json else request.form
    name = ""
    if hasattr(body, "get"):  # a JSON object or the form; not a JSON list or string
        name = body.get("email") or body.get("username") or ""
    return _account(name)


def signed_in_account_key():
    """Key a limit by the signed-in user's account (the own-password form)."""
    from flask_login import current_user

    return _account(getattr(current_user, "email", None) if current_user.is_authenticated else None)


def login_limits(view):
    """Per-IP and per-account limits for a login view; ours and FAB's share the counters."""
    view = limiter.shared_limit(config_limit("LOGIN_RATE_LIMIT_IP"), "login-ip", key_func=ip_key, methods=["POST"])(view)
    return own_limits(
        limiter.shared_limit(config_limit("LOGIN_RATE_LIMIT_ACCOUNT"), "login-account", key_func=account_key, methods=["POST"])(view)
    )


def register_limits(view):
    """Per-IP and per-account limits for self-registration."""
    view = limiter.limit(config_limit("REGISTER_RATE_LIMIT_IP"), key_func=ip_key, scope="register-ip")(view)
    return own_limits(limiter.limit(config_limit("REGISTER_RATE_LIMIT_ACCOUNT"), key_func=account_key, scope="register-account")(view))


def own_limits(view):
    """Mark `view` as carrying its own limits: the /api budget (app/budget.py) leaves it to them."""
    view.crm_own_limits = True
    return view


@login_limits
def fab_api_login(*args, **kwargs):
    """FAB's POST /api/v1/security/login, behind the same login limits as /api/auth/login."""
    return current_app.extensions["crm_fab_login"](*args, **kwargs)


def _not_form_login():
    return request.endpoint != "AuthDBView.login"


# Made once: flask-limiter keeps a blueprint's limits in a set, so every app made in one
# process (tests) registers this same limit instead of stacking copies that all count.
_FORM_LOGIN_ACCOUNT = limiter.shared_limit(
    config_limit("LOGIN_RATE_LIMIT_ACCOUNT"), "login-account", key_func=account_key, methods=["POST"], exempt_when=_not_form_login
)
_MY_PASSWORD_ACCOUNT = limiter.shared_limit(
    config_limit("LOGIN_RATE_LIMIT_ACCOUNT"), "login-account", key_func=signed_in_account_key, methods=["POST"]
)

# FAB's blueprints with a password form, and the per-account limit each is put under.
PASSWORD_FORMS = {"AuthDBView": _FORM_LOGIN_ACCOUNT, "ResetMyPasswordView": _MY_PASSWORD_ACCOUNT}


def limit_password_forms(app):
    """Put FAB's form login and own-password form under the per-account login limit the API logins count on.

    FAB's AUTH_RATE_LIMIT counts the form login per client IP only: guesses spread over
    many addresses, or typed into the own-password form of a stolen session, met no limit.
    """
    for name, limit in PASSWORD_FORMS.items():
        blueprint = app.blueprints.get(name)
        if blueprint is not None:
            limit(blueprint)


def install(app):
    """Put FAB's API login under the login limits (decorated once, at import, for every app); see `check_where_limited`."""
    endpoint = "SecurityApi.login"
    if endpoint in app.view_functions and "crm_fab_login" not in app.extensions:
        app.extensions["crm_fab_login"] = app.view_functions[endpoint]
        app.view_functions[endpoint] = fab_api_login
    check_where_limited(app)


# flask-limiter's settings that limit every request: with any of them set its check stays app-wide.
APP_WIDE_SETTINGS = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")


def limited_blueprints(app):
    """The blueprints that carry limits of their own: FAB's form login (AUTH_RATE_LIMIT and the per-account one) and own-password form."""
    names = set(PASSWORD_FORMS)
    auth_view = getattr(app.appbuilder.sm, "auth_view", None)
    if auth_view is not None and auth_view.blueprint is not None:
        names.add(auth_view.blueprint.name)  # AUTH_TYPE decides which login view FAB registers
    return sorted(name for name in names if name in app.blueprints)


def check_where_limited(app):
    """Run flask-limiter's before_request check only for the blueprints that carry limits, not for every request.

    The check is the only place blueprint, default, application and meta limits are
    applied; decorated limits (the logins, register) are checked by their own wrappers
    whatever this does, and the /api budget is app/budget.py's. No default, application
    or meta limit is configured, so on any other request the check finds nothing to count
    yet costs about as much as Flask's own handling of a small request. Flask's scoped hooks
    (`before_request_funcs[blueprint]`) run it where it applies; a limit configured for
    every request (APP_WIDE_SETTINGS) leaves it app-wide.
    """
    if any(app.config.get(name) for name in APP_WIDE_SETTINGS):
        return
    hooks = app.before_request_funcs.get(None, [])
    checks = [hook for hook in hooks if getattr(hook, "__self__", None) is limiter]
    for check in checks:
        hooks.remove(check)
        for name in limited_blueprints(app):
            app.before_request_funcs.setdefault(name, []).insert(0, check)
