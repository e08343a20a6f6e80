"""Files attached to customers, meetings and approval requests: upload, list, download, delete.

Screens and /api call these, so every rule holds whatever the entry point:

- a file belongs to one record and follows that record's scope (app/scope.py): whoever
  cannot see the record finds none of its files (404, ids never leak);
- at most ATTACHMENT_MAX_MB; the type is read from the content (magic bytes, the parts
  list of an Office file, text that decodes), never from the name, and the name's
  extension must agree with it;
- a PENDING approval request's files are locked with its business fields (the approval
  service's `refuse_if_pending`);
- the bytes are stored first, then the row is committed (its audit row and outbox event
  come from the flush listener, app/audit.py): a storage failure writes nothing, a
  refused commit removes the stored object again;
- delete is a soft delete: the row (and the stored bytes) stay for the audit trail.
"""

import codecs
import hashlib
import logging
import tempfile
import zipfile
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app

from app.extensions import db, file_storage
from app.roles import ADD, APPROVAL, CUSTOMER, EDIT, MEETING, READ
from app.services.approvals import refuse_if_pending
from app.services.errors import NotFound, PayloadTooLarge, Unavailable, UnsupportedType, ValidationFailed
from app.services.records import get_in_scope
from app.storage import Missing, StorageError
from models.approval import ApprovalRequest
from models.attachment import Attachment, OwnerType
from models.base import new_id, utcnow
from models.customer import Customer
from models.meeting import Meeting

log = logging.getLogger(__name__)

OWNER_MODELS = {OwnerType.customer: Customer, OwnerType.meeting: Meeting, OwnerType.approval_request: ApprovalRequest}
#: The permission (FAB's, app/roles.py) reading a record's files needs, and the one changing them needs:
#: the same as reading, and changing, the record itself (a request's requester adds its files).
READ_PERMISSION = {OwnerType.customer: (READ, CUSTOMER), OwnerType.meeting: (READ, MEETING), OwnerType.approval_request: (READ, APPROVAL)}
WRITE_PERMISSION = {OwnerType.customer: (EDIT, CUSTOMER), OwnerType.meeting: (EDIT, MEETING), OwnerType.approval_request: (ADD, APPROVAL)}

FIELD = "file"
FILENAME_MAX = 255
CHUNK = 256 * 1024
HEAD = 64 * 1024  # bytes of the start kept to recognise the type
# Room for the multipart envelope and a form's CSRF token around the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# [Content_Types].xml of a real Office file is a few KiB; a larger one is not read (zip bombs).
CONTENT_TYPES_MAX = 256 * 1024
#: Files a record's panel lists (newest first); /api pages through them all.
PANEL_LIMIT = 50


@dataclass(frozen=True)
class Kind:
    """One allowed type: its label, the content type answered on download, the extensions a name may carry."""

    label: str
    content_type: str
    extensions: tuple


