"""Start (or find) the real services the tests need: PostgreSQL and Redis.

Each is used when reachable, started when installed but stopped, and otherwise the
run stops with a message saying what is missing.
"""

import glob
import os
import shutil
import socket
import subprocess
import time
from urllib.parse import urlsplit


def port_open(host, port, timeout=0.5):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host, port, seconds=20):
    """Wait until host:port accepts connections; return whether it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return True
        time.sleep(0.2)
    return False


def ensure_postgres(url):
    """Make sure the PostgreSQL server of `url` answers; return an error text or None."""
    parts = urlsplit(url.replace("+psycopg", ""))
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if port_open(host, port):
        return None
    if host in ("127.0.0.1", "localhost") and shutil.which("pg_ctlcluster"):
        versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
        if versions:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                check=False,
                capture_output=True,
            )
            if wait_port(host, port):
                return None
    return (
        f"PostgreSQL is not reachable at {host}:{port} and could not be started here. "
        "Install and start it (Debian: apt-get install postgresql) or set TEST_DATABASE_URL."
    )


def ensure_redis(url):
    """Make sure the Redis server of `url` answers; return an error text or None."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    if port_open(host, port):
        return None
    if host in ("127.0.0.1", "localhost") and shutil.which("redis-server"):
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--port", str(port), "--save", "", "--appendonly", "no"],
            check=False,
            capture_output=True,
        )
        if wait_port(host, port):
            return None
    return (
        f"Redis is not reachable at {host}:{port} and could not be started here. "
        "Install it (Debian: apt-get install redis-server) or set REDIS_URL."
    )
