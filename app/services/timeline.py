"""A customer's activity timeline: one list of what happened to it and its records.

Built from the audit log (app/audit.py writes a row for every create, change and delete
through any entry point, and app/services/approvals.py one per decision), so the timeline
says the same as the audit screen: who, when, which fields went from what to what. The
customer's own rows, and those of its meetings, tasks and approval requests that the
caller may see (app/scope.py), newest first, a bounded page at a time: `before` is the
cursor of the last item shown, and `more` tells whether older items exist.
"""

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from app.extensions import db
from app.scope import in_scope, scope_clause
from app.services.errors import NotFound, ValidationFailed
from models.approval import ApprovalRequest
from models.attachment import Attachment, OwnerType
from models.audit import AuditLog
from models.customer import Customer
from models.meeting import Meeting
from models.task import Task

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: Audit resource name -> (model, the column naming the record on the timeline).
RELATED = {
    "meeting": (Meeting, Meeting.title),
    "task": (Task, Task.title),
    "approval_request": (ApprovalRequest, ApprovalRequest.product_name),
    # attach: files added to and deleted from the customer and the records above
    "attachment": (Attachment, Attachment.filename),
}
# Bookkeeping columns every write moves; they say nothing to the reader of a timeline.
_QUIET = frozenset({"updated_at", "created_at", "id", "search_text"})


@dataclass
class Change:
    """One field of an UPDATE: its name, the value before and the value after."""

    field: str
    before: object
    after: object


@dataclass
class Item:
    """One line of the timeline."""

    id: str
    at: datetime
    action: str
    resource: str
    resource_id: str
    title: str
    who: str
    changes: list = field(default_factory=list)
    comment: str = None

    @property
    def cursor(self):
        """The `before` value that continues the timeline after this item."""
        return f"{self.at.isoformat()}|{self.id}"


@dataclass
class Page:
    """A page of the timeline: its items, and the cursor of the next (older) page or None."""

    items: list
    more: str = None


def parse_cursor(value):
    """Parse a `before` cursor ("<ISO time>|<audit id>"); a malformed one is a 400 naming `before`."""
    if not value:
        return None
    stamp, sep, row_id = value.partition("|")
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        at = None
    if not sep or not row_id or at is None or at.tzinfo is None or len(row_id) > 64:
        raise ValidationFailed("before must be a cursor given by the timeline", field="before")
    return at, row_id


def _related_ids(model, customer_id, user):
    """The ids of `model` rows about the customer that `user` may see (a subquery)."""
    if model is Attachment:
        return _attachment_ids(customer_id, user)
    return sa.select(sa.cast(model.id, sa.String)).where(model.customer_id == customer_id, scope_clause(model, user))


def _attachment_ids(customer_id, user):
    """The files (deleted ones too) of the customer, and of its meetings and requests `user` may see: a file follows its record's scope."""
    def owned_by(kind, model):
        visible = sa.select(model.id).where(model.customer_id == customer_id, scope_clause(model, user))
        return sa.and_(Attachment.owner_type == kind, Attachment.owner_id.in_(visible))

    return sa.select(sa.cast(Attachment.id, sa.String)).where(
        Attachment.customer_id == customer_id,
        sa.or_(
            Attachment.owner_type == OwnerType.customer,
            owned_by(OwnerType.meeting, Meeting),
            owned_by(OwnerType.approval_request, ApprovalRequest),
        ),
    )


def _arms(customer_id, user):
    """The audit-log conditions of the timeline: the customer's rows, and each related kind's."""
    yield sa.and_(AuditLog.resource_type == "customer", AuditLog.resource_id == customer_id)
    for resource, (model, _title) in RELATED.items():
        yield sa.and_(AuditLog.resource_type == resource, AuditLog.resource_id.in_(_related_ids(model, customer_id, user)))


def customer_timeline(customer_id, user, before=None, limit=None):
    """The timeline page of customer `customer_id` as `user` sees it (NotFound outside their scope).

    Each arm (the customer, its meetings, tasks, requests, files) is read through the
    (resource_type, resource_id) index with its own LIMIT, newest first, and the arms are
    merged in the same statement: a page costs one statement of five index probes,
    whatever the size of the audit log.
    """
    customer = db.session.get(Customer, str(customer_id)) if customer_id else None
    if customer is None or not in_scope(customer, user):
        raise NotFound("Customer not found")
    limit = max(1, min(int(limit or PAGE_SIZE), MAX_PAGE_SIZE))
    cursor = parse_cursor(before) if isinstance(before, str) else before
    newest_first = (AuditLog.timestamp.desc(), AuditLog.id.desc())
    keys = []
    for arm in _arms(customer.id, user):
        stmt = sa.select(AuditLog.id, AuditLog.timestamp).where(arm)
        if cursor:
            stmt = stmt.where(sa.tuple_(AuditLog.timestamp, AuditLog.id) < sa.tuple_(sa.literal(cursor[0], AuditLog.timestamp.type), cursor[1]))
        arm_keys = stmt.order_by(*newest_first).limit(limit + 1).subquery()
        keys.append(sa.select(arm_keys.c.id))
    # One round trip: the arms' newest keys united, then the page's rows by key.
    page_keys = sa.union_all(*keys).subquery()
    stmt = sa.select(AuditLog).join(page_keys, AuditLog.id == page_keys.c.id).order_by(*newest_first).limit(limit + 1)
    rows = list(db.session.execute(stmt).unique().scalars())
    rows.sort(key=lambda r: (r.timestamp, r.id), reverse=True)
    page, rest = rows[:limit], rows[limit:]
    titles = _titles(page, customer)
    items = [_item(row, titles) for row in page]
    return Page(items=items, more=items[-1].cursor if rest and items else None)


def _titles(rows, customer):
    """{(resource, id): name} of the records on this page, read in one statement per kind."""
    titles = {("customer", customer.id): customer.name}
    wanted = {}
    for row in rows:
        if row.resource_type in RELATED:
            wanted.setdefault(row.resource_type, set()).add(row.resource_id)
    for resource, ids in wanted.items():
        model, column = RELATED[resource]
        for row_id, name in db.session.execute(sa.select(model.id, column).where(model.id.in_(ids))):
            titles[(resource, row_id)] = name
    return titles


def _item(row, titles):
    """One audit row as a timeline item; a deleted record keeps the name its last snapshot had."""
    changes, comment = [], None
    data = row.changes or {}
    before, after = data.get("before") or {}, data.get("after") or {}
    if row.action.value == "UPDATE":
        changes = [Change(k, before.get(k), after.get(k)) for k in after if k not in _QUIET]
    elif row.action.value in ("APPROVE", "REJECT", "RECALL"):
        comment = after.get("comment")
        changes = [Change(k, before.get(k), after.get(k)) for k in ("status",) if before.get(k) != after.get(k)]
    snapshot = after or before
    title = titles.get((row.resource_type, row.resource_id)) or snapshot.get("title") or snapshot.get("product_name") or snapshot.get("name") or ""
    user = row.user
    who = " ".join(p for p in (getattr(user, "first_name", ""), getattr(user, "last_name", "")) if p) if user else ""
    return Item(
        id=row.id,
        at=row.timestamp,
        action=row.action.value,
        resource=row.resource_type,
        resource_id=row.resource_id,
        title=title,
        who=who,
        changes=changes,
        comment=comment,
    )
