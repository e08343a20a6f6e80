"""The embedded default (KAFKA_ENABLED off): the outbox drains in-process to the reactions."""

import uuid
from datetime import timedelta

import sqlalchemy as sa

from models import Customer, Notification, OutboxEvent, ProcessedEvent, Task
from models.analytics import Reminder


def _count(db, stmt):
    return db.session.execute(stmt).scalar()


def test_registered_user_becomes_lead_and_gets_first_contact_task(app, db):
    """USER_CREATED → a lead for the user; CUSTOMER_CREATED → 「初回コンタクト」 for its rep."""
    from app.services.users import create_user

    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    user = create_user(email, "Taro Yamada", "Sales", "pass-12345")
    leads = db.session.execute(sa.select(Customer).where(Customer.email == email)).scalars().all()
    assert len(leads) == 1
    assert leads[0].assigned_sales_id == user.id and leads[0].name == "Taro Yamada"
    tasks = db.session.execute(sa.select(Task).where(Task.customer_id == leads[0].id)).scalars().all()
    assert [t.title for t in tasks] == ["初回コンタクト: Taro Yamada"]
    assert tasks[0].user_id == user.id
    # Everything this produced has been delivered.
    pending = _count(db, sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None)))
    assert pending == 0


def test_customer_created_through_api_has_task_when_request_returns(app, client, auth, users, db):
    """The effect is visible to the client as soon as its POST returns."""
    resp = client.post(
        "/api/v1/customer/",
        json={"name": "株式会社即時", "email": f"x-{uuid.uuid4().hex[:8]}@example.jp"},
        headers=auth("sales"),
    )
    assert resp.status_code == 201, resp.get_data(as_text=True)
    cid = str(resp.json["id"])
    task = db.session.execute(sa.select(Task).where(Task.customer_id == cid)).scalar_one()
    assert task.title == "初回コンタクト: 株式会社即時"
    assert task.user_id == users["sales"].id
    # The reaction's audit row is attributed to the rep, not to "nobody".
    from models import AuditLog

    log = db.session.execute(
        sa.select(AuditLog).where(AuditLog.resource_type == "task", AuditLog.resource_id == task.id)
    ).scalar_one()
    assert log.user_id == users["sales"].id


def test_redelivery_changes_nothing(app, make, db):
    """Running the reactions again for a delivered event adds no second task."""
    from app.reactions import apply_event

    customer = make.customer("sales")
    row = db.session.execute(
        sa.select(OutboxEvent).where(OutboxEvent.aggregate_id == customer.id, OutboxEvent.type == "CUSTOMER_CREATED")
    ).scalar_one()
    assert row.published_at is not None
    session = sa.orm.Session(bind=db.engine)
    assert apply_event(session, row.envelope) == []
    session.commit()
    session.close()
    n = _count(db, sa.select(sa.func.count()).select_from(Task).where(Task.customer_id == customer.id))
    assert n == 1
    handlers = db.session.execute(sa.select(ProcessedEvent.handler).where(ProcessedEvent.event_id == row.id)).scalars()
    assert sorted(handlers) == ["count_event", "first_contact_task"]


def test_rolled_back_transaction_leaves_no_outbox_row(app, db, users):
    """A rolled-back write leaves neither the row nor its event."""
    from app.context import acting_as

    email = f"rb-{uuid.uuid4().hex[:8]}@example.jp"
    with acting_as(users["sales"]):
        db.session.add(Customer(name="ロールバック", email=email, assigned_sales_id=users["sales"].id))
        db.session.flush()
        cid = db.session.execute(sa.select(Customer.id).where(Customer.email == email)).scalar_one()
        assert _count(db, sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.aggregate_id == cid)) == 1
        db.session.rollback()
    assert _count(db, sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.aggregate_id == cid)) == 0


def test_approval_request_notifies_managers(app, make, users, db):
    """APPROVAL_REQUESTED → an APPROVAL_REQUEST notification for each Manager."""
    req = make.approval("sales")
    notes = db.session.execute(
        sa.select(Notification).where(Notification.link == f"/approvalrequestview/show/{req.id}")
    ).scalars().all()
    assert users["manager"].id in {n.user_id for n in notes}
    assert users["sales"].id not in {n.user_id for n in notes}
    assert {str(n.type) for n in notes} == {"APPROVAL_REQUEST"}


