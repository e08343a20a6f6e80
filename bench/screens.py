"""The browser screens beside the hello route and the /api read of the same rows, in one run.

    python -m bench.screens --customers 10000 [--db-url URL] [--duration 8] [--only customers,api_customers] [--root CHECKOUT]
    python -m bench.screens --customers 10000 --inproc 50 [--root CHECKOUT]   # CPU ms per request in one process
    python -m bench.screens --customers 10000 --inproc 50 --only customers --profile customers   # and its cProfile

Uses bench/run.py's server (gunicorn as in production), wrk script and data loader
(bench/load_data.py; load first with `python -m bench.load_data --customers N`). Screens
are driven with a session cookie from the form login (as a browser does), /api rows with a
bearer token. Each row runs uncached (`CACHE_ANSWERS=0`) and cached, a 2 s warm-up first;
cached rows are compared with a hello cell measured right before them.

ROWS is the table other screens add to (home pages, the customer page): name ->
(path, user, twin), `twin` the /api row reading the same data (or None), `path` may hold
`{customer}` (a customer of `user` picked at start).
"""

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import psycopg

from bench.load_data import DB_URL_TEMPLATE, PASSWORD, SEARCH_WORD
from bench.run import ROOT, UNREACHED_LIMITS, Server, check_once, cleanup, login, start_redis, wrk

_WORD = urllib.parse.quote(SEARCH_WORD)  # find: the search rows' word, as a URL carries it
# name: (path, user, twin). Screens: session cookie; api_*: bearer token (JSON).
ROWS = {
    "hello": ("/bench/hello", None, None),
    "customers": ("/customerview/list/", "manager", "api_customers"),
    "tasks": ("/taskview/list/", "manager", "api_tasks"),
    "meetings": ("/meetingview/list/", "manager", "api_meetings"),
    "approvals": ("/approvalrequestview/list/", "manager", "api_approvals"),
    "tasks_sales": ("/taskview/list/", "sales1", "api_tasks_sales"),
    "customers_sales": ("/customerview/list/", "sales1", "api_customers_sales"),  # shell-speed
    # --- home --- each role's home page (views/home.py); twin: the dashboard figures under /api.
    "home_sales": ("/", "sales1", "api_dashboard_sales"),
    "home_manager": ("/", "manager", "api_dashboard"),
    "home_compliance": ("/", "compliance", None),
    "home_admin": ("/", "admin", None),
    "api_dashboard": ("/api/reports/dashboard", "manager", None),
    "api_dashboard_sales": ("/api/reports/dashboard", "sales1", None),
    # --- cust-cal --- the customer page of a customer with TIMELINE_ITEMS audit rows (seeded before the run),
    # twin: that customer under /api; the calendar feed of a month view (42 days, as FullCalendar asks),
    # twin: the same user's meetings of that range under /api.
    "customer_page": ("/customerview/show/{customer}", "sales1", "api_customer"),
    "calendar_feed": ("/calendar/feed?start={cal_start}&end={cal_end}&who=mine", "sales1", "api_meetings_range"),
    "calendar_feed_team": ("/calendar/feed?start={cal_start}&end={cal_end}&who=team", "manager", None),
    "api_customer": ("/api/customers/{customer}", "sales1", None),
    "api_meetings_range": ("/api/meetings?from={cal_start}&to={cal_end}&limit=100", "sales1", None),
    # --- end cust-cal ---
    # --- board --- the approvals board (views/board.py) of each role; twin: the request list under /api.
    "board_manager": ("/approvals/board/", "manager", "api_approvals"),
    "board_compliance": ("/approvals/board/", "compliance", "api_approvals"),
    "board_sales": ("/approvals/board/", "sales1", "api_approvals_sales"),
    "api_approvals_sales": ("/api/approvals?page=1&limit=25", "sales1", None),
    # --- end board ---
    # --- find --- the navbar search's dropdown (customers, meetings, tasks; 5 a group), twin: the
    # customer search under /api; a list export (CSV, the customers whose name holds the word).
    "search_manager": (f"/search/suggest?q={_WORD}", "manager", "api_customer_search"),
    "search_sales": (f"/search/suggest?q={_WORD}", "sales1", None),
    "api_customer_search": (f"/api/customers?page=1&limit=5&search={_WORD}", "manager", None),
    "export_customers_sales": (f"/customerview/export/csv?_flt_2_name={_WORD}", "sales1", None),
    # --- end find ---
    "api_customers": ("/api/customers?page=1&limit=25", "manager", None),
    "api_tasks": ("/api/tasks?page=1&limit=25", "manager", None),
    "api_meetings": ("/api/meetings?page=1&limit=25", "manager", None),
    "api_approvals": ("/api/approvals?page=1&limit=25", "manager", None),
    "api_tasks_sales": ("/api/tasks?page=1&limit=25", "sales1", None),
    "api_customers_sales": ("/api/customers?page=1&limit=25", "sales1", None),  # shell-speed
}
USERS = ("manager", "sales1", "compliance", "admin")
HTML = "text/html,application/xhtml+xml"


