"""Request ids and the one log line per request, around the whole WSGI app (the fast path's hits included).

`Middleware` is the outermost WSGI layer: it takes the caller's `X-Request-ID` when it looks
like an id (letters, digits, `.`, `_`, `:`, `-`; at most 128), else makes one, returns it
on the answer, puts it on every line logged meanwhile (app/logs.py), and when the answer's
body is done logs `crm.request`: method, path, status, duration_ms, route (the URL rule, not
the path with its ids) and user_id. Flask's teardown (`install`) tells it the route; the
user is noted where it is authenticated (`note_user`: the session and token user loaders,
an API key, a login; the fast path's `note`), so a request nothing authenticates never
loads a user for its log line.
"""

import logging
import re
import time
import uuid

from flask import has_request_context, request

from app.logs import request_id_var

log = logging.getLogger("crm.request")

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Load balancers ask these every few seconds: their successful answers are logged at DEBUG.
_PROBES = ("/health", "/ready")
# "crm.route" is also the key app/metrics.py and the fast path write the URL rule under.
ROUTE_KEY, USER_KEY = "crm.route", "crm.user_id"


def accepted_id(value):
    """The caller's request id when it is a sane one, else None."""
    return value if value and _SANE.fullmatch(value) else None


def current_id():
    """The id of the request being handled in this context, else None."""
    return request_id_var.get()


def note(environ, route=None, user_id=None):
    """Record the request's URL rule and user for its log line (the fast path, Flask's teardown)."""
    if route is not None:
        environ[ROUTE_KEY] = route
    if user_id is not None:
        environ[USER_KEY] = user_id


def _user_id(user):
    uid = getattr(user, "id", None)
    if uid is None:
        return None
    try:
        return int(uid)
    except (TypeError, ValueError):
        return uid


def note_user(user):
    """Record `user` (a loaded row or the fast path's claims user) as this request's, for its log line; outside a request a no-op."""
    if user is not None and has_request_context() and getattr(user, "is_authenticated", False):
        note(request.environ, user_id=_user_id(user))


def install(app):
    """Wrap `app`'s WSGI app with `Middleware` and note each Flask request's route at teardown."""

    @app.teardown_request
    def note_route(_exc):
        """The matched URL rule (the user was noted where it was authenticated)."""
        rule = request.url_rule
        note(request.environ, route=rule.rule if rule is not None else None)

    app.wsgi_app = Middleware(app.wsgi_app)


class Middleware:
    """WSGI: the request id in and out, and the request's log line once its body is sent."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        """Serve the request with its id set; log it when the answer is finished."""
        rid = accepted_id(environ.get("HTTP_X_REQUEST_ID")) or uuid.uuid4().hex
        environ["crm.request_id"] = rid
        started = time.perf_counter()
        seen = {}

        def start(status, headers, exc_info=None):
            seen["status"] = status
            if not any(name.lower() == "x-request-id" for name, _value in headers):
                headers.append((HEADER, rid))
            return start_response(status, headers, exc_info)

        # The id is set only while this request's code runs (here, and in each step of its
        # body): a body a server never closes must not lend it to whatever runs next.
        token = request_id_var.set(rid)
        try:
            body = self.wsgi_app(environ, start)
        except BaseException:
            self._finish(environ, rid, started, "500")
            raise
        finally:
            request_id_var.reset(token)
        return _Body(body, rid, lambda: self._finish(environ, rid, started, seen.get("status", "500")))

    @staticmethod
    def _finish(environ, rid, started, status):
        code = int(str(status).split(" ", 1)[0])
        path = environ.get("PATH_INFO", "")
        level = logging.WARNING if code >= 500 else logging.DEBUG if path in _PROBES and code < 400 else logging.INFO
        if log.isEnabledFor(level):
            ms = round((time.perf_counter() - started) * 1000, 1)
            method = environ.get("REQUEST_METHOD", "")
            log.log(level, "%s %s %d %.1f ms", method, path, code, ms, extra={
                "request_id": rid, "method": method, "path": path, "status": code, "duration_ms": ms,
                "route": environ.get(ROUTE_KEY), "user_id": environ.get(USER_KEY),
            })


class _Body:
    """The answer's iterable with the request id set while each part is made; `done` runs once when the server closes it."""

    def __init__(self, body, rid, done):
        self.body = body
        self.rid = rid
        self.done = done
        self._parts = None

    def __iter__(self):
        return self

    def __next__(self):
        token = request_id_var.set(self.rid)
        try:
            if self._parts is None:
                self._parts = iter(self.body)
            return next(self._parts)
        finally:
            request_id_var.reset(token)

    def close(self):
        """Close the wrapped body, then log the request."""
        token = request_id_var.set(self.rid)
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            request_id_var.reset(token)
            done, self.done = self.done, None
            if done is not None:
                done()
