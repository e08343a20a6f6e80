"""Who is acting and from where, for audit rows and events, in any entry point."""

import contextvars
from contextlib import contextmanager

from flask import g, has_request_context, request

_UNSET = object()
# An explicit `acting_as` wins over the request's user: reactions run at the end of a
# request (the in-process event drain) act as the system or a record's owner.
_actor = contextvars.ContextVar("crm_actor", default=_UNSET)


def current_user_obj():
    """Return the acting FAB user: the one set by `acting_as`, else the request's user."""
    actor = _actor.get()
    if actor is not _UNSET:
        return actor
    if has_request_context():
        user = getattr(g, "user", None)
        if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "id", None):
            return user
    return None


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
