"""The SQL of each /api read as PostgreSQL runs it: milliseconds per statement and how it is planned.

    python -m bench.plans --customers 100000 [--only customers_page1,customers_page200] [--repeat 400] [--explain]

For each read endpoint this records the statements one request sends (the production app
through Flask's test client, answer cache off, as bench.inproc), then executes them
prepared on one psycopg connection `--repeat` times and prints the median per request
and PostgreSQL's count of generic and custom plans for them (`pg_prepared_statements`).
A statement that keeps getting custom plans is planned anew on every execution (a LIMIT
or OFFSET sent as a parameter does that: app/rawsql.py). Run it in a worktree of an older
commit for the figures before a change.
"""

import argparse
import statistics
import time

import psycopg
import sqlalchemy as sa

from bench.inproc import READS, app_arguments, build_client
from bench.load_data import DB_URL_TEMPLATE
from bench.run import API_PATHS


def recorded_statements(client, headers, path):
    """The (SQL, parameters) the app executes for one GET of `path` once warmed up."""
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, dict(parameters) if parameters else None))

    for _ in range(3):  # statements built, estimates remembered: what every later request sends
        assert client.get(path, headers=headers).status_code == 200, path
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        client.get(path, headers=headers)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    return seen


def time_prepared(url, statements, repeat):
    """(median ms per run of `statements`, generic plans, custom plans) on one prepared-statement connection."""
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            for sql, params in statements:
                conn.execute(sql, params, prepare=True).fetchall()
            times.append(time.perf_counter() - start)
        generic, custom = conn.execute("SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) FROM pg_prepared_statements").fetchone()
    return statistics.median(times[repeat // 8 :]) * 1000, int(generic), int(custom)


def explain(url, statements):
    """PostgreSQL's EXPLAIN ANALYZE of each statement, run once with its parameters, as text."""
    with psycopg.connect(url, autocommit=True) as conn:
        return "\n\n".join(
            "\n".join(row[0] for row in conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)) for sql, params in statements
        )


def main():
    """Print, per read endpoint, its statements' cost and plans."""
    parser = app_arguments(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--only", default="", help="comma-separated endpoint names")
    parser.add_argument("--repeat", type=int, default=400)
    parser.add_argument("--explain", action="store_true", help="also print each statement's EXPLAIN ANALYZE")
    args = parser.parse_args()
    db_url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    client, headers = build_client(db_url, args.redis_url, cached=False)
    url = sa.engine.make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    names = [n for n in args.only.split(",") if n] or READS
    print(f"{args.customers} customers; statements of one request, prepared, {args.repeat} runs")
    for name in names:
        statements = recorded_statements(client, headers, API_PATHS[name][1])
        ms, generic, custom = time_prepared(url, statements, args.repeat)
        print(f"{name:20s} {len(statements)} statement(s)  median {ms:6.3f} ms   plans: {generic} generic, {custom} custom")
        if args.explain:
            print(explain(url, statements))


if __name__ == "__main__":
    main()