PDF = Kind("PDF", "application/pdf", (".pdf",))
PNG = Kind("PNG image", "image/png", (".png",))
JPEG = Kind("JPEG image", "image/jpeg", (".jpg", ".jpeg"))
XLSX = Kind("Excel workbook", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (".xlsx",))
DOCX = Kind("Word document", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", (".docx",))
TEXT = Kind("plain text", "text/plain", (".txt", ".csv", ".tsv"))
ALLOWED = (PDF, PNG, JPEG, XLSX, DOCX, TEXT)
# The main part of each Office format, as [Content_Types].xml names it.
OFFICE_MAIN_PARTS = {
    b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": XLSX,
    b"application/vnd.ms-excel.sheet.macroEnabled.main+xml": None,  # macros: refused
    b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": DOCX,
    b"application/vnd.ms-word.document.macroEnabled.main+xml": None,
}


def max_bytes(config=None):
    """The largest file accepted, in bytes (ATTACHMENT_MAX_MB MiB)."""
    config = config or current_app.config
    return int(config["ATTACHMENT_MAX_MB"]) * 1024 * 1024


def body_limit(config=None):
    """The largest upload request body: the file limit plus the multipart envelope (an upload route's MAX_CONTENT_LENGTH)."""
    return max_bytes(config) + MULTIPART_OVERHEAD


def too_large():
    """The 413 of a file over the limit, naming the field."""
    limit = max_bytes()
    return PayloadTooLarge(
        f"the file is larger than {current_app.config['ATTACHMENT_MAX_MB']} MB",
        field=FIELD,
        details={FIELD: [f"at most {limit} bytes"], "maxBytes": limit},
    )


def owner_type(raw):
    """The OwnerType spelled `raw`, else NotFound (an unknown kind of record is a path that does not exist)."""
    try:
        return OwnerType(raw)
    except ValueError:
        raise NotFound("no such kind of record") from None


def load_owner(kind, owner_id, user):
    """The record `owner_id` of `kind` if `user` may see it, else NotFound."""
    return get_in_scope(OWNER_MODELS[kind], owner_id, user)


def customer_id_of(kind, owner):
    """The customer a record belongs to (the record itself for a customer)."""
    return owner.id if kind == OwnerType.customer else owner.customer_id


def refuse_if_locked(kind, owner):
    """Refuse adding or removing files while the owner is locked (a PENDING approval request: 409)."""
    if kind == OwnerType.approval_request:
        refuse_if_pending(owner)


def is_locked(kind, owner):
    """True when the owner's files cannot change now (the screens hide the upload and delete forms)."""
    return kind == OwnerType.approval_request and owner.status.value == "PENDING"


def live_files(kind, owner_id):
    """A Select of the live files of one record, newest first."""
    return (
        sa.select(Attachment)
        .where(Attachment.owner_type == kind, Attachment.owner_id == str(owner_id), Attachment.deleted_at.is_(None))
        .order_by(Attachment.uploaded_at.desc(), Attachment.id)
    )


def list_files(kind, owner_id, user, page=1, limit=PANEL_LIMIT):
    """(owner, one page of its live files newest first, how many it has) for a record `user` may see (NotFound outside their scope)."""
    owner = load_owner(kind, owner_id, user)
    stmt = live_files(kind, owner.id)
    total = db.session.execute(sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())).scalar()
    rows = db.session.execute(stmt.offset((page - 1) * limit).limit(limit)).scalars().all()
    return owner, rows, total


def get_file(kind, owner_id, attachment_id, user):
    """One live file of a record `user` may see; NotFound when either is not theirs, or the file is another record's."""
    owner = load_owner(kind, owner_id, user)
    found = db.session.get(Attachment, str(attachment_id)) if attachment_id else None
    if found is None or found.deleted_at is not None or found.owner_type != kind or found.owner_id != owner.id:
        raise NotFound("attachment not found")
    return owner, found


def open_file(attachment):
    """A binary file object reading the stored bytes (503 when the storage fails or lost them)."""
    try:
        return file_storage().get(attachment.storage_key)
    except Missing:
        log.error("attachment %s: no stored object under %s", attachment.id, attachment.storage_key)
        raise Unavailable("the file's content is missing from the storage", field=FIELD) from None
    except StorageError as exc:
        log.warning("attachment %s: storage read failed: %s", attachment.id, exc)
        raise Unavailable("the file storage is not reachable; try again later", field=FIELD) from None


def clean_filename(raw):
    """The name to keep: its last path part, control characters dropped; 400 naming the field when empty or too long."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch >= " " and ch != "\x7f").strip()
    if not name or name in (".", ".."):
        raise ValidationFailed("a file with a name is required", field=FIELD)
    if len(name) > FILENAME_MAX:
        raise ValidationFailed(f"the file name must be at most {FILENAME_MAX} characters", field=FIELD)
    return name


def _spool(stream, limit):
    """Copy `stream` to a temporary file, hashing as it goes: (file, size, sha256 hex, first bytes, saw a NUL byte).

    Stops with a 413 as soon as more than `limit` bytes arrived: the rest is never read.
    """
    out = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
    digest, size, head, nul = hashlib.sha256(), 0, b"", False
    try:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise too_large()
            digest.update(chunk)
            nul = nul or b"\x00" in chunk
            if len(head) < HEAD:
                head += chunk[: HEAD - len(head)]
            out.write(chunk)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out, size, digest.hexdigest(), head, nul


def _decodes(head, encoding):
    """True when `head` is text in `encoding` (an incomplete character cut at its end allowed)."""
    try:
        codecs.getincrementaldecoder(encoding)().decode(head, final=False)
        return True
    except UnicodeDecodeError:
        return False


def _office_kind(spooled):
    """XLSX or DOCX when `spooled` is a zip whose [Content_Types].xml names that main part; else None."""
    try:
        with zipfile.ZipFile(spooled) as archive:
            info = archive.getinfo("[Content_Types].xml")
            if info.file_size > CONTENT_TYPES_MAX:
                return None
            parts = archive.read(info)
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, NotImplementedError, EOFError):
        return None
    finally:
        spooled.seek(0)
    for main, kind in OFFICE_MAIN_PARTS.items():
        if main in parts:
            return kind
    return None


def sniff(head, spooled, has_nul):
    """The allowed Kind the content is, from its bytes alone; None when it is none of them."""
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"PK\x03\x04"):
        return _office_kind(spooled)
    if not has_nul and any(_decodes(head, enc) for enc in ("utf-8", "cp932")):
        return TEXT
    return None


def check_kind(kind, name):
    """Refuse a name whose extension disagrees with the content (a PNG named .pdf, text named .exe)."""
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""
    if ext not in kind.extensions:
        raise UnsupportedType(
            f"the content is a {kind.label}, so the name must end in {' or '.join(kind.extensions)} (not {ext or 'no extension'})",
            field=FIELD,
        )


def content_type(kind, name):
    """The content type answered on download: the kind's, CSV for text named .csv."""
    if kind is TEXT and name.lower().endswith(".csv"):
        return "text/csv"
    return kind.content_type


