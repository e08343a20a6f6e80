"""Global search (the navbar): customers by name, email and phone; meetings and tasks by title.

One query per group, each through the one scope rule (app/scope.py) and bounded by a
LIMIT, so a search costs the same at 100 rows as at 1M. Soft-deleted customers are left
out, and so are the meetings and tasks of a soft-deleted customer (their page would lead
to a customer the user can no longer open). The customer group reuses the customer
search of /api/customers (`models.customer.search_clause`: one LIKE on the indexed
`search_text`), so the navbar and the API find the same customers; SQLite (the embedded
default) and PostgreSQL run the same statements.
"""

from dataclasses import dataclass, field

import sqlalchemy as sa

from app.extensions import db
from app.scope import scope_clause
from app.services.errors import ValidationFailed
from app.services.inputs import text_field
from models.customer import Customer, search_clause, search_per_field
from models.meeting import Meeting
from models.task import Task, is_open

#: The groups, in the order the results show them.
GROUPS = ("customers", "meetings", "tasks")
#: Longest search text accepted (longer is a 400: no field searched is longer than 254).
MAX_QUERY_LENGTH = 100


def like_pattern(text):
    """A LIKE pattern matching `text` anywhere, with LIKE's wildcards escaped."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def parse_query(raw):
    """The search text of `raw` (stripped), or ValidationFailed naming `q` when it is missing, too long or holds a NUL."""
    return text_field(raw, "q", MAX_QUERY_LENGTH)


def parse_limit(raw, default, maximum):
    """The per-group row limit of `raw` (default `default`, 1..`maximum`), or ValidationFailed naming `limit`."""
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationFailed("limit must be a whole number", field="limit") from None
    if not 1 <= value <= maximum:
        raise ValidationFailed(f"limit must be between 1 and {maximum}", field="limit")
    return value


@dataclass
class Hit:
    """One result: what it is, its id, the line shown and a second line of detail."""

    kind: str
    id: str
    title: str
    detail: str = ""
    when: object = None


@dataclass
class Group:
    """The hits of one kind; `more` when the limit cut some off."""

    kind: str
    hits: list = field(default_factory=list)
    more: bool = False


def _customers(user, pattern, text, limit):
    stmt = (
        sa.select(Customer.id, Customer.name, Customer.email, Customer.phone)
        .where(scope_clause(Customer, user), search_clause(pattern, search_per_field(text)))
        # Newest first, as /api/customers: the walk of ix_customers_live_updated stops at the
        # limit; by name it read the name index until enough rows matched.
        .order_by(Customer.updated_at.desc(), Customer.id.desc())
        .limit(limit + 1)
    )
    return [
        Hit("customers", row.id, row.name, " · ".join(v for v in (row.email, row.phone) if v))
        for row in db.session.execute(stmt)
    ]


def _meetings(user, pattern, limit):
    stmt = (
        sa.select(Meeting.id, Meeting.title, Meeting.scheduled_at, Customer.name.label("customer"))
        .join(Customer, Customer.id == Meeting.customer_id)
        .where(scope_clause(Meeting, user), Customer.deleted_at.is_(None), Meeting.title.ilike(pattern, escape="\\"))
        .order_by(Meeting.scheduled_at.desc(), Meeting.id)
        .limit(limit + 1)
    )
    return [Hit("meetings", row.id, row.title, row.customer, row.scheduled_at) for row in db.session.execute(stmt)]


def _tasks(user, pattern, limit):
    stmt = (
        sa.select(Task.id, Task.title, Task.due_date, Customer.name.label("customer"))
        .outerjoin(Customer, Customer.id == Task.customer_id)
        .where(
            scope_clause(Task, user),
            sa.or_(Task.customer_id.is_(None), Customer.deleted_at.is_(None)),
            Task.title.ilike(pattern, escape="\\"),
        )
        # Open tasks first, soonest due first: the ones a rep is looking for.
        .order_by(sa.case((is_open(), 0), else_=1), Task.due_date.is_(None), Task.due_date, Task.id)
        .limit(limit + 1)
    )
    return [Hit("tasks", row.id, row.title, row.customer or "", row.due_date) for row in db.session.execute(stmt)]


def search(user, text, limit, groups=GROUPS):
    """The hits for `text` that `user` may see, per group of `groups` (at most `limit` each), as a list of Group.

    `groups` lets the caller leave out what the user's role may not read.
    """
    pattern = like_pattern(text)
    out = []
    for kind in GROUPS:
        if kind not in groups:
            continue
        if kind == "customers":
            hits = _customers(user, pattern, text, limit)
        elif kind == "meetings":
            hits = _meetings(user, pattern, limit)
        else:
            hits = _tasks(user, pattern, limit)
        out.append(Group(kind, hits[:limit], len(hits) > limit))
    return out
