"""partial index for open tasks by due date

Revision ID: 1fd6233155db
Revises: 2884578bd01d
Create Date: 2026-11-23 00:48:35.051327

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = '1fd6233155db'
down_revision = '2884578bd01d'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_open_due', ['due_date'], unique=False, postgresql_where=sa.text("status IN ('TODO', 'IN_PROGRESS')"), sqlite_where=sa.text("status IN ('TODO', 'IN_PROGRESS')"))



def downgrade():
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_open_due', postgresql_where=sa.text("status IN ('TODO', 'IN_PROGRESS')"), sqlite_where=sa.text("status IN ('TODO', 'IN_PROGRESS')"))

