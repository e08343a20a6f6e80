"""trigram indexes on meeting and task titles

The navbar search (app/services/search.py) matches meeting and task titles anywhere
(ILIKE '%q%'); without an index a search by a role that sees every row reads the whole
tasks table. GIN trigram indexes without the pending list, as for the customers' search.

Revision ID: e9c2a4b6d8f1
Revises: d6e1f0a2b7c3
Create Date: 2026-12-01 14:25:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e9c2a4b6d8f1'
down_revision = 'd6e1f0a2b7c3'
branch_labels = None
depends_on = None

INDEXES = (("ix_meetings_title_trgm", "meetings"), ("ix_tasks_title_trgm", "tasks"))


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name, table in INDEXES:
            op.create_index(name, table, ["title"], unique=False, postgresql_using="gin",
                            postgresql_ops={"title": "gin_trgm_ops"}, postgresql_with={"fastupdate": "off"})


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for name, table in INDEXES:
            op.drop_index(name, table_name=table)
