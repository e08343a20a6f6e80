"""Attachment uploads end to end: seconds per file and the web process's memory, local folder and S3.

    python -m bench.attachments [--mb 20] [--files 5] [--storage local|s3|both] [--db-url URL]

Recreates the database (default crm_bench_attachments), migrates it (`crm init`), creates a
Sales rep, then per storage starts the app as its own process (`flask run`, no reloader)
— against a fresh folder, or a bucket on `moto_server` started here as another process —
and POSTs `--files` files of `--mb` MiB to `/api/customers/<id>/attachments` from this
process, streamed from disk. It prints the median seconds per upload and MB/s, and the web
process's resident memory before the uploads and its peak before and after them (VmRSS,
VmHWM of /proc/<pid>/status): the upload is spooled to disk as it arrives and copied to the storage
in chunks, so the peak should not grow with the file's size. Only the median is quoted:
the machine is shared and the wall times are noisy.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests

from bench.load_data import app_env, recreate_database
from bench.run import free_port, wait_http

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/crm_bench_attachments"
REP = ("sales-attach@bench.example", "bench-pass-2026")



def memory_mb(pid):
    """(VmRSS, VmHWM) of process `pid` in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def prepare(url):
    """Recreate and migrate the database, create the Sales rep."""
    recreate_database(url)
    env = app_env(url)
    flask = [sys.executable, "-m", "flask", "--app", "wsgi", "crm"]
    subprocess.run([*flask, "init"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([*flask, "create-user", "--email", REP[0], "--name", "添付 担当", "--role", "Sales", "--password", REP[1]],
                   cwd=ROOT, env=env, check=True, capture_output=True)


def start_moto(workdir):
    """moto_server on a free port: (process, endpoint URL)."""
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=open(os.path.join(workdir, "moto.log"), "wb"),
                            stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/")
    return proc, f"http://127.0.0.1:{port}"


def run(url, storage, mb, files, workdir):
    """Upload `files` files of `mb` MiB through a web process on `storage`; return the figures."""
    extra = {"ATTACHMENT_DIR": os.path.join(workdir, f"files-{storage}"), "ATTACHMENT_MAX_MB": str(max(mb + 1, 20)),
             "RATELIMIT_ENABLED": "0"}
    moto = None
    if storage == "s3":
        import boto3

        moto, endpoint = start_moto(workdir)
        extra.update(S3_BUCKET="bench-attachments", S3_ENDPOINT_URL=endpoint, S3_REGION="us-east-1",
                     AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                     aws_secret_access_key="bench").create_bucket(Bucket="bench-attachments")
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "run", "--no-reload", "--no-debugger", "-p", str(port)],
                           cwd=ROOT, env=app_env(url, **extra), stdout=open(os.path.join(workdir, f"web-{storage}.log"), "wb"),
                           stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health")
        token = requests.post(f"{base}/api/auth/login", json={"email": REP[0], "password": REP[1]}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        customer = requests.post(f"{base}/api/customers", json={"name": f"株式会社添付計測{storage}"}, headers=headers).json()["id"]
        target = f"{base}/api/customers/{customer}/attachments"
        path = os.path.join(workdir, "proposal.pdf")
        with open(path, "wb") as fh:
            fh.write(b"%PDF-1.4\n")
            fh.write(os.urandom(mb * 1024 * 1024 - 9))
        warm = requests.post(target, headers=headers, files={"file": ("warm.pdf", b"%PDF-1.4 warm")})
        assert warm.status_code == 201, warm.text
        rss_before, peak_before = memory_mb(web.pid)
        seconds = []
        for i in range(files):
            with open(path, "rb") as fh:
                t0 = time.perf_counter()
                resp = requests.post(target, headers=headers, files={"file": (f"proposal-{i}.pdf", fh, "application/pdf")})
                seconds.append(time.perf_counter() - t0)
            assert resp.status_code == 201, resp.text
        rss_after, peak = memory_mb(web.pid)
        median = statistics.median(seconds)
        return {"storage": storage, "mb": mb, "files": files, "median_s": round(median, 3), "mb_per_s": round(mb / median, 1),
                "rss_before_mb": round(rss_before, 1), "peak_before_mb": round(peak_before, 1), "rss_after_mb": round(rss_after, 1),
                "peak_rss_mb": round(peak, 1)}
    finally:
        web.terminate()
        web.wait(10)
        if moto is not None:
            moto.terminate()
            moto.wait(10)


def main():
    """Parse the arguments, prepare the database, run each storage, print one JSON line per storage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--files", type=int, default=5)
    parser.add_argument("--storage", choices=("local", "s3", "both"), default="both")
    parser.add_argument("--db-url", default=DEFAULT_URL)
    args = parser.parse_args()
    prepare(args.db_url)
    workdir = tempfile.mkdtemp(prefix="crm-bench-attach-")
    try:
        for storage in (("local", "s3") if args.storage == "both" else (args.storage,)):
            print(json.dumps(run(args.db_url, storage, args.mb, args.files, workdir)), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
