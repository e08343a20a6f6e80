"""Prometheus metrics: the series every process counts, `/metrics` of the web app, and a small port per worker/consumer.

Web (gunicorn): several worker processes count into one directory of memory-mapped
files (prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR; gunicorn.conf.py
makes a private one when unset and marks exited workers dead); `/metrics` adds them up
and appends the state read at scrape time (`StateCollector`: outbox backlog, approvals
waiting per step, the RQ queue, failed jobs and workers). Counted in the web: requests by
route template, method and status with their latency (`RequestMetrics`, outermost WSGI
layer, so the cache hits answered before Flask's dispatch count too), cache hits and
misses, logins and failures.

Worker and consumer: each serves its own process's series on its own port
(WORKER_METRICS_PORT, CONSUMER_METRICS_PORT; off when 0), so they work when every
service runs on its own host, and a dead process shows as a failed scrape (`up == 0`):
relay publishes, errors and dead letters; consumer messages, dead letters and lag per
partition (librdkafka's statistics).

Who may read: a request with `Authorization: Bearer <METRICS_TOKEN>` (when the token is
set), or one from an address in METRICS_ALLOW_NETWORKS (the address Flask sees after
TRUSTED_PROXY_COUNT; a request forwarded by an untrusted proxy is never let in by address).
Everyone else gets 404, so the path does not show.
"""

import hmac
import ipaddress
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger("crm.metrics")

# Seconds: from 5 ms (a cache hit) to 10 s (a large export); one bucket per step of ~2.5x.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"  # no URL rule: 404s, 405s, redirects (never the raw path: unbounded series)
# Set by app/fastpath.py for a cache hit it answers before Flask's routing.
ROUTE_KEY = "crm.route"

REQUEST_SECONDS = Histogram(
    "crm_http_request_duration_seconds",
    "Requests by route template, method and status: time until the answer's status and body were ready "
    "(_count is the number of requests).",
    ("route", "method", "status"),
    buckets=LATENCY_BUCKETS,
)
CACHE_LOOKUPS = Counter(
    "crm_cache_lookups", "Answer cache lookups by result (hit, miss, error, bypassed while the cache backs off).", ("result",)
)
LOGINS = Counter("crm_logins", "Password checks by result (success, failure), screens and /api alike.", ("result",))
RELAY_PUBLISHED = Counter("crm_relay_published", "Outbox events the relay published and marked.")
RELAY_ERRORS = Counter("crm_relay_errors", "Outbox events a relay batch could not publish (they stay in the outbox).")
RELAY_DEAD_LETTERS = Counter("crm_relay_dead_letters", "Outbox events the broker can never accept, sent to <topic>.dlq.")
CONSUMER_MESSAGES = Counter("crm_consumer_messages", "Messages the consumer finished (effects committed or dead-lettered, offset stored), by topic.", ("topic",))
CONSUMER_DEAD_LETTERS = Counter("crm_consumer_dead_letters", "Poison messages the consumer sent to <topic>.dlq, by topic.", ("topic",))
CONSUMER_LAG = Gauge(
    "crm_consumer_lag",
    "Messages of a partition not yet consumed (librdkafka's consumer_lag, from its statistics).",
    ("topic", "partition"),
    multiprocess_mode="liveall",
)

_cache_children = {name: CACHE_LOOKUPS.labels(name) for name in ("hit", "miss", "error", "bypassed")}
_login_children = {True: LOGINS.labels("success"), False: LOGINS.labels("failure")}


def count_cache(result):
    """Count one answer-cache lookup: 'hit', 'miss', 'error' or 'bypassed'."""
    child = _cache_children.get(result)
    if child is not None:
        child.inc()


def count_login(success):
    """Count one password check."""
    _login_children[bool(success)].inc()


def count_relay(published, failed, dead_letters=0):
    """Count one relay batch's outcome."""
    if published:
        RELAY_PUBLISHED.inc(published)
    if failed:
        RELAY_ERRORS.inc(failed)
    if dead_letters:
        RELAY_DEAD_LETTERS.inc(dead_letters)


def count_consumed(topic, n=1):
    """Count messages whose effects the consumer committed."""
    CONSUMER_MESSAGES.labels(topic).inc(n)


def count_dead_letter(topic):
    """Count one poison message sent to the dead-letter topic of `topic`."""
    CONSUMER_DEAD_LETTERS.labels(topic).inc()


def consumer_stats(stats_json):
    """librdkafka's `stats_cb`: set the lag gauge of every assigned partition."""
    import json

    try:
        stats = json.loads(stats_json)
    except ValueError:
        return
    for topic, info in (stats.get("topics") or {}).items():
        for partition, values in (info.get("partitions") or {}).items():
            lag = values.get("consumer_lag", -1)
            if partition == "-1" or lag is None or lag < 0:
                continue  # the internal UA partition, or not assigned / not known yet
            CONSUMER_LAG.labels(topic, partition).set(lag)


