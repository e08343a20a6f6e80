"""Import bench: N customer rows from one CSV through the import job, beside a bare COPY of the same file.

    python -m bench.imports [--rows 100000] [--mode outbox|embedded] [--db-url postgresql://postgres@127.0.0.1/crm_bench_imports]

One run: recreates the database, migrates it (`crm init`), creates one Sales user, writes
a CSV of N customers (name, email, phone, industry, address), then
1. COPY: `COPY bench_copy FROM STDIN (FORMAT csv, HEADER)` of that file into a table of
   the same text columns (no index, no trigger): the floor of getting the bytes in;
2. import: `create_import` (decode, count, store the file) and `run` (the job's code, in
   this process) with audit and events on: every row through `prepare_customer`, its
   audit row and its CUSTOMER_CREATED outbox event in the same transaction, committed in
   batches of IMPORT_BATCH_SIZE with the row outcomes.
   `--mode outbox` (default) is production's shape (KAFKA_ENABLED: the commit only leaves
   the events for the relay, as the worker's import job does); `--mode embedded` drains
   the outbox in-process after each batch (`make run`): the first-contact tasks, their
   audit rows and TASK_CREATED events are made inside the timed run too.
Prints seconds and rows/s of both, and the counts checked afterwards.
"""

import argparse
import csv
import os
import random
import sys
import tempfile
import time

import psycopg

from bench.load_data import app_env, recreate_database

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench_imports"
INDUSTRIES = ["製造", "金融", "不動産", "小売", "IT", "医療", "建設", "運輸"]


def write_csv(path, rows, seed=11):
    """A CSV of `rows` customers with Japanese headers, as the import screen takes it."""
    rnd = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["顧客名", "メール", "電話番号", "業種", "住所"])
        for i in range(rows):
            out.writerow([f"株式会社ベンチ{i:06d}", f"bench-{i}@example.jp", f"03-{rnd.randint(1000, 9999)}-{i % 10000:04d}",
                          rnd.choice(INDUSTRIES), f"東京都千代田区丸の内{i % 9 + 1}-{i % 30 + 1}"])


def bare_copy(url, path):
    """Seconds a plain COPY of the CSV into an unindexed table of text columns takes."""
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy")
        conn.execute("CREATE TABLE bench_copy (name text, email text, phone text, industry text, address text)")
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER)") as copy, open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - start
        count = conn.execute("SELECT count(*) FROM bench_copy").fetchone()[0]
        conn.execute("DROP TABLE bench_copy")
        conn.commit()
    return seconds, count


def copy_into_customers_shape(url, path):
    """Seconds a COPY of the CSV takes into a table shaped as `customers` (its indexes and generated column, no triggers)."""
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_copy_customers")
        conn.execute("CREATE TABLE bench_copy_customers (LIKE customers INCLUDING ALL)")
        conn.commit()
        start = time.perf_counter()
        columns = "name, email, phone, industry, address"
        with conn.cursor() as cur, open(path, "r", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            next(reader)
            with cur.copy(f"COPY bench_copy_customers (id, {columns}, risk_tolerance, created_at, updated_at) FROM STDIN") as copy:
                import uuid
                from datetime import datetime, timezone

                now = datetime.now(timezone.utc)
                for row in reader:
                    copy.write_row([str(uuid.uuid4()), *row, 5, now, now])
        conn.commit()
        seconds = time.perf_counter() - start
        conn.execute("DROP TABLE bench_copy_customers")
        conn.commit()
    return seconds


def run_import(url, path, mode, batch):
    """Run the import in a child process (the app's own config from the environment); return its printed figures."""
    import subprocess

    code = f"""
import time
from app import create_app
from app.context import acting_as
from app.extensions import db
from app.services import imports
from app.services.users import create_user
app = create_app()
with app.app_context():
    user = create_user("bench-importer@example.jp", "Bench Importer", "Sales", "bench-pass-2026")
    data = open({path!r}, "rb").read()
    start = time.perf_counter()
    imp = imports.create_import(user, "customers", "bench.csv", data, dedupe="skip")
    stored = time.perf_counter() - start
    imp.status = "queued"
    db.session.commit()
    status = imports.run(imp.id)
    seconds = time.perf_counter() - start
    imp = db.session.get(type(imp), imp.id)
    import sqlalchemy as sa
    from models import AuditLog, OutboxEvent, Customer, Task
    audit = db.session.execute(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.resource_type == "customer")).scalar()
    events = db.session.execute(sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "CUSTOMER_CREATED")).scalar()
    tasks = db.session.execute(sa.select(sa.func.count()).select_from(Task)).scalar()
    print(f"RESULT {{seconds:.2f}} {{stored:.2f}} {{status}} {{imp.created}} {{imp.rejected}} {{audit}} {{events}} {{tasks}}")
"""
    env = app_env(url, KAFKA_ENABLED="1" if mode == "outbox" else "0", REDIS_URL="", IMPORT_BATCH_SIZE=str(batch),
                  STREAM_EMBEDDED="0")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    seconds, stored, status, created, rejected, audit, events, tasks = line.split()[1:]
    return {"seconds": float(seconds), "stored": float(stored), "status": status, "created": int(created),
            "rejected": int(rejected), "audit": int(audit), "events": int(events), "tasks": int(tasks)}


def main(argv=None):
    """Load, COPY, import, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mode", choices=("outbox", "embedded"), default="outbox")
    parser.add_argument("--batch", type=int, default=2000, help="IMPORT_BATCH_SIZE (its default)")
    parser.add_argument("--db-url", default=DB_URL)
    args = parser.parse_args(argv)
    import subprocess

    recreate_database(args.db_url)
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    subprocess.run([flask, "--app", "wsgi", "crm", "init"], cwd=ROOT, env=app_env(args.db_url), check=True, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "customers.csv")
        write_csv(path, args.rows)
        size_mb = os.path.getsize(path) / 1024 / 1024
        copy_s, copied = bare_copy(args.db_url, path)
        shaped_s = copy_into_customers_shape(args.db_url, path)
        result = run_import(args.db_url, path, args.mode, args.batch)
    print(f"file: {args.rows} rows, {size_mb:.1f} MB (UTF-8 CSV)")
    print(f"COPY   {copy_s:8.2f} s  {copied / copy_s:10.0f} rows/s  ({copied} rows)")
    print(f"COPY into a table shaped as customers (its trigram GIN and other indexes) {shaped_s:8.2f} s  "
          f"{copied / shaped_s:10.0f} rows/s")
    print(f"import {result['seconds']:8.2f} s  {result['created'] / result['seconds']:10.0f} rows/s  "
          f"(mode {args.mode}, batch {args.batch}; upload checked and stored in {result['stored']:.2f} s; "
          f"status {result['status']}, created {result['created']}, rejected {result['rejected']})")
    print(f"       import / COPY = {result['seconds'] / copy_s:.0f}×; customer audit rows {result['audit']}, "
          f"CUSTOMER_CREATED events {result['events']}, tasks {result['tasks']}")


if __name__ == "__main__":
    main()
