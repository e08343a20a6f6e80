"""TokenEpoch: a user's token generation; tokens issued under an older one are refused."""

import sqlalchemy as sa
from flask_appbuilder import Model

from models.base import UTCDateTime, utcnow


class TokenEpoch(Model):
    """One row per user whose password changed, who was deactivated or deleted (absent: epoch 0).

    No foreign key to ab_user: the row outlives a deleted user, so a later user given the
    same id (SQLite reuses the highest one) never inherits the deleted user's tokens.
    """

    __tablename__ = "token_epochs"

    user_id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    epoch = sa.Column(sa.Integer, nullable=False, default=0, server_default="0")
    changed_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)

    def __repr__(self):
        return f"token epoch {self.epoch} of user {self.user_id}"
