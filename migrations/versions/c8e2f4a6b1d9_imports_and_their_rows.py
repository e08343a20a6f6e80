"""imports and import_rows: uploads of customers, meetings and tasks and each row's outcome

Revision ID: c8e2f4a6b1d9
Revises: 3c1d5e7f9a2b
Create Date: 2026-12-01 16:40:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'c8e2f4a6b1d9'
down_revision = '3c1d5e7f9a2b'
branch_labels = None
depends_on = None


def _enum(name, values):
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade():
    op.create_table(
        'imports',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', _enum('import_kind', ['customers', 'meetings', 'tasks']), nullable=False),
        sa.Column('status', _enum('import_status', ['uploaded', 'queued', 'running', 'done', 'cancelled', 'failed',
                                                    'undone']), nullable=False),
        sa.Column('dedupe', _enum('import_dedupe', ['skip', 'update', 'create']), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('file_format', sa.String(length=8), nullable=False),
        sa.Column('encoding', sa.String(length=32), nullable=True),
        sa.Column('headers', sa.JSON(), nullable=False),
        sa.Column('mapping', sa.JSON(), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('done', sa.Integer(), server_default='0', nullable=False),
        sa.Column('created', sa.Integer(), server_default='0', nullable=False),
        sa.Column('updated', sa.Integer(), server_default='0', nullable=False),
        sa.Column('skipped', sa.Integer(), server_default='0', nullable=False),
        sa.Column('rejected', sa.Integer(), server_default='0', nullable=False),
        sa.Column('cancel_requested', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.Column('undone_at', UTCDateTime(), nullable=True),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('imports') as batch:
        batch.create_index('ix_imports_user_id', ['user_id'], unique=False)
        batch.create_index('ix_imports_user_created', ['user_id', 'created_at'], unique=False)
    op.create_table(
        'import_rows',
        sa.Column('import_id', sa.String(length=36), nullable=False),
        sa.Column('row_number', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('outcome', _enum('import_row_outcome', ['created', 'updated', 'skipped', 'rejected']), nullable=False),
        sa.Column('column', sa.String(length=255), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('record_id', sa.String(length=36), nullable=True),
        sa.Column('previous', sa.JSON(), nullable=True),
        sa.Column('undone_at', UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['import_id'], ['imports.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('import_id', 'row_number'),
    )


def downgrade():
    op.drop_table('import_rows')
    with op.batch_alter_table('imports') as batch:
        batch.drop_index('ix_imports_user_created')
        batch.drop_index('ix_imports_user_id')
    op.drop_table('imports')
