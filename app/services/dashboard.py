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
from app.i18n import display_zone
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


# ---------------------------------------------------------------- role home pages
# The figures behind each role's home page (views/home.py), from the same scope rule as the
# /api/reports figures above and cached per caller like them (app/caching.py); every list is
# bounded, so a page costs a few indexed statements at any table size.

HOME_LIST_LIMIT = 20
HOME_TIMEOUT = 60
TREND_WEEKS = 8
#: Tables each role's home figures read: a commit writing one of them makes that cached home stale.
HOME_TABLES = {
    "sales": ("tasks", "meetings", "customers", "approval_requests", "ab_user"),
    "manager": ("tasks", "meetings", "customers", "approval_requests", "approval_steps", "event_counters", "ab_user", "ab_user_role"),
    "compliance": ("approval_requests", "approval_steps", "customers", "audit_logs", "ab_user"),
    "admin": ("ab_user", "ab_user_role", "ab_role"),
}
HOME_KINDS = (("Admin", "admin"), ("Manager", "manager"), ("Compliance", "compliance"), ("Sales", "sales"))
AUDIT_LIMIT = 10


def home_kind(user):
    """Which home page `user` gets: "admin", "manager", "compliance", "sales", or None (no CRM role)."""
    from app.scope import role_names

    names = role_names(user)
    for role, kind in HOME_KINDS:
        if role in names:
            return kind
    return None


def home_periods(now):
    """UTC bounds of the display time zone's today, this week (from Monday) and this month, at `now`."""
    local = now.astimezone(display_zone())
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    month = day.replace(day=1)
    utc = lambda t: t.astimezone(timezone.utc)  # noqa: E731
    return {
        "today": utc(day),
        "tomorrow": utc(day + timedelta(days=1)),
        "week": utc(week),
        "next_week": utc(week + timedelta(days=7)),
        "month": utc(month),
        "local_day": day.date(),
    }


def home_day(user, now=None):
    """The display-zone date the caller's home figures are for (part of their cache keys)."""
    return home_periods(now or utcnow())["local_day"].isoformat()


def home_figures(user, now=None):
    """The home page figures of `user` for their role, cached per caller until a commit writes what they read.

    The key is the caller's own (role_scope per user): "my tasks", "waiting for me". It also
    names the display day, and entries live HOME_TIMEOUT seconds, since overdue and "today"
    move with the clock. The admin's pipeline health is read fresh each time (`pipeline_health`):
    workers and queues change without any commit.
    """
    from app.caching import cached_value, role_scope

    kind = home_kind(user)
    if kind is None:
        return {"kind": None}
    now = now or utcnow()
    periods = home_periods(now)
    compute = {"sales": sales_home, "manager": manager_home, "compliance": compliance_home, "admin": admin_home}[kind]
    key = f"home:{kind}:{periods['local_day'].isoformat()}"
    figures = cached_value(HOME_TABLES[kind], role_scope(user, per_user=True), key,
                           lambda: {"kind": kind, **compute(user, now, periods)}, timeout=HOME_TIMEOUT)
    if kind == "admin":
        from app.services.outbox import pipeline_health

        figures = {**figures, "pipeline": pipeline_health()}
    return figures


def _task_lists(user, lists, limit=HOME_LIST_LIMIT):
    """{name: open tasks in scope matching that list's conditions, earliest due first} in ONE statement.

    `lists`: {name: conditions}; each list is its own bounded subquery (UNION ALL), so a long
    overdue list never crowds out today's.
    """
    from models.task import is_open

    parts = [
        sa.select(
            sa.literal(name).label("list"), Task.id, Task.title, Task.due_date, Task.status, Task.priority,
            Task.customer_id, Customer.name,
        )
        .outerjoin(Customer, Customer.id == Task.customer_id)
        .where(scope_clause(Task, user), is_open(), *conditions)
        .order_by(Task.due_date, Task.id)
        .limit(limit)
        .subquery()
        for name, conditions in lists.items()
    ]
    stmt = sa.union_all(*(sa.select(part) for part in parts))
    keys = ("id", "title", "due", "status", "priority", "customerId", "customerName")
    out = {name: [] for name in lists}
    for r in reads.rows(stmt):
        out[r[0]].append(dict(zip(keys, (r[1], r[2], r[3], str(r[4]), str(r[5]), r[6], r[7]))))
    for rows in out.values():
        rows.sort(key=lambda t: (t["due"] is None, t["due"], t["id"]))
    return out


