"""Meeting-note screening (断定的判断の提供の防止): phrase rules and the flags they raise."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, UTCDateTime, enum_column, id_column, utcnow


class MatchKind(StrEnum):
    """How a rule's phrase is looked for in a note (after NFKC and whitespace folding)."""

    literal = "literal"
    regex = "regex"


class FlagStatus(StrEnum):
    """Where a flag stands in the Compliance queue."""

    open = "open"
    cleared = "cleared"  # reviewed: nothing to act on
    escalated = "escalated"  # reviewed: handed on for action


class ScreeningRule(Model):
    """A phrase that must not appear in a meeting note, with why (shown to the reviewer)."""

    __tablename__ = "screening_rules"
    __audit_resource__ = "screening_rule"

    id = sa.Column(sa.Integer, primary_key=True)
    phrase = sa.Column(sa.String(200), nullable=False)
    match = enum_column(MatchKind, "screening_match", nullable=False, default=MatchKind.literal,
                        server_default=MatchKind.literal.value)
    reason = sa.Column(sa.String(500), nullable=False)
    # True of a statement that is true of a principal-protected product (「元本保証」): a note on a
    # meeting about such a product is not flagged by this rule.
    except_principal_protected = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    active = sa.Column(sa.Boolean, nullable=False, default=True, server_default=sa.true())
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)

    def __repr__(self):
        return self.phrase or str(self.id)


class MeetingFlag(Model):
    """One rule's match in one field of a meeting's note, and the Compliance decision on it."""

    __tablename__ = "meeting_flags"
    __audit_resource__ = "meeting_flag"
    # The meeting's rep: Sales may read the flags of their own meetings (app/scope.py).
    __scope_owner_columns__ = ("sales_id",)

    id = id_column()
    meeting_id = sa.Column(sa.String(36), sa.ForeignKey("meetings.id", ondelete="CASCADE"), nullable=False, index=True)
    rule_id = sa.Column(sa.Integer, sa.ForeignKey("screening_rules.id", ondelete="SET NULL"), nullable=True)
    sales_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    phrase = sa.Column(sa.String(200), nullable=False)
    reason = sa.Column(sa.String(500), nullable=False)
    field = sa.Column(sa.String(40), nullable=False)
    matched = sa.Column(sa.String(200), nullable=False)  # the text as written in the note
    excerpt = sa.Column(sa.Text, nullable=False)  # the note as it was when flagged
    start = sa.Column(sa.Integer, nullable=False)  # where `matched` begins in `excerpt`
    # The sentence holding the match: the same phrase in a new sentence is a new flag.
    sentence_hash = sa.Column(sa.String(64), nullable=False)
    status = enum_column(FlagStatus, "meeting_flag_status", nullable=False, default=FlagStatus.open,
                         server_default=FlagStatus.open.value)
    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    decided_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True)
    decided_at = sa.Column(UTCDateTime, nullable=True)
    comment = sa.Column(sa.Text)

    meeting = relationship("Meeting", lazy="joined", backref="flags")
    rule = relationship("ScreeningRule")
    decided_by = relationship("User", foreign_keys=[decided_by_id])

    __table_args__ = (
        # The queue: open flags, oldest first.
        sa.Index("ix_meeting_flags_status_created", "status", "created_at"),
        # One flag per rule, field and sentence: saving the note again adds none.
        sa.UniqueConstraint("meeting_id", "rule_id", "field", "sentence_hash", name="uq_meeting_flags_match"),
    )

    def __repr__(self):
        return self.phrase or self.id
