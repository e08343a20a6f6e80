"""workers/relay.py marks: a row another relay marked meanwhile keeps that mark (SQLite takes no row locks)."""

import time
import uuid
from types import SimpleNamespace

import sqlalchemy as sa

from models import OutboxEvent
from models.base import utcnow


def test_a_row_marked_by_another_relay_meanwhile_keeps_its_mark(sqlite_app, kafka_broker, monkeypatch):
    from confluent_kafka import Producer

    from app import kafka
    from app.extensions import db
    from workers import relay

    prefix = f"t{uuid.uuid4().hex[:6]}."
    config = {**sqlite_app.config, "KAFKA_BROKERS": kafka_broker.bootstrap, "KAFKA_TOPIC_PREFIX": prefix,
              "KAFKA_DELIVERY_TIMEOUT_MS": 5000, "RELAY_FAULT_PAUSE_BEFORE_MARK": 0.1, "OUTBOX_BATCH_SIZE": 50}
    kafka.ensure_topics(config, timeout=30)
    event_id, other_mark = str(uuid.uuid4()), utcnow()
    with sqlite_app.app_context():
        # Only this row is pending in this database (older rows were delivered in-process).
        db.session.execute(sa.update(OutboxEvent).where(OutboxEvent.published_at.is_(None)).values(published_at=utcnow()))
        db.session.add(OutboxEvent(id=event_id, topic=f"{prefix}notification.events", aggregate_type="relay-test",
                                   aggregate_id=event_id, key=event_id, type="NOTIFY", sequence=1,
                                   envelope={"id": event_id, "type": "NOTIFY", "payload": {}}))
        db.session.commit()

        def other_relay_marks(_seconds):
            # Between this relay's delivery and its mark, another relay delivers and marks the row.
            with db.engine.begin() as conn:
                assert conn.execute(sa.update(OutboxEvent).where(OutboxEvent.id == event_id)
                                    .values(published_at=other_mark, attempts=7)).rowcount == 1

        monkeypatch.setattr(relay, "time", SimpleNamespace(sleep=other_relay_marks, monotonic=time.monotonic))
        session = sa.orm.Session(bind=db.engine)
        try:
            assert relay.relay_batch(session, config, Producer(kafka.producer_config(config))) == (1, 0)
        finally:
            session.close()
        db.session.expire_all()
        row = db.session.get(OutboxEvent, event_id)
        assert (row.attempts, row.published_at, row.last_error) == (7, other_mark, None)
        db.session.remove()
