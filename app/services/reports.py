"""Excel and PDF reports built off the request: the customer list, the approval register, the
monthly activity per rep and the overdue tasks.

A report is asked for (`request_report`: kind, format, parameters checked here, one
ReportRun row committed), then built by `build(run_id)`: by the RQ job
`workers.reports.report_job` (enqueued by name after the commit) when REPORT_RUNNER is
"rq", by a thread of this process in the embedded default ("thread"); the same code either
way. The build reads its rows with a server-side cursor, through the one scope rule for
the asker (app/scope.py: a Sales user's report holds their rows only), writes the file under
REPORTS_DIR beside a temporary name and renames it when whole, records progress as it goes,
and tells the asker through the bell (app/services/notifications.py) with a link to the
download. Excel is written by XlsxWriter in constant-memory mode (one row in memory at a
time), every text cell through app/exports.py's formula guard; PDF by app/pdf.py, bounded
by REPORT_PDF_MAX_ROWS. Files are kept REPORT_RETENTION_DAYS; `sweep_expired` deletes them.
Only the asker and Admins may download a report.
"""

import enum
import logging
import os
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import sqlalchemy as sa
from flask import current_app
from flask_appbuilder.security.sqla.models import User
from sqlalchemy.orm import aliased

from app.exports import cell
from app.i18n import display_zone
from app.roles import APPROVAL, CUSTOMER, TASK
from app.scope import ADMIN, role_names, scope_clause, sees_all
from app.services.errors import Conflict, NotFound, ValidationFailed
from app.services.search import like_pattern
from models.approval import ApprovalRequest, ApprovalStatus, ApprovalStep, StepDecision
from models.base import utcnow
from models.customer import CompanySize, Customer, InvestmentProfile
from models.meeting import Meeting, MeetingStatus
from models.notification import NotificationType
from models.report import ReportRun, ReportStatus
from models.task import OPEN_STATUSES, Task, TaskPriority, TaskStatus

log = logging.getLogger(__name__)

FORMATS = {
    "xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "Excel"),
    "pdf": ("application/pdf", "PDF"),
}
BACKENDS = ("rq", "thread")
#: Rows read per round trip of the server-side cursor, and between two progress commits.
BATCH = 1000
#: Newest runs shown on the Reports screen and answered by the API's list.
LIST_LIMIT = 50
#: Where the bell's "ready" link leads (app/links.py allows it).
DOWNLOAD_LINK = "/reports/download/{id}"


# --- column types and parameters --------------------------------------------------------

TEXT, INT, YEN, DATETIME, DATE, PERCENT = "text", "int", "yen", "datetime", "date", "percent"


@dataclass(frozen=True)
class Column:
    """One column of a report: its label, its type (the Excel format and PDF spelling) and its weight (width)."""

    label: str
    type: str = TEXT
    width: float = 1.0


def _unknown(raw, allowed):
    for key in raw:
        if key not in allowed:
            raise ValidationFailed(f"unknown parameter {key!r}; known: {', '.join(allowed) or 'none'}", field=key)


def _text(raw, field, maximum=200):
    value = raw.get(field)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be text", field=field)
    value = value.strip()
    if len(value) > maximum:
        raise ValidationFailed(f"{field} must be at most {maximum} characters", field=field)
    if "\x00" in value:
        raise ValidationFailed(f"{field} must not contain a NUL character", field=field)
    return value or None


def _int(raw, field):
    value = raw.get(field)
    if value in (None, ""):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(str(value).strip())
    except ValueError:
        raise ValidationFailed(f"{field} must be an integer id", field=field) from None
    if number < 1:
        raise ValidationFailed(f"{field} must be a positive id", field=field)
    return number


def _date(raw, field):
    value = raw.get(field)
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise ValidationFailed(f"{field} must be a date (YYYY-MM-DD)", field=field) from None


def _choice(raw, field, enum_cls):
    value = raw.get(field)
    if value in (None, ""):
        return None
    allowed = [m.value for m in enum_cls]
    if value not in allowed:
        raise ValidationFailed(f"{field} must be one of {', '.join(allowed)}", field=field)
    return value


def _range(params, low, high):
    if params.get(low) and params.get(high) and params[low] > params[high]:
        raise ValidationFailed(f"{high} must not be before {low}", field=high)


def _month(raw, field="month"):
    value = raw.get(field)
    if value in (None, ""):
        today = utcnow().astimezone(display_zone())
        return f"{today.year:04d}-{today.month:02d}"
    text = str(value).strip()
    try:
        year, month = text.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        datetime(int(year), int(month), 1)
    except ValueError:
        raise ValidationFailed(f"{field} must be a month (YYYY-MM)", field=field) from None
    return text


