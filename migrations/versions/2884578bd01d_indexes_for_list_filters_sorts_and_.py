"""indexes for list filters, sorts and search

Revision ID: 2884578bd01d
Revises: 9e8cd6f0086e
Create Date: 2026-11-23 00:21:34.912279

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2884578bd01d'
down_revision = '9e8cd6f0086e'
branch_labels = None
depends_on = None


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        # Substring search (ILIKE '%q%') uses trigram GIN indexes; needs the pg_trgm extension.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    with op.batch_alter_table('approval_requests', schema=None) as batch_op:
        batch_op.create_index('ix_approval_requests_requester_requested', ['requester_id', 'requested_at'], unique=False)
        batch_op.create_index('ix_approval_requests_status_requested', ['status', 'requested_at'], unique=False)

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_creator_updated', ['created_by_id', 'updated_at'], unique=False)
        batch_op.create_index('ix_customers_live_updated', ['updated_at', 'id'], unique=False, postgresql_where=sa.text('deleted_at IS NULL'), sqlite_where=sa.text('deleted_at IS NULL'))
        if postgres:
            batch_op.create_index('ix_customers_name_trgm', ['name'], unique=False, postgresql_using='gin', postgresql_ops={'name': 'gin_trgm_ops'})
            batch_op.create_index('ix_customers_email_trgm', ['email'], unique=False, postgresql_using='gin', postgresql_ops={'email': 'gin_trgm_ops'})
        batch_op.create_index('ix_customers_sales_updated', ['assigned_sales_id', 'updated_at'], unique=False)

    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.create_index('ix_meetings_sales_scheduled', ['sales_id', 'scheduled_at'], unique=False)



def downgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.drop_index('ix_meetings_sales_scheduled')

    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_sales_updated')
        if postgres:
            batch_op.drop_index('ix_customers_name_trgm')
            batch_op.drop_index('ix_customers_email_trgm')
        batch_op.drop_index('ix_customers_live_updated', postgresql_where=sa.text('deleted_at IS NULL'), sqlite_where=sa.text('deleted_at IS NULL'))
        batch_op.drop_index('ix_customers_creator_updated')

    with op.batch_alter_table('approval_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_approval_requests_status_requested')
        batch_op.drop_index('ix_approval_requests_requester_requested')

