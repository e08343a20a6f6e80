"""Rules for customers, meetings and tasks: ownership, scope of references, derived fields.

Screens (pre_add / pre_update hooks), the generated API, the /api blueprint and workers
call these before the row is written, so a rule holds whatever the entry point.
"""

from datetime import timezone

import sqlalchemy as sa
from sqlalchemy.orm.attributes import get_history

from flask_appbuilder.security.sqla.models import User

from app.emails import normalise_email
from app.extensions import db
from app.roles import CUSTOMER, EDIT, MEETING, ROLE_PERMISSIONS, TASK
from app.scope import ADMIN, SALES, in_scope, role_names, sees_all
from app.services.errors import Conflict, NotFound, ValidationFailed
from models.base import utcnow
from models.customer import Customer
from models.meeting import MeetingStatus, MeetingType
from models.task import TaskStatus


def is_sales_only(user):
    """True when `user` is limited to their own rows."""
    return SALES in role_names(user) and not sees_all(user)


def _user_id(value):
    return getattr(value, "id", value)


def related_id(obj, column, relation):
    """The id `obj` will refer to through `column` / `relation` when it is flushed.

    FAB's forms and generated API set the relationship (`task.user = <User 3>`) while
    the id column keeps its old value until flush; the /api blueprint sets the column.
    At flush a changed relationship wins, so the rules judge its target, else the column.
    """
    # get_history reads the one attribute (inspect(obj).attrs would build a state for each of them).
    history = get_history(obj, relation)
    if history.added or (history.deleted and not history.unchanged):
        target = history.added[0] if history.added else None
        return getattr(target, "id", None)
    return getattr(obj, column)


def _set_related(obj, column, relation, model, value):
    """Point `obj` at row `value` of `model` through both the column and the relationship."""
    setattr(obj, relation, db.session.get(model, value) if value is not None else None)
    setattr(obj, column, value)


def require_customer_in_scope(customer_id, user, field="customerId"):
    """Return the customer `customer_id` if `user` may see it, else raise (404-style 400)."""
    if not customer_id:
        raise ValidationFailed("customer is required", field=field)
    customer = db.session.get(Customer, str(customer_id))
    if customer is None or not in_scope(customer, user):
        raise ValidationFailed("customer not found", field=field)
    return customer


def may_own(user, resource):
    """True when `user` may be handed a `resource` row: active, and a role that edits it.

    An owner works on what they own; Compliance only reads customers, meetings and
    tasks (and reviews their requests), so a row handed to them would sit where
    nobody who holds it can act on it.
    """
    if user is None or not user.active:
        return False
    names = role_names(user)
    return ADMIN in names or any(EDIT in ROLE_PERMISSIONS.get(name, {}).get(resource, ()) for name in names)


def _own_only(obj, column, relation, user, field, resource):
    """Sales users may only own rows themselves; others default to themselves or hand rows to a possible owner.

    The owner is judged on every write, not only when it changes: an earlier flush in the
    same transaction (any query autoflushes) erases the history that would tell.
    """
    uid = _user_id(user)
    current = related_id(obj, column, relation)
    if current is None:
        _set_related(obj, column, relation, User, uid)
        return
    if is_sales_only(user) and current != uid:
        raise ValidationFailed("sales users can only assign records to themselves", field=field)
    if current == uid:
        return
    try:
        assignee = db.session.get(User, int(current))
    except (TypeError, ValueError):
        assignee = None
    if assignee is None or not assignee.active:
        raise ValidationFailed("no active user with this id", field=field)
    if not may_own(assignee, resource):
        raise ValidationFailed("this user's role cannot own these records (only roles that edit them can)", field=field)
    _set_related(obj, column, relation, User, assignee.id)


def prepare_customer(customer, user, creating, email_free=False):
    """Validate a customer about to be written by `user` and fill owner fields.

    `email_free`: the caller has already looked the address up among live customers (an
    import does it for a whole batch in one query), so the one-row look-up is skipped; the
    unique index on live e-mails still refuses a duplicate at flush.
    """
    if not (customer.name or "").strip():
        raise ValidationFailed("name is required", field="name")
    customer.name = customer.name.strip()
    if customer.email is not None and not customer.email.strip():
        customer.email = None
    if customer.email:
        customer.email = normalise_email(customer.email, field="email")
    if customer.email and not email_free:
        clash = db.session.execute(
            sa.select(Customer.id).where(
                Customer.email == customer.email,
                Customer.deleted_at.is_(None),
                Customer.id != (customer.id or ""),
            )
        ).first()
        if clash:
            raise Conflict("a customer with this email already exists", field="email")
    if customer.risk_tolerance is None:
        customer.risk_tolerance = 5
    if not 1 <= int(customer.risk_tolerance) <= 10:
        raise ValidationFailed("riskTolerance must be between 1 and 10", field="riskTolerance")
    if creating:
        customer.created_by_id = customer.created_by_id or _user_id(user)
    _own_only(customer, "assigned_sales_id", "assigned_sales", user, "assignedSalesId", CUSTOMER)