def local_day_start(day):
    """The UTC instant a calendar day (ISO text) begins in DISPLAY_TIMEZONE."""
    return datetime.combine(date.fromisoformat(day), time(0), tzinfo=display_zone()).astimezone(timezone.utc)


def month_bounds(month):
    """[start, end) in UTC of the calendar month `YYYY-MM` in DISPLAY_TIMEZONE."""
    year, mon = (int(p) for p in month.split("-"))
    nxt = (year + 1, 1) if mon == 12 else (year, mon + 1)
    zone = display_zone()
    start = datetime(year, mon, 1, tzinfo=zone).astimezone(timezone.utc)
    end = datetime(nxt[0], nxt[1], 1, tzinfo=zone).astimezone(timezone.utc)
    return start, end


def _local(value):
    """An aware UTC time as the display zone's wall-clock time (what the screens show)."""
    return value.astimezone(display_zone()) if value is not None else None


def user_name(first, last, email=None):
    """A user's display name: first and last name (FAB's "-" placeholder left out), else the e-mail."""
    name = " ".join(p for p in (first, last) if p and p != "-")
    return name or email or ""


# --- the reports ------------------------------------------------------------------------


class Report:
    """One kind of report: its parameters, its columns and its rows for a user."""

    kind = ""
    title = ""
    resource = None
    params = ()

    def parse(self, raw):
        """The checked, JSON-storable parameters of `raw` (ValidationFailed naming the field otherwise)."""
        raise NotImplementedError

    def columns(self, params):
        """The report's columns."""
        raise NotImplementedError

    def statement(self, user, params):
        """The SELECT of the rows (already in the user's scope and order)."""
        raise NotImplementedError

    def row(self, values):
        """One output row of one result row."""
        return list(values)

    def count(self, session, user, params):
        """How many rows the report holds."""
        stmt = self.statement(user, params).order_by(None)
        return session.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one()

    def rows(self, session, user, params):
        """Yield the output rows, read in batches from a server-side cursor."""
        result = session.execute(self.statement(user, params).execution_options(yield_per=BATCH))
        try:
            for partition in result.partitions():
                for values in partition:
                    yield self.row(values)
        finally:
            result.close()

    def describe(self, session, params):
        """(label, value) pairs of the parameters, as printed at the top of the report."""
        return [(key, value) for key, value in params.items() if value not in (None, "")]


class CustomerReport(Report):
    """The customer list with its filters: name/e-mail/phone text, industry, size, rep, registration dates."""

    kind = "customers"
    title = "顧客一覧"
    resource = CUSTOMER
    params = ("q", "industry", "size", "assignedSalesId", "createdFrom", "createdTo")

    def parse(self, raw):
        """Checked filters of the customer list."""
        _unknown(raw, self.params)
        params = {
            "q": _text(raw, "q"),
            "industry": _text(raw, "industry", 100),
            "size": _choice(raw, "size", CompanySize),
            "assignedSalesId": _int(raw, "assignedSalesId"),
            "createdFrom": _date(raw, "createdFrom"),
            "createdTo": _date(raw, "createdTo"),
        }
        _range(params, "createdFrom", "createdTo")
        return params

    def columns(self, params):
        """Name, contact, classification, rep, times."""
        return [
            Column("顧客名", TEXT, 2.2), Column("メール", TEXT, 2), Column("電話番号", TEXT, 1.2),
            Column("業種", TEXT, 1), Column("規模", TEXT, 0.9), Column("投資方針", TEXT, 1),
            Column("リスク許容度", INT, 0.7), Column("担当", TEXT, 1.2), Column("登録日時", DATETIME, 1.2),
            Column("更新日時", DATETIME, 1.2),
        ]

    def statement(self, user, params):
        """Customers in scope matching the filters, by name."""
        rep = aliased(User)
        stmt = (
            sa.select(Customer.name, Customer.email, Customer.phone, Customer.industry, Customer.size,
                      Customer.investment_profile, Customer.risk_tolerance, rep.first_name, rep.last_name,
                      rep.email, Customer.created_at, Customer.updated_at)
            .select_from(Customer)
            .outerjoin(rep, rep.id == Customer.assigned_sales_id)
            .where(scope_clause(Customer, user))
            .order_by(Customer.name, Customer.id)
        )
        if params.get("q"):
            pattern = like_pattern(params["q"].lower())
            stmt = stmt.where(sa.or_(sa.func.lower(Customer.name).like(pattern, escape="\\"),
                                     sa.func.lower(Customer.email).like(pattern, escape="\\"),
                                     Customer.phone.like(pattern, escape="\\")))
        if params.get("industry"):
            stmt = stmt.where(Customer.industry == params["industry"])
        if params.get("size"):
            stmt = stmt.where(Customer.size == CompanySize(params["size"]))
        if params.get("assignedSalesId"):
            stmt = stmt.where(Customer.assigned_sales_id == params["assignedSalesId"])
        if params.get("createdFrom"):
            stmt = stmt.where(Customer.created_at >= local_day_start(params["createdFrom"]))
        if params.get("createdTo"):
            stmt = stmt.where(Customer.created_at < local_day_start(params["createdTo"]) + timedelta(days=1))
        return stmt

    def row(self, v):
        """Enum codes as text, the rep's name, local times."""
        return [v[0], v[1], v[2], v[3], v[4], v[5], v[6], user_name(v[7], v[8], v[9]), _local(v[10]), _local(v[11])]


