"""Rules for customers, meetings and tasks: ownership, scope of references, derived fields.

Screens (pre_add / pre_update hooks), the generated API, the /api blueprint and workers
call these before the row is written, so a rule holds whatever the entry point.
"""

import re
from datetime import timezone

import sqlalchemy as sa

from flask_appbuilder.security.sqla.models import User

from app.extensions import db
from app.scope import SALES, in_scope, role_names, sees_all
from app.services.errors import Conflict, NotFound, ValidationFailed
from models.base import utcnow
from models.customer import Customer
from models.meeting import MeetingStatus, MeetingType
from models.task import TaskStatus

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def is_sales_only(user):
    """True when `user` is limited to their own rows."""
    return SALES in role_names(user) and not sees_all(user)


def _user_id(value):
    return getattr(value, "id", value)


def require_customer_in_scope(customer_id, user, field="customerId"):
    """Return the customer `customer_id` if `user` may see it, else raise (404-style 400)."""
    if not customer_id:
        raise ValidationFailed("customer is required", field=field)
    customer = db.session.get(Customer, str(customer_id))
    if customer is None or not in_scope(customer, user):
        raise ValidationFailed("customer not found", field=field)
    return customer


def _own_only(obj, column, relation, user, field):
    """Sales users may only set `column` to themselves; others default to themselves."""
    uid = _user_id(user)
    current = getattr(obj, column) or _user_id(getattr(obj, relation, None))
    if current is None:
        setattr(obj, column, uid)
    elif is_sales_only(user) and current != uid:
        raise ValidationFailed("sales users can only assign records to themselves", field=field)
    elif current != uid:
        assignee = db.session.get(User, current)
        if assignee is None or not assignee.active:
            raise ValidationFailed("no active user with this id", field=field)


def prepare_customer(customer, user, creating):
    """Validate a customer about to be written by `user` and fill owner fields."""
    if not (customer.name or "").strip():
        raise ValidationFailed("name is required", field="name")
    customer.name = customer.name.strip()
    if customer.email:
        customer.email = customer.email.strip().lower()
        if not EMAIL_RE.match(customer.email):
            raise ValidationFailed("email is not a valid address", field="email")
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
    _own_only(customer, "assigned_sales_id", "assigned_sales", user, "assignedSalesId")


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
    customer = require_customer_in_scope(meeting.customer_id or _user_id(meeting.customer), user)
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
    _own_only(meeting, "sales_id", "sales", user, "salesId")


def prepare_task(task, user, creating):
    """Validate a task about to be written by `user`; keep completedAt in step with status."""
    if not (task.title or "").strip():
        raise ValidationFailed("title is required", field="title")
    if len(task.title) > 200:
        raise ValidationFailed("title must be at most 200 characters", field="title")
    customer_id = task.customer_id or _user_id(task.customer)
    if customer_id:
        require_customer_in_scope(customer_id, user)
    if creating:
        task.created_by_id = task.created_by_id or _user_id(user)
        task.status = task.status or TaskStatus.TODO
    _own_only(task, "user_id", "user", user, "userId")
    if task.status == TaskStatus.COMPLETED:
        task.completed_at = task.completed_at or utcnow()
    else:
        task.completed_at = None


def complete_task(task):
    """Mark a task completed now."""
    task.status = TaskStatus.COMPLETED
    task.completed_at = task.completed_at or utcnow()


def get_in_scope(model, record_id, user):
    """Load one row by id if `user` may see it, else raise NotFound (ids never leak)."""
    obj = db.session.get(model, str(record_id)) if record_id else None
    if obj is None or not in_scope(obj, user):
        raise NotFound(f"{model.__name__} not found")
    return obj
