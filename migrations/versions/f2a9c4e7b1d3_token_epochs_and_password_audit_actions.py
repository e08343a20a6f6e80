"""token epochs and password audit actions

A user's token epoch (table token_epochs, absent meaning 0) moves with every password
change, deactivation or deletion of the user; an access or refresh token carrying an older
epoch is refused (app/tokens.py). The audit log gains PASSWORD_CHANGED and PASSWORD_RESET:
the CHECK constraint of its action column is rebuilt with them.

Revision ID: f2a9c4e7b1d3
Revises: f1a2b3c4d5e6
Create Date: 2026-11-25 09:00:00

"""
from alembic import op
import sqlalchemy as sa

import models.base


# revision identifiers, used by Alembic.
revision = 'f2a9c4e7b1d3'
down_revision = 'f1a2b3c4d5e6'
branch_labels = None
depends_on = None

ACTIONS = ('CREATE', 'UPDATE', 'DELETE', 'LOGIN', 'LOGOUT', 'LOGIN_FAILED', 'APPROVE', 'REJECT', 'RECALL')
PASSWORD_ACTIONS = ('PASSWORD_CHANGED', 'PASSWORD_RESET')


def _action_type(values):
    return sa.Enum(*values, name='audit_action', native_enum=False, create_constraint=True, length=32)


def _set_actions(old, new):
    """Rebuild the CHECK constraint of audit_logs.action to allow `new`."""
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite cannot alter a constraint: batch mode copies the table with the new one.
        with op.batch_alter_table('audit_logs', recreate='always') as batch_op:
            batch_op.alter_column('action', existing_type=_action_type(old), type_=_action_type(new), existing_nullable=False)
    else:
        op.drop_constraint('audit_action', 'audit_logs', type_='check')
        op.create_check_constraint('audit_action', 'audit_logs', sa.column('action').in_(new))


def upgrade():
    op.create_table('token_epochs',
    sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('epoch', sa.Integer(), server_default='0', nullable=False),
    sa.Column('changed_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id')
    )
    _set_actions(ACTIONS, ACTIONS + PASSWORD_ACTIONS)


def downgrade():
    op.execute(sa.text("DELETE FROM audit_logs WHERE action IN ('PASSWORD_CHANGED', 'PASSWORD_RESET')"))
    _set_actions(ACTIONS + PASSWORD_ACTIONS, ACTIONS)
    op.drop_table('token_epochs')