class ApprovalRegister(Report):
    """Every approval request in scope with each of its steps: deciders, decisions, comments, times."""

    kind = "approvals"
    title = "承認台帳"
    resource = APPROVAL
    params = ("status", "requestedFrom", "requestedTo", "customerId")

    def parse(self, raw):
        """Checked filters: status, request dates, one customer."""
        _unknown(raw, self.params)
        params = {
            "status": _choice(raw, "status", ApprovalStatus),
            "requestedFrom": _date(raw, "requestedFrom"),
            "requestedTo": _date(raw, "requestedTo"),
            "customerId": _text(raw, "customerId", 36),
        }
        _range(params, "requestedFrom", "requestedTo")
        return params

    def columns(self, params):
        """The request's fields, then the step's."""
        return [
            Column("申請日時", DATETIME, 1.1), Column("顧客名", TEXT, 1.6), Column("商品名", TEXT, 1.5),
            Column("リスク", INT, 0.5), Column("金額", YEN, 1.1), Column("状態", TEXT, 0.9),
            Column("申請者", TEXT, 1), Column("申請コメント", TEXT, 1.6), Column("処理日時", DATETIME, 1.1),
            Column("ステップ", INT, 0.5), Column("承認ロール", TEXT, 0.9), Column("判断者", TEXT, 1),
            Column("判断", TEXT, 0.8), Column("判断コメント", TEXT, 1.6), Column("判断日時", DATETIME, 1.1),
        ]

    def statement(self, user, params):
        """Requests in scope (outer-joined to their steps), oldest first, steps in order."""
        requester, decider = aliased(User), aliased(User)
        stmt = (
            sa.select(ApprovalRequest.requested_at, Customer.name, ApprovalRequest.product_name,
                      ApprovalRequest.product_risk, ApprovalRequest.amount, ApprovalRequest.status,
                      requester.first_name, requester.last_name, requester.email, ApprovalRequest.comment,
                      ApprovalRequest.processed_at, ApprovalStep.sequence, ApprovalStep.required_role,
                      decider.first_name, decider.last_name, decider.email, ApprovalStep.decision,
                      ApprovalStep.comment, ApprovalStep.decided_at)
            .select_from(ApprovalRequest)
            .join(Customer, Customer.id == ApprovalRequest.customer_id)
            .join(requester, requester.id == ApprovalRequest.requester_id)
            .outerjoin(ApprovalStep, ApprovalStep.approval_request_id == ApprovalRequest.id)
            .outerjoin(decider, decider.id == ApprovalStep.decided_by_id)
            .where(scope_clause(ApprovalRequest, user))
            .order_by(ApprovalRequest.requested_at, ApprovalRequest.id, ApprovalStep.sequence)
        )
        if params.get("status"):
            stmt = stmt.where(ApprovalRequest.status == ApprovalStatus(params["status"]))
        if params.get("requestedFrom"):
            stmt = stmt.where(ApprovalRequest.requested_at >= local_day_start(params["requestedFrom"]))
        if params.get("requestedTo"):
            stmt = stmt.where(ApprovalRequest.requested_at < local_day_start(params["requestedTo"]) + timedelta(days=1))
        if params.get("customerId"):
            stmt = stmt.where(ApprovalRequest.customer_id == params["customerId"])
        return stmt

    def row(self, v):
        """Names of requester and decider, local times; a request without steps has empty step cells."""
        return [_local(v[0]), v[1], v[2], v[3], v[4], v[5], user_name(v[6], v[7], v[8]), v[9], _local(v[10]),
                v[11], ROLE_LABELS.get(v[12], v[12]), user_name(v[13], v[14], v[15]) if v[11] is not None else None, v[16], v[17],
                _local(v[18])]


