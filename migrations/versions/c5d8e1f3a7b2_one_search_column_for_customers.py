"""one search column for customers

Customer search was name OR email OR phone ILIKE '%q%': three trigram indexes to combine,
and where PostgreSQL scans instead (its choice for the capped total at 1M customers), three
ILIKEs per row, each lowering its column and the pattern again. search_text holds
lower(name, email, phone) joined by a newline, kept by the database: one trigram index and
one case-sensitive LIKE per row. The search statement for a word in 1 customer of 16 took
51 ms with the three ILIKEs and 10.3 ms with the one LIKE at 1M customers, 6.4 and 4.1 ms
at 100k (`python -m bench.search_ab`; bench/README.md, series L). The phone trigram index
served only that OR; name and email keep theirs for the screens' "contains" filters.

PostgreSQL stores the column (it has no virtual ones before 18); SQLite cannot add a stored
column to an existing table, so there it is virtual (computed when read; no index there).
Adding a stored column rewrites the table under an exclusive lock: `crm init` took 85 s on
1M customers here, during which customers can be neither read nor written.

Revision ID: c5d8e1f3a7b2
Revises: b3f1e6a2c9d4
Create Date: 2026-11-23 23:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'c5d8e1f3a7b2'
down_revision = 'b3f1e6a2c9d4'
branch_labels = None
depends_on = None

# models/customer.py SEARCH_TEXT_SQL as of this revision (a migration keeps its own copy).
SEARCH_TEXT_SQL = "lower(name || '\n' || coalesce(email, '') || '\n' || coalesce(phone, ''))"


def upgrade():
    # persisted=None: STORED on PostgreSQL (its only kind), VIRTUAL on SQLite (its only kind for ADD COLUMN).
    op.add_column('customers', sa.Column('search_text', sa.Text(), sa.Computed(SEARCH_TEXT_SQL), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.create_index('ix_customers_search_trgm', 'customers', ['search_text'], unique=False, postgresql_using='gin',
                        postgresql_ops={'search_text': 'gin_trgm_ops'}, postgresql_with={'fastupdate': 'off'})
        op.drop_index('ix_customers_phone_trgm', table_name='customers')


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.create_index('ix_customers_phone_trgm', 'customers', ['phone'], unique=False, postgresql_using='gin',
                        postgresql_ops={'phone': 'gin_trgm_ops'}, postgresql_with={'fastupdate': 'off'})
        op.drop_index('ix_customers_search_trgm', table_name='customers')
    op.drop_column('customers', 'search_text')
