"""trigram index on customer phone

Customer search is name OR email OR phone ILIKE '%q%'; with a trigram index on only two of
the three columns PostgreSQL cannot combine index scans and reads the whole table.

Revision ID: 5b7e2c1d9a40
Revises: 1fd6233155db
Create Date: 2026-11-23 03:10:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '5b7e2c1d9a40'
down_revision = '1fd6233155db'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.create_index('ix_customers_phone_trgm', 'customers', ['phone'], unique=False,
                        postgresql_using='gin', postgresql_ops={'phone': 'gin_trgm_ops'})


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index('ix_customers_phone_trgm', table_name='customers')
