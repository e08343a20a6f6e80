"""Approval reminders (issue 21 part 5): a request waiting APPROVAL_REMINDER_HOURS or longer
reminds its current approvers once per interval — through the scheduler's reminder job,
the outbox and the notification service, with an e-mail when SMTP is set — and never twice
within an interval, even when two scheduler runs overlap."""

import threading
import uuid
from datetime import timedelta

import sqlalchemy as sa

from app.services import approval_board
from app.services import approvals as service
from models import ApprovalRequest, Notification, NotificationType, OutboxEvent
from models.base import utcnow
from workers import schedules

THRESHOLD = 10_000_000
PREFIX = "承認催促: "


def _backdate(db, request, hours):
    """Make `request` `hours` old (requested_at is locked by the ORM guard, so write it as an import would)."""
    db.session.execute(sa.update(ApprovalRequest).where(ApprovalRequest.id == request.id)
                       .values(requested_at=utcnow() - timedelta(hours=hours)))
    db.session.commit()


def _scan(db, now=None):
    session = sa.orm.Session(bind=db.engine)
    try:
        return schedules.scan_approval_reminders(session, now=now)
    finally:
        session.close()


def _reminded(db, request):
    """{user id: how many reminders} about `request`."""
    db.session.expire_all()
    rows = db.session.execute(
        sa.select(Notification.user_id, sa.func.count()).where(
            Notification.link.like(f"%{request.id}"), Notification.type == NotificationType.APPROVAL_REQUEST,
            Notification.title.startswith(PREFIX),
        ).group_by(Notification.user_id)
    ).all()
    return dict(rows)


def _role_holders(db, role):
    from flask_appbuilder.security.sqla.models import Role, User

    return set(db.session.execute(sa.select(User.id).where(User.roles.any(Role.name == role))).scalars())


def test_once_per_interval_to_the_managers_only(app, make, users, db):
    req = make.approval("sales")
    _backdate(db, req, 25)
    assert _scan(db) >= 1
    _scan(db)  # a second run in the same interval
    first = _reminded(db, req)
    assert first.get(users["manager"].id) == 1
    assert users["compliance"].id not in first and users["sales"].id not in first and users["sales2"].id not in first
    assert set(first) <= _role_holders(db, "Manager")
    db.session.expire_all()
    note = db.session.execute(sa.select(Notification).where(
        Notification.user_id == users["manager"].id, Notification.link.like(f"%{req.id}"),
        Notification.title.startswith(PREFIX))).scalar_one()
    assert note.title == f"{PREFIX}国内株式ファンド が25時間、判断を待っています"
    assert "¥1,000,000" in note.message and req.customer.name in note.message

    later = utcnow() + timedelta(hours=24)  # the next interval: one more each
    _scan(db, now=later)
    _scan(db, now=later + timedelta(minutes=5))
    assert _reminded(db, req) == {uid: 2 for uid in first}


def test_fresh_requests_are_not_reminded(app, make, db):
    req = make.approval("sales")
    _backdate(db, req, 23)
    _scan(db)
    assert _reminded(db, req) == {}


def test_next_step_approvers_reminded_and_nobody_after_the_decision(app, make, users, db):
    req = make.approval("sales", amount=THRESHOLD)
    _backdate(db, req, 30)
    _scan(db)
    first = _reminded(db, req)
    assert first.get(users["manager"].id) == 1 and users["compliance"].id not in first
    service.approve(req.id, users["manager"], "一次承認")
    _scan(db)  # same interval, but a new step: its approvers are reminded now
    after_step = _reminded(db, req)
    assert after_step.get(users["compliance"].id) == 1 and after_step[users["manager"].id] == 1
    new = {uid for uid, n in after_step.items() if n > first.get(uid, 0)}
    assert users["compliance"].id in new and new <= _role_holders(db, "Compliance")
    service.approve(req.id, users["compliance"], "適合性確認")
    _scan(db, now=utcnow() + timedelta(hours=48))
    assert _reminded(db, req) == after_step

    for finish in (lambda r: service.reject(r.id, users["manager"], "不可"), lambda r: service.recall(r.id, users["sales"])):
        done = make.approval("sales")
        _backdate(db, done, 30)
        finish(done)
        _scan(db)
        assert _reminded(db, done) == {}


