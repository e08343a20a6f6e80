"""The request-timing layer's cost (app/metrics.RequestMetrics), with and without it, ABAB in one process.

    python -m bench.metrics_ab --customers 10000 [--rounds 6] [--repeat 400]

Builds the production app (bench.app) on a loaded bench database with the answer cache on
and prometheus-client in multiprocess mode (a private PROMETHEUS_MULTIPROC_DIR, as
gunicorn.conf.py gives the web), then times the same GETs through Flask's test client
with the app's outermost WSGI layer as installed ("with") and with the layer it wraps
("without"), in turn, `--rounds` times. Per request it takes this process's CPU time
(time.process_time: not inflated by the other processes of a shared machine, nor by
the wait for Redis) and the wall time, and prints the medians over the rounds.
Rows: the cached customer list and FAB's /api/v1 list (both answered by
app/fastpath.Middleware before Flask) and /bench/hello (Flask's whole dispatch, no cache).
Last, the layer's own cost around a WSGI app that does nothing (the histogram's
memory-mapped write included), which the rows' noise hides.
"""

import argparse
import os
import statistics
import tempfile
import time

from bench.load_data import DB_URL_TEMPLATE
from bench.run import API_PATHS, V1_PATHS

ROWS = {"customers_page1": API_PATHS["customers_page1"][1], "v1_customers": V1_PATHS["v1_customers"][1],
        "hello": "/bench/hello"}


def measure(client, headers, path, repeat):
    """(median CPU µs, median wall µs) of `repeat` GETs of `path`."""
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        resp = client.get(path, headers=headers)
        cpu.append((time.process_time() - c0) * 1e6)
        wall.append((time.perf_counter() - w0) * 1e6)
        assert resp.status_code == 200, (path, resp.status_code)
    return statistics.median(cpu), statistics.median(wall)


def layer_cost(rounds=5, calls=20000):
    """CPU µs the layer adds to one call of a WSGI app that does nothing (median over rounds, ABAB)."""
    from app.metrics import ROUTE_KEY, RequestMetrics

    def bare(environ, start_response):
        start_response("200 OK", [])
        return [b""]

    wrapped = RequestMetrics(bare)
    environ = {"REQUEST_METHOD": "GET", ROUTE_KEY: "/api/customers"}

    def start_response(status, headers, exc_info=None):
        return None

    per = {"bare": [], "wrapped": []}
    for _ in range(rounds):
        for name, fn in (("bare", bare), ("wrapped", wrapped)):
            c0 = time.process_time()
            for _ in range(calls):
                fn(environ, start_response)
            per[name].append((time.process_time() - c0) * 1e6 / calls)
    return statistics.median(per["wrapped"]) - statistics.median(per["bare"])


def main(argv=None):
    """Alternate the two variants and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--db-url")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=400)
    args = parser.parse_args(argv)
    # Before prometheus-client is imported: the web's mode (memory-mapped values).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="crm-metrics-ab-")
    from bench.inproc import build_client

    client, headers = build_client(args.db_url or DB_URL_TEMPLATE.format(customers=args.customers), args.redis_url, True)
    from app.metrics import RequestMetrics
    from bench.app import app

    layer = app.wsgi_app
    assert isinstance(layer, RequestMetrics), "METRICS_ENABLED must be on"
    variants = {"with": layer, "without": layer.wsgi_app}
    for path in ROWS.values():  # warm: the answers cached, statements prepared, children of the histogram made
        for _ in range(20):
            client.get(path, headers=headers)
    got = {(v, row): [] for v in variants for row in ROWS}
    for _round in range(args.rounds):
        for name, wsgi in variants.items():
            app.wsgi_app = wsgi
            for row, path in ROWS.items():
                got[(name, row)].append(measure(client, headers, path, args.repeat))
    app.wsgi_app = layer
    print(f"{args.customers} customers, answer cache on, multiprocess metrics, {args.rounds} rounds x {args.repeat} requests")
    print(f"{'row':18} {'with cpu µs':>12} {'without cpu µs':>15} {'Δ cpu µs':>9} {'Δ %':>6} {'with wall µs':>13} {'without wall µs':>16}")
    for row in ROWS:
        w = [c for c, _ in got[("with", row)]]
        wo = [c for c, _ in got[("without", row)]]
        ww = [x for _, x in got[("with", row)]]
        wow = [x for _, x in got[("without", row)]]
        a, b = statistics.median(w), statistics.median(wo)
        print(f"{row:18} {a:12.0f} {b:15.0f} {a - b:9.0f} {100 * (a - b) / b:6.1f} {statistics.median(ww):13.0f} "
              f"{statistics.median(wow):16.0f}")
    print(f"The layer alone (around a WSGI app that does nothing): {layer_cost():.1f} CPU µs per request")


if __name__ == "__main__":
    main()
