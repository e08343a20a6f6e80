"""Graceful stop: SIGTERM to a consumer mid-batch, to a worker mid-job and to gunicorn mid-request loses nothing and applies nothing twice.

Real processes: `crm consume` and `crm worker` against tansu, PostgreSQL and a private
Redis (tests/kafka_stack.py), gunicorn with the project's gunicorn.conf.py. The fault
pauses (CONSUMER_FAULT_PAUSE_BEFORE_OFFSETS, RELAY_FAULT_PAUSE_BEFORE_MARK) hold each
process in the middle of its unit of work when the signal arrives. Compare with
tests/test_events_kafka.py, where SIGKILL in the same windows causes redeliveries.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
import sqlalchemy as sa

from models import Customer, OutboxEvent, Task
from models.base import utcnow
from tests.kafka_stack import ROOT, Stack, event_ids, outbox_counts, read_topics, wait_for
from tests.services import free_port

pytestmark = pytest.mark.slow


@pytest.fixture()
def stack(app, tmp_path, database_url, private_redis, kafka_broker, monkeypatch):
    """A Kafka-mode stack of this test; the test process writes in Kafka mode too."""
    s = Stack(tmp_path, database_url, private_redis.url, kafka_broker.bootstrap)
    for key, value in s.config().items():
        monkeypatch.setitem(app.config, key, value)
    yield s
    s.stop_all()


def _create_customers(app, users, n):
    """n customers of sales2, one transaction each (Kafka mode: each commit kicks the relay); their ids."""
    from app.context import acting_as
    from app.extensions import db

    ids = []
    with app.app_context():
        for i in range(n):
            with acting_as(users["sales2"]):
                c = Customer(name=f"停止{i}-{uuid.uuid4().hex[:6]}", email=f"stop-{uuid.uuid4().hex}@example.jp",
                             assigned_sales_id=users["sales2"].id, created_by_id=users["sales2"].id)
                db.session.add(c)
                db.session.commit()
                ids.append(c.id)
        db.session.remove()
    return ids


def _tasks_per_customer(engine, ids):
    with engine.connect() as conn:
        return dict(conn.execute(
            sa.select(Task.customer_id, sa.func.count()).where(Task.customer_id.in_(ids), Task.title.like("初回コンタクト: %"))
            .group_by(Task.customer_id)
        ).all())


def _our_event_ids(engine, since):
    with engine.connect() as conn:
        return set(conn.execute(sa.select(OutboxEvent.id).where(OutboxEvent.created_at >= since)).scalars())


def _unconsumed(engine, since):
    """Outbox rows since `since` without their analytics reaction (every event has one)."""
    from models import ProcessedEvent

    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(OutboxEvent).where(
                OutboxEvent.created_at >= since,
                ~sa.exists().where(ProcessedEvent.event_id == OutboxEvent.id, ProcessedEvent.handler == "count_event"))
        ).scalar()


def test_sigterm_mid_batch_commits_effects_and_offsets(app, db, users, stack):
    """The consumer, paused between a batch's effects and its offsets, gets SIGTERM: it finishes, commits, stops polling; the next consumer redelivers nothing."""
    since = utcnow()
    first = stack.start("consume", "--group", "crm-stop", env={"CONSUMER_FAULT_PAUSE_BEFORE_OFFSETS": "4"})
    stack.start("worker")
    n = 20
    ids = _create_customers(app, users, n)
    wait_for(lambda: stack.logs("consume").rstrip().endswith("before storing offsets"), 90, 0.02,
             "the consumer to pause mid-batch (effects committed, offsets not stored)")
    received_at_signal = stack.logs("consume").count("Event received:")
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, stack.logs("consume")[-2000:]
    log = stack.logs("consume")
    assert "stored offsets committed" in log
    assert log.count("Event received:") == received_at_signal, "no poll after SIGTERM"
    # The rest of the stream goes to the next consumer of the group, from the committed offsets.
    second = stack.start("consume", "--group", "crm-stop")
    wait_for(lambda: len(_tasks_per_customer(db.engine, ids)) == n, 120, 0.5, "one first-contact task per customer")
    # The reactions' own events (the tasks') travel too: wait until every event is published and consumed.
    wait_for(lambda: outbox_counts(db.engine, since)[1] == 0 and _unconsumed(db.engine, since) == 0, 90, 0.5,
             "every event published and consumed")
    time.sleep(2)  # a redelivery, if any, lands meanwhile
    ours = _our_event_ids(db.engine, since)
    messages = [i for i in event_ids(read_topics(stack.env["KAFKA_BROKERS"], stack.topics(), idle=1.0)) if i in ours]
    received = stack.logs("consume").count("Event received:")
    tasks = _tasks_per_customer(db.engine, ids)
    assert set(messages) == ours and len(messages) == len(ours), "every event once on the topics"
    assert received == len(ours), f"{received} received for {len(ours)} events: the stopped batch was redelivered"
    assert sum(tasks.values()) == n and max(tasks.values()) == 1
    assert second.poll() is None


