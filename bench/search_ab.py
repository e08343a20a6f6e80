"""Customer search before and after search_text (migration c5d8e1f3a7b2), in one window.

    python -m bench.search_ab --customers 1000000 [--rounds 3] [--repeat 60] [--inserts 2000]

Records the statement `/api/customers?search=テック` sends (as bench.plans does), and a
copy of it with the search written as before, name OR email OR phone ILIKE. Then, in
one transaction that is rolled back, with phone's trigram index rebuilt as it was, runs
the two prepared on one connection in alternation (ABAB) and prints the median
milliseconds per statement of each round. The machine's speed drifts; the ratio within a
round is what to quote. `--inserts N`: also what the column and its index cost a write,
N single-row inserts of a customer with either schema, each in a rolled-back transaction.
"""

import argparse
import statistics
import time
import uuid

import psycopg
import sqlalchemy as sa

from bench.inproc import app_arguments, build_client
from bench.load_data import DB_URL_TEMPLATE, SEARCH_WORD
from bench.plans import recorded_statements
from bench.run import API_PATHS

NEW = "customers.search_text LIKE lower(%(f_search)s) ESCAPE '\\'"
OLD = ("(customers.name ILIKE %(f_search)s ESCAPE '\\' OR customers.email ILIKE %(f_search)s ESCAPE '\\'"
       " OR customers.phone ILIKE %(f_search)s ESCAPE '\\')")


def median_ms(conn, sql, params, repeat):
    """Median milliseconds of `sql` run prepared `repeat` times (the first eighth left out)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        conn.execute(sql, params, prepare=True).fetchall()
        times.append(time.perf_counter() - start)
    return statistics.median(times[repeat // 8 :]) * 1000


def insert_ms(conn, count, before):
    """Milliseconds per single-row customer INSERT, with the schema as it is or as it was `before` (rolled back)."""
    if before:
        conn.execute("DROP INDEX ix_customers_search_trgm")
        conn.execute("ALTER TABLE customers DROP COLUMN search_text")
        conn.execute("CREATE INDEX ix_customers_phone_trgm ON customers USING gin (phone gin_trgm_ops) WITH (fastupdate = off)")
    start = time.perf_counter()
    for i in range(count):
        conn.execute(
            "INSERT INTO customers (id, name, email, phone, risk_tolerance, created_at, updated_at) VALUES (%s, %s, %s, %s, 5, now(), now())",
            (str(uuid.uuid4()), f"株式会社{SEARCH_WORD}ベンチ{i}", f"ab{uuid.uuid4().hex[:10]}@bench.example.jp", f"03-{i % 10000:04d}-{i // 10000:04d}"),
        )
    elapsed = time.perf_counter() - start
    conn.rollback()
    return elapsed / count * 1000


def main():
    """Print the new and the old search statement's cost, round by round."""
    parser = app_arguments(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--inserts", type=int, default=0, help="also time this many inserts with each schema")
    args = parser.parse_args()
    db_url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    client, headers = build_client(db_url, args.redis_url, cached=False)
    [(new, params)] = recorded_statements(client, headers, API_PATHS["customer_search"][1])
    assert new.count(NEW) == 2 and params == {"f_search": f"%{SEARCH_WORD}%"}, (new, params)
    old = new.replace(NEW, OLD)
    url = sa.engine.make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE INDEX ix_customers_phone_trgm ON customers USING gin (phone gin_trgm_ops) WITH (fastupdate = off)")
        conn.execute("ANALYZE customers")
        print(f"{args.customers} customers; ms per statement, median of {args.repeat}")
        for n in range(args.rounds):
            one, three = median_ms(conn, new, params, args.repeat), median_ms(conn, old, params, args.repeat)
            print(f"round {n + 1}: one LIKE on search_text {one:7.2f}   three ILIKEs {three:7.2f}   ratio {three / one:5.1f}")
        conn.rollback()
        for n in range(args.rounds if args.inserts else 0):
            now, was = insert_ms(conn, args.inserts, before=False), insert_ms(conn, args.inserts, before=True)
            print(f"round {n + 1}: ms per insert with search_text {now:6.3f}   as before {was:6.3f}   ratio {now / was:5.2f}")


if __name__ == "__main__":
    main()
