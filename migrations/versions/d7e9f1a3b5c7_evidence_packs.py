"""evidence_packs: each build of an approval request's evidence pack with its files' SHA-256

Revision ID: d7e9f1a3b5c7
Revises: d7a3b5c9e2f4
Create Date: 2026-12-01 17:05:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'd7e9f1a3b5c7'
down_revision = 'd7a3b5c9e2f4'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'evidence_packs',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('approval_request_id', sa.String(length=36), nullable=False),
        sa.Column('trigger', sa.String(length=20), nullable=False),
        sa.Column('request_status', sa.String(length=20), nullable=False),
        sa.Column('json_sha256', sa.String(length=64), nullable=False),
        sa.Column('pdf_sha256', sa.String(length=64), nullable=False),
        sa.Column('json_key', sa.String(length=300), nullable=False),
        sa.Column('pdf_key', sa.String(length=300), nullable=False),
        sa.Column('json_size', sa.Integer(), nullable=False),
        sa.Column('pdf_size', sa.Integer(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['approval_request_id'], ['approval_requests.id']),
        sa.ForeignKeyConstraint(['created_by_id'], ['ab_user.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_evidence_packs_approval_request_id', 'evidence_packs', ['approval_request_id'])


def downgrade():
    op.drop_index('ix_evidence_packs_approval_request_id', table_name='evidence_packs')
    op.drop_table('evidence_packs')
