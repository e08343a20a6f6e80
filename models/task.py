"""Task: a to-do for a sales rep, optionally about a customer."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, TimestampMixin, UTCDateTime, enum_column, id_column


class TaskStatus(StrEnum):
    TODO = "TODO"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class TaskPriority(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    URGENT = "URGENT"


OPEN_STATUSES = (TaskStatus.TODO, TaskStatus.IN_PROGRESS)


class Task(TimestampMixin, Model):
    """A task owned by one user."""

    __tablename__ = "tasks"
    __scope_owner_columns__ = ("user_id", "created_by_id")
    __audit_resource__ = "task"

    id = id_column()
    user_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=False, index=True)
    customer_id = sa.Column(sa.String(36), sa.ForeignKey("customers.id"), nullable=True, index=True)
    created_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    title = sa.Column(sa.String(200), nullable=False)
    description = sa.Column(sa.Text)
    due_date = sa.Column(UTCDateTime, nullable=True)
    status = enum_column(TaskStatus, "task_status", nullable=False, default=TaskStatus.TODO, index=True)
    priority = enum_column(TaskPriority, "task_priority", nullable=False, default=TaskPriority.MEDIUM, index=True)
    completed_at = sa.Column(UTCDateTime, nullable=True)

    user = relationship("User", foreign_keys=[user_id], lazy="joined")
    customer = relationship("Customer", lazy="joined", backref="tasks")
    created_by = relationship("User", foreign_keys=[created_by_id])

    __table_args__ = (
        # Overdue / upcoming scans filter on status and due date together.
        sa.Index("ix_tasks_status_due_date", "status", "due_date"),
        sa.Index("ix_tasks_user_status_due", "user_id", "status", "due_date"),
        # Overdue lists and open-task counts read only open tasks, in due order: a partial
        # index over them (half the table) answers `status IN OPEN_STATUSES ORDER BY due_date`;
        # the owner columns make the dashboard's count of one day in a Sales scope index-only.
        sa.Index(
            "ix_tasks_open_due",
            "due_date",
            postgresql_include=["user_id", "created_by_id"],
            postgresql_where=sa.text("status IN ('TODO', 'IN_PROGRESS')"),
            sqlite_where=sa.text("status IN ('TODO', 'IN_PROGRESS')"),
        ),
        # The navbar search matches titles anywhere (ILIKE '%q%', app/services/search.py): a
        # trigram index, without GIN's pending list (as the customers' search index).
        sa.Index(
            "ix_tasks_title_trgm", "title", postgresql_using="gin", postgresql_ops={"title": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
    )

    def __repr__(self):
        return self.title or self.id


def is_open():
    """`status IN ('TODO', 'IN_PROGRESS')`, the statuses written into the SQL as constants.

    Not parameters: a prepared statement's one (generic) plan can then use the partial
    index ix_tasks_open_due, whose predicate this is, and the lists run on the DBAPI
    cursor (app/rawsql.py) instead of expanding an IN list at every execution.
    """
    return Task.status.in_([sa.literal_column(f"'{status.value}'") for status in OPEN_STATUSES])
