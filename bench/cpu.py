"""CPU per request of each process (gunicorn, PostgreSQL, Redis, wrk) during one wrk cell.

    python -m bench.cpu --customers 100000 [--endpoint customers_page200] [--cached] [--duration 10]

Starts the uncached (or `--cached`) server as bench.run does, warms the endpoint up for 2 s,
then runs one wrk cell at 16 connections and reads every process's user and system CPU
time from /proc before and after: milliseconds of CPU per request for the app's workers,
PostgreSQL's backends, Redis and wrk. Requests per second on this shared machine move
±25 % between runs; where a request's CPU goes moves much less (PostgreSQL's share of an
uncached page, for instance).
"""

import argparse
import collections
import os
import resource
import time
from datetime import datetime, timezone

from bench.load_data import DB_URL_TEMPLATE
from bench.run import API_PATHS, Server, cleanup, login, start_redis, wrk

TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_group():
    """{"<group> user"/"<group> sys": seconds} over the running processes, grouped by program."""
    out = collections.Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        group = "gunicorn" if "gunicorn" in cmd else "postgres" if comm.startswith("postgres") else "redis" if "redis" in comm else "other"
        out[group + " user"] += int(fields[11]) / TICK
        out[group + " sys"] += int(fields[12]) / TICK
    return out


def main():
    """Run one cell and print the CPU per request of each process group."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--endpoint", default="customers_page1", choices=sorted(API_PATHS))
    parser.add_argument("--cached", action="store_true")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    args = parser.parse_args()
    method, path, user, body = API_PATHS[args.endpoint]
    db_url = DB_URL_TEMPLATE.format(customers=args.customers)
    since = datetime.now(timezone.utc)
    redis_proc, redis_url = start_redis()
    server = Server(db_url, redis_url, args.cached, args.workers)
    try:
        token = login(server.base, "api", f"{user}@bench.example") if user else None
        wrk(server.base, method, path, token, body, 2, args.connections, 2)
        before, children, started = cpu_by_group(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
        result = wrk(server.base, method, path, token, body, args.duration, args.connections, 2)
        after, children_after, elapsed = cpu_by_group(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - started
    finally:
        server.stop()
        redis_proc.kill()
        redis_proc.wait()
        # A create cell's customers would sit at the top of every newest-first list of later runs.
        cleanup(db_url, since)
    # wrk has exited by now: its time is in this process's children.
    after["wrk user"] = before["wrk user"] + children_after.ru_utime - children.ru_utime
    after["wrk sys"] = before["wrk sys"] + children_after.ru_stime - children.ru_stime
    n = result["requests"]
    print(f"{args.endpoint} ({'cached' if args.cached else 'uncached'}), {args.customers} customers: "
          f"{result['rps']:.0f} req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    for key in sorted(after, key=lambda k: before.get(k, 0) - after[k]):
        spent = after[key] - before.get(key, 0)
        if spent > 0.05:
            print(f"  {key:14s} {spent / elapsed * 100:6.1f} % of one core   {spent / n * 1000:6.3f} ms per request")


if __name__ == "__main__":
    main()
