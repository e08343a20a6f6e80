"""gunicorn settings, read by every gunicorn started from the project folder (Procfile, make run / up, bench).

Command-line options (workers, bind, threads) still come from each launcher.
"""

import gc
import glob
import os
import shutil
import tempfile

from gunicorn import glogging

# Metrics (app/metrics.py): the workers count into one directory of memory-mapped files,
# set before any worker imports prometheus-client. Unset: a private one of this master.
_PRIVATE_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _PRIVATE_METRICS_DIR = tempfile.mkdtemp(prefix="crm-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _PRIVATE_METRICS_DIR

from config import Config, config_for_env  # noqa: E402  (after the variable: config.py reads it)

# SIGTERM: workers stop accepting, finish the requests they hold for up to this long, then exit.
graceful_timeout = Config.WEB_GRACEFUL_TIMEOUT

_config = config_for_env()
# gunicorn's own lines (boot, worker exits) in the app's LOG_FORMAT; no access log of its own:
# app/requestlog.py writes one line per request, with its id, user, route and duration.
_formatter = (
    {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": ["levelname", "name", "message"],
     "rename_fields": {"levelname": "level", "name": "logger"}, "timestamp": "time"}
    if _config.LOG_FORMAT.strip().lower() == "json"
    else {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"}
)


class RequestLinesLogger(glogging.Logger):
    """gunicorn's logger without its access log: app/requestlog.py writes each request's line."""

    def access(self, resp, req, environ, request_time):
        """Nothing: with `logconfig_dict` set gunicorn builds every access line's fields, even for a logger with no handler."""


logger_class = RequestLinesLogger
logconfig_dict = {
    "root": {"level": _config.LOG_LEVEL, "handlers": []},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
    "handlers": {"error_console": {"class": "logging.StreamHandler", "formatter": "crm", "stream": "ext://sys.stderr"}},
    "formatters": {"crm": _formatter},
}


def on_starting(server):
    """Start from empty counters: files of an earlier master in a given directory would be added to this one's."""
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def child_exit(server, worker):
    """An exited worker's live gauges leave the sums (prometheus-client's multiprocess rule); its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the private metrics directory of this master."""
    if _PRIVATE_METRICS_DIR:
        shutil.rmtree(_PRIVATE_METRICS_DIR, ignore_errors=True)


def post_worker_init(worker):
    """Take the loaded app's objects out of the cyclic GC's reach, once per worker.

    After start-up a worker holds ~190,000 tracked objects (FAB, SQLAlchemy, the models)
    that live as long as the process; a full collection walks them all, a ~90 ms pause in
    the middle of some request. Frozen, a full collection walks only what requests made.
    """
    gc.freeze()
    _embedded_stream(worker)
    _embedded_audit_jobs(worker)


def _embedded_stream(worker):
    """Without Redis (the embedded default) the web process serves the bell's stream from one asyncio thread."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "config"):
        from app.stream import start_embedded

        start_embedded(app)


def _embedded_audit_jobs(worker):
    """Without a worker (the embedded default) the web process seals the audit chain and runs retention (AUDIT_JOBS_IN_PROCESS)."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "config"):
        from app.audit_archive import start_in_process

        start_in_process(app)
