"""The role home pages (FAB_INDEX_VIEW): what each role opens every morning.

Figures come from app/services/dashboard.py (`home_figures`, cached per caller); the one
action here, completing a task, goes through the task service like PUT /api/tasks/:id/complete.
"""

import json

from urllib.parse import quote

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from flask_appbuilder import IndexView
from flask_appbuilder.baseviews import expose
from flask_babel import lazy_gettext as _

from app.extensions import db
from app.roles import EDIT, TASK
from app.caching import cached_value, role_scope
from app.services.dashboard import HOME_TABLES, HOME_TIMEOUT, home_day, home_figures, home_kind
from app.services.errors import DomainError, NotFound
from app.services.records import complete_task, get_in_scope, prepare_task
from models.task import Task
from views.approvals import REASON_LABELS, STATUS_BADGES, STATUS_LABELS, yen
from views.display import local_time

TASK_STATUS_LABELS = {"TODO": _("To do"), "IN_PROGRESS": _("In progress")}
PRIORITY_LABELS = {"LOW": _("Low"), "MEDIUM": _("Medium"), "HIGH": _("High"), "URGENT": _("Urgent")}
PRIORITY_BADGES = {"LOW": "default", "MEDIUM": "info", "HIGH": "warning", "URGENT": "danger"}
AUDIT_ACTION_LABELS = {
    "CREATE": _("Record created"),
    "UPDATE": _("Record changed"),
    "DELETE": _("Record deleted"),
    "LOGIN": _("Logged in"),
    "LOGOUT": _("Logged out"),
    "LOGIN_FAILED": _("Login failed"),
    "APPROVE": _("Approved"),
    "REJECT": _("Rejected"),
    "RECALL": _("Recalled"),
}
RESOURCE_LABELS = {
    "customer": _("Customer"),
    "meeting": _("Meeting"),
    "task": _("Task"),
    "approval_request": _("Approval Request"),
    "approval_step": _("Approval step"),
    "user": _("User"),
    "notification": _("Notification"),
    "report_run": _("Report"),  # reports: who asked for which report, with which parameters
}
# The screen of an audited record, where it has one.
RESOURCE_SCREENS = {
    "customer": "CustomerView.show",
    "meeting": "MeetingView.show",
    "task": "TaskView.show",
    "approval_request": "ApprovalRequestView.show",
}
TEMPLATES = {
    "sales": "crm/home/sales.html",
    "manager": "crm/home/manager.html",
    "compliance": "crm/home/compliance.html",
    "admin": "crm/home/admin.html",
}


