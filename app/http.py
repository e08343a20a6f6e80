"""HTTP hardening for every answer: CORS for configured origins and security headers.

The CSP keeps FAB's screens working from local assets: FAB's templates put a nonce on
every <script> when the template context offers `csp_nonce`, so scripts need no
'unsafe-inline'; inline style attributes in FAB's templates still need it for styles.
"""

import secrets

from flask import current_app, g, request
from flask.sessions import SecureCookieSessionInterface
from flask_cors import CORS

SCREEN_CSP = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# JSON and CSV answers never run scripts or load anything.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def screen_csp():
    """The screens' CSP for this request; connect-src also names the notification stream's origin (bell)."""
    policy = SCREEN_CSP.format(nonce=csp_nonce())
    try:
        from app.stream import stream_origin

        origin = stream_origin(current_app.config, request)
    except RuntimeError:  # outside a request
        origin = ""
    return policy.replace("connect-src 'self';", f"connect-src 'self' {origin};") if origin else policy


def csp_nonce():
    """Return this request's CSP nonce (FAB templates call it for every <script>)."""
    if not hasattr(g, "_csp_nonce"):
        g._csp_nonce = secrets.token_urlsafe(16)
    return g._csp_nonce


def cors_origins(config):
    """The configured CORS origin list (comma-separated CORS_ORIGINS)."""
    raw = config["CORS_ORIGINS"]
    if isinstance(raw, (list, tuple)):
        return list(raw)
    return [o.strip() for o in raw.split(",") if o.strip()]


class CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, without building the signer for a request that sent no cookie.

    Token clients (/api) never send one, and Flask made an itsdangerous serializer (key
    derivation included) on every request before looking, work a cookieless request never uses.
    """

    def open_session(self, app, request):
        """An empty session when the request carries no session cookie (and a key is set), else Flask's."""
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def install(app):
    """Add CORS for /api, the session interface and the security headers to every response of `app`."""
    app.session_interface = CookieSessions()
    origins = cors_origins(app.config)
    if origins:
        CORS(
            app,
            resources={r"/api/*": {"origins": origins}},
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Content-Disposition"],
            max_age=600,
        )
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    fixed = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if app.config["SECURITY_HSTS"]:
        fixed.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))

    @app.after_request
    def security_headers(response):
        """Set CSP, nosniff, frame, referrer (and HSTS in production) headers, unless the view set its own."""
        headers = response.headers
        # One pass over the headers already set rather than one per header (werkzeug's
        # setdefault scans them all each time, on every answer).
        present = {name.lower() for name, _value in headers}
        if "content-security-policy" not in present:
            html = (response.mimetype or "").startswith("text/html")
            headers.add("Content-Security-Policy", screen_csp() if html else API_CSP)
        headers.extend(item for item in fixed if item[0].lower() not in present)
        return response

    # Also applied by the fast path to the answers it gives before Flask (app/fastpath.py).
    app.extensions["crm_security_headers"] = security_headers