def is_screen(name):
    """True for rows driven with a session cookie (everything but hello and api_*)."""
    return name != "hello" and not name.startswith("api_")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _cookies(resp, jar):
    for header in resp.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def _cookie_header(jar):
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def session_cookie(base, email):
    """Log in through the form (GET /login/ for the CSRF token, then POST); return the Cookie header."""
    opener = urllib.request.build_opener(_NoRedirect)
    jar = {}
    with opener.open(urllib.request.Request(base + "/login/"), timeout=30) as resp:
        page = resp.read().decode()
        _cookies(resp, jar)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
    data = urllib.parse.urlencode({"username": email, "password": PASSWORD, "csrf_token": token.group(1) if token else ""}).encode()
    req = urllib.request.Request(base + "/login/", data=data, headers={"Cookie": _cookie_header(jar)})
    try:
        with opener.open(req, timeout=30) as resp:
            _cookies(resp, jar)
    except urllib.error.HTTPError as exc:  # the 302 after a good login
        if exc.code != 302:
            raise
        _cookies(exc, jar)
        if "/login" in (exc.headers.get("Location") or ""):
            raise RuntimeError(f"form login of {email} failed") from None
    return _cookie_header(jar)


def check_screen(base, path, cookie):
    """One screen request before the cell: it must answer 200 with HTML (not the login page)."""
    req = urllib.request.Request(base + path, headers={"Cookie": cookie, "Accept": HTML})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=60) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"GET {path} answered {exc.code} {exc.headers.get('Location') or ''}") from None
    return len(body)