def hours_label(hours):
    """An age in hours as 「N時間」 / 「N日」 style text (days from 48 hours on)."""
    if hours is None:
        return "-"
    if hours >= 48:
        return str(_("%(n)d days", n=int(hours // 24)))
    return str(_("%(n)d hours", n=int(hours)))


def manager_charts(figures):
    """The manager's trend charts as JSON for home.js (read from a data- attribute; no inline script)."""
    trends = figures["trends"]
    return json.dumps(
        {
            "weeks": trends["weeks"],
            "tasks": {
                "labels": [str(_("Tasks created")), str(_("Tasks completed"))],
                "series": [trends["tasksCreated"], trends["tasksCompleted"]],
            },
            "approvals": {
                "labels": [str(_("Approved")), str(_("Rejected"))],
                "series": [trends["approved"], trends["rejected"]],
            },
        },
        ensure_ascii=False,
    )


def compliance_chart(figures):
    """The compliance reasons breakdown as JSON for home.js."""
    return json.dumps(
        {
            "labels": [str(REASON_LABELS.get(r, r)) for r, _n in figures["reasons"]],
            "series": [n for _r, n in figures["reasons"]],
            "title": str(_("Requests")),
        },
        ensure_ascii=False,
    )


# Stands for the caller's CSRF token in a cached fragment; replaced at every request.
CSRF_MARK = "__crm_home_csrf_token__"
_PK_MARK = "__crm_home_pk__"
_url_templates = {}


def record_url(endpoint, pk):
    """url_for(endpoint, pk=pk) for a record route, the route built once per endpoint (ids are URL-safe)."""
    key = (endpoint, request.script_root)
    template = _url_templates.get(key)
    if template is None:
        template = _url_templates[key] = url_for(endpoint, pk=_PK_MARK)
    return template.replace(_PK_MARK, quote(str(pk), safe=""))


def _plain(labels):
    """Lazy labels resolved once for this request's locale (a lazy string looks its catalogue up each time it is shown)."""
    return {key: str(value) for key, value in labels.items()}


class HomeView(IndexView):
    """「ホーム」: the caller's role home page instead of FAB's empty welcome box."""

    route_base = ""
    default_view = "index"

    def _fragment(self, user, figures):
        """The role's blocks as HTML, with CSRF_MARK where the caller's token goes."""
        kind = figures["kind"]
        helpers = {
            "figures": figures,
            "user_name": " ".join(p for p in (user.first_name, user.last_name) if p and p != "-"),
            "local_time": local_time,
            "yen": yen,
            "hours_label": hours_label,
            "record_url": record_url,
            "csrf_mark": CSRF_MARK,
            "status_labels": _plain({str(k): v for k, v in STATUS_LABELS.items()}),
            "status_badges": {str(k): v for k, v in STATUS_BADGES.items()},
            "reason_labels": _plain(REASON_LABELS),
            "task_status_labels": _plain(TASK_STATUS_LABELS),
            "priority_labels": _plain(PRIORITY_LABELS),
            "priority_badges": PRIORITY_BADGES,
            "audit_action_labels": _plain(AUDIT_ACTION_LABELS),
            "resource_labels": _plain(RESOURCE_LABELS),
            "resource_screens": RESOURCE_SCREENS,
            "can_complete": self.appbuilder.sm.has_access(EDIT, TASK),
        }
        if kind == "manager":
            helpers["charts"] = manager_charts(figures)
        if kind == "compliance":
            helpers["chart"] = compliance_chart(figures)
        return render_template(TEMPLATES[kind], **helpers)

    @expose("/")
    def index(self):
        """The home page of the caller's role (anonymous callers go to the login form)."""
        user = g.user if getattr(g, "user", None) is not None and g.user.is_authenticated else None
        if user is None:
            return redirect(url_for(f"{self.appbuilder.sm.auth_view.endpoint}.login"))
        self.update_redirect()
        kind = home_kind(user)
        if kind is None:
            return self.render_template("appbuilder/index.html", appbuilder=self.appbuilder)
        if kind == "admin":
            # The pipeline's health is read fresh each time (home_figures): so is the admin's page.
            fragment = self._fragment(user, home_figures(user))
        else:
            # The rendered blocks, cached like the figures they show (same tables, same per-caller
            # key, same lifetime) and per locale; only the CSRF token is the request's own.
            locale = str(self.appbuilder.bm.get_locale() or "")
            key = f"home-page:{kind}:{locale}:{home_day(user)}"
            fragment = cached_value(HOME_TABLES[kind], role_scope(user, per_user=True), key,
                                    lambda: self._fragment(user, home_figures(user)), timeout=HOME_TIMEOUT)
        fragment = Markup(fragment.replace(CSRF_MARK, generate_csrf()))
        return self.render_template(
            "crm/home/page.html", appbuilder=self.appbuilder, fragment=fragment, charts=kind in ("manager", "compliance")
        )

    @expose("/home/tasks/<pk>/complete", methods=["POST"])
    def complete(self, pk):
        """Complete one task in the caller's scope (CSRF-checked POST), then back to the home page."""
        user = g.user if getattr(g, "user", None) is not None and g.user.is_authenticated else None
        if user is None:
            return redirect(url_for(f"{self.appbuilder.sm.auth_view.endpoint}.login"))
        if not self.appbuilder.sm.has_access(EDIT, TASK):
            flash(str(_("Your role may not complete tasks.")), "danger")
            abort(403)
        try:
            task = get_in_scope(Task, pk, user)
            if complete_task(task):
                prepare_task(task, user, creating=False)
                db.session.commit()
                flash(str(_("Task completed: %(title)s", title=task.title)), "success")
            else:
                flash(str(_("This task was already completed.")), "info")
        except NotFound:
            # Another rep's task is simply not found (design.md §3): no id leaks.
            db.session.rollback()
            abort(404)
        except DomainError as exc:
            db.session.rollback()
            flash(f"{exc.message} ({exc.status})", "danger")
        return redirect(url_for("HomeView.index"))
