"""Drive the production server with wrk and compare it with its floors, in one run.

    python -m bench.run --customers 100000 [--load] [--duration 10] [--paths fab|api]

For each endpoint below: p50, p99 and requests/s at concurrency 16, with the answer cache
on (Redis) and off (NullCache), beside the same server's hello route (the framework floor)
and the bare SQL of the query run with psycopg by 16 threads (the data floor). Results go
to bench/results/<time>-<customers>.json and a Markdown table is printed.
"""

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import psycopg

from bench.load_data import DB_URL_TEMPLATE, PASSWORD, SEARCH_WORD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")

# ------------------------------------------------------------------ endpoint table
# name: (method, path, user, body). "user" is whose bearer token is sent (None: no auth).
# The seed's /api blueprint (API_PATHS, the default); `--paths fab` drives FAB's generated
# /api/v1 routes instead (FAB_PATHS, the earlier runs).
FAB_PATHS = {
    "hello": ("GET", "/bench/hello", None, None),
    "login": ("POST", "/api/v1/security/login", None,
              json.dumps({"username": "sales1@bench.example", "password": PASSWORD, "provider": "db"})),
    "customers_page1": ("GET", "/api/v1/customer/?q=(order_column:updated_at,order_direction:desc,page:0,page_size:20)", "manager", None),
    "customers_page200": ("GET", "/api/v1/customer/?q=(order_column:updated_at,order_direction:desc,page:199,page_size:20)", "manager", None),
    "customer_search": ("GET", f"/api/v1/customer/?q=(filters:!((col:name,opr:ct,value:{SEARCH_WORD})),order_column:updated_at,order_direction:desc,page:0,page_size:20)", "manager", None),
    # FAB generates neither: the /api routes, with the same JWT.
    "dashboard": ("GET", "/api/reports/dashboard", "manager", None),
    "overdue_tasks": ("GET", "/api/tasks/overdue", "manager", None),
    "overdue_tasks_fab": ("GET", f"/api/v1/task/?q=(filters:!((col:due_date,opr:lt,value:'{NOW}'),(col:status,opr:neq,value:COMPLETED),(col:status,opr:neq,value:CANCELLED)),order_column:due_date,order_direction:asc,page:0,page_size:20)", "manager", None),
    "create_customer": ("POST", "/api/v1/customer/", "sales1",
                        '{"name":"ベンチ顧客{n}","email":"b{n}@bench.example.jp","size":"SMALL","investment_profile":"moderate"}'),
}
API_PATHS = {  # design.md §6 (views/api)
    "hello": ("GET", "/bench/hello", None, None),
    "login": ("POST", "/api/auth/login", None, json.dumps({"email": "sales1@bench.example", "password": PASSWORD})),
    # The same with one client per core: the hash alone keeps 16 concurrent logins queued.
    "login_c2": ("POST", "/api/auth/login", None, json.dumps({"email": "sales1@bench.example", "password": PASSWORD})),
    "customers_page1": ("GET", "/api/customers?page=1&limit=20", "manager", None),
    "customers_page200": ("GET", "/api/customers?page=200&limit=20", "manager", None),
    "customer_search": ("GET", f"/api/customers?page=1&limit=20&search={SEARCH_WORD}", "manager", None),
    "dashboard": ("GET", "/api/reports/dashboard", "manager", None),
    "overdue_tasks": ("GET", "/api/tasks/overdue", "manager", None),
    "create_customer": ("POST", "/api/customers", "sales1",
                        '{"name":"ベンチ顧客{n}","email":"b{n}@bench.example.jp","investmentProfile":"moderate"}'),
}
# FAB's generated /api/v1 reads of the same rows as customers_page1, and the liveness route.
V1_PATHS = {
    "health": ("GET", "/health", None, None),
    "v1_customers": ("GET", "/api/v1/customer/?q=(order_column:updated_at,order_direction:desc,page:0,page_size:20)", "manager", None),
    "v1_customers_info": ("GET", "/api/v1/customer/_info", "manager", None),
}
PATHS = API_PATHS
ALL_PATHS = {"api": API_PATHS, "fab": FAB_PATHS}
LOGIN = {"fab": ("/api/v1/security/login", "username", {"provider": "db"}), "api": ("/api/auth/login", "email", {})}
CONNECTIONS = {"login_c2": 2}  # cells run at another concurrency than --connections
CACHEABLE = ("customers_page1", "customers_page200", "customer_search", "dashboard", "overdue_tasks", "overdue_tasks_fab")