def unsupported():
    """The 415 of a content outside the allow-list."""
    kinds = ", ".join(k.label for k in ALLOWED)
    return UnsupportedType(f"this type of file is not accepted (allowed, read from the content: {kinds})", field=FIELD)


def upload(kind, owner_id, user, source):
    """Attach a file to a record `user` may see and change; return the new row.

    `source()` gives (binary stream, file name); it is called once the record and its lock
    were checked, so an entry point reads the request body only then. Nothing is written
    when a check fails or the storage refuses; the commit carries the audit row and the
    ATTACHMENT_ADDED event.
    """
    owner = load_owner(kind, owner_id, user)
    refuse_if_locked(kind, owner)
    stream, filename = source()
    name = clean_filename(filename)
    if stream is None:
        raise ValidationFailed("a file is required", field=FIELD)
    spooled, size, digest, head, nul = _spool(stream, max_bytes())
    with spooled:
        if size == 0:
            raise ValidationFailed("the file is empty", field=FIELD)
        found = sniff(head, spooled, nul)
        if found is None:
            raise unsupported()
        check_kind(found, name)
        key = f"{kind.value}/{owner.id}/{new_id()}"
        store = file_storage()
        try:
            store.put(key, spooled)
        except StorageError as exc:
            log.warning("attachment upload: storage write failed: %s", exc)
            raise Unavailable("the file storage is not reachable; nothing was saved, try again later", field=FIELD) from None
    row = Attachment(
        owner_type=kind,
        owner_id=owner.id,
        customer_id=customer_id_of(kind, owner),
        filename=name,
        content_type=content_type(found, name),
        size_bytes=size,
        sha256=digest,
        storage_key=key,
        uploaded_by_id=user.id,
        uploaded_at=utcnow(),
    )
    db.session.add(row)
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        _forget(store, key)
        raise
    return row


def _forget(store, key):
    """Remove an object whose row was never committed (best effort: logged when it fails)."""
    try:
        store.delete(key)
    except StorageError as exc:
        log.warning("attachment upload: could not remove %s after a refused commit: %s", key, exc)


def delete(kind, owner_id, attachment_id, user):
    """Soft-delete one file of a record `user` may see and change (its row stays; audited, ATTACHMENT_DELETED)."""
    owner, row = get_file(kind, owner_id, attachment_id, user)
    refuse_if_locked(kind, owner)
    row.deleted_at = utcnow()
    row.deleted_by_id = user.id
    db.session.commit()
    return row


def payload(row):
    """A file's answer under /api and in events: its metadata, never the storage key."""
    return {
        "id": row.id,
        "ownerType": row.owner_type.value,
        "ownerId": row.owner_id,
        "customerId": row.customer_id,
        "filename": row.filename,
        "contentType": row.content_type,
        "size": row.size_bytes,
        "sha256": row.sha256,
        "uploadedById": str(row.uploaded_by_id) if row.uploaded_by_id is not None else None,
        "uploadedAt": row.uploaded_at.isoformat() if row.uploaded_at else None,
        "deletedAt": row.deleted_at.isoformat() if row.deleted_at else None,
    }
