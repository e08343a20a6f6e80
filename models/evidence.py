"""EvidencePack: the frozen record of one approval request's sale (JSON and PDF), with their SHA-256."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import UTCDateTime, id_column, utcnow


class EvidencePack(Model):
    """One build of a request's evidence pack; the files live in the storage (app/storage.py)."""

    __tablename__ = "evidence_packs"
    __audit_resource__ = "evidence_pack"

    id = id_column()
    approval_request_id = sa.Column(
        sa.String(36), sa.ForeignKey("approval_requests.id"), nullable=False, index=True
    )
    # "decision": built when the request was decided; "manual": asked for on the screen or the API.
    trigger = sa.Column(sa.String(20), nullable=False)
    request_status = sa.Column(sa.String(20), nullable=False)
    json_sha256 = sa.Column(sa.String(64), nullable=False)
    pdf_sha256 = sa.Column(sa.String(64), nullable=False)
    json_key = sa.Column(sa.String(300), nullable=False)
    pdf_key = sa.Column(sa.String(300), nullable=False)
    json_size = sa.Column(sa.Integer, nullable=False)
    pdf_size = sa.Column(sa.Integer, nullable=False)
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    created_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True)

    approval_request = relationship("ApprovalRequest")
    created_by = relationship("User", foreign_keys=[created_by_id])

    def __repr__(self):
        return f"evidence {self.json_sha256[:12]}" if self.json_sha256 else str(self.id)
