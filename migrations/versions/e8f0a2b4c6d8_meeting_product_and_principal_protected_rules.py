"""meetings.product_id (the product discussed) and screening_rules.except_principal_protected

The seeded 「元本保証」 rule stops flagging notes of meetings about a principal-protected
product (FIEA Art. 38 (1): the statement is false only of a product that is not).

Revision ID: e8f0a2b4c6d8
Revises: d7e9f1a3b5c7
Create Date: 2026-12-01 17:45:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = 'e8f0a2b4c6d8'
down_revision = 'd7e9f1a3b5c7'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('meetings') as batch:
        batch.add_column(sa.Column('product_id', sa.String(length=36), nullable=True))
        batch.create_foreign_key('fk_meetings_product_id_products', 'products', ['product_id'], ['id'])
        batch.create_index('ix_meetings_product_id', ['product_id'])
    with op.batch_alter_table('screening_rules') as batch:
        batch.add_column(sa.Column('except_principal_protected', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.execute("UPDATE screening_rules SET except_principal_protected = true WHERE phrase = '元本保証'")


def downgrade():
    with op.batch_alter_table('screening_rules') as batch:
        batch.drop_column('except_principal_protected')
    with op.batch_alter_table('meetings') as batch:
        batch.drop_index('ix_meetings_product_id')
        batch.drop_constraint('fk_meetings_product_id_products', type_='foreignkey')
        batch.drop_column('product_id')
