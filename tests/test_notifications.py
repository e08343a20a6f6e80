"""app/services/notifications.py: read marks, once, at the same moment, on every database."""

import threading

import sqlalchemy as sa

from models import Notification
from models.notification import NotificationType


def test_two_reads_at_once_keep_the_first_time_on_every_database(every_db):
    from app.extensions import db
    from app.services.notifications import mark_read

    application, people = every_db
    with application.app_context():
        note = Notification(user_id=people["sales"].id, type=NotificationType.SYSTEM, title="同時に既読")
        db.session.add(note)
        db.session.commit()
        note_id = note.id
        db.session.remove()
    barrier, outcomes = threading.Barrier(2), []

    def read():
        with application.app_context():
            row = db.session.get(Notification, note_id)
            assert not row.is_read
            barrier.wait()  # both saw it unread before either writes
            won = mark_read(row)
            outcomes.append((won, row.read_at))
            db.session.commit()
            db.session.remove()

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(won for won, _ in outcomes) == [False, True]
    with application.app_context():
        stored = db.session.get(Notification, note_id)
        assert stored.is_read
        # The loser answered with the stored time too, not a time of its own.
        assert {at for _, at in outcomes} == {stored.read_at}
        db.session.remove()


def test_api_read_twice_keeps_the_first_time(client, auth, users, db):
    note = Notification(user_id=users["sales"].id, type=NotificationType.SYSTEM, title="既読テスト")
    db.session.add(note)
    db.session.commit()
    first = client.put(f"/api/notifications/{note.id}/read", headers=auth("sales"))
    again = client.put(f"/api/notifications/{note.id}/read", headers=auth("sales"))
    assert first.status_code == again.status_code == 200
    assert first.json["data"]["readAt"] and again.json["data"]["readAt"] == first.json["data"]["readAt"]
    assert db.session.execute(sa.select(Notification.is_read).where(Notification.id == note.id)).scalar() is True
