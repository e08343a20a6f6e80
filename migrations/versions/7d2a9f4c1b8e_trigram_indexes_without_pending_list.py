"""trigram indexes without a pending list

GIN indexes collect new entries in a pending list (`fastupdate`) that every search then
reads in full, until VACUUM or the list's 4 MB limit merges it. Customer search is an ILIKE
over three trigram indexes: after ~850 new customers (one benchmark write cell) the uncached
search served 52 requests/s instead of 267, its bare SQL 131 queries/s instead of 1,933
(bench/README.md, series J). Without the list, a new customer's trigrams go into the index
at insert, and every search reads the index alone.

Revision ID: 7d2a9f4c1b8e
Revises: 1849f8d67c4a
Create Date: 2026-11-23 19:05:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '7d2a9f4c1b8e'
down_revision = '1849f8d67c4a'
branch_labels = None
depends_on = None

INDEXES = ("ix_customers_name_trgm", "ix_customers_email_trgm", "ix_customers_phone_trgm")


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in INDEXES:
            op.execute(f"ALTER INDEX {name} SET (fastupdate = off)")
            # Entries already pending move into the index now, not at the next VACUUM.
            op.execute(f"SELECT gin_clean_pending_list('{name}'::regclass)")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name in INDEXES:
            op.execute(f"ALTER INDEX {name} RESET (fastupdate)")
