"""The notification stream: Server-Sent Events for the navbar bell, on an asyncio loop of its own.

A stream connection stays open for as long as a page is, so it must not take one of the
threads that serve screens. Here one event loop holds every connection (a few KiB each),
apart from gunicorn:
- `crm stream` runs it as its own process (Procfile `stream`, `make up`), hearing the
  reactions of every process through Redis pub/sub (app/live.py);
- without Redis (the embedded default, `make run`'s single web process) the web process
  runs the same loop in one background thread (gunicorn.conf.py) and hears its own
  in-process hub.

GET `STREAM_PATH` (`/notifications/stream`) on `STREAM_PORT` answers `text/event-stream`:
`event: notification` with {"id", "type", "title"} for each new notification of the
caller, and a comment line every `STREAM_HEARTBEAT_SECONDS` (proxies keep idle streams).
The caller is the user of the screens' session cookie (signed with SECRET_KEY, the same
lifetime), active in the database; a connection only ever hears its own user's
notifications (the scope rule of notifications). `STREAM_MAX_PER_USER` streams per user
(tabs) at once, then 429; a stream ends after `STREAM_REAUTH_SECONDS` and the browser's
reconnect is checked again; `STREAM_MAX_CONNECTIONS` in all, then 503. The page and the
stream have the same host on different ports, so answers carry CORS headers for an origin
of the same host (or one listed in `STREAM_ALLOWED_ORIGINS`), with credentials.
"""

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024
AUTH_THREADS = 4


def stream_url(config, request):
    """The URL the browser opens for the stream: STREAM_URL, else this page's host on STREAM_PORT ("" when off)."""
    if not config["STREAM_ENABLED"]:
        return ""
    if config.get("STREAM_URL"):
        return config["STREAM_URL"]
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    return f"{request.scheme}://{host}:{int(config['STREAM_PORT'])}{config['STREAM_PATH']}"


def stream_origin(config, request):
    """The origin of `stream_url` (for the screens' CSP connect-src)."""
    parts = urlsplit(stream_url(config, request))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""


