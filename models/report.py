"""ReportRun: one Excel or PDF report a user asked for, built by a worker and kept for a while."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, UTCDateTime, enum_column, id_column, utcnow


class ReportStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"


class ReportRun(Model):
    """Who asked for which report (kind, format, parameters), how far its build is, and where its file is."""

    __tablename__ = "report_runs"
    # Downloads are the asker's own (and Admins'): app/services/reports.py checks that, not the scope rule.
    __scope_owner_columns__ = ("user_id",)
    # Who asked for which data is audited (the request's CREATE row holds kind, format and parameters).
    __audit_resource__ = "report_run"

    id = id_column()
    user_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False)
    kind = sa.Column(sa.String(32), nullable=False)
    format = sa.Column(sa.String(8), nullable=False)
    params = sa.Column(sa.JSON, nullable=False, default=dict)
    status = enum_column(ReportStatus, "report_status", nullable=False, default=ReportStatus.QUEUED)
    progress = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")  # percent
    rows_done = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    rows_total = sa.Column(sa.Integer, nullable=True)
    # Relative to the reports directory under instance/ (never a path the client chose).
    file_path = sa.Column(sa.String(300), nullable=True)
    file_size = sa.Column(sa.BigInteger, nullable=True)
    error = sa.Column(sa.Text, nullable=True)
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    started_at = sa.Column(UTCDateTime, nullable=True)
    finished_at = sa.Column(UTCDateTime, nullable=True)
    expires_at = sa.Column(UTCDateTime, nullable=False)

    user = relationship("User", foreign_keys=[user_id])

    __table_args__ = (
        sa.Index("ix_report_runs_user_created", "user_id", "created_at"),
        sa.Index("ix_report_runs_expires", "expires_at"),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name="ck_report_runs_progress"),
    )

    def __repr__(self):
        return f"{self.kind}.{self.format} ({self.status})"
