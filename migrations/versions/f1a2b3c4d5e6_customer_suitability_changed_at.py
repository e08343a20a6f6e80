"""customers.suitability_changed_at: when a Sales user last changed a suitability field

Set by app/services/suitability.py at flush time; for APPROVAL_SUITABILITY_CHANGE_DAYS
after it, every approval request for the customer needs the Compliance step, so a rep
cannot remove that step by raising the customer's risk tolerance and resubmitting.
A nullable column without a default: no table rewrite on PostgreSQL, a plain ADD COLUMN
on SQLite.

Revision ID: f1a2b3c4d5e6
Revises: a7c3e9d1f5b2
Create Date: 2026-12-01 12:00:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'f1a2b3c4d5e6'
down_revision = 'a7c3e9d1f5b2'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('customers', sa.Column('suitability_changed_at', UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('customers') as batch_op:
        batch_op.drop_column('suitability_changed_at')
