"""The product master: screens (Approvals → Products) and /api/v1/product.

Every write goes through app/services/products.py's `prepare_product` (Compliance and
Admins maintain the master); products are never deleted, a retired one is made inactive.
"""

from flask_babel import lazy_gettext as _
from wtforms import BooleanField, SelectMultipleField, StringField

from app.roles import PRODUCT
from app.services.errors import Conflict
from app.services.products import prepare_product, years_text
from models.product import InvestmentPurpose, Product, ProductOrigin, ProductType
from views import display
from views.base import ScopedModelApi, ScopedModelView, optional_enum_field, time_formatters
from views.datamodels import CrmInterface

LABELS = {
    "code": _("Code"),
    "name": _("Name"),
    "risk_rating": _("Risk rating (1-10)"),
    "product_type": _("Product type"),
    "complex": _("Complex product (仕組債・デリバティブ等)"),
    "principal_protected": _("Principal protected"),
    "min_experience_years": _("Minimum experience (type=years, …)"),
    "suitable_purposes": _("Suitable purposes"),
    "origin": _("Origin"),
    "active": _("Active"),
    "created_at": _("Created"),
    "updated_at": _("Updated"),
}
EDITABLE = ["code", "name", "risk_rating", "product_type", "complex", "principal_protected",
            "min_experience_years", "suitable_purposes", "active"]
TYPE_LABELS = {
    ProductType.stocks: _("Stocks"),
    ProductType.bonds: _("Bonds"),
    ProductType.investment_trusts: _("Investment trusts"),
    ProductType.structured_bonds: _("Structured bonds"),
    ProductType.derivatives: _("Derivatives"),
    ProductType.fx: _("FX"),
    ProductType.other: _("Other"),
}
ORIGIN_LABELS = {ProductOrigin.master: _("Product master"), ProductOrigin.request: _("Named in a request")}
PURPOSE_LABELS = {
    InvestmentPurpose.capital_preservation: _("Capital preservation"),
    InvestmentPurpose.income: _("Income"),
    InvestmentPurpose.growth: _("Growth"),
    InvestmentPurpose.speculation: _("Speculation"),
}


def refuse_delete(product, user=None):
    """Requests refer to products: a retired product is made inactive, never deleted."""
    raise Conflict("products are kept for the requests that name them; set active to false instead", field="active")


class YearsField(StringField):
    """The {type: years} JSON column as text: "derivatives=1, structured_bonds=2"."""

    def _value(self):
        return years_text(self.data) if isinstance(self.data, dict) else (self.data or "")


class PurposesField(SelectMultipleField):
    """The suitable purposes, several at once."""

    def pre_validate(self, form):
        """Any subset of the purposes (unknown ones are refused by the service, naming the field)."""


class ProductView(ScopedModelView):
    """The product master: everyone reads it; Compliance and Admins add and edit."""

    datamodel = CrmInterface(Product)
    class_permission_name = PRODUCT
    prepare = staticmethod(prepare_product)
    refuse_delete = staticmethod(refuse_delete)
    list_title = _("Products")
    show_title = _("Product")
    add_title = _("Add product")
    edit_title = _("Edit product")
    label_columns = LABELS
    list_columns = ["code", "name", "risk_rating", "product_type", "complex", "principal_protected", "origin", "active"]
    show_columns = EDITABLE + ["origin", "created_at", "updated_at"]
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["code", "name", "risk_rating", "product_type", "complex", "origin", "active"]
    order_columns = ["code", "name", "risk_rating", "updated_at"]
    base_order = ("name", "asc")
    formatters_columns = {
        **time_formatters("created_at", "updated_at"),
        "risk_rating": display.risk_badge,
        "product_type": lambda v: str(TYPE_LABELS.get(v, v)) if v else "—",
        "min_experience_years": lambda v: years_text(v) or "—",
        "complex": display.yes_no,
        "principal_protected": display.yes_no,
        "active": display.yes_no,
        "origin": lambda v: str(ORIGIN_LABELS.get(v, v)) if v else "—",
        "suitable_purposes": lambda v: ", ".join(str(PURPOSE_LABELS.get(InvestmentPurpose(p), p)) for p in (v or [])) or "—",
    }
    add_form_extra_fields = edit_form_extra_fields = {
        "product_type": optional_enum_field(ProductType, _("Product type"), TYPE_LABELS),
        # Unticked is an answer (False), not a missing value.
        "complex": BooleanField(LABELS["complex"]),
        "principal_protected": BooleanField(LABELS["principal_protected"]),
        "active": BooleanField(LABELS["active"], default=True),
        "min_experience_years": YearsField(_("Minimum experience (type=years, …)")),
        "suitable_purposes": PurposesField(
            _("Suitable purposes"), choices=[(p.value, PURPOSE_LABELS[p]) for p in InvestmentPurpose]
        ),
    }


class ProductApi(ScopedModelApi):
    """The product master under /api/v1/product."""

    resource_name = "product"
    datamodel = CrmInterface(Product)
    class_permission_name = PRODUCT
    prepare = staticmethod(prepare_product)
    refuse_delete = staticmethod(refuse_delete)
    list_columns = ["id"] + EDITABLE + ["origin", "created_at", "updated_at"]
    show_columns = list_columns
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["code", "name", "risk_rating", "product_type", "complex", "origin", "active"]
    order_columns = ["code", "name", "risk_rating", "created_at"]
