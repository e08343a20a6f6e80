"""Prometheus metrics (app/metrics.py): each series after the real action it counts, who may read them, and Debian's real Prometheus scraping the stack.

The unit checks read `/metrics` through the test client before and after an action and
compare the two (the database and the process counters are shared with the whole run,
so only differences are asserted). The last test starts gunicorn, an RQ worker, a
consumer and a tansu broker, lets `prometheus` scrape all three, asks its HTTP API what
it saw, and checks the alert rules with `promtool check rules` and `promtool test rules`.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from app import caching, metrics
from tests.conftest import PASSWORD
from tests.kafka_stack import ROOT, Stack, wait_for
from tests.services import free_port

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
PROMETHEUS_EXAMPLE = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def parse(text):
    """{(sample name, sorted label pairs): value} of a Prometheus text exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(client, headers=None):
    """The parsed `/metrics` of the test app (the test client comes from 127.0.0.1, let in by address)."""
    resp = client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.mimetype == "text/plain"
    return parse(resp.get_data(as_text=True))


def value(samples, name, **labels):
    """One sample's value, 0 when absent (a counter never incremented has no child yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name, **labels):
    """How much one sample grew between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


# ---------------------------------------------------------------- requests


def test_requests_counted_by_route_template_method_and_status_with_latency(client, auth, make):
    """A read, a 404 on the same route and an unrouted path: each under its template (never the raw path), with a histogram."""
    request = make.approval("sales")
    route = {"route": "/api/approvals/<request_id>", "method": "GET"}
    before = scrape(client)
    assert client.get(f"/api/approvals/{request.id}", headers=auth("manager")).status_code == 200
    assert client.get(f"/api/approvals/{uuid.uuid4()}", headers=auth("manager")).status_code == 404
    assert client.get(f"/nowhere-{uuid.uuid4().hex}").status_code == 404
    after = scrape(client)
    name = "crm_http_request_duration_seconds"
    assert delta(before, after, f"{name}_count", **route, status="200") == 1
    assert delta(before, after, f"{name}_count", **route, status="404") == 1
    assert delta(before, after, f"{name}_count", route=metrics.UNMATCHED, method="GET", status="404") == 1
    assert delta(before, after, f"{name}_bucket", **route, status="200", le="+Inf") == 1
    assert delta(before, after, f"{name}_sum", **route, status="200") > 0
    assert not any(request.id in labels_text for (_n, labels) in after for labels_text in map(str, labels))
    # The histogram's buckets are cumulative: every bound from the request's own up holds it.
    buckets = sorted(
        (float(dict(labels)["le"]), v - value(before, n, **dict(labels)))
        for (n, labels), v in after.items()
        # This series only: the route's other methods (a PUT of an earlier test) have buckets of their own.
        if n == f"{name}_bucket" and dict(labels).get("route") == route["route"] and dict(labels).get("status") == "200"
        and dict(labels).get("method") == route["method"]
    )
    grown = [d for _le, d in buckets]
    assert grown == sorted(grown) and grown[-1] == 1


def test_cache_hits_answered_before_flask_are_counted_with_their_route(app, client, make, redis_cache, users):
    """The fast path's hits (app/fastpath.Middleware, no Flask dispatch) count as requests of their route and as cache hits."""
    from flask import request_started
    from flask_jwt_extended import create_access_token

    make.customer("sales")
    with app.test_request_context():
        headers = {"Authorization": f"Bearer {create_access_token(identity=str(users['manager'].id), fresh=True)}"}
    path = "/api/customers?limit=5"
    for _ in range(4):  # miss and store, then hits (the first hit may still take Flask's door)
        hits = caching.stats()["hits"]
        assert client.get(path, headers=headers).status_code == 200
        if caching.stats()["hits"] > hits:
            break
    before = scrape(client)
    dispatched = []
    record = lambda sender, **extra: dispatched.append(1)  # noqa: E731
    request_started.connect(record, app)
    try:
        assert client.get(path, headers=headers).status_code == 200
    finally:
        request_started.disconnect(record, app)
    after = scrape(client)
    assert dispatched == [], "the hit was answered before Flask"
    assert delta(before, after, "crm_http_request_duration_seconds_count",
                 route="/api/customers", method="GET", status="200") == 1
    assert delta(before, after, "crm_cache_lookups_total", result="hit") == 1
    # A write makes the next read a miss: computed and stored.
    make.customer("sales")
    assert client.get(path, headers=headers).status_code == 200
    again = scrape(client)
    assert delta(after, again, "crm_cache_lookups_total", result="miss") >= 1