def _count(model, *conditions):
    return reads.rows(sa.select(sa.func.count()).select_from(model).where(*conditions))[0][0]


def own_request_counts(user):
    """{status: count} of the approval requests `user` made (their home's "my requests by state").

    On PostgreSQL the requester's record_counters totals (a request's one owner column is its
    requester), elsewhere count(*) over their rows.
    """
    uid = getattr(user, "id", None)
    out = {str(s): 0 for s in ApprovalStatus}
    if uid is None:
        return out
    if db.session.get_bind().dialect.name == "postgresql":
        c = RecordCounter
        rows = reads.rows(
            sa.select(c.status, sa.func.sum(c.n))
            .where(c.table_name == "approval_requests", c.span == TOTAL, c.owner_id == uid)
            .group_by(c.status)
        )
    else:
        rows = reads.rows(
            sa.select(ApprovalRequest.status, sa.func.count())
            .where(scope_clause(ApprovalRequest, user), ApprovalRequest.requester_id == uid)
            .group_by(ApprovalRequest.status)
        )
    for status, n in rows:
        out[str(status)] = int(n)
    return out


def _pipeline(user, periods):
    """Amounts (and counts) the caller requested (not recalled) and got approved since the start of this month.

    One statement of two parts, each on its own index: the rep's requests by request time, and
    approved requests by processing time (ix_approval_requests_approved_processed).
    """
    uid = getattr(user, "id", None)
    month = periods["month"]
    mine = [scope_clause(ApprovalRequest, user), ApprovalRequest.requester_id == uid]
    figures = (sa.func.coalesce(sa.func.sum(ApprovalRequest.amount), 0), sa.func.count())
    stmt = sa.union_all(
        sa.select(sa.literal("requested"), *figures)
        .where(*mine, ApprovalRequest.requested_at >= month, ApprovalRequest.status != ApprovalStatus.RECALLED),
        sa.select(sa.literal("approved"), *figures)
        .where(*mine, ApprovalRequest.status == ApprovalStatus.APPROVED, ApprovalRequest.processed_at >= month),
    )
    got = {name: (amount, n) for name, amount, n in reads.rows(stmt)}
    (requested, n_requested), (approved, n_approved) = got["requested"], got["approved"]
    return {"requested": requested, "approved": approved, "requestedCount": int(n_requested), "approvedCount": int(n_approved)}


def sales_home(user, now, periods):
    """A rep's home: overdue and today's tasks, this week's meetings, own requests by state, this month's pipeline."""
    meetings = reads.rows(
        sa.select(Meeting.id, Meeting.title, Meeting.scheduled_at, Meeting.location, Meeting.customer_id, Customer.name)
        .join(Customer, Customer.id == Meeting.customer_id)
        .where(scope_clause(Meeting, user), Meeting.scheduled_at >= periods["week"], Meeting.scheduled_at < periods["next_week"])
        .order_by(Meeting.scheduled_at, Meeting.id)
        .limit(HOME_LIST_LIMIT)
    )
    keys = ("id", "title", "at", "location", "customerId", "customerName")
    tasks = _task_lists(user, {
        "overdue": [Task.due_date < now],
        "today": [Task.due_date >= now, Task.due_date < periods["tomorrow"]],
    })
    return {
        "overdue": tasks["overdue"],
        "today": tasks["today"],
        "meetings": [dict(zip(keys, r)) for r in meetings],
        "requests": own_request_counts(user),
        "pipeline": _pipeline(user, periods),
        "counts": dashboard_figures(user, ("tasks", "meetings")),
    }


