"""attachments: files on customers, meetings and approval requests

The bytes live in the file storage (app/storage.py: instance/ or S3); a row holds the
owner, the name, the type found in the content, the size, the SHA-256, the storage key,
who uploaded it and when, and its soft deletion.

Revision ID: c8f4a2d6e1b9
Revises: e9c2a4b6d8f1
Create Date: 2026-12-01 16:40:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'c8f4a2d6e1b9'
down_revision = 'e9c2a4b6d8f1'
branch_labels = None
depends_on = None

OWNER_TYPES = ('customer', 'meeting', 'approval_request')


def upgrade():
    op.create_table(
        'attachments',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('owner_type', sa.Enum(*OWNER_TYPES, name='attachment_owner_type', native_enum=False,
                                        create_constraint=True, length=32), nullable=False),
        sa.Column('owner_id', sa.String(length=36), nullable=False),
        sa.Column('customer_id', sa.String(length=36), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('content_type', sa.String(length=100), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('storage_key', sa.String(length=300), nullable=False),
        sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
        sa.Column('uploaded_at', UTCDateTime(), nullable=False),
        sa.Column('deleted_at', UTCDateTime(), nullable=True),
        sa.Column('deleted_by_id', sa.Integer(), nullable=True),
        sa.CheckConstraint('size_bytes >= 0', name='ck_attachments_size'),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.ForeignKeyConstraint(['uploaded_by_id'], ['ab_user.id']),
        sa.ForeignKeyConstraint(['deleted_by_id'], ['ab_user.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('storage_key'),
    )
    op.create_index('ix_attachments_owner', 'attachments', ['owner_type', 'owner_id', 'uploaded_at'])
    op.create_index('ix_attachments_customer_id', 'attachments', ['customer_id'])
    op.create_index('ix_attachments_uploaded_by_id', 'attachments', ['uploaded_by_id'])


def downgrade():
    op.drop_index('ix_attachments_uploaded_by_id', table_name='attachments')
    op.drop_index('ix_attachments_customer_id', table_name='attachments')
    op.drop_index('ix_attachments_owner', table_name='attachments')
    op.drop_table('attachments')
