"""The Kafka consumer: `flask --app wsgi crm consume [--group NAME]` runs the reactions.

At least once, effects exactly once: each polled batch is processed in one database
transaction (a savepoint per message; effects + ProcessedEvent rows keyed by event id and
handler), committed, and only then are its offsets stored (`enable.auto.offset.store=false`);
a batch that fails is redone one message per transaction. A redelivery after a
crash finds the ProcessedEvent rows and does nothing. Transient errors (database down,
a concurrent duplicate) are retried with backoff; poison messages (tombstone, bad JSON,
missing key, unknown type, failed validation) go to `<topic>.dlq` with the original key,
value and headers plus topic, partition, offset and error, and the consumer carries on.
"""

import json
import logging
import signal
import time

import sqlalchemy as sa

from app import kafka, logs, metrics
from app.reactions import InvalidEvent, apply_event
from app.throttle import log_throttled, reset

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
MAX_UNEXPECTED_ATTEMPTS = 3


def decode(msg):
    """Return the envelope of a Kafka message, or raise InvalidEvent for a poison message."""
    value = msg.value()
    if value is None:
        raise InvalidEvent("tombstone (null value)")
    if not msg.key():
        raise InvalidEvent("message has no key")
    try:
        envelope = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"value is not JSON: {exc}") from None
    from app.reactions import validate

    validate(envelope)
    return envelope


