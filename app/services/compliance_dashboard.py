"""The Compliance dashboard's figures: stale customer cards, flagged meeting notes, elderly-customer
cases, requests by routing reason, and their weekly trends, all over the caller's scope.

Every figure is a bounded statement: counts in SQL, lists capped at LIST_LIMIT rows, the
reasons and trends read over the last `weeks` weeks only (the one JSON column, reasons, is
counted in Python over that window).
"""

from datetime import timedelta

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from flask import current_app

from app.scope import scope_clause
from app.services import cards, screening
from app.services.dashboard import home_periods
from models.approval import ApprovalRequest, ApprovalStatus, ApprovalStep
from models.base import utcnow
from models.customer import Customer
from models.customer_card import CustomerCard
from models.meeting import Meeting
from models.screening import FlagStatus, MeetingFlag

LIST_LIMIT = 10
WEEKS = 12


def _latest_cards():
    """(customer id, newest version) of every customer with a card, as a subquery."""
    return (
        sa.select(CustomerCard.customer_id, sa.func.max(CustomerCard.version).label("version"))
        .group_by(CustomerCard.customer_id)
        .subquery("latest")
    )


def _stale_clause(cutoff):
    """A card is stale: never reviewed, reviewed before `cutoff`, or a required item missing (as cards.state_of)."""
    missing = [getattr(CustomerCard, column).is_(None) for column in cards.ITEMS.values()]
    text_items = [getattr(CustomerCard, c) == "" for c in ("occupation", "source_of_funds")]
    return sa.or_(CustomerCard.reviewed_at.is_(None), CustomerCard.reviewed_at < cutoff, *missing, *text_items)


def card_figures(session, user, now):
    """{"withoutCard", "stale", "dueSoon", "current", "staleList"} over the live customers in `user`'s scope."""
    months = int(current_app.config["CARD_REVIEW_MONTHS"])
    cutoff = now - relativedelta(months=months)
    soon = cutoff + timedelta(days=30)
    latest = _latest_cards()
    customers = sa.select(Customer.id).where(scope_clause(Customer, user)).subquery("c")
    joined = (
        sa.select(CustomerCard)
        .join(latest, sa.and_(latest.c.customer_id == CustomerCard.customer_id, latest.c.version == CustomerCard.version))
        .join(customers, customers.c.id == CustomerCard.customer_id)
    )
    stale = _stale_clause(cutoff)
    row = session.execute(
        sa.select(
            sa.func.count().filter(stale),
            sa.func.count().filter(sa.and_(sa.not_(stale), CustomerCard.reviewed_at < soon)),
            sa.func.count().filter(sa.not_(stale)),
        )
        .select_from(CustomerCard)
        .join(latest, sa.and_(latest.c.customer_id == CustomerCard.customer_id, latest.c.version == CustomerCard.version))
        .join(customers, customers.c.id == CustomerCard.customer_id)
    ).one()
    without = session.execute(
        sa.select(sa.func.count()).select_from(customers).where(
            ~sa.exists().where(CustomerCard.customer_id == customers.c.id)
        )
    ).scalar_one()
    oldest = session.execute(
        joined.add_columns(Customer.name)
        .join(Customer, Customer.id == CustomerCard.customer_id)
        .where(stale)
        .order_by(CustomerCard.reviewed_at.asc().nulls_first(), CustomerCard.customer_id)
        .limit(LIST_LIMIT)
    ).all()
    stale_list = []
    for card, name in oldest:
        state = cards.state_of(card, now=now, months=months)
        stale_list.append({"customerId": card.customer_id, "customerName": name, "version": card.version,
                           "reviewedAt": card.reviewed_at, "missing": state.missing, "reviewDue": state.review_due})
    return {"stale": int(row[0]), "dueSoon": int(row[1]), "current": int(row[2]), "withoutCard": int(without),
            "staleList": stale_list}


def flag_figures(session, user, now):
    """{"counts", "oldestOpen", "byRep", "latest" (newest open first)} of the meeting-note flags in `user`'s scope."""
    scope = sa.and_(scope_clause(MeetingFlag, user), scope_clause(Meeting, user))
    open_ = sa.and_(scope, MeetingFlag.status == FlagStatus.open)
    oldest = session.execute(
        sa.select(sa.func.min(MeetingFlag.created_at)).join(Meeting, Meeting.id == MeetingFlag.meeting_id).where(open_)
    ).scalar_one()
    by_rep = session.execute(
        sa.select(MeetingFlag.sales_id, sa.func.count())
        .join(Meeting, Meeting.id == MeetingFlag.meeting_id)
        .where(open_)
        .group_by(MeetingFlag.sales_id)
        .order_by(sa.func.count().desc(), MeetingFlag.sales_id)
        .limit(LIST_LIMIT)
    ).all()
    latest = session.execute(
        sa.select(MeetingFlag).join(Meeting, Meeting.id == MeetingFlag.meeting_id).where(open_)
        .order_by(MeetingFlag.created_at.desc(), MeetingFlag.id).limit(LIST_LIMIT)
    ).unique().scalars().all()
    return {
        "counts": screening.counts(session, user),
        "oldestOpen": oldest,
        "byRep": [(sales_id, int(n)) for sales_id, n in by_rep],
        "latest": latest,
    }


