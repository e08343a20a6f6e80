"""Getting committed outbox rows moving: the after-commit kick and the in-process drain.

When a transaction that wrote outbox rows commits:
- Kafka enabled: an RQ relay job is enqueued (after commit, never inside the transaction);
  when Redis is down the failure is logged once per interval and the periodic sweep of the
  worker publishes the rows later.
- Kafka disabled (the embedded default): the outbox is drained at once, in this thread, in
  a new session, to the same reactions the Kafka consumer runs, so a client sees the
  effect as soon as its request returns.
"""

import logging
import threading
import time

import sqlalchemy as sa
from flask import current_app, has_app_context

from app import logs
from app.extensions import redis_client
from app.throttle import log_throttled, reset
from models.base import utcnow
from models.outbox import OutboxEvent

log = logging.getLogger(__name__)

RELAY_KICK_KEY = "crm:{queue}:relay-kick"
_local = threading.local()
_redis_down_until = [0.0]


# --- Redis and RQ -------------------------------------------------------------------


def queue(config=None, connection=None):
    """Return the RQ queue the relay, schedules and mail jobs use."""
    from rq import Queue

    config = config or current_app.config
    return Queue(config["RQ_QUEUE"], connection=connection or redis_client())


def _enqueue_safely(config, fn):
    """Run `fn(redis)`; on a Redis error log once per interval and back off for a few seconds."""
    import redis

    if time.monotonic() < _redis_down_until[0]:
        return False
    try:
        fn(redis_client())
        reset("redis-down")
        return True
    except redis.RedisError as exc:
        # Keep requests fast while Redis is down: do not try again for a while.
        _redis_down_until[0] = time.monotonic() + 2
        log_throttled(
            log,
            "redis-down",
            config["EVENTS_LOG_INTERVAL"],
            "Redis unavailable (%s); events wait in the outbox for the sweep",
            exc,
        )
        return False


def kick_relay(config=None):
    """Enqueue one relay job unless one is already waiting; return whether Redis answered."""
    config = config or current_app.config
    name = config["RQ_QUEUE"]

    def enqueue(conn):
        # The relay clears this flag before it selects rows, so a commit after that
        # point always enqueues a fresh job: no row waits for the sweep needlessly.
        # The flag expires soon, so a job lost with a killed worker delays nothing for long.
        if conn.set(RELAY_KICK_KEY.format(queue=name), "1", nx=True, ex=10):
            queue(config, conn).enqueue("workers.relay.relay_job", job_timeout=300, result_ttl=60, failure_ttl=3600)

    return _enqueue_safely(config, enqueue)


def enqueue_emails(config, emails):
    """Queue one email job per message (after commit); without Redis, send them inline."""
    from app.mail import send_email

    if not config.get("REDIS_URL"):
        for mail in emails:
            send_email(**mail, config=config)
        return

    def enqueue(conn):
        q = queue(config, conn)
        for mail in emails:
            q.enqueue("workers.mail.send_email", kwargs=mail, result_ttl=60, failure_ttl=86400)

    _enqueue_safely(config, enqueue)


# --- the after-commit hook --------------------------------------------------------------


def _after_commit(session):
    wrote = session.info.pop("outbox_written", False)
    emails = session.info.pop("emails_after_commit", None)
    if not has_app_context():
        return
    config = current_app.config
    if emails and config.get("SMTP_HOST"):
        enqueue_emails(config, emails)
    if not wrote:
        return
    if config.get("KAFKA_ENABLED"):
        if config.get("REDIS_URL"):
            kick_relay(config)
    else:
        drain_in_process()


def _after_rollback(session, previous_transaction):
    # Only the outermost rollback discards the rows; a savepoint rollback keeps the rest.
    if previous_transaction.parent is None and not previous_transaction.nested:
        session.info.pop("outbox_written", None)
        session.info.pop("emails_after_commit", None)


def install(session_class):
    """Attach the after-commit kick to every session of `session_class`."""
    for name, fn in (("after_commit", _after_commit), ("after_soft_rollback", _after_rollback)):
        if not sa.event.contains(session_class, name, fn):
            sa.event.listen(session_class, name, fn)


# --- the in-process drain (embedded default) -------------------------------------------


def drain_in_process(limit=1000):
    """Deliver unpublished outbox rows to the reactions in this process; return how many."""
    if getattr(_local, "draining", False):
        # A reaction's own commit: the running drain loops and picks its rows up.
        _local.again = True
        return 0
    _local.draining = True
    done, failed = 0, set()
    try:
        while done < limit:
            _local.again = False
            batch = _drain_batch(failed)
            done += batch
            if not batch and not _local.again:
                break
    finally:
        _local.draining = False
    return done


def _claim(session, event_id):
    """Count this delivery attempt if the event is still unpublished; False when another drainer has it.

    The conditional UPDATE is what makes one drainer deliver an event on every database:
    PostgreSQL's SKIP LOCKED already keeps a second one away, SQLite takes no row locks, and
    there the second drainer's UPDATE waits for the first one's commit and then matches nothing.
    """
    return session.execute(
        sa.update(OutboxEvent)
        .where(OutboxEvent.id == event_id, OutboxEvent.published_at.is_(None))
        .values(attempts=OutboxEvent.attempts + 1)
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def _drain_batch(failed):
    from app.extensions import db
    from app.reactions import InvalidEvent, apply_event

    session = sa.orm.Session(bind=db.engine)
    delivered = 0
    try:
        ids = session.execute(
            sa.select(OutboxEvent.id)
            .where(OutboxEvent.published_at.is_(None), OutboxEvent.id.not_in(failed) if failed else sa.true())
            .order_by(OutboxEvent.created_at, OutboxEvent.sequence)
            .limit(100)
        ).scalars().all()
        session.rollback()
        for event_id in ids:
            # One transaction per event: its row lock, its effects and its published mark.
            row = session.execute(
                sa.select(OutboxEvent)
                .where(OutboxEvent.id == event_id, OutboxEvent.published_at.is_(None))
                .with_for_update(skip_locked=True)
            ).scalar_one_or_none()
            if row is None or not _claim(session, event_id):
                session.rollback()
                continue
            envelope, topic = row.envelope, row.topic
            try:
                log.info("Event received: %s from topic %s", row.type, topic, extra=logs.event_fields(row.id, row.type))
                apply_event(session, envelope)
                row.published_at = utcnow()
                session.commit()
                delivered += 1
            except Exception as exc:  # noqa: BLE001 - one bad event must not block the rest
                session.rollback()
                failed.add(event_id)
                poison = isinstance(exc, InvalidEvent)
                log.log(logging.ERROR if poison else logging.WARNING,
                        "In-process reaction to %s %s failed: %s", envelope.get("type"), event_id, exc,
                        extra=logs.event_fields(event_id, row.type))
                session.execute(
                    sa.update(OutboxEvent)
                    # Never over a row another drainer delivered meanwhile.
                    .where(OutboxEvent.id == event_id, OutboxEvent.published_at.is_(None))
                    .values(attempts=OutboxEvent.attempts + 1, last_error=str(exc)[:2000],
                            # A poison event is parked (published) so it never blocks again.
                            published_at=utcnow() if poison else None)
                )
                session.commit()
    finally:
        session.close()
    return delivered
