"""The outbox relay: publish committed outbox rows to Kafka, in order per key, at least once.

`relay_job` is enqueued after each commit that wrote events; `sweep_job` repeats through
RQ's scheduler (`rq worker --with-scheduler`) and publishes whatever a lost kick, a dead
worker or an outage left behind, backing off while the broker is down.

Order per key with several relays: keys are hashed into SHARDS shards and a relay only
reads rows of the shards whose transaction-level advisory lock it holds; inside a shard
rows go out in creation order, `FOR UPDATE SKIP LOCKED`. A row is marked published only
after its delivery report succeeded, and never ahead of an earlier row of its key that
failed (that one is retried first; consumers de-duplicate by event id).
"""

import functools
import json
import logging
import os
import time

import sqlalchemy as sa
from flask import current_app

from app import kafka, logs, metrics
from app.delivery import RELAY_KICK_KEY
from app.extensions import redis_client
from app.throttle import log_throttled, reset
from models.base import utcnow
from models.outbox import OutboxEvent
from workers.runtime import stopping, with_app
from workers.schedules import continue_chain, ensure_repeating

log = logging.getLogger(__name__)

SHARDS = 16
LOCK_CLASS = 7301  # advisory lock namespace of the relay shards
SWEEP_FAILURES_KEY = "crm:{queue}:sweep-failures"
MAX_BACKOFF = 60

_producer = {"pid": None, "producer": None}


def get_producer(config):
    """Return this process's idempotent producer, built on first use (after any fork)."""
    from confluent_kafka import Producer

    if _producer["pid"] != os.getpid():
        # Topics are created before the first produce, so a broker that lost them (or a
        # fresh cluster) never auto-creates them with its own partition count.
        kafka.ensure_topics(config, timeout=5)
        _producer["producer"] = Producer(kafka.producer_config(config))
        _producer["pid"] = os.getpid()
    return _producer["producer"]


def drop_producer():
    """Forget this process's producer (after a fatal error); the next call builds a new one."""
    _producer["pid"] = _producer["producer"] = None


def _lock_shards(session):
    if session.get_bind().dialect.name != "postgresql":
        return list(range(SHARDS))
    return session.execute(
        sa.text("SELECT s FROM generate_series(0, :last) AS s WHERE pg_try_advisory_xact_lock(:cls, s)"),
        {"last": SHARDS - 1, "cls": LOCK_CLASS},
    ).scalars().all()


def _pending_rows(session, shards, limit):
    query = sa.select(OutboxEvent).where(OutboxEvent.published_at.is_(None))
    if session.get_bind().dialect.name == "postgresql":
        query = query.where(sa.text("(hashtext(outbox_events.key) & :mask) = ANY(:shards)").bindparams(
            mask=SHARDS - 1, shards=list(shards)))
    query = query.order_by(OutboxEvent.created_at, OutboxEvent.sequence).limit(limit)
    return session.execute(query.with_for_update(skip_locked=True)).scalars().all()


def _delivered(results, event_id, err, msg):
    results[event_id] = err


def publish_rows(producer, rows, timeout):
    """Produce `rows` and wait for their delivery reports; return {event id: error or None}."""
    from confluent_kafka import KafkaException

    results = {}
    for row in rows:
        while True:
            try:
                producer.produce(
                    row.topic,
                    key=row.key.encode(),
                    value=json.dumps(row.envelope, ensure_ascii=False).encode(),
                    headers=[("id", row.id.encode()), ("type", row.type.encode())],
                    on_delivery=functools.partial(_delivered, results, row.id),
                )
                break
            except BufferError:
                producer.poll(0.2)  # the local queue is full: serve delivery reports first
            except KafkaException as exc:  # refused locally (e.g. too large): never delivered
                results[row.id] = exc.args[0]
                break
        producer.poll(0)
    producer.flush(timeout)
    return results


def _permanent(err):
    from confluent_kafka import KafkaError

    return err is not None and hasattr(err, "code") and err.code() in (
        KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG)


def _dead_letter_unpublishable(producer, rows, results, timeout):
    """Rows the broker can never accept (too large, invalid) go to `<topic>.dlq` as a small record."""
    dead = [row for row in rows if _permanent(results.get(row.id))]
    if not dead:
        return {}
    outcome = {}
    for row in dead:
        producer.produce(
            kafka.dlq_topic(row.topic), key=row.key.encode(),
            value=json.dumps({"id": row.id, "type": row.type, "aggregateId": row.aggregate_id,
                              "error": str(results[row.id])}).encode(),
            headers=[("id", row.id.encode()), ("type", row.type.encode()), ("dlq.error", str(results[row.id]).encode())],
            on_delivery=functools.partial(_delivered, outcome, row.id),
        )
    producer.flush(timeout)
    for row in dead:
        if row.id in outcome and outcome[row.id] is None:
            log.error("Event %s %s cannot be published (%s); sent to %s", row.type, row.id, results[row.id],
                      kafka.dlq_topic(row.topic), extra=logs.event_fields(row.id, row.type))
    # A dead-lettered row counts as published (it must not block its key forever).
    return {rid: err for rid, err in outcome.items() if err is None}


