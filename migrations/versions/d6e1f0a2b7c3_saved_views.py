"""saved_views: a user's named filters and sort of a list screen

One row per (user, screen, name); deleted with its user.

Revision ID: d6e1f0a2b7c3
Revises: a9e3c7d1f5b2
Create Date: 2026-12-01 13:40:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'd6e1f0a2b7c3'
down_revision = 'a9e3c7d1f5b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'saved_views',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('screen', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('query', sa.String(length=2000), server_default='', nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('user_id', 'screen', 'name', name='uq_saved_views_user_screen_name'),
    )


def downgrade():
    op.drop_table('saved_views')