# ---------------------------------------------------------------- requests


class RequestMetrics:
    """WSGI: time every request and count it by route template, method and status.

    Outermost, so it also sees the /api cache hits that app/fastpath.py answers before
    Flask. The route template comes from the request Flask routed (kept in the environ by
    `note_route`) or from the fast path's own match; nothing is matched again
    here, and the labelled child of the histogram is looked up in a dict.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self._children = {}
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        """Pass the request on, then record its route, status and duration."""
        start = time.perf_counter()
        seen = []

        def recording_start_response(status, headers, exc_info=None):
            seen.append(status)
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, recording_start_response)
        except BaseException:
            self._observe(environ, "500", time.perf_counter() - start)
            raise
        self._observe(environ, seen[-1][:3] if seen else "500", time.perf_counter() - start)
        return body

    def _observe(self, environ, status, seconds):
        route = environ.get(ROUTE_KEY, UNMATCHED)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in METHODS:
            method = "OTHER"
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, REQUEST_SECONDS.labels(route, method, status))
        child.observe(seconds)


# ---------------------------------------------------------------- access


def _networks(text):
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if part:
            out.append(ipaddress.ip_network(part, strict=False))
    return tuple(out)


def allowed(config, remote_addr, authorization, forwarded):
    """True when this caller may read metrics: the bearer METRICS_TOKEN, or an address in METRICS_ALLOW_NETWORKS.

    `forwarded`: the request carried X-Forwarded-For that no trusted proxy consumed; its
    socket address is a proxy's, so it is not let in by address.
    """
    token = config["METRICS_TOKEN"]
    if token and authorization.startswith("Bearer "):
        if hmac.compare_digest(authorization[7:].strip().encode(), token.encode()):
            return True
    if forwarded or not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in net for net in _networks(config["METRICS_ALLOW_NETWORKS"]))


# ---------------------------------------------------------------- state read at scrape time


class StateCollector:
    """Gauges computed at each scrape from the database and Redis (a few aggregate queries, one Redis pipeline's worth).

    A source that fails is reported by `crm_metrics_source_up{source}` = 0 and its gauges
    are left out, never a failed scrape.
    """

    def __init__(self, app):
        self.app = app

    def collect(self):
        """Yield the outbox, approval and RQ gauges."""
        up = GaugeMetricFamily("crm_metrics_source_up", "1 when the scrape could read this source.", labels=("source",))
        config = self.app.config
        with self.app.app_context():
            try:
                families = list(self._database(config))
            except Exception:  # noqa: BLE001 - the database down shows as a gauge, not a failed scrape
                log.warning("Metrics: database state not readable", exc_info=True)
                up.add_metric(("database",), 0)
            else:
                up.add_metric(("database",), 1)
                yield from families
            if config.get("REDIS_URL"):
                try:
                    families = list(self._queue(config))
                except Exception:  # noqa: BLE001 - Redis down: the same
                    log.warning("Metrics: RQ state not readable", exc_info=True)
                    up.add_metric(("redis",), 0)
                else:
                    up.add_metric(("redis",), 1)
                    yield from families
        reminder = GaugeMetricFamily(
            "crm_approval_reminder_seconds", "APPROVAL_REMINDER_HOURS in seconds (what the approval alert compares with)."
        )
        from app.services.approval_board import reminder_hours

        reminder.add_metric((), reminder_hours(config) * 3600)
        yield reminder
        yield up

    def _database(self, config):
        import sqlalchemy as sa

        from app.extensions import db
        from app.services.approval_board import column_key
        from app.services.outbox import outbox_backlog
        from models.approval import ApprovalRequest, ApprovalStatus
        from models.base import utcnow

        session = sa.orm.Session(bind=db.engine)
        try:
            backlog = outbox_backlog(session)
            step = column_key().label("step")
            rows = session.execute(
                sa.select(step, sa.func.count(), sa.func.min(ApprovalRequest.requested_at))
                .where(ApprovalRequest.status == ApprovalStatus.PENDING)
                .group_by(step)
            ).all()
        finally:
            session.close()
        pending = GaugeMetricFamily("crm_outbox_pending", "Outbox events not yet published.")
        pending.add_metric((), backlog["pending"])
        failing = GaugeMetricFamily("crm_outbox_failing", "Unpublished outbox events that failed at least once.")
        failing.add_metric((), backlog["failing"])
        oldest = GaugeMetricFamily("crm_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event (0 when none).")
        oldest.add_metric((), backlog["oldestAgeSeconds"])
        waiting = GaugeMetricFamily("crm_approvals_waiting", "PENDING approval requests by the step they wait for.", labels=("step",))
        age = GaugeMetricFamily(
            "crm_approvals_oldest_waiting_seconds", "Age of the oldest PENDING request waiting for this step (0 when none).",
            labels=("step",),
        )
        found = {key: (n, first) for key, n, first in rows if key in ("manager", "compliance")}
        now = utcnow()
        for key in ("manager", "compliance"):
            n, first = found.get(key, (0, None))
            waiting.add_metric((key,), n)
            if first is not None and first.tzinfo is None:
                from datetime import timezone

                first = first.replace(tzinfo=timezone.utc)
            age.add_metric((key,), max(0.0, (now - first).total_seconds()) if first is not None else 0.0)
        return [pending, failing, oldest, waiting, age]

    def _queue(self, config):
        from rq import Queue, Worker
        from rq.registry import FailedJobRegistry

        from app.extensions import redis_client

        conn = redis_client(self.app)
        queue = Queue(config["RQ_QUEUE"], connection=conn)
        depth = GaugeMetricFamily("crm_rq_queue_depth", "Jobs waiting in the RQ queue.", labels=("queue",))
        depth.add_metric((queue.name,), queue.count)
        failed = GaugeMetricFamily("crm_rq_failed_jobs", "Jobs in the RQ queue's failed registry.", labels=("queue",))
        failed.add_metric((queue.name,), FailedJobRegistry(queue=queue).count)
        workers = Worker.all(queue=queue)
        count = GaugeMetricFamily("crm_rq_workers", "RQ workers registered on the queue (a worker's key expires after its TTL).",
                                  labels=("queue",))
        count.add_metric((queue.name,), len(workers))
        out = [depth, failed, count]
        beats = [w.last_heartbeat for w in workers if w.last_heartbeat is not None]
        if beats:
            from datetime import datetime, timezone

            newest = max(b if b.tzinfo else b.replace(tzinfo=timezone.utc) for b in beats)
            heartbeat = GaugeMetricFamily(
                "crm_rq_worker_heartbeat_age_seconds", "Seconds since the most recent heartbeat of any worker of the queue.",
                labels=("queue",),
            )
            heartbeat.add_metric((queue.name,), max(0.0, (datetime.now(timezone.utc) - newest).total_seconds()))
            out.append(heartbeat)
        return out


# ---------------------------------------------------------------- exposition


def exposition(app):
    """The text of `/metrics`: every web process's counters (or this one's) plus the state read now."""
    from prometheus_client import REGISTRY

    state = CollectorRegistry(auto_describe=False)
    state.register(StateCollector(app))
    # The variable itself is what prometheus-client reads when the metric objects are made.
    path = app.config["PROMETHEUS_MULTIPROC_DIR"]
    if path:
        from prometheus_client import multiprocess

        counted = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(counted, path=path)
    else:
        counted = REGISTRY
    return generate_latest(counted) + generate_latest(state)


def note_route(_endpoint, _values):
    """Flask's first step after routing (before any before_request, which may answer): keep the route template for `RequestMetrics`."""
    from flask import request

    rule = request.url_rule
    if rule is not None:
        request.environ[ROUTE_KEY] = rule.rule


