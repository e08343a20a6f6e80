"""Customer: a client of the sales team (soft-deleted, never removed)."""

import sqlalchemy as sa
from flask_appbuilder import Model
from sqlalchemy.orm import deferred, relationship

from models.base import StrEnum, TimestampMixin, UTCDateTime, enum_column, id_column


class CompanySize(StrEnum):
    SMALL = "SMALL"
    MEDIUM = "MEDIUM"
    LARGE = "LARGE"
    ENTERPRISE = "ENTERPRISE"


class InvestmentProfile(StrEnum):
    conservative = "conservative"
    moderate = "moderate"
    aggressive = "aggressive"


# Between the fields of `search_text`. A search containing it could match across two fields,
# so such a search also checks the fields one by one (`search_clause`).
SEARCH_SEPARATOR = "\n"
# lower() of name, email and phone: the same function ILIKE applies to both sides (PostgreSQL
# with a multibyte encoding; SQLAlchemy's ilike on SQLite), so one LIKE on this equals the
# three ILIKEs. No dialect-specific spelling: the expression is the same DDL on both.
SEARCH_TEXT_SQL = f"lower(name || '{SEARCH_SEPARATOR}' || coalesce(email, '') || '{SEARCH_SEPARATOR}' || coalesce(phone, ''))"


class Customer(TimestampMixin, Model):
    """A customer (or lead) owned by one sales rep."""

    __tablename__ = "customers"
    # Columns that make a row "own" for a Sales user (see app/scope.py).
    __scope_owner_columns__ = ("assigned_sales_id", "created_by_id")
    __audit_resource__ = "customer"
    # Set from other columns at flush (app/services/suitability.py), not by the caller:
    # audit rows keep to what the caller changed.
    __audit_derived__ = ("suitability_changed_at",)
    # Nothing server-made to fetch back: an INSERT would otherwise return search_text, never read.
    __mapper_args__ = {"eager_defaults": False}

    id = id_column()
    name = sa.Column(sa.String(200), nullable=False)
    email = sa.Column(sa.String(254), nullable=True)
    phone = sa.Column(sa.String(50))
    address = sa.Column(sa.String(500))
    industry = sa.Column(sa.String(100), index=True)
    size = enum_column(CompanySize, "company_size", index=True)
    investment_profile = enum_column(InvestmentProfile, "investment_profile", index=True)
    risk_tolerance = sa.Column(sa.Integer, nullable=False, default=5, server_default="5")
    investment_experience = sa.Column(sa.String(500))
    assigned_sales_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    created_by_id = sa.Column(sa.Integer, sa.ForeignKey("ab_user.id"), nullable=True, index=True)
    deleted_at = sa.Column(UTCDateTime, nullable=True, index=True)
    # When a Sales user last changed risk_tolerance, investment_profile or investment_experience
    # (app/services/suitability.py): requests for this customer need Compliance for a while after.
    suitability_changed_at = sa.Column(UTCDateTime, nullable=True)
    # Kept by the database (STORED on PostgreSQL, VIRTUAL on SQLite, which cannot add a stored
    # column to a table): one trigram index and one LIKE per row instead of three of each.
    # Never loaded by the ORM: derived data, not part of answers, audit rows or events.
    search_text = deferred(sa.Column(sa.Text, sa.Computed(SEARCH_TEXT_SQL)), raiseload=True)

    assigned_sales = relationship("User", foreign_keys=[assigned_sales_id], lazy="joined")
    created_by = relationship("User", foreign_keys=[created_by_id])

    __table_args__ = (
        sa.CheckConstraint("risk_tolerance BETWEEN 1 AND 10", name="ck_customers_risk_tolerance"),
        # Email is unique among live rows only: a soft-deleted customer frees its address.
        sa.Index(
            "uq_customers_email_live",
            "email",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        ),
        # The dashboard counts one UTC day of new customers per Sales scope: owner columns and
        # deleted_at in the index keep that an index-only scan (app/services/dashboard.py).
        sa.Index(
            "ix_customers_created_at",
            "created_at",
            postgresql_include=["assigned_sales_id", "created_by_id", "deleted_at"],
        ),
        sa.Index("ix_customers_name", "name"),
        # Lists sort by updated_at (newest first) over live rows; id breaks ties for keyset cursors.
        sa.Index(
            "ix_customers_live_updated",
            "updated_at",
            "id",
            postgresql_where=sa.text("deleted_at IS NULL"),
            sqlite_where=sa.text("deleted_at IS NULL"),
        ),
        # A Sales user's scope is assigned_sales_id = me OR created_by_id = me: one index per arm.
        sa.Index("ix_customers_sales_updated", "assigned_sales_id", "updated_at"),
        sa.Index("ix_customers_creator_updated", "created_by_id", "updated_at"),
        # Search is a case-insensitive substring match (`search_clause`): a trigram index,
        # without GIN's pending list, which every search would read in full until VACUUM
        # (migration 7d2a9f4c1b8e). Name and email keep theirs for the screens' "contains" filters.
        sa.Index(
            "ix_customers_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
        sa.Index(
            "ix_customers_email_trgm", "email", postgresql_using="gin", postgresql_ops={"email": "gin_trgm_ops"},
            postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
        sa.Index(
            "ix_customers_search_trgm", "search_text", postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"}, postgresql_with={"fastupdate": "off"},
        ).ddl_if(dialect="postgresql"),
    )

    def __repr__(self):
        return self.name or self.id


def search_per_field(text):
    """Whether a search for `text` must compare name, email and phone one by one (see `search_clause`)."""
    return SEARCH_SEPARATOR in text


def search_clause(pattern, per_field=False):
    """Customers whose name, email or phone matches the LIKE `pattern` (a bind parameter), ignoring case.

    `per_field` (`search_per_field` of the raw search): a search containing the separator
    could match across two fields of search_text, so each field is checked too.
    """
    # lower() in SQL, not Python's: the database's own case mapping made search_text.
    anywhere = Customer.search_text.like(sa.func.lower(pattern), escape="\\")
    if not per_field:
        return anywhere
    # A field that matches puts the match in search_text too: the indexed LIKE still narrows.
    return sa.and_(anywhere, sa.or_(*(column.ilike(pattern, escape="\\") for column in (Customer.name, Customer.email, Customer.phone))))
