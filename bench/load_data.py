"""Load a benchmark-sized CRM into a dedicated PostgreSQL database, fast (COPY).

    python -m bench.load_data --customers 100000 [--db-url postgresql://postgres@127.0.0.1/crm_bench_100000]

Per N customers: 10·N tasks, 2·N meetings, N approval requests (100k → 1M tasks), one
Admin, Manager and Compliance user and `--reps` Sales users, all with real Argon2id passwords
(the production hash: the app's own create_user makes them). The schema comes from the
migrations (`crm init`); secondary indexes are dropped during COPY and rebuilt after, the
dashboard counters are recounted (COPY skips their triggers), then the tables are analysed.
"""

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB_URL_TEMPLATE = "postgresql://postgres@127.0.0.1:5432/crm_bench_{customers}"  # one database per scale
PASSWORD = "bench-pass-2026"
TABLES = ("customers", "tasks", "meetings", "approval_requests")
SEARCH_WORD = "テック"  # in 1 of 16 customer names; run.py searches for it
NAME_WORDS = ["サクラ", "フジ", "アサヒ", "ミドリ", "ヤマト", "ヒカリ", "トウキョウ", "ナニワ", "ホクト", "ミライ", "カイセイ", "シンワ", "ダイイチ", "コスモ", "セイワ", SEARCH_WORD]
NAME_KINDS = ["商事", "工業", "不動産", "物産", "ホールディングス", "電機", "建設", "食品"]
INDUSTRIES = ["製造", "金融", "不動産", "小売", "IT", "医療", "建設", "運輸"]
SIZES = ["SMALL", "MEDIUM", "LARGE", "ENTERPRISE"]
PROFILES = ["conservative", "moderate", "aggressive"]
TASK_STATUS = ["TODO"] * 3 + ["IN_PROGRESS"] * 2 + ["COMPLETED"] * 4 + ["CANCELLED"]
PRIORITIES = ["LOW", "MEDIUM", "HIGH", "URGENT"]
APPROVAL_STATUS = ["APPROVED"] * 14 + ["REJECTED"] * 3 + ["RECALLED"] + ["PENDING"] * 2


def admin_url(url):
    """Return the URL of the server's `postgres` database."""
    return url.rsplit("/", 1)[0] + "/postgres"


def recreate_database(url):
    """Drop and create the benchmark database."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def app_env(url, **extra):
    """Environment for running the app against the benchmark database."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=url,
        CRM_ENV="development",
        FAB_UPDATE_PERMS="0",
        CACHE_TYPE="NullCache",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def migrate_and_create_users(url, reps):
    """Run `crm init` and create one user per role plus `reps` Sales users (Argon2id hashes)."""
    flask = os.path.join(ROOT, ".venv", "bin", "flask")
    subprocess.run([flask, "--app", "wsgi", "crm", "init"], cwd=ROOT, env=app_env(url), check=True, capture_output=True)
    code = f"""
from app import create_app
from app.cli import create_user
app = create_app()
with app.app_context():
    for email, role in {users_spec(reps)!r}:
        create_user(email, email.split("@")[0], role, {PASSWORD!r})
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=app_env(url), check=True)


def users_spec(reps):
    """The benchmark's logins: (email, role)."""
    spec = [("admin@bench.example", "Admin"), ("manager@bench.example", "Manager"), ("compliance@bench.example", "Compliance")]
    spec += [(f"sales{i}@bench.example", "Sales") for i in range(1, reps + 1)]
    return spec


def _field(value):
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


class TextCopy:
    """Buffer rows as COPY text lines and send them in large chunks (much faster than write_row)."""

    def __init__(self, copy, batch=20_000):
        self.copy, self.batch, self.lines = copy, batch, []

    def write_row(self, row):
        """Queue one row (values without tabs, newlines or backslashes)."""
        self.lines.append("\t".join(map(_field, row)))
        if len(self.lines) >= self.batch:
            self.flush()

    def flush(self):
        """Send the queued rows."""
        if self.lines:
            self.copy.write(("\n".join(self.lines) + "\n").encode())
            self.lines = []


def drop_secondary_indexes(conn):
    """Drop non-constraint indexes of the loaded tables; return their definitions."""
    rows = conn.execute(
        """
        SELECT i.indexname, i.indexdef FROM pg_indexes i
        WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
        """,
        (list(TABLES),),
    ).fetchall()
    for name, _ in rows:
        conn.execute(f'DROP INDEX "{name}"')
    return [definition for _, definition in rows]