def user_names(ids):
    """{user id: display name} of `ids`."""
    from flask_appbuilder.security.sqla.models import User

    if not ids:
        return {}
    rows = reads.rows(sa.select(User.id, User.first_name, User.last_name, User.email).where(User.id.in_(sorted(ids))))
    return {uid: " ".join(p for p in (first, last) if p and p != "-") or email for uid, first, last, email in rows}


def _grouped(model, column, user, *figures, where=()):
    """{owner id: figures} grouped by `column` over `model` rows in `user`'s scope."""
    stmt = (
        sa.select(column, *figures)
        .select_from(model)
        .where(scope_clause(model, user), column.is_not(None), *where)
        .group_by(column)
    )
    return {r[0]: tuple(r[1:]) for r in reads.rows(stmt)}


def _weekly(model, column, user, starts, *where):
    """Counts of `model` rows in scope whose `column` falls in each week starting at `starts` (one statement)."""
    bounds = list(zip(starts, starts[1:] + [starts[-1] + timedelta(days=7)]))
    figures = [sa.func.count().filter(column >= a, column < b) for a, b in bounds]
    row = reads.rows(sa.select(*figures).select_from(model).where(scope_clause(model, user), column >= starts[0], *where))[0]
    return [int(n) for n in row]


def team_counts(user, now):
    """{owner id: (customers, open tasks, overdue tasks, pending requests)} over `user`'s scope.

    Owners are the records' first owner column (customer rep, task owner, requester). On
    PostgreSQL from record_counters, as `counter_counts` but grouped by owner: totals by
    status, open tasks due from now on from the "now" window's hour, day and month buckets
    plus its partial first hour counted exactly; elsewhere (SQLite) counted from the rows.
    """
    if db.session.get_bind().dialect.name != "postgresql":
        return exact_team_counts(user, now)
    c = RecordCounter
    params = _window_params("now", now)
    open_statuses = [str(s) for s in OPEN_STATUSES]
    mine = sa.and_(c.table_name == "tasks", c.status == OPEN_BUCKET)
    due_later = sa.or_(
        sa.and_(c.span == HOUR, c.day == params["now_day"], c.hour > params["now_hour"]),
        sa.and_(c.span == DAY, c.day > params["now_day"], c.day < params["now_next_month"]),
        sa.and_(c.span == MONTH, c.day >= params["now_next_month"]),
    )
    scope = _counter_scope(user)
    totals = reads.rows(
        sa.select(c.table_name, c.owner_id, c.status, sa.func.sum(c.n))
        .where(c.table_name.in_(("customers", "tasks", "approval_requests")), c.span == TOTAL, scope)
        .group_by(c.table_name, c.owner_id, c.status)
    )
    later = reads.rows(sa.select(c.owner_id, sa.func.sum(c.n)).where(mine, due_later, scope).group_by(c.owner_id))
    from models.task import is_open

    partial = reads.rows(
        sa.select(Task.user_id, sa.func.count())
        .where(scope_clause(Task, user), is_open(), Task.due_date >= now, Task.due_date < params["now_next_hour"])
        .group_by(Task.user_id)
    )
    out = {}

    def add(owner, index, n):
        row = out.setdefault(owner, [0, 0, 0, 0])
        row[index] += int(n)

    for table, owner, status, n in totals:
        if table == "customers":
            add(owner, 0, n)
        elif table == "tasks" and status in open_statuses:
            add(owner, 1, n)
            add(owner, 2, n)  # overdue = open - due from now on (subtracted below)
        elif table == "approval_requests" and status == str(ApprovalStatus.PENDING):
            add(owner, 3, n)
    for owner, n in list(later) + list(partial):
        add(owner, 2, -int(n))
    return {owner: tuple(v) for owner, v in out.items() if owner}


def exact_team_counts(user, now):
    """`team_counts` by count(*) over the rows in scope (SQLite; the tests' reference)."""
    from models.task import is_open

    out = {}
    customers = _grouped(Customer, Customer.assigned_sales_id, user, sa.func.count())
    tasks = _grouped(Task, Task.user_id, user, sa.func.count(), sa.func.count().filter(Task.due_date < now), where=[is_open()])
    pending = _grouped(ApprovalRequest, ApprovalRequest.requester_id, user, sa.func.count(),
                       where=[ApprovalRequest.status == ApprovalStatus.PENDING])
    for owner in set(customers) | set(tasks) | set(pending):
        n_open, n_overdue = tasks.get(owner, (0, 0))
        out[owner] = (int(customers.get(owner, (0,))[0]), int(n_open), int(n_overdue), int(pending.get(owner, (0,))[0]))
    return out