class ActivityReport(Report):
    """One month per rep: meetings, tasks created / completed / overdue, requests and amounts."""

    kind = "activity"
    title = "月次活動レポート"
    resource = CUSTOMER
    params = ("month", "salesId")

    def parse(self, raw):
        """The month (YYYY-MM, default this month) and optionally one rep."""
        _unknown(raw, self.params)
        return {"month": _month(raw), "salesId": _int(raw, "salesId")}

    def columns(self, params):
        """The rep, then the month's figures."""
        return [
            Column("担当者", TEXT, 1.5), Column("メール", TEXT, 1.8), Column("商談", INT, 0.6),
            Column("商談(完了)", INT, 0.7), Column("タスク作成", INT, 0.7), Column("タスク完了", INT, 0.7),
            Column("期限切れ", INT, 0.7), Column("申請", INT, 0.6), Column("承認", INT, 0.6),
            Column("申請金額", YEN, 1.2), Column("承認金額", YEN, 1.2),
        ]

    def _figures(self, session, user, params):
        start, end = month_bounds(params["month"])
        now = utcnow()
        rep_filter = params.get("salesId")

        def per_rep(model, owner, *figures, where=()):
            column = getattr(model, owner)
            stmt = sa.select(column, *figures).select_from(model).where(scope_clause(model, user), column.is_not(None), *where)
            if not sees_all(user):
                stmt = stmt.where(column == user.id)  # a Sales user's report holds their own row only
            if rep_filter:
                stmt = stmt.where(column == rep_filter)
            return {r[0]: r[1:] for r in session.execute(stmt.group_by(column))}

        in_month = lambda col: (col >= start, col < end)  # noqa: E731
        meetings = per_rep(Meeting, "sales_id", sa.func.count(),
                           sa.func.count().filter(Meeting.status == MeetingStatus.completed), where=in_month(Meeting.scheduled_at))
        created = per_rep(Task, "user_id", sa.func.count(), where=in_month(Task.created_at))
        done = per_rep(Task, "user_id", sa.func.count(), where=(*in_month(Task.completed_at), Task.status == TaskStatus.COMPLETED))
        overdue = per_rep(Task, "user_id", sa.func.count(),
                          where=(*in_month(Task.due_date), Task.due_date < now, Task.status.in_(OPEN_STATUSES)))
        requested = per_rep(ApprovalRequest, "requester_id", sa.func.count(),
                            sa.func.coalesce(sa.func.sum(ApprovalRequest.amount), 0),
                            where=in_month(ApprovalRequest.requested_at))
        approved = per_rep(ApprovalRequest, "requester_id", sa.func.count(),
                           sa.func.coalesce(sa.func.sum(ApprovalRequest.amount), 0),
                           where=(*in_month(ApprovalRequest.processed_at), ApprovalRequest.status == ApprovalStatus.APPROVED))
        reps = set(meetings) | set(created) | set(done) | set(overdue) | set(requested) | set(approved)
        names = {}
        if reps:
            names = {r[0]: r[1:] for r in session.execute(
                sa.select(User.id, User.first_name, User.last_name, User.email).where(User.id.in_(reps)))}
        out = []
        for uid in reps:
            first, last, email = names.get(uid, ("", "", ""))
            out.append([
                user_name(first, last, email), email,
                meetings.get(uid, (0, 0))[0], meetings.get(uid, (0, 0))[1],
                created.get(uid, (0,))[0], done.get(uid, (0,))[0], overdue.get(uid, (0,))[0],
                requested.get(uid, (0, 0))[0], approved.get(uid, (0, 0))[0],
                Decimal(requested.get(uid, (0, 0))[1] or 0), Decimal(approved.get(uid, (0, 0))[1] or 0),
            ])
        out.sort(key=lambda r: (r[0], r[1] or ""))
        return out

    def count(self, session, user, params):
        """How many reps have figures in the month (plus the total row)."""
        return len(self._figures(session, user, params)) + 1

    def rows(self, session, user, params):
        """One row per rep, then the total (aggregates: a few rows whatever the table sizes)."""
        figures = self._figures(session, user, params)
        yield from figures
        totals = ["合計", None] + [sum(r[i] for r in figures) for i in range(2, 11)]
        totals[9], totals[10] = Decimal(totals[9] or 0), Decimal(totals[10] or 0)
        yield totals


