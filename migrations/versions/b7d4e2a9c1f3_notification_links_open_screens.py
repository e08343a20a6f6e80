"""notification links open screens

Notifications stored before the links moved point at /api answers (JSON): each such link
becomes its screen's (`/api/approvals/<id>` -> `/approvalrequestview/show/<id>`, tasks,
meetings, customers alike). Data only; the downgrade writes the /api links back.

Revision ID: b7d4e2a9c1f3
Revises: f2a9c4e7b1d3
Create Date: 2026-12-01 13:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b7d4e2a9c1f3'
down_revision = 'f2a9c4e7b1d3'
branch_labels = None
depends_on = None

# The /api answer and the screen of the same record (app/links.py LEGACY_PREFIXES, frozen here).
MOVES = (
    ('/api/approvals/', '/approvalrequestview/show/'),
    ('/api/tasks/', '/taskview/show/'),
    ('/api/meetings/', '/meetingview/show/'),
    ('/api/customers/', '/customerview/show/'),
)


def _move(old, new):
    """Rewrite every stored link that starts with `old` to start with `new` (same id after it)."""
    op.execute(
        sa.text(
            "UPDATE notifications SET link = :new || substr(link, :skip) "
            "WHERE substr(link, 1, :length) = :old"
        ).bindparams(new=new, old=old, skip=len(old) + 1, length=len(old))
    )


def upgrade():
    for old, new in MOVES:
        _move(old, new)


def downgrade():
    for old, new in MOVES:
        _move(new, old)
