"""approved requests by processed time

The role home pages show the amounts approved since the start of the month, per rep (the
Manager's team table) and for one rep (the Sales pipeline). Without an index on
processed_at that read every APPROVED request; this partial index holds only approved
requests in processed order, with requester and amount, so the read is one month's rows
from the index alone.

Revision ID: a9e3c7d1f5b2
Revises: b7d4e2a9c1f3
Create Date: 2026-12-01 13:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a9e3c7d1f5b2'
down_revision = 'b7d4e2a9c1f3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        'ix_approval_requests_approved_processed', 'approval_requests', ['processed_at'], unique=False,
        postgresql_include=['requester_id', 'amount'],
        postgresql_where=sa.text("status = 'APPROVED'"),
        sqlite_where=sa.text("status = 'APPROVED'"),
    )


def downgrade():
    op.drop_index('ix_approval_requests_approved_processed', table_name='approval_requests')
