"""Product: the product master (商品マスタ) a request picks, with what suitability needs to know."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import relationship

from models.base import StrEnum, TimestampMixin, enum_column, id_column


class ProductType(StrEnum):
    """Kinds of product; a customer card records experience per kind."""

    stocks = "stocks"
    bonds = "bonds"
    investment_trusts = "investment_trusts"
    structured_bonds = "structured_bonds"
    derivatives = "derivatives"
    fx = "fx"
    other = "other"


class InvestmentPurpose(StrEnum):
    """What the customer invests for (顧客カード: 投資目的); a product lists the purposes it suits."""

    capital_preservation = "capital_preservation"
    income = "income"
    growth = "growth"
    speculation = "speculation"


class ProductOrigin(StrEnum):
    """Where a product row came from: curated in the master, or made from a request's free-text name."""

    master = "master"
    request = "request"


class Product(TimestampMixin, Model):
    """A financial product with its risk rating (1-10, the scale of productRisk and riskTolerance)."""

    __tablename__ = "products"
    __audit_resource__ = "product"

    id = id_column()
    code = sa.Column(sa.String(40), nullable=False, unique=True)
    name = sa.Column(sa.String(200), nullable=False, index=True)
    # Null only for a product made from a request that named no productRisk.
    risk_rating = sa.Column(sa.Integer, nullable=True)
    product_type = enum_column(ProductType, "product_type", nullable=False, default=ProductType.other)
    complex = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    principal_protected = sa.Column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    # {product type: years}: the customer's experience each needs (empty: none needed).
    min_experience_years = sa.Column(sa.JSON, nullable=False, default=dict)
    # Purposes the product suits (empty: any).
    suitable_purposes = sa.Column(sa.JSON, nullable=False, default=list)
    origin = enum_column(ProductOrigin, "product_origin", nullable=False, default=ProductOrigin.master)
    active = sa.Column(sa.Boolean, nullable=False, default=True, server_default=sa.true())
    created_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True)

    created_by = relationship("User", foreign_keys=[created_by_id])

    __table_args__ = (
        sa.CheckConstraint("risk_rating IS NULL OR risk_rating BETWEEN 1 AND 10", name="ck_products_risk_rating"),
    )

    def __repr__(self):
        return f"{self.name} [{self.code}]"
