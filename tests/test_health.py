"""/health and /ready: liveness, and a readiness check nobody can use to load the server or the broker."""

import threading
import time

import pytest

from tests.kafka_stack import wait_for
from tests.services import free_port


def test_health(client):
    resp = client.get("/health")
    assert resp.status_code == 200 and resp.json == {"status": "ok"}


@pytest.fixture()
def probes(monkeypatch):
    """Count the broker checks /ready makes (each the real one: a client and a metadata request)."""
    from views.api import health

    made = []
    real = health._probe_kafka

    def counted(settings):
        made.append(time.monotonic())
        return real(settings)

    monkeypatch.setattr(health, "_probe_kafka", counted)
    broker_check = health.broker_check
    broker_check.clear()
    yield made
    broker_check.clear()


def _ready_app(config_class, brokers, ttl):
    from app import create_app

    return create_app(type("ReadyConfig", (config_class,), {
        "KAFKA_ENABLED": True, "KAFKA_BROKERS": brokers, "READY_KAFKA_CACHE_SECONDS": ttl}))


def _hammer(app, n, threads=8):
    """`n` GET /ready from `threads` threads at once; return the status codes."""
    codes, barrier = [], threading.Barrier(threads)

    def run(count):
        c = app.test_client()
        barrier.wait()
        for _ in range(count):
            codes.append(c.get("/ready").status_code)

    workers = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    return codes


def test_ready_checks_the_broker_once_per_interval(config_class, kafka_broker, probes):
    """Many /ready calls at once cost one broker check; a stopped broker is seen once the interval has passed."""
    app = _ready_app(config_class, kafka_broker.bootstrap, 60)
    codes = _hammer(app, 48)
    assert codes == [200] * 48 and len(probes) == 1
    if kafka_broker.external:
        return
    kafka_broker.stop()
    c = app.test_client()
    assert c.get("/ready").status_code == 200  # the outcome of the last check, within its interval
    app.config["READY_KAFKA_CACHE_SECONDS"] = 0.5
    started = time.monotonic()
    resp = wait_for(lambda: (r := c.get("/ready")).status_code == 503 and r, 30, 0.05, "/ready to see the broker down")
    assert resp.json["down"] == ["kafka"], resp.json
    elapsed = time.monotonic() - started
    # Polled every 50 ms, yet the broker was asked at most once per half second.
    assert len(probes) - 1 <= elapsed / 0.5 + 1, (len(probes), elapsed)


def test_a_dead_broker_is_not_asked_on_every_call(config_class, probes):
    """The failed check (up to 3 s against a dead broker) is replayed, not repeated, within the interval."""
    app = _ready_app(config_class, f"127.0.0.1:{free_port()}", 60)
    c = app.test_client()
    assert c.get("/ready").status_code == 503
    started = time.monotonic()
    codes = _hammer(app, 32)
    assert codes == [503] * 32 and len(probes) == 1
    assert time.monotonic() - started < 3  # none of them waited for a broker timeout
    assert c.get("/ready").json["checks"]["kafka"].startswith("down: ")
