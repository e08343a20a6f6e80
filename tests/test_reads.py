"""The read engine of cacheable GETs (app/reads.py); the /api behaviour is in test_api_caching.py."""

import sqlalchemy as sa

from app import reads


def test_read_engine_only_on_postgresql_and_only_in_cacheable_reads(app, db):
    """Outside a cacheable GET (writes, screens, workers) reads run on the Session, in its transaction."""
    engine = reads.engine(app)
    assert engine is not None and engine is not db.engine and engine.url == db.engine.url
    assert engine.dialect.name == "postgresql"
    with reads.connection() as conn:
        assert conn is db.session
    with app.test_request_context("/api/customers", method="GET"):
        with reads.connection() as conn:
            assert isinstance(conn, sa.engine.Connection) and conn.engine is engine
            assert conn.connection.driver_connection.autocommit
    with app.test_request_context("/api/customers", method="POST"):
        with reads.connection() as conn:
            assert conn is db.session


def test_rows_and_session_outside_a_cacheable_read_use_the_callers_transaction(app, db, make):
    """A write's own reads see what it has not committed yet."""
    from models import Customer

    customer = make.customer("sales")
    customer.name = "未確定の名前"
    db.session.flush()
    stmt = sa.select(Customer.name).where(Customer.id == customer.id)
    assert reads.rows(stmt) == [("未確定の名前",)]
    assert reads.session() is db.session and db.session().in_transaction()
    db.session.rollback()


def test_dispose_closes_the_pool(app):
    engine = reads.engine(app)
    with engine.connect() as conn:
        conn.execute(sa.select(1))
    assert engine.pool.checkedin() >= 1
    reads.dispose(app)
    assert engine.pool.checkedin() == 0