def elderly_figures(session, user, now):
    """{"supervisorPending", "awaitingExecution", "cases"}: requests the elderly-customer rules touched."""
    scope = scope_clause(ApprovalRequest, user)
    supervised = sa.exists().where(ApprovalStep.approval_request_id == ApprovalRequest.id, ApprovalStep.kind == cards.SUPERVISOR_KIND)
    today = home_periods(now)["local_day"]
    elderly = sa.or_(supervised, ApprovalRequest.executable_from.is_not(None))
    pending = session.execute(
        sa.select(sa.func.count()).select_from(ApprovalRequest).where(scope, supervised, ApprovalRequest.status == ApprovalStatus.PENDING)
    ).scalar_one()
    waiting = session.execute(
        sa.select(sa.func.count()).select_from(ApprovalRequest).where(
            scope, ApprovalRequest.status == ApprovalStatus.APPROVED, ApprovalRequest.executable_from > today
        )
    ).scalar_one()
    rows = session.execute(
        sa.select(ApprovalRequest.id, ApprovalRequest.product_name, ApprovalRequest.status, ApprovalRequest.requested_at,
                  ApprovalRequest.executable_from, ApprovalRequest.suitability_snapshot, Customer.name)
        .join(Customer, Customer.id == ApprovalRequest.customer_id)
        .where(scope, elderly)
        .order_by(ApprovalRequest.requested_at.desc(), ApprovalRequest.id)
        .limit(LIST_LIMIT)
    ).all()
    cases = [
        {"id": r[0], "product": r[1], "status": r[2].value, "requestedAt": r[3], "executableFrom": r[4],
         "age": ((r[5] or {}).get("elderly") or {}).get("ageAtProposal"),
         "supervisor": bool(((r[5] or {}).get("elderly") or {}).get("supervisorPreapprovalRequired")),
         "customerName": r[6]}
        for r in rows
    ]
    return {"supervisorPending": int(pending), "awaitingExecution": int(waiting), "cases": cases}


def week_starts(now, weeks=WEEKS):
    """UTC starts of the last `weeks` display-zone weeks (Monday), oldest first, this week last."""
    this_week = home_periods(now)["week"]
    return [this_week - timedelta(days=7 * i) for i in range(weeks - 1, -1, -1)]


def _week_of(starts, at):
    index = None
    for i, start in enumerate(starts):
        if at >= start:
            index = i
    return index


def trend_figures(session, user, now, weeks=WEEKS):
    """{"weeks", "reasons", "reasonTotals", "trend"}: routing reasons per week and the weekly counts of flags,
    requests routed to Compliance and elderly-customer cases over the last `weeks` weeks."""
    starts = week_starts(now, weeks)
    scope = scope_clause(ApprovalRequest, user)
    reasons, totals = {}, {}
    routed, elderly = [0] * weeks, [0] * weeks
    supervised = sa.exists().where(ApprovalStep.approval_request_id == ApprovalRequest.id, ApprovalStep.kind == cards.SUPERVISOR_KIND)
    for at, found, is_elderly in session.execute(
        sa.select(ApprovalRequest.requested_at, ApprovalRequest.compliance_reasons,
                  sa.or_(supervised, ApprovalRequest.executable_from.is_not(None)))
        .where(scope, ApprovalRequest.requested_at >= starts[0])
    ):
        week = _week_of(starts, at)
        if week is None:
            continue
        if found:
            routed[week] += 1
        if is_elderly:
            elderly[week] += 1
        for reason in found or ():
            reasons.setdefault(reason, [0] * weeks)[week] += 1
            totals[reason] = totals.get(reason, 0) + 1
    flags = [0] * weeks
    for (at,) in session.execute(
        sa.select(MeetingFlag.created_at).join(Meeting, Meeting.id == MeetingFlag.meeting_id)
        .where(scope_clause(MeetingFlag, user), scope_clause(Meeting, user), MeetingFlag.created_at >= starts[0])
    ):
        week = _week_of(starts, at)
        if week is not None:
            flags[week] += 1
    return {
        "weeks": starts,
        "reasons": reasons,
        "reasonTotals": sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])),
        "trend": {"flags": flags, "routed": routed, "elderly": elderly},
    }


def figures(session, user, now=None):
    """Every block of the Compliance dashboard for `user`."""
    now = now or utcnow()
    return {
        "cards": card_figures(session, user, now),
        "flags": flag_figures(session, user, now),
        "elderly": elderly_figures(session, user, now),
        **trend_figures(session, user, now),
    }
