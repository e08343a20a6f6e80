"""audit hash chain and append-only trigger

Every audit row gets its place in one hash chain (`seq`, `prev_hash`, `row_hash`) and the
chain's head a state row (`audit_chain`); the rows already there are linked now, oldest
first, by the same sealer the application runs (app/audit_chain.py).

PostgreSQL: a trigger refuses UPDATE, DELETE and TRUNCATE of audit_logs, except the
sealer's one-time link (position and hashes set on a row that had none, nothing else
changed) and a transaction that ran `SET LOCAL crm.audit_retention = 'on'` (the retention
job's archive-and-delete). SQLite has no such trigger (the embedded default: one process,
one file; the chain still shows any edit).

Revision ID: 3c1d5e7f9a2b
Revises: c3d5e7f9a1b2
Create Date: 2026-12-01 16:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3c1d5e7f9a2b'
down_revision = 'c3d5e7f9a1b2'
branch_labels = None
depends_on = None

GUARD = """
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('crm.audit_retention', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NULL AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.row_hash IS NOT NULL
           AND ROW(NEW.id, NEW.user_id, NEW.action, NEW.resource_type, NEW.resource_id, NEW.changes::text,
                   NEW.ip_address, NEW.timestamp)
               IS NOT DISTINCT FROM
               ROW(OLD.id, OLD.user_id, OLD.action, OLD.resource_type, OLD.resource_id, OLD.changes::text,
                   OLD.ip_address, OLD.timestamp) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_logs is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only the audit retention job removes rows (crm audit retain)';
END
$$;
"""


def upgrade():
    with op.batch_alter_table('audit_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('row_hash', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_audit_logs_seq', ['seq'], unique=True)
        batch_op.create_index('ix_audit_logs_unsealed', ['timestamp', 'id'], unique=False,
                              postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))
    op.create_table(
        'audit_chain',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('last_seq', sa.BigInteger(), server_default='0', nullable=False),
        sa.Column('last_hash', sa.String(length=64), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    from app.audit_chain import seal_batch

    conn = op.get_bind()
    while seal_batch(conn, limit=5000):
        pass
    if conn.dialect.name == 'postgresql':
        op.execute(GUARD)
        op.execute("CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs "
                   "FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only()")
        op.execute("CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_append_only()")


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_logs_no_truncate ON audit_logs")
        op.execute("DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs")
        op.execute("DROP FUNCTION IF EXISTS audit_logs_append_only()")
    op.drop_table('audit_chain')
    with op.batch_alter_table('audit_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_logs_unsealed', postgresql_where=sa.text('seq IS NULL'),
                            sqlite_where=sa.text('seq IS NULL'))
        batch_op.drop_index('ix_audit_logs_seq')
        batch_op.drop_column('row_hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')
