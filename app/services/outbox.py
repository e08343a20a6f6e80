"""Outbox health: how many events wait to be delivered, for /ready and `crm health`."""

import sqlalchemy as sa

from models.base import utcnow
from models.outbox import OutboxEvent


def outbox_backlog(session=None):
    """Return {"pending", "failing", "oldestAgeSeconds"} for unpublished outbox rows."""
    if session is None:
        from app.extensions import db

        session = db.session
    pending, failing, oldest = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(OutboxEvent.attempts > 0),
            sa.func.min(OutboxEvent.created_at),
        ).where(OutboxEvent.published_at.is_(None))
    ).one()
    if oldest is not None and oldest.tzinfo is None:
        from datetime import timezone

        oldest = oldest.replace(tzinfo=timezone.utc)
    age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
    return {"pending": int(pending), "failing": int(failing or 0), "oldestAgeSeconds": round(age, 3)}


FAILING_LIMIT = 5


def pipeline_health(session=None):
    """The event pipeline as the admin's home shows it: outbox backlog and failing rows, the RQ
    queue and its workers, the consumer side (mode, events reacted to today).

    Read fresh on every call: workers and queues change without any commit. Redis down or not
    configured shows as such, never as an error.
    """
    from flask import current_app

    from app.extensions import redis_client
    from models.analytics import EventCounter

    if session is None:
        from app.extensions import db

        session = db.session
    config = current_app.config
    failing = session.execute(
        sa.select(OutboxEvent.id, OutboxEvent.type, OutboxEvent.topic, OutboxEvent.attempts, OutboxEvent.last_error,
                  OutboxEvent.created_at)
        .where(OutboxEvent.published_at.is_(None), OutboxEvent.attempts > 0)
        .order_by(OutboxEvent.created_at)
        .limit(FAILING_LIMIT)
    ).all()
    today = utcnow().date()
    handled = session.execute(sa.select(sa.func.coalesce(sa.func.sum(EventCounter.count), 0)).where(EventCounter.day == today)).scalar()
    out = {
        "outbox": outbox_backlog(session),
        "failing": [
            {"id": r[0], "type": r[1], "topic": r[2], "attempts": r[3], "error": (r[4] or "")[:300], "createdAt": r[5]}
            for r in failing
        ],
        "mode": "kafka" if config.get("KAFKA_ENABLED") else "embedded",
        "eventsToday": int(handled or 0),
        "queue": None,
    }
    if config.get("REDIS_URL"):
        out["queue"] = _queue_state(config, redis_client())
    return out


def _queue_state(config, conn):
    """The RQ queue's length, failed jobs (the relay's dead letters) and workers, or {"error": ...} when Redis fails."""
    import redis
    from rq import Queue, Worker
    from rq.registry import FailedJobRegistry

    name = config["RQ_QUEUE"]
    try:
        queue = Queue(name, connection=conn)
        workers = Worker.all(queue=queue)
        return {
            "name": name,
            "length": queue.count,
            "failed": FailedJobRegistry(queue=queue).count,
            "workers": [
                {"name": w.name, "state": str(w.get_state()), "lastHeartbeat": _aware(w.last_heartbeat)} for w in workers
            ],
        }
    except redis.RedisError as exc:
        return {"name": name, "error": type(exc).__name__}


def _aware(value):
    """A naive UTC timestamp (RQ's) made timezone-aware; None stays None."""
    from datetime import timezone

    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value