class OverdueTasks(Report):
    """Open tasks past their due date, most overdue first."""

    kind = "overdue"
    title = "期限切れタスク一覧"
    resource = TASK
    params = ("userId", "priority")

    def parse(self, raw):
        """Optionally one owner and one priority."""
        _unknown(raw, self.params)
        return {"userId": _int(raw, "userId"), "priority": _choice(raw, "priority", TaskPriority)}

    def columns(self, params):
        """The task, its customer and owner, how late it is."""
        return [
            Column("タスク", TEXT, 2.2), Column("顧客名", TEXT, 1.8), Column("担当", TEXT, 1.2),
            Column("期限", DATETIME, 1.1), Column("超過日数", INT, 0.7), Column("優先度", TEXT, 0.7),
            Column("状態", TEXT, 0.8),
        ]

    def statement(self, user, params):
        """Open tasks in scope due before now, oldest due date first."""
        owner = aliased(User)
        stmt = (
            sa.select(Task.title, Customer.name, owner.first_name, owner.last_name, owner.email, Task.due_date,
                      Task.priority, Task.status)
            .select_from(Task)
            .outerjoin(Customer, Customer.id == Task.customer_id)
            .join(owner, owner.id == Task.user_id)
            .where(scope_clause(Task, user), Task.status.in_(OPEN_STATUSES), Task.due_date.is_not(None),
                   Task.due_date < utcnow())
            .order_by(Task.due_date, Task.id)
        )
        if params.get("userId"):
            stmt = stmt.where(Task.user_id == params["userId"])
        if params.get("priority"):
            stmt = stmt.where(Task.priority == TaskPriority(params["priority"]))
        return stmt

    def row(self, v):
        """Days overdue counted from now."""
        days = (utcnow() - v[5]).days
        return [v[0], v[1], user_name(v[2], v[3], v[4]), _local(v[5]), days, v[6], v[7]]


KINDS = {r.kind: r for r in (CustomerReport(), ApprovalRegister(), ActivityReport(), OverdueTasks())}


def report_of(kind):
    """The report `kind`, or ValidationFailed naming `kind`."""
    if kind not in KINDS:
        raise ValidationFailed(f"unknown report {kind!r}; choose one of {', '.join(KINDS)}", field="kind")
    return KINDS[kind]


# --- writers ----------------------------------------------------------------------------


#: What a report prints for the codes of its cells (the reports are in Japanese, for readers outside the CRM).
LABELS = {
    ApprovalStatus.PENDING: "承認待ち", ApprovalStatus.APPROVED: "承認", ApprovalStatus.REJECTED: "却下",
    ApprovalStatus.RECALLED: "取下げ",
    StepDecision.APPROVED: "承認", StepDecision.REJECTED: "却下",
    TaskStatus.TODO: "未着手", TaskStatus.IN_PROGRESS: "進行中", TaskStatus.COMPLETED: "完了",
    TaskStatus.CANCELLED: "中止",
    TaskPriority.LOW: "低", TaskPriority.MEDIUM: "中", TaskPriority.HIGH: "高", TaskPriority.URGENT: "緊急",
    CompanySize.SMALL: "小規模", CompanySize.MEDIUM: "中規模", CompanySize.LARGE: "大規模",
    CompanySize.ENTERPRISE: "エンタープライズ",
    InvestmentProfile.conservative: "安定型", InvestmentProfile.moderate: "バランス型",
    InvestmentProfile.aggressive: "積極型",
}
#: The approval steps' roles as printed.
ROLE_LABELS = {"Manager": "マネージャー", "Compliance": "コンプライアンス"}


def _plain(value):
    """An enum as its Japanese label (else its code), any other value as it is."""
    if isinstance(value, enum.Enum):
        return LABELS.get(value, value.value)
    return value


def write_xlsx(path, report, columns, rows, described, on_progress=None):
    """Write `rows` as an .xlsx at `path` in constant memory: typed cells, ¥ amounts, frozen header, autofilter.

    Every text cell goes through app/exports.py's `cell()` and is written as a string
    (never a formula); a second sheet holds the parameters. Returns the number of rows.
    """
    import xlsxwriter

    book = xlsxwriter.Workbook(path, {
        "constant_memory": True,
        "tmpdir": os.path.dirname(path),
        "strings_to_formulas": False,
        "strings_to_urls": False,
        "strings_to_numbers": False,
    })
    try:
        formats = {
            "head": book.add_format({"bold": True, "bg_color": "#34495E", "font_color": "#FFFFFF", "border": 1}),
            YEN: book.add_format({"num_format": '"¥"#,##0'}),
            DATETIME: book.add_format({"num_format": "yyyy-mm-dd hh:mm"}),
            DATE: book.add_format({"num_format": "yyyy-mm-dd"}),
            INT: book.add_format({"num_format": "0"}),
            PERCENT: book.add_format({"num_format": '0.0"%"'}),
        }
        sheet = book.add_worksheet(report.title[:31])
        sheet.freeze_panes(1, 0)
        for i, col in enumerate(columns):
            sheet.set_column(i, i, max(10, int(col.width * 12)))
            sheet.write_string(0, i, cell(col.label), formats["head"])
        n = 0
        for n, row in enumerate(rows, start=1):
            for i, (col, value) in enumerate(zip(columns, row)):
                _write_cell(sheet, n, i, col.type, value, formats)
            if on_progress is not None and n % BATCH == 0:
                on_progress(n)
        sheet.autofilter(0, 0, max(n, 1), len(columns) - 1)
        about = book.add_worksheet("条件")
        about.set_column(0, 0, 20)
        about.set_column(1, 1, 60)
        for r, (label, value) in enumerate(described):
            about.write_string(r, 0, cell(str(label)))
            _write_cell(about, r, 1, TEXT, value, formats)
    finally:
        book.close()
    return n


