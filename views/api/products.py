"""/api/products: the product master (everyone reads it; Compliance and Admins maintain it)."""

from flask import Blueprint, request

from app.extensions import db
from app.listquery import ListQuery
from app.roles import ADD, EDIT, PRODUCT, READ
from app.serialize import column_values
from app.services import products as service
from models.product import Product, ProductType
from views.api.common import Field, apply, current_user, item, json_body, page_answer, parse_fields, path_uuid, requires

bp = Blueprint("crm_api_products", __name__, url_prefix="/products")

FIELDS = {
    "code": Field("code", required=True, max_len=40),
    "name": Field("name", required=True, max_len=200),
    "riskRating": Field("risk_rating", "int", required=True, minimum=1, maximum=10),
    "productType": Field("product_type", "enum", enum=ProductType),
    "complex": Field("complex", "bool"),
    "principalProtected": Field("principal_protected", "bool"),
    "minExperienceYears": Field("min_experience_years", "raw"),
    "suitablePurposes": Field("suitable_purposes", "raw"),
    "active": Field("active", "bool"),
}


def load(product_id):
    """One product (the master is read by every role)."""
    return service.load(path_uuid(product_id, "Product"))


@bp.get("")
@requires(READ, PRODUCT)
def list_products():
    """Products by name; ?active=true|false, ?productType=."""
    lq = ListQuery(Product, current_user())
    active = request.args.get("active")
    if active in ("true", "false"):
        lq.where("active", lambda p: Product.active == p, active == "true")
    if request.args.get("productType"):
        from views.api.common import query_enum

        lq.where("productType", lambda p: Product.product_type == p, query_enum("productType", ProductType))
    return page_answer(lq, keyset=(Product.created_at, Product.id), serializer=column_values)


@bp.get("/<product_id>")
@requires(READ, PRODUCT)
def get_product(product_id):
    """One product."""
    return item(load(product_id))


@bp.post("")
@requires(ADD, PRODUCT)
def create_product():
    """Add a product to the master."""
    product = apply(Product(), parse_fields(json_body(), FIELDS))
    service.prepare_product(product, current_user(), True)
    db.session.add(product)
    db.session.commit()
    return item(product, 201)


@bp.put("/<product_id>")
@bp.patch("/<product_id>")
@requires(EDIT, PRODUCT)
def update_product(product_id):
    """Change the fields sent."""
    product = load(product_id)
    apply(product, parse_fields(json_body(), FIELDS, partial=True))
    service.prepare_product(product, current_user(), False)
    db.session.commit()
    return item(product)