# The data floor: the bare SQL each endpoint needs, timed with psycopg (no framework).
SQL = {
    "login": ["SELECT id, password, active FROM ab_user WHERE username = 'sales1@bench.example'"],
    "customers_page1": ["SELECT * FROM customers WHERE deleted_at IS NULL ORDER BY updated_at DESC, id DESC LIMIT 20"],
    "customers_page200": ["SELECT * FROM customers WHERE deleted_at IS NULL ORDER BY updated_at DESC, id DESC LIMIT 20 OFFSET 3980"],
    "customer_search": [f"SELECT * FROM customers WHERE deleted_at IS NULL AND search_text LIKE lower('%{SEARCH_WORD}%')"
                        " ORDER BY updated_at DESC, id DESC LIMIT 20"],
    # "dashboard": the app's own statement, compiled for the Manager at run time (dashboard_sql).
    "overdue_tasks": ["SELECT * FROM tasks WHERE status IN ('TODO','IN_PROGRESS') AND due_date < now() ORDER BY due_date LIMIT 20"],
    "overdue_tasks_fab": ["SELECT * FROM tasks WHERE status <> 'COMPLETED' AND status <> 'CANCELLED' AND due_date < now() ORDER BY due_date LIMIT 20"],
    "create_customer": ["INSERT INTO customers (id, name, email, risk_tolerance, created_at, updated_at)"
                        " VALUES (gen_random_uuid()::text, 'floor', 'f' || gen_random_uuid() || '@x.jp', 5, now(), now())"],
}


DASHBOARD_SQL = """
import json, sys
from datetime import date, datetime
import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import User
from app import create_app
from app.extensions import db
from app.services.dashboard import SECTIONS, counter_statement
from models.base import utcnow
app = create_app()
with app.app_context():
    user = db.session.execute(sa.select(User).where(User.email == "manager@bench.example")).scalar_one()
    stmt, params = counter_statement(user, SECTIONS, utcnow())
    compiled = stmt.params(**params).compile(dialect=db.engine.dialect, compile_kwargs={"render_postcompile": True})
    values = {k: v.isoformat() if isinstance(v, (date, datetime)) else v for k, v in compiled.params.items()}
    print(json.dumps({"sql": compiled.string, "params": values}, default=str))
"""


def dashboard_sql(db_url):
    """The dashboard's one statement for the Manager, compiled by the app, with its parameters."""
    env = dict(os.environ, DATABASE_URL=db_url, CRM_ENV="development", FAB_UPDATE_PERMS="0", LOG_LEVEL="ERROR", CACHE_TYPE="NullCache")
    out = subprocess.run([sys.executable, "-c", DASHBOARD_SQL], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return [(doc["sql"], doc["params"])]


def cleanup(db_url, since):
    """Delete what the run wrote (created customers, the floor's rows, their events and audit rows).

    Left in place they would sit at the top of the newest-first lists and skew the next run
    (a search then walks thousands of non-matching rows before its first match).
    """
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM customers WHERE (name = 'floor' OR name LIKE 'ベンチ顧客%%') AND created_at >= %s", (since,))
        conn.execute("DELETE FROM outbox_events WHERE created_at >= %s", (since,))
        with conn.transaction():
            # The append-only trigger lets only the retention path delete; the run's rows were the
            # chain's newest, so its head goes back to the last row kept (`crm audit verify`).
            conn.execute("SET LOCAL crm.audit_retention = 'on'")
            conn.execute("DELETE FROM audit_logs WHERE timestamp >= %s", (since,))
            last = "SELECT {} FROM audit_logs WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
            conn.execute(f"UPDATE audit_chain SET last_seq = COALESCE(({last.format('seq')}), 0), "
                         f"last_hash = COALESCE(({last.format('row_hash')}), repeat('0', 64)) WHERE id = 1")
        conn.execute("VACUUM ANALYZE customers, outbox_events, audit_logs")


def free_port():
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, seconds=60):
    """Wait until `url` answers 200."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds}s")


def encode_path(path):
    """Percent-encode what wrk and HTTP need (non-ASCII, spaces); keep rison punctuation."""
    return urllib.parse.quote(path, safe="/?=&(),:!'*~-_.")


# Rate limiting on, as in production, at limits this load never reaches: every request pays
# for its counting (the /api budget, the login limits), none is refused.
UNREACHED_LIMITS = dict(
    RATELIMIT_ENABLED="1",
    API_RATE_LIMIT="1000000000 per minute",
    LOGIN_RATE_LIMIT_IP="1000000000 per minute",
    LOGIN_RATE_LIMIT_ACCOUNT="1000000000 per minute",
)


class Server:
    """gunicorn as in production (sync workers, 2·cores), on a free port."""

    def __init__(self, db_url, redis_url, cached, workers, root=ROOT, extra_env=None):
        self.port = free_port()
        env = dict(os.environ)
        env.update(
            CRM_ENV="production",
            SECRET_KEY=secrets.token_urlsafe(48),
            DATABASE_URL=db_url,
            REDIS_URL=redis_url,
            CACHE_ANSWERS="1" if cached else "0",  # uncached: answers and totals computed per request
            **UNREACHED_LIMITS,
            # As the production web process: a commit with events only enqueues the RQ relay
            # job (no worker runs here, the outbox just grows), instead of the embedded
            # default's in-process drain.
            KAFKA_ENABLED="1",
            FAB_UPDATE_PERMS="0",
        )
        env.update(extra_env or {})
        results = os.path.join(ROOT, "bench", "results")
        os.makedirs(results, exist_ok=True)  # ignored by git, so a fresh clone has none
        self.proc = subprocess.Popen(
            [os.path.join(root, ".venv", "bin", "gunicorn"), "--workers", str(workers), "--bind",
             f"127.0.0.1:{self.port}", "--log-level", "warning", *os.environ.get("BENCH_GUNICORN_ARGS", "").split(),
             "bench.app:app"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(results, "gunicorn.log"), "a"),
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        wait_http(self.base + "/bench/hello")

    def stop(self):
        """Stop gunicorn and its workers."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)


