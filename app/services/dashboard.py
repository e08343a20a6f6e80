"""The dashboard's figures over the caller's scope: exact counts, cheap at any table size.

On PostgreSQL they come from record_counters (models/counters.py), which triggers keep in the
same transaction as every write: totals are sums of the caller's total rows, and each time
window ("since 30 days ago", "from now on") is an exact indexed count of its partial first UTC
hour plus the hour buckets to the end of that day, the day buckets to the end of that month
and the month buckets after. Everything is read in ONE statement, so the figures come from
one snapshot. SQLite (the embedded default, small data)
counts the rows directly, as `exact_counts` does; the tests hold the two to the same figures.
"""

from datetime import timedelta, timezone

import sqlalchemy as sa

from app import reads
from app.extensions import db
from app.scope import scope_clause, sees_all
from models.approval import ApprovalRequest, ApprovalStatus
from models.base import utcnow
from models.counters import DAY, HOUR, MONTH, OPEN_BUCKET, TOTAL, RecordCounter
from models.customer import Customer
from models.meeting import Meeting
from models.task import OPEN_STATUSES, Task, TaskStatus

SECTIONS = ("customers", "meetings", "tasks", "approvals")
NEW_CUSTOMER_DAYS = 30
_TABLES = {"customers": "customers", "meetings": "meetings", "tasks": "tasks", "approvals": "approval_requests"}


def rate(part, whole):
    """`part` as a percentage of `whole`, one decimal (0.0 when `whole` is 0)."""
    return round(part / whole * 100, 1) if whole else 0.0


def dashboard_figures(user, sections, now=None):
    """The dashboard's JSON `data` for `user`, with the `sections` their role may read."""
    counts = counts_for(user, sections, now or utcnow())
    data = {}
    if "customers" in counts:
        total, new30 = counts["customers"]
        data["customers"] = {"total": total, "newLast30Days": new30}
    if "meetings" in counts:
        total, upcoming = counts["meetings"]
        data["meetings"] = {"total": total, "upcoming": upcoming}
    if "tasks" in counts:
        total, done, pending, overdue = counts["tasks"]
        data["tasks"] = {
            "total": total,
            "completed": done,
            "pending": pending,
            "overdue": overdue,
            "completionRate": rate(done, total),
        }
    if "approvals" in counts:
        total, pending, approved, rejected = counts["approvals"]
        data["approvals"] = {
            "total": total,
            "pending": pending,
            "approved": approved,
            "rejected": rejected,
            "approvalRate": rate(approved, approved + rejected),
        }
    return data


def counts_for(user, sections, now):
    """{section: figures tuple} from the counters on PostgreSQL, from the rows elsewhere."""
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown dashboard sections {sorted(unknown)}")
    if db.session.get_bind().dialect.name == "postgresql":
        return counter_counts(user, sections, now)
    return exact_counts(user, sections, now)


def exact_counts(user, sections, now):
    """The figures by count(*) FILTER (...) over the rows in scope (SQLite; the tests' reference)."""

    def count(model, *conditions):
        columns = [sa.func.count().filter(c) if c is not None else sa.func.count() for c in conditions]
        return tuple(db.session.execute(sa.select(*columns).select_from(model).where(scope_clause(model, user))).one())

    out = {}
    if "customers" in sections:
        out["customers"] = count(Customer, None, Customer.created_at >= now - timedelta(days=NEW_CUSTOMER_DAYS))
    if "meetings" in sections:
        out["meetings"] = count(Meeting, None, Meeting.scheduled_at >= now)
    if "tasks" in sections:
        out["tasks"] = count(
            Task,
            None,
            Task.status == TaskStatus.COMPLETED,
            Task.status.in_(OPEN_STATUSES),
            sa.and_(Task.status.in_(OPEN_STATUSES), Task.due_date < now),
        )
    if "approvals" in sections:
        out["approvals"] = count(
            ApprovalRequest,
            None,
            ApprovalRequest.status == ApprovalStatus.PENDING,
            ApprovalRequest.status == ApprovalStatus.APPROVED,
            ApprovalRequest.status == ApprovalStatus.REJECTED,
        )
    return out


class _ParamUser:
    """A stand-in for a user whose id is the bound parameter :uid.

    The scope rule (app/scope.py) then yields the same SQL with the id as a parameter, so the
    dashboard's statement is built and compiled once per shape and reused for every user.
    """

    is_authenticated = True
    id = sa.bindparam("uid", type_=sa.Integer)

    def __init__(self, roles):
        self.roles = roles


def _counter_scope(user):
    """The scope rule on record_counters: every key (sees all) or the keys owned or created by `user`."""
    uid = getattr(user, "id", None)
    if uid is None:
        return sa.false()
    if sees_all(user):
        return sa.true()
    return sa.or_(RecordCounter.owner_id == uid, RecordCounter.creator_id == uid)


