"""hour buckets for the dashboard counters

Each dashboard window ("since 30 days ago", "from now on") counted its partial first UTC day
row by row: from now to midnight. At 1M customers (10M tasks) and 01:24 UTC that was 12,943
open tasks due later that day, 3.1 ms of the statement's 5.3 ms, and nothing at 23:59, so the
dashboard's cost grew with the table and moved with the time of day (bench/README.md,
series M). Counter keys now also carry the UTC hour (column `hour`, span 'hour'), and a
window is its partial first hour counted row by row, then the hours to the end of that day,
the days to the end of that month and the months after from the counters: at most one hour
of rows is counted, whatever the time.

The table is rebuilt (its primary key gains the hour) and refilled by
record_counters_recount(), which holds writers to the four tables for its duration. It now
groups each table by hour, owner, creator and status before expanding the groups into keys:
26.9 s at 1M customers (10M tasks) and 57.5 s at 3M here, against 90.6 s at 1M expanding
every record into its four keys (`SELECT record_counters_recount()` in a rolled-back
transaction).

Revision ID: e4b7a1c9d2f6
Revises: c5d8e1f3a7b2
Create Date: 2026-11-24 01:40:00

"""
import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'e4b7a1c9d2f6'
down_revision = 'c5d8e1f3a7b2'
branch_labels = None
depends_on = None

TABLES = ("customers", "meetings", "tasks", "approval_requests")
KEY = "table_name, span, day, hour, owner_id, creator_id, status"
NO_STATUS, OPEN = "''::varchar", "'OPEN'::varchar"
# Per table: the timestamp its windows read, its owner column (created_by_id is the creator
# of all three), which rows are counted, and the status of its day, hour and month buckets
# (the total's is the row's own status for tasks).
SOURCES = {
    "customers": ("created_at", "assigned_sales_id", "r.deleted_at IS NULL", NO_STATUS, NO_STATUS),
    "meetings": ("scheduled_at", "sales_id", "TRUE", NO_STATUS, NO_STATUS),
    # Only open tasks' due dates matter (overdue): one bucket for both open statuses.
    "tasks": ("due_date", "user_id", "k.span = 'total' OR r.status IN ('TODO', 'IN_PROGRESS')", OPEN, "r.status::varchar"),
}