def login(base, paths, email):
    """Return a bearer token for `email`."""
    path, field, extra = LOGIN[paths]
    data = json.dumps({field: email, "password": PASSWORD, **extra}).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.load(resp)
    return body.get("access_token") or body.get("token")


def wrk(base, method, path, token, body, duration, connections, threads):
    """Run wrk once; return {p50_ms, p99_ms, rps, requests, errors}."""
    env = dict(os.environ, BENCH_METHOD=method, BENCH_PATH=encode_path(path), BENCH_TOKEN=token or "", BENCH_BODY=body or "")
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s",
         "-s", os.path.join(ROOT, "bench", "lua", "request.lua"), base + "/"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCHJSON "))
    raw = json.loads(line[len("BENCHJSON "):])
    errors = sum(v for k, v in raw.items() if k.startswith("errors_"))
    return {
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "requests": raw["requests"],
        "errors": errors,
        "non_2xx": raw["errors_status"],
    }


def check_once(base, method, path, token, body):
    """One request before the run, so a broken endpoint fails loudly instead of timing 4xx."""
    data = body.replace("{n}", secrets.token_hex(6)).encode() if body else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base + encode_path(path), data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{method} {path} answered {exc.code}: {exc.read()[:300]!r}") from None


def sql_floor(db_url, statements, duration, connections):
    """Run `statements` (one unit) from `connections` threads for `duration` s; p50/p99/units per s."""
    latencies, stop = [], time.monotonic() + duration
    lock = threading.Lock()

    def worker():
        mine = []
        with psycopg.connect(db_url, autocommit=True) as conn:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                for sql in statements:
                    sql, params = sql if isinstance(sql, tuple) else (sql, None)
                    cur = conn.execute(sql, params)
                    if cur.description is not None:
                        cur.fetchall()
                mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    workers = [threading.Thread(target=worker) for _ in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000, "rps": len(latencies) / elapsed, "requests": len(latencies), "errors": 0}


