"""The customer page's facts: the customer, its suitability, its meetings, tasks and requests.

What a rep works from: everything is read through the one scope rule (app/scope.py), so a
Sales user sees the customer only when it is theirs and, of its records, only those they
may see; each list is capped (the newest first) with its total beside it.
"""

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import lazyload

from app.extensions import db
from app.scope import scope_clause
from app.services import suitability
from app.services.records import get_in_scope
from models.approval import ApprovalRequest
from models.base import utcnow
from models.customer import Customer
from models.meeting import Meeting
from models.task import Task

RELATED_LIMIT = 10


@dataclass
class Related:
    """Up to RELATED_LIMIT rows of one kind and how many there are in all."""

    rows: list
    total: int


@dataclass
class Suitability:
    """The suitability facts of a customer (適合性): what the approval routing reads."""

    investment_profile: object
    risk_tolerance: int
    investment_experience: str
    changed_at: object
    #: Until when every request for the customer needs Compliance (None: not in such a window).
    compliance_until: object


def suitability_of(customer, now=None):
    """The suitability facts of `customer`, with the end of a recent-change window if one is open."""
    days = int(current_app.config["APPROVAL_SUITABILITY_CHANGE_DAYS"])
    until = None
    if suitability.changed_recently(customer, days, now):
        until = customer.suitability_changed_at + timedelta(days=days)
    return Suitability(
        investment_profile=customer.investment_profile,
        risk_tolerance=customer.risk_tolerance,
        investment_experience=customer.investment_experience,
        changed_at=customer.suitability_changed_at,
        compliance_until=until,
    )


def _related(model, customer_id, user, order, limit):
    """The first `limit` rows and the total in one statement (the window count is taken before LIMIT)."""
    where = sa.and_(model.customer_id == customer_id, scope_clause(model, user))
    # The page shows the rows' own columns: none of the models' joined customer and user rows.
    stmt = sa.select(model, sa.func.count().over().label("total")).where(where).order_by(*order).limit(limit).options(lazyload("*"))
    result = db.session.execute(stmt).all()
    return Related(rows=[row[0] for row in result], total=result[0].total if result else 0)


def load_customer(customer_id, user):
    """The live customer `customer_id` if `user` may see it, else NotFound (ids never leak)."""
    return get_in_scope(Customer, customer_id, user)


def related_records(customer, user, limit=RELATED_LIMIT):
    """{"meetings", "tasks", "requests"}: each a capped `Related` of the customer's rows in `user`'s scope."""
    return {
        "meetings": _related(Meeting, customer.id, user, (Meeting.scheduled_at.desc(), Meeting.id), limit),
        "tasks": _related(Task, customer.id, user, (Task.due_date.asc().nulls_last(), Task.id), limit),
        "requests": _related(ApprovalRequest, customer.id, user, (ApprovalRequest.requested_at.desc(), ApprovalRequest.id), limit),
    }


def is_overdue(task, now=None):
    """True for an open task whose due date has passed (design.md §2)."""
    from models.task import OPEN_STATUSES

    return task.status in OPEN_STATUSES and task.due_date is not None and task.due_date < (now or utcnow())
