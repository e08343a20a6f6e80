"""Customer screens and generated API."""

from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _
from marshmallow import validate

from app.roles import CUSTOMER, VIEW_METHOD_PERMISSIONS
from app.services.records import prepare_customer
from models.customer import CompanySize, Customer, InvestmentProfile
from views import customer_page, display
from views.base import ScopedModelApi, ScopedModelView, optional_enum_field, time_formatters
from views.datamodels import SoftDeleteInterface

LABELS = {
    "name": _("Name"),
    "email": _("Email"),
    "phone": _("Phone"),
    "address": _("Address"),
    "industry": _("Industry"),
    "size": _("Company size"),
    "investment_profile": _("Investment profile"),
    "risk_tolerance": _("Risk tolerance (1-10)"),
    "investment_experience": _("Investment experience"),
    "assigned_sales": _("Sales rep"),
    "created_at": _("Created"),
    "updated_at": _("Updated"),
}
EDITABLE = [
    "name",
    "email",
    "phone",
    "address",
    "industry",
    "size",
    "investment_profile",
    "risk_tolerance",
    "investment_experience",
    "assigned_sales",
]


class CustomerView(ScopedModelView):
    """Customers: list with search and filters, a page with meetings, tasks and requests."""

    datamodel = SoftDeleteInterface(Customer)
    class_permission_name = CUSTOMER
    prepare = staticmethod(prepare_customer)
    list_title = _("Customers")
    show_title = _("Customer")
    add_title = _("Add customer")
    edit_title = _("Edit customer")
    label_columns = LABELS
    list_columns = ["name", "industry", "size", "investment_profile", "risk_tolerance", "assigned_sales", "updated_at"]
    show_columns = EDITABLE + ["created_at", "updated_at"]
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["name", "email", "industry", "size", "investment_profile", "risk_tolerance", "assigned_sales"]
    order_columns = ["name", "industry", "size", "risk_tolerance", "updated_at"]
    base_order = ("updated_at", "desc")
    formatters_columns = {
        **time_formatters("created_at", "updated_at"),
        "size": display.badge_formatter("size"),
        "investment_profile": display.badge_formatter("profile"),
        "risk_tolerance": display.risk_badge,
        "industry": display.text_or_dash,
        "phone": display.text_or_dash,
        "email": display.text_or_dash,
        "address": display.text_or_dash,
        "investment_experience": display.text_or_dash,
    }
    add_form_extra_fields = edit_form_extra_fields = {
        "size": optional_enum_field(CompanySize, _("Company size"), display.enum_labels("size")),
        "investment_profile": optional_enum_field(InvestmentProfile, _("Investment profile"), display.enum_labels("profile")),
    }
    # The page itself is views/customer_page.py; a quick-add form needs the add permission of what it adds.
    method_permission_name = {**VIEW_METHOD_PERMISSIONS, "quick_add": "read"}

    @expose("/show/<pk>", methods=["GET"])
    @has_access
    def show(self, pk):
        """The customer page: profile, suitability, related records, timeline and quick-add forms."""
        return customer_page.render(self, pk)

    @expose("/show/<pk>/add/<kind>", methods=["POST"])
    @has_access
    def quick_add(self, pk, kind):
        """Add a meeting, task or approval request for this customer from its page."""
        return customer_page.add(self, pk, kind)


class CustomerApi(ScopedModelApi):
    """Customers under /api/v1/customer."""

    resource_name = "customer"
    datamodel = SoftDeleteInterface(Customer)
    class_permission_name = CUSTOMER
    prepare = staticmethod(prepare_customer)
    list_columns = ["id"] + EDITABLE[:-1] + ["assigned_sales_id", "created_at", "updated_at"]
    show_columns = list_columns
    add_columns = EDITABLE
    edit_columns = EDITABLE
    search_columns = ["name", "email", "industry", "size", "investment_profile", "assigned_sales"]
    order_columns = ["name", "updated_at", "created_at", "risk_tolerance"]
    validators_columns = {
        "risk_tolerance": validate.Range(min=1, max=10),
        "name": validate.Length(min=1, max=200),
        "email": validate.Email(),
    }