def _window_params(name, start):
    """Bound values of the window `name` starting at `start`: its first UTC day and hour, the
    next full hour, the first day of the next month."""
    utc = start.astimezone(timezone.utc)
    day = utc.date()
    return {
        f"{name}_start": start,
        f"{name}_day": day,
        f"{name}_hour": utc.hour,
        f"{name}_next_hour": utc.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1),
        f"{name}_next_month": (day.replace(day=1) + timedelta(days=32)).replace(day=1),
    }


_STATEMENTS = {}


def _counter_statement(sections, user):
    """The one statement of `counter_counts` for these sections and this kind of user (built once).

    Counters summed per (table, span, status), UNION ALL one row per window with the exact
    count of its partial first hour.
    """
    shape = "nobody" if getattr(user, "id", None) is None else ("all" if sees_all(user) else "own")
    key = (sections, shape)
    if key in _STATEMENTS:
        return _STATEMENTS[key]
    user = _ParamUser(getattr(user, "roles", [])) if shape != "nobody" else user
    c = RecordCounter
    tables = [_TABLES[s] for s in sections]
    ranges, partials = [sa.and_(c.table_name.in_(tables), c.span == TOTAL)], []

    def window(table, name, model, column, *extra, status=""):
        """Rows of `model` in scope with `column` >= the window's start: that UTC hour exactly
        (at most an hour of rows, whatever the time of day), then from the counters the hours
        to the end of its day, the days to the end of its month and the months after."""
        param = lambda part: sa.bindparam(f"{name}_{part}")  # noqa: E731
        mine = sa.and_(c.table_name == table, c.status == status)
        ranges.append(sa.and_(mine, c.span == HOUR, c.day == param("day"), c.hour > param("hour")))
        ranges.append(sa.and_(mine, c.span == DAY, c.day > param("day"), c.day < param("next_month")))
        ranges.append(sa.and_(mine, c.span == MONTH, c.day >= param("next_month")))
        count = (
            sa.select(sa.func.count())
            .select_from(model)
            .where(scope_clause(model, user), column >= param("start"), column < param("next_hour"), *extra)
            .scalar_subquery()
        )
        partials.append(sa.select(sa.literal(table), sa.literal(HOUR), sa.literal(status), count))

    if "customers" in sections:
        window("customers", "since", Customer, Customer.created_at)
    if "meetings" in sections:
        window("meetings", "now", Meeting, Meeting.scheduled_at)
    if "tasks" in sections:
        # Open tasks due from now on, or never (their bucket is NO_DUE_DAY, 'infinity', after every
        # day); the other open tasks are overdue, so the read never walks the past.
        window("tasks", "now", Task, Task.due_date, Task.status.in_(OPEN_STATUSES), status=OPEN_BUCKET)
    counters = (
        sa.select(c.table_name, c.span, c.status, sa.func.sum(c.n))
        .where(sa.or_(*ranges), _counter_scope(user))
        .group_by(c.table_name, c.span, c.status)
    )
    _STATEMENTS[key] = stmt = sa.union_all(counters, *partials)
    return stmt


def counter_statement(user, sections, now):
    """(statement, parameters) of the one query behind `counter_counts` (also the bench's SQL floor)."""
    params = {
        "uid": getattr(user, "id", None) or 0,
        **_window_params("since", now - timedelta(days=NEW_CUSTOMER_DAYS)),
        **_window_params("now", now),
    }
    return _counter_statement(tuple(s for s in SECTIONS if s in sections), user), params


def counter_counts(user, sections, now):
    """The same figures from record_counters plus each window's partial first hour, in one statement."""
    sections = tuple(s for s in SECTIONS if s in sections)
    if not sections:
        return {}
    sums = {}
    for table, span, status, n in reads.rows(*counter_statement(user, sections, now)):
        which = TOTAL if span == TOTAL else "window"
        sums[table, which, status] = sums.get((table, which, status), 0) + int(n)

    def total(table, statuses=None):
        return sum(n for (t, w, s), n in sums.items() if t == table and w == TOTAL and (statuses is None or s in statuses))

    def in_window(table):
        return sum(n for (t, w, _), n in sums.items() if t == table and w == "window")

    out = {}
    if "customers" in sections:
        out["customers"] = (total("customers"), in_window("customers"))
    if "meetings" in sections:
        out["meetings"] = (total("meetings"), in_window("meetings"))
    if "tasks" in sections:
        pending = total("tasks", {str(s) for s in OPEN_STATUSES})
        done = total("tasks", {str(TaskStatus.COMPLETED)})
        out["tasks"] = (total("tasks"), done, pending, pending - in_window("tasks"))
    if "approvals" in sections:
        by = [total("approval_requests", {str(s)}) for s in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)]
        out["approvals"] = (total("approval_requests"), *by)
    return out


def recount():
    """Rebuild record_counters from the tables in the caller's transaction; the number of keys.

    None on databases without counters (SQLite counts exactly). Writers to the counted tables
    wait until the caller commits.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        return None
    return db.session.execute(sa.text("SELECT record_counters_recount()")).scalar()
