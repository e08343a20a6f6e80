"""Related-field choices a screen offers, searched and looked up a few at a time.

The selects of FAB's forms list every related row (100k customers on the task form); the
screens' inputs ask this module instead (views/autocomplete.py): a page of matches for
what the user typed, or the one row behind an id already in the form or the URL. Both go
through app/scope.py's `choice_clause`, so a Sales user is offered only their own live
customers and only themself as an owner, whatever the input.
"""

import uuid

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import User

from app.extensions import db
from app.scope import ASSIGN, FILTER, choice_clause
from app.services.errors import ValidationFailed
from models.customer import Customer

#: kind (the name in the URL) -> model.
KINDS = {"customer": Customer, "user": User}
PURPOSES = (ASSIGN, FILTER)
MAX_QUERY = 100
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def _escape_like(text):
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def label(row):
    """The text shown for a related row: a customer's name, a user's full name (or e-mail)."""
    if isinstance(row, User):
        name = " ".join(p for p in (row.first_name, row.last_name) if p)
        return name or row.email or row.username
    return str(row)


def _search_clause(model, text):
    like = f"%{_escape_like(text.lower())}%"
    if model is User:
        cols = (User.first_name, User.last_name, User.email, User.username)
    else:
        cols = (Customer.name, Customer.email)
    return sa.or_(*(sa.func.lower(c).like(like, escape="\\") for c in cols))


def _order(model):
    return (User.first_name, User.last_name, User.id) if model is User else (Customer.name, Customer.id)


def _positive(value, field, default):
    try:
        number = int(value) if value not in (None, "") else default
    except ValueError:
        raise ValidationFailed(f"{field} must be a positive integer", field=field) from None
    if number < 1 or number > 10**9:
        raise ValidationFailed(f"{field} must be a positive integer", field=field)
    return number


def parse(kind, purpose, text, limit, page=None):
    """Validate raw request values; return (model, purpose, text, limit, page) or raise ValidationFailed naming the field."""
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    purpose = purpose or ASSIGN
    if purpose not in PURPOSES:
        raise ValidationFailed(f"purpose must be one of {', '.join(PURPOSES)}", field="purpose")
    text = (text or "").strip()
    if len(text) > MAX_QUERY or "\x00" in text:
        raise ValidationFailed(f"q must be at most {MAX_QUERY} characters of text", field="q")
    limit = min(_positive(limit, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    return KINDS[kind], purpose, text, limit, _positive(page, "page", 1)


def search(model, user, purpose, text="", limit=DEFAULT_LIMIT, page=1):
    """Page `page` (of `limit` rows) of `model` rows `user` may pick for `purpose`, matching `text`, as [(id, label)]."""
    stmt = sa.select(model).where(choice_clause(model, user, purpose))
    if text:
        stmt = stmt.where(_search_clause(model, text))
    rows = db.session.execute(stmt.order_by(*_order(model)).offset((page - 1) * limit).limit(limit)).scalars().all()
    return [(str(r.id), label(r)) for r in rows]


def lookup(model, user, purpose, pk):
    """The row of `model` with id `pk` if `user` may pick it for `purpose`, else None (a bad id too)."""
    if pk in (None, ""):
        return None
    key = model.__table__.c.id
    if key.type.python_type is int:
        text = str(pk)
        if not text.isdigit() or int(text) > 2**31 - 1:
            return None
        pk = int(text)
    else:
        try:
            pk = str(uuid.UUID(str(pk)))
        except ValueError:
            return None
    stmt = sa.select(model).where(key == pk, choice_clause(model, user, purpose))
    return db.session.execute(stmt).scalars().first()
