"""Reactions to events (design.md §5), shared by the Kafka consumer and the in-process drain.

`apply_event(session, envelope)` validates an envelope and runs every reaction registered
for its type, each once per event id: the effect and its `ProcessedEvent(event_id,
handler)` row are written together (a savepoint each) in the caller's transaction, so a
redelivered event changes nothing. Writes act as the record's owner or the system, so
their audit rows say who they are for.

A message on a topic is not trusted: anyone who can write to the broker could send one.
Each reaction checks its facts against the database and builds what it writes from the
database, not from the payload (titles, recipients, links):
- notification.events (NOTIFY, reminders) notify and e-mail people, so they must be this
  system's own: the outbox holds the same event (id, type, aggregate, payload);
- a reminder's task or meeting must exist, be open and belong to the payload's user;
- an approval event's request must exist, its requester be the payload's, and an outcome
  event's status be the request's (final statuses never change);
- links are relative paths of this app (app/links.py).
A fact that can never have held raises InvalidEvent: the Kafka consumer dead-letters the
message, the in-process drain parks it. A genuine event that time has overtaken (the
task was completed or reassigned since, the request decided) changes nothing.
"""

import logging
import uuid
from datetime import timedelta

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import Role, User

from app import links, logs
from app.context import acting_as
from app.events import EVENT_TOPICS
from app.services import approval_board, approvals, evidence, notifications
from models.analytics import EventCounter
from models.approval import ApprovalRequest, ApprovalStatus
from models.base import utcnow
from models.customer import Customer
from models.meeting import Meeting
from models.notification import NotificationType
from models.outbox import OutboxEvent, ProcessedEvent
from models.task import OPEN_STATUSES, Task, TaskPriority

log = logging.getLogger(__name__)

FIRST_CONTACT_TITLE = "初回コンタクト: {name}"


class InvalidEvent(ValueError):
    """A message that can never be processed (a poison message): goes to the dead-letter topic."""


_REACTIONS = {}


def reaction(*event_types):
    """Register a function `fn(session, envelope)` as a reaction to `event_types`."""

    def register(fn):
        for event_type in event_types:
            _REACTIONS.setdefault(event_type, []).append(fn)
        return fn

    return register


# Payload fields each type needs before any reaction may run.
_REQUIRED = {
    "USER_CREATED": ("id", "email"),
    "CUSTOMER_CREATED": ("id", "name"),
    "APPROVAL_REQUESTED": ("id", "requesterId"),
    "APPROVAL_STEP_DECIDED": ("id",),
    "APPROVAL_APPROVED": ("id", "requesterId"),
    "APPROVAL_REJECTED": ("id", "requesterId"),
    "TASK_DUE_SOON": ("userId", "title"),
    "TASK_OVERDUE": ("userId", "title"),
    "MEETING_REMINDER": ("userId", "title"),
    "NOTIFY": ("userId", "title"),
    "APPROVAL_REMINDER": ("id", "userId", "step"),
}


def validate(envelope):
    """Raise InvalidEvent unless `envelope` is a well-formed event of a known type."""
    if not isinstance(envelope, dict):
        raise InvalidEvent("envelope is not a JSON object")
    for field in ("id", "type", "aggregateId", "payload"):
        if envelope.get(field) in (None, ""):
            raise InvalidEvent(f"envelope field {field} is missing")
    try:
        uuid.UUID(str(envelope["id"]))
    except ValueError:
        raise InvalidEvent("envelope field id is not a UUID") from None
    if envelope["type"] not in EVENT_TOPICS:
        raise InvalidEvent(f"unknown event type {envelope['type']!r}")
    payload = envelope["payload"]
    if not isinstance(payload, dict):
        raise InvalidEvent("envelope field payload is not an object")
    for field in _REQUIRED.get(envelope["type"], ()):
        if payload.get(field) in (None, ""):
            raise InvalidEvent(f"payload field {field} is missing for {envelope['type']}")
    for field in ("userId", "requesterId"):
        if field in payload and payload[field] is not None:
            try:
                int(payload[field])
            except (TypeError, ValueError):
                raise InvalidEvent(f"payload field {field} is not a user id") from None


