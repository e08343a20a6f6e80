"""The Reports screen: ask for an Excel or PDF report (POST + CSRF), watch its progress, download it.

The forms post to `request_report`; the service (app/services/reports.py) checks the
parameters, stores the run and starts its build (RQ job or thread). The page lists the
caller's newest runs; while one is queued or running, crm/reports.js polls `status` and
moves its progress bar. Downloads are the asker's own (Admins: anyone's); any other run
answers 404.
"""

from flask import current_app, flash, g, jsonify, redirect, request, send_file, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _

import sqlalchemy as sa
from flask_appbuilder.security.sqla.models import User

from app.choices import label as user_label
from app.extensions import db
from app.roles import READ
from app.scope import filter_user_choice_clause
from app.services import reports as service
from app.services.errors import DomainError
from models.approval import ApprovalStatus
from models.customer import CompanySize
from models.report import ReportStatus
from models.task import TaskPriority
from views.display import label

#: The resource (FAB view-menu) whose read and add every role holds for its own reports.
REPORT = "Report"


#: Most users a form's rep select offers (active users the caller may filter by, by name).
USER_CHOICES = 200
#: A run's status as the page shows it.
STATUS_LABELS = {
    ReportStatus.QUEUED: _("Queued"),
    ReportStatus.RUNNING: _("Building"),
    ReportStatus.DONE: _("Ready"),
    ReportStatus.FAILED: _("Failed"),
    ReportStatus.EXPIRED: _("Expired"),
}


def user_choices(user):
    """(id, name) of the users `user` may filter a report by (a Sales user: themself), through app/scope.py."""
    rows = db.session.execute(
        sa.select(User).where(filter_user_choice_clause(user), User.active.is_(True))
        .order_by(User.first_name, User.last_name, User.id).limit(USER_CHOICES)
    ).scalars().all()
    return [(str(u.id), user_label(u)) for u in rows]


def report_forms(user):
    """What each report's form asks for: (kind, title, [(param, label, input type, [(value, label)])])."""
    users = user_choices(user)

    def codes(kind, enum_cls):
        return [(m.value, label(kind, m)) for m in enum_cls]

    return [
        ("customers", service.KINDS["customers"].title, [
            ("q", _("Name, e-mail or phone contains"), "text", None),
            ("industry", _("Industry"), "text", None),
            ("size", _("Size"), "select", codes("size", CompanySize)),
            ("assignedSalesId", _("Sales rep"), "select", users),
            ("createdFrom", _("Registered from"), "date", None),
            ("createdTo", _("Registered to"), "date", None),
        ]),
        ("approvals", service.KINDS["approvals"].title, [
            ("status", _("Status"), "select", codes("approval_status", ApprovalStatus)),
            ("requestedFrom", _("Requested from"), "date", None),
            ("requestedTo", _("Requested to"), "date", None),
        ]),
        ("activity", service.KINDS["activity"].title, [
            ("month", _("Month"), "month", None),
            ("salesId", _("Sales rep"), "select", users),
        ]),
        ("overdue", service.KINDS["overdue"].title, [
            ("userId", _("Owner"), "select", users),
            ("priority", _("Priority"), "select", codes("priority", TaskPriority)),
        ]),
    ]


class ReportsView(BaseView):
    """/reports/: the caller's reports and the forms that ask for new ones."""

    route_base = "/reports"
    default_view = "index"
    class_permission_name = REPORT
    method_permission_name = {"index": "read", "status": "read", "download": "read", "request_report": "add"}

    def _may_read(self, report):
        return current_app.appbuilder.sm.has_access(READ, report.resource)

    def _page(self, error=None, field=None, status=200, kind=None):
        forms = [f for f in report_forms(g.user) if self._may_read(service.KINDS[f[0]])]
        runs = service.mine(db.session, g.user)
        return self.render_template(
            "crm/reports.html",
            title=_("Reports"),
            forms=forms,
            runs=runs,
            kinds=service.KINDS,
            error=error,
            field=field,
            failed_kind=kind,
            values=request.form if error else {},
            status_labels=STATUS_LABELS,
            local_time=lambda t: service._local(t).strftime("%Y-%m-%d %H:%M") if t else "",
        ), status

    @expose("/")
    @has_access
    def index(self):
        """The report forms and the caller's newest reports with status, progress and download links."""
        return self._page()

    @expose("/request", methods=["POST"])
    @has_access
    def request_report(self):
        """Ask for report `kind` in `format` with the form's parameters; 400 naming a bad field, 403 for a report the role may not read."""
        kind = request.form.get("kind", "")
        fmt = request.form.get("format", "xlsx")
        report = service.KINDS.get(kind)
        if report is not None and not self._may_read(report):
            return self._page(error=str(_("Your role may not read this report.")), field="kind", status=403)
        params = {}
        if report is not None:
            params = {k: v for k, v in request.form.items() if k in report.params and v != ""}
        try:
            run = service.request_report(db.session, g.user, kind, fmt, params)
        except DomainError as exc:
            db.session.rollback()
            return self._page(error=f"{exc.field}: {exc.message}" if exc.field else exc.message, field=exc.field,
                              status=exc.status, kind=kind)
        flash(str(_("Report requested: %(title)s. The bell tells you when it is ready.", title=report.title)), "success")
        return redirect(url_for("ReportsView.index", _anchor=f"run-{run.id}"))

    @expose("/status")
    @has_access
    def status(self):
        """The caller's newest runs as JSON (status, progress, download link) for the page's progress bars."""
        data = []
        for run in service.mine(db.session, g.user):
            item = service.as_dict(run)
            item["downloadUrl"] = url_for("ReportsView.download", run_id=run.id) if item["downloadUrl"] else None
            item["statusLabel"] = str(STATUS_LABELS[run.status])
            data.append(item)
        return jsonify(data=data)

    @expose("/download/<run_id>")
    @has_access
    def download(self, run_id):
        """The finished file of one of the caller's reports (any for an Admin); 404 otherwise, 409 while it is built."""
        try:
            path, name, mimetype = service.download(db.session, run_id, g.user)
        except DomainError as exc:
            return self._page(error=exc.message, status=exc.status)
        response = send_file(path, mimetype=mimetype, as_attachment=True, download_name=name, max_age=0)
        response.headers["Cache-Control"] = "no-store"
        return response