def relay_batch(session, config, producer):
    """Publish one batch in one transaction; return (published, failed) counts."""
    shards = _lock_shards(session)
    if not shards:
        return 0, 0
    rows = _pending_rows(session, shards, int(config["OUTBOX_BATCH_SIZE"]))
    if not rows:
        return 0, 0
    timeout = int(config["KAFKA_DELIVERY_TIMEOUT_MS"]) / 1000 + 5
    results = publish_rows(producer, rows, timeout)
    if len(results) < len(rows) or any(err is not None for err in results.values()):
        # After an outage librdkafka's idempotent state can stay broken (fenced, epoch bumps
        # a broker refuses); the next batch starts from a fresh producer.
        drop_producer()
    pause = float(config["RELAY_FAULT_PAUSE_BEFORE_MARK"])
    if pause:
        # Fault injection for the tests: the window between delivery and marking.
        log.warning("Relay fault injection: %d delivered, pausing %.1fs before marking", len(results), pause)
        time.sleep(pause)
    dead = _dead_letter_unpublishable(producer, rows, results, timeout)
    results.update(dead)
    published, failed, blocked_keys, errors = [], [], set(), []
    for row in rows:
        err = results.get(row.id, "no delivery report")
        if err is None and row.key not in blocked_keys:
            published.append(row.id)
            log.info("Event published: %s to topic %s", row.type, row.topic, extra=logs.event_fields(row.id, row.type))
        else:
            # Later rows of this key wait for the failed one, keeping per-key order.
            blocked_keys.add(row.key)
            failed.append(row.id)
            if err is not None:
                errors.append(str(err))
    now = utcnow()
    if published:
        # Only rows still unpublished: without row locks (SQLite) another relay may have
        # marked one meanwhile, and its mark (time, attempts) stays as it wrote it.
        session.execute(
            sa.update(OutboxEvent).where(OutboxEvent.id.in_(published), OutboxEvent.published_at.is_(None))
            .values(published_at=now, attempts=OutboxEvent.attempts + 1, last_error=None)
        )
    if failed:
        session.execute(
            sa.update(OutboxEvent).where(OutboxEvent.id.in_(failed), OutboxEvent.published_at.is_(None))
            .values(attempts=OutboxEvent.attempts + 1, last_error=(errors[0] if errors else "blocked by an earlier row")[:2000])
        )
        log_throttled(log, "relay-publish", config["EVENTS_LOG_INTERVAL"],
                      "Relay could not publish %d events (%s); they stay in the outbox", len(failed),
                      errors[0] if errors else "blocked")
    else:
        reset("relay-publish")
    session.commit()
    metrics.count_relay(len(published), len(failed), len(dead))
    return len(published), len(failed)


def relay_until_empty(config=None, max_seconds=60):
    """Publish batches until the outbox is empty, a batch fails or time is up; return counts."""
    from app.extensions import db

    config = config or current_app.config
    producer = get_producer(config)
    total_ok = total_failed = 0
    deadline = time.monotonic() + max_seconds
    session = sa.orm.Session(bind=db.engine)
    try:
        while time.monotonic() < deadline and not stopping():
            ok, failed = relay_batch(session, config, producer)
            total_ok += ok
            total_failed += failed
            if failed or not ok:
                break
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()
    return total_ok, total_failed


@with_app
def relay_job():
    """RQ job enqueued after commit: publish what is pending now."""
    config = current_app.config
    try:
        conn = redis_client()
        conn.delete(RELAY_KICK_KEY.format(queue=config["RQ_QUEUE"]))
        ensure_repeating(config, conn, "sweep")
    except Exception as exc:  # noqa: BLE001 - Redis trouble must not stop publishing
        log_throttled(log, "relay-redis", config["EVENTS_LOG_INTERVAL"], "Relay: Redis error %s", exc)
    return relay_until_empty(config)


@with_app
def sweep_job(chain):
    """Repeating job: schedule the next sweep first (a killed run keeps the chain), then publish."""
    config = current_app.config
    name = config["RQ_QUEUE"]
    conn = redis_client()
    failures = int(conn.get(SWEEP_FAILURES_KEY.format(queue=name)) or 0)
    interval = int(config["OUTBOX_SWEEP_SECONDS"])
    # Back off while the broker is down: interval, 2x, 4x ... up to a minute.
    delay = min(interval * (2 ** min(failures, 4)), max(MAX_BACKOFF, interval))
    if not continue_chain(config, conn, "sweep", chain, delay):
        return "superseded"  # a newer chain (a restarted worker) took over
    try:
        ok, failed = relay_until_empty(config)
    except Exception as exc:  # noqa: BLE001 - counted as a failure, retried with backoff
        ok, failed = 0, 1
        log_throttled(log, "relay-sweep", config["EVENTS_LOG_INTERVAL"], "Sweep failed: %s", exc)
    if failed:
        conn.incr(SWEEP_FAILURES_KEY.format(queue=name))
    else:
        conn.delete(SWEEP_FAILURES_KEY.format(queue=name))
    return ok, failed
