"""/api/customers: list with search and filters, create, read, update, soft delete."""

from flask import Blueprint, request

from app.caching import cached_endpoint
from app.extensions import db
from app.listquery import ListQuery
from app.roles import ADD, CUSTOMER, DELETE, EDIT, READ
from app.services.records import get_in_scope, prepare_customer, soft_delete_customer
from models.customer import CompanySize, Customer, InvestmentProfile, search_clause, search_per_field
from views.api import nested
from views.api.common import (
    Field,
    apply,
    current_user,
    item,
    json_body,
    like_pattern,
    page_answer,
    parse_fields,
    path_uuid,
    query_enum,
    query_int,
    requires,
    save,
)

bp = Blueprint("crm_api_customers", __name__, url_prefix="/customers")

FIELDS = {
    "name": Field("name", required=True, max_len=200),
    "email": Field("email", max_len=254),
    "phone": Field("phone", max_len=50),
    "address": Field("address", max_len=500),
    "industry": Field("industry", max_len=100),
    "size": Field("size", "enum", enum=CompanySize),
    "investmentProfile": Field("investment_profile", "enum", enum=InvestmentProfile),
    "riskTolerance": Field("risk_tolerance", "int", minimum=1, maximum=10),
    "investmentExperience": Field("investment_experience", max_len=500),
    "assignedSalesId": Field("assigned_sales_id", "user"),
}


def load(customer_id):
    """The customer `customer_id` if the caller may see it (else 404)."""
    return get_in_scope(Customer, path_uuid(customer_id, "Customer"), current_user())


@bp.get("")
@requires(READ, CUSTOMER)
@cached_endpoint(*nested.resources(Customer))
def list_customers():
    """Customers in scope; ?search= (name, email, phone), investmentProfile, size, industry."""
    lq = ListQuery(Customer, current_user())
    search = (request.args.get("search") or "").strip()
    if search:
        per_field = search_per_field(search)  # part of the statement's shape, hence of its name
        lq.where("searchPerField" if per_field else "search", lambda p: search_clause(p, per_field), like_pattern(search))
    profile = query_enum("investmentProfile", InvestmentProfile)
    if profile:
        lq.where("investmentProfile", lambda p: Customer.investment_profile == p, profile)
    size = query_enum("size", CompanySize)
    if size:
        lq.where("size", lambda p: Customer.size == p, size)
    if request.args.get("industry"):
        lq.where("industry", lambda p: Customer.industry == p, request.args["industry"])
    if request.args.get("assignedSalesId"):
        lq.where("assignedSalesId", lambda p: Customer.assigned_sales_id == p, query_int("assignedSalesId", None))
    return page_answer(lq, keyset=(Customer.updated_at, Customer.id))


@bp.post("")
@requires(ADD, CUSTOMER)
def create_customer():
    """Create a customer owned by the caller (or the rep named, for Admins and Managers)."""
    customer = apply(Customer(), parse_fields(json_body(), FIELDS))
    return item(save(customer, prepare_customer, creating=True), 201)


@bp.get("/<customer_id>")
@requires(READ, CUSTOMER)
def get_customer(customer_id):
    """One customer in scope."""
    return item(load(customer_id))


@bp.put("/<customer_id>")
@bp.patch("/<customer_id>")
@requires(EDIT, CUSTOMER)
def update_customer(customer_id):
    """Change the fields sent (partial update)."""
    customer = load(customer_id)
    apply(customer, parse_fields(json_body(), FIELDS, partial=True))
    return item(save(customer, prepare_customer, creating=False))


@bp.delete("/<customer_id>")
@requires(DELETE, CUSTOMER)
def delete_customer(customer_id):
    """Soft-delete a customer (its email becomes free again)."""
    customer = load(customer_id)
    soft_delete_customer(customer)
    db.session.commit()
    return item(customer)


# --- the customer card (app/services/cards.py): versions are added, never changed ---


def _card_answer(customer, card, status=200):
    from flask import jsonify

    from app.services import cards

    data = {"customerId": customer.id, "card": cards.as_dict(card), "state": cards.state_of(card).as_dict()}
    return jsonify(success=True, data=data, id=card.id if card else None), status


@bp.get("/<customer_id>/card")
@requires(READ, CUSTOMER)
def get_card(customer_id):
    """The customer's current card version and whether it is current, stale or missing."""
    from app.services import cards

    customer = load(customer_id)
    return _card_answer(customer, cards.current(customer.id))


@bp.get("/<customer_id>/card/history")
@requires(READ, CUSTOMER)
def card_history(customer_id):
    """Every version of the customer's card, newest first."""
    from flask import jsonify

    from app.services import cards

    customer = load(customer_id)
    data = [cards.as_dict(c) for c in cards.history(customer.id)]
    return jsonify(success=True, data=data, pagination={"page": 1, "limit": len(data), "total": len(data), "totalPages": 1})


@bp.post("/<customer_id>/card")
@requires(EDIT, CUSTOMER)
def add_card_version(customer_id):
    """Add a new card version (items not sent are carried over; changeReason required)."""
    from app.services import cards

    customer = load(customer_id)
    card = cards.save_version(customer.id, current_user(), json_body())
    db.session.commit()
    return _card_answer(customer, card, 201)
