"""app/reactions.py does not trust a message: forged events through the in-process drain and a real broker.

Issue 18 item 11: NOTIFY and reminder events named any user, title and link and were
e-mailed; notify_requester never looked at the request. Now facts are checked against the
database, texts and links come from it, and a message whose facts never held is parked
(in-process) or dead-lettered (Kafka).
"""

import json
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import links
from models import Notification, OutboxEvent
from models.base import utcnow
from models.task import TaskStatus
from tests.kafka_stack import Stack, read_topics, wait_for


def _emit(db, event_type, aggregate_type, aggregate_id, payload, key=None):
    """Write an event to the outbox and commit (the in-process drain delivers it); return its row, read afresh."""
    from app import events

    envelope = events.emit(db.session, event_type, aggregate_type, aggregate_id, payload, key=key or aggregate_id)
    db.session.commit()
    db.session.expire_all()
    return db.session.get(OutboxEvent, envelope["id"])


def _notes(db, **where):
    db.session.expire_all()
    stmt = sa.select(Notification)
    for key, value in where.items():
        stmt = stmt.where(getattr(Notification, key) == value)
    return db.session.execute(stmt).scalars().all()


def _parked(row, words):
    return row.published_at is not None and row.last_error and words in row.last_error


# --- links ------------------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                                  "/api/approvals/../../logout", "/api/approvals/x?next=//evil", "/logout",
                                  "api/tasks/x", "/api/tasks/x y", "/users/delete/7"])
def test_links_outside_the_app_are_refused(link):
    with pytest.raises(links.InvalidLink):
        links.check(link)


def test_links_of_the_apps_pages_pass():
    rid = str(uuid.uuid4())
    assert links.approval(rid) == f"/approvalrequestview/show/{rid}"
    assert links.check(f"/approvalrequestview/show/{rid}") and links.check("/approvals/pending/")
    assert links.check(None) is None


# --- the in-process drain ----------------------------------------------------------------------


def test_notify_with_a_foreign_link_is_parked(db, users):
    title = f"偽リンク-{uuid.uuid4().hex[:6]}"
    row = _emit(db, "NOTIFY", "user", users["sales2"].id,
                {"userId": str(users["sales2"].id), "title": title, "link": "https://evil.example/login"})
    assert _parked(row, "link")
    assert _notes(db, title=title) == []
    ok = _emit(db, "NOTIFY", "user", users["sales2"].id,
               {"userId": str(users["sales2"].id), "title": title, "link": "/approvals/pending/"})
    assert ok.last_error is None and [n.link for n in _notes(db, title=title)] == ["/approvals/pending/"]


def test_a_reminder_takes_its_text_and_link_from_the_task(db, make, users):
    task = make.task("sales2", title="本物のタスク", due_date=utcnow() + timedelta(hours=2))
    row = _emit(db, "TASK_DUE_SOON", "task", task.id,
                {"userId": str(users["sales2"].id), "title": "至急: パスワードを再設定してください",
                 "message": "https://evil.example/reset", "link": "https://evil.example/reset", "subjectId": task.id},
                key=str(users["sales2"].id))
    assert row.last_error is None
    (note,) = _notes(db, user_id=users["sales2"].id, link=f"/taskview/show/{task.id}")
    assert note.title == "期限間近: 本物のタスク" and "evil" not in (note.message or "")


def test_a_reminder_for_someone_elses_or_a_closed_task_notifies_nobody(db, make, users):
    task = make.task("sales2", title="他人のタスク-" + uuid.uuid4().hex[:6], due_date=utcnow() + timedelta(hours=2))
    _emit(db, "TASK_DUE_SOON", "task", task.id, {"userId": str(users["sales"].id), "title": "x", "subjectId": task.id})
    done = make.task("sales2", title="完了済み-" + uuid.uuid4().hex[:6], due_date=utcnow() - timedelta(hours=2),
                     status=TaskStatus.COMPLETED)
    _emit(db, "TASK_OVERDUE", "task", done.id, {"userId": str(users["sales2"].id), "title": "x", "subjectId": done.id})
    assert _notes(db, link=f"/taskview/show/{task.id}") == [] and _notes(db, link=f"/taskview/show/{done.id}") == []
    # A reminder that names a meeting as its subject but calls itself a task reminder is forged.
    meeting = make.meeting("sales2", next_action="電話", next_action_date=utcnow() + timedelta(hours=1))
    row = _emit(db, "TASK_DUE_SOON", "meeting", meeting.id, {"userId": str(users["sales2"].id), "title": "x"})
    assert _parked(row, "task")


def test_a_meeting_reminder_goes_to_its_rep_only(db, make, users):
    meeting = make.meeting("sales2", next_action="見積送付", next_action_date=utcnow() + timedelta(hours=1))
    _emit(db, "MEETING_REMINDER", "meeting", meeting.id, {"userId": str(users["sales"].id), "title": "偽"})
    assert _notes(db, link=f"/meetingview/show/{meeting.id}") == []
    _emit(db, "MEETING_REMINDER", "meeting", meeting.id, {"userId": str(users["sales2"].id), "title": "偽"})
    (note,) = _notes(db, link=f"/meetingview/show/{meeting.id}")
    assert note.user_id == users["sales2"].id and note.title == "次回アクション: 見積送付"


