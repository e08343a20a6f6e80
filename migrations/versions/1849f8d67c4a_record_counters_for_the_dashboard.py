"""record counters for the dashboard

Revision ID: 1849f8d67c4a
Revises: 5b7e2c1d9a40
Create Date: 2026-11-23 02:56:37.000000

The table record_counters (models/counters.py) and, on PostgreSQL, the triggers that keep it
in the same transaction as every write to customers, meetings, tasks and approval_requests,
plus record_counters_recount() (`crm recount`, bench/load_data.py, the backfill below), and
the owner columns INCLUDEd in the indexes that the dashboard's partial-day counts read.

Each customer, meeting and open task is counted three times: in its total, its UTC day and its
UTC month, so a window "from day D on" is a month's worth of days at most plus whole months.
The triggers are statement-level with transition tables: a statement's changes are folded
into one net delta per key, keys that net to zero are not touched (an edit of a title takes
no lock), and the keys are upserted in key order, so two transactions moving rows in opposite
directions lock them in the same order instead of deadlocking. A bulk UPDATE writes one row
per key, not one per changed record.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '1849f8d67c4a'
down_revision = '5b7e2c1d9a40'
branch_labels = None
depends_on = None

TABLES = ("customers", "meetings", "tasks", "approval_requests")
KEY = "table_name, span, day, owner_id, creator_id, status"
NO_STATUS, OPEN = "''::varchar", "'OPEN'::varchar"


def utc_day(column):
    """SQL for the UTC day of a non-NULL timestamp; '-infinity' is kept clear of the totals' key."""
    return f"GREATEST(({column} AT TIME ZONE 'UTC')::date, DATE '0001-01-01')"


def buckets(day, status, total_status=None):
    """A VALUES list (span, day, status): the total, the day and the month of a row whose day is `day`."""
    return (
        f"(VALUES ('total'::varchar, DATE '-infinity', {total_status or status}), ('day', {day}, {status}),"
        f" ('month', date_trunc('month', ({day})::timestamp)::date, {status}))"
    )


def keys(table, rel):
    """SQL selecting one (table_name, span, day, owner_id, creator_id, status) row per key of each row of `rel`.

    The owner and creator are the model's __scope_owner_columns__ (app/scope.py).
    """
    if table == "customers":
        return (
            f"SELECT 'customers'::varchar AS table_name, k.span, k.day, COALESCE(r.assigned_sales_id, 0) AS owner_id,"
            f" COALESCE(r.created_by_id, 0) AS creator_id, k.status"
            f" FROM {rel} r CROSS JOIN LATERAL (SELECT {utc_day('r.created_at')} AS d) t"
            f" CROSS JOIN LATERAL {buckets('t.d', NO_STATUS)} k(span, day, status)"
            f" WHERE r.deleted_at IS NULL"
        )
    if table == "meetings":
        return (
            f"SELECT 'meetings'::varchar AS table_name, k.span, k.day, COALESCE(r.sales_id, 0) AS owner_id,"
            f" COALESCE(r.created_by_id, 0) AS creator_id, k.status"
            f" FROM {rel} r CROSS JOIN LATERAL (SELECT {utc_day('r.scheduled_at')} AS d) t"
            f" CROSS JOIN LATERAL {buckets('t.d', NO_STATUS)} k(span, day, status)"
        )
    if table == "tasks":
        # Only open tasks' due dates matter (overdue), so only they get a day and a month: one
        # bucket for both open statuses, 'infinity' for no due date.
        due_day = f"CASE WHEN r.due_date IS NULL THEN DATE 'infinity' ELSE {utc_day('r.due_date')} END"
        return (
            f"SELECT 'tasks'::varchar AS table_name, k.span, k.day, COALESCE(r.user_id, 0) AS owner_id,"
            f" COALESCE(r.created_by_id, 0) AS creator_id, k.status"
            f" FROM {rel} r CROSS JOIN LATERAL (SELECT {due_day} AS d) t"
            f" CROSS JOIN LATERAL {buckets('t.d', OPEN, 'r.status::varchar')} k(span, day, status)"
            f" WHERE k.span = 'total' OR r.status IN ('TODO', 'IN_PROGRESS')"
        )
    return (
        f"SELECT 'approval_requests'::varchar AS table_name, 'total'::varchar AS span, DATE '-infinity' AS day,"
        f" COALESCE(r.requester_id, 0) AS owner_id, 0 AS creator_id, r.status::varchar AS status"
        f" FROM {rel} r"
    )


