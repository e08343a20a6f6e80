"""What app/requestlog.py adds to one request: its WSGI layer and the JSON (or text) line, in one process.

    python -m bench.requestlog_cost [--requests 20000] [--format json|text]

A bare WSGI app answering 200 is called through werkzeug's test client's `run_wsgi_app`
with and without `requestlog.Middleware`, the line written by app/logs.py's handler to
/dev/null; the median of 5 rounds, microseconds per request. The rest of a request (Flask,
Redis, the database) is not here: compare with bench.inproc's milliseconds.
"""

import argparse
import os
import statistics
import time

from werkzeug.test import EnvironBuilder, run_wsgi_app


def bare(environ, start_response):
    """The cheapest WSGI answer."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def per_request_us(app, requests):
    """Median microseconds per request of `app` over 5 rounds of `requests` calls."""
    environ = EnvironBuilder("/api/customers", headers={"X-Request-ID": "bench-1"}).get_environ()
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(requests):
            body, _status, _headers = run_wsgi_app(app, dict(environ), buffered=True)
        rounds.append((time.perf_counter() - start) / requests * 1e6)
    return statistics.median(rounds)


def main():
    """Print the bare app's cost, the wrapped one's, and the difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--format", choices=("json", "text"), default="json")
    args = parser.parse_args()
    from app import logs, requestlog

    with open(os.devnull, "w", encoding="utf-8") as sink:
        logs.configure({"LOG_FORMAT": args.format, "LOG_LEVEL": "INFO"}, stream=sink)
        base = per_request_us(bare, args.requests)
        wrapped = per_request_us(requestlog.Middleware(bare), args.requests)
    print(f"bare WSGI app: {base:.1f} us/request")
    print(f"with requestlog ({args.format} line): {wrapped:.1f} us/request (+{wrapped - base:.1f} us)")


if __name__ == "__main__":
    main()
