"""app/logs.py: the JSON and text lines, the worker process's lines, and the event id and type on the relay's and the consumer's lines.

The relay and the consumer run for real against a Kafka-protocol broker (tansu): one
outbox row is published by `relay_batch`, read back by a real consumer and handled by
`handle_batch`; their lines, formatted by production's JSON formatter, carry the event.
"""

import io
import json
import logging
import time
import uuid

import pytest
import sqlalchemy as sa

from app import logs
from models import OutboxEvent
from models.base import utcnow


def test_json_lines_carry_the_context_and_leave_out_what_is_unknown():
    """time, level, logger, message; request id and event from the context; an exception on the same line."""
    stream = io.StringIO()
    handler = logs.configure({"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}, stream=stream)
    try:
        logging.getLogger("crm.test").info("no context")
        token = logs.request_id_var.set("rid-1")
        with logs.event_context("e-1", "TASK_CREATED"):
            logging.getLogger("crm.test").warning("inside %s", "it", extra={"status": 201})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("crm.test").exception("failed")
        logs.request_id_var.reset(token)
    finally:
        logging.getLogger().removeHandler(handler)
    first, second, third = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert set(first) == {"time", "level", "logger", "message"} and first["time"].endswith("+00:00")
    assert second == {**second, "level": "WARNING", "logger": "crm.test", "message": "inside it", "status": 201,
                      "request_id": "rid-1", "event_id": "e-1", "event_type": "TASK_CREATED"}
    assert third["request_id"] == "rid-1" and "event_id" not in third
    assert "ValueError: boom" in third["exc_info"] and len(stream.getvalue().splitlines()) == 3


def test_text_lines_are_for_people_and_log_format_is_checked():
    """`make run`'s format: one readable line with the context in brackets; an unknown LOG_FORMAT is refused."""
    stream = io.StringIO()
    handler = logs.configure({"LOG_FORMAT": "text", "LOG_LEVEL": "INFO"}, stream=stream)
    try:
        token = logs.request_id_var.set("rid-2")
        logging.getLogger("crm.request").info("GET /x 200 1.0 ms", extra={"status": 200, "route": "/x"})
        logs.request_id_var.reset(token)
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().strip()
    assert line.endswith("INFO crm.request [request_id=rid-2 route=/x status=200]: GET /x 200 1.0 ms"), line
    with pytest.raises(ValueError):
        json.loads(line)
    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        logs.configure({"LOG_FORMAT": "yaml", "LOG_LEVEL": "INFO"})


def test_one_handler_per_process_whatever_the_number_of_apps():
    """create_app in tests and CLIs runs more than once: the handler is replaced, never added twice."""
    root = logging.getLogger()
    handlers = [logs.configure({"LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}) for _ in range(3)]
    try:
        assert [h for h in root.handlers if getattr(h, "crm_handler", False)] == [handlers[-1]]
    finally:
        root.removeHandler(handlers[-1])


def test_relay_and_consumer_lines_carry_the_event_id_and_type(sqlite_app, kafka_broker, caplog):
    """`Event published: …` (relay) and `Event received: …` (consumer), as JSON, name the event's id and type."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    from app import kafka
    from app.extensions import db
    from app.services.users import create_user
    from workers import consumer, relay

    prefix = f"t{uuid.uuid4().hex[:6]}."
    config = {**sqlite_app.config, "KAFKA_BROKERS": kafka_broker.bootstrap, "KAFKA_TOPIC_PREFIX": prefix,
              "KAFKA_DELIVERY_TIMEOUT_MS": 5000, "OUTBOX_BATCH_SIZE": 50}
    kafka.ensure_topics(config, timeout=30)
    event_id, topic = str(uuid.uuid4()), f"{prefix}notification.events"
    formatter = logs.JsonLines()
    with sqlite_app.app_context():
        user = create_user(f"logs-{uuid.uuid4().hex[:8]}@example.com", "Log Reader", "Sales", "test-pass-123")
        db.session.execute(sa.update(OutboxEvent).where(OutboxEvent.published_at.is_(None)).values(published_at=utcnow()))
        envelope = {"id": event_id, "type": "NOTIFY", "aggregateId": str(user.id), "payload": {"userId": user.id, "title": "hello"}}
        db.session.add(OutboxEvent(id=event_id, topic=topic, aggregate_type="logs-test", aggregate_id=str(user.id),
                                   key=str(user.id), type="NOTIFY", sequence=1, envelope=envelope))
        db.session.commit()
        producer = Producer(kafka.producer_config(config))
        session = sa.orm.Session(bind=db.engine)
        with caplog.at_level(logging.INFO):
            try:
                assert relay.relay_batch(session, config, producer) == (1, 0)
            finally:
                session.close()
            reader = Consumer(kafka.consumer_config(config, f"logs-{uuid.uuid4().hex[:6]}"))
            # Assigned, not subscribed: no group join to wait for.
            reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(int(config["KAFKA_TOPIC_PARTITIONS"]))])
            try:
                msgs = []
                for _ in range(60):
                    msg = reader.poll(0.5)
                    if msg is not None and not msg.error():
                        msgs.append(msg)
                        break
                assert msgs, "the relayed event never reached the consumer"
                consumer.handle_batch(db.engine, producer, reader, msgs)
            finally:
                reader.close()
        db.session.remove()
    published = [r for r in caplog.records if r.getMessage() == f"Event published: NOTIFY to topic {topic}"]
    received = [r for r in caplog.records if r.getMessage() == f"Event received: NOTIFY from topic {topic}"]
    assert len(published) == 1 and len(received) == 1
    for record in published + received:
        line = json.loads(formatter.format(record))
        assert (line["event_id"], line["event_type"]) == (event_id, "NOTIFY"), line
        assert line["logger"] in ("workers.relay", "workers.consumer")


def test_the_worker_process_writes_one_json_object_per_line(database_url, redis_url, app):
    """`crm worker --burst` under the production config: every line it prints (RQ's own included) is JSON."""
    import os
    import secrets
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "SENTRY_", "CRM_", "KAFKA_"))}
    env.update(CRM_ENV="production", SECRET_KEY=secrets.token_urlsafe(48), DATABASE_URL=database_url, REDIS_URL=redis_url,
               RQ_QUEUE=f"crm-logs-{uuid.uuid4().hex[:8]}", METRICS_ENABLED="false")
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    done = subprocess.run([flask, "--app", "wsgi", "crm", "worker", "--burst"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # a line that is not JSON fails here
    assert all({"time", "level", "logger", "message"} <= set(p) for p in parsed)
    assert any(p["logger"].startswith("rq.") for p in parsed), lines[:20]


def test_librdkafka_lines_go_through_python_logging_not_raw_stderr(capfd, caplog):
    """A Kafka client's own notices (here: no brokers configured) arrive as `crm.kafka.client` records, so they take the JSON format."""
    import logging

    from confluent_kafka import Producer

    from app import kafka

    with caplog.at_level(logging.DEBUG, logger="crm.kafka.client"):
        producer = Producer(kafka.producer_config({"KAFKA_BROKERS": "", "KAFKA_CLIENT_ID": "crm-logs", "KAFKA_DELIVERY_TIMEOUT_MS": 1000}))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(r.name == "crm.kafka.client" for r in caplog.records):
            producer.poll(0.1)  # librdkafka hands its queued lines to the logger on poll
    assert any("bootstrap.servers" in r.getMessage() for r in caplog.records if r.name == "crm.kafka.client")
    assert "bootstrap.servers" not in capfd.readouterr().err
