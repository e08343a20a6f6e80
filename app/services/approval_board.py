"""The approvals board: requests in columns by where they stand, their age, and whom to remind.

Columns: waiting for a Manager, waiting for Compliance, approved, rejected, recalled. Every
column goes through the one scope rule (a Sales user sees their own requests only) and
leaves out requests of soft-deleted customers. Deciding stays in app.services.approvals;
who may decide a request now is its `pending_clause`, used here for reminders too.

A PENDING request at least `APPROVAL_REMINDER_HOURS` old is stale: the board highlights
it and the scheduler reminds its current approvers once per interval (one reminder per
request, step and whole interval of its age: at H, 2H, 3H… hours).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import Role, User
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app.scope import COMPLIANCE, MANAGER, scope_clause
from app.services.approvals import DECIDER_ROLES, current_step, pending_clause, waiting_for_clause
from app.services.errors import ValidationFailed
from app.services.inputs import text_field
from app.services.search import like_pattern
from models.approval import ApprovalRequest, ApprovalStatus, ApprovalStep
from models.customer import Customer

#: The board's columns, in order.
COLUMNS = ("manager", "compliance", "approved", "rejected", "recalled")
#: Cards shown per column (the count above a column is always the full count).
CARD_LIMIT = 20
_FINAL = {
    "approved": ApprovalStatus.APPROVED,
    "rejected": ApprovalStatus.REJECTED,
    "recalled": ApprovalStatus.RECALLED,
}


MAX_QUERY = 200


@dataclass
class Column:
    """One board column: its key, the count in scope (filters applied), this page of cards and the pages."""

    key: str
    total: int
    cards: list
    page: int = 1
    pages: int = 1


@dataclass
class Filters:
    """What narrows the board: one customer, a text in the customer's name or the product, a page per column."""

    customer_id: str = None
    text: str = None
    pages: dict = None


def parse_filters(args):
    """Filters from a query string (`customer`, `q`, `page_<column>`); ValidationFailed naming the field when bad."""
    customer_id = text_field(args.get("customer"), "customer", 36, required=False) or None
    text = text_field(args.get("q"), "q", MAX_QUERY, required=False) or None
    pages = {}
    for key in COLUMNS:
        raw = args.get(f"page_{key}")
        if raw in (None, ""):
            continue
        if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
            raise ValidationFailed(f"page_{key} must be a page number from 1", field=f"page_{key}")
        pages[key] = int(raw)
    return Filters(customer_id, text, pages)


def filter_clause(filters):
    """SQL condition of `filters` (customer and text; the pages are not a condition)."""
    conditions = []
    if filters.customer_id:
        conditions.append(ApprovalRequest.customer_id == filters.customer_id)
    if filters.text:
        pattern = like_pattern(filters.text)
        named = sa.select(Customer.id).where(Customer.name.ilike(pattern, escape="\\"))
        conditions.append(sa.or_(ApprovalRequest.product_name.ilike(pattern, escape="\\"), ApprovalRequest.customer_id.in_(named)))
    return sa.and_(sa.true(), *conditions)


def reminder_hours(config):
    """The configured reminder interval in hours (at least 1)."""
    return max(1, int(config["APPROVAL_REMINDER_HOURS"]))


def column_clause(key):
    """SQL condition of the board column `key` (one of COLUMNS)."""
    if key == "manager":
        return waiting_for_clause(MANAGER)
    if key == "compliance":
        return waiting_for_clause(COMPLIANCE)
    if key in _FINAL:
        return ApprovalRequest.status == _FINAL[key]
    raise ValueError(f"unknown board column {key!r}")


def visible_clause(user):
    """Requests `user` may see on the board: the scope rule, customers not soft-deleted."""
    # NOT IN the few soft-deleted customers: a small hashed set, not a join with every live customer.
    deleted = sa.select(Customer.id).where(Customer.deleted_at.is_not(None))
    return sa.and_(scope_clause(ApprovalRequest, user), ApprovalRequest.customer_id.not_in(deleted))


def column_key():
    """SQL expression: the board column of a request (the waiting clauses are hashed once per statement)."""
    return sa.case(
        (column_clause("manager"), "manager"),
        (column_clause("compliance"), "compliance"),
        *((ApprovalRequest.status == status, key) for key, status in _FINAL.items()),
        else_=None,
    )


def counts(session, user, where=sa.true()):
    """{column key: how many of `user`'s visible requests (also meeting `where`) it holds}, in one pass."""
    key = column_key().label("k")
    rows = session.execute(sa.select(key, sa.func.count()).where(visible_clause(user), where).group_by(key)).all()
    found = {k: n for k, n in rows if k is not None}
    return {k: found.get(k, 0) for k in COLUMNS}


def _card_options():
    """What a card shows: the customer's name, the requester, the steps (for the decision form); nothing more."""
    return (
        sa.orm.joinedload(ApprovalRequest.customer).lazyload("*"),
        sa.orm.joinedload(ApprovalRequest.requester).lazyload("*"),
        sa.orm.lazyload(ApprovalRequest.steps),  # loaded for every column at once, below
    )