def handlers_for(event_type):
    """Return the reactions for `event_type`, analytics last (every event counts)."""
    return [*_REACTIONS.get(event_type, ()), count_event]


def apply_event(session, envelope):
    """Validate `envelope` and run its reactions not yet applied; return the names applied."""
    validate(envelope)
    applied = []
    # Every line a reaction logs names the event it reacts to.
    with logs.event_context(envelope["id"], envelope["type"]):
        for fn in handlers_for(envelope["type"]):
            name = fn.__name__
            if session.get(ProcessedEvent, (envelope["id"], name)) is not None:
                continue
            with session.begin_nested():
                fn(session, envelope)
                session.add(ProcessedEvent(event_id=envelope["id"], handler=name))
                session.flush()
            applied.append(name)
    return applied


def _user(session, user_id):
    return session.get(User, int(user_id)) if user_id not in (None, "") else None


def _written_here(session, envelope):
    """Raise InvalidEvent unless the outbox holds this very event (this system wrote it)."""
    row = session.get(OutboxEvent, str(envelope["id"]))
    if (
        row is None
        or row.type != envelope["type"]
        or row.aggregate_id != str(envelope["aggregateId"])
        or (row.envelope or {}).get("payload") != envelope["payload"]
    ):
        raise InvalidEvent(f"{envelope['type']} {envelope['id']} was not written by this system")


def _same_id(envelope, field="id"):
    """Raise InvalidEvent when the payload's record id is not the envelope's aggregate id."""
    if str(envelope["payload"].get(field)) != str(envelope["aggregateId"]):
        raise InvalidEvent(f"payload field {field} is not the event's aggregateId")


def _outdated(envelope, why):
    log.info("Event %s %s changes nothing: %s", envelope["type"], envelope["id"], why,
             extra=logs.event_fields(envelope["id"], envelope["type"]))


def _notify(session, user_id, kind, title, message=None, link=None):
    try:
        link = links.check(link)
    except links.InvalidLink as exc:
        raise InvalidEvent(f"payload field link: {exc}") from None
    return notifications.notify(session, user_id, kind, title, message, link)


@reaction("USER_CREATED")
def user_lead(session, envelope):
    """A registered user becomes a customer lead assigned to them (unless the email is taken).

    The lead's name and address are the user's as stored, never the payload's.
    """
    _same_id(envelope)
    user = _user(session, envelope["payload"]["id"])
    if user is None or not user.email:
        _outdated(envelope, "no such user (any more)")
        return
    email = user.email.strip().lower()
    name = " ".join(p for p in (user.first_name, user.last_name) if p and p != "-") or email
    taken = session.execute(
        sa.select(Customer.id).where(sa.func.lower(Customer.email) == email, Customer.deleted_at.is_(None))
    ).first()
    if taken:
        return
    with acting_as(user):
        session.add(
            Customer(
                name=name[:200],
                email=email,
                assigned_sales_id=user.id,
                created_by_id=user.id,
            )
        )
        session.flush()


@reaction("CUSTOMER_CREATED")
def first_contact_task(session, envelope):
    """A new customer gets a task 「初回コンタクト: {name}」 for its rep (the customer's rep as stored)."""
    _same_id(envelope)
    customer = session.get(Customer, str(envelope["payload"]["id"]))
    rep = _user(session, customer.assigned_sales_id) if customer is not None else None
    if rep is None or customer.deleted_at is not None:
        _outdated(envelope, "no such live customer with a rep")
        return
    with acting_as(rep):
        session.add(
            Task(
                user_id=rep.id,
                customer_id=customer.id,
                created_by_id=rep.id,
                title=FIRST_CONTACT_TITLE.format(name=customer.name)[:200],
                due_date=utcnow() + timedelta(days=3),
                priority=TaskPriority.HIGH,
            )
        )
        session.flush()


