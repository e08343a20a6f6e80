"""Import: one upload of customers, meetings or tasks (CSV / Excel), and the outcome of each of its rows."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import deferred

from models.base import StrEnum, TimestampMixin, UTCDateTime, enum_column, id_column


class ImportKind(StrEnum):
    customers = "customers"
    meetings = "meetings"
    tasks = "tasks"


class ImportStatus(StrEnum):
    uploaded = "uploaded"  # file read and stored; the columns still to be mapped
    queued = "queued"  # started: waiting for its job
    running = "running"
    done = "done"
    cancelled = "cancelled"
    failed = "failed"
    undone = "undone"  # what it created is soft-deleted, what it updated restored


class DedupeMode(StrEnum):
    """What a customer row whose email a live customer already has does."""

    skip = "skip"
    update = "update"
    create = "create"  # try to create anyway: the unique e-mail rule rejects the row


class RowOutcome(StrEnum):
    created = "created"
    updated = "updated"
    skipped = "skipped"
    rejected = "rejected"


class Import(TimestampMixin, Model):
    """One file being imported by one user, its column mapping and its progress."""

    __tablename__ = "imports"

    id = id_column()
    user_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=False, index=True)
    kind = enum_column(ImportKind, "import_kind", nullable=False)
    status = enum_column(ImportStatus, "import_status", nullable=False, default=ImportStatus.uploaded)
    dedupe = enum_column(DedupeMode, "import_dedupe", nullable=False, default=DedupeMode.skip)
    filename = sa.Column(sa.String(255), nullable=False)
    file_format = sa.Column(sa.String(8), nullable=False)  # csv or xlsx
    encoding = sa.Column(sa.String(32), nullable=True)  # of a CSV: utf-8, utf-8-sig or cp932
    headers = sa.Column(sa.JSON, nullable=False)
    # {field: column index} chosen by the user (suggested from the headers).
    mapping = sa.Column(sa.JSON, nullable=False)
    total = sa.Column(sa.Integer, nullable=False, default=0)
    done = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    created = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    updated = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    skipped = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    rejected = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    cancel_requested = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    error = sa.Column(sa.Text, nullable=True)
    started_at = sa.Column(UTCDateTime, nullable=True)
    finished_at = sa.Column(UTCDateTime, nullable=True)
    undone_at = sa.Column(UTCDateTime, nullable=True)
    # The uploaded file itself, so a worker on another machine reads what the user sent.
    data = deferred(sa.Column(sa.LargeBinary, nullable=False))

    __table_args__ = (sa.Index("ix_imports_user_created", "user_id", "created_at"),)

    def __repr__(self):
        return self.filename or self.id


class ImportRow(Model):
    """What one data row of an import did; (import, row number) is what makes a rerun skip it."""

    __tablename__ = "import_rows"

    import_id = sa.Column(sa.String(36), sa.ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True)
    # The row's number in the file as a spreadsheet shows it (the header is row 1).
    row_number = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    outcome = enum_column(RowOutcome, "import_row_outcome", nullable=False)
    column = sa.Column(sa.String(255), nullable=True)  # the column a rejection is about
    reason = sa.Column(sa.Text, nullable=True)
    record_id = sa.Column(sa.String(36), nullable=True)
    # An updated record's values before the import, for undo ({attribute: JSON value}).
    previous = sa.Column(sa.JSON, nullable=True)
    undone_at = sa.Column(UTCDateTime, nullable=True)