def test_sigterm_mid_job_lets_the_relay_finish_its_batch(app, db, users, stack):
    """The worker, paused between delivering a relay batch and marking it, gets SIGTERM (to its process group, as an init system sends it): the batch is marked, the job ends, the worker exits; nothing is published twice."""
    import redis
    from rq import Queue
    from rq.registry import FailedJobRegistry

    since = utcnow()
    n = 25
    ids = _create_customers(app, users, n)  # no worker yet: the kicks wait in the queue
    worker = stack.start("worker", env={"RELAY_FAULT_PAUSE_BEFORE_MARK": "4", "OUTBOX_BATCH_SIZE": "10"})
    wait_for(lambda: "pausing" in stack.logs("worker"), 90, 0.02, "the relay to deliver its first batch")
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(30) == 0, stack.logs("worker")[-2000:]
    assert "warm shut down requested" in stack.logs("worker")
    total, pending = outbox_counts(db.engine, since)
    # The batch in hand was marked; the job did not start another one after the signal.
    assert (total, pending) == (n, n - 10), (total, pending)
    ours = _our_event_ids(db.engine, since)
    on_topics = [i for i in event_ids(read_topics(stack.env["KAFKA_BROKERS"], stack.topics(), idle=1.0)) if i in ours]
    assert len(on_topics) == len(set(on_topics)) == 10
    conn = redis.Redis.from_url(stack.env["REDIS_URL"])
    assert FailedJobRegistry(queue=Queue(stack.queue, connection=conn)).count == 0
    # A new worker publishes the rest; a consumer applies each event once.
    stack.start("worker")
    stack.start("consume", "--group", "crm-stop-worker")
    wait_for(lambda: outbox_counts(db.engine, since)[1] == 0, 90, what="an empty outbox")
    wait_for(lambda: len(_tasks_per_customer(db.engine, ids)) == n, 120, 0.5, "one first-contact task per customer")
    on_topics = [i for i in event_ids(read_topics(stack.env["KAFKA_BROKERS"], stack.topics(), idle=1.0)) if i in ours]
    assert sorted(on_topics) == sorted(ours), "each event published exactly once"
    tasks = _tasks_per_customer(db.engine, ids)
    assert sum(tasks.values()) == n and max(tasks.values()) == 1


# ---------------------------------------------------------------- gunicorn


def slow_app(environ, start_response):
    """WSGI app for the gunicorn test: notes that it started, takes 3 s, answers 200 (gunicorn loads it from this module)."""
    with open(environ.get("HTTP_X_MARKER", os.devnull), "w") as fh:
        fh.write("started")
    time.sleep(3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"finished"]


def test_sigterm_lets_gunicorn_finish_the_request_in_flight(tmp_path):
    """gunicorn with the project's gunicorn.conf.py (graceful_timeout): SIGTERM mid-request, the answer still arrives whole, new connections are refused, the master exits 0."""
    port = free_port()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    env = {**os.environ, "WEB_GRACEFUL_TIMEOUT": "20", "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([gunicorn, "--workers", "1", "--bind", f"127.0.0.1:{port}", "tests.test_graceful_stop:slow_app"],
                            cwd=ROOT, env=env, stdout=open(tmp_path / "gunicorn.log", "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        marker = tmp_path / "started"
        wait_for(lambda: _answers(port), 60, 0.2, "gunicorn to listen")
        result = {}

        def call():
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/", headers={"X-Marker": str(marker)}, timeout=30)
                result["answer"] = (resp.status_code, resp.text)
            except requests.RequestException as exc:  # noqa: BLE001 - recorded, asserted below
                result["answer"] = repr(exc)

        marker.unlink(missing_ok=True)
        thread = threading.Thread(target=call)
        thread.start()
        wait_for(marker.exists, 30, 0.05, "the request to be in flight")
        proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert result.get("answer") == (200, "finished"), result
        assert proc.wait(30) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _answers(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    except requests.RequestException:
        return False