def _write_cell(sheet, r, c, kind, value, formats):
    value = cell(_plain(value))
    if value is None or value == "":
        return
    if isinstance(value, datetime):
        sheet.write_datetime(r, c, value.replace(tzinfo=None), formats[DATETIME])
    elif isinstance(value, date):
        sheet.write_datetime(r, c, datetime.combine(value, time(0)), formats[DATE])
    elif isinstance(value, bool):
        sheet.write_boolean(r, c, value)
    elif isinstance(value, (int, float, Decimal)):
        sheet.write_number(r, c, float(value), formats.get(kind))
    else:
        from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

        sheet.write_string(r, c, ILLEGAL_CHARACTERS_RE.sub("", str(value)))


def _pdf_text(kind, value):
    value = _plain(value)
    if value is None:
        return ""
    if kind == YEN:
        from app.pdf import yen

        return yen(value)
    if kind == PERCENT:
        return f"{value:.1f}%"
    if isinstance(value, int) and kind == INT:
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    from app.pdf import text_of

    return text_of(value)


def write_pdf(path, report, columns, rows, described, subtitle, limit, on_progress=None):
    """Write `rows` as a landscape A4 PDF at `path` (app/pdf.py, Japanese font); at most `limit` rows."""
    from app.pdf import Document

    doc = Document(report.title, subtitle=subtitle, landscape=True)
    if described:
        doc.key_values(described)
    count = [0]

    def formatted():
        for row in rows:
            count[0] += 1
            if count[0] > limit:
                raise ValidationFailed(f"the PDF holds at most {limit} rows; narrow the filters or choose Excel",
                                       field="format")
            if on_progress is not None and count[0] % BATCH == 0:
                on_progress(count[0])
            yield [_pdf_text(col.type, v) for col, v in zip(columns, row)]

    numeric = {i for i, col in enumerate(columns) if col.type in (INT, YEN, PERCENT)}
    doc.table([c.label for c in columns], formatted(), widths=[c.width for c in columns], numeric=numeric)
    doc.save(path)
    return count[0]


# --- runs: request, build, download, sweep ---------------------------------------------


def backend(config=None):
    """"rq" or "thread": REPORT_RUNNER, else RQ when Redis is configured."""
    config = config or current_app.config
    chosen = config.get("REPORT_RUNNER") or ("rq" if config.get("REDIS_URL") else "thread")
    if chosen not in BACKENDS:
        raise RuntimeError(f"REPORT_RUNNER must be one of {', '.join(BACKENDS)}")
    return chosen


def reports_dir(config=None):
    """The directory report files are written to (REPORTS_DIR), created when missing."""
    config = config or current_app.config
    path = config["REPORTS_DIR"]
    os.makedirs(path, exist_ok=True)
    return path


def parse_request(kind, fmt, raw_params):
    """(report, format, params) of a request, or ValidationFailed naming `kind`, `format`, `params` or a parameter."""
    report = report_of(kind)
    if fmt not in FORMATS:
        raise ValidationFailed(f"format must be one of {', '.join(FORMATS)}", field="format")
    if raw_params is None:
        raw_params = {}
    if not isinstance(raw_params, dict):
        raise ValidationFailed("params must be an object", field="params")
    return report, fmt, report.parse(raw_params)


def request_report(session, user, kind, fmt, raw_params):
    """Check and store a report request of `user`, commit it, then start its build; return the run.

    A PDF over REPORT_PDF_MAX_ROWS rows is refused here (400 naming `format`), before
    anything is stored.
    """
    config = current_app.config
    report, fmt, params = parse_request(kind, fmt, raw_params)
    if fmt == "pdf":
        limit = config["REPORT_PDF_MAX_ROWS"]
        if report.count(session, user, params) > limit:
            raise ValidationFailed(f"the PDF holds at most {limit} rows; narrow the filters or choose Excel",
                                   field="format")
    now = utcnow()
    run = ReportRun(user_id=user.id, kind=report.kind, format=fmt, params=params, status=ReportStatus.QUEUED,
                    created_at=now, expires_at=now + timedelta(days=config["REPORT_RETENTION_DAYS"]))
    session.add(run)
    session.commit()
    dispatch(run.id)
    if backend(config) == "thread":
        sweep_expired(session)  # the embedded default has no scheduler: each request sweeps
    return run