def test_approval_outcome_notifies_requester(app, make, users, db):
    """APPROVAL_APPROVED → the requester is notified."""
    from app.services import approvals

    req = make.approval("sales")
    approvals.approve(req.id, users["manager"])  # the real outcome, not a hand-written event
    note = db.session.execute(
        sa.select(Notification).where(Notification.user_id == users["sales"].id, Notification.type == "APPROVAL_APPROVED",
                                      Notification.link == f"/approvalrequestview/show/{req.id}")
    ).scalar_one()
    assert note.title.startswith("承認されました")


def test_reminder_scan_emits_once_and_notifies(app, make, users, db):
    """Due-soon and overdue tasks are notified once, however often the scan runs."""
    from models.base import utcnow
    from workers.schedules import scan_reminders

    soon = make.task("sales2", title="due-soon-" + uuid.uuid4().hex[:6], due_date=utcnow() + timedelta(hours=3))
    late = make.task("sales2", title="overdue-" + uuid.uuid4().hex[:6], due_date=utcnow() - timedelta(hours=3))
    for _ in range(2):
        session = sa.orm.Session(bind=db.engine)
        scan_reminders(session)
        session.close()
    kinds = db.session.execute(
        sa.select(Reminder.subject_id, Reminder.kind).where(Reminder.subject_id.in_([soon.id, late.id]))
    ).all()
    assert sorted(kinds, key=lambda r: r[1]) == sorted([(soon.id, "TASK_DUE_SOON"), (late.id, "TASK_OVERDUE")], key=lambda r: r[1])
    notes = db.session.execute(
        sa.select(Notification.title).where(Notification.user_id == users["sales2"].id, Notification.link.in_(
            [f"/taskview/show/{soon.id}", f"/taskview/show/{late.id}"]))
    ).scalars().all()
    assert sorted(notes) == sorted([f"期限間近: {soon.title}", f"期限切れ: {late.title}"])


def test_poison_event_in_process_is_parked(app, db):
    """An event failing validation is parked with its error and blocks nothing."""
    from app.delivery import drain_in_process

    bad = OutboxEvent(id=str(uuid.uuid4()), topic="notification.events", aggregate_type="x", aggregate_id="1",
                      key="1", type="NOTIFY", sequence=1, envelope={"id": "nope", "type": "NOTIFY"})
    db.session.add(bad)
    db.session.commit()
    drain_in_process()
    db.session.expire_all()
    row = db.session.get(OutboxEvent, bad.id)
    assert row.published_at is not None and "missing" in row.last_error


def test_outbox_backlog_reports_pending(app, db):
    """outbox_backlog() counts unpublished rows and the age of the oldest."""
    from app.services.outbox import outbox_backlog

    assert outbox_backlog()["pending"] == 0
    row = OutboxEvent(id=str(uuid.uuid4()), topic="t", aggregate_type="x", aggregate_id=uuid.uuid4().hex,
                      key="k", type="NOTIFY", sequence=1, envelope={})
    session = sa.orm.Session(bind=db.engine)
    session.info["audit_disabled"] = True
    session.add(row)
    session.flush()
    assert outbox_backlog(session)["pending"] == 1
    session.rollback()
    session.close()


def test_step_decided_notifies_next_role(app, make, users, db):
    """APPROVAL_STEP_DECIDED with a pending compliance step → Compliance users are notified."""
    from app import events
    from app.context import acting_as
    from app.serialize import column_values
    from models import ApprovalStep, StepDecision
    from models.base import utcnow

    req = make.approval("sales", amount=app.config["APPROVAL_COMPLIANCE_THRESHOLD"])
    step = db.session.execute(sa.select(ApprovalStep).where(ApprovalStep.approval_request_id == req.id,
                                                            ApprovalStep.sequence == 1)).scalar_one()
    with acting_as(users["manager"]):
        step.decision, step.decided_by_id, step.decided_at = StepDecision.APPROVED, users["manager"].id, utcnow()
        db.session.flush()
        events.emit(db.session, "APPROVAL_STEP_DECIDED", "approval", req.id, column_values(req))
        db.session.commit()
    notified = set(db.session.execute(sa.select(Notification.user_id).where(
        Notification.link == f"/approvalrequestview/show/{req.id}", Notification.type == "APPROVAL_REQUEST")).scalars())
    assert users["compliance"].id in notified  # the next step's role
    assert users["manager"].id in notified  # from APPROVAL_REQUESTED (step 1)