class StreamServer:
    """Every open stream of one process, on one asyncio loop (`start()` runs it in a daemon thread)."""

    def __init__(self, app, host="127.0.0.1", port=None, source=None):
        cfg = app.config
        self.app = app
        self.host = host
        self.port = int(cfg["STREAM_PORT"] if port is None else port)
        self.path = cfg["STREAM_PATH"]
        self.per_user = int(cfg["STREAM_MAX_PER_USER"])
        self.max_connections = int(cfg["STREAM_MAX_CONNECTIONS"])
        self.heartbeat = float(cfg["STREAM_HEARTBEAT_SECONDS"])
        self.reauth = float(cfg["STREAM_REAUTH_SECONDS"])
        self.allowed = {o.strip().rstrip("/") for o in cfg["STREAM_ALLOWED_ORIGINS"].split(",") if o.strip()}
        from app import live

        self.source = source or live.backend(cfg)
        self.loop = None
        self.server = None
        self.queues = {}  # user id -> set of asyncio.Queue, one per open stream
        # Session checks read the database: a few threads, whatever the machine, so a burst of
        # reconnects takes a bounded number of database connections.
        self.executor = ThreadPoolExecutor(max_workers=AUTH_THREADS, thread_name_prefix="stream-auth")
        self.ready = threading.Event()
        self.error = None
        self._stopping = False

    # --- messages in ---------------------------------------------------------------------

    def deliver(self, message):
        """Any thread: hand one published message to its user's open streams."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch, message)

    def _dispatch(self, message):
        try:
            uid = int(message["userId"])
        except (KeyError, TypeError, ValueError):
            return
        data = {k: message.get(k) for k in ("id", "type", "title")}
        for queue in self.queues.get(uid, ()):
            if queue.qsize() < 100:  # a stalled reader gets no more than this
                queue.put_nowait(data)

    def _listen_redis(self):
        """A thread: subscribe to the live channel and deliver what arrives; reconnect after errors."""
        import redis

        from app import live

        cfg = self.app.config
        name = live.channel(cfg)
        while not self._stopping:
            try:
                client = redis.Redis.from_url(cfg["REDIS_URL"], socket_connect_timeout=cfg["REDIS_CONNECT_TIMEOUT"])
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(name)
                self.ready.set()
                while not self._stopping:
                    msg = pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        try:
                            self.deliver(json.loads(msg["data"]))
                        except ValueError:
                            log.warning("live message is not JSON: %r", msg["data"][:200])
                pubsub.close()
                client.close()
            except redis.RedisError as exc:
                from app.throttle import log_throttled

                log_throttled(log, "stream-redis-down", cfg["EVENTS_LOG_INTERVAL"],
                              "stream: Redis unavailable (%s); retrying", exc)
                time.sleep(1)

    # --- who is asking ---------------------------------------------------------------------

    def authenticate(self, cookie_header):
        """The active user id of the session cookie in `cookie_header`, else None (runs in a worker thread)."""
        app = self.app
        name = app.config["SESSION_COOKIE_NAME"]
        jar = SimpleCookie()
        try:
            jar.load(cookie_header or "")
        except Exception:  # noqa: BLE001 - a malformed header is no session
            return None
        if name not in jar:
            return None
        signer = app.session_interface.get_signing_serializer(app)
        if signer is None:
            return None
        try:
            session = signer.loads(jar[name].value, max_age=int(app.permanent_session_lifetime.total_seconds()))
        except Exception:  # noqa: BLE001 - bad signature, expired, garbage: no session
            return None
        raw = session.get("_user_id")
        try:
            uid = int(raw)
        except (TypeError, ValueError):
            return None
        from flask_appbuilder.security.sqla.models import User

        from app.extensions import db

        with app.app_context():
            try:
                user = db.session.get(User, uid)
                return uid if user is not None and user.active else None
            finally:
                db.session.remove()

    def cors_headers(self, origin, host):
        """CORS answer headers for `origin` when it is the stream's host on another port (or listed)."""
        if not origin:
            return []
        origin = origin.rstrip("/")
        parts = urlsplit(origin)
        same_host = parts.hostname and parts.hostname == urlsplit(f"//{host}").hostname
        if origin in self.allowed or same_host:
            return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"), ("Vary", "Origin")]
        return []

    # --- one connection ----------------------------------------------------------------

    async def _head(self, reader):
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        if len(raw) > MAX_HEAD:
            raise ValueError("head too large")
        lines = raw.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        return method, target, headers

    @staticmethod
    async def _answer(writer, status, headers=(), body=b""):
        head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close", "Cache-Control: no-store",
                "Content-Type: text/plain; charset=utf-8", *(f"{k}: {v}" for k, v in headers)]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()

    async def handle(self, reader, writer):
        """Serve one connection: check it, then stream its user's notifications until it closes."""
        try:
            try:
                method, target, headers = await self._head(reader)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                return
            cors = self.cors_headers(headers.get("origin"), headers.get("host", ""))
            if urlsplit(target).path != self.path:
                return await self._answer(writer, "404 Not Found", cors, b"not found")
            if method != "GET":
                return await self._answer(writer, "405 Method Not Allowed", [("Allow", "GET"), *cors], b"GET only")
            if headers.get("origin") and not cors:
                return await self._answer(writer, "403 Forbidden", (), b"origin not allowed")
            uid = await asyncio.get_running_loop().run_in_executor(self.executor, self.authenticate, headers.get("cookie"))
            if uid is None:
                return await self._answer(writer, "401 Unauthorized", cors, b"log in first")
            mine = self.queues.setdefault(uid, set())
            if len(mine) >= self.per_user:
                return await self._answer(writer, "429 Too Many Requests", [("Retry-After", "30"), *cors],
                                          b"too many open streams for this user")
            if sum(len(q) for q in self.queues.values()) >= self.max_connections:
                return await self._answer(writer, "503 Service Unavailable", [("Retry-After", "30"), *cors], b"busy")
            queue = asyncio.Queue()
            mine.add(queue)
            try:
                await self._stream(reader, writer, queue, cors)
            finally:
                mine.discard(queue)
                if not mine:
                    self.queues.pop(uid, None)
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _stream(self, reader, writer, queue, cors):
        head = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream; charset=utf-8", "Cache-Control: no-store",
                "X-Accel-Buffering: no", "Connection: keep-alive", *(f"{k}: {v}" for k, v in cors)]
        # retry: the browser reconnects after 2 s when the stream drops.
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + b"retry: 2000\n: open\n\n")
        await writer.drain()
        closed = asyncio.ensure_future(reader.read(1))  # b"" when the client goes away
        # A stream ends after STREAM_REAUTH_SECONDS: the browser reconnects and its session is checked
        # again, so a deactivated user or an expired session stops hearing within that time.
        until = time.monotonic() + self.reauth
        try:
            while time.monotonic() < until:
                getter = asyncio.ensure_future(queue.get())
                wait = max(0.01, min(self.heartbeat, until - time.monotonic()))
                done, _pending = await asyncio.wait({getter, closed}, timeout=wait,
                                                    return_when=asyncio.FIRST_COMPLETED)
                if closed in done:
                    getter.cancel()
                    return
                if getter in done:
                    data = json.dumps(getter.result(), ensure_ascii=False)
                    writer.write(f"event: notification\ndata: {data}\n\n".encode("utf-8"))
                else:
                    getter.cancel()
                    writer.write(b": ping\n\n")
                await writer.drain()
        finally:
            closed.cancel()

    # --- running -------------------------------------------------------------------------

    def connections(self):
        """How many streams are open now."""
        return sum(len(q) for q in self.queues.values())

    async def _serve(self):
        self.loop = asyncio.get_running_loop()
        try:
            self.server = await asyncio.start_server(self.handle, self.host, self.port, limit=MAX_HEAD, backlog=1024)
        except OSError as exc:
            self.error = exc
            self.ready.set()
            return
        self.port = self.server.sockets[0].getsockname()[1]
        if self.source == "redis":
            threading.Thread(target=self._listen_redis, name="stream-redis", daemon=True).start()
        else:
            from app import live

            live.hub.subscribe(self.deliver)
            self.ready.set()
        log.info("Notification stream on http://%s:%s%s (%s)", self.host, self.port, self.path, self.source)
        async with self.server:
            await self.server.serve_forever()

    def run(self):
        """Serve in this thread until stopped."""
        try:
            asyncio.run(self._serve())
        except asyncio.CancelledError:
            pass

    def start(self):
        """Serve in a daemon thread; return once the stream listens and hears its source."""
        thread = threading.Thread(target=self.run, name="notification-stream", daemon=True)
        thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the notification stream did not start")
        if self.error is not None:
            raise self.error
        return self

    def stop(self):
        """Stop listening and close the loop (open streams end; browsers reconnect elsewhere)."""
        self._stopping = True
        from app import live

        live.hub.unsubscribe(self.deliver)
        loop, server = self.loop, self.server
        if loop is not None and server is not None and not loop.is_closed():
            # serve_forever ends (cancelled); asyncio.run then cancels the open streams' tasks.
            loop.call_soon_threadsafe(server.close)
        self.executor.shutdown(wait=False)


_embedded = {}


def start_embedded(app):
    """In a web process without Redis: serve the stream from a background loop here (once); None when not needed."""
    from app import live

    if not (app.config["STREAM_ENABLED"] and app.config["STREAM_EMBEDDED"]) or live.backend(app.config) != "inprocess":
        return None
    if "server" not in _embedded:
        try:
            _embedded["server"] = StreamServer(app, host=app.config["STREAM_HOST"]).start()
        except OSError as exc:
            log.warning("notification stream not started: %s", exc)
            _embedded["server"] = None
    return _embedded["server"]
