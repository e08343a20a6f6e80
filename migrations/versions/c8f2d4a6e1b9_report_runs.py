"""report_runs: Excel and PDF reports built by workers, kept REPORT_RETENTION_DAYS

Revision ID: c8f2d4a6e1b9
Revises: c8e2f4a6b1d9
Create Date: 2026-12-01 16:40:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'c8f2d4a6e1b9'
down_revision = 'c8e2f4a6b1d9'
branch_labels = None
depends_on = None

STATUSES = ('QUEUED', 'RUNNING', 'DONE', 'FAILED', 'EXPIRED')


def upgrade():
    op.create_table(
        'report_runs',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('format', sa.String(length=8), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('status', sa.Enum(*STATUSES, name='report_status', native_enum=False, create_constraint=True,
                                    length=32), nullable=False),
        sa.Column('progress', sa.Integer(), server_default='0', nullable=False),
        sa.Column('rows_done', sa.Integer(), server_default='0', nullable=False),
        sa.Column('rows_total', sa.Integer(), nullable=True),
        sa.Column('file_path', sa.String(length=300), nullable=True),
        sa.Column('file_size', sa.BigInteger(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.CheckConstraint('progress BETWEEN 0 AND 100', name='ck_report_runs_progress'),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_report_runs_user_created', 'report_runs', ['user_id', 'created_at'])
    op.create_index('ix_report_runs_expires', 'report_runs', ['expires_at'])


def downgrade():
    op.drop_index('ix_report_runs_expires', table_name='report_runs')
    op.drop_index('ix_report_runs_user_created', table_name='report_runs')
    op.drop_table('report_runs')