def install(app):
    """Add `/metrics` and the request timing (outermost WSGI layer) to `app`, when METRICS_ENABLED."""
    if not app.config["METRICS_ENABLED"]:
        return
    from flask import Response, abort, request

    def metrics():
        """Prometheus text format: counters of every web process and the state read now (METRICS_TOKEN or METRICS_ALLOW_NETWORKS)."""
        forwarded = "X-Forwarded-For" in request.headers and not app.config["TRUSTED_PROXY_COUNT"]
        if not allowed(app.config, request.remote_addr, request.headers.get("Authorization", ""), forwarded):
            abort(404)
        return Response(exposition(app), mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "crm_metrics", metrics, methods=["GET"])
    app.url_value_preprocessor(note_route)
    app.wsgi_app = RequestMetrics(app.wsgi_app)


def serve_process(config, port):
    """Serve this process's series (worker, consumer) on `port` of METRICS_BIND, in a daemon thread; return the server or None.

    Same access rule as `/metrics`. A port already taken (two workers on one host) is
    logged and skipped: the process runs on without metrics.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import REGISTRY, make_wsgi_app

    exporter = make_wsgi_app(REGISTRY)

    def guarded(environ, start_response):
        forwarded = "HTTP_X_FORWARDED_FOR" in environ
        if not allowed(config, environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION", ""), forwarded):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        return exporter(environ, start_response)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    try:
        server = make_server(config["METRICS_BIND"], int(port), guarded, handler_class=QuietHandler)
    except OSError as exc:
        log.warning("Metrics port %s:%s not available (%s); this process serves no metrics", config["METRICS_BIND"], port, exc)
        return None
    thread = threading.Thread(target=server.serve_forever, name="crm-metrics", daemon=True)
    thread.start()
    log.info("Metrics on http://%s:%s/metrics", config["METRICS_BIND"], server.server_port)
    return server
