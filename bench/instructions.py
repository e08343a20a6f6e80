"""Python instructions per /api read, counted by valgrind (repeatable on a noisy machine).

    python -m bench.instructions --customers 100000 [--requests 200] [--only customers_page1,hello]

Requests per second on this shared 2-core machine move ±30 % between runs of the same
code, so a change of 10-20 % in the cost of a request cannot be read off `bench.run`.
`valgrind --tool=callgrind` counts the instructions a process executes, which do not
depend on what else the machine is doing. For each endpoint this runs `bench.inproc`'s
client (production app, answer cache off unless `--cached`) under callgrind twice, with 0
and with `--requests` requests after the same warm-up, and prints the difference per
request: the app's own CPU work per request (not PostgreSQL's or Redis's, which run in
their own processes). Each run takes a minute or two (the app starts ~50× slower under
valgrind); runs go in parallel, one per core.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from bench.inproc import READS as API_READS
from bench.inproc import app_arguments
from bench.load_data import DB_URL_TEMPLATE
from bench.run import API_PATHS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READS = ["hello", *API_READS]
WARMUP = 20


def child(name, requests, db_url, redis_url, cached):
    """Inside valgrind: build the app, warm every read up, then run `requests` requests of `name`."""
    from bench.inproc import build_client  # imports the app: only in the child

    client, headers = build_client(db_url, redis_url, cached)
    # The same warm-up in every run (statements compiled, memos filled), so the run with 0
    # requests is the baseline of every endpoint.
    for read in READS:
        for _ in range(WARMUP):
            assert client.get(API_PATHS[read][1], headers=headers).status_code == 200, read
    path = API_PATHS.get(name, (None, None))[1]
    for _ in range(requests):
        client.get(path, headers=headers)


def count(name, requests, args):
    """Instructions callgrind counted for one child run."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
            sys.executable, "-m", "bench.instructions", "--child", name, "--requests", str(requests),
            "--db-url", args.db_url, "--redis-url", args.redis_url, *(["--cached"] if args.cached else []),
        ]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found:
        raise SystemExit(f"{name}: valgrind run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main():
    """Print instructions per request for each read endpoint."""
    parser = app_arguments(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--only", help="comma-separated endpoint names (default: hello and every read)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.db_url = args.db_url or DB_URL_TEMPLATE.format(customers=args.customers)
    if args.child:
        return child(args.child, args.requests, args.db_url, args.redis_url, args.cached)
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    names = args.only.split(",") if args.only else READS
    started = time.monotonic()
    runs = [("baseline", 0)] + [(name, args.requests) for name in names]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counted = dict(zip(runs, pool.map(lambda run: count(*run, args), runs)))
    base = counted[("baseline", 0)]
    print(f"{args.customers:,} customers, answer cache {'on' if args.cached else 'off'}; "
          f"instructions per request over {args.requests} requests ({time.monotonic() - started:.0f} s)")
    for name in names:
        per_request = (counted[(name, args.requests)] - base) / args.requests
        print(f"{name:20s} {per_request / 1e6:7.2f} M")


if __name__ == "__main__":
    main()
