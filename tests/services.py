"""Start (or find) the real services the tests need: PostgreSQL and Redis.

Each is used when reachable, started when installed but stopped, and otherwise the
run stops with a message saying what is missing.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import psycopg


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


def server_url(url, dbname):
    """Return `url` (a PostgreSQL URL) pointing at database `dbname` on the same server."""
    base, _, _ = url.replace("+psycopg", "").rpartition("/")
    return f"{base}/{dbname}"


def create_database(url, name):
    """Create database `name` on the server of `url`; return its URL."""
    with psycopg.connect(server_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url(url, name)


def drop_database(url, name):
    """Drop database `name` on the server of `url`, disconnecting whoever is still on it."""
    with psycopg.connect(server_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port():
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """A server process on a fixed port that a test may stop, kill and start again."""

    def __init__(self, name, argv, port, log_path):
        self.name, self.argv, self.port, self.log_path = name, argv, port, log_path
        self.proc = None

    def start(self):
        """Start the process and wait for its port."""
        self.proc = subprocess.Popen(
            self.argv, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        if not wait_port("127.0.0.1", self.port, 20):
            raise RuntimeError(f"{self.name} did not open port {self.port}; see {self.log_path}")
        return self

    def pause(self):
        """Freeze the process (SIGSTOP): clients time out, its data survives (a network partition)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        """Unfreeze the process (SIGCONT)."""
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, sig=signal.SIGTERM):
        """Stop the process (SIGTERM, or the signal given) and wait for it."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
