"""Class-based configuration, read from the environment.

`create_app(config_class)` takes one of the classes below; `config_for_env()` picks it from
`CRM_ENV` (development, test, production). Every variable is listed in the README.
"""

import os
from datetime import timedelta

BASE_DIR = os.path.abspath(os.path.dirname(__file__))
# The literal the seed shipped as its default secret: public, so refused by every config but tests.
DEFAULT_SECRET = "dev-insecure-secret-change-me-in-production"
# A checkout's own random secret (`make run`, `flask --app wsgi crm ...` in development).
DEV_SECRET_FILE = os.path.join(BASE_DIR, "instance", "secret_key")


def env_bool(name, default=False):
    """Read a boolean environment variable ("1", "true", "yes", "on" are true)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name, default):
    """Read an integer environment variable."""
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


# OWASP Password Storage Cheat Sheet, Argon2id: the equivalent minimum settings as
# (memory KiB, iterations). A setting passes when it reaches one pair in both figures.
ARGON2_OWASP_MINIMUMS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))


def argon2_below_floor(memory_kib, time_cost, parallelism):
    """Return why these Argon2id settings are below OWASP's minimum, or None when they are not."""
    if parallelism < 1:
        return f"PASSWORD_ARGON2_PARALLELISM must be at least 1 (got {parallelism})"
    if any(memory_kib >= m and time_cost >= t for m, t in ARGON2_OWASP_MINIMUMS):
        return None
    return (
        f"PASSWORD_ARGON2_MEMORY_KIB={memory_kib} with PASSWORD_ARGON2_TIME_COST={time_cost} is below "
        "OWASP's Argon2id minimum (19456 KiB with 2 iterations, or 47104/1, 12288/3, 9216/4, 7168/5)"
    )


def checkout_secret(path=None):
    """The random secret kept in `path` (default instance/secret_key; created once, mode 0600, when missing)."""
    path = path or DEV_SECRET_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().strip()
    except FileNotFoundError:
        secret = ""
    if secret:
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)  # written by an older run.sh with the default umask
        return secret
    import secrets

    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Written to a private temporary file, then linked into place: of processes starting
    # together (web, worker, consumer) one creates the file and every one reads the same value.
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won; its value is the checkout's
    finally:
        os.unlink(tmp)
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip()


def _sqlite_default():
    return "sqlite:///" + os.path.join(BASE_DIR, "instance", "crm.db")


