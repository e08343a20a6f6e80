"""rq-dashboard (queues, jobs, workers, failed jobs) under RQ_DASHBOARD_URL_PREFIX, for Admins only, behind FAB's login.

rq-dashboard is a Flask blueprint without authentication of its own; `mount` registers
it (with Redis: without it there is no RQ to show) and puts a guard in front of every one
of its requests: anonymous callers are sent to FAB's login and come back afterwards, any
role but Admin gets 403. Its buttons post with jQuery; the page template
(app/templates/rq_dashboard/base.html, the package's own with two additions) gives its
inline script the CSP nonce and sends the CSRF token with every POST, so CSRFProtect and
the screens' CSP stay on here too (with 'unsafe-eval' for its templates, `dashboard_csp`). Its one state change that also answers GET (requeue all
of a queue) answers 405 to a GET.
"""

from flask import abort, current_app, g, redirect, request

from app.scope import ADMIN, role_names

BLUEPRINT = "rq_dashboard"
_POST_ONLY = {"rq_dashboard.requeue_all"}


def admins_only():
    """before_request: the dashboard's requests need a signed-in Admin; others go to the login (anonymous) or get 403."""
    if request.blueprint != BLUEPRINT:
        return None
    user = g.get("user")
    if user is None or not user.is_authenticated:
        return redirect(current_app.appbuilder.get_url_for_login_with(request.full_path))
    if ADMIN not in role_names(user):
        abort(403)
    if request.endpoint in _POST_ONLY and request.method != "POST":
        abort(405)
    return None


def mount(app):
    """Register rq-dashboard on `app` behind `admins_only`; False (nothing mounted) without REDIS_URL."""
    if not app.config["REDIS_URL"]:
        return False
    import rq_dashboard
    from rq_dashboard.web import setup_rq_connection

    # rq-dashboard's documented embedding: its Redis connection from the app's config, then the blueprint.
    app.config["RQ_DASHBOARD_REDIS_URL"] = app.config["REDIS_URL"]
    setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=app.config["RQ_DASHBOARD_URL_PREFIX"])
    app.before_request(admins_only)
    app.after_request(dashboard_csp)
    return True


def dashboard_csp(response):
    """The screens' CSP on the dashboard's pages, plus 'unsafe-eval': its tables are drawn by underscore's `_.template` (new Function).

    Scripts still need the nonce or this origin: markup a job's arguments might put in a
    table (innerHTML) neither runs a <script> nor an inline handler.
    """
    if request.blueprint == BLUEPRINT and (response.mimetype or "").startswith("text/html"):
        from app.http import screen_csp

        response.headers["Content-Security-Policy"] = screen_csp().replace("script-src 'self'", "script-src 'self' 'unsafe-eval'", 1)
    return response
