"""The event catalogue (design.md §5) and the outbox writer.

Events are written to `outbox_events` in the caller's transaction; delivery (Kafka relay
or in-process drain) happens after commit, elsewhere.
"""

import uuid

import sqlalchemy as sa

from app.context import current_user_id
from models.base import utcnow
from models.outbox import OutboxEvent

TOPICS = {
    "user": "user.events",
    "customer": "customer.events",
    "sales-activity": "sales-activity.events",
    "opportunity": "opportunity.events",
    "notification": "notification.events",
}

# type -> topic family; anything else is refused at write time.
EVENT_TOPICS = {
    "USER_CREATED": "user",
    "USER_LOGGED_IN": "user",
    "CUSTOMER_CREATED": "customer",
    "CUSTOMER_UPDATED": "customer",
    "CUSTOMER_DELETED": "customer",
    "TASK_CREATED": "sales-activity",
    "TASK_UPDATED": "sales-activity",
    "TASK_COMPLETED": "sales-activity",
    "MEETING_CREATED": "sales-activity",
    "MEETING_UPDATED": "sales-activity",
    "APPROVAL_REQUESTED": "opportunity",
    "APPROVAL_STEP_DECIDED": "opportunity",
    "APPROVAL_APPROVED": "opportunity",
    "APPROVAL_REJECTED": "opportunity",
    "APPROVAL_RECALLED": "opportunity",
    # attach: a file added to / removed from a customer, meeting or approval request (key: its customer)
    "ATTACHMENT_ADDED": "sales-activity",
    "ATTACHMENT_DELETED": "sales-activity",
    "TASK_DUE_SOON": "notification",
    "TASK_OVERDUE": "notification",
    "MEETING_REMINDER": "notification",
    "NOTIFY": "notification",
    "APPROVAL_REMINDER": "notification",  # board: a stale request reminds one approver
}


def topic_name(family, prefix=""):
    """Return the Kafka topic for a topic family, with the configured prefix."""
    return f"{prefix}{TOPICS[family]}"


def _next_sequence(session, aggregate_type, aggregate_id, fresh=False):
    # Sequences already handed out in this transaction but not flushed yet.
    pending = session.info.setdefault("outbox_sequences", {})
    key = (aggregate_type, aggregate_id)
    if key not in pending and fresh:
        # A row inserted by this transaction under a new UUID: no committed event can name it
        # and no other transaction can see it yet, so its events start at 1 without the lock
        # and the look-up (bulk writers such as imports write thousands of them at once).
        pending[key] = 0
    if key not in pending:
        with session.no_autoflush:
            if session.get_bind().dialect.name == "postgresql":
                # Two transactions writing events for one aggregate (say two logins of one
                # user) would both read the same max: serialise them on the aggregate until
                # commit, so sequences are unique and follow commit order.
                session.execute(
                    sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"{aggregate_type}:{aggregate_id}", 0)))
                )
            current = session.execute(
                sa.select(sa.func.max(OutboxEvent.sequence)).where(
                    OutboxEvent.aggregate_type == aggregate_type,
                    OutboxEvent.aggregate_id == aggregate_id,
                )
            ).scalar()
        pending[key] = current or 0
    pending[key] += 1
    return pending[key]


def emit(session, event_type, aggregate_type, aggregate_id, payload, key=None, actor_id=None, fresh=False):
    """Write one event to the outbox in `session`'s transaction and return its envelope.

    `fresh`: the aggregate is a row this transaction inserted under a new UUID (its first events).
    """
    if event_type not in EVENT_TOPICS:
        raise ValueError(f"unknown event type {event_type!r}")
    from flask import current_app

    prefix = current_app.config["KAFKA_TOPIC_PREFIX"] if _has_app() else ""
    event_id = str(uuid.uuid4())
    aggregate_id = str(aggregate_id)
    sequence = _next_sequence(session, aggregate_type, aggregate_id, fresh=fresh)
    actor = actor_id if actor_id is not None else current_user_id()
    envelope = {
        "id": event_id,
        "type": event_type,
        "aggregateType": aggregate_type,
        "aggregateId": aggregate_id,
        "sequence": sequence,
        "occurredAt": utcnow().isoformat(),
        "actorId": str(actor) if actor is not None else None,
        "payload": payload,
    }
    # Read by the after-commit kick (app/delivery.py): this transaction has rows to deliver.
    session.info["outbox_written"] = True
    session.add(
        OutboxEvent(
            id=event_id,
            topic=topic_name(EVENT_TOPICS[event_type], prefix),
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            key=str(key or aggregate_id),
            type=event_type,
            sequence=sequence,
            envelope=envelope,
        )
    )
    return envelope


def _has_app():
    from flask import has_app_context

    return has_app_context()


def _clear_sequences(session, *args):
    session.info.pop("outbox_sequences", None)


def install(session_class):
    """Reset per-transaction sequence bookkeeping when a transaction ends."""
    for name in ("after_commit", "after_soft_rollback"):
        if not sa.event.contains(session_class, name, _clear_sequences):
            sa.event.listen(session_class, name, _clear_sequences)
