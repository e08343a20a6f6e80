"""app/services/timeline.py: one customer's activity from the audit log, scoped and paged."""

import pytest

from app.context import acting_as
from app.services import approvals
from app.services.errors import NotFound, ValidationFailed
from app.services.timeline import customer_timeline
from tests.helpers import reload


def test_pages_walk_every_item_once_newest_first(make, users, db):
    customer = make.customer("sales")
    for i in range(7):
        make.task("sales", customer=customer, title=f"頁タスク{i}")
    seen, before, pages = [], None, 0
    while True:
        page = customer_timeline(customer.id, users["sales"], before=before, limit=3)
        seen.extend(page.items)
        pages += 1
        if not page.more:
            break
        before = page.more
    ids = [item.id for item in seen]
    assert len(ids) == len(set(ids))
    stamps = [(item.at, item.id) for item in seen]
    assert stamps == sorted(stamps, reverse=True)
    # The customer's creation, 7 tasks and the first-contact task of the reaction.
    titles = {item.title for item in seen}
    assert {f"頁タスク{i}" for i in range(7)} <= titles and customer.name in titles
    assert pages >= 3


def test_scope_leaves_out_records_the_user_may_not_see(make, users, db):
    customer = make.customer("sales")
    make.task("sales2", customer=customer, title="他人の記録")
    mine = {i.title for i in customer_timeline(customer.id, users["sales"]).items}
    assert "他人の記録" not in mine
    assert "他人の記録" in {i.title for i in customer_timeline(customer.id, users["manager"]).items}
    with pytest.raises(NotFound):
        customer_timeline(customer.id, users["sales2"])


def test_decisions_with_comment_and_status_change(make, users, db):
    req = make.approval("sales", amount=500_000)
    with acting_as(users["manager"]):
        approvals.reject(req.id, users["manager"], "書類が不足")
    items = customer_timeline(req.customer_id, users["sales"]).items
    rejected = [i for i in items if i.action == "REJECT"]
    assert len(rejected) == 1
    item = rejected[0]
    assert item.comment == "書類が不足" and item.who == "Manager User" and item.title == "国内株式ファンド"
    assert [(c.field, c.before, c.after) for c in item.changes] == [("status", "PENDING", "REJECTED")]


def test_updates_carry_before_and_after_without_bookkeeping(make, users, db):
    meeting = make.meeting("sales", title="旧件名")
    fresh = reload(db, type(meeting), meeting.id)
    with acting_as(users["sales"]):
        fresh.title = "新件名"
        db.session.commit()
    update = next(i for i in customer_timeline(meeting.customer_id, users["sales"]).items if i.action == "UPDATE")
    assert [(c.field, c.before, c.after) for c in update.changes] == [("title", "旧件名", "新件名")]
    assert update.title == "新件名" and update.who == "Sales User"


@pytest.mark.parametrize("cursor", ["nonsense", "2026-01-01T00:00:00|", "2026-01-01T00:00:00|x", "|abc"])
def test_a_bad_cursor_is_refused_naming_before(make, users, db, cursor):
    customer = make.customer("sales")
    with pytest.raises(ValidationFailed) as err:
        customer_timeline(customer.id, users["sales"], before=cursor)
    assert err.value.field == "before"


def test_the_page_refuses_a_bad_cursor_with_400(browser_login, make):
    customer = make.customer("sales")
    resp = browser_login("sales").get(f"/customerview/show/{customer.id}?before=garbage")
    assert resp.status_code == 400 and "before" in resp.get_data(as_text=True)


def test_the_page_links_to_older_activity(browser_login, make, db, monkeypatch):
    from app.services import timeline

    monkeypatch.setattr(timeline, "PAGE_SIZE", 2)
    customer = make.customer("sales")
    for i in range(3):
        make.task("sales", customer=customer, title=f"古い順{i}")
    c = browser_login("sales")
    html = c.get(f"/customerview/show/{customer.id}").get_data(as_text=True)
    assert "timeline-more" in html


def test_the_page_queries_run_on_sqlite_too(sqlite_app, sqlite_users):
    """`make run`'s embedded default: the UNION of limited arms, row-value cursors, window totals, the feed."""
    from datetime import timedelta

    from app.extensions import db as sqlite_db
    from app.services import calendar, customer_overview
    from models import Customer, Meeting
    from models.base import utcnow

    user = sqlite_users["sales"]
    with sqlite_app.app_context(), acting_as(user):
        customer = Customer(name="株式会社SQLite", assigned_sales_id=user.id, created_by_id=user.id)
        sqlite_db.session.add(customer)
        sqlite_db.session.flush()
        sqlite_db.session.add(Meeting(customer_id=customer.id, sales_id=user.id, created_by_id=user.id, title="SQLite商談", scheduled_at=utcnow() + timedelta(hours=1)))
        sqlite_db.session.commit()
        first = customer_timeline(customer.id, user, limit=1)
        assert len(first.items) == 1 and first.more
        rest = customer_timeline(customer.id, user, before=first.more, limit=50)
        assert {i.id for i in rest.items}.isdisjoint({i.id for i in first.items}) and rest.items
        related = customer_overview.related_records(customer, user)
        assert related["meetings"].total == 1 and related["meetings"].rows[0].title == "SQLite商談"
        start, end = (utcnow() - timedelta(days=1)).isoformat(), (utcnow() + timedelta(days=1)).isoformat()
        assert any(item["title"] == "SQLite商談" for item in calendar.feed(user, start, end))


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_files_follow_their_records_scope_on_the_timeline(make, users, db, attachment_storage):
    """A file added and deleted on the customer shows twice; one on another rep's meeting about it only to those who see that meeting."""
    import io

    from app.services import attachments
    from models.attachment import OwnerType

    customer = make.customer("sales")
    theirs = make.meeting("sales2", customer=customer, title="他人の商談")

    def add(kind, owner_id, who, name):
        with acting_as(users[who]):
            return attachments.upload(kind, owner_id, users[who], lambda: (io.BytesIO(b"%PDF-1.4 x"), name))

    mine = add(OwnerType.customer, customer.id, "sales", "自分の提案書.pdf")
    with acting_as(users["sales"]):
        attachments.delete(OwnerType.customer, customer.id, mine.id, users["sales"])
    add(OwnerType.meeting, theirs.id, "sales2", "他人の資料.pdf")
    files = [(i.action, i.title) for i in customer_timeline(customer.id, users["sales"]).items if i.resource == "attachment"]
    assert files == [("DELETE", "自分の提案書.pdf"), ("CREATE", "自分の提案書.pdf")]
    seen_by_manager = {i.title for i in customer_timeline(customer.id, users["manager"]).items if i.resource == "attachment"}
    assert seen_by_manager == {"自分の提案書.pdf", "他人の資料.pdf"}