def normalise_db_url(url):
    """Use the psycopg 3 driver for plain postgresql:// URLs (Heroku-style postgres:// too)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Config:
    """Defaults shared by every environment."""

    APP_NAME = "Sales CRM"
    APP_THEME = ""
    # Set by `secret_key()` when the app is made: no config but TestConfig has a default.
    SECRET_KEY = None
    SQLALCHEMY_DATABASE_URI = normalise_db_url(os.environ.get("DATABASE_URL", _sqlite_default()))
    # Alembic scripts (flask-migrate); `crm db upgrade` reads them from here.
    MIGRATIONS_DIR = os.environ.get("MIGRATIONS_DIR", os.path.join(BASE_DIR, "migrations"))
    # Where the screens' logout goes; empty: the index.
    LOGOUT_REDIRECT_URL = os.environ.get("LOGOUT_REDIRECT_URL", "")
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    # No pool_pre_ping (a SELECT 1 round trip per request): app/dbpool.py checks a pooled
    # connection's socket at checkout and pings only one idle this many seconds or more.
    SQLALCHEMY_ENGINE_OPTIONS = {}
    DB_PING_IDLE_SECONDS = env_int("DB_PING_IDLE_SECONDS", 30)

    # Flask-AppBuilder. Tables come from Alembic migrations, never from create_all.
    FAB_CREATE_DB = False
    FAB_UPDATE_PERMS = env_bool("FAB_UPDATE_PERMS", False)
    FAB_SECURITY_MANAGER_CLASS = "app.security.CrmSecurityManager"
    # Every screen renders in app/templates/crm/base.html (FAB's layout plus the CRM's assets).
    FAB_BASE_TEMPLATE = "crm/base.html"
    # --- home --- the role home pages (views/home.py) instead of FAB's empty welcome box.
    FAB_INDEX_VIEW = "views.home.HomeView"
    FAB_API_SWAGGER_UI = True
    FAB_ADD_SECURITY_API = False
    FAB_API_MAX_PAGE_SIZE = 100
    # User passwords: Argon2id through app/passwords.py (OWASP's first setting, memory-hard,
    # ~25 ms per check here). Production refuses settings below OWASP's minimum.
    PASSWORD_ARGON2_MEMORY_KIB = env_int("PASSWORD_ARGON2_MEMORY_KIB", 19456)
    PASSWORD_ARGON2_TIME_COST = env_int("PASSWORD_ARGON2_TIME_COST", 2)
    PASSWORD_ARGON2_PARALLELISM = env_int("PASSWORD_ARGON2_PARALLELISM", 1)
    # FAB's werkzeug method now only matters for FAB's API keys (FAB_API_KEY_ENABLED, off);
    # CrmSecurityManager routes every user password through app/passwords.py instead.
    FAB_PASSWORD_HASH_METHOD = "scrypt"
    AUTH_TYPE = 1  # AUTH_DB
    AUTH_ROLE_ADMIN = "Admin"
    AUTH_ROLE_PUBLIC = "Public"
    AUTH_USER_REGISTRATION = False
    AUTH_RATE_LIMITED = True
    AUTH_RATE_LIMIT = os.environ.get("AUTH_RATE_LIMIT", "10 per minute")
    BABEL_DEFAULT_LOCALE = os.environ.get("BABEL_DEFAULT_LOCALE", "ja")
    LANGUAGES = {
        "ja": {"flag": "jp", "name": "日本語"},
        "en": {"flag": "gb", "name": "English"},
    }
    # Flask-WTF's CSRFProtect checks every screen POST (app/extensions.py); the session cookie
    # is not sent with cross-site subrequests or POSTs, and never to scripts.
    WTF_CSRF_ENABLED = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    # Proxies in front of gunicorn whose X-Forwarded-For / -Proto are believed (0: none, so
    # the client address is the socket's). Render's load balancer is one hop: 1.
    TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
    LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")  # the root logger's level (rules-once)
    # --- opslog: log lines, error reports, the RQ screen ---
    # "text": human-readable lines (`make run`); "json": one JSON object per line (app/logs.py).
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "text")
    # Error reports to Sentry when a DSN is set (app/sentry.py), from web, worker and consumer.
    SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
    SENTRY_ENVIRONMENT = os.environ.get("SENTRY_ENVIRONMENT", "development")
    # The deployed commit: Render sets RENDER_GIT_COMMIT, Heroku-style builds SOURCE_VERSION.
    SENTRY_RELEASE = os.environ.get("SENTRY_RELEASE") or os.environ.get("RENDER_GIT_COMMIT") or os.environ.get("SOURCE_VERSION", "")
    # rq-dashboard (views/rq_admin.py) for Admins, on REDIS_URL; not mounted without it.
    RQ_DASHBOARD_URL_PREFIX = "/admin/rq"
    # --- end opslog ---

    # JWT (FAB creates the JWTManager; identities are strings).
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=env_int("JWT_ACCESS_MINUTES", 60))
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=env_int("JWT_REFRESH_DAYS", 7))

    # Redis, caching, rate limiting.
    REDIS_URL = os.environ.get("REDIS_URL", "")
    # CACHE_TYPE=NullCache turns every cache off; CACHE_ANSWERS=0 only the answers and list
    # totals (the benchmark's uncached runs: every request as the first after a write).
    # One client for the cache, the API budget, token revocations and RQ (app/extensions.py);
    # short socket timeouts: a hung Redis must cost little, then the callers fail open.
    REDIS_SOCKET_TIMEOUT = float(os.environ.get("REDIS_SOCKET_TIMEOUT") or 1)
    REDIS_CONNECT_TIMEOUT = float(os.environ.get("REDIS_CONNECT_TIMEOUT") or 0.5)
    CACHE_TYPE = os.environ.get("CACHE_TYPE") or ("app.extensions.shared_redis_cache" if REDIS_URL else "SimpleCache")
    CACHE_ANSWERS = env_bool("CACHE_ANSWERS", True)
    # Cache hits of /api answered before Flask's dispatch (app/fastpath.Middleware); off, by
    # the /api blueprint's first before_request instead (the same checks, with Flask's hooks).
    CACHE_WSGI_HITS = env_bool("CACHE_WSGI_HITS", True)
    CACHE_REDIS_URL = REDIS_URL
    CACHE_DEFAULT_TIMEOUT = env_int("CACHE_DEFAULT_TIMEOUT", 300)
    CACHE_RETRY_SECONDS = env_int("CACHE_RETRY_SECONDS", 5)  # skip the cache this long after an error
    CACHE_ERROR_LOG_SECONDS = 60  # log a cache outage at most once per this interval
    RATELIMIT_STORAGE_URI = REDIS_URL or "memory://"
    RATELIMIT_ENABLED = env_bool("RATELIMIT_ENABLED", True)
    RATELIMIT_KEY_PREFIX = os.environ.get("RATELIMIT_KEY_PREFIX", "crm")
    RATELIMIT_HEADERS_ENABLED = True  # X-RateLimit-* and Retry-After on limited routes
    RATELIMIT_SWALLOW_ERRORS = env_bool("RATELIMIT_SWALLOW_ERRORS", False)
    # Redis down: the login and register limits count per process instead of answering 500.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    # /api limits (flask-limiter strings); login/register per client IP and per account.
    LOGIN_RATE_LIMIT_IP = os.environ.get("LOGIN_RATE_LIMIT_IP", "20 per minute")
    LOGIN_RATE_LIMIT_ACCOUNT = os.environ.get("LOGIN_RATE_LIMIT_ACCOUNT", "5 per minute")
    REGISTER_RATE_LIMIT_IP = os.environ.get("REGISTER_RATE_LIMIT_IP", "20 per minute")
    REGISTER_RATE_LIMIT_ACCOUNT = os.environ.get("REGISTER_RATE_LIMIT_ACCOUNT", "5 per minute")
    # Every /api request, per user (per IP without a valid token): app/budget.py.
    API_RATE_LIMIT = os.environ.get("API_RATE_LIMIT", "600 per minute")
    JWT_BLOCKLIST_PREFIX = os.environ.get("JWT_BLOCKLIST_PREFIX", "crm:jwt:revoked:")
    # Seconds Redis keeps its copy of a user's token epoch (the database holds the truth);
    # bounds how long a copy that missed a bump (Redis failing just then) can be believed.
    TOKEN_EPOCH_CACHE_SECONDS = env_int("TOKEN_EPOCH_CACHE_SECONDS", 300)
    # Redis keys of the per-user authorisation epochs (app/tokens.py), tagged per database.
    AUTH_EPOCH_PREFIX = os.environ.get("AUTH_EPOCH_PREFIX", "crm:authepoch:")
    # Seconds a process believes a remembered permission answer without asking again, so a
    # permission removed in another process (no shared Redis cache) applies within this.
    PERMISSION_MEMO_SECONDS = env_int("PERMISSION_MEMO_SECONDS", 30)

    # HTTP: CORS origins for /api (comma-separated), request size, security headers.
    CORS_ORIGINS = os.environ.get("CORS_ORIGINS", "")
    MAX_CONTENT_LENGTH = env_int("MAX_CONTENT_LENGTH", 16 * 1024 * 1024)  # whole app (screens, uploads)
    API_MAX_CONTENT_LENGTH = env_int("API_MAX_CONTENT_LENGTH", 1024 * 1024)  # JSON bodies under /api
    SECURITY_HSTS = False

    # Domain settings.
    DISPLAY_TIMEZONE = os.environ.get("DISPLAY_TIMEZONE", "Asia/Tokyo")
    APPROVAL_COMPLIANCE_THRESHOLD = env_int("APPROVAL_COMPLIANCE_THRESHOLD", 10_000_000)
    # Days after a Sales user changed a customer's suitability fields during which every
    # request for that customer needs Compliance (app/services/suitability.py); 0 turns it off.
    APPROVAL_SUITABILITY_CHANGE_DAYS = env_int("APPROVAL_SUITABILITY_CHANGE_DAYS", 30)
    # board: a PENDING request this many hours old is highlighted on the approvals board and
    # its current approvers are reminded once per this many hours (workers/schedules.py).
    APPROVAL_REMINDER_HOURS = env_int("APPROVAL_REMINDER_HOURS", 24)
    # Suitability (docs/compliance.md): a customer card reviewed longer ago than this, or
    # missing a required item, is stale; a request on it is refused (`refuse`) or routed
    # to Compliance (`compliance`).
    CARD_REVIEW_MONTHS = env_int("CARD_REVIEW_MONTHS", 12)
    CARD_STALE_POLICY = os.environ.get("CARD_STALE_POLICY", "refuse")
    # A customer with no card at all: `legacy` routes on riskTolerance / investmentProfile as
    # before cards existed; `compliance` adds the Compliance step; `refuse` refuses the request.
    CARD_MISSING_POLICY = os.environ.get("CARD_MISSING_POLICY", "legacy")
    # Elderly customers (JSDA guideline): age at the proposal date from the card's date of birth.
    ELDERLY_SUPERVISOR_AGE = env_int("ELDERLY_SUPERVISOR_AGE", 75)
    ELDERLY_NEXT_DAY_AGE = env_int("ELDERLY_NEXT_DAY_AGE", 80)
    # The business-day calendar of executableFrom: a `holidays` financial-market code (XJPX:
    # the Japan Exchange Group, national holidays and 12/31-1/3) and its time zone.
    BUSINESS_CALENDAR = os.environ.get("BUSINESS_CALENDAR", "XJPX")
    BUSINESS_TIMEZONE = os.environ.get("BUSINESS_TIMEZONE", "Asia/Tokyo")

    # --- find: global search and list exports ---
    # Rows per group in the navbar's dropdown, and on the search results page (also the
    # dropdown's largest ?limit=): every search is bounded, whatever the table sizes.
    GLOBAL_SEARCH_SUGGEST_LIMIT = env_int("GLOBAL_SEARCH_SUGGEST_LIMIT", 5)
    GLOBAL_SEARCH_PAGE_LIMIT = env_int("GLOBAL_SEARCH_PAGE_LIMIT", 50)
    # Most rows a list screen's CSV / Excel export holds (views/list_tools.py); a longer
    # list is refused (400) until filtered: the workbook is built in memory.
    LIST_EXPORT_MAX_ROWS = env_int("LIST_EXPORT_MAX_ROWS", 10_000)
    # --- end find ---

    # --- attach: files on customers, meetings and approval requests (app/storage.py, app/services/attachments.py) ---
    ATTACHMENT_MAX_MB = env_int("ATTACHMENT_MAX_MB", 20)  # largest file, in MiB (413 beyond)
    # The local storage's folder, used unless S3_BUCKET is set.
    ATTACHMENT_DIR = os.environ.get("ATTACHMENT_DIR", os.path.join(BASE_DIR, "instance", "attachments"))
    # S3-compatible storage (boto3) when S3_BUCKET is set; empty values leave boto3's own defaults.
    S3_BUCKET = os.environ.get("S3_BUCKET", "")
    S3_ENDPOINT_URL = os.environ.get("S3_ENDPOINT_URL", "")  # e.g. a MinIO or other S3-compatible server
    S3_REGION = os.environ.get("S3_REGION", "")
    S3_PREFIX = os.environ.get("S3_PREFIX", "")  # prepended to every object key
    AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID", "")
    AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    # --- end attach ---
    # --- imports: CSV / Excel imports of customers, meetings and tasks (app/services/imports.py) ---
    IMPORT_MAX_MB = env_int("IMPORT_MAX_MB", 50)  # largest upload (413 beyond)
    IMPORT_MAX_ROWS = env_int("IMPORT_MAX_ROWS", 200_000)  # most data rows of one file (400 beyond)
    IMPORT_BATCH_SIZE = env_int("IMPORT_BATCH_SIZE", 2000)  # rows per committed batch (the unit a resumed job redoes)
    IMPORT_PREVIEW_ROWS = env_int("IMPORT_PREVIEW_ROWS", 20)  # rows the preview checks and shows
    # "rq" (an RQ job on RQ_QUEUE) or "thread" (the web process runs the same job in a thread);
    # empty: rq with REDIS_URL, else thread (the embedded default).
    IMPORT_RUNNER = os.environ.get("IMPORT_RUNNER", "")
    IMPORT_JOB_TIMEOUT = env_int("IMPORT_JOB_TIMEOUT", 3600)  # seconds RQ lets one import job run
    # Fault injection (tests only): seconds the job sleeps after each committed batch.
    IMPORT_FAULT_PAUSE_AFTER_BATCH = float(os.environ.get("IMPORT_FAULT_PAUSE_AFTER_BATCH") or 0)
    # --- end imports ---

    # --- reports: Excel and PDF reports built off the request (app/services/reports.py) ---
    # "rq": an RQ job on RQ_QUEUE (the worker process); "thread": a thread of the web process
    # (the embedded default); empty: rq when REDIS_URL is set, else thread.
    REPORT_RUNNER = os.environ.get("REPORT_RUNNER", "")
    REPORTS_DIR = os.environ.get("REPORTS_DIR", os.path.join(BASE_DIR, "instance", "reports"))
    # Days a built report stays downloadable; the sweep deletes its file after that.
    REPORT_RETENTION_DAYS = env_int("REPORT_RETENTION_DAYS", 30)
    REPORT_SWEEP_SECONDS = env_int("REPORT_SWEEP_SECONDS", 3600)  # the worker's sweep of expired files
    REPORT_JOB_TIMEOUT = env_int("REPORT_JOB_TIMEOUT", 1800)  # seconds one RQ build may take
    # Most rows of a PDF report (laid out page by page, unlike the streamed Excel); more: 400.
    REPORT_PDF_MAX_ROWS = env_int("REPORT_PDF_MAX_ROWS", 5000)
    # The TrueType font of every PDF (app/pdf.py): Debian's IPA Gothic; when the file is
    # missing, ReportLab's built-in Japanese CID font HeiseiKakuGo-W5.
    PDF_FONT_PATH = os.environ.get("PDF_FONT_PATH", "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf")
    # --- end reports ---
    # Evidence packs (app/services/evidence.py): the customer's meetings from this many days
    # before a request's proposal are part of its pack.
    EVIDENCE_MEETING_DAYS = env_int("EVIDENCE_MEETING_DAYS", 90)

    # Events (seed names kept). Disabled: the outbox drains in-process.
    KAFKA_ENABLED = env_bool("KAFKA_ENABLED", False)
    KAFKA_BROKERS = os.environ.get("KAFKA_BROKERS", "")
    KAFKA_USERNAME = os.environ.get("KAFKA_USERNAME", "")
    KAFKA_PASSWORD = os.environ.get("KAFKA_PASSWORD", "")
    KAFKA_CLIENT_ID = os.environ.get("KAFKA_CLIENT_ID", "crm")
    KAFKA_TOPIC_PREFIX = os.environ.get("KAFKA_TOPIC_PREFIX", "")
    # SASL/PLAIN over TLS when KAFKA_USERNAME is set (Upstash style); both overridable.
    KAFKA_SASL_MECHANISM = os.environ.get("KAFKA_SASL_MECHANISM", "PLAIN")
    KAFKA_SECURITY_PROTOCOL = os.environ.get("KAFKA_SECURITY_PROTOCOL", "")
    KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 3)
    KAFKA_REPLICATION_FACTOR = env_int("KAFKA_REPLICATION_FACTOR", -1)  # -1: the broker's default
    KAFKA_SESSION_TIMEOUT_MS = env_int("KAFKA_SESSION_TIMEOUT_MS", 45000)
    KAFKA_DELIVERY_TIMEOUT_MS = env_int("KAFKA_DELIVERY_TIMEOUT_MS", 30000)
    KAFKA_FETCH_WAIT_MAX_MS = env_int("KAFKA_FETCH_WAIT_MAX_MS", 100)
    KAFKA_CONSUMER_GROUP = os.environ.get("KAFKA_CONSUMER_GROUP", "crm-reactions")
    KAFKA_CONSUMER_BATCH = env_int("KAFKA_CONSUMER_BATCH", 100)  # messages per database transaction
    # /ready asks the broker at most once per this many seconds per process (it answers anyone).
    READY_KAFKA_CACHE_SECONDS = env_int("READY_KAFKA_CACHE_SECONDS", 5)
    # RQ: one queue per worker (rq issue #1716); the sweep and the reminder scan repeat.
    RQ_QUEUE = os.environ.get("RQ_QUEUE", "crm")
    OUTBOX_SWEEP_SECONDS = env_int("OUTBOX_SWEEP_SECONDS", 10)
    OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 500)
    REMINDER_SCAN_SECONDS = env_int("REMINDER_SCAN_SECONDS", 60)
    # Fault injection (tests only): seconds the relay sleeps between delivery and marking.
    RELAY_FAULT_PAUSE_BEFORE_MARK = float(os.environ.get("RELAY_FAULT_PAUSE_BEFORE_MARK") or 0)
    # Fault injection (tests only): seconds the consumer sleeps between committing a batch's effects and storing its offsets.
    CONSUMER_FAULT_PAUSE_BEFORE_OFFSETS = float(os.environ.get("CONSUMER_FAULT_PAUSE_BEFORE_OFFSETS") or 0)
    EVENTS_LOG_INTERVAL = env_int("EVENTS_LOG_INTERVAL", 30)  # seconds between repeated outage logs
    # Email for notifications (sent by an RQ job) when SMTP_HOST is set.
    SMTP_HOST = os.environ.get("SMTP_HOST", "")
    SMTP_PORT = env_int("SMTP_PORT", 587)
    SMTP_USERNAME = os.environ.get("SMTP_USERNAME", "")
    SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
    SMTP_USE_TLS = env_bool("SMTP_USE_TLS", True)
    SMTP_FROM = os.environ.get("SMTP_FROM", "crm@example.com")

    DEMO_PASSWORD = os.environ.get("DEMO_PASSWORD", "demo-pass-2026")

    # --- ops: backups (app/backup.py) and API keys (app/api_keys.py) ---
    # Where `crm backup` writes its directories (one per backup) when --out is not given.
    BACKUP_DIR = os.environ.get("BACKUP_DIR", os.path.join(BASE_DIR, "instance", "backups"))
    # The code's version named in each backup's manifest (Render sets RENDER_GIT_COMMIT).
    APP_VERSION = os.environ.get("APP_VERSION") or os.environ.get("RENDER_GIT_COMMIT", "dev")
    # API keys for service clients (app/api_keys.py): FAB's API-key hooks on the CRM's own keys.
    FAB_API_KEY_ENABLED = True
    FAB_API_KEY_PREFIXES = ["crm_"]
    API_KEY_REDIS_PREFIX = os.environ.get("API_KEY_REDIS_PREFIX", "crm:apikey:")
    # One API_KEY_USED audit row (and last_used_at) per key per this many seconds.
    API_KEY_AUDIT_SECONDS = env_int("API_KEY_AUDIT_SECONDS", 60)
    # A process believes what it read of a key (never its revocation) this long.
    API_KEY_MEMO_SECONDS = env_int("API_KEY_MEMO_SECONDS", 60)
    API_KEY_DEFAULT_DAYS = env_int("API_KEY_DEFAULT_DAYS", 90)
    API_KEY_MAX_DAYS = env_int("API_KEY_MAX_DAYS", 365)
    API_KEY_MAX_OVERLAP_HOURS = env_int("API_KEY_MAX_OVERLAP_HOURS", 168)
    # --- end ops ---
    # --- metrics: Prometheus (app/metrics.py) ---
    METRICS_ENABLED = env_bool("METRICS_ENABLED", True)  # `/metrics` and the request timing
    # Bearer token that lets a scraper read /metrics (and the worker's and consumer's ports) from anywhere.
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
    # Addresses let in without the token (comma-separated networks); empty: the token only.
    METRICS_ALLOW_NETWORKS = os.environ.get("METRICS_ALLOW_NETWORKS", "127.0.0.1/32,::1/128")
    # gunicorn's workers count into this directory (gunicorn.conf.py makes a private one when unset).
    PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    # The worker and the consumer serve their own series on these ports (0: not served) of METRICS_BIND.
    WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 0)
    CONSUMER_METRICS_PORT = env_int("CONSUMER_METRICS_PORT", 0)
    METRICS_BIND = os.environ.get("METRICS_BIND", "127.0.0.1")
    # How often librdkafka reports the consumer's lag per partition (with CONSUMER_METRICS_PORT).
    CONSUMER_STATS_INTERVAL_MS = env_int("CONSUMER_STATS_INTERVAL_MS", 5000)
    # gunicorn: seconds a worker gets to finish its requests after SIGTERM (gunicorn.conf.py).
    WEB_GRACEFUL_TIMEOUT = env_int("WEB_GRACEFUL_TIMEOUT", 30)
    # --- end metrics ---

    # --- audit: the hash chain and retention (app/audit_chain.py, app/audit_archive.py) ---
    # Seconds between sealer runs that link new audit rows into the chain.
    AUDIT_SEAL_SECONDS = env_int("AUDIT_SEAL_SECONDS", 10)
    # Audit rows older than this many months are moved to the archive (whole months only).
    AUDIT_RETENTION_MONTHS = env_int("AUDIT_RETENTION_MONTHS", 84)
    # Seconds between retention runs.
    AUDIT_RETENTION_SECONDS = env_int("AUDIT_RETENTION_SECONDS", 6 * 3600)
    # One gzip JSONL file and one manifest per month; a persistent disk in production.
    AUDIT_ARCHIVE_DIR = os.environ.get("AUDIT_ARCHIVE_DIR", os.path.join(BASE_DIR, "instance", "audit-archive"))
    # Run the sealer and retention in a thread of the web process (the embedded default has no
    # worker); empty: on exactly when REDIS_URL is unset.
    AUDIT_JOBS_IN_PROCESS = env_bool("AUDIT_JOBS_IN_PROCESS", not REDIS_URL)
    # --- end audit ---

    # --- bell: the navbar's notification bell and its live stream (app/live.py, app/stream.py) ---
    BELL_ITEMS = env_int("BELL_ITEMS", 8)  # newest notifications in the bell's dropdown
    # Where committed notifications are published: "redis" (pub/sub) or "inprocess"; empty: redis with REDIS_URL.
    LIVE_BACKEND = os.environ.get("LIVE_BACKEND", "")
    LIVE_CHANNEL = os.environ.get("LIVE_CHANNEL", "crm:live:notifications")
    # The SSE stream (its own asyncio loop: `crm stream`, or a thread of the web process without Redis).
    STREAM_HOST = os.environ.get("STREAM_HOST", "127.0.0.1")
    STREAM_PORT = env_int("STREAM_PORT", 8081)
    STREAM_PATH = "/notifications/stream"
    STREAM_URL = os.environ.get("STREAM_URL", "")  # what browsers open; empty: the page's host on STREAM_PORT
    STREAM_ALLOWED_ORIGINS = os.environ.get("STREAM_ALLOWED_ORIGINS", "")  # besides the stream's own host
    STREAM_ENABLED = env_bool("STREAM_ENABLED", True)  # false: bells read their feed on page loads only
    STREAM_EMBEDDED = env_bool("STREAM_EMBEDDED", True)  # web process without Redis serves the stream itself
    STREAM_MAX_PER_USER = env_int("STREAM_MAX_PER_USER", 5)
    STREAM_MAX_CONNECTIONS = env_int("STREAM_MAX_CONNECTIONS", 2000)
    STREAM_HEARTBEAT_SECONDS = env_int("STREAM_HEARTBEAT_SECONDS", 20)
    STREAM_REAUTH_SECONDS = env_int("STREAM_REAUTH_SECONDS", 300)  # a stream ends then; the reconnect is checked again
    # --- end bell ---

    @classmethod
    def secret_key(cls):
        """Return the secret to sign sessions and tokens with; raise if there is none or it is the public literal."""
        secret = os.environ.get("SECRET_KEY", "")
        if not secret or secret == DEFAULT_SECRET:
            raise RuntimeError("SECRET_KEY must be set to a random value")
        return secret


class DevelopmentConfig(Config):
    """`make run`: SQLite under instance/, in-process events and cache, demo data."""

    DEBUG = False

    @classmethod
    def secret_key(cls):
        """SECRET_KEY from the environment, else the checkout's random one (instance/secret_key)."""
        secret = os.environ.get("SECRET_KEY") or checkout_secret()
        if secret == DEFAULT_SECRET:
            raise RuntimeError("SECRET_KEY is the public default; unset it to use instance/secret_key")
        return secret


