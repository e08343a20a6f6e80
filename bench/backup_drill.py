"""The restore drill at scale: load N customers (bench/load_data.py's COPY loader), back up, drop, restore.

    python -m bench.backup_drill --customers 100000 [--db-url postgresql://postgres@127.0.0.1/crm_drill_100000] [--keep]

Runs the real commands (`crm backup`, then `crm restore` into the dropped database) as a
deployment would, and prints the backup's size, the time each took and whether the restored
row counts match the manifest (`crm restore` checks them itself and fails otherwise).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import load_data

DB_URL_TEMPLATE = "postgresql://postgres@127.0.0.1:5432/crm_drill_{customers}"


def _crm(url, *args):
    """Run `flask --app wsgi crm ...` against `url`; return (seconds, output)."""
    flask = os.path.join(os.path.dirname(sys.executable), "flask")
    started = time.monotonic()
    result = subprocess.run([flask, "--app", "wsgi", "crm", *args], cwd=load_data.ROOT, env=load_data.app_env(url),
                            capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"crm {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout.strip().splitlines()[-1]


def _size(path):
    return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def drill(url, customers, reps, out_dir):
    """Load, back up, drop, restore; return the figures."""
    name = url.rsplit("/", 1)[1]
    t0 = time.monotonic()
    load_data.recreate_database(url)
    load_data.migrate_and_create_users(url, reps)
    load_data.load(url, customers, reps)
    loaded = time.monotonic() - t0
    backup_seconds, line = _crm(url, "backup", "--out", out_dir)
    path = line.split("Backup written: ", 1)[1].split(" ", 1)[0]
    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    import psycopg

    with psycopg.connect(load_data.admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    restore_seconds, restored = _crm(url, "restore", path)
    return {
        "customers": manifest["tables"]["customers"],
        "rows": sum(manifest["tables"].values()),
        "load_seconds": round(loaded, 1),
        "backup_seconds": round(backup_seconds, 1),
        "restore_seconds": round(restore_seconds, 1),
        "dump_bytes": manifest["dump"]["bytes"],
        "backup_dir_bytes": _size(path),
        "restore_said": restored,
    }


def main(argv=None):
    """Command line: run the drill and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=20, help="Sales users")
    parser.add_argument("--db-url", default=None, help="default crm_drill_<customers> (dropped and recreated)")
    parser.add_argument("--keep", action="store_true", help="keep the backup directory and the database")
    args = parser.parse_args(argv)
    url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    out_dir = tempfile.mkdtemp(prefix="crm-drill-")
    try:
        figures = drill(url, args.customers, args.reps, out_dir)
    finally:
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    if not args.keep:
        import psycopg

        with psycopg.connect(load_data.admin_url(url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    mib = figures["backup_dir_bytes"] / 2**20
    print(f"{figures['customers']:,} customers ({figures['rows']:,} rows): backup {figures['backup_seconds']}s, "
          f"restore {figures['restore_seconds']}s, {mib:.1f} MiB")


if __name__ == "__main__":
    main()
