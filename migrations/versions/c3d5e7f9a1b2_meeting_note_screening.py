"""screening_rules and meeting_flags: prohibited-phrase screening of meeting notes

The rules start with the phrases of FIEA Art. 38 (1)-(2) and Art. 39 that a sales note
must not carry (docs/compliance.md); Compliance edits them on its screen.

Revision ID: c3d5e7f9a1b2
Revises: c8f4a2d6e1b9
Create Date: 2026-12-01 16:40:00

"""
from alembic import op
import sqlalchemy as sa

from models.base import UTCDateTime

# revision identifiers, used by Alembic.
revision = 'c3d5e7f9a1b2'
down_revision = 'c8f4a2d6e1b9'
branch_labels = None
depends_on = None

ASSERTIVE = "断定的判断の提供 (金融商品取引法 第38条第2号): 不確実な事項について断定的判断を提供してはならない"
RULES = [
    ("必ず(儲|もう)か", "regex", ASSERTIVE),  # 儲かる, 儲かります, もうかりますよ
    ("絶対に", "literal", ASSERTIVE + " (「絶対に」は断定の表現になりやすい)"),
    ("確実に(儲|もう|上が|あが|値上が|増え|ふえ)", "regex", ASSERTIVE),
    ("損(は|を)?(させ|し)ません", "regex", ASSERTIVE),
    ("元本保証", "literal",
     "虚偽の告知 (金融商品取引法 第38条第1号): 「元本保証」と言えるのは元本が保証された商品だけ。商品を確かめて解除すること"),
    ("損失(を)?(補填|補塡|補てん)", "regex", "損失補塡の約束 (金融商品取引法 第39条) は禁止"),
]


def upgrade():
    rules = op.create_table(
        'screening_rules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('phrase', sa.String(length=200), nullable=False),
        sa.Column('match', sa.Enum('literal', 'regex', name='screening_match', native_enum=False, create_constraint=True, length=32),
                  server_default='literal', nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'meeting_flags',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('meeting_id', sa.String(length=36), nullable=False),
        sa.Column('rule_id', sa.Integer(), nullable=True),
        sa.Column('sales_id', sa.Integer(), nullable=True),
        sa.Column('phrase', sa.String(length=200), nullable=False),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('field', sa.String(length=40), nullable=False),
        sa.Column('matched', sa.String(length=200), nullable=False),
        sa.Column('excerpt', sa.Text(), nullable=False),
        sa.Column('start', sa.Integer(), nullable=False),
        sa.Column('sentence_hash', sa.String(length=64), nullable=False),
        sa.Column('status', sa.Enum('open', 'cleared', 'escalated', name='meeting_flag_status', native_enum=False,
                                    create_constraint=True, length=32), server_default='open', nullable=False),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', UTCDateTime(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['meeting_id'], ['meetings.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['rule_id'], ['screening_rules.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['sales_id'], ['ab_user.id']),
        sa.ForeignKeyConstraint(['decided_by_id'], ['ab_user.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('meeting_id', 'rule_id', 'field', 'sentence_hash', name='uq_meeting_flags_match'),
    )
    op.create_index('ix_meeting_flags_meeting_id', 'meeting_flags', ['meeting_id'])
    op.create_index('ix_meeting_flags_sales_id', 'meeting_flags', ['sales_id'])
    op.create_index('ix_meeting_flags_status_created', 'meeting_flags', ['status', 'created_at'])
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    op.bulk_insert(rules, [{"phrase": p, "match": m, "reason": r, "active": True, "created_at": now} for p, m, r in RULES])


def downgrade():
    op.drop_index('ix_meeting_flags_status_created', table_name='meeting_flags')
    op.drop_index('ix_meeting_flags_sales_id', table_name='meeting_flags')
    op.drop_index('ix_meeting_flags_meeting_id', table_name='meeting_flags')
    op.drop_table('meeting_flags')
    op.drop_table('screening_rules')
