"""What the dashboard counters' hour keys (migration e4b7a1c9d2f6) cost a write, in one window.

    python -m bench.counters_ab --customers 1000000 [--rounds 3] [--inserts 1000]

Each customer, meeting and open task is counted under four keys (total, month, day, hour);
before that revision under three. In transactions that are rolled back, this times N
single-row INSERTs of a customer and of an open task with the trigger functions as they
are, then with the same functions minus the hour key (same table, same statements),
alternating (ABAB), and prints milliseconds per insert and the ratio of each round. The
machine's speed drifts; the ratio within a round is what to quote.
"""

import argparse
import importlib.util
import time
import uuid
from pathlib import Path

import psycopg

from bench.load_data import DB_URL_TEMPLATE, SEARCH_WORD

MIGRATION = Path(__file__).resolve().parent.parent / "migrations" / "versions" / "e4b7a1c9d2f6_hour_buckets_for_the_dashboard_counters.py"


def migration():
    """The hour-bucket migration's module (its trigger functions' SQL)."""
    spec = importlib.util.spec_from_file_location("hour_buckets_e4b7a1c9d2f6", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without_hour(sql, module):
    """`sql` with each keys() VALUES list's hour row removed: three keys per row, as before."""
    for status in {s for *_, s, _ in module.SOURCES.values()}:
        hour_row = f", ('hour', t.d, t.h, {status})"
        assert hour_row in sql or status not in sql, status
        sql = sql.replace(hour_row, "")
    return sql


def insert_ms(conn, count, functions):
    """Milliseconds per INSERT (a customer, then an open task) with `functions` installed; rolled back."""
    for sql in functions:
        conn.execute(sql)
    owner = conn.execute("SELECT id FROM ab_user ORDER BY id LIMIT 1").fetchone()[0]
    start = time.perf_counter()
    for i in range(count):
        conn.execute(
            "INSERT INTO customers (id, name, assigned_sales_id, created_by_id, risk_tolerance, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, 5, now() - %s * interval '1 hour', now())",
            (str(uuid.uuid4()), f"{SEARCH_WORD}計数{i}", owner, owner, i % 48),
        )
        conn.execute(
            "INSERT INTO tasks (id, user_id, created_by_id, title, status, priority, due_date, created_at, updated_at)"
            " VALUES (%s, %s, %s, '電話', 'TODO', 'MEDIUM', now() + %s * interval '1 hour', now(), now())",
            (str(uuid.uuid4()), owner, owner, i % 48),
        )
    elapsed = time.perf_counter() - start
    conn.rollback()
    return elapsed / (2 * count) * 1000


def main():
    """Print ms per insert with and without the hour key, round by round."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--db-url")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inserts", type=int, default=1000)
    args = parser.parse_args()
    module = migration()
    hours = [module.trigger_function(t) for t in ("customers", "tasks")]
    days = [without_hour(sql, module) for sql in hours]
    assert days != hours
    url = (args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)).replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn:
        print(f"{args.customers} customers; ms per insert (customer and open task), {args.inserts} of each")
        for n in range(args.rounds):
            four, three = insert_ms(conn, args.inserts, hours), insert_ms(conn, args.inserts, days)
            print(f"round {n + 1}: four keys (hour) {four:6.3f}   three keys (before) {three:6.3f}   ratio {four / three:5.2f}")


if __name__ == "__main__":
    main()