def customer_of(db_url, email):
    """The id of a live customer assigned to `email` (for rows whose path names one)."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT c.id FROM customers c JOIN ab_user u ON u.id = c.assigned_sales_id"
            " WHERE u.email = %s AND c.deleted_at IS NULL ORDER BY c.id LIMIT 1",
            (email,),
        ).fetchone()
    return row[0] if row else ""


# --- cust-cal ---
TIMELINE_ITEMS = 200


def calendar_range(now=None):
    """{cal_start, cal_end}: the 42 days a month view asks for, ending a week from now (UTC, ISO 8601)."""
    from datetime import timedelta

    now = (now or datetime.now(timezone.utc)).replace(hour=0, minute=0, second=0, microsecond=0)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return {"cal_start": (now - timedelta(days=35)).strftime(fmt), "cal_end": (now + timedelta(days=7)).strftime(fmt)}


def seed_timeline(db_url, customer, items=TIMELINE_ITEMS):
    """Give `customer` at least `items` audit rows (UPDATEs of its phone, back-dated over the past year).

    The loader bypasses the audit listener, so a bench customer has no history. The rows
    are older than the run's start, so `cleanup` keeps them and the next run reuses them.
    """
    import uuid
    from datetime import timedelta

    with psycopg.connect(db_url, autocommit=True) as conn:
        have = conn.execute(
            "SELECT count(*) FROM audit_logs WHERE resource_type = 'customer' AND resource_id = %s", (customer,)
        ).fetchone()[0]
        owner = conn.execute("SELECT assigned_sales_id FROM customers WHERE id = %s", (customer,)).fetchone()[0]
        now = datetime.now(timezone.utc)
        for i in range(have, items):
            changes = {"before": {"phone": f"03-0000-{i:04d}"}, "after": {"phone": f"03-0000-{i + 1:04d}"}}
            conn.execute(
                "INSERT INTO audit_logs (id, user_id, action, resource_type, resource_id, changes, timestamp)"
                " VALUES (%s, %s, 'UPDATE', 'customer', %s, %s::json, %s)",
                (str(uuid.uuid4()), owner, customer, json.dumps(changes), now - timedelta(days=1, hours=i * 40)),
            )
    return max(have, items)
# --- end cust-cal ---


# --- board ---
def seed_steps(db_url, threshold=10_000_000):
    """Give every approval request without steps the steps the service would have written (idempotent).

    The loader COPYs requests without their history, so no request would wait for anyone.
    Step 1 is the Manager's; a request of `threshold` JPY or more also gets a Compliance
    step (and its reason). Decisions follow the status: APPROVED — every step approved;
    REJECTED — step 1 rejected; PENDING with two steps — step 1 approved for half of them,
    so both waiting columns fill. Returns how many requests got steps.
    """
    with psycopg.connect(db_url, autocommit=True) as conn:
        manager, compliance = (
            conn.execute("SELECT id FROM ab_user WHERE email = %s", (f"{who}@bench.example",)).fetchone()[0]
            for who in ("manager", "compliance")
        )
        todo = "NOT EXISTS (SELECT 1 FROM approval_steps s WHERE s.approval_request_id = r.id)"
        conn.execute(
            "CREATE TEMP TABLE board_seed AS SELECT r.id, r.status, r.amount >= %s AS two, r.processed_at,"
            " left(r.id, 1) < '8' AS first_done FROM approval_requests r WHERE " + todo,
            (threshold,),
        )
        n = conn.execute("SELECT count(*) FROM board_seed").fetchone()[0]
        conn.execute(
            "INSERT INTO approval_steps (id, approval_request_id, sequence, required_role, decided_by_id, decision, decided_at)"
            " SELECT gen_random_uuid()::text, id, 1, 'Manager', %(m)s, d, coalesce(processed_at, now()) FROM ("
            "  SELECT *, CASE WHEN status = 'APPROVED' OR (status = 'PENDING' AND two AND first_done) THEN 'APPROVED'"
            "  WHEN status = 'REJECTED' THEN 'REJECTED' END AS d FROM board_seed) x WHERE d IS NOT NULL",
            {"m": manager},
        )
        conn.execute(
            "INSERT INTO approval_steps (id, approval_request_id, sequence, required_role)"
            " SELECT gen_random_uuid()::text, id, 1, 'Manager' FROM board_seed b"
            " WHERE NOT EXISTS (SELECT 1 FROM approval_steps s WHERE s.approval_request_id = b.id)"
        )
        conn.execute(
            "INSERT INTO approval_steps (id, approval_request_id, sequence, required_role, decided_by_id, decision, decided_at)"
            " SELECT gen_random_uuid()::text, id, 2, 'Compliance',"
            "  CASE WHEN status = 'APPROVED' THEN %s END, CASE WHEN status = 'APPROVED' THEN 'APPROVED' END,"
            "  CASE WHEN status = 'APPROVED' THEN processed_at END FROM board_seed WHERE two",
            (compliance,),
        )
        conn.execute(
            "UPDATE approval_requests r SET compliance_reasons = '[\"AMOUNT_AT_OR_ABOVE_THRESHOLD\"]'::json"
            " FROM board_seed b WHERE b.id = r.id AND b.two"
        )
        conn.execute("ANALYZE approval_steps")
    return n
# --- end board ---


def cell(server, name, creds, duration, connections, threads, customer):
    """Warm up and run one row with wrk on `server`; returns the wrk result (plus body size for screens)."""
    path, user, _twin = ROWS[name]
    path = path.format(customer=customer, **calendar_range())
    extra = {}
    if is_screen(name):
        cookie = creds["cookie"][user]
        size = check_screen(server.base, path, cookie)
        os.environ.update(BENCH_COOKIE=cookie, BENCH_ACCEPT=HTML)
        token, extra = None, {"bytes": size}
    else:
        token = creds["token"].get(user) if user else None
        check_once(server.base, "GET", path, token, None)
    try:
        wrk(server.base, "GET", path, token, None, 2, connections, threads)
        res = wrk(server.base, "GET", path, token, None, duration, connections, threads)
    finally:
        os.environ.pop("BENCH_COOKIE", None)
        os.environ.pop("BENCH_ACCEPT", None)
    return {**res, **extra}


INPROC = r"""
import json, os, re, statistics, sys, time
from bench.app import app
rows, repeat, password = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
clients = {}

