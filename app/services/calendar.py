"""The calendar: meetings and task due dates in a time range, and rescheduling one of them.

The feed reads through the one scope rule (app/scope.py) and leaves out cancelled
meetings, cancelled tasks and the records of soft-deleted customers. A move sets the
meeting's date or the task's due date and runs the same rule function as every other
writer (`prepare_meeting` / `prepare_task`), then commits: the audit row, the outbox event
(MEETING_UPDATED / TASK_UPDATED) and the invalidation of cached /api answers come from the
session listeners, as for a screen or /api write.
"""

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app.extensions import db
from app.roles import ADMIN, EDIT, MEETING, ROLE_PERMISSIONS, TASK
from app.scope import in_scope, role_names, scope_clause
from app.services.errors import Forbidden, ValidationFailed
from app.services.records import get_in_scope, prepare_meeting, prepare_task
from models.base import utcnow
from models.customer import Customer
from models.meeting import Meeting, MeetingStatus
from models.task import OPEN_STATUSES, Task, TaskStatus

#: The widest range one feed request may ask (a month view shows six weeks).
MAX_RANGE_DAYS = 62
#: At most this many items of each kind per answer, the earliest first.
MAX_ITEMS = 1000
MINE, TEAM = "mine", "team"
KINDS = {"meeting": (Meeting, MEETING), "task": (Task, TASK)}


def parse_time(value, field):
    """An ISO 8601 date or date-time as an aware UTC time (a date alone is its midnight UTC); 400 naming `field`."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{field} is required", field=field)
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise ValidationFailed(f"{field} must be an ISO 8601 date-time like 2026-04-01T10:00:00+09:00", field=field) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    if not 1900 <= parsed.year <= 9000:
        raise ValidationFailed(f"{field} is out of range", field=field)
    return parsed.astimezone(timezone.utc)


def parse_range(start, end):
    """The feed's visible range, checked: both given, start before end, at most MAX_RANGE_DAYS apart."""
    first, last = parse_time(start, "start"), parse_time(end, "end")
    if last <= first:
        raise ValidationFailed("end must be after start", field="end")
    if last - first > timedelta(days=MAX_RANGE_DAYS):
        raise ValidationFailed(f"the range may span at most {MAX_RANGE_DAYS} days", field="end")
    return first, last


def role_edits(user, resource):
    """True when one of `user`'s roles may edit `resource` rows (MEETING or TASK) at all."""
    names = role_names(user)
    return ADMIN in names or any(EDIT in ROLE_PERMISSIONS.get(name, {}).get(resource, ()) for name in names)


def may_edit(obj, user):
    """True when `user` may change `obj` (a meeting or task): in their scope and a role that edits it."""
    return in_scope(obj, user) and role_edits(user, MEETING if isinstance(obj, Meeting) else TASK)


def _live_customer(column):
    """Rows without a customer, or whose customer is not soft-deleted.

    Asked as "not among the (few) deleted customers" rather than by joining every row's
    customer: the join then reads only the names of the rows answered, after the LIMIT.
    """
    deleted = sa.select(Customer.id).where(Customer.deleted_at.is_not(None))
    return sa.or_(column.is_(None), column.not_in(deleted))


def _items(model, at, owner, user, first, last, excluded_status, who):
    """Up to MAX_ITEMS rows of `model` (meetings or tasks) with their time `at` in [first, last), earliest first."""
    stmt = sa.select(model.id, model.title, at.label("at"), model.status, model.customer_id).where(
        scope_clause(model, user), at >= first, at < last, model.status != excluded_status, _live_customer(model.customer_id)
    )
    if who == MINE:
        stmt = stmt.where(owner == user.id)
    page = stmt.order_by(at, model.id).limit(MAX_ITEMS).subquery()
    named = (
        sa.select(page.c.id, page.c.title, page.c.at, page.c.status, Customer.name.label("customer"))
        .outerjoin(Customer, Customer.id == page.c.customer_id)
        .order_by(page.c.at, page.c.id)
    )
    return db.session.execute(named).all()


def _meetings(user, first, last, who):
    return _items(Meeting, Meeting.scheduled_at, Meeting.sales_id, user, first, last, MeetingStatus.cancelled, who)


def _tasks(user, first, last, who):
    return _items(Task, Task.due_date, Task.user_id, user, first, last, TaskStatus.CANCELLED, who)


def iso_utc(moment):
    """`moment` as an ISO 8601 UTC string ending in Z (what FullCalendar reads and the move answers)."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def feed(user, start, end, who=MINE):
    """The calendar items of `user` between `start` and `end` (ISO strings): FullCalendar event dicts.

    `who`: "mine" (the meetings I hold, the tasks I own) or "team" (everything in my scope:
    all for Managers, Compliance and Admins; a Sales user's scope is their own rows anyway).
    Each item says whether this user may move it (`editable`): every row read is in the
    user's scope, so that is whether their role edits meetings (tasks) at all.
    """
    if who not in (MINE, TEAM):
        raise ValidationFailed("who must be mine or team", field="who")
    first, last = parse_range(start, end)
    now = utcnow()
    items = []
    edit_meetings, edit_tasks = role_edits(user, MEETING), role_edits(user, TASK)
    for meeting in _meetings(user, first, last, who):
        items.append(
            {
                "id": f"meeting:{meeting.id}",
                "title": meeting.title,
                "start": iso_utc(meeting.at),
                "editable": edit_meetings,
                "durationEditable": False,
                "classNames": ["cal-meeting", f"cal-meeting-{meeting.status.value}"],
                "extendedProps": {"kind": "meeting", "recordId": meeting.id, "customer": meeting.customer, "status": meeting.status.value},
            }
        )
    for task in _tasks(user, first, last, who):
        overdue = task.status in OPEN_STATUSES and task.at < now
        items.append(
            {
                "id": f"task:{task.id}",
                "title": task.title,
                "start": iso_utc(task.at),
                "editable": edit_tasks,
                "durationEditable": False,
                "classNames": ["cal-task", f"cal-task-{task.status.value.lower()}"] + (["cal-overdue"] if overdue else []),
                "extendedProps": {"kind": "task", "recordId": task.id, "customer": task.customer, "status": task.status.value},
            }
        )
    return items


def reschedule(kind, record_id, start, user):
    """Move meeting or task `record_id` to `start` as `user`; return the row (committed).

    Outside the user's scope: NotFound (404, ids never leak); in scope but not theirs to
    change (Compliance reads only): Forbidden. Nothing is written when either is raised.
    """
    if kind not in KINDS:
        raise ValidationFailed("kind must be meeting or task", field="kind")
    if not isinstance(record_id, str) or not record_id.strip():
        raise ValidationFailed("id is required", field="id")
    moment = parse_time(start, "start")
    model, _resource = KINDS[kind]
    obj = get_in_scope(model, record_id.strip(), user)
    if not may_edit(obj, user):
        raise Forbidden(f"you may not change this {kind}")
    if kind == "meeting":
        obj.scheduled_at = moment
        prepare_meeting(obj, user, False)
    else:
        obj.due_date = moment
        prepare_task(obj, user, False)
    db.session.commit()
    return obj
