"""Helpers for the Kafka-mode tests: worker/consumer subprocesses and a topic reader."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def wait_for(predicate, timeout, interval=0.2, what="condition"):
    """Poll `predicate` until it returns something truthy; return it or raise after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def descendants(pid):
    """Every process below `pid` (children first found, via /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                children.append(int(entry))
    return [d for c in children for d in (*descendants(c), c)]


class Stack:
    """RQ workers and Kafka consumers of one test, as real subprocesses sharing one env."""

    def __init__(self, tmp_path, database_url, redis_url, brokers, **extra):
        self.tmp = tmp_path
        self.prefix = f"t{uuid.uuid4().hex[:6]}."
        self.queue = f"crm-{uuid.uuid4().hex[:6]}"
        self.env = {
            **os.environ,
            "CRM_ENV": "development",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "KAFKA_ENABLED": "1",
            "KAFKA_BROKERS": brokers,
            "KAFKA_TOPIC_PREFIX": self.prefix,
            "KAFKA_SESSION_TIMEOUT_MS": "6000",
            "KAFKA_DELIVERY_TIMEOUT_MS": "5000",
            "KAFKA_TOPIC_PARTITIONS": "3",
            "RQ_QUEUE": self.queue,
            "OUTBOX_SWEEP_SECONDS": "1",
            "REMINDER_SCAN_SECONDS": "1",
            "EVENTS_LOG_INTERVAL": "5",
            "RATELIMIT_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            **{k: str(v) for k, v in extra.items()},
        }
        self.env.pop("KAFKA_USERNAME", None)
        self.procs = []

    def config(self):
        """Settings the test process itself needs to write in Kafka mode."""
        return {
            "KAFKA_ENABLED": True,
            "REDIS_URL": self.env["REDIS_URL"],
            "KAFKA_BROKERS": self.env["KAFKA_BROKERS"],
            "KAFKA_TOPIC_PREFIX": self.prefix,
            "RQ_QUEUE": self.queue,
            "KAFKA_DELIVERY_TIMEOUT_MS": 5000,
            "EVENTS_LOG_INTERVAL": 5,
        }

    def start(self, kind, *args, env=None):
        """Start `crm worker` or `crm consume` (kind) and return the Popen; output to a log file."""
        name = f"{kind}-{len(self.procs)}"
        log_path = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [*FLASK, "crm", kind, *args], cwd=ROOT, env={**self.env, **(env or {})},
            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def run_cli(self, *args):
        """Run one `flask --app wsgi ...` command in Kafka mode and return its result."""
        return subprocess.run([*FLASK, *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120)

    def logs(self, kind=None):
        """The combined output of the processes (of one kind)."""
        return "".join(p.log_path.read_text(errors="replace") for p in self.procs
                       if kind is None or p.log_path.name.startswith(kind))

    def kill(self, proc, sig=signal.SIGKILL):
        """Signal a process and all its descendants (RQ's work-horse runs in its own session)."""
        if proc.poll() is None:
            for pid in [*descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            proc.wait(15)

    def stop_all(self):
        """Stop every process started (SIGTERM, then SIGKILL)."""
        for proc in self.procs:
            if proc.poll() is None:
                horses = descendants(proc.pid)
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(10)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    self.kill(proc)
                for pid in horses:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass

    def topics(self):
        """The five event topics of this stack."""
        from app.events import TOPICS

        return [self.prefix + t for t in TOPICS.values()]


def read_topics(brokers, topics, idle=2.0, timeout=60, until=None):
    """Read every message of `topics` from the beginning (no group); return a list of (topic, key, headers, value)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"tap-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    meta = consumer.list_topics(timeout=10)
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics if t in meta.topics
             for p in meta.topics[t].partitions]
    consumer.assign(parts)
    out, last, deadline = [], time.monotonic(), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if time.monotonic() - last > idle and (until is None or until(out)):
                    break
                continue
            if msg.error():
                continue
            last = time.monotonic()
            out.append((msg.topic(), msg.key(), dict(msg.headers() or []), msg.value()))
    finally:
        consumer.close()
    return out


def event_ids(messages):
    """The event ids (header `id`) of messages read by `read_topics`."""
    return [m[2]["id"].decode() for m in messages if "id" in m[2]]


def outbox_counts(engine, since):
    """(total, unpublished) outbox rows created since `since`."""
    from models.outbox import OutboxEvent

    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.created_at >= since)).scalar()
        pending = conn.execute(sa.select(sa.func.count()).select_from(OutboxEvent).where(
            OutboxEvent.created_at >= since, OutboxEvent.published_at.is_(None))).scalar()
    return total, pending


def write_figures(name, figures):
    """Append one fault test's figures to .pytest_cache/events-figures.jsonl (quoted in the report)."""
    path = ROOT / ".pytest_cache" / "events-figures.jsonl"
    path.parent.mkdir(exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps({"test": name, **figures}) + "\n")
    print(name, figures)
