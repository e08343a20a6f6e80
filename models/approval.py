"""ApprovalRequest and ApprovalStep: a product sale waiting for managers and compliance."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, TimestampMixin, UTCDateTime, enum_column, id_column, utcnow


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    RECALLED = "RECALLED"


class StepDecision(StrEnum):
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


class ApprovalRequest(TimestampMixin, Model):
    """A request to sell a product to a customer (the seed's "opportunity")."""

    __tablename__ = "approval_requests"
    __scope_owner_columns__ = ("requester_id",)
    __audit_resource__ = "approval_request"

    id = id_column()
    requester_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=False, index=True)
    customer_id = sa.Column(sa.String(36), sa.ForeignKey("customers.id"), nullable=False, index=True)
    product_name = sa.Column(sa.String(200), nullable=False)
    product_risk = sa.Column(sa.Integer, nullable=True)
    amount = sa.Column(sa.Numeric(18, 2), nullable=False)
    comment = sa.Column(sa.Text)
    status = enum_column(
        ApprovalStatus, "approval_status", nullable=False, default=ApprovalStatus.PENDING, index=True
    )
    approver_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    requested_at = sa.Column(UTCDateTime, nullable=False, default=utcnow, index=True)
    processed_at = sa.Column(UTCDateTime, nullable=True)
    # Why a compliance step was added (JSON list of reason codes), shown to approvers.
    compliance_reasons = sa.Column(sa.JSON, nullable=True)
    # The product picked from the master (null on requests from before the master).
    product_id = sa.Column(sa.String(36), sa.ForeignKey("products.id"), nullable=True, index=True)
    # The card version, product attributes, age and reasons frozen at submit (app/services/cards.py).
    suitability_snapshot = sa.Column(sa.JSON, nullable=True)
    # Elderly customers (80+): the first business day the approved order may be executed.
    executable_from = sa.Column(sa.Date, nullable=True)

    requester = relationship("User", foreign_keys=[requester_id], lazy="joined")
    approver = relationship("User", foreign_keys=[approver_id])
    customer = relationship("Customer", lazy="joined", backref="approval_requests")
    product = relationship("Product")
    steps = relationship(
        "ApprovalStep",
        back_populates="approval_request",
        order_by="ApprovalStep.sequence",
        cascade="all, delete-orphan",
    )

    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="ck_approval_requests_amount_positive"),
        sa.CheckConstraint(
            "product_risk IS NULL OR product_risk BETWEEN 1 AND 10",
            name="ck_approval_requests_product_risk",
        ),
        # Queues and dashboards: pending requests oldest first; a rep's own requests newest first.
        sa.Index("ix_approval_requests_status_requested", "status", "requested_at"),
        sa.Index("ix_approval_requests_requester_requested", "requester_id", "requested_at"),
        # Home pages: amounts approved since the start of the month, per rep (index-only, one month's rows).
        sa.Index(
            "ix_approval_requests_approved_processed",
            "processed_at",
            postgresql_include=["requester_id", "amount"],
            postgresql_where=sa.text("status = 'APPROVED'"),
            sqlite_where=sa.text("status = 'APPROVED'"),
        ),
    )

    def __repr__(self):
        return f"{self.product_name} ({self.status})"


class ApprovalStep(Model):
    """One decision in an approval request's history."""

    __tablename__ = "approval_steps"
    __audit_resource__ = "approval_step"

    id = id_column()
    approval_request_id = sa.Column(
        sa.String(36), sa.ForeignKey("approval_requests.id", ondelete="CASCADE"), nullable=False, index=True
    )
    sequence = sa.Column(sa.Integer, nullable=False)
    required_role = sa.Column(sa.String(64), nullable=False)
    # What the step is for: null for the usual decision, SUPERVISOR_PREAPPROVAL for the elderly rule.
    kind = sa.Column(sa.String(32), nullable=True)
    decided_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    decision = enum_column(StepDecision, "step_decision", nullable=True)
    comment = sa.Column(sa.Text)
    decided_at = sa.Column(UTCDateTime, nullable=True)

    approval_request = relationship("ApprovalRequest", back_populates="steps")
    decided_by = relationship("User", foreign_keys=[decided_by_id], lazy="joined")

    __table_args__ = (
        sa.UniqueConstraint("approval_request_id", "sequence", name="uq_approval_steps_request_sequence"),
        sa.CheckConstraint("sequence >= 1", name="ck_approval_steps_sequence"),
    )

    def __repr__(self):
        return f"#{self.sequence} {self.required_role}: {self.decision or 'PENDING'}"