def test_logins_and_failures_are_counted(client, users):
    """/api/auth/login with the right and a wrong password: one success, one failure."""
    before = scrape(client)
    good = client.post("/api/auth/login", json={"email": users["sales"].email, "password": PASSWORD})
    bad = client.post("/api/auth/login", json={"email": users["sales"].email, "password": "wrong-password-1"})
    assert (good.status_code, bad.status_code) == (200, 401)
    after = scrape(client)
    assert delta(before, after, "crm_logins_total", result="success") == 1
    assert delta(before, after, "crm_logins_total", result="failure") == 1


# ---------------------------------------------------------------- state read at scrape time


def test_outbox_backlog_and_oldest_age_are_read_at_scrape(app, client, db):
    """An unpublished outbox row two hours old: one more pending, and the oldest age at least two hours."""
    from models.base import utcnow
    from models.outbox import OutboxEvent

    event_id = str(uuid.uuid4())
    before = scrape(client)
    with sa.orm.Session(bind=db.engine) as session:
        session.add(OutboxEvent(id=event_id, topic="crm.test.metrics", aggregate_type="metrics", aggregate_id=event_id,
                                key=event_id, type="METRICS_PROBE", sequence=1, envelope={"id": event_id},
                                created_at=utcnow() - timedelta(hours=2), attempts=1))
        session.commit()
    try:
        after = scrape(client)
    finally:
        with sa.orm.Session(bind=db.engine) as session:
            session.execute(sa.delete(OutboxEvent).where(OutboxEvent.id == event_id))
            session.commit()
    assert value(after, "crm_outbox_pending") == value(before, "crm_outbox_pending") + 1
    assert value(after, "crm_outbox_failing") == value(before, "crm_outbox_failing") + 1
    assert value(after, "crm_outbox_oldest_age_seconds") >= 7200
    assert value(after, "crm_metrics_source_up", source="database") == 1


def test_approvals_waiting_per_step_and_their_oldest_age(app, client, db, make):
    """A request waiting three days for a Manager: one more waiting at that step, the oldest age at least three days."""
    from models.approval import ApprovalRequest
    from models.base import utcnow

    before = scrape(client)
    request = make.approval("sales")
    db.session.execute(sa.update(ApprovalRequest).where(ApprovalRequest.id == request.id)
                       .values(requested_at=utcnow() - timedelta(days=3)))
    db.session.commit()
    after = scrape(client)
    assert delta(before, after, "crm_approvals_waiting", step="manager") == 1
    assert delta(before, after, "crm_approvals_waiting", step="compliance") == 0
    assert value(after, "crm_approvals_oldest_waiting_seconds", step="manager") >= 3 * 86400
    assert value(after, "crm_approval_reminder_seconds") == app.config["APPROVAL_REMINDER_HOURS"] * 3600


def test_rq_queue_depth_failed_jobs_and_workers(app, client, monkeypatch, redis_url):
    """On a queue of its own: a waiting job, a failed one (a real burst worker ran it) and a registered worker with its heartbeat."""
    import redis
    from rq import Queue, SimpleWorker

    name = f"crm-metrics-{uuid.uuid4().hex[:6]}"
    monkeypatch.setitem(app.config, "RQ_QUEUE", name)
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(name, connection=conn)
    queue.enqueue("tests.test_metrics.no_such_job")
    SimpleWorker([queue], connection=conn).work(burst=True)
    queue.enqueue("tests.test_metrics.no_such_job")
    watcher = SimpleWorker([queue], connection=conn, name=f"w-{uuid.uuid4().hex[:6]}")
    watcher.register_birth()
    watcher.heartbeat()
    try:
        samples = scrape(client)
    finally:
        watcher.register_death()
        queue.empty()
        for key in conn.scan_iter(match=f"rq:*{name}*"):
            conn.delete(key)
    assert value(samples, "crm_rq_queue_depth", queue=name) == 1
    assert value(samples, "crm_rq_failed_jobs", queue=name) == 1
    assert value(samples, "crm_rq_workers", queue=name) == 1
    assert 0 <= value(samples, "crm_rq_worker_heartbeat_age_seconds", queue=name) < 60
    assert value(samples, "crm_metrics_source_up", source="redis") == 1


