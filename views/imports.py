"""The import screen (Sales → Imports): upload, map columns, preview with errors, run with a progress bar, report, undo.

Every state change is a form POST with the CSRF token; the progress bar polls
`/imports/<id>/status` (JSON). The rules are app/services/imports.py's, shared with /api/imports.
"""

from flask import Response, abort, current_app, flash, g, jsonify, redirect, request, stream_with_context, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _

from app.exports import csv_stream
from app.roles import IMPORT
from app.services import imports as service
from app.services.errors import DomainError
from models.imports import DedupeMode, ImportKind, ImportStatus

#: What a multipart body may carry besides the file itself (form fields, boundaries).
MULTIPART_SLACK = 1024 * 1024

KIND_LABELS = {ImportKind.customers: _("Customers"), ImportKind.meetings: _("Meetings"), ImportKind.tasks: _("Tasks")}
DEDUPE_LABELS = {
    DedupeMode.skip: _("Skip rows whose e-mail a customer already has"),
    DedupeMode.update: _("Update the customer that has the e-mail"),
    DedupeMode.create: _("Create anyway (a taken e-mail is rejected)"),
}
STATUS_LABELS = {
    ImportStatus.uploaded: _("Uploaded: map the columns"), ImportStatus.queued: _("Waiting to run"),
    ImportStatus.running: _("Running"), ImportStatus.done: _("Finished"), ImportStatus.cancelled: _("Cancelled"),
    ImportStatus.failed: _("Failed"), ImportStatus.undone: _("Undone"),
}
OUTCOME_LABELS = {"created": _("New record"), "updated": _("Record updated"), "skipped": _("Row skipped"),
                  "rejected": _("Row rejected")}


def upload_limit():
    """Before CSRF reads the form: the upload screen takes files up to IMPORT_MAX_MB (413 with a clear message beyond)."""
    if request.method == "POST" and request.path == "/imports/upload":
        limit = current_app.config["IMPORT_MAX_MB"] * service.MB
        if request.content_length and request.content_length > limit + MULTIPART_SLACK:
            abort(413, description=str(_("The file is larger than %(mb)d MB (IMPORT_MAX_MB).", mb=limit // service.MB)))
        request.max_content_length = limit + MULTIPART_SLACK


def install(app):
    """Run `upload_limit` first of every before_request hook (CSRFProtect's reads the form)."""
    app.before_request_funcs.setdefault(None, []).insert(0, upload_limit)


class ImportView(BaseView):
    """/imports/: the caller's imports and the steps of one."""

    route_base = "/imports"
    default_view = "index"
    class_permission_name = IMPORT
    method_permission_name = {
        "index": "read", "show": "read", "progress": "read", "report": "read",
        "upload": "add", "mapping": "add", "start": "add", "cancel": "add", "undo": "add",
    }

    def _index(self, error=None, status=200):
        rows = service.imports_of(g.user, 20)
        return self.render_template(
            "crm/imports.html", rows=rows, error=error, kinds=KIND_LABELS, dedupes=DEDUPE_LABELS,
            statuses=STATUS_LABELS, max_mb=current_app.config["IMPORT_MAX_MB"],
            max_rows=current_app.config["IMPORT_MAX_ROWS"], title=_("Imports"),
        ), status

    def _load(self, import_id):
        try:
            return service.get_import(import_id, g.user)
        except DomainError:
            abort(404)

    @expose("/")
    @has_access
    def index(self):
        """The upload form and the caller's newest imports."""
        return self._index()

    @expose("/upload", methods=["POST"])
    @has_access
    def upload(self):
        """Store an uploaded file (form: file, kind, dedupe) and open its mapping step; the refusal's 4xx names what is wrong."""
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return self._index(error=_("Choose a CSV or Excel file."), status=400)
        try:
            imp = service.create_import(g.user, request.form.get("kind"), upload.filename, upload.read(),
                                        dedupe=request.form.get("dedupe"), require_mapping=False)
        except DomainError as exc:
            return self._index(error=exc.message, status=exc.status)
        return redirect(url_for("ImportView.show", import_id=imp.id))

    @expose("/<import_id>/")
    @has_access
    def show(self, import_id, error=None, status=200):
        """One import: its mapping and preview before it runs, its progress bar while it runs, its report after."""
        imp = self._load(import_id)
        specs = service.fields(imp.kind)
        preview = None
        if imp.status == ImportStatus.uploaded:
            try:
                preview = service.preview(imp, g.user)
            except DomainError as exc:
                error = error or exc.message
        return self.render_template(
            "crm/import_show.html", imp=imp, specs=specs, preview=preview, error=error, kinds=KIND_LABELS,
            dedupes=DEDUPE_LABELS, statuses=STATUS_LABELS, outcomes=OUTCOME_LABELS,
            suggestions=service.suggest_mapping(imp.kind, imp.headers), title=_("Import"),
        ), status

    @expose("/<import_id>/mapping", methods=["POST"])
    @has_access
    def mapping(self, import_id):
        """Save the columns chosen for each field (form: field name → column index) and the dedupe mode, then preview."""
        imp = self._load(import_id)
        chosen = {name: request.form.get(f"map-{name}") for name in service.fields(imp.kind)}
        chosen = {name: int(value) for name, value in chosen.items() if value not in (None, "") and value.isdigit()}
        try:
            service.set_mapping(imp, g.user, chosen, request.form.get("dedupe"))
        except DomainError as exc:
            return self.show(import_id, error=exc.message, status=exc.status)
        return redirect(url_for("ImportView.show", import_id=imp.id) + "#preview")

    @expose("/<import_id>/start", methods=["POST"])
    @has_access
    def start(self, import_id):
        """Queue the import's job and show its progress."""
        imp = self._load(import_id)
        try:
            service.start(imp, g.user)
        except DomainError as exc:
            return self.show(import_id, error=exc.message, status=exc.status)
        return redirect(url_for("ImportView.show", import_id=imp.id))

    @expose("/<import_id>/status")
    @has_access
    def progress(self, import_id):
        """The import's status, `done`/`total` and counts as JSON (the progress bar polls it)."""
        return jsonify(service.status(self._load(import_id)))

    @expose("/<import_id>/cancel", methods=["POST"])
    @has_access
    def cancel(self, import_id):
        """Stop the import (after its current batch)."""
        imp = self._load(import_id)
        try:
            service.cancel(imp, g.user)
        except DomainError as exc:
            return self.show(import_id, error=exc.message, status=exc.status)
        flash(str(_("The import stops after the rows in hand.")), "info")
        return redirect(url_for("ImportView.show", import_id=imp.id))

    @expose("/<import_id>/undo", methods=["POST"])
    @has_access
    def undo(self, import_id):
        """Undo the whole import: what it created is removed (soft), what it updated gets its previous values."""
        imp = self._load(import_id)
        try:
            service.undo(imp, g.user)
        except DomainError as exc:
            return self.show(import_id, error=exc.message, status=exc.status)
        flash(str(_("The import was undone.")), "success")
        return redirect(url_for("ImportView.show", import_id=imp.id))

    @expose("/<import_id>/report.csv")
    @has_access
    def report(self, import_id):
        """Every row's outcome and reason as CSV (UTF-8 with BOM, cells neutralised)."""
        imp = self._load(import_id)
        body = csv_stream(service.REPORT_HEADER, service.report_rows(imp))
        headers = {"Content-Disposition": f'attachment; filename="import-{imp.id}.csv"'}
        return Response(stream_with_context(body), mimetype="text/csv; charset=utf-8", headers=headers)
