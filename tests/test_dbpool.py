"""Pooled PostgreSQL connections checked at checkout without a round trip (app/dbpool.py)."""

import time

import psycopg
import pytest
import sqlalchemy as sa

from app import dbpool


class Pings:
    """Counts the dialect's pings of `engine` while active (optionally failing the first ones)."""

    def __init__(self, engine, fail=0):
        self.dialect, self.fail, self.count = engine.dialect, fail, 0

    def __enter__(self):
        self.original = self.dialect.do_ping

        def counting(dbapi_connection):
            self.count += 1
            if self.fail:
                self.fail -= 1
                raise psycopg.OperationalError("ping lost (test)")
            return self.original(dbapi_connection)

        self.dialect.do_ping = counting
        return self

    def __exit__(self, *exc):
        self.dialect.do_ping = self.original


def backend_pid(engine):
    """The server pid of the connection the pool hands out next (returned at once)."""
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def terminate(url, pids):
    """End the server sessions `pids` from another connection and wait until they are gone."""
    with psycopg.connect(url, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)).fetchone()[0]:
            assert time.monotonic() < deadline, "terminated sessions did not end"
            time.sleep(0.02)


@pytest.fixture()
def engine_for(database_url):
    """engine_for(ping_idle_seconds) -> a one-connection engine with app/dbpool.py installed."""
    from config import normalise_db_url

    made = []

    def build(ping_idle_seconds):
        engine = sa.create_engine(normalise_db_url(database_url), pool_size=1, max_overflow=0)
        dbpool.install(engine, ping_idle_seconds)
        made.append(engine)
        return engine

    yield build
    for engine in made:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_handed_out_without_a_ping(engine_for):
    engine = engine_for(3600)
    first = backend_pid(engine)
    with Pings(engine) as pings:
        assert [backend_pid(engine) for _ in range(5)] == [first] * 5
    assert pings.count == 0


def test_a_connection_idle_past_the_limit_is_pinged_before_use(engine_for):
    engine = engine_for(0)
    backend_pid(engine)
    with Pings(engine) as pings:
        backend_pid(engine)
        backend_pid(engine)
    assert pings.count == 2


def test_a_failed_ping_replaces_the_connection_before_the_caller_sees_it(engine_for):
    engine = engine_for(0)
    first = backend_pid(engine)
    with Pings(engine, fail=1) as pings:
        second = backend_pid(engine)
    assert pings.count == 1  # the new connection is not pinged: it was just opened
    assert second != first


def test_a_session_the_server_ended_is_replaced_without_a_ping(engine_for, database_url):
    engine = engine_for(3600)
    first = backend_pid(engine)
    terminate(database_url, [first])
    with Pings(engine) as pings:
        second = backend_pid(engine)
    assert second != first
    assert pings.count == 0  # the closed socket told, no round trip needed


def test_requests_after_the_server_ended_every_pooled_session_answer_200(app, db, client, auth, database_url):
    """A restart (or pg_terminate_backend) between requests costs no request a 500."""
    from app import reads

    assert client.get("/api/customers", headers=auth("manager")).status_code == 200
    pids = []
    # The app's pool and the read engine's (app/reads.py: the list itself runs there).
    for engine in (db.engine, reads.engine(app)):
        held = [engine.raw_connection() for _ in range(engine.pool.checkedin())]
        pids += [c.driver_connection.info.backend_pid for c in held]
        for c in held:
            c.close()
        assert held, engine
    terminate(database_url, pids)
    for _ in range(len(pids) + 2):
        resp = client.get("/api/customers", headers=auth("manager"))
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]


def test_sqlite_engines_are_left_alone(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    dbpool.install(engine, 0)
    assert not engine.pool.dispatch.checkout
    engine.dispose()