def test_redis_down_is_a_gauge_not_a_failed_scrape(app, client, monkeypatch):
    """Redis unreachable: the scrape still answers, `crm_metrics_source_up{source="redis"}` is 0 and the database gauges remain."""
    import redis

    monkeypatch.setitem(app.extensions, "crm_redis", redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.5,
                                                               socket_connect_timeout=0.5))
    samples = scrape(client)
    assert value(samples, "crm_metrics_source_up", source="redis") == 0
    assert value(samples, "crm_metrics_source_up", source="database") == 1
    assert not any(n == "crm_rq_queue_depth" for n, _l in samples)


# ---------------------------------------------------------------- who may read


def test_metrics_need_the_token_or_an_allowed_address(app, client, monkeypatch):
    """With a token and no networks: only the right bearer token reads; networks let in their addresses only, never via an untrusted proxy."""
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "scrape-secret-0123456789")
    monkeypatch.setitem(app.config, "METRICS_ALLOW_NETWORKS", "")
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-0123456789"}).status_code == 200
    monkeypatch.setitem(app.config, "METRICS_TOKEN", "")
    assert client.get("/metrics").status_code == 404, "no token and no networks: nobody"
    monkeypatch.setitem(app.config, "METRICS_ALLOW_NETWORKS", "10.0.0.0/8, ::1/128")
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.7"}).status_code == 404
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"},
                      headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}, environ_base={"REMOTE_ADDR": "192.168.1.7"}).status_code == 404


def test_consumer_statistics_set_the_lag_of_each_partition():
    """librdkafka's statistics JSON: the lag of every assigned partition, not its internal -1 partition or an unknown lag."""
    stats = {"topics": {"t.events": {"partitions": {"0": {"consumer_lag": 7}, "1": {"consumer_lag": -1},
                                                    "2": {"consumer_lag": 0}, "-1": {"consumer_lag": 99}}}}}
    metrics.consumer_stats(json.dumps(stats))
    assert metrics.CONSUMER_LAG.labels("t.events", "0")._value.get() == 7  # noqa: SLF001 - prometheus-client's own value
    text = metrics.generate_latest().decode()
    assert 'crm_consumer_lag{partition="2",topic="t.events"} 0.0' in text
    assert 'partition="-1"' not in text and 'partition="1",topic="t.events"' not in text


# ---------------------------------------------------------------- the real stack and Prometheus


def _promtool():
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is missing: `make test` installs Debian's prometheus (apt-get install prometheus)")
    return found


def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    """`promtool check rules` on deploy/prometheus/alerts.yml and `promtool test rules` on its unit tests; `check config` on the example."""
    promtool = _promtool()
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True, cwd=RULES_TEST.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr
    config = subprocess.run([promtool, "check", "config", "--syntax-only", str(PROMETHEUS_EXAMPLE)], capture_output=True, text=True,
                            cwd=PROMETHEUS_EXAMPLE.parent)
    assert config.returncode == 0, config.stdout + config.stderr
    names = {rule["alert"] for group in _yaml(RULES)["groups"] for rule in group["rules"]}
    assert {"Http5xxRate", "OutboxOldEvent", "ConsumerLag", "DeadLettersGrowing", "NoWorkerHeartbeat",
            "ApprovalWaitingBeyondReminder"} <= names


def _yaml(path):
    import yaml

    return yaml.safe_load(path.read_text())


def _query(base, expr):
    resp = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=5)
    resp.raise_for_status()
    return resp.json()["data"]["result"]


