"""customer cards (versioned), the product master, and what a request freezes at submit

customer_cards: one row per version of a customer's card (顧客カード). products: the
product master a request picks. approval_requests gains product_id, the JSON snapshot
of the card and product taken at submit, and executable_from (elderly customers);
approval_steps gains kind (the elderly-customer supervisor pre-approval). Every new
column is nullable without a default: no table rewrite of the existing tables.

Revision ID: c4d2e8f1a6b9
Revises: c8f2d4a6e1b9
Create Date: 2026-12-01 16:40:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'c4d2e8f1a6b9'
down_revision = 'c8f2d4a6e1b9'
branch_labels = None
depends_on = None


def _enum(name, values):
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def upgrade():
    op.create_table(
        'products',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('code', sa.String(length=40), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('risk_rating', sa.Integer(), nullable=True),
        sa.Column('product_type', _enum('product_type', ['stocks', 'bonds', 'investment_trusts', 'structured_bonds', 'derivatives', 'fx', 'other']), nullable=False),
        sa.Column('complex', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('principal_protected', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('min_experience_years', sa.JSON(), nullable=False),
        sa.Column('suitable_purposes', sa.JSON(), nullable=False),
        sa.Column('origin', _enum('product_origin', ['master', 'request']), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.CheckConstraint('risk_rating IS NULL OR risk_rating BETWEEN 1 AND 10', name='ck_products_risk_rating'),
        sa.ForeignKeyConstraint(['created_by_id'], ['ab_user.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code'),
    )
    op.create_index('ix_products_name', 'products', ['name'])
    op.create_table(
        'customer_cards',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('customer_id', sa.String(length=36), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('date_of_birth', sa.Date(), nullable=True),
        sa.Column('occupation', sa.String(length=100), nullable=True),
        sa.Column('investment_purpose', _enum('investment_purpose', ['capital_preservation', 'income', 'growth', 'speculation']), nullable=True),
        sa.Column('investment_horizon', _enum('investment_horizon', ['short', 'medium', 'long']), nullable=True),
        sa.Column('income_band', _enum('income_band', ['under_3m', '3m_5m', '5m_10m', '10m_20m', 'over_20m']), nullable=True),
        sa.Column('financial_assets_band', _enum('financial_assets_band', ['under_5m', '5m_10m', '10m_30m', '30m_100m', 'over_100m']), nullable=True),
        sa.Column('source_of_funds', sa.String(length=200), nullable=True),
        sa.Column('experience', sa.JSON(), nullable=True),
        sa.Column('risk_tolerance', sa.Integer(), nullable=True),
        sa.Column('reviewed_at', UTCDateTime(), nullable=True),
        sa.Column('reviewed_by_id', sa.Integer(), nullable=True),
        sa.Column('changed_by_id', sa.Integer(), nullable=True),
        sa.Column('changed_at', UTCDateTime(), nullable=False),
        sa.Column('change_reason', sa.String(length=500), nullable=False),
        sa.CheckConstraint('version >= 1', name='ck_customer_cards_version'),
        sa.CheckConstraint('risk_tolerance IS NULL OR risk_tolerance BETWEEN 1 AND 10', name='ck_customer_cards_risk_tolerance'),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id']),
        sa.ForeignKeyConstraint(['reviewed_by_id'], ['ab_user.id']),
        sa.ForeignKeyConstraint(['changed_by_id'], ['ab_user.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('customer_id', 'version', name='uq_customer_cards_customer_version'),
    )
    with op.batch_alter_table('approval_requests') as batch_op:
        batch_op.add_column(sa.Column('product_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('suitability_snapshot', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('executable_from', sa.Date(), nullable=True))
        batch_op.create_index('ix_approval_requests_product_id', ['product_id'])
        batch_op.create_foreign_key('fk_approval_requests_product_id', 'products', ['product_id'], ['id'])
    op.add_column('approval_steps', sa.Column('kind', sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table('approval_steps') as batch_op:
        batch_op.drop_column('kind')
    with op.batch_alter_table('approval_requests') as batch_op:
        batch_op.drop_constraint('fk_approval_requests_product_id', type_='foreignkey')
        batch_op.drop_index('ix_approval_requests_product_id')
        batch_op.drop_column('executable_from')
        batch_op.drop_column('suitability_snapshot')
        batch_op.drop_column('product_id')
    op.drop_table('customer_cards')
    op.drop_index('ix_products_name', table_name='products')
    op.drop_table('products')
