"""The calendar: its feed through the scope rule, rescheduling through the services, refusals."""

import re
from datetime import timedelta

import sqlalchemy as sa

from models import AuditLog, Meeting, Task
from models.base import utcnow
from models.outbox import OutboxEvent
from tests.helpers import reload
from tests.test_api_caching import issue


def _range(first, last):
    # A narrow range around the test's own rows: the session's database holds every other
    # test's meetings and tasks too, and the feed answers at most MAX_ITEMS of each kind.
    fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S") + "Z"  # noqa: E731
    return {"start": fmt(first - timedelta(minutes=1)), "end": fmt(last + timedelta(minutes=1))}


def _feed(client, around=None, until=None, **params):
    around = around or utcnow()
    return client.get("/calendar/feed", query_string={**_range(around, until or around), **params})


def _ids(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {item["id"]: item for item in resp.get_json()}


def _move(client, body, csrf=True):
    headers = {"X-CSRFToken": client.form_token()} if csrf else {}
    return client.post("/calendar/move", json=body, headers=headers)


def test_the_page_loads_fullcalendar_locally_with_nonces_and_no_inline_script(browser_login):
    resp = browser_login("sales").get("/calendar/")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'id="crm-calendar"' in html and 'data-feed="/calendar/feed"' in html and 'data-csrf="' in html
    scripts = re.findall(r"<script[^>]*>", html)
    assert any("vendor/fullcalendar.global.min.js" in s for s in scripts)
    assert all("nonce=" in s for s in scripts)
    assert all("src=" in s for s in scripts), "no inline scripts under the CSP"
    assert "//cdn" not in html
    # Only those who see every record are offered the team's calendar.
    assert "crm-calendar-who" not in html
    assert "crm-calendar-who" in browser_login("manager").get("/calendar/").get_data(as_text=True)


def test_feed_scope_sales_sales2_and_manager(browser_login, make, users, db):
    soon = utcnow() + timedelta(days=1)
    mine = make.meeting("sales", title="暦の自分の商談", scheduled_at=soon)
    my_task = make.task("sales", title="暦の自分のタスク", due_date=soon)
    theirs = make.meeting("sales2", title="暦の他人の商談", scheduled_at=soon)
    their_task = make.task("sales2", title="暦の他人のタスク", due_date=soon)
    cancelled = make.meeting("sales", title="中止", scheduled_at=soon, status="cancelled")
    cancelled_task = make.task("sales", title="中止タスク", due_date=soon, status="CANCELLED")
    gone_customer = make.customer("sales")
    gone = make.meeting("sales", customer=gone_customer, scheduled_at=soon)
    gone_customer = reload(db, type(gone_customer), gone_customer.id)
    gone_customer.deleted_at = utcnow()
    db.session.commit()
    far = make.meeting("sales", scheduled_at=utcnow() + timedelta(days=40))

    sales = _ids(_feed(browser_login("sales"), soon))
    assert f"meeting:{mine.id}" in sales and f"task:{my_task.id}" in sales
    for hidden in (theirs, cancelled, gone, far):
        assert f"meeting:{hidden.id}" not in sales
    assert f"task:{their_task.id}" not in sales and f"task:{cancelled_task.id}" not in sales
    assert sales[f"meeting:{mine.id}"]["editable"] is True
    assert sales[f"meeting:{mine.id}"]["url"] == f"/meetingview/show/{mine.id}"
    # The team view of a Sales user is still their own scope.
    assert f"meeting:{theirs.id}" not in _ids(_feed(browser_login("sales"), soon, who="team"))

    sales2 = _ids(_feed(browser_login("sales2"), soon))
    assert f"meeting:{theirs.id}" in sales2 and f"meeting:{mine.id}" not in sales2

    manager = browser_login("manager")
    team = _ids(_feed(manager, soon, who="team"))
    assert {f"meeting:{mine.id}", f"meeting:{theirs.id}", f"task:{my_task.id}", f"task:{their_task.id}"} <= set(team)
    assert f"meeting:{cancelled.id}" not in team and f"meeting:{gone.id}" not in team
    assert team[f"meeting:{theirs.id}"]["editable"] is True
    # "Mine" for the Manager: what they hold themselves, not the reps' records.
    assert f"meeting:{mine.id}" not in _ids(_feed(manager, soon, who="mine"))
    # Compliance reads everything and changes nothing.
    compliance = _ids(_feed(browser_login("compliance"), soon, who="team"))
    assert compliance[f"meeting:{mine.id}"]["editable"] is False


def test_reschedule_writes_audit_outbox_and_invalidates_the_api_cache(app, browser_login, make, users, db, client, redis_cache):
    meeting = make.meeting("sales", scheduled_at=utcnow() + timedelta(days=1))
    # A token issued now: the session's token predates other tests' permission changes, and a
    # token with a stale auth epoch is judged on the slow path, which stores but never reads.
    headers = issue(app, users["sales"].id)
    api = f"/api/meetings?customerId={meeting.customer_id}"
    first = client.get(api, headers=headers).get_json()["data"][0]["scheduledAt"]
    from app import caching

    # As tests/test_api_v1_read_path.warm: a few reads until one is answered from the cache.
    for _ in range(4):
        hits = caching.stats()["hits"]
        assert client.get(api, headers=headers).get_json()["data"][0]["scheduledAt"] == first
        if caching.stats()["hits"] > hits:
            break
    else:
        raise AssertionError("the /api answer is never served from the cache before the move")
    target = (utcnow() + timedelta(days=5)).replace(microsecond=0)
    resp = _move(browser_login("sales"), {"kind": "meeting", "id": meeting.id, "start": target.isoformat()})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert reload(db, Meeting, meeting.id).scheduled_at == target
    audit = db.session.execute(
        sa.select(AuditLog).where(AuditLog.resource_id == meeting.id, AuditLog.action == "UPDATE")
    ).scalar_one()
    assert audit.user_id == users["sales"].id and "scheduled_at" in audit.changes["after"]
    assert db.session.execute(
        sa.select(OutboxEvent).where(OutboxEvent.aggregate_id == meeting.id, OutboxEvent.type == "MEETING_UPDATED")
    ).scalar_one()
    after = client.get(api, headers=headers).get_json()["data"][0]["scheduledAt"]
    assert after != first and after.startswith(target.strftime("%Y-%m-%dT%H:%M"))


def test_reschedule_a_task_due_date(browser_login, make, users, db):
    task = make.task("sales", due_date=utcnow() + timedelta(days=1))
    target = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    resp = _move(browser_login("sales"), {"kind": "task", "id": task.id, "start": target.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert resp.status_code == 200
    assert reload(db, Task, task.id).due_date == target
    assert db.session.execute(
        sa.select(OutboxEvent).where(OutboxEvent.aggregate_id == task.id, OutboxEvent.type == "TASK_UPDATED")
    ).scalar_one()


def _unchanged(db, model, row, column):
    fresh = reload(db, model, row.id)
    return getattr(fresh, column) == getattr(row, column)


def test_forged_moves_are_refused_and_change_nothing(browser_login, make, users, db):
    theirs = make.meeting("sales2", scheduled_at=utcnow() + timedelta(days=1))
    their_task = make.task("sales2", due_date=utcnow() + timedelta(days=1))
    target = (utcnow() + timedelta(days=9)).isoformat()
    sales = browser_login("sales")
    assert _move(sales, {"kind": "meeting", "id": theirs.id, "start": target}).status_code == 404
    assert _move(sales, {"kind": "task", "id": their_task.id, "start": target}).status_code == 404
    assert _move(sales, {"kind": "meeting", "id": "no-such-id", "start": target}).status_code == 404
    assert _move(browser_login("compliance"), {"kind": "meeting", "id": theirs.id, "start": target}).status_code == 403
    # Without the CSRF token the POST is refused before it reaches the service.
    assert _move(browser_login("sales2"), {"kind": "meeting", "id": theirs.id, "start": target}, csrf=False).status_code == 400
    assert _unchanged(db, Meeting, theirs, "scheduled_at") and _unchanged(db, Task, their_task, "due_date")
    assert db.session.execute(
        sa.select(AuditLog.id).where(AuditLog.resource_id.in_([theirs.id, their_task.id]), AuditLog.action == "UPDATE")
    ).first() is None


def test_bad_input_is_a_400_naming_the_field(browser_login, make, db):
    c = browser_login("sales")
    for params, field in (
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-02-30T00:00:00Z"}, "end"),
        ({"start": "2026-03-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}, "end"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}, "end"),
        ({"who": "everyone"}, "who"),
    ):
        resp = _feed(c, **params)
        assert resp.status_code == 400, params
        assert field in resp.get_json()["details"], (params, resp.get_json())
    assert c.get("/calendar/feed").status_code == 400
    meeting = make.meeting("sales")
    for body, field in (
        ({"kind": "meeting", "id": meeting.id, "start": "not a date"}, "start"),
        ({"kind": "meeting", "id": meeting.id}, "start"),
        ({"kind": "party", "id": meeting.id, "start": "2026-12-01T10:00:00Z"}, "kind"),
        ({"kind": "meeting", "start": "2026-12-01T10:00:00Z"}, "id"),
        ({"kind": "meeting", "id": meeting.id, "start": "0001-01-01T00:00:00Z"}, "start"),
    ):
        resp = _move(c, body)
        assert resp.status_code == 400, body
        assert field in resp.get_json()["details"], (body, resp.get_json())
    resp = c.post("/calendar/move", data="[1, 2]", content_type="application/json", headers={"X-CSRFToken": c.form_token()})
    assert resp.status_code == 400
    assert _unchanged(db, Meeting, meeting, "scheduled_at")


def test_cached_feed_is_per_caller_and_roles_and_follows_a_move(browser_login, make, users, db, redis_cache):
    from app import caching

    when = (utcnow() + timedelta(days=20)).replace(microsecond=0)
    target = when + timedelta(days=1)
    meeting = make.meeting("sales", scheduled_at=when)
    key = f"meeting:{meeting.id}"
    span = {"around": when, "until": target}
    sales = browser_login("sales")
    first = _ids(_feed(sales, **span))[key]["start"]
    hits = caching.stats()["hits"]
    assert _ids(_feed(sales, **span))[key]["start"] == first
    assert caching.stats()["hits"] > hits, "the second read is a cache hit"
    # Same query, other callers: never the Sales user's answer, nor the Manager's for Compliance.
    assert key not in _ids(_feed(browser_login("sales2"), **span))
    assert _ids(_feed(browser_login("manager"), who="team", **span))[key]["editable"] is True
    assert _ids(_feed(browser_login("compliance"), who="team", **span))[key]["editable"] is False
    assert _move(sales, {"kind": "meeting", "id": meeting.id, "start": target.isoformat()}).status_code == 200
    assert _ids(_feed(sales, **span))[key]["start"] == target.strftime("%Y-%m-%dT%H:%M:%SZ")
