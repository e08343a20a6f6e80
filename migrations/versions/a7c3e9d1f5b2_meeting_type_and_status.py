"""meeting type and status

A meeting (商談記録) records how it is held (visit, phone, online, branch, other) and where
it stands (scheduled, completed, cancelled): VARCHAR enums with CHECK constraints, as every
enum column of the schema. Existing meetings become visits; those already past become
completed (a meeting record with a date behind it was held), the others scheduled.

Revision ID: a7c3e9d1f5b2
Revises: e4b7a1c9d2f6
Create Date: 2026-11-25 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a7c3e9d1f5b2'
down_revision = 'e4b7a1c9d2f6'
branch_labels = None
depends_on = None

TYPES = ('visit', 'phone', 'online', 'branch', 'other')
STATUSES = ('scheduled', 'completed', 'cancelled')


def upgrade():
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'type', sa.Enum(*TYPES, name='meeting_type', native_enum=False, create_constraint=True, length=32),
            server_default='visit', nullable=False,
        ))
        batch_op.add_column(sa.Column(
            'status', sa.Enum(*STATUSES, name='meeting_status', native_enum=False, create_constraint=True, length=32),
            server_default='scheduled', nullable=False,
        ))
    op.execute("UPDATE meetings SET status = 'completed' WHERE scheduled_at < CURRENT_TIMESTAMP")


def downgrade():
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        # Named first: SQLite's table copy would otherwise keep the CHECKs of the dropped columns.
        batch_op.drop_constraint('meeting_status', type_='check')
        batch_op.drop_constraint('meeting_type', type_='check')
        batch_op.drop_column('status')
        batch_op.drop_column('type')
