"""autovacuum keeps the newest rows of the list tables all-visible

Every list reads its page's keys with an index-only scan, newest first. A row stays out of
the visibility map until VACUUM, and each such row in the walked range costs a heap fetch:
page 200 of the customer list (4,000 index entries) took 0.96 ms with 1,700 new customers
since the last VACUUM and 0.42 ms after it (`pgbench -M prepared -c 1`, 100k customers;
bench/README.md, series K). PostgreSQL's defaults vacuum for inserts only after 1,000 +
20 % of the table (21,000 new customers at 100k, 201,000 tasks at 1M), and the newest
rows are the ones every first page shows. These tables are now vacuumed after 500 inserts,
or 500 + 2 % of the table in updated or deleted rows, whatever their size.

Revision ID: b3f1e6a2c9d4
Revises: 7d2a9f4c1b8e
Create Date: 2026-11-23 21:30:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'b3f1e6a2c9d4'
down_revision = '7d2a9f4c1b8e'
branch_labels = None
depends_on = None

TABLES = ("customers", "tasks", "meetings", "approval_requests")
SETTINGS = {
    "autovacuum_vacuum_insert_threshold": "500",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_threshold": "500",
    "autovacuum_vacuum_scale_factor": "0.02",
}


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        options = ", ".join(f"{name} = {value}" for name, value in SETTINGS.items())
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} SET ({options})")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} RESET ({', '.join(SETTINGS)})")
