"""Peak memory of a 100k-row Excel report, built in a worker process as the RQ job builds it.

    python -m bench.report_memory [--rows 100000] [--load] [--format xlsx|pdf] [--db-url URL]

--load (re)creates the database (default crm_bench_reports), migrates it (`crm init`) and
COPYs `--rows` customers of one Sales rep into it. Then one ReportRun for the customer list
is stored and a fresh Python process runs `workers.reports.report_job(run_id)` — the function
the RQ worker calls, with its own app — and reports its peak RSS (getrusage ru_maxrss),
its RSS once the app is made (before the build), the build's seconds and the file's size.
The target is a peak under 200 MB for 100k rows: XlsxWriter's constant-memory mode keeps
one row in memory, and the rows come from a server-side cursor in batches.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

from bench.load_data import INDUSTRIES, NAME_KINDS, NAME_WORDS, PROFILES, SIZES, TextCopy, app_env, recreate_database

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench_reports"
REP_EMAIL = "sales-report@bench.example"


def rss_mb():
    """This process's current resident set size in MB (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def load(url, rows, seed=11):
    """Recreate the database, migrate it, create one Sales rep and COPY `rows` customers of theirs."""
    recreate_database(url)
    env = app_env(url)
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "crm", "init"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "crm", "create-user", "--email", REP_EMAIL,
                    "--name", "帳票 担当", "--role", "Sales", "--password", "bench-pass-2026"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    rnd = random.Random(seed)
    now = datetime.now(timezone.utc)
    t0 = time.monotonic()
    with psycopg.connect(url) as conn:
        rep = conn.execute("SELECT id FROM ab_user WHERE email = %s", (REP_EMAIL,)).fetchone()[0]
        with conn.cursor().copy(
            "COPY customers (id, name, email, phone, industry, size, investment_profile, risk_tolerance,"
            " assigned_sales_id, created_by_id, created_at, updated_at) FROM STDIN"
        ) as raw:
            copy = TextCopy(raw)
            for i in range(rows):
                created = now - timedelta(seconds=rnd.randrange(730 * 86400))
                copy.write_row((str(uuid.uuid4()), f"株式会社{rnd.choice(NAME_WORDS)}{rnd.choice(NAME_KINDS)}{i}",
                                f"c{i}@bench.example.jp", f"03-{i % 10000:04d}-{i // 10000:04d}",
                                rnd.choice(INDUSTRIES), rnd.choice(SIZES), rnd.choice(PROFILES), rnd.randint(1, 10),
                                rep, rep, created, created))
            copy.flush()
        conn.execute("ANALYZE customers")
    return time.monotonic() - t0


def store_run(url, fmt):
    """Store one QUEUED customer-list run of the rep (as `request_report` does); return its id."""
    run_id = str(uuid.uuid4())
    now = datetime.now(timezone.utc)
    with psycopg.connect(url) as conn:
        rep = conn.execute("SELECT id FROM ab_user WHERE email = %s", (REP_EMAIL,)).fetchone()
        if rep is None:
            raise SystemExit("no benchmark data: run with --load first")
        conn.execute(
            "INSERT INTO report_runs (id, user_id, kind, format, params, status, progress, rows_done, created_at,"
            " expires_at) VALUES (%s, %s, 'customers', %s, '{}', 'QUEUED', 0, 0, %s, %s)",
            (run_id, rep[0], fmt, now, now + timedelta(days=1)),
        )
    return run_id


def child(run_id):
    """The worker process: make the app, then run the RQ job's function; print the figures as JSON."""
    from workers import runtime
    from workers.reports import report_job

    runtime.get_app()
    before = rss_mb()
    t0 = time.monotonic()
    status = report_job(run_id)
    seconds = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KiB on Linux
    print(json.dumps({"status": status, "seconds": round(seconds, 1), "rss_before_mb": round(before, 1),
                      "peak_rss_mb": round(peak, 1)}))


def main(argv=None):
    """Load (optionally), build the report in a child process, print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--load", action="store_true", help="recreate the database and COPY --rows customers")
    parser.add_argument("--format", default="xlsx", choices=("xlsx", "pdf"))
    parser.add_argument("--db-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child)
    if args.load:
        print(f"loaded {args.rows} customers in {load(args.db_url, args.rows):.1f} s")
    run_id = store_run(args.db_url, args.format)
    out_dir = os.path.join(ROOT, "bench", "results", "reports")
    env = app_env(args.db_url, REPORTS_DIR=out_dir, REPORT_PDF_MAX_ROWS=str(max(args.rows, 5000)))
    done = subprocess.run([sys.executable, "-m", "bench.report_memory", "--child", run_id], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    with psycopg.connect(args.db_url) as conn:
        rows_done, size, error = conn.execute(
            "SELECT rows_done, file_size, error FROM report_runs WHERE id = %s", (run_id,)).fetchone()
    figures.update(rows=rows_done, file_mb=round((size or 0) / 1e6, 1), format=args.format, error=error)
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