def event_trends(starts):
    """Events per week from the event counters (one row per type and UTC day the reactions counted).

    {"tasksCreated", "tasksCompleted", "approved", "rejected"}: lists, one figure per week in
    `starts` (UTC midnights, a week apart). Every event counts,
    whoever's record it is: only for callers who see every row (the Manager's home).
    """
    from models.analytics import EventCounter

    days = [s.date() for s in starts]
    types = {"TASK_CREATED": "tasksCreated", "TASK_COMPLETED": "tasksCompleted",
             "APPROVAL_APPROVED": "approved", "APPROVAL_REJECTED": "rejected"}
    out = {name: [0] * len(days) for name in types.values()}
    rows = reads.rows(
        sa.select(EventCounter.event_type, EventCounter.day, EventCounter.count)
        .where(EventCounter.event_type.in_(sorted(types)), EventCounter.day >= days[0],
               EventCounter.day < days[-1] + timedelta(days=7))
    )
    for event_type, day, n in rows:
        week = max(i for i, start in enumerate(days) if start <= day)
        out[types[event_type]][week] += int(n)
    return out


def manager_home(user, now, periods):
    """A manager's home: per-rep figures, what waits for their decision, overdue by rep, weekly trends."""
    from flask_appbuilder.security.sqla.models import Role, User

    from app.scope import OWNER_ROLES
    from app.services.approvals import pending_clause

    counts = team_counts(user, now)
    meetings = _grouped(Meeting, Meeting.sales_id, user, sa.func.count(),
                        where=[Meeting.scheduled_at >= periods["week"], Meeting.scheduled_at < periods["next_week"]])
    approved = _grouped(
        ApprovalRequest, ApprovalRequest.requester_id, user, sa.func.sum(ApprovalRequest.amount),
        where=[ApprovalRequest.status == ApprovalStatus.APPROVED, ApprovalRequest.processed_at >= periods["month"]],
    )
    # The team: every active user who owns customers and tasks (Sales, Manager), with or without rows yet.
    names = {
        uid: " ".join(p for p in (first, last) if p and p != "-") or email
        for uid, first, last, email in reads.rows(
            sa.select(User.id, User.first_name, User.last_name, User.email)
            .where(User.active.is_(True), User.roles.any(Role.name.in_(OWNER_ROLES))))
    }
    reps = set(names)
    team = []
    for uid in reps:
        customers, n_open, n_overdue, pending = counts.get(uid, (0, 0, 0, 0))
        team.append({
            "id": uid, "name": names.get(uid, str(uid)), "customers": customers,
            "openTasks": n_open, "overdueTasks": n_overdue, "meetingsThisWeek": int(meetings.get(uid, (0,))[0]),
            "pendingRequests": pending, "approvedThisMonth": approved.get(uid, (0,))[0] or 0,
        })
    team.sort(key=lambda r: (-r["overdueTasks"], r["name"]))
    waiting, oldest = reads.rows(
        sa.select(sa.func.count(), sa.func.min(ApprovalRequest.requested_at)).where(pending_clause(user)))[0]
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=timezone.utc)
    # Trend weeks run Monday to Sunday in UTC: the event counters count per UTC day.
    monday = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    monday -= timedelta(days=monday.weekday())
    starts = [monday - timedelta(days=7 * i) for i in range(TREND_WEEKS - 1, -1, -1)]
    if sees_all(user):
        trends = event_trends(starts)  # a few hundred counter rows, whatever the table sizes
    else:
        trends = {
            "tasksCreated": _weekly(Task, Task.created_at, user, starts),
            "tasksCompleted": _weekly(Task, Task.completed_at, user, starts),
            "approved": _weekly(ApprovalRequest, ApprovalRequest.processed_at, user, starts,
                                ApprovalRequest.status == ApprovalStatus.APPROVED),
            "rejected": _weekly(ApprovalRequest, ApprovalRequest.processed_at, user, starts,
                                ApprovalRequest.status == ApprovalStatus.REJECTED),
        }
    return {
        "team": team,
        "waiting": {"count": int(waiting), "oldest": oldest,
                    "oldestAgeHours": round((now - oldest).total_seconds() / 3600, 1) if oldest else None},
        "trends": {"weeks": [s.date().isoformat() for s in starts], **trends},
        "counts": dashboard_figures(user, SECTIONS),
    }


