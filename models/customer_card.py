"""CustomerCard: one version of a customer's card (顧客カード); every change is a new row."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, UTCDateTime, enum_column, id_column, utcnow
from models.product import InvestmentPurpose


class InvestmentHorizon(StrEnum):
    """How long the customer means to stay invested."""

    short = "short"  # under 1 year
    medium = "medium"  # 1 to 5 years
    long = "long"  # over 5 years


class IncomeBand(StrEnum):
    """Yearly income, JPY."""

    under_3m = "under_3m"
    from_3m_to_5m = "3m_5m"
    from_5m_to_10m = "5m_10m"
    from_10m_to_20m = "10m_20m"
    over_20m = "over_20m"


class AssetsBand(StrEnum):
    """Financial assets, JPY."""

    under_5m = "under_5m"
    from_5m_to_10m = "5m_10m"
    from_10m_to_30m = "10m_30m"
    from_30m_to_100m = "30m_100m"
    over_100m = "over_100m"


class CustomerCard(Model):
    """A version of a customer card: what the rep learnt, who changed it, when and why."""

    __tablename__ = "customer_cards"
    __audit_resource__ = "customer_card"
    # Scope follows the customer (app/services/cards.py reads cards through their customer).

    id = id_column()
    customer_id = sa.Column(sa.String(36), sa.ForeignKey("customers.id"), nullable=False)
    version = sa.Column(sa.Integer, nullable=False)
    date_of_birth = sa.Column(sa.Date, nullable=True)
    occupation = sa.Column(sa.String(100), nullable=True)
    investment_purpose = enum_column(InvestmentPurpose, "investment_purpose", nullable=True)
    investment_horizon = enum_column(InvestmentHorizon, "investment_horizon", nullable=True)
    income_band = enum_column(IncomeBand, "income_band", nullable=True)
    financial_assets_band = enum_column(AssetsBand, "financial_assets_band", nullable=True)
    source_of_funds = sa.Column(sa.String(200), nullable=True)
    # {product type: {"years": int, "frequency": none|yearly|quarterly|monthly|weekly}}; {} = no experience.
    experience = sa.Column(sa.JSON, nullable=True)
    risk_tolerance = sa.Column(sa.Integer, nullable=True)
    reviewed_at = sa.Column(UTCDateTime, nullable=True)
    reviewed_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True)
    changed_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True)
    changed_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    change_reason = sa.Column(sa.String(500), nullable=False)

    customer = relationship("Customer")
    reviewed_by = relationship("User", foreign_keys=[reviewed_by_id])
    changed_by = relationship("User", foreign_keys=[changed_by_id])

    __table_args__ = (
        sa.UniqueConstraint("customer_id", "version", name="uq_customer_cards_customer_version"),
        sa.CheckConstraint("version >= 1", name="ck_customer_cards_version"),
        sa.CheckConstraint("risk_tolerance IS NULL OR risk_tolerance BETWEEN 1 AND 10", name="ck_customer_cards_risk_tolerance"),
    )

    def __repr__(self):
        return f"card v{self.version}"
