"""One Flask app per worker process, and the app context every RQ job runs in."""

import functools
import os

_state = {"app": None, "pid": None, "stopping": False}


def stopping():
    """True once this worker process was asked to stop (SIGTERM/SIGINT): a long job ends after its current step."""
    return _state["stopping"]


def stopping_aware(worker_class):
    """`worker_class` (an RQ worker) whose warm shutdown also sets `stopping()`, so the running job can end early and cleanly.

    RQ's warm shutdown lets the current job run to its end; the relay's job checks
    `stopping()` between batches, so SIGTERM costs at most one batch's wait, never a
    half-marked one.
    """

    class StoppingAware(worker_class):
        def request_stop(self, signum, frame):
            """RQ's warm shutdown, after noting it for the running job."""
            _state["stopping"] = True
            return super().request_stop(signum, frame)

    StoppingAware.__name__ = worker_class.__name__
    return StoppingAware


def set_app(app):
    """Use `app` for jobs in this process (the `crm worker` command passes its own)."""
    _state["app"], _state["pid"] = app, os.getpid()


def get_app():
    """Return this process's app, creating it from the environment on first use."""
    if _state["app"] is None:
        from app import create_app

        set_app(create_app())
    return _state["app"]


def with_app(fn):
    """Run the job inside an app context; a forked work-horse drops the parent's DB connections."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        app = get_app()
        with app.app_context():
            if _state["pid"] != os.getpid():
                from app.extensions import db

                # Pooled connections belong to the parent process (SQLAlchemy's fork advice).
                db.engine.dispose(close=False)
                _state["pid"] = os.getpid()
            return fn(*args, **kwargs)

    return wrapper