def _previous():
    """Revision 1849f8d67c4a's module: its functions and table are what a downgrade restores."""
    path = Path(__file__).with_name("1849f8d67c4a_record_counters_for_the_dashboard.py")
    spec = importlib.util.spec_from_file_location("record_counters_1849f8d67c4a", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def keys(table, rel, n="1"):
    """SQL selecting one (KEY, n) row per counter key of each row of `rel`: total, month, day, hour.

    n: how many records a row of `rel` stands for (1 for a table's own rows).
    """
    if table not in SOURCES:  # approval requests: totals by status only
        return (
            "SELECT 'approval_requests'::varchar AS table_name, 'total'::varchar AS span, DATE '-infinity' AS day,"
            f" 0::smallint AS hour, COALESCE(r.requester_id, 0) AS owner_id, 0 AS creator_id, r.status::varchar AS status,"
            f" {n} AS n FROM {rel} r"
        )
    column, owner, counted, status, total_status = SOURCES[table]
    at = f"(r.{column} AT TIME ZONE 'UTC')"
    # No due date: the day 'infinity', after every day. '-infinity' stays the totals' own key.
    day = f"CASE WHEN r.{column} IS NULL THEN DATE 'infinity' ELSE GREATEST({at}::date, DATE '0001-01-01') END"
    hour = f"COALESCE(EXTRACT(HOUR FROM {at})::smallint, 0::smallint)"
    return (
        f"SELECT '{table}'::varchar AS table_name, k.span, k.day, k.hour, COALESCE(r.{owner}, 0) AS owner_id,"
        f" COALESCE(r.created_by_id, 0) AS creator_id, k.status, {n} AS n"
        f" FROM {rel} r CROSS JOIN LATERAL (SELECT {day} AS d, {hour} AS h) t"
        f" CROSS JOIN LATERAL (VALUES ('total'::varchar, DATE '-infinity', 0::smallint, {total_status}),"
        f" ('month', date_trunc('month', t.d::timestamp)::date, 0::smallint, {status}),"
        f" ('day', t.d, 0::smallint, {status}), ('hour', t.d, t.h, {status})) k(span, day, hour, status)"
        f" WHERE {counted}"
    )


# What each table's keys depend on, its timestamp cut to the UTC hour, and which rows count:
# the recount groups the rows by these first and expands each group, not each record, into
# its four keys (15.6 s against 40.9 s for that SELECT at 1M customers, 10M tasks here).
GROUPED = {
    "customers": (("date_trunc('hour', created_at, 'UTC') AS created_at", "assigned_sales_id", "created_by_id", "deleted_at"),
                  "WHERE deleted_at IS NULL"),
    "meetings": (("date_trunc('hour', scheduled_at, 'UTC') AS scheduled_at", "sales_id", "created_by_id"), ""),
    "tasks": (("date_trunc('hour', due_date, 'UTC') AS due_date", "user_id", "created_by_id", "status"), ""),
    "approval_requests": (("requester_id", "status"), ""),
}


def grouped(table):
    """SQL of `table`'s rows grouped by what their keys depend on, with how many each group holds (n)."""
    columns, where = GROUPED[table]
    positions = ", ".join(str(i) for i in range(1, len(columns) + 1))
    return f"(SELECT {', '.join(columns)}, count(*) AS n FROM {table} {where} GROUP BY {positions})"


def upsert(deltas):
    """SQL adding the net delta per key of `deltas` (rows of KEY plus d), in key order (no deadlocks)."""
    return (
        f"INSERT INTO record_counters AS c ({KEY}, n)"
        f" SELECT {KEY}, sum(d) FROM ({deltas}) x GROUP BY {KEY} HAVING sum(d) <> 0 ORDER BY {KEY}"
        f" ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + EXCLUDED.n;"
    )


def trigger_function(table):
    """CREATE OR REPLACE FUNCTION for the statement triggers of `table` (the triggers stay)."""
    new = f"SELECT {KEY}, n AS d FROM ({keys(table, 'new_rows')}) keyed"
    old = f"SELECT {KEY}, -n AS d FROM ({keys(table, 'old_rows')}) keyed"
    return f"""
CREATE OR REPLACE FUNCTION record_counters_{table}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {upsert(new)}
    ELSIF TG_OP = 'DELETE' THEN
        {upsert(old)}
    ELSE
        {upsert(old + " UNION ALL " + new)}
    END IF;
    RETURN NULL;
END
$fn$;
"""


RECOUNT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION record_counters_recount() RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    written bigint;
BEGIN
    -- Writers wait until the caller commits, so no change lands between the count and the swap.
    LOCK TABLE {", ".join(TABLES)} IN SHARE MODE;
    DELETE FROM record_counters;
    -- In key order, so a range the dashboard reads sits on a few adjacent pages.
    INSERT INTO record_counters ({KEY}, n)
    SELECT {KEY}, sum(n) FROM ({" UNION ALL ".join(keys(t, grouped(t), "r.n") for t in TABLES)}) keyed
    GROUP BY {KEY} ORDER BY {KEY};
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$fn$;
"""


def create_table(with_hour):
    """record_counters, empty, with or without the hour in its key."""
    hour = [sa.Column('hour', sa.SmallInteger(), server_default='0', nullable=False)] if with_hour else []
    op.create_table('record_counters',
    sa.Column('table_name', sa.String(length=32), nullable=False),
    sa.Column('span', sa.String(length=8), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    *hour,
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('creator_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('n', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('table_name', 'span', 'day', *(['hour'] if with_hour else []), 'owner_id', 'creator_id', 'status')
    )
    if op.get_bind().dialect.name == "postgresql":
        # Every write rewrites a counter row: room on the page keeps those updates HOT.
        op.execute("ALTER TABLE record_counters SET (fillfactor = 70)")


def rebuild(with_hour, functions):
    """Recreate record_counters, install `functions` (SQL) and refill it from the tables."""
    op.drop_table('record_counters')
    create_table(with_hour)
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite (make run) counts exactly: no triggers, the table stays empty
    for sql in functions:
        op.execute(sql)
    op.execute("SELECT record_counters_recount()")


def upgrade():
    rebuild(True, [RECOUNT_FUNCTION, *(trigger_function(t) for t in TABLES)])


def downgrade():
    previous = _previous()
    functions = [previous.RECOUNT_FUNCTION, *(previous.trigger_function(t) for t in TABLES)]
    rebuild(False, [sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1) for sql in functions])
