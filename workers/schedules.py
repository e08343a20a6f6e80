"""Repeating jobs on RQ's scheduler and the reminder scans (tasks due, overdue, meeting actions;
approval requests waiting longer than APPROVAL_REMINDER_HOURS), the audit chain's sealer and audit retention.

A repeating job schedules its successor first thing (so a killed run does not end the
chain); a Redis key names the live chain so a restarted worker supersedes the old one and
an expired key (every worker dead for a while) lets the next kick start a new chain.
"""

import logging
import uuid
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app import events
from app.context import acting_as
from app.delivery import kick_relay, queue
from app.extensions import redis_client
from app.services import approval_board
from models.analytics import Reminder
from models.base import utcnow
from models.meeting import Meeting
from models.task import OPEN_STATUSES, Task
from workers.runtime import with_app

log = logging.getLogger(__name__)

# kind -> (job function, config name of its interval in seconds)
REPEATING = {
    "sweep": ("workers.relay.sweep_job", "OUTBOX_SWEEP_SECONDS"),
    "reminders": ("workers.schedules.reminder_job", "REMINDER_SCAN_SECONDS"),
    "audit_seal": ("workers.schedules.audit_seal_job", "AUDIT_SEAL_SECONDS"),
    "report-sweep": ("workers.reports.sweep_job", "REPORT_SWEEP_SECONDS"),  # reports: expired files
    "audit_retention": ("workers.schedules.audit_retention_job", "AUDIT_RETENTION_SECONDS"),
}
CHAIN_KEY = "crm:{queue}:chain:{kind}"
MAX_BACKOFF = 60


def _chain_ttl(config, kind):
    return max(int(config[REPEATING[kind][1]]) * 10, MAX_BACKOFF * 3)


def ensure_repeating(config, conn, kind, restart=False):
    """Start the repeating job `kind` unless a live chain exists (or `restart`); return whether started."""
    key = CHAIN_KEY.format(queue=config["RQ_QUEUE"], kind=kind)
    chain = uuid.uuid4().hex
    if restart:
        conn.set(key, chain, ex=_chain_ttl(config, kind))
    elif not conn.set(key, chain, nx=True, ex=_chain_ttl(config, kind)):
        return False
    queue(config, conn).enqueue_in(timedelta(seconds=1), REPEATING[kind][0], chain, result_ttl=0, failure_ttl=3600)
    return True


def continue_chain(config, conn, kind, chain, delay=None):
    """Schedule the next run of chain `chain` after `delay` s; False when a newer chain took over."""
    key = CHAIN_KEY.format(queue=config["RQ_QUEUE"], kind=kind)
    current = conn.get(key)
    if current is not None and current.decode() != chain:
        return False
    conn.set(key, chain, ex=_chain_ttl(config, kind))
    delay = delay if delay is not None else int(config[REPEATING[kind][1]])
    queue(config, conn).enqueue_in(timedelta(seconds=delay), REPEATING[kind][0], chain, result_ttl=0, failure_ttl=3600)
    return True


def bootstrap(config):
    """Worker start: (re)start every repeating job."""
    conn = redis_client()
    for kind in REPEATING:
        ensure_repeating(config, conn, kind, restart=True)


def _emit_reminder(session, kind, subject, user_id, due, title, message, link):
    due_key = due.isoformat()
    exists = session.get(Reminder, (subject.id, kind, due_key))
    if exists is not None or user_id is None:
        return None
    envelope = events.emit(
        session,
        kind,
        "task" if isinstance(subject, Task) else "meeting",
        subject.id,
        {"userId": str(user_id), "title": title, "message": message, "link": link,
         "subjectId": subject.id, "dueDate": due_key},
        key=str(user_id),
    )
    session.add(Reminder(subject_id=subject.id, kind=kind, due_at=due_key, event_id=envelope["id"]))
    return envelope


def scan_reminders(session, now=None):
    """Emit TASK_DUE_SOON / TASK_OVERDUE / MEETING_REMINDER once per item and due date; return how many."""
    now = now or utcnow()
    soon = now + timedelta(hours=24)
    emitted = 0
    with acting_as(None):
        tasks = session.execute(
            sa.select(Task).where(Task.status.in_(OPEN_STATUSES), Task.due_date.is_not(None), Task.due_date <= soon)
        ).scalars().all()
        for task in tasks:
            overdue = task.due_date <= now
            kind = "TASK_OVERDUE" if overdue else "TASK_DUE_SOON"
            title = f"{'期限切れ' if overdue else '期限間近'}: {task.title}"
            if _emit_reminder(session, kind, task, task.user_id, task.due_date, title,
                              f"期限 {task.due_date.isoformat()}", f"/api/tasks/{task.id}"):
                emitted += 1
        meetings = session.execute(
            sa.select(Meeting).where(Meeting.next_action.is_not(None), Meeting.next_action_date.is_not(None),
                                     Meeting.next_action_date <= soon)
        ).scalars().all()
        for meeting in meetings:
            if _emit_reminder(session, "MEETING_REMINDER", meeting, meeting.sales_id or meeting.created_by_id,
                              meeting.next_action_date, f"次回アクション: {meeting.next_action}"[:200],
                              f"{meeting.title} / {meeting.next_action_date.isoformat()}", f"/api/meetings/{meeting.id}"):
                emitted += 1
    session.commit()
    return emitted


