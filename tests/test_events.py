"""The outbox writer: per-aggregate sequences stay unique under concurrent transactions."""

import threading

import sqlalchemy as sa

from app import events
from models import OutboxEvent


def test_concurrent_writers_of_one_aggregate_get_distinct_sequences(app, db):
    """Eight transactions emit for one aggregate at once: sequences 1..8, no unique violation."""
    aggregate_id = "race-aggregate"
    barrier = threading.Barrier(8)
    errors = []

    def writer():
        with app.app_context():
            try:
                barrier.wait(5)
                events.emit(db.session, "NOTIFY", "user", aggregate_id, {"n": 1})
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                db.session.rollback()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    seqs = db.session.execute(
        sa.select(OutboxEvent.sequence).where(OutboxEvent.aggregate_id == aggregate_id).order_by(OutboxEvent.sequence)
    ).scalars().all()
    assert seqs == list(range(1, 9))


def test_concurrent_logins_of_one_user_all_succeed(app, users):
    """The bench found 500s here: two logins of one user wrote the same USER_LOGGED_IN sequence."""
    from tests.conftest import PASSWORD

    statuses = []
    barrier = threading.Barrier(4)

    def login():
        client = app.test_client()
        barrier.wait(5)
        resp = client.post(
            "/api/v1/security/login",
            json={"username": users["manager"].email, "password": PASSWORD, "provider": "db"},
        )
        statuses.append(resp.status_code)

    threads = [threading.Thread(target=login) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [200] * 4
