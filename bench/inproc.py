"""Per-request cost of the /api reads inside one process (no HTTP server, no wrk).

    python -m bench.inproc --customers 100000 [--cached] [--repeat 300] [--profile customers_page1]

Builds the production app (bench.app) on a loaded bench database with the answer cache off
(`CACHE_ANSWERS=0`, as the uncached server of bench.run) or on (`--cached`), logs in as the
Manager and times the same GETs as bench.run through Flask's test client: median and p90
milliseconds per request, one process, one core, and the pause of a full garbage
collection before and after `gc.freeze()` (gunicorn.conf.py). `--profile NAME` prints
cProfile's top functions for that endpoint. Used to find where the per-request CPU goes; the figures
under load come from bench.run.
"""

import argparse
import cProfile
import gc
import os
import pstats
import secrets
import statistics
import time

from bench.load_data import DB_URL_TEMPLATE, PASSWORD
from bench.run import API_PATHS, UNREACHED_LIMITS

READS = [name for name, (method, _path, user, _body) in API_PATHS.items() if method == "GET" and user]


def build_client(db_url, redis_url, cached):
    """The production app on `db_url` and a Manager's Authorization header."""
    os.environ.update(
        CRM_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        CACHE_TYPE="RedisCache",
        CACHE_ANSWERS="1" if cached else "0",
        **UNREACHED_LIMITS,
        KAFKA_ENABLED="1",
        FAB_UPDATE_PERMS="0",
        LOG_LEVEL="WARNING",
    )
    from bench.app import app  # built from the environment above

    client = app.test_client()
    answer = client.post("/api/auth/login", json={"email": "manager@bench.example", "password": PASSWORD})
    token = answer.get_json()["token"]
    return client, {"Authorization": f"Bearer {token}"}


def time_path(client, headers, path, repeat):
    """Milliseconds of each of `repeat` GETs of `path` (after ten warm-up requests)."""
    for _ in range(10):
        assert client.get(path, headers=headers).status_code == 200, path
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        client.get(path, headers=headers)
        times.append((time.perf_counter() - start) * 1000)
    return times


def app_arguments(parser):
    """Add the options choosing the bench database, Redis and the answer cache to `parser`."""
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--db-url")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--cached", action="store_true", help="answer cache on (default: off, as the uncached server)")
    return parser


def main():
    """Time each read endpoint in process; optionally profile one."""
    parser = app_arguments(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--profile", choices=READS, help="print cProfile's top functions for this endpoint")
    args = parser.parse_args()
    client, headers = build_client(args.db_url or DB_URL_TEMPLATE.format(customers=args.customers), args.redis_url, args.cached)
    print(f"{args.customers} customers, answer cache {'on' if args.cached else 'off'}, {args.repeat} requests each")
    for name in ["hello", *READS]:
        path = API_PATHS[name][1]
        times = time_path(client, headers if name != "hello" else {}, path, args.repeat)
        deciles = statistics.quantiles(times, n=10)
        print(f"{name:20s} median {statistics.median(times):6.2f} ms   p90 {deciles[-1]:6.2f} ms")
    # What gunicorn.conf.py's gc.freeze() saves: a full collection over the loaded app.
    pauses = []
    for _ in range(2):
        start = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - start) * 1000)
        gc.freeze()
    print(f"full GC collection: {pauses[0]:.1f} ms with {len(gc.get_objects()) + gc.get_freeze_count()} objects, {pauses[1]:.1f} ms after gc.freeze()")
    gc.unfreeze()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        time_path(client, headers, API_PATHS[args.profile][1], args.repeat)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