def load(url, customers, reps, seed=7):
    """Fill the database with `customers` customers and the proportional tasks, meetings, requests."""
    rnd = random.Random(seed)
    now = datetime.now(timezone.utc)
    timings = {}
    with psycopg.connect(url) as conn:
        sales_ids = [r[0] for r in conn.execute("SELECT u.id FROM ab_user u WHERE u.email LIKE 'sales%%' ORDER BY u.id")]
        manager_id = conn.execute("SELECT id FROM ab_user WHERE email = 'manager@bench.example'").fetchone()[0]
        indexes = drop_secondary_indexes(conn)
        conn.execute("SET maintenance_work_mem = '256MB'")
        # The generated rows are consistent by construction: skip per-row FK triggers (superuser).
        conn.execute("SET session_replication_role = replica")

        def past(days):
            return now - timedelta(seconds=rnd.randrange(days * 86400))

        t0 = time.monotonic()
        cust_ids, cust_owner = [], []
        with conn.cursor().copy(
            "COPY customers (id, name, email, phone, industry, size, investment_profile, risk_tolerance,"
            " assigned_sales_id, created_by_id, deleted_at, created_at, updated_at) FROM STDIN"
        ) as raw:
            copy = TextCopy(raw)
            for i in range(customers):
                cid, owner = str(uuid.uuid4()), rnd.choice(sales_ids)
                created = past(730)
                updated = created + (now - created) * rnd.random()
                deleted = updated if rnd.random() < 0.02 else None
                name = f"株式会社{rnd.choice(NAME_WORDS)}{rnd.choice(NAME_KINDS)}{i}"
                copy.write_row(
                    (cid, name, f"c{i}@bench.example.jp", f"03-{i % 10000:04d}-{i // 10000:04d}",
                     rnd.choice(INDUSTRIES), rnd.choice(SIZES), rnd.choice(PROFILES), rnd.randint(1, 10),
                     owner, owner, deleted, created, updated)
                )
                if deleted is None:
                    cust_ids.append(cid)
                    cust_owner.append(owner)
            copy.flush()
        timings["customers"] = time.monotonic() - t0

        t0 = time.monotonic()
        with conn.cursor().copy(
            "COPY tasks (id, user_id, customer_id, created_by_id, title, due_date, status, priority,"
            " completed_at, created_at, updated_at) FROM STDIN"
        ) as raw:
            copy = TextCopy(raw)
            for _ in range(customers * 10):
                k = rnd.randrange(len(cust_ids))
                status = rnd.choice(TASK_STATUS)
                due = now + timedelta(seconds=rnd.randrange(-180 * 86400, 180 * 86400))
                created = due - timedelta(days=rnd.randint(1, 60))
                completed = min(due, now) if status == "COMPLETED" else None
                copy.write_row(
                    (str(uuid.uuid4()), cust_owner[k], cust_ids[k], cust_owner[k], "提案書を送付", due, status,
                     rnd.choice(PRIORITIES), completed, created, completed or created)
                )
            copy.flush()
        timings["tasks"] = time.monotonic() - t0

        t0 = time.monotonic()
        with conn.cursor().copy(
            "COPY meetings (id, customer_id, sales_id, created_by_id, title, scheduled_at, location,"
            " created_at, updated_at) FROM STDIN"
        ) as raw:
            copy = TextCopy(raw)
            for _ in range(customers * 2):
                k = rnd.randrange(len(cust_ids))
                at = now + timedelta(seconds=rnd.randrange(-365 * 86400, 60 * 86400))
                copy.write_row((str(uuid.uuid4()), cust_ids[k], cust_owner[k], cust_owner[k], "定例訪問", at, "本社", at, at))
            copy.flush()
        timings["meetings"] = time.monotonic() - t0

        t0 = time.monotonic()
        with conn.cursor().copy(
            "COPY approval_requests (id, requester_id, customer_id, product_name, product_risk, amount, status,"
            " approver_id, requested_at, processed_at, created_at, updated_at) FROM STDIN"
        ) as raw:
            copy = TextCopy(raw)
            for _ in range(customers):
                k = rnd.randrange(len(cust_ids))
                status = rnd.choice(APPROVAL_STATUS)
                at = past(365)
                done = status != "PENDING"
                copy.write_row(
                    (str(uuid.uuid4()), cust_owner[k], cust_ids[k], "国内株式ファンド", rnd.randint(1, 10),
                     rnd.randrange(100_000, 50_000_000), status, manager_id if done else None, at,
                     at + timedelta(days=1) if done else None, at, at)
                )
            copy.flush()
        timings["approval_requests"] = time.monotonic() - t0

        t0 = time.monotonic()
        for definition in indexes:
            conn.execute(definition)
        timings["indexes"] = time.monotonic() - t0
        # COPY under session_replication_role = replica skipped the counter triggers too:
        # rebuild the dashboard counters as `crm recount` does.
        t0 = time.monotonic()
        conn.execute("SELECT record_counters_recount()")
        timings["recount"] = time.monotonic() - t0
        conn.commit()
    t0 = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    timings["vacuum_analyze"] = time.monotonic() - t0
    return timings


def main(argv=None):
    """Command line: recreate the database, migrate, create users, COPY the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=20, help="Sales users")
    parser.add_argument("--db-url", default=os.environ.get("BENCH_DATABASE_URL"), help="default crm_bench_<customers>")
    args = parser.parse_args(argv)
    args.db_url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    started = time.monotonic()
    recreate_database(args.db_url)
    migrate_and_create_users(args.db_url, args.reps)
    timings = load(args.db_url, args.customers, args.reps)
    total = time.monotonic() - started
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    print(f"Loaded {args.customers:,} customers, {args.customers * 10:,} tasks, {args.customers * 2:,} meetings, "
          f"{args.customers:,} approval requests into {args.db_url} in {total:.1f}s ({parts})")


if __name__ == "__main__":
    main()