_threads = {}


def dispatch(run_id, config=None):
    """Start the build of committed run `run_id`: an RQ job by name, or a thread of this process."""
    config = config or current_app.config
    if backend(config) == "rq":
        import redis

        from app.delivery import queue

        try:
            queue(config).enqueue("workers.reports.report_job", run_id, job_timeout=config["REPORT_JOB_TIMEOUT"],
                                  result_ttl=600, failure_ttl=86400)
            return "rq"
        except redis.RedisError as exc:
            # The request is stored; build it here rather than leave it queued for nobody.
            log.warning("Redis unavailable (%s): report %s is built in this process", exc, run_id)
    app = current_app._get_current_object()
    thread = threading.Thread(target=_build_in_thread, args=(app, run_id), name=f"report-{run_id[:8]}", daemon=True)
    _threads[run_id] = thread
    thread.start()
    return "thread"


def _build_in_thread(app, run_id):
    try:
        with app.app_context():
            build(run_id)
    finally:
        _threads.pop(run_id, None)


def wait(run_id, timeout):
    """Wait up to `timeout` seconds for this process's build thread of `run_id` (a no-op for RQ builds)."""
    thread = _threads.get(run_id)
    if thread is not None:
        thread.join(timeout)


def _set(session, run_id, **values):
    session.execute(sa.update(ReportRun).where(ReportRun.id == run_id).values(**values)
                    .execution_options(synchronize_session=False))
    session.commit()


def build(run_id):
    """Build the file of run `run_id` once (a QUEUED run is claimed; any other is left alone); return its status."""
    from app import links
    from app.extensions import db
    from app.services.notifications import notify

    config = current_app.config
    session = sa.orm.Session(bind=db.engine)
    reader = sa.orm.Session(bind=db.engine)
    tmp = None
    try:
        claimed = session.execute(
            sa.update(ReportRun).where(ReportRun.id == run_id, ReportRun.status == ReportStatus.QUEUED)
            .values(status=ReportStatus.RUNNING, started_at=utcnow(), progress=0)
            .execution_options(synchronize_session=False)
        ).rowcount
        session.commit()
        if not claimed:
            return None
        run = session.get(ReportRun, run_id)
        report, fmt, params = KINDS[run.kind], run.format, dict(run.params or {})
        user = reader.get(User, run.user_id)
        columns = report.columns(params)
        total = report.count(reader, user, params)
        _set(session, run_id, rows_total=total)

        def on_progress(done):
            _set(session, run_id, rows_done=done, progress=min(99, int(done * 100 / max(total, 1))))

        folder = os.path.join(reports_dir(config), str(run.user_id))
        os.makedirs(folder, exist_ok=True)
        relative = os.path.join(str(run.user_id), f"{run_id}.{fmt}")
        final = os.path.join(reports_dir(config), relative)
        tmp = final + ".part"
        described = [("レポート", report.title), ("作成者", user_name(user.first_name, user.last_name, user.email)),
                     ("作成日時", _local(utcnow()).strftime("%Y-%m-%d %H:%M"))] + report.describe(reader, params)
        rows = report.rows(reader, user, params)
        if fmt == "xlsx":
            done = write_xlsx(tmp, report, columns, rows, described, on_progress)
        else:
            subtitle = f"{described[1][1]} / {described[2][1]}"
            done = write_pdf(tmp, report, columns, rows, described[3:], subtitle, config["REPORT_PDF_MAX_ROWS"],
                             on_progress)
        reader.rollback()
        os.replace(tmp, final)
        tmp = None
        _set(session, run_id, status=ReportStatus.DONE, progress=100, rows_done=done, file_path=relative,
             file_size=os.path.getsize(final), finished_at=utcnow())
        label = FORMATS[fmt][1]
        notify(session, run.user_id, NotificationType.SYSTEM, f"レポートの準備ができました: {report.title} ({label})",
               f"{done} 行。{config['REPORT_RETENTION_DAYS']} 日間ダウンロードできます。",
               link=links.check(DOWNLOAD_LINK.format(id=run_id)))
        session.commit()
        return ReportStatus.DONE
    except Exception as exc:  # noqa: BLE001 - any failure is the run's status, told to the asker
        session.rollback()
        reader.rollback()
        log.exception("report %s failed", run_id)
        message = exc.message if isinstance(exc, ValidationFailed) else f"{type(exc).__name__}: {exc}"
        _set(session, run_id, status=ReportStatus.FAILED, error=message[:2000], finished_at=utcnow())
        run = session.get(ReportRun, run_id)
        if run is not None:
            notify(session, run.user_id, NotificationType.SYSTEM, f"レポートを作成できませんでした: {KINDS[run.kind].title}",
                   message[:500], link=None)
            session.commit()
        return ReportStatus.FAILED
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        reader.close()
        session.close()