def test_two_scheduler_runs_at_once_remind_once(app, make, users, db, monkeypatch):
    req = make.approval("sales")
    _backdate(db, req, 25)
    both_read = threading.Barrier(2, timeout=20)
    real = approval_board.reminders_due

    def due_then_wait(*args, **kwargs):
        found = real(*args, **kwargs)
        both_read.wait()  # each run has seen the request as due before either writes
        return found

    monkeypatch.setattr(approval_board, "reminders_due", due_then_wait)
    results, errors = [], []

    def run():
        try:
            with app.app_context():
                results.append(_scan(db))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 2
    reminded = _reminded(db, req)
    assert reminded.get(users["manager"].id) == 1 and set(reminded.values()) == {1}


def test_reminder_overtaken_by_the_decision_notifies_nobody(app, make, users, db):
    """An APPROVAL_REMINDER delivered after the request was decided (Kafka lag) changes nothing."""
    from app import reactions

    decided, waiting = make.approval("sales"), make.approval("sales")
    service.approve(decided.id, users["manager"])
    for req, expected in ((decided, {}), (waiting, {users["manager"].id: 1})):
        _deliver_late(reactions, db, users, req)
        assert _reminded(db, req) == expected


def _deliver_late(reactions, db, users, req):
    event_id = str(uuid.uuid4())
    envelope = {"id": event_id, "type": "APPROVAL_REMINDER", "aggregateType": "approval", "aggregateId": req.id,
                "sequence": 999, "occurredAt": utcnow().isoformat(), "actorId": None,
                "payload": {"id": req.id, "requesterId": str(users["sales"].id), "userId": str(users["manager"].id),
                            "step": 1, "interval": utcnow().isoformat()}}
    # Written without the after-commit kick, as a relay would find it: then delivered by hand.
    db.session.add(OutboxEvent(id=event_id, topic="notification.events", aggregate_type="approval", aggregate_id=req.id,
                               key=str(users["manager"].id), type="APPROVAL_REMINDER", sequence=999, envelope=envelope,
                               published_at=utcnow()))
    db.session.info.pop("outbox_written", None)
    db.session.commit()
    assert "remind_approver" in reactions.apply_event(db.session, envelope)
    db.session.commit()


def test_reminder_job_e_mails_when_smtp_is_set(app, make, users, db, monkeypatch):
    """The scheduler's job: reminders go through the notification service and, with SMTP, an e-mail job."""
    import redis
    from rq import Queue, SimpleWorker

    from app import mail
    from workers import runtime

    req = make.approval("sales")
    _backdate(db, req, 25)
    queue_name = f"crm-remind-{uuid.uuid4().hex[:6]}"
    for key, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": 2525, "SMTP_USE_TLS": False, "RQ_QUEUE": queue_name}.items():
        monkeypatch.setitem(app.config, key, value)
    runtime.set_app(app)
    sent = []
    monkeypatch.setattr(mail, "send_email", lambda to, subject, body, config: sent.append((to, subject, body)) or True)
    assert schedules.reminder_job() >= 1  # what the repeating chain runs
    assert _reminded(db, req).get(users["manager"].id) == 1
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    q = Queue(queue_name, connection=conn)
    try:
        SimpleWorker([q], connection=conn).work(burst=True)
    finally:
        q.delete(delete_jobs=True)
    mine = [m for m in sent if m[0] == users["manager"].email and req.customer.name in m[2]]
    assert len(mine) == 1 and mine[0][1].startswith(PREFIX + "国内株式ファンド")


