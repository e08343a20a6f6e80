"""How codes, amounts, times and flags read on the screens: labels, coloured badges, ¥, the display time zone.

Every list and page shows a stored code (TODO, URGENT, conservative…) as its translated
label in a badge whose colour says what the value means, an amount as ¥1,234,567, a
timestamp in DISPLAY_TIMEZONE and a boolean as a word with an icon. Rows of open tasks
past their due date, or due within UPCOMING_DAYS, get a class the stylesheet highlights.
"""

from datetime import timedelta
from decimal import Decimal

from flask import has_request_context, request
from flask_babel import lazy_gettext as _
from markupsafe import Markup, escape

from app.i18n import display_zone
from models.approval import ApprovalStatus
from models.base import utcnow
from models.customer import CompanySize, InvestmentProfile
from models.meeting import MeetingStatus, MeetingType
from models.notification import NotificationType
from models.task import TaskPriority, TaskStatus

#: Open tasks due within this many days are "due soon" (design.md: upcoming = within 3 days).
UPCOMING_DAYS = 3

# kind -> {code: (label, Bootstrap 3 label colour)}
BADGES = {
    "task_status": {
        TaskStatus.TODO: (_("To do"), "info"),
        TaskStatus.IN_PROGRESS: (_("In progress"), "primary"),
        TaskStatus.COMPLETED: (_("Completed"), "success"),
        TaskStatus.CANCELLED: (_("Cancelled"), "default"),
    },
    "priority": {
        TaskPriority.LOW: (_("Low"), "default"),
        TaskPriority.MEDIUM: (_("Medium"), "info"),
        TaskPriority.HIGH: (_("High"), "warning"),
        TaskPriority.URGENT: (_("Urgent"), "danger"),
    },
    "approval_status": {
        ApprovalStatus.PENDING: (_("Pending"), "warning"),
        ApprovalStatus.APPROVED: (_("Approved"), "success"),
        ApprovalStatus.REJECTED: (_("Rejected"), "danger"),
        ApprovalStatus.RECALLED: (_("Recalled"), "default"),
    },
    "decision": {
        "APPROVED": (_("Approved"), "success"),
        "REJECTED": (_("Rejected"), "danger"),
    },
    "meeting_status": {
        MeetingStatus.scheduled: (_("Scheduled"), "info"),
        MeetingStatus.completed: (_("Held"), "success"),
        MeetingStatus.cancelled: (_("Cancelled"), "default"),
    },
    "meeting_type": {
        MeetingType.visit: (_("Visit"), "primary"),
        MeetingType.phone: (_("Phone call"), "info"),
        MeetingType.online: (_("Online"), "info"),
        MeetingType.branch: (_("At our branch"), "primary"),
        MeetingType.other: (_("Other"), "default"),
    },
    "size": {
        CompanySize.SMALL: (_("Small"), "default"),
        CompanySize.MEDIUM: (_("Medium-sized"), "info"),
        CompanySize.LARGE: (_("Large"), "primary"),
        CompanySize.ENTERPRISE: (_("Enterprise"), "primary"),
    },
    "profile": {
        InvestmentProfile.conservative: (_("Conservative"), "success"),
        InvestmentProfile.moderate: (_("Moderate"), "warning"),
        InvestmentProfile.aggressive: (_("Aggressive"), "danger"),
    },
    "notification_type": {
        NotificationType.APPROVAL_REQUEST: (_("Approval request"), "warning"),
        NotificationType.APPROVAL_APPROVED: (_("Request approved"), "success"),
        NotificationType.APPROVAL_REJECTED: (_("Request rejected"), "danger"),
        NotificationType.TASK_ASSIGNED: (_("Task assigned"), "info"),
        NotificationType.TASK_DUE_SOON: (_("Task due"), "warning"),
        NotificationType.MEETING_REMINDER: (_("Meeting reminder"), "info"),
        NotificationType.SYSTEM: (_("System"), "default"),
    },
}