def _approval_request(session, envelope):
    """The request the event is about, with the event's facts checked (InvalidEvent when they never held)."""
    _same_id(envelope)
    payload = envelope["payload"]
    request = session.get(ApprovalRequest, str(payload["id"]))
    if request is None:
        raise InvalidEvent(f"no approval request {payload['id']}")  # requests are never deleted
    if payload.get("requesterId") is not None and str(payload["requesterId"]) != str(request.requester_id):
        raise InvalidEvent("payload field requesterId is not the request's requester")
    return request


@reaction("APPROVAL_REQUESTED", "APPROVAL_STEP_DECIDED")
def notify_next_approvers(session, envelope):
    """A pending request notifies every active holder of its next step's role (not the requester)."""
    request = _approval_request(session, envelope)
    if request.status != ApprovalStatus.PENDING:
        _outdated(envelope, f"the request is {request.status} now")
        return
    step = approvals.next_step(session, request.id)
    if step is None:
        return
    approvers = session.execute(
        sa.select(User.id)
        .join(User.roles)
        .where(Role.name == step.required_role, User.active.is_(True), User.id != request.requester_id)
    ).scalars()
    with acting_as(None):
        for user_id in sorted(set(approvers)):
            _notify(
                session,
                user_id,
                NotificationType.APPROVAL_REQUEST,
                f"承認依頼: {request.product_name}",
                f"{request.customer.name if request.customer else ''} / {request.amount} 円 "
                f"(ステップ {step.sequence}: {step.required_role})",
                links.approval(request.id),
            )


@reaction("APPROVAL_APPROVED", "APPROVAL_REJECTED")
def notify_requester(session, envelope):
    """A finished request notifies its requester of the outcome, with the deciding comment."""
    request = _approval_request(session, envelope)
    approved = envelope["type"] == "APPROVAL_APPROVED"
    if request.status != (ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED):
        # An APPROVED or REJECTED request stays so forever: this outcome never happened.
        raise InvalidEvent(f"{envelope['type']} for a request that is {request.status}")
    decided = [s for s in sorted(request.steps, key=lambda s: s.sequence) if s.decision is not None]
    with acting_as(None):
        _notify(
            session,
            request.requester_id,
            NotificationType.APPROVAL_APPROVED if approved else NotificationType.APPROVAL_REJECTED,
            f"{'承認されました' if approved else '却下されました'}: {request.product_name}",
            decided[-1].comment if decided else None,
            links.approval(request.id),
        )


@reaction("APPROVAL_APPROVED", "APPROVAL_REJECTED")
def seal_evidence(session, envelope):
    """A finished request gets its evidence pack, built once from the database (app/services/evidence.py)."""
    request = _approval_request(session, envelope)
    if request.status not in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        raise InvalidEvent(f"{envelope['type']} for a request that is {request.status}")
    with acting_as(None):
        evidence.on_decision(session, request)