def test_reminder_text_is_in_the_default_language_whoever_runs_the_drain(app, make, users, db):
    """Delivered in-process during an English user's request, the stored reminder is still Japanese."""
    req = make.approval("sales")
    _backdate(db, req, 25)
    with app.test_request_context("/?_l_=en"):
        from flask_babel import gettext

        assert gettext("Approvals Board") == "Approvals Board"  # this request speaks English
        _scan(db)
    db.session.expire_all()
    titles = db.session.execute(sa.select(Notification.title).where(
        Notification.user_id == users["manager"].id, Notification.link.like(f"%{req.id}"),
        Notification.type == NotificationType.APPROVAL_REQUEST)).scalars().all()
    assert any(t.startswith(PREFIX) for t in titles), titles


def test_forged_or_malformed_reminders_are_parked_and_notify_nobody(app, make, users, db):
    """An APPROVAL_REMINDER naming a user who may not decide, the wrong requester, or a junk step changes nothing."""
    from app import events

    req = make.approval("sales")
    cases = [
        ({"userId": str(users["sales2"].id), "step": 1}, None),  # not an approver: outdated, nothing happens
        ({"userId": str(users["compliance"].id), "step": 1}, None),  # wrong role for step 1
        ({"userId": str(users["manager"].id), "step": 2}, None),  # no such current step
        ({"userId": str(users["manager"].id), "step": "1; drop"}, "step"),
        ({"userId": str(users["manager"].id), "step": 1, "requesterId": str(users["sales2"].id)}, "requesterId"),
    ]
    for fields, parked in cases:
        payload = {"id": req.id, "requesterId": str(users["sales"].id), "interval": utcnow().isoformat(), **fields}
        envelope = events.emit(db.session, "APPROVAL_REMINDER", "approval", req.id, payload, key=fields["userId"])
        db.session.commit()
        db.session.expire_all()
        row = db.session.get(OutboxEvent, envelope["id"])
        assert row.published_at is not None  # delivered (or parked) in-process
        if parked:
            assert row.last_error and parked in row.last_error, row.last_error
    assert _reminded(db, req) == {}


def test_the_repeating_audit_seal_job_links_new_audit_rows(app, db):
    """workers.schedules.audit_seal_job (every AUDIT_SEAL_SECONDS on the worker) seals what was committed."""
    from app import audit
    from app.audit_archive import ranges
    from app.audit_chain import verify
    from models import AuditLog
    from tests.helpers import unique_tag

    from workers import runtime

    runtime.set_app(app)  # the jobs' app is this run's, whichever test ran first
    rid = unique_tag("sealjob")
    audit.record(db.session, "UPDATE", "system", rid, None, user_id=None)
    db.session.commit()
    assert schedules.audit_seal_job() >= 1
    db.session.expire_all()
    row = db.session.query(AuditLog).filter(AuditLog.resource_id == rid).one()
    assert row.seq is not None and verify(db.engine, ranges(app.config["AUDIT_ARCHIVE_DIR"])).ok
    assert "audit_seal" in schedules.REPEATING


def test_the_repeating_audit_retention_job_archives_months_past_retention(app, db):
    """workers.schedules.audit_retention_job (every AUDIT_RETENTION_SECONDS) archives with the app's settings."""
    import os
    from datetime import datetime, timezone

    from app import audit
    from app.audit_archive import ranges
    from app.audit_chain import verify
    from models import AuditLog
    from tests.helpers import unique_tag

    from workers import runtime

    runtime.set_app(app)
    rid = unique_tag("retjob")
    audit.record_many(db.session, [{"action": "UPDATE", "resource_type": "system", "resource_id": rid,
                                    "timestamp": datetime(1988, 4, 2, tzinfo=timezone.utc), "user_id": None}])
    db.session.commit()
    assert schedules.audit_retention_job() >= 1
    db.session.expire_all()
    assert db.session.query(AuditLog).filter(AuditLog.resource_id == rid).count() == 0
    directory = app.config["AUDIT_ARCHIVE_DIR"]
    assert any(name.startswith("audit-1988-04") for name in os.listdir(directory))
    assert verify(db.engine, ranges(directory)).ok
    assert "audit_retention" in schedules.REPEATING
