"""The audit chain and retention at scale: seal, verify, archive and export N audit rows on PostgreSQL.

    python -m bench.audit_chain --rows 200000 [--db-url postgresql://postgres@127.0.0.1/crm_bench_audit] [--keep]

Loads N audit rows with COPY (unsealed, as writers leave them; half dated across the twelve
months of 2010, half today), then times in one process, through the app's own functions:
sealing them all, verifying the chain, archiving the old months (retention), reading one
month back (`export`'s path, checksum and row hashes checked) and a deep verify. Prints JSON.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench_audit"


def recreate(url):
    """Drop and create the benchmark database."""
    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop(url):
    """Drop the benchmark database."""
    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load(url, rows):
    """COPY `rows` unsealed audit rows: half over 2010's months, half today."""
    now = datetime.now(timezone.utc)
    old = datetime(2010, 1, 1, tzinfo=timezone.utc)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY audit_logs (id, action, resource_type, resource_id, changes, ip_address, timestamp) FROM STDIN") as copy:
            for i in range(rows):
                when = old + timedelta(seconds=i * (365 * 86400 // max(1, rows // 2))) if i < rows // 2 else now + timedelta(microseconds=i)
                changes = json.dumps({"before": {"phone": f"03-0000-{i % 10000:04d}", "status": "TODO"},
                                      "after": {"phone": f"03-1111-{i % 10000:04d}", "status": "IN_PROGRESS", "メモ": "電話済み"}},
                                     ensure_ascii=False)
                copy.write_row((str(uuid.uuid4()), "UPDATE", "customer", str(uuid.uuid4()), changes, "192.0.2.10", when))
        size = conn.execute("SELECT pg_total_relation_size('audit_logs')").fetchone()[0]
    return size


def timed(fn):
    """(seconds, result) of fn()."""
    started = time.perf_counter()
    result = fn()
    return round(time.perf_counter() - started, 2), result


def run(url, rows, archive_dir):
    """Load, then seal, verify, retain, export and deep-verify; return the figures."""
    sys.path.insert(0, ROOT)
    from app import create_app
    from config import DevelopmentConfig, normalise_db_url

    recreate(url)
    config = type("BenchAudit", (DevelopmentConfig,), {
        "SQLALCHEMY_DATABASE_URI": normalise_db_url(url), "AUDIT_ARCHIVE_DIR": archive_dir,
        "CACHE_TYPE": "NullCache", "FAB_UPDATE_PERMS": False, "AUDIT_JOBS_IN_PROCESS": False,
        # A throwaway secret: the benchmark signs nothing, and writes no instance/secret_key.
        "secret_key": classmethod(lambda cls: "bench-audit-only-" + "x" * 32),
    })
    app = create_app(config)
    from flask_migrate import upgrade

    from app import audit_archive
    from app.audit_chain import seal, verify
    from app.extensions import db

    with app.app_context():
        upgrade()
        table_bytes = load(url, rows)
        seal_s, sealed = timed(lambda: seal(db.engine))
        verify_s, report = timed(lambda: verify(db.engine))
        assert report.ok and sealed == rows, report.problem
        retain_s, written = timed(lambda: audit_archive.retain(db.engine, archive_dir, 84))
        archived = sum(m["rows"] for m in written)
        export_s, month_rows = timed(lambda: sum(1 for _ in audit_archive.read_month(archive_dir, "2010-06")))
        deep_s, deep_rows = timed(lambda: audit_archive.check_all(archive_dir))
        after_s, after = timed(lambda: verify(db.engine, audit_archive.ranges(archive_dir)))
        assert after.ok, after.problem
        db.engine.dispose()
    archive_bytes = sum(os.path.getsize(os.path.join(archive_dir, n)) for n in os.listdir(archive_dir) if n.endswith(".gz"))
    return {
        "rows": rows,
        "table_bytes_before": table_bytes,
        "seal_seconds": seal_s, "seal_rows_per_second": round(rows / seal_s),
        "verify_seconds": verify_s, "verify_rows_per_second": round(rows / verify_s),
        "retain_seconds": retain_s, "archived_rows": archived, "archived_months": len(written),
        "archive_gz_bytes": archive_bytes, "archive_bytes_per_row": round(archive_bytes / max(1, archived), 1),
        "export_one_month_seconds": export_s, "export_one_month_rows": month_rows,
        "deep_check_seconds": deep_s, "deep_check_rows": deep_rows,
        "verify_after_retention_seconds": after_s, "verify_after_checked": after.checked, "verify_after_bridged": after.archived,
    }


def main(argv=None):
    """Command line: run the benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--db-url", default=DEFAULT_URL, help="dropped and recreated")
    parser.add_argument("--keep", action="store_true", help="keep the database and the archive directory")
    args = parser.parse_args(argv)
    archive_dir = tempfile.mkdtemp(prefix="crm-audit-archive-")
    try:
        print(json.dumps(run(args.db_url, args.rows, archive_dir), indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(archive_dir, ignore_errors=True)
            drop(args.db_url)


if __name__ == "__main__":
    main()