def upsert(deltas):
    """SQL adding the net delta per key of `deltas` (rows of KEY plus d), in key order."""
    return (
        f"INSERT INTO record_counters AS c ({KEY}, n)"
        f" SELECT {KEY}, sum(d) FROM ({deltas}) x GROUP BY {KEY} HAVING sum(d) <> 0 ORDER BY {KEY}"
        f" ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + EXCLUDED.n;"
    )


def trigger_function(table):
    """CREATE FUNCTION for the statement triggers of `table`."""
    new = f"SELECT keyed.*, 1 AS d FROM ({keys(table, 'new_rows')}) keyed"
    old = f"SELECT keyed.*, -1 AS d FROM ({keys(table, 'old_rows')}) keyed"
    return f"""
CREATE FUNCTION record_counters_{table}() RETURNS trigger LANGUAGE plpgsql AS $fn$
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


TRUNCATE_FUNCTION = """
CREATE FUNCTION record_counters_truncate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM record_counters WHERE table_name = TG_TABLE_NAME;
    RETURN NULL;
END
$fn$;
"""

RECOUNT_FUNCTION = f"""
CREATE FUNCTION record_counters_recount() RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    written bigint;
BEGIN
    -- Writers wait until the caller commits, so no change lands between the count and the swap.
    LOCK TABLE {", ".join(TABLES)} IN SHARE MODE;
    DELETE FROM record_counters;
    -- In key order, so a range the dashboard reads sits on a few adjacent pages.
    INSERT INTO record_counters ({KEY}, n)
    SELECT {KEY}, count(*) FROM ({" UNION ALL ".join(keys(t, t) for t in TABLES)}) keyed
    GROUP BY {KEY} ORDER BY {KEY};
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END
$fn$;
"""


def triggers(table):
    """CREATE TRIGGER statements of `table` (transition tables need one trigger per event)."""
    run = f"FOR EACH STATEMENT EXECUTE FUNCTION record_counters_{table}()"
    return [
        f"CREATE TRIGGER record_counters_insert AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows {run}",
        f"CREATE TRIGGER record_counters_update AFTER UPDATE ON {table}"
        f" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows {run}",
        f"CREATE TRIGGER record_counters_delete AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows {run}",
        f"CREATE TRIGGER record_counters_truncate AFTER TRUNCATE ON {table}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION record_counters_truncate()",
    ]


OPEN_TASKS = sa.text("status IN ('TODO', 'IN_PROGRESS')")
# The indexes the dashboard's partial-day counts read, with the owner columns included so the
# counts are index-only in a Sales scope too: (table, name, column, include, extra kwargs).
INDEXES = [
    ("customers", "ix_customers_created_at", "created_at", ["assigned_sales_id", "created_by_id", "deleted_at"], {}),
    ("meetings", "ix_meetings_scheduled_at", "scheduled_at", ["sales_id", "created_by_id"], {}),
    ("tasks", "ix_tasks_open_due", "due_date", ["user_id", "created_by_id"],
     {"postgresql_where": OPEN_TASKS, "sqlite_where": OPEN_TASKS}),
]


def replace_indexes(with_include):
    """Recreate INDEXES with (upgrade) or without (downgrade) their included owner columns."""
    for table, name, column, include, extra in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column], postgresql_include=include if with_include else [], **extra)


def upgrade():
    op.create_table('record_counters',
    sa.Column('table_name', sa.String(length=32), nullable=False),
    sa.Column('span', sa.String(length=8), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('creator_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('n', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('table_name', 'span', 'day', 'owner_id', 'creator_id', 'status')
    )
    replace_indexes(with_include=True)
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite (make run) counts exactly: no triggers, the table stays empty
    # Every write rewrites a counter row: room on the page keeps those updates HOT.
    op.execute("ALTER TABLE record_counters SET (fillfactor = 70)")
    op.execute(TRUNCATE_FUNCTION)
    op.execute(RECOUNT_FUNCTION)
    for table in TABLES:
        op.execute(trigger_function(table))
        for statement in triggers(table):
            op.execute(statement)
    op.execute("SELECT record_counters_recount()")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            for event in ("insert", "update", "delete", "truncate"):
                op.execute(f"DROP TRIGGER record_counters_{event} ON {table}")
            op.execute(f"DROP FUNCTION record_counters_{table}()")
        op.execute("DROP FUNCTION record_counters_recount()")
        op.execute("DROP FUNCTION record_counters_truncate()")
    op.drop_table('record_counters')
    replace_indexes(with_include=False)