def is_admin(user):
    """True for an Admin (who may download anyone's report)."""
    return ADMIN in role_names(user)


def visible_run(session, run_id, user):
    """The run `run_id` when `user` asked for it or is an Admin; NotFound otherwise (the same answer as a missing one)."""
    run = session.get(ReportRun, run_id) if isinstance(run_id, str) and len(run_id) <= 36 else None
    if run is None or (run.user_id != getattr(user, "id", None) and not is_admin(user)):
        raise NotFound("report not found")
    return run


def download(session, run_id, user):
    """(absolute path, download name, mimetype) of a finished report `user` may download.

    NotFound when it is not theirs (an Admin may download any), or expired; Conflict while
    it is still being built or failed.
    """
    run = visible_run(session, run_id, user)
    if run.status == ReportStatus.EXPIRED:
        raise NotFound("report expired; ask for it again")
    if run.status != ReportStatus.DONE or not run.file_path:
        raise Conflict(f"report is {run.status.value.lower()}, not ready to download")
    path = os.path.join(reports_dir(), run.file_path)
    if not os.path.isfile(path):
        raise NotFound("report file is gone; ask for it again")
    stamp = _local(run.created_at).strftime("%Y%m%d-%H%M")
    return path, f"{run.kind}-{stamp}.{run.format}", FORMATS[run.format][0]


def mine(session, user, limit=LIST_LIMIT):
    """`user`'s newest report runs."""
    return session.execute(
        sa.select(ReportRun).where(ReportRun.user_id == user.id)
        .order_by(ReportRun.created_at.desc(), ReportRun.id.desc()).limit(limit)
    ).scalars().all()


def as_dict(run):
    """The API's answer of one run."""
    from app.serialize import json_value

    return {
        "id": run.id,
        "kind": run.kind,
        "title": KINDS[run.kind].title if run.kind in KINDS else run.kind,
        "format": run.format,
        "params": run.params,
        "status": run.status.value,
        "progress": run.progress,
        "rowsDone": run.rows_done,
        "rowsTotal": run.rows_total,
        "fileSize": run.file_size,
        "error": run.error,
        "createdAt": json_value(run.created_at),
        "finishedAt": json_value(run.finished_at),
        "expiresAt": json_value(run.expires_at),
        "downloadUrl": f"/api/reports/{run.kind}/{run.id}/download" if run.status == ReportStatus.DONE else None,
    }


#: The error of a run whose build stopped without finishing (its worker was killed).
INTERRUPTED = "the build stopped before it finished (its worker ended); ask for the report again"


def sweep_expired(session, now=None, config=None):
    """Delete the files of runs past `expires_at` and mark them EXPIRED; return how many.

    A run RUNNING (or still QUEUED) for longer than REPORT_JOB_TIMEOUT lost its worker or
    its job (RQ gave up, the process was killed, Redis lost the queue): it is marked FAILED
    so its asker sees why, and its partial file (a `.part`, never served) is removed.
    """
    config = config or current_app.config
    now = now or utcnow()
    root = reports_dir(config)
    cutoff = now - timedelta(seconds=config["REPORT_JOB_TIMEOUT"])
    stale = session.execute(
        sa.select(ReportRun).where(sa.or_(
            sa.and_(ReportRun.status == ReportStatus.RUNNING, ReportRun.started_at < cutoff),
            sa.and_(ReportRun.status == ReportStatus.QUEUED, ReportRun.created_at < cutoff),
        )).limit(1000)
    ).scalars().all()
    for run in stale:
        part = os.path.join(root, str(run.user_id), f"{run.id}.{run.format}.part")
        if os.path.exists(part):
            os.unlink(part)
        run.status, run.error, run.finished_at = ReportStatus.FAILED, INTERRUPTED, now
    runs = session.execute(
        sa.select(ReportRun).where(ReportRun.expires_at <= now, ReportRun.status != ReportStatus.EXPIRED)
        .limit(1000)
    ).scalars().all()
    for run in runs:
        if run.file_path:
            path = os.path.join(root, run.file_path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        run.status = ReportStatus.EXPIRED
        run.file_path = None
    session.commit()
    return len(runs)
