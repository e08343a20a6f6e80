"""The database connection of cacheable GETs: autocommit, outside the ORM Session.

A list page or a dashboard is one statement (two when it must count or estimate on its
own) and writes nothing. Run through the request's ORM Session it paid for the Session's
transaction bookkeeping, for switching the pooled connection to autocommit and back, and
for closing the Session at teardown, none of which a read that writes nothing needs. On
PostgreSQL these statements run instead on a connection of a second pool whose
connections are autocommit from the start (each statement its own snapshot, as READ
COMMITTED gives every statement anyway; no BEGIN/ROLLBACK round trips, and psycopg keeps
its prepared statements, which it drops at every ROLLBACK).

`connection()` hands out that connection for the duration of a `with` block inside a GET
on a `cached_endpoint` view, and the request's Session everywhere else (writes, screens,
workers, SQLite), so a caller's reads see its own transaction wherever it has one;
`rows(statement)` runs one statement on it. Lists of model objects need the ORM Session:
`session()` switches its connection to autocommit first in a cacheable GET.
"""

from contextlib import contextmanager

import sqlalchemy as sa
from flask import current_app

from app import caching, dbpool

ENGINE_KEY = "crm_read_engine"


def engine(app=None):
    """The app's autocommit engine for cacheable reads (PostgreSQL only, else None), made at first use."""
    from app.extensions import db

    app = app or current_app
    found = app.extensions.get(ENGINE_KEY)
    if found is None:
        main = db.engine
        if main.dialect.name != "postgresql":
            found = False
        else:
            # Made in the process that uses it (a gunicorn worker, after the fork).
            found = sa.create_engine(main.url, isolation_level="AUTOCOMMIT", **app.config["SQLALCHEMY_ENGINE_OPTIONS"])
            dbpool.install(found, app.config["DB_PING_IDLE_SECONDS"])
        app.extensions[ENGINE_KEY] = found
    return found or None


@contextmanager
def connection():
    """Yield what this request's read-only statements run on: the autocommit connection in a cacheable GET, else the Session."""
    from app.extensions import db

    read_engine = engine() if caching.cacheable_read() is not None else None
    if read_engine is None:
        yield db.session
        return
    with read_engine.connect() as conn:
        yield conn


def rows(statement, params=None):
    """Run a read-only statement on `connection()`; return all its rows."""
    with connection() as conn:
        return conn.execute(statement, params or {}).all()


def session():
    """The request's ORM Session for reads that load model objects; in a cacheable GET, in autocommit.

    The Session's connection is switched before its first statement, unless the request
    already began a transaction (the fast path loading role ids), which is kept.
    """
    from app.extensions import db

    if caching.cacheable_read() is not None and not db.session().in_transaction():
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return db.session


def dispose(app):
    """Close the pooled connections of `app`'s read engine (tests, shutdown)."""
    found = app.extensions.get(ENGINE_KEY)
    if found:
        found.dispose()
