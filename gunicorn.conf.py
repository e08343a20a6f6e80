"""gunicorn settings, read by every gunicorn started from the project folder (Procfile, make run / up, bench).

Command-line options (workers, bind, threads) still come from each launcher.
"""

import gc


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
    """Without a worker (the embedded default) the web process seals the audit chain itself (AUDIT_JOBS_IN_PROCESS)."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "config"):
        from app.audit_chain import start_in_process

        start_in_process(app)
