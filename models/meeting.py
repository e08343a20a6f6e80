"""Meeting: a record of a sales meeting (商談記録)."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, TimestampMixin, UTCDateTime, enum_column, id_column


class MeetingType(StrEnum):
    """How the meeting is held."""

    visit = "visit"  # 訪問: at the customer's
    phone = "phone"  # 電話
    online = "online"  # オンライン
    branch = "branch"  # 来店: the customer comes to the branch
    other = "other"  # その他


class MeetingStatus(StrEnum):
    """Where the meeting stands."""

    scheduled = "scheduled"
    completed = "completed"
    cancelled = "cancelled"


class Meeting(TimestampMixin, Model):
    """A meeting with a customer, held by a sales rep."""

    __tablename__ = "meetings"
    __scope_owner_columns__ = ("sales_id", "created_by_id")
    __audit_resource__ = "meeting"

    id = id_column()
    customer_id = sa.Column(sa.String(36), sa.ForeignKey("customers.id"), nullable=False, index=True)
    sales_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    created_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    title = sa.Column(sa.String(200), nullable=False)
    description = sa.Column(sa.Text)
    scheduled_at = sa.Column(UTCDateTime, nullable=False)
    location = sa.Column(sa.String(200))
    next_action = sa.Column(sa.String(500))
    next_action_date = sa.Column(UTCDateTime, nullable=True, index=True)
    # The product discussed, when there is one (the screening's 「元本保証」 rule asks whether it is principal-protected).
    product_id = sa.Column(sa.String(36), sa.ForeignKey("products.id"), nullable=True, index=True)
    type = enum_column(MeetingType, "meeting_type", nullable=False, default=MeetingType.visit, server_default=MeetingType.visit.value)
    # Unset on a new meeting, the service derives it from the date (app/services/records.py).
    status = enum_column(
        MeetingStatus, "meeting_status", nullable=False, default=MeetingStatus.scheduled,
        server_default=MeetingStatus.scheduled.value,
    )

    customer = relationship("Customer", lazy="joined", backref="meetings")
    sales = relationship("User", foreign_keys=[sales_id], lazy="joined")
    created_by = relationship("User", foreign_keys=[created_by_id])
    product = relationship("Product")

    __table_args__ = (
        # With the owner columns the dashboard's count of today's upcoming meetings in a Sales
        # scope is an index-only scan (app/services/dashboard.py).
        sa.Index("ix_meetings_scheduled_at", "scheduled_at", postgresql_include=["sales_id", "created_by_id"]),
        # Scoped lists sort by scheduled_at within one rep's meetings.
        sa.Index("ix_meetings_sales_scheduled", "sales_id", "scheduled_at"),
        # The navbar search matches titles anywhere (ILIKE '%q%', app/services/search.py): a
        # trigram index, without GIN's pending list (as the customers' search index).
        sa.Index(
            "ix_meetings_title_trgm", "title", postgresql_using="gin", postgresql_ops={"title": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
    )

    def __repr__(self):
        return self.title or self.id