class TestConfig(Config):
    """pytest: a private PostgreSQL database per run, set by tests/conftest.py."""

    TESTING = True
    # The only config with a fixed secret: pytest's throwaway databases.
    SECRET_KEY = "test-only-secret-never-used-by-a-deployment"
    STREAM_ENABLED = False  # bell: pages open no stream unless a test starts one (tests/test_bell_browser.py)
    AUDIT_JOBS_IN_PROCESS = False  # audit: tests seal and archive when they mean to
    SQLALCHEMY_DATABASE_URI = normalise_db_url(
        os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    )
    RATELIMIT_ENABLED = False
    CACHE_TYPE = "NullCache"
    SENTRY_DSN = ""  # tests report nowhere unless one points the SDK at its own endpoint (tests/test_sentry.py)

    @classmethod
    def secret_key(cls):
        """The test secret (a subclass may set its own)."""
        return cls.SECRET_KEY


class ProductionConfig(Config):
    """Production: refuses a default or missing secret, no Redis, and weak password hashing."""

    # audit: no default archive folder, so retention never deletes rows into an ephemeral disk
    # (a container's instance/); until AUDIT_ARCHIVE_DIR names a persistent one, rows stay.
    AUDIT_ARCHIVE_DIR = os.environ.get("AUDIT_ARCHIVE_DIR", "")
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    SECURITY_HSTS = True
    LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
    SENTRY_ENVIRONMENT = os.environ.get("SENTRY_ENVIRONMENT", "production")

    @classmethod
    def validate(cls):
        """Return the production secret; raise if the configuration is not safe."""
        secret = os.environ.get("SECRET_KEY", "")
        if not secret or secret == DEFAULT_SECRET or len(secret) < 32:
            raise RuntimeError("SECRET_KEY must be set to a random value of 32+ characters in production")
        if not os.environ.get("REDIS_URL"):
            # Token revocations and rate-limit counters must be shared by every worker.
            raise RuntimeError("REDIS_URL must be set in production")
        for name, allowed in (("CARD_STALE_POLICY", ("refuse", "compliance")), ("CARD_MISSING_POLICY", ("legacy", "compliance", "refuse"))):
            if str(getattr(cls, name)).strip().lower() not in allowed:
                # Found at start, not at the first request on a stale card.
                raise RuntimeError(f"{name} must be one of {', '.join(allowed)}")
        weak = argon2_below_floor(cls.PASSWORD_ARGON2_MEMORY_KIB, cls.PASSWORD_ARGON2_TIME_COST, cls.PASSWORD_ARGON2_PARALLELISM)
        if weak:
            raise RuntimeError(weak)
        return secret

    @classmethod
    def secret_key(cls):
        """The production secret, once the whole configuration passed `validate`."""
        return cls.validate()


CONFIGS = {
    "development": DevelopmentConfig,
    "test": TestConfig,
    "production": ProductionConfig,
}


def config_for_env(name=None):
    """Return the config class named by `name` or `CRM_ENV` (default development)."""
    return CONFIGS[(name or os.environ.get("CRM_ENV", "development")).lower()]