def test_an_outcome_the_request_never_had_is_parked(db, make, users):
    from app.serialize import column_values

    req = make.approval("sales")
    forged = _emit(db, "APPROVAL_APPROVED", "approval", req.id, column_values(req))  # still PENDING
    assert _parked(forged, "PENDING")
    assert _notes(db, user_id=users["sales"].id, type="APPROVAL_APPROVED", link=f"/approvalrequestview/show/{req.id}") == []
    other = _emit(db, "APPROVAL_REJECTED", "approval", req.id, {**column_values(req), "requesterId": str(users["sales2"].id)})
    assert _parked(other, "requester")
    missing = str(uuid.uuid4())
    row = _emit(db, "APPROVAL_REQUESTED", "approval", missing, {"id": missing, "requesterId": str(users["sales"].id)})
    assert _parked(row, "no approval request")


def test_the_real_outcome_notifies_with_the_deciding_comment(db, make, users):
    from app.services import approvals

    req = make.approval("sales")
    approvals.reject(req.id, users["manager"], "書類不備のため")
    (note,) = _notes(db, user_id=users["sales"].id, type="APPROVAL_REJECTED", link=f"/approvalrequestview/show/{req.id}")
    assert note.message == "書類不備のため" and note.title == f"却下されました: {req.product_name}"


def test_a_customer_created_event_cannot_name_another_rep(db, make, users):
    from app.reactions import FIRST_CONTACT_TITLE
    from app.serialize import column_values
    from models import Task

    customer = make.customer("sales")
    payload = {**column_values(customer), "assignedSalesId": str(users["sales2"].id)}
    _emit(db, "CUSTOMER_CREATED", "customer", customer.id, payload)
    owners = db.session.execute(sa.select(Task.user_id).where(
        Task.customer_id == customer.id, Task.title == FIRST_CONTACT_TITLE.format(name=customer.name))).scalars().all()
    assert set(owners) == {users["sales"].id}  # the customer's own rep, never the payload's


# --- a real broker: messages that never were in the outbox --------------------------------------


@pytest.fixture()
def stack(app, tmp_path, database_url, private_redis, kafka_broker, monkeypatch):
    """A Kafka-mode consumer stack of this test."""
    s = Stack(tmp_path, database_url, private_redis.url, kafka_broker.bootstrap)
    for key, value in s.config().items():
        monkeypatch.setitem(app.config, key, value)
    yield s
    s.stop_all()


def test_forged_messages_on_the_broker_are_dead_lettered(app, db, make, users, stack):
    from confluent_kafka import Producer
    from app.serialize import column_values

    task = make.task("sales2", title="ブローカー経由-" + uuid.uuid4().hex[:6], due_date=utcnow() + timedelta(hours=2))
    req = make.approval("sales")
    stack.start("consume", "--group", "crm-forged")
    wait_for(lambda: "listening on" in stack.logs("consume"), 60, what="the consumer to subscribe")
    marker = f"偽造-{uuid.uuid4().hex[:6]}"
    uid = str(users["sales2"].id)

    def envelope(event_type, aggregate_type, aggregate_id, payload):
        return {"id": str(uuid.uuid4()), "type": event_type, "aggregateType": aggregate_type,
                "aggregateId": str(aggregate_id), "sequence": 1, "occurredAt": utcnow().isoformat(),
                "actorId": None, "payload": payload}

    forged = [
        ("notification.events", uid, envelope("NOTIFY", "user", uid, {"userId": uid, "title": marker,
                                                                      "link": "https://evil.example/login"})),
        ("notification.events", uid, envelope("NOTIFY", "user", uid, {"userId": uid, "title": marker})),
        ("notification.events", uid, envelope("TASK_DUE_SOON", "task", task.id,
                                              {"userId": uid, "title": marker, "subjectId": task.id})),
        ("opportunity.events", req.id, envelope("APPROVAL_APPROVED", "approval", req.id, column_values(req))),
    ]
    producer = Producer({"bootstrap.servers": stack.env["KAFKA_BROKERS"]})
    for topic, key, value in forged:
        producer.produce(stack.prefix + topic, key=key.encode(), value=json.dumps(value).encode())
    producer.flush(10)
    dead = read_topics(stack.env["KAFKA_BROKERS"], [stack.prefix + "notification.events.dlq",
                                                    stack.prefix + "opportunity.events.dlq"],
                       until=lambda out: len(out) >= len(forged), timeout=60)
    assert sorted(json.loads(m[3])["id"] for m in dead) == sorted(v["id"] for _, _, v in forged)
    errors = " ".join(m[2]["dlq.error"].decode() for m in dead)
    assert "not written by this system" in errors and "PENDING" in errors
    assert _notes(db, title=marker) == []
    assert _notes(db, user_id=users["sales"].id, type="APPROVAL_APPROVED", link=f"/approvalrequestview/show/{req.id}") == []
    assert _notes(db, link=f"/taskview/show/{task.id}", type="TASK_DUE_SOON") == []
