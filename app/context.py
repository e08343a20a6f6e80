"""Who is acting and from where, for audit rows and events, in any entry point."""

import contextvars
from contextlib import contextmanager

from flask import g, has_request_context, request

_actor = contextvars.ContextVar("crm_actor", default=None)


def current_user_obj():
    """Return the acting FAB user: the request's user, else the one set by `acting_as`."""
    if has_request_context():
        user = getattr(g, "user", None)
        if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "id", None):
            return user
    return _actor.get()


def current_user_id():
    """Return the acting user's id, or None for the system."""
    user = current_user_obj()
    return getattr(user, "id", None)


def client_ip():
    """Return the client IP of the current request, or None outside a request."""
    if has_request_context():
        return request.remote_addr
    return None


@contextmanager
def acting_as(user):
    """Attribute writes made outside a request (CLI, workers, tests) to `user`."""
    token = _actor.set(user)
    try:
        yield user
    finally:
        _actor.reset(token)