def start_redis():
    """A private redis-server on a free port (the bench's cache); returns (process, url)."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def run(args):
    """The whole benchmark; returns the result document."""
    paths = ALL_PATHS[args.paths]
    db_url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    if args.load:
        from bench.load_data import main as load_main

        load_main(["--customers", str(args.customers), "--db-url", db_url])
    with psycopg.connect(db_url) as conn:
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("customers", "tasks", "meetings", "approval_requests")}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    load_before = os.getloadavg()  # the machine is shared: record how busy it was
    started_at = datetime.now(timezone.utc)
    redis_proc, redis_url = start_redis()
    results = {"cached": {}, "uncached": {}, "sql": {}, "hello_before": {}}
    names = [n for n in args.only.split(",") if n] if args.only else list(paths)
    try:
        # Uncached first: its reads find the tables as autovacuum keeps them (migration
        # b3f1e6a2c9d4), not right after the cached server's create cell put ~1,000 rows
        # outside the visibility map at the top of every list (heap fetches: page 200's
        # statement 0.96 ms instead of 0.42). Cached reads come from Redis either way.
        for mode in ("uncached", "cached"):
            server = Server(db_url, redis_url, mode == "cached", args.workers)
            try:
                tokens = {u: login(server.base, args.paths, f"{u}@bench.example") for u in ("manager", "sales1")}
                for name in names:
                    method, path, user, body = paths[name]
                    if path is None:
                        continue
                    token = tokens.get(user) if user else None
                    try:
                        check_once(server.base, method, path, token, body)
                    except (RuntimeError, OSError) as exc:  # one broken or stuck endpoint does not end the run
                        results[mode][name] = {"error": str(exc)[:300]}
                        print(f"{mode:9} {name:18} FAILED: {exc}", flush=True)
                        continue
                    if name in CACHEABLE:
                        # Cached: fills the cache. Both: every worker opens its connections and
                        # compiles and prepares its statements before the cell (start-up, not
                        # steady state: one checked request warms only the worker that took it).
                        wrk(server.base, method, path, token, body, 2, args.connections, args.threads)
                    if mode == "cached" and name in CACHEABLE:
                        # The shared machine's speed drifts within a run: each cached cell gets
                        # its own hello floor measured just before it, for the ratio.
                        hello = wrk(server.base, "GET", "/bench/hello", None, None, args.duration, args.connections, args.threads)
                        results["hello_before"][name] = hello
                    conns = CONNECTIONS.get(name, args.connections)
                    res = wrk(server.base, method, path, token, body, args.duration, conns, min(args.threads, conns))
                    results[mode][name] = res
                    print(f"{mode:9} {name:18} p50 {res['p50_ms']:8.1f} ms  p99 {res['p99_ms']:8.1f} ms  {res['rps']:8.1f} req/s  errors {res['errors']}", flush=True)
            finally:
                server.stop()
        sql = dict(SQL, dashboard=dashboard_sql(db_url)) if "dashboard" in names else SQL
        for name in names:
            if name in sql:
                res = sql_floor(db_url, sql[name], min(args.duration, 5), args.connections)
                results["sql"][name] = res
                print(f"{'sql':9} {name:18} p50 {res['p50_ms']:8.1f} ms  p99 {res['p99_ms']:8.1f} ms  {res['rps']:8.1f} q/s", flush=True)
    finally:
        redis_proc.kill()
        redis_proc.wait()
        cleanup(db_url, started_at)
    doc = {
        "time": NOW,
        "customers": args.customers,
        "rows": counts,
        "paths": args.paths,
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "workers": args.workers,
        "connections": args.connections,
        "duration_s": args.duration,
        "results": results,
        "ratios": ratios(results),
    }
    out = os.path.join(ROOT, "bench", "results", f"{NOW.replace(':', '')}-{args.customers}.json")
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(f"\nSaved {out}\n")
    print(markdown(doc))
    return doc


def ratios(results):
    """The issue's targets as figures from this run."""
    hello = results["cached"].get("hello", {}).get("rps")
    out = {}
    for name in CACHEABLE:
        r = results["cached"].get(name)
        if hello and r and "rps" in r:
            out[f"{name}_cached_vs_hello_rps"] = r["rps"] / hello
        adjacent = results.get("hello_before", {}).get(name, {}).get("rps")
        if adjacent and r and "rps" in r:
            out[f"{name}_cached_vs_adjacent_hello_rps"] = r["rps"] / adjacent
    for name in ("customers_page1", "customers_page200", "dashboard", "login", "login_c2"):
        r = results["uncached"].get(name)
        if r and "p99_ms" in r:
            out[f"{name}_uncached_p99_ms"] = r["p99_ms"]
    return out


def markdown(doc):
    """A small Markdown table of one run."""
    r = doc["results"]
    lines = [
        f"{doc['customers']:,} customers / {doc['rows']['tasks']:,} tasks; {doc['workers']} gunicorn workers, "
        f"{doc['connections']} connections, {doc['duration_s']} s per cell, {doc['cpus']} CPUs ({doc['time']} UTC, "
        f"load average {doc['loadavg_before'][0]:.1f} before / {doc['loadavg_after'][0]:.1f} after)",
        "",
        "| endpoint | cached p50 / p99 ms | cached req/s | uncached p50 / p99 ms | uncached req/s | SQL floor p50 / p99 ms | SQL q/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ALL_PATHS.get(doc.get("paths"), PATHS):
        c, u, s = r["cached"].get(name), r["uncached"].get(name), r["sql"].get(name)

        def cell(x, key):
            if x and "error" in x:
                return "failed"
            return "–" if not x else (f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f}" if key == "lat" else f"{x['rps']:.0f}")

        lines.append(f"| {name} | {cell(c, 'lat')} | {cell(c, 'rps')} | {cell(u, 'lat')} | {cell(u, 'rps')} | {cell(s, 'lat')} | {cell(s, 'rps')} |")
    lines.append("")
    lines += [f"- {k}: {v:.2f}" for k, v in doc["ratios"].items()]
    return "\n".join(lines)


def main(argv=None):
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000, help="scale (database crm_bench_<n>)")
    parser.add_argument("--load", action="store_true", help="(re)load the database first")
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per cell")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn workers")
    parser.add_argument("--paths", choices=("fab", "api"), default="api")
    parser.add_argument("--only", default="", help="comma-separated endpoint names")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (make bench installs Debian's wrk)")
    run(args)


if __name__ == "__main__":
    main()