@pytest.mark.slow
def test_prometheus_scrapes_web_worker_and_consumer(tmp_path, database_url, redis_url, kafka_broker, app, users):
    """Debian's `prometheus` scrapes gunicorn (2 workers, bearer token) and the worker's and consumer's ports; a created customer shows in every job."""
    prometheus = shutil.which("prometheus")
    if not prometheus:
        pytest.fail("prometheus is missing: `make test` installs Debian's prometheus (apt-get install prometheus)")
    token = "scrape-" + uuid.uuid4().hex
    web_port, worker_port, consumer_port, prom_port = free_port(), free_port(), free_port(), free_port()
    stack = Stack(tmp_path, database_url, redis_url, kafka_broker.bootstrap, SECRET_KEY=app.config["SECRET_KEY"],
                  METRICS_TOKEN=token, METRICS_ALLOW_NETWORKS="", CONSUMER_STATS_INTERVAL_MS=1000,
                  )
    # No PROMETHEUS_MULTIPROC_DIR: gunicorn.conf.py gives this master a private one.
    stack.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    web = subprocess.Popen([gunicorn, "--workers", "2", "--bind", f"127.0.0.1:{web_port}", "wsgi:app"], cwd=ROOT,
                           env=stack.env, stdout=open(tmp_path / "web.log", "ab"), stderr=subprocess.STDOUT,
                           start_new_session=True)
    stack.start("worker", env={"WORKER_METRICS_PORT": str(worker_port)})
    stack.start("consume", env={"CONSUMER_METRICS_PORT": str(consumer_port)})
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "crm-web", "authorization": {"credentials": token},
             "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]},
            {"job_name": "crm-worker", "authorization": {"credentials": token},
             "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": "crm-consumer", "authorization": {"credentials": token},
             "static_configs": [{"targets": [f"127.0.0.1:{consumer_port}"]}]},
        ],
        "rule_files": [str(RULES)],
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"], stdout=open(tmp_path / "prometheus.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{prom_port}"
    site = f"http://127.0.0.1:{web_port}"
    try:
        def targets_up():
            try:
                active = requests.get(f"{base}/api/v1/targets", timeout=2).json()["data"]["activeTargets"]
            except (requests.RequestException, ValueError, KeyError):
                return None
            return active if len(active) == 3 and all(t["health"] == "up" for t in active) else None

        active = wait_for(targets_up, 90, 0.5, "Prometheus to scrape the web, worker and consumer targets")
        assert {t["labels"]["job"] for t in active} == {"crm-web", "crm-worker", "crm-consumer"}
        # Without the token the web answers 404: the path does not even show.
        assert requests.get(f"{site}/metrics", timeout=5).status_code == 404
        login = requests.post(f"{site}/api/auth/login", json={"email": users["sales"].email, "password": PASSWORD}, timeout=10)
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        tag = uuid.uuid4().hex[:8]
        created = requests.post(f"{site}/api/customers", headers=bearer, timeout=10,
                                json={"name": f"株式会社メトリクス{tag}", "email": f"m-{tag}@example.jp"})
        assert created.status_code == 201, created.text

        def seen(expr):
            return lambda: _query(base, expr)

        def created_counted():
            found = _query(base, 'crm_http_request_duration_seconds_count{job="crm-web"}')
            created_counted.last = [s["metric"] for s in found]
            return [s for s in found if (s["metric"].get("route"), s["metric"].get("method"), s["metric"].get("status"))
                    == ("/api/customers", "POST", "201")]

        try:
            wait_for(created_counted, 60, 0.5, "the create in the web's request counts")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; series seen: {getattr(created_counted, 'last', None)}") from None
        wait_for(seen('crm_logins_total{job="crm-web",result="success"} >= 1'), 60, 0.5, "the login")
        wait_for(seen('crm_relay_published_total{job="crm-worker"} >= 1'), 60, 0.5, "the relay's publish")
        wait_for(seen('crm_consumer_messages_total{job="crm-consumer"} >= 1'), 60, 0.5, "the consumer's message")
        # librdkafka knows a partition's lag once it consumed from it: the customer topic's, caught up.
        lag = wait_for(seen(f'crm_consumer_lag{{job="crm-consumer",topic="{stack.prefix}customer.events"}} == 0'), 60, 0.5,
                       "the consumer's lag on the customer topic")
        assert {s["metric"]["partition"] for s in lag} <= {"0", "1", "2"}
        workers = wait_for(seen(f'crm_rq_workers{{job="crm-web",queue="{stack.queue}"}} >= 1'), 60, 0.5, "the worker in RQ")
        assert workers
        assert wait_for(seen('crm_outbox_pending{job="crm-web"}'), 30, 0.5, "the outbox gauge")
        # The rules loaded into the real server too.
        rules = requests.get(f"{base}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} >= {"Http5xxRate", "NoWorkerHeartbeat"}
    finally:
        for proc in (prom, web):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        stack.stop_all()
