"""ABAB in one run: the same rows on two or more servers, alternating, on one database and one Redis.

    python -m bench.ab --customers 100000 --variant this= --variant main=/path/to/checkout \
        [--variant nowsgi=:CACHE_WSGI_HITS=0] [--rounds 2] [--duration 8]

A variant is NAME=ROOT[:ENV=VALUE,...]: the checkout whose code gunicorn serves (empty: this
one) and extra environment. Every variant runs each row once per round, in turn (A B A B),
so the shared machine's drift falls on all of them alike. For each row the median over
rounds of req/s and p99 is printed, the cached rows also as a ratio to the hello route
measured beside them. Rows: bench/run.py's endpoint table (API_PATHS) plus /api/v1
(V1_PATHS) and /health.
"""

import argparse
import json
import os
import statistics
import sys

from bench.load_data import DB_URL_TEMPLATE
from bench.run import API_PATHS, ROOT, V1_PATHS, Server, check_once, cleanup, login, start_redis, wrk

CACHED_ROWS = ("customers_page1", "dashboard", "v1_customers", "v1_customers_info")
UNCACHED_ROWS = ("customers_page1", "customers_page200", "customer_search", "dashboard", "overdue_tasks")


def parse_variant(text):
    """NAME=ROOT[:ENV=VALUE,...] -> (name, root, env)."""
    name, _, rest = text.partition("=")
    root, _, envs = rest.partition(":")
    env = dict(pair.split("=", 1) for pair in envs.split(",") if pair)
    return name, os.path.abspath(root) if root else ROOT, env


def measure(server, rows, tokens, duration, connections, threads, cached):
    """{row: wrk result} for `rows` on `server` (each warmed first), plus hello beside the cached ones."""
    paths = {**API_PATHS, **V1_PATHS}
    out = {}
    for name in rows:
        method, path, user, body = paths[name]
        token = tokens.get(user) if user else None
        check_once(server.base, method, path, token, body)
        wrk(server.base, method, path, token, body, 2, connections, threads)
        if cached:
            out[f"hello@{name}"] = wrk(server.base, "GET", "/bench/hello", None, None, duration, connections, threads)
        conns = 2 if name == "login_c2" else connections
        out[name] = wrk(server.base, method, path, token, body, duration, conns, min(threads, conns))
    return out


def main(argv=None):
    """Run the variants in turn and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--variant", action="append", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--cached", default=",".join(CACHED_ROWS))
    parser.add_argument("--uncached", default=",".join(UNCACHED_ROWS) + ",login_c2")
    parser.add_argument("--db-url", default=None)
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    db_url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    redis_proc, redis_url = start_redis()
    results = {name: {} for name, _root, _env in variants}
    from datetime import datetime, timezone

    started = datetime.now(timezone.utc)
    try:
        for _round in range(args.rounds):
            for mode, rows in (("cached", args.cached), ("uncached", args.uncached)):
                rows = [r for r in rows.split(",") if r]
                for name, root, env in variants:
                    server = Server(db_url, redis_url, mode == "cached", args.workers, root=root, extra_env=env)
                    try:
                        tokens = {u: login(server.base, "api", f"{u}@bench.example") for u in ("manager", "sales1")}
                        got = measure(server, rows, tokens, args.duration, args.connections, args.threads, mode == "cached")
                    finally:
                        server.stop()
                    for row, res in got.items():
                        results[name].setdefault(f"{mode}:{row}", []).append(res)
                        print(f"{name:8} {mode:8} {row:28} {res['rps']:8.1f} req/s  p99 {res['p99_ms']:7.1f} ms", flush=True)
    finally:
        redis_proc.kill()
        redis_proc.wait()
        cleanup(db_url, started)
    print(json.dumps(summary(results), indent=1, ensure_ascii=False))
    out = os.path.join(ROOT, "bench", "results", f"ab-{started.strftime('%Y%m%dT%H%M%S')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump({"raw": results, "summary": summary(results)}, fh, indent=1)
    print(f"Saved {out}", file=sys.stderr)


def summary(results):
    """{variant: {row: {rps, p99_ms, ratio_to_hello}}}: medians over the rounds."""
    out = {}
    for name, rows in results.items():
        table = {}
        for key, runs in rows.items():
            if "hello@" in key:
                continue
            cell = {"rps": statistics.median(r["rps"] for r in runs), "p99_ms": statistics.median(r["p99_ms"] for r in runs)}
            hello = rows.get(key.replace(":", ":hello@", 1))
            if hello:
                cell["ratio_to_hello"] = round(statistics.median(r["rps"] / h["rps"] for r, h in zip(runs, hello)), 3)
            table[key] = cell
        out[name] = table
    return out


if __name__ == "__main__":
    main()