def _load_steps(session, cards):
    """Give `cards` their steps with one query for the whole board (not one per column)."""
    by_request = {card.id: [] for card in cards}
    if not by_request:
        return
    steps = session.execute(
        sa.select(ApprovalStep).where(ApprovalStep.approval_request_id.in_(list(by_request)))
        .order_by(ApprovalStep.approval_request_id, ApprovalStep.sequence).options(sa.orm.lazyload("*"))
    ).scalars().all()
    for step in steps:
        by_request[step.approval_request_id].append(step)
    for card in cards:
        set_committed_value(card, "steps", by_request[card.id])


def columns(session, user, limit=CARD_LIMIT, filters=None):
    """Return the board of `user`: a Column per key, pending oldest first, finished newest first.

    `filters` (a Filters) narrows every column and picks each column's page of `limit` cards.
    """
    filters = filters or Filters()
    board = []
    visible = sa.and_(visible_clause(user), filter_clause(filters))
    totals = counts(session, user, filter_clause(filters))
    for key in COLUMNS:
        if key in _FINAL:
            order = (ApprovalRequest.processed_at.desc().nulls_last(), ApprovalRequest.id)
        else:
            order = (ApprovalRequest.requested_at.asc(), ApprovalRequest.id)
        pages = max(1, -(-totals[key] // limit))
        page = min((filters.pages or {}).get(key, 1), pages)
        cards = []
        if totals[key]:
            # This page's ids on the request table alone, then their cards with what they show.
            first = (
                sa.select(ApprovalRequest.id).where(visible, column_clause(key)).order_by(*order)
                .offset((page - 1) * limit).limit(limit)
            )
            stmt = sa.select(ApprovalRequest).where(ApprovalRequest.id.in_(first.scalar_subquery())).order_by(*order)
            cards = session.execute(stmt.options(*_card_options())).unique().scalars().all()
        board.append(Column(key, totals[key], cards, page, pages))
    _load_steps(session, [card for column in board for card in column.cards])
    return board


def age(request, now):
    """How long `request` has existed at `now` (a timedelta, never negative)."""
    return max(now - request.requested_at, timedelta(0))


def is_stale(request, now, hours):
    """True when `request` is PENDING and at least `hours` old."""
    return request.status == ApprovalStatus.PENDING and age(request, now) >= timedelta(hours=hours)


def interval_start(request, now, hours):
    """Start of the reminder interval `request` is in at `now` (requested_at + n×hours, n ≥ 1), or None."""
    n = age(request, now) // timedelta(hours=hours)
    return request.requested_at + n * timedelta(hours=hours) if n >= 1 else None


@dataclass
class DueReminder:
    """A stale request, its current step, the interval it is in and the users who may decide it now."""

    request: ApprovalRequest
    step_sequence: int
    interval: datetime
    approver_ids: list


def reminders_due(session, now, hours):
    """Return a DueReminder per stale PENDING request that someone may decide now (oldest first).

    The approvers of a request are exactly the users whose inbox holds it
    (`pending_clause`: the current step's role, not the requester, not a decider of an
    earlier step), among the active Managers and Compliance officers.
    """
    cutoff = now - timedelta(hours=hours)
    deciders = session.execute(
        sa.select(User).where(User.active.is_(True), User.roles.any(Role.name.in_(sorted(DECIDER_ROLES)))).order_by(User.id)
    ).unique().scalars().all()
    approvers = {}
    for user in deciders:
        ids = session.execute(
            sa.select(ApprovalRequest.id).where(
                pending_clause(user), ApprovalRequest.requested_at <= cutoff, visible_clause(user)
            )
        ).scalars()
        for request_id in ids:
            approvers.setdefault(request_id, []).append(user.id)
    due = []
    if not approvers:
        return due
    requests = session.execute(
        sa.select(ApprovalRequest).where(ApprovalRequest.id.in_(list(approvers)))
        .options(selectinload(ApprovalRequest.steps)).order_by(ApprovalRequest.requested_at, ApprovalRequest.id)
    ).unique().scalars().all()
    for request in requests:
        step = current_step(request)
        start = interval_start(request, now, hours)
        if step is not None and start is not None:
            due.append(DueReminder(request, step.sequence, start, approvers[request.id]))
    return due


def waits_for(session, request_id, user, step_sequence):
    """True when request `request_id` is still in `user`'s inbox with step `step_sequence` current."""
    request = session.execute(
        sa.select(ApprovalRequest).where(ApprovalRequest.id == str(request_id), pending_clause(user), visible_clause(user))
        .options(selectinload(ApprovalRequest.steps)).execution_options(populate_existing=True)
    ).unique().scalar_one_or_none()
    step = current_step(request) if request is not None else None
    return step is not None and step.sequence == int(step_sequence)
