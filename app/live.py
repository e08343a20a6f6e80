"""Live notifications: after a reaction's transaction commits, tell the recipient's open bells.

`app/reactions.py` records each notification it adds on its session (`note_added`); when
that transaction commits (never before, and nothing when it rolls back) each one is
published as {"userId", "id", "type", "title"}:
- through Redis pub/sub on one channel (`LIVE_CHANNEL`) when the app has Redis, so the
  stream process (`crm stream`, app/stream.py) hears what a Kafka consumer, an RQ job or
  a web process committed;
- to the in-process hub otherwise (the embedded default without Redis: the reactions run
  in the web process, which then serves the stream itself).
`LIVE_BACKEND` (`redis`, `inprocess`; default: `redis` when `REDIS_URL` is set) picks one.
A lost message loses nothing stored: the bell reads its feed again on every (re)connect.
"""

import json
import logging
import threading

import sqlalchemy as sa
from flask import current_app, has_app_context

from app.throttle import log_throttled, reset

log = logging.getLogger(__name__)

_INFO_KEY = "live_notifications"


def backend(config):
    """"redis" or "inprocess": where this process publishes and the stream listens."""
    chosen = config["LIVE_BACKEND"].strip().lower()
    if chosen in ("redis", "inprocess"):
        return chosen
    return "redis" if config.get("REDIS_URL") else "inprocess"


def channel(config):
    """The Redis pub/sub channel of live notifications."""
    return config["LIVE_CHANNEL"]


class Hub:
    """In-process fan-out: listeners `fn(message)` called for every message published in this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._listeners = []

    def subscribe(self, fn):
        """Call `fn(message)` for every message published from now on; return `fn`."""
        with self._lock:
            self._listeners = [*self._listeners, fn]
        return fn

    def unsubscribe(self, fn):
        """Stop calling `fn`."""
        with self._lock:
            self._listeners = [f for f in self._listeners if f is not fn]

    def publish(self, message):
        """Hand `message` to every listener (one failing listener does not stop the others)."""
        for fn in self._listeners:
            try:
                fn(message)
            except Exception:  # noqa: BLE001 - a closed stream must not break a commit
                log.exception("live listener failed")


hub = Hub()


def note_added(session, note):
    """Remember on `session` that `note` (a new, flushed Notification) is published once its transaction commits."""
    session.info.setdefault(_INFO_KEY, []).append((note, message_of(note)))


def message_of(note):
    """The published message of a notification: who it is for and what it is (the bell reads the rest itself)."""
    return {"userId": int(note.user_id), "id": str(note.id), "type": str(note.type), "title": note.title}


def publish(config, messages):
    """Publish `messages` on this process's backend; Redis errors are logged once per interval, never raised."""
    if not messages:
        return
    if backend(config) == "inprocess":
        for message in messages:
            hub.publish(message)
        return
    import redis

    from app.extensions import redis_client

    try:
        client = redis_client()
        name = channel(config)
        for message in messages:
            client.publish(name, json.dumps(message))
        reset("live-redis-down")
    except redis.RedisError as exc:
        log_throttled(log, "live-redis-down", config["EVENTS_LOG_INTERVAL"],
                      "Redis unavailable (%s); open bells catch up at their next connect", exc)


def _after_commit(session):
    # SQLAlchemy also calls after_commit when a savepoint is released: wait for the real commit.
    if session.in_nested_transaction():
        return
    notes = session.info.pop(_INFO_KEY, None)
    if not notes or not has_app_context():
        return
    # A note of a savepoint rolled back since was expunged (transient again): it was never stored.
    publish(current_app.config, [message for note, message in notes if sa.inspect(note).persistent])


def _after_rollback(session, previous_transaction):
    # Only the outermost rollback discards the notifications; a savepoint's keeps the rest.
    if previous_transaction.parent is None and not previous_transaction.nested:
        session.info.pop(_INFO_KEY, None)


def install(session_class):
    """Publish the notifications of every committed transaction of `session_class`'s sessions."""
    for name, fn in (("after_commit", _after_commit), ("after_soft_rollback", _after_rollback)):
        if not sa.event.contains(session_class, name, fn):
            sa.event.listen(session_class, name, fn)
