"""api keys for service clients

Table api_keys (app/api_keys.py: the SHA-256 of each key's secret, its role, scope, expiry,
revocation and rotation), and the audit action API_KEY_USED: the CHECK constraint of
audit_logs.action is rebuilt with it.

Revision ID: d7a3b5c9e2f4
Revises: c4d2e8f1a6b9
Create Date: 2026-12-01 16:40:00

"""
from alembic import op
import sqlalchemy as sa

import models.base


# revision identifiers, used by Alembic.
revision = 'd7a3b5c9e2f4'
down_revision = 'c4d2e8f1a6b9'
branch_labels = None
depends_on = None

ACTIONS = ('CREATE', 'UPDATE', 'DELETE', 'LOGIN', 'LOGOUT', 'LOGIN_FAILED', 'APPROVE', 'REJECT', 'RECALL',
           'PASSWORD_CHANGED', 'PASSWORD_RESET')
KEY_ACTIONS = ('API_KEY_USED',)


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
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.Enum('read-only', 'read-write', name='api_key_scope', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('expires_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', models.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rotated_from_id', sa.String(length=36), nullable=True),
    sa.Column('last_used_at', models.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['ab_user.id'], ),
    sa.ForeignKeyConstraint(['created_by_id'], ['ab_user.id'], ),
    sa.ForeignKeyConstraint(['rotated_from_id'], ['api_keys.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_id')
    )
    op.create_index(op.f('ix_api_keys_user_id'), 'api_keys', ['user_id'], unique=False)
    _set_actions(ACTIONS, ACTIONS + KEY_ACTIONS)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # The append-only trigger lets only the retention path remove audit rows.
        op.execute(sa.text("SET LOCAL crm.audit_retention = 'on'"))
    op.execute(sa.text("DELETE FROM audit_logs WHERE action IN ('API_KEY_USED')"))
    _set_actions(ACTIONS + KEY_ACTIONS, ACTIONS)
    op.drop_index(op.f('ix_api_keys_user_id'), table_name='api_keys')
    op.drop_table('api_keys')
