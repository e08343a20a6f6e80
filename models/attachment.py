"""Attachment: a file (a proposal, a signed form) kept on a customer, a meeting or an approval request."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, UTCDateTime, enum_column, id_column, utcnow


class OwnerType(StrEnum):
    """The kind of record a file is attached to."""

    customer = "customer"
    meeting = "meeting"
    approval_request = "approval_request"


class Attachment(Model):
    """One uploaded file: its metadata here, its bytes in the storage (app/storage.py) under `storage_key`.

    Soft-deleted (`deleted_at`): the row stays for the audit trail and is never listed again.
    Who may see it is the owner record's scope (app/services/attachments.py).
    """

    __tablename__ = "attachments"
    __audit_resource__ = "attachment"

    id = id_column()
    owner_type = enum_column(OwnerType, "attachment_owner_type", nullable=False)
    owner_id = sa.Column(sa.String(36), nullable=False)
    # The customer the owner belongs to (the owner itself for a customer): the events' key.
    customer_id = sa.Column(sa.String(36), sa.ForeignKey("customers.id"), nullable=False, index=True)
    filename = sa.Column(sa.String(255), nullable=False)
    content_type = sa.Column(sa.String(100), nullable=False)
    size_bytes = sa.Column(sa.BigInteger, nullable=False)
    sha256 = sa.Column(sa.String(64), nullable=False)
    storage_key = sa.Column(sa.String(300), nullable=False, unique=True)
    uploaded_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    uploaded_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    deleted_at = sa.Column(UTCDateTime, nullable=True)
    deleted_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True)

    uploaded_by = relationship("User", foreign_keys=[uploaded_by_id], lazy="joined")

    __table_args__ = (
        # A record's live files, newest first: the panel and the API list.
        sa.Index("ix_attachments_owner", "owner_type", "owner_id", "uploaded_at"),
        sa.CheckConstraint("size_bytes >= 0", name="ck_attachments_size"),
    )

    def __repr__(self):
        return self.filename or self.id