def dead_letter(producer, msg, error, interval=30):
    """Publish `msg` unchanged to its dead-letter topic with the error; return once acknowledged."""
    headers = list(msg.headers() or []) + [
        ("dlq.topic", msg.topic().encode()),
        ("dlq.partition", str(msg.partition()).encode()),
        ("dlq.offset", str(msg.offset()).encode()),
        ("dlq.error", str(error)[:1000].encode()),
    ]
    backoff = 0.5
    while True:
        result = {}
        producer.produce(kafka.dlq_topic(msg.topic()), key=msg.key(), value=msg.value(), headers=headers,
                         on_delivery=lambda err, _m: result.setdefault("err", err))
        producer.flush(60)
        if result.get("err") is None and "err" in result:
            metrics.count_dead_letter(msg.topic())
            log.warning("Dead-lettered message %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), error)
            return
        log_throttled(log, "dlq-publish", interval, "Dead-letter publish failed (%s); retrying", result.get("err"))
        time.sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


class Stopping(Exception):
    """The consumer was asked to stop while a message was still being retried."""


def process(engine, envelope, interval=30, sleep=time.sleep, stopping=lambda: False):
    """Apply `envelope`'s reactions in one transaction, retrying transient errors; raise InvalidEvent if poison."""
    backoff, unexpected = 0.2, 0
    while True:
        if stopping():
            raise Stopping()
        session = sa.orm.Session(bind=engine)
        try:
            apply_event(session, envelope)
            session.commit()
            reset("consumer-db")
            return
        except InvalidEvent:
            session.rollback()
            raise
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.InterfaceError) as exc:
            # Database down, or a concurrent consumer applied the same event first.
            session.rollback()
            log_throttled(log, "consumer-db", interval, "Transient error on %s %s (%s); retrying",
                          envelope.get("type"), envelope.get("id"), exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure is retried, then dead-lettered
            session.rollback()
            unexpected += 1
            log.exception("Reaction to %s %s failed (attempt %d)", envelope.get("type"), envelope.get("id"), unexpected,
                          extra=logs.event_fields(envelope.get("id"), envelope.get("type")))
            if unexpected >= MAX_UNEXPECTED_ATTEMPTS:
                raise InvalidEvent(f"reaction failed {unexpected} times: {exc}") from exc
        finally:
            session.close()
        sleep(backoff)
        backoff = min(backoff * 2, MAX_BACKOFF)


def _apply_batch(engine, items):
    """Fast path: every message of a batch in one transaction (a savepoint each); return the poison ones."""
    poison = []
    session = sa.orm.Session(bind=engine)
    try:
        for msg, envelope in items:
            try:
                with session.begin_nested():
                    apply_event(session, envelope)
            except InvalidEvent as exc:
                poison.append((msg, exc))
        session.commit()
    except Exception:
        session.rollback()
        raise
    finally:
        session.close()
    return poison


def handle_batch(engine, producer, consumer, msgs, interval=30, stopping=lambda: False, pause=0.0):
    """Process polled messages: effects committed first, then dead letters, then the offsets stored.

    `pause`: fault injection for the tests, seconds between the effects and the offsets.
    """
    items, poison = [], []
    for msg in msgs:
        if msg.error():
            log_throttled(log, "consumer-kafka", interval, "Kafka consumer error: %s", msg.error())
            continue
        try:
            envelope = decode(msg)
        except InvalidEvent as exc:
            poison.append((msg, exc))
            continue
        log.info("Event received: %s from topic %s", envelope["type"], msg.topic(),
                 extra=logs.event_fields(envelope["id"], envelope["type"]))
        items.append((msg, envelope))
    try:
        poison += _apply_batch(engine, items)
    except Exception as exc:  # noqa: BLE001 - fall back to one transaction per message, with retries
        log_throttled(log, "consumer-batch", interval, "Batch failed (%s); processing one by one", exc)
        for msg, envelope in items:
            try:
                process(engine, envelope, interval, stopping=stopping)
            except InvalidEvent as poison_exc:
                poison.append((msg, poison_exc))
    for msg, exc in poison:
        dead_letter(producer, msg, exc, interval)
    if pause:
        log.warning("Consumer fault injection: %d applied, pausing %.1fs before storing offsets", len(items), pause)
        time.sleep(pause)
    # Only now: every effect (or its dead letter) is durable.
    done = {}
    for msg in msgs:
        if not msg.error():
            consumer.store_offsets(message=msg)
            done[msg.topic()] = done.get(msg.topic(), 0) + 1
    for topic, n in done.items():
        metrics.count_consumed(topic, n)


def run(app, group=None, stop=None):
    """Consume the event topics until SIGTERM/SIGINT (or `stop()` is true).

    Graceful stop: a signal only sets a flag. The batch in hand is finished (effects
    committed, then its offsets stored), no further poll is made, and the stored offsets are
    committed synchronously before the consumer leaves its group. A message still being
    retried (database down) is given up instead: its offset is not stored, so the next
    consumer gets it again and the ProcessedEvent rows keep it from applying twice.
    """
    from confluent_kafka import Consumer, Producer

    from app.extensions import db

    config = app.config
    interval = config["EVENTS_LOG_INTERVAL"]
    group = group or config["KAFKA_CONSUMER_GROUP"]
    kafka.ensure_topics(config, timeout=60)
    stopping = {"now": False}

    def on_signal(signum, _frame):
        stopping["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    conf = kafka.consumer_config(config, group)
    port = int(config["CONSUMER_METRICS_PORT"])
    if port:
        metrics.serve_process(config, port)
        conf.update({"statistics.interval.ms": int(config["CONSUMER_STATS_INTERVAL_MS"]), "stats_cb": metrics.consumer_stats})
    consumer = Consumer(conf)
    producer = Producer(kafka.producer_config(config))
    consumer.subscribe(kafka.event_topics(config))
    log.info("Consumer %s listening on %s", group, ", ".join(kafka.event_topics(config)))
    batch_size = int(config["KAFKA_CONSUMER_BATCH"])
    pause = float(config["CONSUMER_FAULT_PAUSE_BEFORE_OFFSETS"])
    try:
        with app.app_context():
            while not stopping["now"] and not (stop and stop()):
                # Wait for one message, then take whatever else is already fetched: batches
                # under load, no added latency when idle (consume() would wait to fill up).
                first = consumer.poll(1.0)
                if first is None:
                    continue
                msgs = [first, *consumer.consume(num_messages=batch_size - 1, timeout=0)] if batch_size > 1 else [first]
                try:
                    handle_batch(db.engine, producer, consumer, msgs, interval, lambda: stopping["now"], pause)
                except Stopping:
                    break  # offsets not stored: the messages are redelivered to the next consumer
        _commit_stored(consumer)
    finally:
        consumer.close()
        producer.flush(10)


def _commit_stored(consumer):
    """Commit the offsets stored so far, waiting for the broker (the auto-commit timer may not have fired yet)."""
    from confluent_kafka import KafkaError, KafkaException

    try:
        consumer.commit(asynchronous=False)
        log.info("Consumer stopping: stored offsets committed")
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
            return  # nothing consumed since the last commit
        log.warning("Consumer stopping: offset commit failed (%s); close() tries again", exc)