def label(kind, code):
    """The translated label of `code` among `kind`'s codes (the code itself when unknown, '' for None)."""
    if code is None:
        return ""
    entry = BADGES.get(kind, {}).get(code)
    return str(entry[0]) if entry else str(code)


def badge(kind, code):
    """`code` as a coloured badge with its label; empty for None (each badge built once per request)."""
    if code is None or code == "":
        return Markup("")
    return request_memo(("badge", kind, code), lambda: _badge(kind, code))


def request_memo(key, build):
    """`build()` once per request for `key` (kept on the request: flask.g is the app context's, which tests share)."""
    if not has_request_context():
        return build()
    memo = request.environ.setdefault("crm.display_memo", {})
    if key not in memo:
        memo[key] = build()
    return memo[key]


def _badge(kind, code):
    entry = BADGES.get(kind, {}).get(code)
    text, colour = (entry[0], entry[1]) if entry else (code, "default")
    css = "".join(c if c.isalnum() else "-" for c in f"{kind}-{code}")
    return Markup('<span class="label label-{} crm-badge crm-badge-{}">{}</span>').format(colour, css, text)


def badge_formatter(kind):
    """A FAB `formatters_columns` entry showing the column as `kind`'s badge."""
    return lambda code: badge(kind, code)


def risk_badge(level):
    """A 1–10 risk level (risk tolerance, product risk) as a badge: 1–3 low, 4–6 medium, 7–10 high."""
    if level is None:
        return Markup("")
    level = int(level)
    text, colour = (_("Low"), "success") if level <= 3 else (_("Medium"), "warning") if level <= 6 else (_("High"), "danger")
    return Markup('<span class="label label-{} crm-badge crm-risk" title="{}">{} {}</span>').format(colour, text, level, text)


def yen(value):
    """A JPY amount as ¥1,234,567 (decimals only when there are any); '' for None."""
    if value is None:
        return ""
    value = Decimal(value)
    return f"¥{value:,.0f}" if value == value.to_integral_value() else f"¥{value:,.2f}"


def local_time(value, fmt="%Y-%m-%d %H:%M"):
    """An aware timestamp in the display time zone ('' for None; a naive one is taken as UTC)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        from datetime import timezone

        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(display_zone()).strftime(fmt)


def yes_no(value):
    """A boolean as a word with an icon (None: a dash)."""
    if value is None:
        return Markup('<span class="text-muted">—</span>')
    if value:
        return Markup('<span class="crm-bool crm-yes"><i class="fa fa-check" aria-hidden="true"></i> {}</span>').format(_("Yes"))
    return Markup('<span class="crm-bool crm-no"><i class="fa fa-minus" aria-hidden="true"></i> {}</span>').format(_("No"))


def read_flag(value):
    """A notification's read flag: Read / Unread."""
    if value:
        return Markup('<span class="crm-bool crm-yes"><i class="fa fa-envelope-open-o" aria-hidden="true"></i> {}</span>').format(_("Read"))
    return Markup('<span class="label label-primary crm-badge"><i class="fa fa-envelope" aria-hidden="true"></i> {}</span>').format(_("Unread"))


def due_state(due, status, now=None):
    """'overdue', 'due-soon' or '' for a task due at `due` with `status`."""
    if due is None or status in (TaskStatus.COMPLETED, TaskStatus.CANCELLED, "COMPLETED", "CANCELLED"):
        return ""
    now = now or utcnow()
    if due < now:
        return "overdue"
    if due <= now + timedelta(days=UPCOMING_DAYS):
        return "due-soon"
    return ""


def due_formatter(value):
    """A due date in the display time zone (the row's highlight comes from `due_state`)."""
    return local_time(value)


def text_or_dash(value):
    """A value, or a muted dash when empty (instead of 'None')."""
    if value is None or value == "":
        return Markup('<span class="text-muted">—</span>')
    return escape(value)


def enum_labels(kind):
    """{member: label} of `kind`'s codes, for a form's select (views/meetings.py's labelled_enum_field)."""
    return {code: text for code, (text, _colour) in BADGES[kind].items()}