def client(user, screen):
    key = (user, screen)
    if key not in clients:
        c = app.test_client()
        if screen:
            page = c.get("/login/").get_data(as_text=True)
            token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
            c.post("/login/", data={"username": f"{user}@bench.example", "password": password, "csrf_token": token})
            clients[key] = (c, {"Accept": "text/html"})
        else:
            answer = c.post("/api/auth/login", json={"email": f"{user}@bench.example", "password": password}).get_json()
            clients[key] = (c, {"Authorization": "Bearer " + answer["token"]})
    return clients[key]

out = {}
for name, path, user, screen in rows:
    c, headers = client(user, screen) if user else (app.test_client(), {})
    for _ in range(5):
        status = c.get(path, headers=headers).status_code
    cpu, wall = [], []
    for _ in range(repeat):
        t0, p0 = time.perf_counter(), time.process_time()
        c.get(path, headers=headers)
        cpu.append((time.process_time() - p0) * 1000)
        wall.append((time.perf_counter() - t0) * 1000)
    out[name] = {"status": status, "cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall)}
    if name == os.environ.get("BENCH_PROFILE"):  # --profile: the row's `repeat` requests again under cProfile
        import cProfile, io, pstats
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(repeat):
            c.get(path, headers=headers)
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(60)
        print(text.getvalue())
print("INPROC " + json.dumps(out))
"""


def inproc(root, db_url, redis_url, names, repeat, customer, cached, profile=""):
    """Median CPU and wall ms per request of each row inside one process of `root`'s production app (no HTTP, no wrk).

    CPU time is the web process's own work (rendering, ORM), which the shared machine's
    load changes far less than requests per second; the database's time is in wall only.
    """
    env = dict(os.environ, CRM_ENV="production", SECRET_KEY=secrets.token_urlsafe(48), DATABASE_URL=db_url, REDIS_URL=redis_url,
               CACHE_ANSWERS="1" if cached else "0", KAFKA_ENABLED="1", FAB_UPDATE_PERMS="0", LOG_LEVEL="ERROR",
               PYTHONPATH=root, BENCH_PROFILE=profile, **UNREACHED_LIMITS)
    rows = [(n, ROWS[n][0].format(customer=customer), ROWS[n][1], is_screen(n)) for n in names]
    out = subprocess.run([sys.executable, "-c", INPROC, json.dumps(rows), str(repeat), PASSWORD], cwd=root, env=env,
                         capture_output=True, text=True, check=True).stdout
    if profile:
        print("\n".join(l for l in out.splitlines() if not l.startswith("INPROC ")), flush=True)
    return json.loads(next(l for l in out.splitlines() if l.startswith("INPROC "))[len("INPROC "):])


def main(argv=None):
    """Run every row uncached then cached; print a table with the ratio of each screen to its /api twin."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--db-url", default=None)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--only", default="", help="comma-separated row names (default: all)")
    parser.add_argument("--modes", default="uncached,cached")
    parser.add_argument("--root", default=ROOT, help="the checkout gunicorn serves (default this one; main for a before figure)")
    parser.add_argument("--inproc", type=int, default=0, metavar="N",
                        help="instead of wrk: N requests of each row in one process of the app, median CPU and wall ms")
    parser.add_argument("--profile", default="", metavar="ROW",
                        help="with --inproc: run ROW's requests once more under cProfile and print its top 60 (cumulative)")
    args = parser.parse_args(argv)
    db_url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    names = [n for n in args.only.split(",") if n] or list(ROWS)
    started = datetime.now(timezone.utc)
    customer = customer_of(db_url, "sales1@bench.example")
    if "customer_page" in names and customer:
        seed_timeline(db_url, customer)
    if any(n.startswith("board_") for n in names):
        seed_steps(db_url)  # board
    redis_proc, redis_url = start_redis()
    if args.inproc:
        try:
            for mode in [m for m in args.modes.split(",") if m]:
                got = inproc(os.path.abspath(args.root), db_url, redis_url, names, args.inproc, customer, mode == "cached", args.profile)
                for name, r in got.items():
                    twin = ROWS[name][2]
                    ratio = f"  {r['cpu_ms'] / got[twin]['cpu_ms']:5.1f}x its /api twin's CPU" if twin in got else ""
                    print(f"{mode:9} {name:18} status {r['status']}  cpu {r['cpu_ms']:7.2f} ms  wall {r['wall_ms']:7.2f} ms{ratio}", flush=True)
        finally:
            redis_proc.kill()
            redis_proc.wait()
        return None
    results = {}
    try:
        for mode in [m for m in args.modes.split(",") if m]:
            server = Server(db_url, redis_url, mode == "cached", args.workers, root=os.path.abspath(args.root))
            try:
                creds = {
                    "token": {u: login(server.base, "api", f"{u}@bench.example") for u in USERS},
                    "cookie": {u: session_cookie(server.base, f"{u}@bench.example") for u in USERS},
                }
                out = results[mode] = {}
                for name in names:
                    try:
                        if mode == "cached" and name != "hello":
                            out[f"hello@{name}"] = cell(server, "hello", creds, args.duration, args.connections, args.threads, customer)
                        out[name] = res = cell(server, name, creds, args.duration, args.connections, args.threads, customer)
                    except (RuntimeError, OSError) as exc:  # a screen that does not answer in time does not end the run
                        out[name] = {"error": str(exc)[:300] or type(exc).__name__}
                        print(f"{mode:9} {name:18} FAILED: {exc}", flush=True)
                        continue
                    print(f"{mode:9} {name:18} p50 {res['p50_ms']:8.1f} ms  p99 {res['p99_ms']:8.1f} ms  {res['rps']:8.1f} req/s"
                          f"  non-2xx {res['non_2xx']}", flush=True)
            finally:
                server.stop()
    finally:
        redis_proc.kill()
        redis_proc.wait()
        cleanup(db_url, started)
    doc = {"time": started.isoformat(), "db": db_url.rsplit("/", 1)[1], "root": os.path.basename(os.path.abspath(args.root)), "customers": args.customers,
           "duration_s": args.duration, "connections": args.connections, "workers": args.workers,
           "loadavg_after": os.getloadavg(), "results": results}
    out = os.path.join(ROOT, "bench", "results", f"screens-{started.strftime('%Y%m%dT%H%M%S')}-{args.customers}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=1)
    print(f"\nSaved {out}\n", file=sys.stderr)
    print(markdown(doc, names))
    return doc


def markdown(doc, names):
    """The run as a Markdown table: each row's p50/p99 and req/s, and a screen's cost over its /api twin."""
    res = doc["results"]
    lines = [
        f"{doc['db']} ({doc['root']}): {doc['workers']} gunicorn workers, wrk {doc['connections']} connections, {doc['duration_s']} s per cell",
        "",
        "| row | path | uncached p50 / p99 ms | uncached req/s | cached p50 / p99 ms | cached req/s | cached / adjacent hello | /api twin req/s ÷ row req/s (uncached) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def lat(x):
        return "–" if not x or "error" in x else f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f}"

    def rps(x):
        return "–" if not x or "error" in x else f"{x['rps']:.0f}"

    for name in names:
        u, c = res.get("uncached", {}).get(name), res.get("cached", {}).get(name)
        hello = res.get("cached", {}).get(f"hello@{name}")
        twin = ROWS[name][2]
        tu = res.get("uncached", {}).get(twin) if twin else None
        ratio = f"{tu['rps'] / u['rps']:.1f}×" if tu and u and "rps" in u and "rps" in tu and u["rps"] else "–"
        vs_hello = f"{c['rps'] / hello['rps']:.2f}" if c and hello and "rps" in c and "rps" in hello else "–"
        lines.append(f"| {name} | `{ROWS[name][0]}` | {lat(u)} | {rps(u)} | {lat(c)} | {rps(c)} | {vs_hello} | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