@reaction("APPROVAL_REMINDER")
def remind_approver(session, envelope):
    """A stale request reminds one of its approvers, only while it still waits for that user at that step.

    Written by the reminder scan (workers/schedules.py); the text and link come from the
    request as stored. Decided, recalled or moved on since: nothing happens.
    """
    _written_here(session, envelope)
    if envelope.get("aggregateType") != "approval":
        raise InvalidEvent("APPROVAL_REMINDER is about an approval request")
    request = _approval_request(session, envelope)
    payload = envelope["payload"]
    if not isinstance(payload["step"], int) or isinstance(payload["step"], bool):
        raise InvalidEvent("payload field step is not a step number")
    user = _user(session, payload["userId"])
    if user is None or not approval_board.waits_for(session, request.id, user, payload["step"]):
        _outdated(envelope, "the request no longer waits for this approver at this step")
        return
    from flask import current_app
    from flask_babel import force_locale, gettext

    hours = int(approval_board.age(request, utcnow()).total_seconds() // 3600)
    # Stored text: in the product's language, whoever's request (and locale) runs the drain.
    with force_locale(current_app.config["BABEL_DEFAULT_LOCALE"]):
        title = gettext("Reminder: %(product)s has waited %(hours)d hours for your decision",
                        product=request.product_name, hours=hours)
        message = gettext("%(customer)s / ¥%(amount)s, requested by %(requester)s",
                          customer=request.customer.name if request.customer else "",
                          amount=f"{request.amount:,.0f}", requester=request.requester)
    with acting_as(None):
        _notify(session, user.id, NotificationType.APPROVAL_REQUEST, title, message, links.approval(request.id))


_NOTIFY_TYPES = {
    "TASK_DUE_SOON": NotificationType.TASK_DUE_SOON,
    "TASK_OVERDUE": NotificationType.TASK_DUE_SOON,
    "MEETING_REMINDER": NotificationType.MEETING_REMINDER,
}


def _task_reminder(session, envelope):
    """(recipient, title, message, link) of a task reminder, from the task as stored; None when outdated."""
    if envelope.get("aggregateType") != "task":
        raise InvalidEvent(f"{envelope['type']} is about a task")
    task = session.get(Task, str(envelope["aggregateId"]))
    user_id = int(envelope["payload"]["userId"])
    if task is None or task.status not in OPEN_STATUSES or task.due_date is None or task.user_id != user_id:
        return None
    overdue = envelope["type"] == "TASK_OVERDUE"
    title = f"{'期限切れ' if overdue else '期限間近'}: {task.title}"
    return task.user_id, title, f"期限 {task.due_date.isoformat()}", links.task(task.id)


def _meeting_reminder(session, envelope):
    """(recipient, title, message, link) of a meeting's next-action reminder, from the meeting as stored."""
    if envelope.get("aggregateType") != "meeting":
        raise InvalidEvent("MEETING_REMINDER is about a meeting")
    meeting = session.get(Meeting, str(envelope["aggregateId"]))
    user_id = int(envelope["payload"]["userId"])
    if meeting is None or not meeting.next_action or meeting.next_action_date is None:
        return None
    if (meeting.sales_id or meeting.created_by_id) != user_id:
        return None
    title = f"次回アクション: {meeting.next_action}"
    return user_id, title, f"{meeting.title} / {meeting.next_action_date.isoformat()}", links.meeting(meeting.id)


@reaction("TASK_DUE_SOON", "TASK_OVERDUE", "MEETING_REMINDER", "NOTIFY")
def notify_user(session, envelope):
    """notification.events become in-app notifications (and email when SMTP is configured).

    Only this system's own events (the outbox holds them); a reminder's text and link come
    from its task or meeting as stored, and only while it is still open and its user's.
    """
    _written_here(session, envelope)
    payload = envelope["payload"]
    kind = _NOTIFY_TYPES.get(envelope["type"])
    if kind is None:
        try:
            kind = NotificationType(payload.get("notificationType") or "SYSTEM")
        except ValueError:
            raise InvalidEvent("payload field notificationType is not a notification type") from None
        facts = (payload["userId"], str(payload["title"]), payload.get("message"), payload.get("link"))
    elif envelope["type"] == "MEETING_REMINDER":
        facts = _meeting_reminder(session, envelope)
    else:
        facts = _task_reminder(session, envelope)
    if facts is None:
        _outdated(envelope, "its task or meeting is gone, done or someone else's now")
        return
    user_id, title, message, link = facts
    if message is not None and not isinstance(message, str):
        raise InvalidEvent("payload field message is not text")
    with acting_as(None):
        _notify(session, user_id, kind, title, message, link)


def count_event(session, envelope):
    """Every event adds one to its type's counter for the day (dashboard figures)."""
    table = EventCounter.__table__
    day = utcnow().date()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(event_type=envelope["type"], day=day, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.event_type, table.c.day], set_={"count": table.c.count + 1}
    )
    session.execute(stmt)


def event_counts(session, day=None):
    """Return {event type: count} for `day` (default today, UTC)."""
    day = day or utcnow().date()
    rows = session.execute(sa.select(EventCounter.event_type, EventCounter.count).where(EventCounter.day == day))
    return dict(rows.all())
