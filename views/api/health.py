"""/ready: readiness of the process's dependencies (database, Redis, Kafka when enabled).

/ready answers anyone, unauthenticated, so its costly part is shared: the broker check
(a librdkafka client and a metadata request, up to 3 s against a dead broker) runs at
most once per READY_KAFKA_CACHE_SECONDS per process, by one thread, and every other call
in between replays its outcome. The database and Redis checks are one round trip each.
"""

import threading
import time

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from app import kafka
from app.extensions import db
from app.extensions import redis_client

bp = Blueprint("crm_health", __name__)


def _check_database():
    db.session.execute(sa.text("SELECT 1"))
    db.session.rollback()


def _check_redis():
    client = redis_client()
    if client is None:
        raise RuntimeError("REDIS_URL is not set")
    client.ping()


class CheckFailed(Exception):
    """A dependency check's failure, replayed from the cache (`kind` is the original error's class name)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class BrokerCheck:
    """The last broker check's outcome per set of settings, kept `ttl` seconds.

    One thread probes when the outcome is older than `ttl`; calls arriving meanwhile
    replay the previous outcome instead of waiting or opening their own connection (only
    the very first call of a process waits for the first probe).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._last = {}  # settings key -> (monotonic time, None or (error class name, message))

    def run(self, settings, ttl, probe):
        """Raise CheckFailed if the latest check of `settings` failed; probe again when it is `ttl` s old."""
        key = tuple(sorted(settings.items()))
        seen = self._last.get(key)
        if seen is None or time.monotonic() - seen[0] >= ttl:
            if self._lock.acquire(blocking=seen is None):
                try:
                    seen = self._last.get(key)
                    if seen is None or time.monotonic() - seen[0] >= ttl:
                        seen = self._last[key] = (time.monotonic(), self._probe(probe, settings))
                finally:
                    self._lock.release()
        if seen[1] is not None:
            raise CheckFailed(*seen[1])

    @staticmethod
    def _probe(probe, settings):
        try:
            probe(settings)
        except Exception as exc:  # any failure means "down"
            return type(exc).__name__, str(exc)[:200]
        return None

    def clear(self):
        """Forget every outcome (the next call checks again)."""
        with self._lock:
            self._last.clear()


broker_check = BrokerCheck()


def _probe_kafka(settings):
    from confluent_kafka.admin import AdminClient

    AdminClient(settings).list_topics(timeout=3)


def _check_kafka():
    config = current_app.config
    broker_check.run(kafka.base_config(config), float(config["READY_KAFKA_CACHE_SECONDS"]), _probe_kafka)


@bp.get("/ready")
def ready():
    """200 when every dependency answers, else 503 naming what is down."""
    checks = {"database": _check_database}
    if current_app.config.get("REDIS_URL"):
        checks["redis"] = _check_redis
    if current_app.config.get("KAFKA_ENABLED"):
        checks["kafka"] = _check_kafka
    results, down = {}, []
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure means "down"; say which and why
            if name == "database":
                db.session.rollback()
            results[name] = f"down: {getattr(exc, 'kind', type(exc).__name__)}"
            down.append(name)
    if down:
        return jsonify(status="unavailable", down=down, checks=results,
                       error="Service Unavailable", message=f"down: {', '.join(down)}", details=results), 503
    return jsonify(status="ready", checks=results)
