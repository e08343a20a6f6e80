"""Pooled PostgreSQL connections checked without a round trip per request.

SQLAlchemy's `pool_pre_ping` runs `SELECT 1` at every checkout: one more round trip to
PostgreSQL on every request, before its own statements, to learn what the socket can
mostly tell without one. Instead, at checkout:

- the connection's socket is polled without waiting: a server that ended the session
  (restart, `pg_terminate_backend`, `idle_session_timeout`) has sent its goodbye and closed
  the socket, so the socket reads as ready and the connection is replaced, at no round trip;
- a connection that sat in the pool longer than `ping_idle_seconds` is pinged as well,
  which also catches a peer that vanished without closing (a dropped NAT entry or a
  firewall's idle timeout) before a request runs on it.

Either failure raises `DisconnectionError`, on which the pool discards the connection and
checks out another (SQLAlchemy's documented checkout protocol), so the request never sees it.
"""

import select
import time

from sqlalchemy import event, exc

CHECKED_IN = "crm_checked_in"


def install(engine, ping_idle_seconds):
    """Check `engine`'s pooled PostgreSQL connections at checkout (see the module doc)."""
    if engine.dialect.name != "postgresql":
        return
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _remember_checkin(dbapi_connection, record):
        record.info[CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection, record, proxy):
        checked_in = record.info.pop(CHECKED_IN, None)
        if checked_in is None:  # a connection just opened: nothing to check
            return
        if server_hung_up(dbapi_connection):
            raise exc.DisconnectionError("the server closed this pooled connection")
        if time.monotonic() - checked_in >= ping_idle_seconds:
            try:
                dialect.do_ping(dbapi_connection)
            except dialect.loaded_dbapi.Error as err:
                raise exc.DisconnectionError(f"ping failed: {err}") from err


def server_hung_up(dbapi_connection):
    """True when an idle psycopg connection's socket has something to read (or is closed).

    An idle session receives nothing unprompted from PostgreSQL except the notice it sends
    when it ends the session (this app uses no LISTEN), so readable means gone.
    """
    if dbapi_connection.closed:
        return True
    try:
        fd = dbapi_connection.pgconn.socket
    except Exception:  # psycopg raises when libpq has no socket any more
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))