def scan_approval_reminders(session, now=None):
    """Emit APPROVAL_REMINDER to the current approvers of every stale request; return how many.

    One Reminder row per request, step and interval (its primary key) is written before
    the events, in a savepoint: a second scan, even one running at the same moment, finds
    the row (or fails to insert it and skips that request), so nobody is reminded twice
    within an interval.
    """
    now = now or utcnow()
    hours = approval_board.reminder_hours(current_app.config)
    emitted = 0
    with acting_as(None):
        for due in approval_board.reminders_due(session, now, hours):
            request = due.request
            key = (request.id, f"APPROVAL_REMINDER_{due.step_sequence}", due.interval.isoformat())
            if session.get(Reminder, key) is not None:
                continue
            try:
                with session.begin_nested():
                    row = Reminder(subject_id=key[0], kind=key[1], due_at=key[2], event_id=str(uuid.uuid4()))
                    session.add(row)
                    session.flush()
            except sa.exc.IntegrityError:
                continue  # another scan took this interval's reminder
            for n, user_id in enumerate(due.approver_ids):
                envelope = events.emit(
                    session,
                    "APPROVAL_REMINDER",
                    "approval",
                    request.id,
                    {"id": request.id, "requesterId": str(request.requester_id), "userId": str(user_id),
                     "step": due.step_sequence, "interval": key[2]},
                    key=str(user_id),
                )
                if n == 0:
                    row.event_id = envelope["id"]  # the row names the first of its events, as for tasks
                emitted += 1
    session.commit()
    return emitted


@with_app
def reminder_job(chain=None):
    """Repeating RQ job: the reminder scan."""
    from app.extensions import db

    config = current_app.config
    if chain is not None:
        if not continue_chain(config, redis_client(), "reminders", chain):
            return "superseded"
    session = sa.orm.Session(bind=db.engine)
    try:
        return scan_reminders(session) + scan_approval_reminders(session)
    except sa.exc.IntegrityError:
        session.rollback()  # another scanner emitted the same reminder first
        return 0
    finally:
        session.close()


@with_app
def audit_seal_job(chain=None):
    """Repeating RQ job: link new audit rows into the hash chain (skipped while another sealer holds the chain)."""
    from app.audit_chain import seal
    from app.extensions import db

    if chain is not None:
        if not continue_chain(current_app.config, redis_client(), "audit_seal", chain):
            return "superseded"
    return seal(db.engine, wait=False)


@with_app
def audit_retention_job(chain=None):
    """Repeating RQ job: move whole months past AUDIT_RETENTION_MONTHS to the archive; return how many rows moved."""
    from app.audit_archive import retain_app

    if chain is not None:
        if not continue_chain(current_app.config, redis_client(), "audit_retention", chain):
            return "superseded"
    return sum(m["rows"] for m in retain_app(current_app._get_current_object()))


def start_watchdog(app):
    """Thread of the worker process: restart a repeating job whose chain vanished (Redis restarted, job lost)."""
    import threading
    import time

    from app.throttle import log_throttled

    config = app.config
    interval = max(1, int(config["OUTBOX_SWEEP_SECONDS"]))

    def watch():
        while True:
            time.sleep(interval)
            try:
                with app.app_context():
                    conn = redis_client()
                    for kind in REPEATING:
                        if ensure_repeating(config, conn, kind):
                            log.warning("Repeating job %s was missing (Redis restarted?); started again", kind)
                    # RQ runs scheduled jobs in one worker holding the scheduler lock; when that
                    # worker is SIGKILLed the lock outlives it for a while. Kicking the relay from
                    # here (deduplicated) keeps the outbox moving meanwhile.
                    kick_relay(config)
            except Exception as exc:  # noqa: BLE001 - Redis down: try again next round
                log_throttled(log, "watchdog", config["EVENTS_LOG_INTERVAL"], "Schedule watchdog: %s", exc)

    thread = threading.Thread(target=watch, name="crm-schedule-watchdog", daemon=True)
    thread.start()
    return thread