def compliance_home(user, now, periods):
    """Compliance's home: the requests waiting for its step with their reasons, reasons broken down, latest audit rows."""
    from models.audit import AuditLog
    from app.services.approvals import pending_clause

    where = pending_clause(user)
    queue = reads.rows(
        sa.select(ApprovalRequest.id, ApprovalRequest.product_name, ApprovalRequest.amount, ApprovalRequest.product_risk,
                  ApprovalRequest.requested_at, ApprovalRequest.compliance_reasons, ApprovalRequest.requester_id, Customer.name)
        .join(Customer, Customer.id == ApprovalRequest.customer_id)
        .where(where)
        .order_by(ApprovalRequest.requested_at, ApprovalRequest.id)
        .limit(HOME_LIST_LIMIT)
    )
    reasons = {}
    # The reasons of the whole queue (one small column), not only of the rows shown.
    for (found,) in reads.rows(sa.select(ApprovalRequest.compliance_reasons).where(where)):
        for reason in found or ():
            reasons[reason] = reasons.get(reason, 0) + 1
    total = _count(ApprovalRequest, where)
    audit = reads.rows(
        sa.select(AuditLog.id, AuditLog.timestamp, AuditLog.action, AuditLog.resource_type, AuditLog.resource_id, AuditLog.user_id)
        .where(scope_clause(AuditLog, user))
        .order_by(AuditLog.timestamp.desc(), AuditLog.id.desc())
        .limit(AUDIT_LIMIT)
    )
    names = user_names({r[6] for r in queue} | {r[5] for r in audit if r[5] is not None})
    keys = ("id", "product", "amount", "risk", "requestedAt", "reasons", "requesterId", "customerName")
    return {
        "queue": [{**dict(zip(keys, r)), "reasons": list(r[5] or ()), "requester": names.get(r[6], "")} for r in queue],
        "queueTotal": int(total),
        "reasons": sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])),
        "audit": [{"id": r[0], "at": r[1], "action": str(r[2]), "resourceType": r[3], "resourceId": r[4],
                   "user": names.get(r[5], "") if r[5] is not None else ""} for r in audit],
    }


def admin_home(user, now, periods):
    """The admin's home (cached part): users by role, active and not, the latest accounts."""
    from flask_appbuilder.security.sqla.models import Role, User, assoc_user_role

    by_role = reads.rows(
        sa.select(Role.name, sa.func.count(User.id), sa.func.count(User.id).filter(User.active.is_(True)))
        .select_from(Role)
        .outerjoin(assoc_user_role, assoc_user_role.c.role_id == Role.id)
        .outerjoin(User, User.id == assoc_user_role.c.user_id)
        .group_by(Role.name)
        .order_by(Role.name)
    )
    total, active = reads.rows(sa.select(sa.func.count(), sa.func.count().filter(User.active.is_(True))).select_from(User))[0]
    latest = reads.rows(
        sa.select(User.id, User.first_name, User.last_name, User.email, User.active, User.last_login, User.created_on)
        .order_by(User.id.desc())
        .limit(10)
    )
    keys = ("id", "firstName", "lastName", "email", "active", "lastLogin", "createdOn")
    return {
        "users": {"total": int(total), "active": int(active)},
        "roles": [{"role": r, "users": int(n), "active": int(a)} for r, n, a in by_role],
        "latestUsers": [dict(zip(keys, r)) for r in latest],
    }
