"""The attachments panel of the customer page, the meeting and the approval request (app/services/attachments.py).

One screen class per kind of record, under that record's FAB permissions: download needs
read, upload and delete (POSTs with the CSRF token) edit (an approval request's: add).
The panel itself is a template macro (crm/_attachments.html) fed by `panel`, a Jinja
global, so each record's page only includes it.
"""

from flask import abort, current_app, flash, g, make_response, redirect, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _
from werkzeug.exceptions import RequestEntityTooLarge

from app.roles import APPROVAL, CUSTOMER, MEETING
from app.services import attachments as service
from app.services.errors import DomainError, NotFound
from models.attachment import OwnerType
from views.display import local_time

#: The page each kind of record is shown on: (view class name, its show endpoint).
PAGES = {
    OwnerType.customer: ("CustomerView", "CustomerView.show"),
    OwnerType.meeting: ("MeetingView", "MeetingView.show"),
    OwnerType.approval_request: ("ApprovalRequestView", "ApprovalRequestView.show"),
}
#: What the file input offers (a hint for the picker; the server reads the content).
ACCEPT = ",".join(ext for kind in service.ALLOWED for ext in kind.extensions)


def _size(n):
    """A byte count as people read it (KB / MB)."""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def panel(kind, owner_id):
    """What the panel of record `owner_id` of `kind` shows and offers the caller (nothing outside their scope)."""
    kind = OwnerType(kind)
    screen = SCREENS[kind]
    sm = current_app.appbuilder.sm
    may_read = sm.has_access(*service.READ_PERMISSION[kind])
    try:
        owner, files, total = service.list_files(kind, owner_id, g.user)
    except NotFound:
        may_read = False
    if not may_read:
        return {"may_read": False}
    may_write = sm.has_access(*service.WRITE_PERMISSION[kind])
    return {
        "kind": kind.value,
        "files": files,
        "total": total,
        "may_read": may_read,
        "may_write": may_write,
        "locked": service.is_locked(kind, owner),
        "upload_url": url_for(f"{screen}.upload", owner_id=owner.id),
        "download_endpoint": f"{screen}.download",
        "delete_endpoint": f"{screen}.remove",
        "owner_id": owner.id,
        "max_mb": current_app.config["ATTACHMENT_MAX_MB"],
        "accept": ACCEPT,
        "size": _size,
        "local_time": local_time,
    }


class _AttachmentScreens(BaseView):
    """Upload, download and delete one kind of record's files from its page."""

    kind = None
    default_view = None

    def _back(self, owner_id):
        return redirect(url_for(PAGES[self.kind][1], pk=owner_id))

    def _refused(self, owner_id, exc):
        """The record's page again with the refusal flashed (naming the field) and its status; a 404 stays a 404."""
        if exc.status == 404:
            abort(404)
        flash(f"{exc.field + ': ' if exc.field else ''}{exc.message}", "danger")
        view = next(v for v in current_app.appbuilder.baseviews if type(v).__name__ == PAGES[self.kind][0])
        response = make_response(view.show(owner_id))
        response.status_code = exc.status
        return response

    @expose("/<owner_id>/upload", methods=["POST"])
    @has_access
    def upload(self, owner_id):
        """Attach the form's file to the record, then back to its page (its 4xx shown there, naming `file`)."""
        try:
            service.upload(self.kind, owner_id, g.user, _form_file)
        except DomainError as exc:
            from app.extensions import db

            db.session.rollback()
            return self._refused(owner_id, exc)
        flash(str(_("File attached")), "success")
        return self._back(owner_id)

    @expose("/<owner_id>/<attachment_id>/download", methods=["GET"])
    @has_access
    def download(self, owner_id, attachment_id):
        """The file's bytes as a download (404 outside the caller's scope)."""
        from views.api.attachments import download

        try:
            _owner, row = service.get_file(self.kind, owner_id, attachment_id, g.user)
            return download(row)
        except NotFound:
            abort(404)
        except DomainError as exc:
            return self._refused(owner_id, exc)

    @expose("/<owner_id>/<attachment_id>/delete", methods=["POST"])
    @has_access
    def remove(self, owner_id, attachment_id):
        """Soft-delete the file, then back to the record's page."""
        try:
            service.delete(self.kind, owner_id, attachment_id, g.user)
        except DomainError as exc:
            from app.extensions import db

            db.session.rollback()
            return self._refused(owner_id, exc)
        flash(str(_("File deleted")), "success")
        return self._back(owner_id)


def _form_file():
    """The form's `file` part as (stream, name); the body was read under the upload limit (`upload_body_limit`)."""
    part = request.files.get(service.FIELD)
    if part is None:
        return None, None
    return part.stream, part.filename


class CustomerAttachmentView(_AttachmentScreens):
    """A customer's files."""

    route_base = "/attachments/customer"
    kind = OwnerType.customer
    class_permission_name = CUSTOMER
    method_permission_name = {"upload": "edit", "download": "read", "remove": "edit"}


class MeetingAttachmentView(_AttachmentScreens):
    """A meeting's files."""

    route_base = "/attachments/meeting"
    kind = OwnerType.meeting
    class_permission_name = MEETING
    method_permission_name = {"upload": "edit", "download": "read", "remove": "edit"}


class ApprovalAttachmentView(_AttachmentScreens):
    """An approval request's files (its requester adds them; locked while PENDING)."""

    route_base = "/attachments/approval"
    kind = OwnerType.approval_request
    class_permission_name = APPROVAL
    method_permission_name = {"upload": "add", "download": "read", "remove": "add"}


SCREENS = {
    OwnerType.customer: "CustomerAttachmentView",
    OwnerType.meeting: "MeetingAttachmentView",
    OwnerType.approval_request: "ApprovalAttachmentView",
}
UPLOAD_ENDPOINTS = frozenset(f"{name}.upload" for name in SCREENS.values())


def upload_body_limit():
    """The upload screens take ATTACHMENT_MAX_MB (plus the form) instead of MAX_CONTENT_LENGTH, set before CSRF reads the form.

    A body announced larger is refused at once (413 naming the field), before it is read.
    """
    if request.endpoint not in UPLOAD_ENDPOINTS:
        return None
    limit = service.body_limit()
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(description=f"file: {service.too_large().message}")
    return None


def install(app, appbuilder):
    """Register the three screens, the panel's Jinja global and the upload body limit (first of the before_request hooks)."""
    for view in (CustomerAttachmentView, MeetingAttachmentView, ApprovalAttachmentView):
        appbuilder.add_view_no_menu(view)
    app.jinja_env.globals["attachments_panel"] = panel
    app.before_request_funcs.setdefault(None, []).insert(0, upload_body_limit)
