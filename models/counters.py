"""RecordCounter: how many live rows sit under each dashboard key (PostgreSQL triggers keep it).

The rows are written only by the database: statement-level triggers on customers, meetings,
tasks and approval_requests (migration 1849f8d67c4a) add each statement's net change in the
same transaction, and `record_counters_recount()` (`crm recount`) rebuilds the table. The
ORM never writes it; the dashboard (app/services/dashboard.py) reads it.

A key is (table, span, day, hour, owner, creator, status):

- owner / creator: the model's `__scope_owner_columns__` (0 for NULL, and creator 0 for a
  model with one owner column), so a Sales user's scope is `owner = me OR creator = me`
  and every record sits under exactly one key of each span.
- span TOTAL (day TOTAL_DAY, '-infinity'): every live row, by its status ('' when none).
- span HOUR / DAY / MONTH: the UTC day and hour, the day, and the first day of the UTC month
  of customers.created_at, meetings.scheduled_at, or the due date of an open task (status
  OPEN_BUCKET; NO_DUE_DAY, 'infinity', when it has none). hour is 0 outside span HOUR. A
  window "since hour H of day D" sums the hours to the end of D, the days to the end of D's
  month and the months after (migration e4b7a1c9d2f6): at most a day of hours and a month of
  days per owner, however far it reaches; only its partial first hour is counted row by row.

Completed or cancelled tasks and approval requests have totals only; soft-deleted customers
count nowhere.
"""

import sqlalchemy as sa
from flask_appbuilder import Model

TOTAL, MONTH, DAY, HOUR = "total", "month", "day", "hour"
TOTAL_DAY = "-infinity"
NO_DUE_DAY = "infinity"
OPEN_BUCKET = "OPEN"


class RecordCounter(Model):
    """The number of rows of one table under one (span, day, hour, owner, creator, status) key."""

    __tablename__ = "record_counters"
    __audit_resource__ = None

    # Primary key order serves the reads: one table's totals, or its days (months) in a range.
    table_name = sa.Column(sa.String(32), primary_key=True)
    span = sa.Column(sa.String(8), primary_key=True)
    day = sa.Column(sa.Date, primary_key=True)  # '-infinity' / 'infinity' have no Python date: read sums only
    hour = sa.Column(sa.SmallInteger, primary_key=True, server_default="0")
    owner_id = sa.Column(sa.Integer, primary_key=True)
    creator_id = sa.Column(sa.Integer, primary_key=True)
    status = sa.Column(sa.String(32), primary_key=True)
    n = sa.Column(sa.BigInteger, nullable=False, server_default="0")
