"""SavedView: a user's named filters and sort of one list screen (their own, never shared)."""

import sqlalchemy as sa
from flask_appbuilder import Model

from models.base import TimestampMixin, id_column

#: Longest name and stored query string (the filters and sort of a list's URL).
NAME_MAX = 100
QUERY_MAX = 2000


class SavedView(TimestampMixin, Model):
    """The query string (`_flt_…`, `_oc_…`, `_od_…`, `psize_…`) of a list screen, under a name of its owner's."""

    __tablename__ = "saved_views"

    id = id_column()
    user_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False)
    # The list screen's view class (CustomerView, TaskView, ...): where the query applies.
    screen = sa.Column(sa.String(64), nullable=False)
    name = sa.Column(sa.String(NAME_MAX), nullable=False)
    query = sa.Column(sa.String(QUERY_MAX), nullable=False, default="", server_default="")

    __table_args__ = (
        # One name per user and screen: saving under a taken name replaces that view.
        sa.UniqueConstraint("user_id", "screen", "name", name="uq_saved_views_user_screen_name"),
    )

    def __repr__(self):
        return self.name or self.id
