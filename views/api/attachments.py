"""/api/{customers,meetings,approvals}/<id>/attachments: a record's files (app/services/attachments.py).

GET lists the live files, POST (multipart/form-data, the file in the part `file`) adds one,
GET `/<attachmentId>` downloads it, DELETE `/<attachmentId>` soft-deletes it. Reading
needs the read permission on the record's resource, changing its edit permission (an
approval request's: add, its requester's); the record must be in the caller's scope.
"""

from flask import Blueprint, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from app.services import attachments as service
from app.services.errors import Forbidden, ValidationFailed
from models.attachment import OwnerType
from views.api.common import authenticated, can, current_user, item, listing, path_uuid, query_int

bp = Blueprint("crm_api_attachments", __name__)

#: The /api resource paths (docs/api.md) of the records that hold files.
PATHS = {"customers": OwnerType.customer, "meetings": OwnerType.meeting, "approvals": OwnerType.approval_request}
WHAT = {OwnerType.customer: "Customer", OwnerType.meeting: "Meeting", OwnerType.approval_request: "Approval request"}


def _kind(resource, permissions):
    """The OwnerType of the path's resource, once the caller holds its permission (`permissions`: READ_ or WRITE_PERMISSION)."""
    kind = PATHS[resource]
    permission, view = permissions[kind]
    if not can(permission, view):
        raise Forbidden(f"your role may not {permission.replace('can_', '')} {view} attachments")
    return kind


def _ids(kind, owner_id, attachment_id=None):
    owner = path_uuid(owner_id, WHAT[kind])
    return (owner, path_uuid(attachment_id, "Attachment")) if attachment_id is not None else owner


def uploaded_file():
    """The request's `file` part as (stream, name): the body is read only now, under the upload limit (413 naming `file`)."""
    request.max_content_length = service.body_limit()
    try:
        if not request.mimetype.startswith("multipart/form-data"):
            raise ValidationFailed("send the file as multipart/form-data in a part named file", field=service.FIELD)
        part = request.files.get(service.FIELD)
    except RequestEntityTooLarge:
        raise service.too_large() from None
    if part is None:
        raise ValidationFailed("a file is required (a multipart part named file)", field=service.FIELD)
    return part.stream, part.filename


def _route(rule, **options):
    """Register one view under each record path (`/customers/...`, `/meetings/...`, `/approvals/...`)."""

    def decorator(fn):
        for resource in PATHS:
            bp.add_url_rule(f"/{resource}{rule}", f"{fn.__name__}_{resource}", fn, defaults={"resource": resource}, **options)
        return fn

    return decorator


@_route("/<owner_id>/attachments", methods=["GET"])
@authenticated
def list_attachments(resource, owner_id):
    """The record's live files, newest first (`?page=`, `?limit=`)."""
    kind = _kind(resource, service.READ_PERMISSION)
    page = query_int("page", 1, minimum=1, maximum=10**6)
    limit = query_int("limit", service.PANEL_LIMIT, minimum=1, maximum=100)
    _owner, rows, total = service.list_files(kind, _ids(kind, owner_id), current_user(), page, limit)
    return listing([service.payload(r) for r in rows], page, limit, total)


@_route("/<owner_id>/attachments", methods=["POST"])
@authenticated
def upload_attachment(resource, owner_id):
    """Add the multipart part `file` to the record: 201 with its metadata; 400/404/409/413/415/503 naming `file`."""
    kind = _kind(resource, service.WRITE_PERMISSION)
    row = service.upload(kind, _ids(kind, owner_id), current_user(), uploaded_file)
    return item(service.payload(row), 201)


@_route("/<owner_id>/attachments/<attachment_id>", methods=["GET"])
@authenticated
def download_attachment(resource, owner_id, attachment_id):
    """The file's bytes, as a download under its name and the type its content was found to be."""
    kind = _kind(resource, service.READ_PERMISSION)
    _owner, row = service.get_file(kind, *_ids(kind, owner_id, attachment_id), current_user())
    return download(row)


@_route("/<owner_id>/attachments/<attachment_id>", methods=["DELETE"])
@authenticated
def delete_attachment(resource, owner_id, attachment_id):
    """Soft-delete the file: 200 with its metadata (deletedAt set)."""
    kind = _kind(resource, service.WRITE_PERMISSION)
    row = service.delete(kind, *_ids(kind, owner_id, attachment_id), current_user())
    return item(service.payload(row))


def download(row):
    """A response streaming the stored bytes of `row` as an attachment (never shown inline)."""
    fileobj = service.open_file(row)
    response = send_file(
        fileobj, mimetype=row.content_type, as_attachment=True, download_name=row.filename, conditional=False, etag=False, max_age=0
    )
    response.content_length = row.size_bytes
    response.headers["Cache-Control"] = "private, no-store"
    return response
