"""ApiKey: a service client's key, stored as the SHA-256 of its secret (app/api_keys.py)."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, UTCDateTime, enum_column, id_column, utcnow


class ApiKeyScope(StrEnum):
    READ_ONLY = "read-only"
    READ_WRITE = "read-write"


class ApiKey(Model):
    """One key: acts as `user` holding only `role`; refused once revoked or past `expires_at`.

    The key a client holds is `crm_<key_id>_<secret>`: `key_id` finds the row, the secret
    is checked against `secret_hash` and never stored. Rotation gives a new row
    (`rotated_from_id`) and moves the old key's `expires_at` to the end of the overlap.
    """

    __tablename__ = "api_keys"
    __audit_resource__ = "api_key"
    # Not in the audit rows: the hash proves nothing to a reader, last use has its own rows.
    __audit_derived__ = ("secret_hash", "last_used_at")

    id = id_column()
    key_id = sa.Column(sa.String(16), nullable=False, unique=True)
    secret_hash = sa.Column(sa.String(64), nullable=False)
    name = sa.Column(sa.String(100), nullable=False)
    user_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=False, index=True)
    role = sa.Column(sa.String(64), nullable=False)
    scope = enum_column(ApiKeyScope, "api_key_scope", nullable=False)
    expires_at = sa.Column(UTCDateTime, nullable=False)
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    created_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True)
    revoked_at = sa.Column(UTCDateTime, nullable=True)
    rotated_from_id = sa.Column(sa.String(36), sa.ForeignKey("api_keys.id"), nullable=True)
    last_used_at = sa.Column(UTCDateTime, nullable=True)

    user = relationship("User", foreign_keys=[user_id], lazy="joined")

    def __repr__(self):
        return f"API key {self.name} ({self.key_id})"
