"""app/sentry.py: the real SDK reports to a local HTTP endpoint; the envelope has the tags and none of the secrets or contact data.

A ThreadingHTTPServer on a free loopback port stands in for Sentry's ingest (the DSN's
host); the app raises in a route added for the test, and a consumer-style error line is
logged inside an event's context. After `flush` the test reads what arrived on the socket.
"""

import gzip
import json
import logging
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app import logs

SECRETS = ("taro@example.jp", "hanako.yamada@example.co.jp", "090-1234-5678", "03-5555-0123", "sekret-token-xyz",
           "cookie-value-abc", "hunter2-password", "東京都千代田区1-1")


class Ingest(BaseHTTPRequestHandler):
    """Keeps every envelope POSTed to it (decompressed), answers 200."""

    received = []

    def do_POST(self):
        """Store the body, as the SDK sent it, decompressed."""
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding == "br":
            import brotli

            body = brotli.decompress(body)
        self.received.append((self.path, body.decode("utf-8")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args):
        """Quiet."""


@pytest.fixture()
def ingest():
    """A local HTTP endpoint on a real socket; yields (dsn, received bodies)."""
    Ingest.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://publickey@127.0.0.1:{server.server_address[1]}/42", Ingest.received
    import sentry_sdk

    sentry_sdk.get_client().close(timeout=2)
    # Later tests' apps report nowhere, and no integration (SQLAlchemy's would wrap every query) is added.
    sentry_sdk.init(dsn=None, default_integrations=False, auto_enabling_integrations=False)
    server.shutdown()
    server.server_close()


def events_in(received):
    """Every event item of the envelopes received: (envelope path, event dict)."""
    found = []
    for path, body in received:
        lines = body.split("\n")
        for i, line in enumerate(lines[1:], start=1):
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict) and item.get("type") == "event" and i + 1 < len(lines):
                found.append((path, json.loads(lines[i + 1])))
    return found


def test_an_error_reaches_the_endpoint_tagged_and_scrubbed(config_class, ingest):
    """A 500 and a consumer's error line: release, environment, request id / event tags; no password, token, cookie, e-mail, phone or address."""
    import sentry_sdk

    from app import create_app

    dsn, received = ingest
    app = create_app(type("SentryConfig", (config_class,), {
        "SENTRY_DSN": dsn, "SENTRY_RELEASE": "crm@test-release-1", "SENTRY_ENVIRONMENT": "sentry-test",
        "PROPAGATE_EXCEPTIONS": False,
    }))

    def explode():
        customer = {"email": SECRETS[0], "phone": SECRETS[2], "address": SECRETS[7]}  # a local the SDK must not send
        raise RuntimeError(f"could not save {customer['email']} ({customer['phone']}) with password={SECRETS[6]}")

    app.add_url_rule("/test-sentry-boom", "test_sentry_boom", explode)
    rid = f"sentry-{uuid.uuid4().hex[:12]}"
    resp = app.test_client().get(
        f"/test-sentry-boom?email={SECRETS[1]}&tel={SECRETS[3]}",
        headers={"X-Request-ID": rid, "Authorization": f"Bearer {SECRETS[4]}", "Cookie": f"session={SECRETS[5]}"},
        buffered=True,  # closed, so its request line is written and its id leaves the context
    )
    assert resp.status_code == 500 and resp.headers["X-Request-ID"] == rid

    event_id = str(uuid.uuid4())
    with logs.event_context(event_id, "TASK_CREATED"):
        logging.getLogger("workers.consumer").error("Reaction to TASK_CREATED failed for %s, phone %s", SECRETS[1], SECRETS[3])
    sentry_sdk.flush(timeout=10)

    assert received and all(path == "/api/42/envelope/" for path, _body in received)
    raw = "\n".join(body for _path, body in received)
    leaked = [s for s in SECRETS if s in raw]
    assert leaked == [], leaked
    events = [event for _path, event in events_in(received)]
    (crash,) = [e for e in events if e.get("exception", {}).get("values", [{}])[-1].get("type") == "RuntimeError"]
    assert crash["release"] == "crm@test-release-1" and crash["environment"] == "sentry-test"
    assert crash["tags"]["request_id"] == rid
    assert crash["request"]["headers"]["Authorization"] == "[Filtered]"
    assert "[email]" in crash["exception"]["values"][-1]["value"] and "[phone]" in crash["exception"]["values"][-1]["value"]
    assert all("vars" not in frame for frame in crash["exception"]["values"][-1]["stacktrace"]["frames"])
    (line,) = [e for e in events if e.get("logger") == "workers.consumer"]
    assert (line["tags"]["event_id"], line["tags"]["event_type"]) == (event_id, "TASK_CREATED")
    assert "request_id" not in line["tags"] and line["level"] == "error"


def test_no_dsn_no_sdk(app):
    """Without SENTRY_DSN (the test config has none) no client is started: nothing is sent anywhere."""
    import sentry_sdk

    from app import sentry

    assert app.config["SENTRY_DSN"] == "" and sentry.install(app.config) is False
    assert not sentry_sdk.get_client().dsn


def test_a_failing_rq_job_is_reported_from_the_worker(config_class, ingest, redis_url):
    """The worker's side (rq 3 with the SDK's RQ integration): a job that raises arrives as an event naming the job; the worker goes on."""
    import redis
    import sentry_sdk
    from rq import Queue, SimpleWorker

    from app import create_app

    dsn, received = ingest
    create_app(type("SentryWorkerConfig", (config_class,), {"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "sentry-test"}))
    conn = redis.Redis.from_url(redis_url)
    queue = Queue(f"sentry-{uuid.uuid4().hex[:8]}", connection=conn)
    try:
        failing = queue.enqueue("json.loads", f"not json, mail {SECRETS[0]}")
        fine = queue.enqueue("os.getpid")
        SimpleWorker([queue], connection=conn).work(burst=True)
        assert fine.get_status(refresh=True) == "finished" and failing.get_status(refresh=True) == "failed"
    finally:
        queue.delete(delete_jobs=True)
    sentry_sdk.flush(timeout=10)
    raw = "\n".join(body for _path, body in received)
    assert SECRETS[0] not in raw
    events = [event for _path, event in events_in(received)]
    (job_event,) = [e for e in events if e.get("exception", {}).get("values", [{}])[-1].get("type") == "JSONDecodeError"]
    assert job_event["extra"]["rq-job"]["job_id"] == failing.id and job_event["environment"] == "sentry-test"