def soft_delete_customer(customer):
    """Mark a customer deleted; its email becomes free for a new customer."""
    if customer.deleted_at is None:
        customer.deleted_at = utcnow()


TITLE_MAX = 200


def meeting_title(summary, customer_name=None):
    """The title of a meeting recorded without one: its summary's first line, else 「商談: {customer}」 (≤ 200 chars)."""
    line = next((part.strip() for part in (summary or "").splitlines() if part.strip()), "")
    title = line or (f"商談: {customer_name}" if customer_name else "商談")
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1] + "…"


def prepare_meeting(meeting, user, creating):
    """Validate a meeting about to be written by `user`; fill owner fields, a missing title and status."""
    if meeting.scheduled_at is None:
        raise ValidationFailed("scheduledAt is required", field="scheduledAt")
    customer = require_customer_in_scope(related_id(meeting, "customer_id", "customer"), user)
    _set_related(meeting, "customer_id", "customer", Customer, customer.id)
    if meeting.title is not None and len(meeting.title) > TITLE_MAX:
        raise ValidationFailed(f"title must be at most {TITLE_MAX} characters", field="title")
    if not (meeting.title or "").strip():
        # The seed's frontend records meetings with a summary and no title.
        meeting.title = meeting_title(meeting.description, customer.name)
    meeting.title = meeting.title.strip()
    if meeting.type is None:
        meeting.type = MeetingType.visit
    if meeting.status is None:
        # A meeting recorded after its date was held; one ahead is still to come.
        at = meeting.scheduled_at if meeting.scheduled_at.tzinfo else meeting.scheduled_at.replace(tzinfo=timezone.utc)
        meeting.status = MeetingStatus.completed if at < utcnow() else MeetingStatus.scheduled
    if creating:
        meeting.created_by_id = meeting.created_by_id or _user_id(user)
    _own_only(meeting, "sales_id", "sales", user, "salesId", MEETING)


def prepare_task(task, user, creating):
    """Validate a task about to be written by `user`; keep completedAt in step with status."""
    if not (task.title or "").strip():
        raise ValidationFailed("title is required", field="title")
    if len(task.title) > 200:
        raise ValidationFailed("title must be at most 200 characters", field="title")
    customer_id = related_id(task, "customer_id", "customer")
    if customer_id:
        customer = require_customer_in_scope(customer_id, user)
        _set_related(task, "customer_id", "customer", Customer, customer.id)
    if creating:
        task.created_by_id = task.created_by_id or _user_id(user)
        task.status = task.status or TaskStatus.TODO
    _own_only(task, "user_id", "user", user, "userId", TASK)
    if task.status == TaskStatus.COMPLETED:
        task.completed_at = task.completed_at or utcnow()
    else:
        task.completed_at = None


def complete_task(task):
    """Mark a task completed now, once: return False when it already was (or another caller just did it).

    A conditional UPDATE decides (`... WHERE status <> 'COMPLETED'`), so two completions at
    the same moment write one completion time and one TASK_COMPLETED event on every
    database; the winner's ORM write of the same values carries the audit row and event.
    """
    from models.task import Task

    if task.status == TaskStatus.COMPLETED:
        return False
    now = utcnow()
    won = db.session.execute(
        sa.update(Task).where(Task.id == task.id, Task.status != TaskStatus.COMPLETED)
        .values(status=TaskStatus.COMPLETED, completed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not won:
        db.session.refresh(task)
        return False
    task.status, task.completed_at = TaskStatus.COMPLETED, now
    return True


def get_in_scope(model, record_id, user):
    """Load one row by id if `user` may see it, else raise NotFound (ids never leak)."""
    obj = db.session.get(model, str(record_id)) if record_id else None
    if obj is None or not in_scope(obj, user):
        raise NotFound(f"{model.__name__} not found")
    return obj