class _SmtpSink:
    """A minimal SMTP server in a thread that keeps what it receives (mock SMTP for tests)."""

    def __init__(self):
        import socketserver
        import threading

        sink = self
        self.messages = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                self.wfile.write(b"220 sink\r\n")
                mail = {"rcpt": [], "data": b""}
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    cmd = line.strip().upper()
                    if cmd.startswith((b"EHLO", b"HELO")):
                        self.wfile.write(b"250 sink\r\n")
                    elif cmd.startswith(b"RCPT"):
                        mail["rcpt"].append(line.split(b":", 1)[1].strip(b" <>\r\n").decode())
                        self.wfile.write(b"250 ok\r\n")
                    elif cmd == b"DATA":
                        self.wfile.write(b"354 go\r\n")
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            mail["data"] += chunk
                        sink.messages.append(dict(mail))
                        self.wfile.write(b"250 queued\r\n")
                    elif cmd == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_notification_email_goes_through_an_rq_job(app, db, users, monkeypatch):
    """With SMTP configured, a NOTIFY event adds the in-app row and queues an email job that sends it."""
    import redis
    from rq import Queue, SimpleWorker

    from app import events
    from workers import runtime

    sink = _SmtpSink()
    queue_name = f"crm-mail-{uuid.uuid4().hex[:6]}"
    for key, value in {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": sink.port, "SMTP_USE_TLS": False,
                       "RQ_QUEUE": queue_name}.items():
        monkeypatch.setitem(app.config, key, value)
    runtime.set_app(app)
    events.emit(db.session, "NOTIFY", "user", users["sales2"].id,
                {"userId": str(users["sales2"].id), "title": "メールテスト", "message": "本文"}, key=users["sales2"].id)
    db.session.commit()
    assert db.session.execute(sa.select(Notification).where(Notification.user_id == users["sales2"].id,
                                                            Notification.title == "メールテスト")).scalar_one()
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    q = Queue(queue_name, connection=conn)
    assert q.count == 1 and not sink.messages  # queued after commit, not sent inline
    SimpleWorker([q], connection=conn).work(burst=True)
    sink.server.shutdown()
    assert [m["rcpt"] for m in sink.messages] == [[users["sales2"].email]]
    q.delete(delete_jobs=True)


def test_two_drainers_at_once_deliver_each_event_once_on_every_database(every_db, monkeypatch):
    """Two in-process drains over the same rows: every event applied once, marked once, never un-marked."""
    import threading
    import time

    from app import delivery, reactions
    from app.extensions import db as _db
    from models.base import utcnow

    application, people = every_db
    user_id = people["sales2"].id
    title = f"同時配信-{uuid.uuid4().hex[:6]}"
    ids = []
    with application.app_context():
        for n in range(6):
            event_id = str(uuid.uuid4())
            envelope = {"id": event_id, "type": "NOTIFY", "aggregateType": "user", "aggregateId": f"{user_id}-{title}",
                        "sequence": n + 1, "occurredAt": utcnow().isoformat(), "actorId": None,
                        "payload": {"userId": str(user_id), "title": title}}
            # Written without the after-commit kick, so only the two drains below deliver them.
            _db.session.add(OutboxEvent(id=event_id, topic="notification.events", aggregate_type="user",
                                        aggregate_id=f"{user_id}-{title}", key=str(user_id), type="NOTIFY",
                                        sequence=n + 1, envelope=envelope))
            ids.append(event_id)
        _db.session.commit()
        _db.session.remove()
    real = reactions.apply_event

    def slow(session, envelope):
        time.sleep(0.05)  # both drains hold the same batch of ids while the first one works
        return real(session, envelope)

    monkeypatch.setattr(reactions, "apply_event", slow)
    barrier = threading.Barrier(2)

    def drain():
        with application.app_context():
            barrier.wait()
            delivery._drain_batch(set())

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with application.app_context():
        rows = _db.session.execute(sa.select(OutboxEvent).where(OutboxEvent.id.in_(ids))).scalars().all()
        assert [(r.attempts, r.last_error) for r in rows] == [(1, None)] * len(ids)
        assert all(r.published_at is not None for r in rows)
        notes = _db.session.execute(sa.select(sa.func.count()).select_from(Notification).where(
            Notification.user_id == user_id, Notification.title == title)).scalar()
        assert notes == len(ids)
        _db.session.remove()
